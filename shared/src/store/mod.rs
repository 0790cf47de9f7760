//! The append-only event log that roller and trail are folds over.
//!
//! One trait, [`EventStore`], with these guarantees from every backend (KurrentDB's
//! exceptions are marked; ARCHITECTURE's guarantees table says how each backend keeps each):
//! 1. a batch appended to one stream is atomic;
//! 2. expected-revision checks are exact and revisions are dense from 0;
//! 3. a retry with the same event ids (and the same `Exact` revision) is a no-op success,
//!    while a reused id with another payload is an [`StoreError::IdConflict`] (not on
//!    KurrentDB, which answers a reused id with the first write's result);
//! 4. `read_all` and subscriptions follow commit order with strictly increasing positions and
//!    never reveal a position lower than one already revealed (appends are serialised, and a
//!    position is allocated inside the lock that is held through commit);
//! 5. subscriptions resume after an exclusive position and always emit `CaughtUp`;
//! 6. `Ok` from `append` means durable (fsync'd; on KurrentDB, acknowledged by a quorum);
//! 7. `recorded_at` is kept to the microsecond (to the second on KurrentDB).
//!
//! Stores that several roller processes share also implement [`lease::Leases`]: leases on
//! shards of the services, with fenced appends.
//!
//! The backends are crates of their own (`stores/sqlite`, `stores/postgres`,
//! `stores/kurrentdb`); the conformance suite in `stores/tests/tests/conformance.rs` checks
//! all of this against each of them.

mod error;
mod fold;
pub mod lease;
pub mod plan;
#[cfg(feature = "subscription")]
pub mod subscription;
#[cfg(feature = "testing")]
pub mod testing;
mod types;

use async_trait::async_trait;
use futures::stream::BoxStream;

pub use error::StoreError;
pub use fold::fold_stream;
pub use types::*;

/// Default cap on one append's payload (data and metadata of all its events), in bytes.
pub const DEFAULT_MAX_APPEND_BYTES: usize = 4 * 1024 * 1024;

/// The event log. Object-safe: services hold an `Arc<dyn EventStore>`.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` atomically if `expected` holds.
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError>;

    /// One page of a stream. A stream with no events is [`StoreError::StreamNotFound`].
    async fn read_stream(
        &self,
        stream: &StreamId,
        read: StreamRead,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Up to `limit` events of the whole log after `after` (exclusive), in commit order.
    async fn read_all(
        &self,
        after: Option<Position>,
        limit: usize,
        filter: &ReadFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// History after `after` (exclusive), then [`SubscriptionMessage::CaughtUp`], then live
    /// events as they commit. The stream ends after yielding an error; resubscribe from the
    /// last position handled.
    fn subscribe_all(
        &self,
        after: Option<Position>,
        filter: ReadFilter,
    ) -> BoxStream<'static, Result<SubscriptionMessage, StoreError>>;

    /// The position of the last committed event, `None` for an empty log.
    async fn head(&self) -> Result<Option<Position>, StoreError>;

    /// A short human description: backend and location, for logs and `ionroller up`.
    fn describe(&self) -> String;
}
