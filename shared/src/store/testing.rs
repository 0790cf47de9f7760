//! Hooks that only tests use, kept in the library so that one conformance suite can drive
//! every backend the same way.

use async_trait::async_trait;
use tokio::sync::oneshot;

use super::{AppendResult, ExpectedRevision, NewEvent, StoreError, StreamId};

/// Backends that can hold an append's transaction open after its rows are written (and its
/// positions allocated) but before it commits. The conformance suite uses this to prove that
/// a slow commit never lets a reader see, and move past, a later position first.
#[async_trait]
pub trait HoldCommit {
    /// Returns once the append's rows are written inside its still-open transaction.
    async fn append_and_hold(
        &self,
        stream: &StreamId,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<HeldAppend, StoreError>;
}

/// An append whose transaction is open; [`HeldAppend::commit`] lets it finish.
pub struct HeldAppend {
    release: oneshot::Sender<()>,
    outcome: oneshot::Receiver<Result<AppendResult, StoreError>>,
}

impl HeldAppend {
    pub fn new() -> (
        Self,
        oneshot::Receiver<()>,
        oneshot::Sender<Result<AppendResult, StoreError>>,
    ) {
        let (release_tx, release_rx) = oneshot::channel();
        let (outcome_tx, outcome_rx) = oneshot::channel();
        (
            HeldAppend {
                release: release_tx,
                outcome: outcome_rx,
            },
            release_rx,
            outcome_tx,
        )
    }

    pub async fn commit(self) -> Result<AppendResult, StoreError> {
        let _ = self.release.send(());
        self.outcome
            .await
            .map_err(|_| StoreError::Unavailable("held append was dropped".into()))?
    }
}
