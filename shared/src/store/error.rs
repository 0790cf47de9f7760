//! The store's one error type. Callers branch on it, so it is an enum, not a string.

use super::{EventId, ExpectedRevision, Revision, StreamId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream was not where the writer expected: someone else appended first.
    #[error("stream {stream}: expected {expected}, but its last revision is {}", actual.map_or("none (no stream)".to_string(), |r| r.to_string()))]
    WrongExpectedRevision {
        stream: StreamId,
        expected: ExpectedRevision,
        actual: Option<Revision>,
    },
    /// An event id is already stored with a different payload or at another place.
    #[error("event id {event_id} is already stored with a different payload or in another place (stream {stream})")]
    IdConflict { event_id: EventId, stream: StreamId },
    #[error("stream {0} not found")]
    StreamNotFound(StreamId),
    #[error("append of {size} bytes exceeds the limit of {limit} bytes; nothing was written")]
    TooLarge { size: usize, limit: usize },
    #[error("invalid stream id {name:?}: {why}")]
    InvalidStreamId { name: String, why: String },
    #[error("invalid position token {token:?}: expected two numbers joined by '-', e.g. 42-0")]
    InvalidPosition { token: String },
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    /// The backend could not be reached or gave up; retrying may succeed. For an append the
    /// outcome is unknown: retry with the same event ids and expected revision.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// A fenced append whose shard has passed to another holder (or a later epoch): nothing
    /// was written, and retrying cannot help; the writer has lost its lease.
    #[error("the lease on shard {shard} at epoch {epoch} is no longer held; nothing was written")]
    Fenced { shard: u32, epoch: u64 },
    /// The backend refused the call for a reason retrying cannot change: credentials,
    /// permissions, a server-side limit.
    #[error("event store refused: {0}")]
    Refused(String),
    /// Stored data that cannot be decoded. Never retried, never skipped.
    #[error("event store data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether the same call may succeed if made again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}
