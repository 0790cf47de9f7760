//! Catch-up subscriptions for the SQL backends, built from `read_all` pages and a wake-up
//! signal. History and live events take the same path (a page read after the last position
//! delivered), so there is no hand-over between "catching up" and "live" to get wrong. That is
//! safe only because every backend makes positions visible in order (see the module docs of
//! [`super`]); this code never has to reason about gaps.

use std::collections::VecDeque;
use std::time::Duration;

use futures::stream::{BoxStream, StreamExt};
use tokio::sync::watch;

use super::{EventStore, Position, ReadFilter, StoreError, SubscriptionMessage};

const PAGE: usize = 512;

/// How long a caught-up subscriber sleeps without a wake-up before it looks again. Wake-ups
/// come from this process's commits (SQLite, PostgreSQL) and from other processes' commits
/// (PostgreSQL `LISTEN`); the timer only covers writers in other processes on one SQLite file
/// and a dropped notification connection.
const FALLBACK_POLL: Duration = Duration::from_millis(500);

struct State<S> {
    store: S,
    wake: watch::Receiver<u64>,
    wake_closed: bool,
    after: Option<Position>,
    filter: ReadFilter,
    buffer: VecDeque<SubscriptionMessage>,
    caught_up: bool,
    failed: bool,
}

pub fn subscribe<S: EventStore + Clone>(
    store: S,
    wake: watch::Receiver<u64>,
    after: Option<Position>,
    filter: ReadFilter,
) -> BoxStream<'static, Result<SubscriptionMessage, StoreError>> {
    let state = State {
        store,
        wake,
        wake_closed: false,
        after,
        filter,
        buffer: VecDeque::new(),
        caught_up: false,
        failed: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if st.failed {
                return None;
            }
            if let Some(message) = st.buffer.pop_front() {
                return Some((Ok(message), st));
            }
            if let Err(e) = st.fill().await {
                st.failed = true;
                return Some((Err(e), st));
            }
            if st.buffer.is_empty() {
                st.wait().await;
            }
        }
    })
    .boxed()
}

impl<S: EventStore> State<S> {
    /// Reads the next page into the buffer; adds `CaughtUp` the first time a page is empty.
    async fn fill(&mut self) -> Result<(), StoreError> {
        // Mark the wake-up value seen *before* reading, so a commit after the read wakes us.
        self.wake.borrow_and_update();
        // A filtered reader may pass over non-matching events up to the head. The head is read
        // before the page: everything at or below it is already visible to the page's read.
        let head = if self.filter.is_everything() {
            None
        } else {
            self.store.head().await?
        };
        let page = self.store.read_all(self.after, PAGE, &self.filter).await?;
        if let Some(last) = page.last() {
            self.after = Some(last.position);
            self.buffer.extend(
                page.into_iter()
                    .map(|e| SubscriptionMessage::Event(Box::new(e))),
            );
            return Ok(());
        }
        if let Some(head) = head {
            if Some(head) > self.after {
                self.after = Some(head);
                self.buffer.push_back(SubscriptionMessage::Checkpoint(head));
            }
        }
        if !self.caught_up {
            self.caught_up = true;
            self.buffer
                .push_back(SubscriptionMessage::CaughtUp(self.after));
        }
        Ok(())
    }

    async fn wait(&mut self) {
        if self.wake_closed {
            tokio::time::sleep(FALLBACK_POLL).await;
            return;
        }
        tokio::select! {
            changed = self.wake.changed() => self.wake_closed = changed.is_err(),
            _ = tokio::time::sleep(FALLBACK_POLL) => {}
        }
    }
}
