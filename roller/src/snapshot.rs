//! Snapshots of folded service states, so a long-lived service's stream is not refolded from
//! revision 0 at every start.
//!
//! A snapshot is an event in the stream `snapshot:{service}` holding the state and the
//! revision it was folded to. It is only a cache of the fold: the service stream stays the
//! truth, a snapshot of another format is ignored, and a missing or unreadable one means a
//! full fold.

use ionroller_shared::store::{
    EventId, EventMetadata, EventStore, ExpectedRevision, NewEvent, Revision, StoreError, StreamId,
    StreamRead,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use ionroller_core::ServiceState;

/// Events folded between snapshots.
pub const SNAPSHOT_EVERY: u64 = 10_000;
/// Bump when `ServiceState` or `evolve` changes meaning: older snapshots are then ignored.
const FORMAT: u32 = 1;
const EVENT_TYPE: &str = "service-snapshot";

#[derive(Serialize, Deserialize)]
struct Snapshot {
    format: u32,
    revision: u64,
    state: ServiceState,
}

pub fn snapshot_stream(service: &str) -> Result<StreamId, StoreError> {
    StreamId::new(format!("snapshot:{service}"))
}

/// The latest usable snapshot of `service`, if any.
pub async fn load(store: &dyn EventStore, service: &str) -> Option<ServiceState> {
    let stream = snapshot_stream(service).ok()?;
    let latest = store
        .read_stream(&stream, StreamRead::backward(1))
        .await
        .ok()?
        .pop()?;
    let snapshot: Snapshot = serde_json::from_value(latest.data).ok()?;
    if snapshot.format != FORMAT || snapshot.state.service != service {
        return None;
    }
    let mut state = snapshot.state;
    state.revision = Some(Revision(snapshot.revision));
    Some(state)
}

/// Saves `state` as the latest snapshot of its service.
pub async fn save(
    store: &dyn EventStore,
    state: &ServiceState,
    actor: &str,
) -> Result<(), StoreError> {
    let Some(revision) = state.revision else {
        return Ok(());
    };
    let data = serde_json::to_value(Snapshot {
        format: FORMAT,
        revision: revision.0,
        state: state.clone(),
    })
    .map_err(|e| StoreError::InvalidAppend(format!("encode snapshot: {e}")))?;
    let stream = snapshot_stream(&state.service)?;
    let id = Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("{stream}@{}#{FORMAT}", revision.0).as_bytes(),
    );
    let event = NewEvent {
        id: EventId(id),
        event_type: EVENT_TYPE.into(),
        schema_version: FORMAT,
        data,
        metadata: EventMetadata {
            actor: actor.into(),
            correlation_id: id,
            causation_id: None,
            occurred_at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
        },
    };
    match store
        .append(&stream, ExpectedRevision::Any, vec![event])
        .await
    {
        Ok(_) | Err(StoreError::IdConflict { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
