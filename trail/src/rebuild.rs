//! `trail rebuild`: replay the log from position zero into a fresh projection beside the live
//! one, then switch the live one over in one transaction once the fresh one has caught up.

use ionroller_projections::audit::AuditChain;
use ionroller_shared::events::ServiceEvent;
use ionroller_shared::store::{EventStore, ReadFilter};

use crate::db::{Checkpoint, Projection};
use crate::runner::TrailError;

const PAGE: usize = 5000;

/// Rebuilds `live` from the log; returns the number of rows it now holds.
pub async fn rebuild(store: &dyn EventStore, live: &dyn Projection) -> Result<u64, TrailError> {
    let fresh = live.fresh_sibling().await?;
    let mut chain = AuditChain::default();
    let mut after = None;
    loop {
        let page = store
            .read_all(after, PAGE, &ReadFilter::all())
            .await
            .map_err(|e| TrailError::Internal(format!("read the log: {e}")))?;
        let Some(last) = page.last() else { break };
        after = Some(last.position);
        // Stop before writing a page with a poison event: the live projection stays as it is.
        for e in &page {
            if let Err(why) = ServiceEvent::from_recorded(e) {
                return Err(TrailError::Poison {
                    position: e.position,
                    event_type: e.event_type.clone(),
                    why,
                });
            }
        }
        let rows: Vec<_> = page.iter().map(|e| chain.row(e)).collect();
        let checkpoint = Checkpoint {
            position: after,
            seq: chain.seq,
            head: chain.head,
        };
        fresh.commit(&rows, &checkpoint).await?;
    }
    live.replace_all(fresh.as_ref()).await?;
    fresh.discard().await?;
    Ok(chain.seq)
}
