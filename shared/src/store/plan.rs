//! The pure part of an append: checks and position allocation for a group of appends that a
//! backend commits in one transaction (group commit). Backends read the current stream heads
//! and any already-stored event ids under their write lock, call [`plan_group`], insert the
//! rows it returns and commit. Keeping the rules here means SQLite and PostgreSQL cannot
//! disagree about idempotency or expected revisions.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    AppendResult, EventId, ExpectedRevision, NewEvent, Position, Revision, StoreError, StreamId,
};

/// An event serialised once, on the caller's task, before it reaches the writer.
#[derive(Clone, Debug)]
pub struct PreparedEvent {
    pub id: EventId,
    pub event_type: String,
    pub schema_version: u32,
    pub data_json: String,
    pub actor: String,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
}

impl PreparedEvent {
    fn size(&self) -> usize {
        // Ids and timestamps are fixed-size; count them roughly so tiny events still cost.
        self.event_type.len() + self.data_json.len() + self.actor.len() + 64
    }
}

/// One caller's append, validated and serialised.
#[derive(Clone, Debug)]
pub struct PendingAppend {
    pub stream: StreamId,
    pub expected: ExpectedRevision,
    pub events: Vec<PreparedEvent>,
}

/// Validates an append that does not depend on stored state: non-empty, no id twice, within
/// the size limit. Runs before anything reaches the writer, so a rejected append costs nothing.
pub fn prepare(
    stream: &StreamId,
    expected: ExpectedRevision,
    events: Vec<NewEvent>,
    max_append_bytes: usize,
) -> Result<PendingAppend, StoreError> {
    if events.is_empty() {
        return Err(StoreError::InvalidAppend(
            "an append needs at least one event".to_string(),
        ));
    }
    let mut seen = HashSet::with_capacity(events.len());
    let mut prepared = Vec::with_capacity(events.len());
    for event in events {
        if !seen.insert(event.id) {
            return Err(StoreError::InvalidAppend(format!(
                "event id {} appears twice in one append",
                event.id
            )));
        }
        if event.event_type.is_empty() {
            return Err(StoreError::InvalidAppend(format!(
                "event {} has an empty event_type",
                event.id
            )));
        }
        let data_json = serde_json::to_string(&event.data).map_err(|e| {
            StoreError::InvalidAppend(format!("event {} data is not JSON: {e}", event.id))
        })?;
        prepared.push(PreparedEvent {
            id: event.id,
            event_type: event.event_type,
            schema_version: event.schema_version,
            data_json,
            actor: event.metadata.actor,
            correlation_id: event.metadata.correlation_id,
            causation_id: event.metadata.causation_id,
            occurred_at: event.metadata.occurred_at,
        });
    }
    let size: usize = prepared.iter().map(PreparedEvent::size).sum();
    if size > max_append_bytes {
        return Err(StoreError::TooLarge {
            size,
            limit: max_append_bytes,
        });
    }
    Ok(PendingAppend {
        stream: stream.clone(),
        expected,
        events: prepared,
    })
}

/// What the backend found stored under an event id that a group wants to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEventId {
    pub stream: StreamId,
    pub revision: Revision,
    pub position: u64,
    pub event_type: String,
    pub schema_version: u32,
    pub data_json: String,
}

/// A row to insert.
#[derive(Debug)]
pub struct Row<'a> {
    pub position: u64,
    pub stream: &'a StreamId,
    pub revision: u64,
    pub event: &'a PreparedEvent,
}

#[derive(Debug)]
pub struct GroupPlan<'a> {
    /// One per append, in the order given.
    pub outcomes: Vec<Result<AppendResult, StoreError>>,
    /// Rows for the appends that succeeded, positions increasing from `last_position + 1`.
    pub rows: Vec<Row<'a>>,
}

/// The distinct streams a group touches (to read their heads).
pub fn group_streams(appends: &[PendingAppend]) -> Vec<StreamId> {
    let mut streams: Vec<StreamId> = appends.iter().map(|a| a.stream.clone()).collect();
    streams.sort();
    streams.dedup();
    streams
}

/// Every event id a group carries (to look up ones already stored).
pub fn group_event_ids(appends: &[PendingAppend]) -> Vec<EventId> {
    appends
        .iter()
        .flat_map(|a| a.events.iter().map(|e| e.id))
        .collect()
}

/// Decides each append of a group in order, as if they ran one after another.
///
/// `heads` holds each touched stream's last revision (absent: no stream); `stored` every id of
/// the group already in the store; `last_position` the log's last position (0 when empty).
pub fn plan_group<'a>(
    appends: &'a [PendingAppend],
    mut heads: HashMap<StreamId, Revision>,
    mut stored: HashMap<EventId, StoredEventId>,
    last_position: u64,
) -> GroupPlan<'a> {
    let mut next_position = last_position + 1;
    let mut outcomes = Vec::with_capacity(appends.len());
    let mut rows = Vec::new();
    for append in appends {
        let head = heads.get(&append.stream).copied();
        let outcome = match already_stored(append, &stored) {
            Some(earlier) => earlier,
            None if !append.expected.admits(head) => Err(StoreError::WrongExpectedRevision {
                stream: append.stream.clone(),
                expected: append.expected,
                actual: head,
            }),
            None => {
                let first = head.map_or(0, |r| r.0 + 1);
                for (i, event) in append.events.iter().enumerate() {
                    let revision = first + i as u64;
                    // Later appends in the same group must see this one, including its ids.
                    stored.insert(
                        event.id,
                        StoredEventId {
                            stream: append.stream.clone(),
                            revision: Revision(revision),
                            position: next_position,
                            event_type: event.event_type.clone(),
                            schema_version: event.schema_version,
                            data_json: event.data_json.clone(),
                        },
                    );
                    rows.push(Row {
                        position: next_position,
                        stream: &append.stream,
                        revision,
                        event,
                    });
                    next_position += 1;
                }
                let last = Revision(first + append.events.len() as u64 - 1);
                heads.insert(append.stream.clone(), last);
                Ok(AppendResult {
                    last_revision: last,
                    position: Position::from_sequence(next_position - 1),
                })
            }
        };
        outcomes.push(outcome);
    }
    GroupPlan { outcomes, rows }
}

/// `None` when none of the append's ids is stored. When all are, as the same events in the
/// same stream in one consecutive run where the expectation puts them, the append is a retry
/// and succeeds without writing. Anything else reusing an id is a conflict.
fn already_stored(
    append: &PendingAppend,
    stored: &HashMap<EventId, StoredEventId>,
) -> Option<Result<AppendResult, StoreError>> {
    let found: Vec<(&PreparedEvent, Option<&StoredEventId>)> = append
        .events
        .iter()
        .map(|e| (e, stored.get(&e.id)))
        .collect();
    if found.iter().all(|(_, s)| s.is_none()) {
        return None;
    }
    let conflict = |event: &PreparedEvent| StoreError::IdConflict {
        event_id: event.id,
        stream: append.stream.clone(),
    };
    let first_revision = match found[0].1 {
        Some(s) => s.revision.0,
        None => return Some(Err(conflict(found[0].0))),
    };
    for (i, (event, earlier)) in found.iter().enumerate() {
        let same = earlier.is_some_and(|s| {
            s.stream == append.stream
                && s.revision.0 == first_revision + i as u64
                && s.event_type == event.event_type
                && s.schema_version == event.schema_version
                && s.data_json == event.data_json
        });
        if !same {
            return Some(Err(conflict(event)));
        }
    }
    let where_expected = match append.expected {
        ExpectedRevision::Any | ExpectedRevision::StreamExists => true,
        ExpectedRevision::NoStream => first_revision == 0,
        ExpectedRevision::Exact(r) => first_revision == r.0 + 1,
    };
    if !where_expected {
        return Some(Err(conflict(found[0].0)));
    }
    let (_, last) = found[found.len() - 1];
    let last = last.expect("every id was checked above to be stored");
    Some(Ok(AppendResult {
        last_revision: last.revision,
        position: Position::from_sequence(last.position),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EventMetadata, NewEvent};

    fn event(n: u128, data: &str) -> NewEvent {
        NewEvent {
            id: EventId(Uuid::from_u128(n)),
            event_type: "t".into(),
            schema_version: 1,
            data: serde_json::json!({ "v": data }),
            metadata: EventMetadata {
                actor: "test".into(),
                correlation_id: Uuid::nil(),
                causation_id: None,
                occurred_at: DateTime::<Utc>::UNIX_EPOCH,
            },
        }
    }

    fn pending(stream: &str, expected: ExpectedRevision, ids: &[u128]) -> PendingAppend {
        let events = ids.iter().map(|n| event(*n, "x")).collect();
        prepare(&StreamId::new(stream).unwrap(), expected, events, 1 << 20).unwrap()
    }

    fn kinds(plan: &GroupPlan) -> Vec<String> {
        plan.outcomes
            .iter()
            .map(|o| match o {
                Ok(r) => format!("ok r{} p{}", r.last_revision, r.position.sequence()),
                Err(StoreError::WrongExpectedRevision { actual, .. }) => {
                    format!("wrong {actual:?}")
                }
                Err(StoreError::IdConflict { .. }) => "conflict".into(),
                Err(e) => format!("{e}"),
            })
            .collect()
    }

    #[test]
    fn a_group_is_decided_in_order_and_sees_its_own_writes() {
        use ExpectedRevision::*;
        let group = vec![
            pending("a", NoStream, &[1, 2]),
            pending("a", NoStream, &[3]),
            pending("a", Exact(Revision(1)), &[4]),
            pending("b", StreamExists, &[5]),
            pending("a", NoStream, &[1, 2]), // retry of the first: no-op success
            pending("b", Any, &[6]),
        ];
        let plan = plan_group(&group, HashMap::new(), HashMap::new(), 10);
        assert_eq!(
            kinds(&plan),
            vec![
                "ok r1 p12",
                "wrong Some(Revision(1))",
                "ok r2 p13",
                "wrong None",
                "ok r1 p12",
                "ok r0 p14"
            ]
        );
        let positions: Vec<u64> = plan.rows.iter().map(|r| r.position).collect();
        assert_eq!(positions, vec![11, 12, 13, 14]);
    }

    #[test]
    fn reused_ids_conflict_unless_the_whole_batch_is_a_retry() {
        use ExpectedRevision::*;
        let mut different = pending("a", Any, &[1]);
        different.events[0].data_json = "{\"v\":\"other\"}".into();
        let group = vec![
            pending("a", NoStream, &[1, 2]),
            pending("a", Any, &[2, 1]),             // wrong order
            pending("a", Any, &[1, 2, 3]),          // partial
            different,                              // other payload
            pending("b", Any, &[1]),                // other stream
            pending("a", Exact(Revision(0)), &[2]), // retry of the batch's tail: no-op
            pending("a", Exact(Revision(5)), &[1]), // retry where expectation disagrees
            pending("a", NoStream, &[2]),           // id stored at another revision
            pending("a", StreamExists, &[1, 2]),    // a true retry
        ];
        let plan = plan_group(&group, HashMap::new(), HashMap::new(), 0);
        assert_eq!(
            kinds(&plan),
            vec![
                "ok r1 p2", "conflict", "conflict", "conflict", "conflict", "ok r1 p2", "conflict",
                "conflict", "ok r1 p2"
            ]
        );
        assert_eq!(plan.rows.len(), 2);
    }

    #[test]
    fn prepare_rejects_empty_duplicate_and_oversized_batches() {
        let s = StreamId::new("s").unwrap();
        assert!(matches!(
            prepare(&s, ExpectedRevision::Any, vec![], 100),
            Err(StoreError::InvalidAppend(_))
        ));
        assert!(matches!(
            prepare(
                &s,
                ExpectedRevision::Any,
                vec![event(1, "a"), event(1, "a")],
                1000
            ),
            Err(StoreError::InvalidAppend(_))
        ));
        let big = "x".repeat(2000);
        assert!(matches!(
            prepare(&s, ExpectedRevision::Any, vec![event(1, &big)], 1000),
            Err(StoreError::TooLarge { limit: 1000, .. })
        ));
    }
}
