//! The one write path to a service's stream, for the reconcile loop and the API alike: fold the
//! stream to its head (starting from a snapshot when there is one), decide on that state, and
//! append at the revision folded.
//!
//! Event ids derive from (stream, revision, event), so a retried append of the same decision
//! is a no-op in the store; a concurrent writer makes the append fail with a conflict, and the
//! caller re-reads and decides again. Concurrent commands are thereby serialised by the
//! store's expected-revision check, never by luck.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ionroller_core::claims::Claims;
use ionroller_core::plan::event_id;
use ionroller_core::state::apply_recorded;
use ionroller_core::ServiceState;
use ionroller_shared::events::{
    load_balancer_claims_stream, service_of, service_stream, ServiceEvent, SERVICE_STREAM_PREFIX,
};
use ionroller_shared::store::lease::{Fence, Leases};
use ionroller_shared::store::{
    fold_stream, AppendResult, EventId, EventMetadata, EventStore, ExpectedRevision, NewEvent,
    Position, ReadFilter, Revision, StoreError, StreamId,
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
    /// This replica's lease on the service's shard has passed to another (or expired):
    /// nothing more is recorded or executed for it here.
    #[error("the lease on shard {shard} at epoch {epoch} is no longer this replica's")]
    LeaseLost { shard: u32, epoch: u64 },
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
    let service = state.service.clone();
    fold_stream(store, &stream, state.revision, |event| {
        apply_recorded(state, event).map_err(|why| RollerError::Poison {
            service: service.clone(),
            revision: event.revision,
            why,
        })
    })
    .await
}

/// As [`catch_up`], for a fold shared behind an `Arc` (the API's cache): it is copied only
/// when the stream holds something new, and then once, so a read of an unchanged service costs
/// nothing however long its history.
pub async fn catch_up_shared(
    store: &dyn EventStore,
    state: &mut Arc<ServiceState>,
) -> Result<(), RollerError> {
    let stream = service_stream(&state.service)?;
    if state.revision.is_none() {
        if let Some(snapshot) = crate::snapshot::load(store, &state.service).await {
            *state = Arc::new(snapshot);
        }
    }
    let service = state.service.clone();
    let folded = state.revision;
    fold_stream(store, &stream, folded, |event| {
        apply_recorded(Arc::make_mut(state), event).map_err(|why| RollerError::Poison {
            service: service.clone(),
            revision: event.revision,
            why,
        })
    })
    .await
}

/// Folds whatever the `load-balancers` stream holds beyond `claims.revision` into `claims`.
pub async fn catch_up_claims(
    store: &dyn EventStore,
    claims: &mut Claims,
) -> Result<(), RollerError> {
    let stream = load_balancer_claims_stream()?;
    fold_stream(store, &stream, claims.revision, |event| {
        claims
            .apply_recorded(event)
            .map_err(|why| RollerError::Poison {
                service: stream.to_string(),
                revision: event.revision,
                why,
            })
    })
    .await
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
    let (stream, batch) = service_batch(state, events, actor, at)?;
    append_at(store, &stream, state.revision, batch).await
}

/// As [`append`], for a roller replica: written only if `fence` still holds the service's
/// shard (on PostgreSQL checked in the write's transaction, on KurrentDB just before it),
/// and every intent carries the fence, so the
/// log says which replica intended each action at which epoch.
pub async fn append_fenced(
    leases: &dyn Leases,
    fence: &Fence,
    state: &ServiceState,
    events: &[ServiceEvent],
    actor: &str,
    at: DateTime<Utc>,
) -> Result<Appended, StoreError> {
    if events.is_empty() {
        return Ok(Appended::Written);
    }
    let mut stamped = events.to_vec();
    for event in &mut stamped {
        if let ServiceEvent::ActionIntended { lease, .. } = event {
            *lease = Some(fence.clone());
        }
    }
    let (stream, batch) = service_batch(state, &stamped, actor, at)?;
    let expected = ExpectedRevision::after(state.revision);
    conflict_or(leases.append_fenced(fence, &stream, expected, batch).await)
}

/// The stored form of `events` for `state`'s stream, after the revision folded.
fn service_batch(
    state: &ServiceState,
    events: &[ServiceEvent],
    actor: &str,
    at: DateTime<Utc>,
) -> Result<(StreamId, Vec<NewEvent>), StoreError> {
    let stream = service_stream(&state.service)?;
    let correlation = |event: &ServiceEvent| correlation_id(state, &stream, event);
    let batch = new_events(&stream, state.revision, events, actor, at, correlation);
    Ok((stream, batch))
}

/// Appends claim events to the `load-balancers` stream, expecting it exactly at the revision
/// `claims` was folded to: two services claiming one load balancer at once are serialised here.
pub async fn append_claims(
    store: &dyn EventStore,
    claims: &Claims,
    events: &[ServiceEvent],
    actor: &str,
    at: DateTime<Utc>,
) -> Result<Appended, StoreError> {
    if events.is_empty() {
        return Ok(Appended::Written);
    }
    let stream = load_balancer_claims_stream()?;
    let stream_id = Uuid::new_v5(&Uuid::NAMESPACE_URL, stream.as_str().as_bytes());
    let batch = new_events(&stream, claims.revision, events, actor, at, |_| stream_id);
    append_at(store, &stream, claims.revision, batch).await
}

/// The stored form of `events`, to follow revision `folded`, with ids derived from where they
/// go (so a retried append of the same decision is a no-op).
fn new_events(
    stream: &StreamId,
    folded: Option<Revision>,
    events: &[ServiceEvent],
    actor: &str,
    at: DateTime<Utc>,
    correlation: impl Fn(&ServiceEvent) -> Uuid,
) -> Vec<NewEvent> {
    let first = folded.map_or(0, |r| r.0 + 1);
    events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let (event_type, data) = event.encode();
            let id = event_id(stream, first + i as u64, &event_type, &data);
            event.to_new_event(
                EventId(id),
                EventMetadata {
                    actor: actor.to_string(),
                    correlation_id: correlation(event),
                    causation_id: None,
                    occurred_at: at,
                },
            )
        })
        .collect()
}

async fn append_at(
    store: &dyn EventStore,
    stream: &StreamId,
    folded: Option<Revision>,
    batch: Vec<NewEvent>,
) -> Result<Appended, StoreError> {
    conflict_or(
        store
            .append(stream, ExpectedRevision::after(folded), batch)
            .await,
    )
}

/// An append's result, with someone else's write first (a conflict) told apart from failure.
fn conflict_or(result: Result<AppendResult, StoreError>) -> Result<Appended, StoreError> {
    match result {
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
