//! `trail rebuild`: replay the log from position zero into a fresh projection file, then
//! switch the live one over in one transaction once the fresh one has caught up.

use std::path::Path;

use ionroller_projections::audit::AuditChain;
use ionroller_shared::store::{EventStore, ReadFilter};

use crate::db::{Checkpoint, TrailDb};
use crate::runner::TrailError;

const PAGE: usize = 5000;

/// Rebuilds the audit projection at `live`; returns the number of rows.
pub async fn rebuild(store: &dyn EventStore, live: &Path) -> Result<u64, TrailError> {
    let fresh_path = live.with_extension("rebuild.sqlite");
    let _ = std::fs::remove_file(&fresh_path);
    let mut fresh = TrailDb::open(&fresh_path)?;
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
            if let Err(why) = ionroller_shared::events::ServiceEvent::from_recorded(e) {
                return Err(TrailError::Poison {
                    position: e.position,
                    event_type: e.event_type.clone(),
                    why,
                });
            }
        }
        let rows: Vec<_> = page.iter().map(|e| chain.row(e)).collect();
        fresh.commit(
            &rows,
            &Checkpoint {
                position: after,
                seq: chain.seq,
                head: chain.head,
            },
        )?;
    }
    let mut current = TrailDb::open(live)?;
    current.replace_all(&fresh)?;
    drop(fresh);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", fresh_path.display()));
    }
    Ok(chain.seq)
}
