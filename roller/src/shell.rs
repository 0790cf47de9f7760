//! The imperative shell around the pure core: read new events, observe, decide, record intent,
//! act, record the outcome. Everything it knows comes from the log; the in-memory states are
//! caches of folds, rebuilt from the log on start.
//!
//! Crash safety: an action is executed only after its `action-intended` event is durable, and
//! a restarted roller executes every intent that has no outcome yet before deciding anything
//! else. Actions are idempotent (deterministic environment names), so an action that ran just
//! before a crash runs again harmlessly. Appends expect the exact revision the decision was
//! made at, so a concurrent command makes the roller re-read and re-decide instead of acting
//! on a stale state.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ionroller_shared::events::ServiceEvent;
use ionroller_shared::store::{EventStore, Position};

use crate::clock::Clock;
use crate::cloud::Cloud;
use crate::log::{self, Appended};
use crate::metrics::Metrics;
use ionroller_core::observe::observation_failed;
use ionroller_core::{decide, observe, ServiceState};

pub use crate::log::{RollerError, ROLLER_ACTOR};

/// At most this many decide rounds per pass (see `reconcile`).
const DECISION_ROUNDS: usize = 4;

pub struct Roller {
    store: Arc<dyn EventStore>,
    cloud: Arc<dyn Cloud>,
    clock: Arc<dyn Clock>,
    services: BTreeMap<String, ServiceState>,
    discovered_until: Option<Position>,
    /// The revision each service was last snapshotted (or loaded) at.
    snapshotted: BTreeMap<String, u64>,
    metrics: Arc<Metrics>,
}

impl Roller {
    pub fn new(store: Arc<dyn EventStore>, cloud: Arc<dyn Cloud>, clock: Arc<dyn Clock>) -> Self {
        Roller {
            store,
            cloud,
            clock,
            services: BTreeMap::new(),
            discovered_until: None,
            snapshotted: BTreeMap::new(),
            metrics: Arc::default(),
        }
    }

    /// Shares counters with the API's `/metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Reconciles every service each `interval` until `shutdown` resolves.
    /// Passes every `interval`, and at once when `wake` is notified (a command was recorded:
    /// a promote or an abort should not wait for the interval). A notification during a pass
    /// is kept, so the change it announces gets a pass of its own.
    pub async fn run(
        mut self,
        interval: Duration,
        wake: Arc<tokio::sync::Notify>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "reconcile pass failed");
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(interval) => {}
                _ = wake.notified() => {}
            }
        }
    }

    /// One reconcile pass over every known service.
    pub async fn pass(&mut self) -> Result<(), RollerError> {
        let started = std::time::Instant::now();
        self.discover().await?;
        let names: Vec<String> = self.services.keys().cloned().collect();
        for name in names {
            if let Err(e) = self.reconcile(&name).await {
                self.metrics.reconcile_failed(&name);
                tracing::warn!(service = %name, error = %e, "reconcile failed");
            }
        }
        let m = &self.metrics;
        Metrics::add(&m.passes, 1);
        Metrics::set(&m.services, self.services.len() as u64);
        let rolling = self
            .services
            .values()
            .filter(|s| s.rollout.is_some())
            .count();
        Metrics::set(&m.rollouts_in_progress, rolling as u64);
        m.pass_took(started.elapsed());
        Ok(())
    }

    pub fn state(&self, service: &str) -> Option<&ServiceState> {
        self.services.get(service)
    }

    /// Finds services that saved a config since the last look.
    async fn discover(&mut self) -> Result<(), RollerError> {
        let (names, next) =
            log::discover_services(self.store.as_ref(), self.discovered_until).await?;
        for name in names {
            self.services
                .entry(name.clone())
                .or_insert_with(|| ServiceState::new(&name));
        }
        self.discovered_until = next;
        Ok(())
    }

    /// One service: finish recorded intents, observe, decide, act.
    pub async fn reconcile(&mut self, service: &str) -> Result<(), RollerError> {
        self.catch_up(service).await?;
        self.execute_pending(service).await?;
        let Some(config) = self.fold(service).latest_config().map(|c| c.config.clone()) else {
            return Ok(());
        };
        match self.cloud.observe(service, &config).await {
            Ok(view) => {
                let changes = observe(self.fold(service), &view);
                if !self.append(service, changes).await? {
                    return Ok(());
                }
            }
            Err(e) => {
                tracing::warn!(service, error = %e, "observing the cloud failed");
                let events = observation_failed(self.fold(service), &e.to_string());
                self.append(service, events).await?;
                return Ok(());
            }
        }
        // Decide until the state settles: a decision that only moves the rollout along (say,
        // rollback-started) is followed in the same pass by the action it leads to, instead of
        // waiting one interval for it. Bounded, in case a bug made decisions never settle.
        let now = self.clock.now();
        for _ in 0..DECISION_ROUNDS {
            let decisions = decide(self.fold(service), now);
            let settled = decisions.is_empty()
                || decisions
                    .iter()
                    .any(|e| matches!(e, ServiceEvent::ActionIntended { .. }));
            if !self.append(service, decisions).await? {
                return Ok(());
            }
            if settled {
                break;
            }
        }
        self.execute_pending(service).await
    }

    fn fold(&mut self, service: &str) -> &ServiceState {
        self.services
            .entry(service.to_string())
            .or_insert_with(|| ServiceState::new(service))
    }

    async fn execute_pending(&mut self, service: &str) -> Result<(), RollerError> {
        let pending: Vec<_> = self
            .fold(service)
            .pending_actions()
            .map(|(id, r)| (*id, r.attempt, r.action.clone()))
            .collect();
        // An action is only ever intended for a configured service.
        let Some(config) = self.fold(service).latest_config().map(|c| c.config.clone()) else {
            return Ok(());
        };
        for (action_id, attempt, action) in pending {
            tracing::info!(service, action = %action.describe(), attempt, "executing");
            let outcome = match self
                .cloud
                .execute(service, &config, action_id, &action)
                .await
            {
                Ok(detail) => {
                    self.metrics.action_finished(service, true);
                    ServiceEvent::ActionSucceeded {
                        action_id,
                        attempt,
                        detail,
                    }
                }
                Err(e) => {
                    self.metrics.action_finished(service, false);
                    tracing::warn!(service, action = %action.describe(), error = %e, "action failed");
                    ServiceEvent::ActionFailed {
                        action_id,
                        attempt,
                        error: e.to_string(),
                        retryable: matches!(e, crate::cloud::CloudError::Unavailable(_)),
                    }
                }
            };
            if !self.append(service, vec![outcome]).await? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Appends at the exact revision folded so far. `Ok(false)` when someone else appended
    /// first: the state is refreshed and the caller should decide again later.
    async fn append(
        &mut self,
        service: &str,
        events: Vec<ServiceEvent>,
    ) -> Result<bool, RollerError> {
        if events.is_empty() {
            return Ok(true);
        }
        let at = self.clock.now();
        let store = self.store.clone();
        let state = self.fold(service);
        let appended = log::append(store.as_ref(), state, &events, ROLLER_ACTOR, at).await?;
        match appended {
            Appended::Written => Metrics::add(&self.metrics.events_appended, events.len() as u64),
            Appended::Conflict => Metrics::add(&self.metrics.append_conflicts, 1),
        }
        self.catch_up(service).await?;
        Ok(appended == Appended::Written)
    }

    async fn catch_up(&mut self, service: &str) -> Result<(), RollerError> {
        let store = self.store.clone();
        let state = self
            .services
            .entry(service.to_string())
            .or_insert_with(|| ServiceState::new(service));
        log::catch_up(store.as_ref(), state).await?;
        let revision = state.revision.map_or(0, |r| r.0);
        let last = self.snapshotted.entry(service.to_string()).or_insert(0);
        if revision >= *last + crate::snapshot::SNAPSHOT_EVERY {
            if let Err(e) = crate::snapshot::save(store.as_ref(), state, ROLLER_ACTOR).await {
                tracing::warn!(service, error = %e, "saving a snapshot failed");
            }
            *last = revision;
        }
        Ok(())
    }
}
