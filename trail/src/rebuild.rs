//! `trail rebuild`: replay the log from position zero into a fresh projection beside the live
//! one, then switch the live one over in one transaction once the fresh one has caught up.

use ionroller_projections::audit::AuditChain;
use ionroller_shared::events::ServiceEvent;
use ionroller_shared::store::{EventStore, ReadFilter};

use crate::db::{Checkpoint, DbError, TrailDb};
use crate::runner::TrailError;

const PAGE: usize = 5000;

/// Database work on the blocking pool (the PostgreSQL projection uses a blocking client).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DbError> + Send + 'static,
) -> Result<T, TrailError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| TrailError::Internal(format!("database task: {e}")))?
        .map_err(TrailError::from)
}

/// Rebuilds `live` from the log; returns it with the number of rows.
pub async fn rebuild(store: &dyn EventStore, live: TrailDb) -> Result<(TrailDb, u64), TrailError> {
    let (live, mut fresh) = blocking(move || {
        let fresh = live.fresh_sibling()?;
        Ok((live, fresh))
    })
    .await?;
    let mut chain = AuditChain::default();
    let mut after = None;
    loop {
        let page = store
            .read_all(after, PAGE, &ReadFilter::all())
            .await
            .map_err(|e| TrailError::Internal(format!("read the log: {e}")))?;
        let Some(last) = page.last() else { break };
        after = Some(last.position);
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
        fresh = blocking(move || {
            fresh.commit(&rows, &checkpoint)?;
            Ok(fresh)
        })
        .await?;
    }
    let live = blocking(move || {
        let mut live = live;
        live.replace_all(&fresh)?;
        fresh.discard()?;
        Ok(live)
    })
    .await?;
    Ok((live, chain.seq))
}
