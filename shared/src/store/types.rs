//! The store's vocabulary. Plain data, validated at construction, no I/O.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::StoreError;

/// Longest stream name accepted, in bytes. Stream names become index keys in every backend.
pub const MAX_STREAM_ID_LEN: usize = 200;

/// The name of a stream: one service's commands, one environment's observations, ...
///
/// Allowed: 1 to 200 bytes of ASCII letters, digits and `-_.:/@`, not starting with `$`
/// (reserved for the store's own streams, as in KurrentDB).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamId(String);

impl StreamId {
    pub fn new(name: impl Into<String>) -> Result<Self, StoreError> {
        let name = name.into();
        let problem = if name.is_empty() {
            Some("must not be empty".to_string())
        } else if name.len() > MAX_STREAM_ID_LEN {
            Some(format!("must be at most {MAX_STREAM_ID_LEN} bytes"))
        } else if name.starts_with('$') {
            Some("must not start with '$' (reserved)".to_string())
        } else {
            name.chars()
                .find(|c| !(c.is_ascii_alphanumeric() || "-_.:/@".contains(*c)))
                .map(|bad| {
                    format!("contains {bad:?}; allowed are ASCII letters, digits and -_.:/@")
                })
        };
        match problem {
            Some(why) => Err(StoreError::InvalidStreamId { name, why }),
            None => Ok(StreamId(name)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for StreamId {
    type Error = StoreError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        StreamId::new(value)
    }
}

impl From<StreamId> for String {
    fn from(value: StreamId) -> Self {
        value.0
    }
}

/// An event's identity. Writers choose it (deterministically, when they may retry), so that
/// a retried append is recognised instead of written twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventId(pub Uuid);

impl EventId {
    pub fn random() -> Self {
        EventId(Uuid::new_v4())
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An event's place in its stream: dense, from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Revision(pub u64);

impl Revision {
    pub fn next(self) -> Revision {
        Revision(self.0 + 1)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An event's place in the whole log (`$all`). Totally ordered; callers treat it as opaque and
/// persist it as a token ([`Position::to_token`]). Two parts so that a KurrentDB
/// `(commit, prepare)` pair fits; the SQL backends use `(sequence, 0)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    commit: u64,
    prepare: u64,
}

impl Position {
    /// The position before every event: reading "after" it reads from the start.
    pub const START: Position = Position {
        commit: 0,
        prepare: 0,
    };

    pub fn new(commit: u64, prepare: u64) -> Self {
        Position { commit, prepare }
    }

    pub fn from_sequence(sequence: u64) -> Self {
        Position {
            commit: sequence,
            prepare: 0,
        }
    }

    pub fn sequence(self) -> u64 {
        self.commit
    }

    /// The commit part: a number that grows with the log, for lag metrics.
    pub fn commit(self) -> u64 {
        self.commit
    }

    /// The prepare part (KurrentDB's; 0 on the SQL backends).
    pub fn prepare(self) -> u64 {
        self.prepare
    }

    /// A stable text form, safe in URLs and `Last-Event-ID` headers.
    pub fn to_token(self) -> String {
        format!("{}-{}", self.commit, self.prepare)
    }

    pub fn from_token(token: &str) -> Result<Self, StoreError> {
        let invalid = || StoreError::InvalidPosition {
            token: token.to_string(),
        };
        let (commit, prepare) = token.split_once('-').ok_or_else(invalid)?;
        Ok(Position {
            commit: commit.parse().map_err(|_| invalid())?,
            prepare: prepare.parse().map_err(|_| invalid())?,
        })
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_token())
    }
}

impl FromStr for Position {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Position::from_token(s)
    }
}

impl Serialize for Position {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_token())
    }
}

impl<'de> Deserialize<'de> for Position {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let token = String::deserialize(deserializer)?;
        Position::from_token(&token).map_err(serde::de::Error::custom)
    }
}

/// What the writer believes about the stream; the append fails unless it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedRevision {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must have at least one event.
    StreamExists,
    /// The stream's last event must be at exactly this revision.
    Exact(Revision),
}

impl ExpectedRevision {
    /// Whether a stream whose last revision is `actual` satisfies this expectation.
    pub fn admits(self, actual: Option<Revision>) -> bool {
        match self {
            ExpectedRevision::Any => true,
            ExpectedRevision::NoStream => actual.is_none(),
            ExpectedRevision::StreamExists => actual.is_some(),
            ExpectedRevision::Exact(n) => actual == Some(n),
        }
    }

    /// The expectation a writer uses after reading a stream up to `last`.
    pub fn after(last: Option<Revision>) -> Self {
        match last {
            None => ExpectedRevision::NoStream,
            Some(r) => ExpectedRevision::Exact(r),
        }
    }
}

impl fmt::Display for ExpectedRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedRevision::Any => f.write_str("any"),
            ExpectedRevision::NoStream => f.write_str("no stream"),
            ExpectedRevision::StreamExists => f.write_str("stream exists"),
            ExpectedRevision::Exact(r) => write!(f, "revision {r}"),
        }
    }
}

/// Who caused an event and why; kept beside every event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// A person (`alice@example.com`) or a component (`roller`).
    pub actor: String,
    /// Shared by every event that one request caused, across streams.
    pub correlation_id: Uuid,
    /// The event (or command) that directly caused this one.
    pub causation_id: Option<Uuid>,
    /// When it happened, by the writer's clock. The store adds its own `recorded_at`.
    pub occurred_at: DateTime<Utc>,
}

/// An event to append.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    pub id: EventId,
    /// A stable name such as `release-requested`, never a Rust path.
    pub event_type: String,
    pub schema_version: u32,
    pub data: serde_json::Value,
    pub metadata: EventMetadata,
}

/// An event as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub stream: StreamId,
    pub revision: Revision,
    pub position: Position,
    pub recorded_at: DateTime<Utc>,
    pub id: EventId,
    pub event_type: String,
    pub schema_version: u32,
    pub data: serde_json::Value,
    pub metadata: EventMetadata,
}

/// Where a successful append left the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendResult {
    /// The revision of the batch's last event: pass it as `Exact` to append next.
    pub last_revision: Revision,
    /// The position of the batch's last event.
    pub position: Position,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// A page of one stream: from a revision (inclusive) in a direction, at most `limit` events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamRead {
    pub direction: Direction,
    /// `None` means the start (forward) or the end (backward).
    pub from: Option<Revision>,
    pub limit: usize,
}

impl StreamRead {
    pub fn forward(limit: usize) -> Self {
        StreamRead {
            direction: Direction::Forward,
            from: None,
            limit,
        }
    }

    pub fn backward(limit: usize) -> Self {
        StreamRead {
            direction: Direction::Backward,
            from: None,
            limit,
        }
    }

    pub fn from(mut self, revision: Revision) -> Self {
        self.from = Some(revision);
        self
    }
}

/// Which events of `$all` a reader wants. The default takes everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadFilter {
    pub stream_prefix: Option<String>,
    /// Empty means every type.
    pub event_types: Vec<String>,
}

impl ReadFilter {
    pub fn all() -> Self {
        ReadFilter::default()
    }

    pub fn stream_prefix(prefix: impl Into<String>) -> Self {
        ReadFilter {
            stream_prefix: Some(prefix.into()),
            event_types: Vec::new(),
        }
    }

    pub fn is_everything(&self) -> bool {
        self.stream_prefix.is_none() && self.event_types.is_empty()
    }

    pub fn matches(&self, event: &RecordedEvent) -> bool {
        self.stream_prefix
            .as_deref()
            .is_none_or(|p| event.stream.as_str().starts_with(p))
            && (self.event_types.is_empty() || self.event_types.contains(&event.event_type))
    }
}

/// What a subscription yields: history in commit order, a `CaughtUp`, then live events (on
/// KurrentDB a subscription that fell behind and caught up again yields another `CaughtUp`).
#[derive(Clone, Debug, PartialEq)]
pub enum SubscriptionMessage {
    Event(Box<RecordedEvent>),
    /// Everything committed when the subscription reached the head has been delivered.
    /// Carries the last position delivered or checkpointed (`None` for an empty log).
    CaughtUp(Option<Position>),
    /// A filtered subscription passed over events that did not match, up to here: save it
    /// as the checkpoint so a rare filter does not replay them after a restart.
    Checkpoint(Position),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_are_validated_with_a_reason() {
        for ok in ["svc", "service:checkout/env-v2@1", "a_b.c"] {
            assert!(StreamId::new(ok).is_ok(), "{ok}");
        }
        let cases = [
            ("", "must not be empty"),
            ("$all", "reserved"),
            ("has space", "contains ' '"),
            ("ünï", "contains 'ü'"),
        ];
        for (name, why) in cases {
            match StreamId::new(name) {
                Err(StoreError::InvalidStreamId { why: got, .. }) => {
                    assert!(got.contains(why), "{name:?}: {got}")
                }
                other => panic!("{name:?} accepted: {other:?}"),
            }
        }
        assert!(StreamId::new("x".repeat(MAX_STREAM_ID_LEN)).is_ok());
        assert!(StreamId::new("x".repeat(MAX_STREAM_ID_LEN + 1)).is_err());
        assert!(serde_json::from_str::<StreamId>("\"bad id\"").is_err());
    }

    #[test]
    fn positions_order_and_round_trip_as_tokens() {
        let a = Position::new(5, 9);
        let b = Position::new(6, 0);
        assert!(Position::START < a && a < b);
        assert_eq!(Position::from_token(&a.to_token()).unwrap(), a);
        assert_eq!(serde_json::to_string(&b).unwrap(), "\"6-0\"");
        for bad in [
            "",
            "5",
            "5-",
            "-5",
            "a-b",
            "1-2-3",
            "18446744073709551616-0",
        ] {
            assert!(Position::from_token(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn expectations_admit_the_right_heads() {
        use ExpectedRevision::*;
        let table = [
            (Any, None, true),
            (Any, Some(3), true),
            (NoStream, None, true),
            (NoStream, Some(0), false),
            (StreamExists, None, false),
            (StreamExists, Some(0), true),
            (Exact(Revision(2)), Some(2), true),
            (Exact(Revision(2)), Some(3), false),
            (Exact(Revision(0)), None, false),
        ];
        for (expected, head, admits) in table {
            assert_eq!(
                expected.admits(head.map(Revision)),
                admits,
                "{expected} vs {head:?}"
            );
        }
    }
}
