//! The projector: one catch-up subscription from the last checkpoint; history and live events
//! take the same path. Each batch becomes audit rows committed with the checkpoint in one
//! transaction; only after that are the in-memory folds (release history, traffic timeline)
//! advanced and the rows published to the live feed.
//!
//! A poison event (a known type whose data does not decode) stops projecting at that
//! position with a clear error; nothing after it is projected, nothing is skipped. Events of
//! types this build does not know are recorded as they are.

use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use ionroller_projections::audit::{AuditChain, AuditRow};
use ionroller_projections::releases::ReleaseHistory;
use ionroller_projections::timeline::TrafficTimeline;
use ionroller_shared::events::ServiceEvent;
use ionroller_shared::store::{
    EventId, EventMetadata, EventStore, Position, ReadFilter, RecordedEvent, Revision, StreamId,
    SubscriptionMessage,
};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::checkpoints::Publisher;
use crate::db::{Checkpoint, DbError, TrailDb};
use crate::metrics::TrailMetrics;

const BATCH: usize = 1000;

/// The folds kept in memory, rebuilt from the audit rows at start.
#[derive(Default)]
pub struct Folds {
    pub releases: ReleaseHistory,
    pub timeline: TrafficTimeline,
}

impl Folds {
    fn apply(&mut self, event: &RecordedEvent) -> Result<(), String> {
        let decoded = ServiceEvent::from_recorded(event)?;
        self.apply_decoded(event, decoded.as_ref());
        Ok(())
    }

    fn apply_decoded(&mut self, event: &RecordedEvent, decoded: Option<&ServiceEvent>) {
        self.releases.apply_decoded(event, decoded);
        self.timeline.apply_decoded(event, decoded);
    }
}

#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Status {
    pub caught_up: bool,
    pub checkpoint: Option<String>,
    pub rows: u64,
    /// Set when a poison event stopped the projection.
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrailError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("event at position {position} ({event_type}) cannot be projected: {why}")]
    Poison {
        position: Position,
        event_type: String,
        why: String,
    },
    #[error("internal: {0}")]
    Internal(String),
}

pub struct Trail {
    pub store: Arc<dyn EventStore>,
    pub db: TrailDb,
    pub folds: Arc<RwLock<Folds>>,
    pub feed: broadcast::Sender<AuditRow>,
    pub status: Arc<Mutex<Status>>,
    pub metrics: TrailMetrics,
    /// Signs and publishes chain checkpoints outside the database, when configured.
    pub publisher: Option<Arc<Publisher>>,
}

impl Trail {
    pub fn new(store: Arc<dyn EventStore>, db: TrailDb) -> Arc<Self> {
        Self::anchored(store, db, None)
    }

    /// A trail that also publishes signed checkpoints through `publisher`.
    pub fn anchored(
        store: Arc<dyn EventStore>,
        db: TrailDb,
        publisher: Option<Arc<Publisher>>,
    ) -> Arc<Self> {
        let (feed, _) = broadcast::channel(4096);
        Arc::new(Trail {
            store,
            db,
            folds: Arc::default(),
            feed,
            status: Arc::default(),
            metrics: TrailMetrics::default(),
            publisher,
        })
    }

    /// Refolds the in-memory read models from the stored audit rows.
    async fn load_folds(&self) -> Result<(), TrailError> {
        let mut folds = Folds::default();
        let mut after = 0;
        loop {
            let page = self.db.rows_after(after, 5000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for row in &page {
                let event = row_event(row)?;
                folds.apply(&event).map_err(|why| TrailError::Poison {
                    position: event.position,
                    event_type: event.event_type.clone(),
                    why,
                })?;
            }
        }
        if let Ok(mut f) = self.folds.write() {
            *f = folds;
        }
        Ok(())
    }

    /// Projects until `shutdown` resolves or a poison event stops it.
    pub async fn run(
        self: Arc<Self>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), TrailError> {
        tokio::pin!(shutdown);
        self.load_folds().await?;
        // While the log is quiet, queued rows still get their checkpoint once the interval
        // has passed: this tick is what notices.
        let tick_every = self
            .publisher
            .as_ref()
            .map_or(Duration::from_secs(3600), |p| {
                (p.anchoring().interval / 4).max(Duration::from_millis(50))
            });
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let checkpoint = self.db.checkpoint().await?;
            self.set_status(|s| {
                s.checkpoint = checkpoint.position.map(|p| p.to_token());
                s.rows = checkpoint.seq;
            });
            let mut chain = self.resume_chain(&checkpoint);
            let mut subscription = self
                .store
                .subscribe_all(checkpoint.position, ReadFilter::all());
            let mut batch: Vec<RecordedEvent> = Vec::new();
            loop {
                let message = if batch.is_empty() {
                    tokio::select! {
                        _ = &mut shutdown => return Ok(()),
                        m = subscription.next() => m,
                        _ = tick.tick() => {
                            if let Some(publisher) = &self.publisher {
                                publisher.publish_due().await;
                            }
                            continue;
                        }
                    }
                } else {
                    match tokio::time::timeout(Duration::from_millis(20), subscription.next()).await
                    {
                        Ok(m) => m,
                        Err(_) => {
                            self.flush(&mut chain, &mut batch).await?;
                            continue;
                        }
                    }
                };
                match message {
                    Some(Ok(SubscriptionMessage::Event(e))) => {
                        batch.push(*e);
                        if batch.len() >= BATCH {
                            self.flush(&mut chain, &mut batch).await?;
                        }
                    }
                    Some(Ok(SubscriptionMessage::CaughtUp(_))) => {
                        self.flush(&mut chain, &mut batch).await?;
                        self.set_status(|s| s.caught_up = true);
                    }
                    Some(Ok(SubscriptionMessage::Checkpoint(_))) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "trail subscription failed; resubscribing");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        break;
                    }
                    None => break,
                }
            }
        }
    }

    /// The chain after the checkpoint's row, knowing each service's rollout in progress (from
    /// the release history, which is folded up to the same row) so that the rows still to
    /// come of a rollout carry its version.
    fn resume_chain(&self, checkpoint: &Checkpoint) -> AuditChain {
        let mut chain = AuditChain::resume(checkpoint.seq, checkpoint.head);
        if let Ok(folds) = self.folds.read() {
            let mut last = std::collections::BTreeMap::new();
            for release in &folds.releases.releases {
                last.insert(release.service.as_str(), release);
            }
            for (service, release) in last {
                if release.outcome.is_none() {
                    chain = chain.with_rollout(service, release.rollout_id, &release.to_version);
                }
            }
        }
        chain
    }

    fn set_status(&self, f: impl FnOnce(&mut Status)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    async fn flush(
        &self,
        chain: &mut AuditChain,
        batch: &mut Vec<RecordedEvent>,
    ) -> Result<(), TrailError> {
        if batch.is_empty() {
            return Ok(());
        }
        let start = chain.clone();
        let mut rows = Vec::with_capacity(batch.len());
        let mut poison = None;
        let mut projected = Vec::with_capacity(batch.len());
        for event in batch.drain(..) {
            // Decoded once here; the audit row and the folds reuse it.
            let decoded = match ServiceEvent::from_recorded(&event) {
                Ok(decoded) => decoded,
                Err(why) => {
                    poison = Some(TrailError::Poison {
                        position: event.position,
                        event_type: event.event_type.clone(),
                        why,
                    });
                    break;
                }
            };
            rows.push(chain.row_decoded(&event, decoded.as_ref()));
            projected.push((event, decoded));
        }
        if let Some((last, _)) = projected.last() {
            let checkpoint = Checkpoint {
                position: Some(last.position),
                seq: chain.seq,
                head: chain.head,
            };
            if let Err(e) = self.db.commit(&rows, &checkpoint).await {
                *chain = start; // The rows are not stored: the chain goes back with them.
                return Err(e.into());
            }
            if let Ok(mut folds) = self.folds.write() {
                for (event, decoded) in &projected {
                    folds.apply_decoded(event, decoded.as_ref());
                }
            }
            self.set_status(|s| {
                s.checkpoint = Some(last.position.to_token());
                s.rows = chain.seq;
            });
            if let Some(publisher) = &self.publisher {
                publisher.offer(&rows).await;
            }
            for row in rows {
                let _ = self.feed.send(row);
            }
        }
        match poison {
            Some(e) => {
                tracing::error!(error = %e, "trail stopped at a poison event");
                self.set_status(|s| s.error = Some(e.to_string()));
                Err(e)
            }
            None => Ok(()),
        }
    }
}

/// The event an audit row records, as far as the read-model folds need it.
fn row_event(row: &AuditRow) -> Result<RecordedEvent, DbError> {
    let corrupt = |what: &str| DbError::Corrupt(format!("row {}: {what}", row.seq));
    Ok(RecordedEvent {
        stream: StreamId::new(row.stream.clone()).map_err(|_| corrupt("stream"))?,
        revision: Revision(row.revision),
        position: Position::from_token(&row.position).map_err(|_| corrupt("position"))?,
        recorded_at: row.recorded_at,
        id: EventId(uuid::Uuid::nil()),
        event_type: row.event_type.clone(),
        schema_version: 1,
        data: row.data.clone(),
        metadata: EventMetadata {
            actor: row.actor.clone(),
            correlation_id: uuid::Uuid::nil(),
            causation_id: None,
            occurred_at: row.occurred_at,
        },
    })
}
