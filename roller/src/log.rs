//! The one write path to a service's stream, for the reconcile loop and the API alike: fold the
//! stream to its head (starting from a snapshot when there is one), decide on that state, and
//! append at the revision folded.
//!
//! Event ids derive from (stream, revision, event), so a retried append of the same decision
//! is a no-op in the store; a concurrent writer makes the append fail with a conflict, and the
//! caller re-reads and decides again. Concurrent commands are thereby serialised by the
//! store's expected-revision check, never by luck.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use ionroller_core::plan::event_id;
use ionroller_core::state::apply_recorded;
use ionroller_core::ServiceState;
use ionroller_shared::events::{service_of, service_stream, ServiceEvent, SERVICE_STREAM_PREFIX};
use ionroller_shared::store::{
    EventId, EventMetadata, EventStore, ExpectedRevision, Position, ReadFilter, Revision,
    StoreError, StreamId, StreamRead,
};
use uuid::Uuid;

/// The actor recorded on the roller's own decisions and observations.
pub const ROLLER_ACTOR: &str = "roller";
const PAGE: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum RollerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An event that cannot be decoded: the service stops here rather than skip it.
    #[error("service {service}: event at revision {revision} cannot be folded: {why}")]
    Poison {
        service: String,
        revision: Revision,
        why: String,
    },
}

/// Folds whatever the service's stream holds beyond `state.revision` into `state`; a state
/// that has folded nothing yet starts from the latest usable snapshot.
pub async fn catch_up(store: &dyn EventStore, state: &mut ServiceState) -> Result<(), RollerError> {
    let stream = service_stream(&state.service)?;
    if state.revision.is_none() {
        if let Some(snapshot) = crate::snapshot::load(store, &state.service).await {
            *state = snapshot;
        }
    }
    loop {
        let from = state.revision.map_or(0, |r| r.0 + 1);
        let page = match store
            .read_stream(&stream, StreamRead::forward(PAGE).from(Revision(from)))
            .await
        {
            Ok(page) => page,
            Err(StoreError::StreamNotFound(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        for event in &page {
            apply_recorded(state, event).map_err(|why| RollerError::Poison {
                service: state.service.clone(),
                revision: event.revision,
                why,
            })?;
        }
        if page.len() < PAGE {
            return Ok(());
        }
    }
}

/// What became of an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// The events are durable, right after `state`'s revision.
    Written,
    /// Someone appended first: re-read and decide again.
    Conflict,
}

/// Appends `events` to `state`'s stream, expecting the stream to be exactly at the revision
/// `state` was folded to.
pub async fn append(
    store: &dyn EventStore,
    state: &ServiceState,
    events: &[ServiceEvent],
    actor: &str,
    at: DateTime<Utc>,
) -> Result<Appended, StoreError> {
    if events.is_empty() {
        return Ok(Appended::Written);
    }
    let stream = service_stream(&state.service)?;
    let first = state.revision.map_or(0, |r| r.0 + 1);
    let batch = events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let (event_type, data) = event.encode();
            let id = event_id(&stream, first + i as u64, &event_type, &data);
            event.to_new_event(
                EventId(id),
                EventMetadata {
                    actor: actor.to_string(),
                    correlation_id: correlation_id(state, &stream, event),
                    causation_id: None,
                    occurred_at: at,
                },
            )
        })
        .collect();
    match store
        .append(&stream, ExpectedRevision::after(state.revision), batch)
        .await
    {
        Ok(_) => Ok(Appended::Written),
        Err(StoreError::WrongExpectedRevision { .. } | StoreError::IdConflict { .. }) => {
            Ok(Appended::Conflict)
        }
        Err(e) => Err(e),
    }
}

/// The one correlation rule: an event about a rollout carries that rollout's id; any other
/// event carries the id of the rollout in progress, or, with none, the service's own id, so
/// that everything said about a rollout can be found by one id.
fn correlation_id(state: &ServiceState, stream: &StreamId, event: &ServiceEvent) -> Uuid {
    event
        .rollout_id()
        .or_else(|| state.rollout.as_ref().map(|r| r.id))
        .unwrap_or_else(|| Uuid::new_v5(&Uuid::NAMESPACE_URL, stream.as_str().as_bytes()))
}

/// The services that saved a config after `after` (every service, from `None`), and the
/// position to look from next time. Services are found by their `config-saved` events: a
/// service exists once it has a config.
pub async fn discover_services(
    store: &dyn EventStore,
    after: Option<Position>,
) -> Result<(BTreeSet<String>, Option<Position>), StoreError> {
    let filter = ReadFilter {
        stream_prefix: Some(SERVICE_STREAM_PREFIX.into()),
        event_types: vec!["config-saved".into()],
    };
    let mut names = BTreeSet::new();
    let mut after = after;
    loop {
        // Everything up to the head is visible to the read that follows it, so the next look
        // may start from the head even when the filter matched nothing up to there.
        let head = store.head().await?;
        let page = store.read_all(after, PAGE, &filter).await?;
        names.extend(
            page.iter()
                .filter_map(|e| service_of(&e.stream).map(str::to_string)),
        );
        match page.last() {
            Some(last) if page.len() == PAGE => after = Some(last.position),
            _ => return Ok((names, head.max(after))),
        }
    }
}
