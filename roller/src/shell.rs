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

use futures::StreamExt;
use ionroller_shared::events::ServiceEvent;
use ionroller_shared::store::lease::Fence;
use ionroller_shared::store::{EventStore, Position, StoreError};

use crate::clock::Clock;
use crate::cloud::Cloud;
use crate::log::{self, Appended};
use crate::metrics::Metrics;
use crate::replica::Replica;
use ionroller_core::observe::observation_failed;
use ionroller_core::{decide, observe, ServiceState};

pub use crate::log::{RollerError, ROLLER_ACTOR};

/// At most this many decide rounds per pass (see `reconcile`).
const DECISION_ROUNDS: usize = 4;

pub struct Roller {
    deps: Deps,
    services: BTreeMap<String, Slot>,
    discovered_until: Option<Position>,
    /// At most this many services reconcile at once.
    workers: usize,
    /// A service's reconcile that takes longer is abandoned until the next pass, so a hung or
    /// throttled cloud call delays no other service's pass beyond it. Abandoning is the same
    /// as a crash at that point: an intent without an outcome is executed on the next pass.
    service_timeout: Duration,
}

/// What every service's reconcile shares.
#[derive(Clone)]
struct Deps {
    store: Arc<dyn EventStore>,
    cloud: Arc<dyn Cloud>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// With replicas on one log: the leases that say which services are this one's.
    replica: Option<Arc<Replica>>,
}

/// One service's cached fold, and the revision it was last snapshotted (or loaded) at.
struct Slot {
    state: ServiceState,
    snapshotted: u64,
}

impl Slot {
    fn new(service: &str) -> Self {
        Slot {
            state: ServiceState::new(service),
            snapshotted: 0,
        }
    }
}

/// Defaults: services reconcile eight at a time, each within 60 s.
pub const DEFAULT_WORKERS: usize = 8;
pub const DEFAULT_SERVICE_TIMEOUT: Duration = Duration::from_secs(60);

impl Roller {
    pub fn new(store: Arc<dyn EventStore>, cloud: Arc<dyn Cloud>, clock: Arc<dyn Clock>) -> Self {
        Roller {
            deps: Deps {
                store,
                cloud,
                clock,
                metrics: Arc::default(),
                replica: None,
            },
            services: BTreeMap::new(),
            discovered_until: None,
            workers: DEFAULT_WORKERS,
            service_timeout: DEFAULT_SERVICE_TIMEOUT,
        }
    }

    /// Shares counters with the API's `/metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.deps.metrics = metrics;
        self
    }

    /// Reconciles only the services whose shard `replica` holds the lease on, and fences
    /// every append and action with it. Without, the roller owns every service (a lone
    /// roller on its own log).
    pub fn with_replica(mut self, replica: Arc<Replica>) -> Self {
        self.deps.replica = Some(replica);
        self
    }

    /// Reconciles up to `workers` services at once (at least one), each within `timeout`.
    pub fn with_concurrency(mut self, workers: usize, timeout: Duration) -> Self {
        self.workers = workers.max(1);
        self.service_timeout = timeout;
        self
    }

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

    /// One reconcile pass over every known service: up to `workers` at once, each service
    /// strictly serial (one reconcile of it at a time) and bounded by the service timeout.
    pub async fn pass(&mut self) -> Result<(), RollerError> {
        let started = std::time::Instant::now();
        self.discover().await?;
        let deps = &self.deps;
        let timeout = self.service_timeout;
        let mine: Vec<(&String, &mut Slot, Option<Fence>)> = self
            .services
            .iter_mut()
            .filter_map(|(name, slot)| match &deps.replica {
                None => Some((name, slot, None)),
                Some(replica) => replica.fence(name).map(|fence| (name, slot, Some(fence))),
            })
            .collect();
        Metrics::set(&deps.metrics.queue_depth, mine.len() as u64);
        // Boxed as `Send` futures first: a stream mapping borrowed slots straight into async
        // blocks trips the compiler's higher-ranked `Send` check when the pass is spawned.
        let reconciles: Vec<std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>>> = mine
            .into_iter()
            .map(
                |(name, slot, fence)| -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
                    Box::pin(async move {
                        deps.metrics.queue_depth.dec();
                        let started = std::time::Instant::now();
                        let result = tokio::time::timeout(
                            timeout,
                            reconcile(deps, name, slot, fence.as_ref()),
                        )
                        .await;
                        deps.metrics.service_took(name, started.elapsed());
                        let failure = match result {
                            Ok(Ok(())) => None,
                            Ok(Err(e)) => Some(e.to_string()),
                            Err(_) => Some(format!(
                                "took longer than {timeout:?}; abandoned until the next pass"
                            )),
                        };
                        if let Some(error) = failure {
                            deps.metrics.reconcile_failed(name);
                            tracing::warn!(service = %name, error, "reconcile failed");
                        }
                    })
                },
            )
            .collect();
        futures::stream::iter(reconciles)
            .buffer_unordered(self.workers)
            .collect::<Vec<()>>()
            .await;
        let m = &self.deps.metrics;
        Metrics::add(&m.passes, 1);
        Metrics::set(&m.services, self.services.len() as u64);
        let rolling = self
            .services
            .values()
            .filter(|s| s.state.rollout.is_some())
            .count();
        Metrics::set(&m.rollouts_in_progress, rolling as u64);
        m.pass_took(started.elapsed());
        Ok(())
    }

    pub fn state(&self, service: &str) -> Option<&ServiceState> {
        self.services.get(service).map(|s| &s.state)
    }

    /// Finds services that saved a config since the last look.
    async fn discover(&mut self) -> Result<(), RollerError> {
        let (names, next) =
            log::discover_services(self.deps.store.as_ref(), self.discovered_until).await?;
        for name in names {
            self.services
                .entry(name.clone())
                .or_insert_with(|| Slot::new(&name));
        }
        self.discovered_until = next;
        Ok(())
    }

    /// One service: finish recorded intents, observe, decide, act.
    /// With a replica, only while it holds the service's shard.
    pub async fn reconcile(&mut self, service: &str) -> Result<(), RollerError> {
        let fence = match &self.deps.replica {
            None => None,
            Some(replica) => match replica.fence(service) {
                Some(fence) => Some(fence),
                None => return Ok(()),
            },
        };
        let slot = self
            .services
            .entry(service.to_string())
            .or_insert_with(|| Slot::new(service));
        reconcile(&self.deps, service, slot, fence.as_ref()).await
    }
}

/// One service: finish recorded intents, observe, decide, act.
async fn reconcile(
    deps: &Deps,
    service: &str,
    slot: &mut Slot,
    fence: Option<&Fence>,
) -> Result<(), RollerError> {
    catch_up(deps, service, slot).await?;
    execute_pending(deps, service, slot, fence).await?;
    let Some(config) = slot.state.latest_config().map(|c| c.config.clone()) else {
        return Ok(());
    };
    match deps.cloud.observe(service, &config).await {
        Ok(view) => {
            let changes = observe(&slot.state, &view);
            if !append(deps, service, slot, fence, changes).await? {
                return Ok(());
            }
        }
        Err(e) => {
            tracing::warn!(service, error = %e, "observing the cloud failed");
            let events = observation_failed(&slot.state, &e.to_string());
            append(deps, service, slot, fence, events).await?;
            return Ok(());
        }
    }
    // Decide until the state settles: a decision that only moves the rollout along (say,
    // rollback-started) is followed in the same pass by the action it leads to, instead of
    // waiting one interval for it. Bounded, in case a bug made decisions never settle.
    let now = deps.clock.now();
    for _ in 0..DECISION_ROUNDS {
        let decisions = decide(&slot.state, now);
        let settled = decisions.is_empty()
            || decisions
                .iter()
                .any(|e| matches!(e, ServiceEvent::ActionIntended { .. }));
        if !append(deps, service, slot, fence, decisions).await? {
            return Ok(());
        }
        if settled {
            break;
        }
    }
    execute_pending(deps, service, slot, fence).await
}

async fn execute_pending(
    deps: &Deps,
    service: &str,
    slot: &mut Slot,
    fence: Option<&Fence>,
) -> Result<(), RollerError> {
    let pending: Vec<_> = slot
        .state
        .pending_actions()
        .map(|(id, r)| (*id, r.attempt, r.action.clone()))
        .collect();
    // An action is only ever intended for a configured service.
    let Some(config) = slot.state.latest_config().map(|c| c.config.clone()) else {
        return Ok(());
    };
    for (action_id, attempt, action) in pending {
        // The last word before the cloud: a replica whose lease lapsed (or was taken over)
        // while it was deciding or frozen stops here.
        if let (Some(replica), Some(fence)) = (&deps.replica, fence) {
            if !replica.holds(fence) {
                return Err(lease_lost(fence));
            }
        }
        tracing::info!(service, action = %action.describe(), attempt, "executing");
        let outcome = match deps
            .cloud
            .execute(service, &config, action_id, &action)
            .await
        {
            Ok(detail) => {
                deps.metrics.action_finished(service, true);
                ServiceEvent::ActionSucceeded {
                    action_id,
                    attempt,
                    detail,
                }
            }
            Err(e) => {
                deps.metrics.action_finished(service, false);
                tracing::warn!(service, action = %action.describe(), error = %e, "action failed");
                ServiceEvent::ActionFailed {
                    action_id,
                    attempt,
                    error: e.to_string(),
                    retryable: matches!(e, crate::cloud::CloudError::Unavailable(_)),
                }
            }
        };
        if !append(deps, service, slot, fence, vec![outcome]).await? {
            return Ok(());
        }
    }
    Ok(())
}

/// Appends at the exact revision folded so far. `Ok(false)` when someone else appended
/// first: the state is refreshed and the caller should decide again later.
async fn append(
    deps: &Deps,
    service: &str,
    slot: &mut Slot,
    fence: Option<&Fence>,
    events: Vec<ServiceEvent>,
) -> Result<bool, RollerError> {
    if events.is_empty() {
        return Ok(true);
    }
    let at = deps.clock.now();
    let appended = match (&deps.replica, fence) {
        (Some(replica), Some(fence)) => {
            let written = log::append_fenced(
                replica.store(),
                fence,
                &slot.state,
                &events,
                ROLLER_ACTOR,
                at,
            )
            .await;
            if let Err(StoreError::Fenced { .. }) = written {
                Metrics::add(&deps.metrics.fenced_appends, 1);
                replica.lost(fence);
                return Err(lease_lost(fence));
            }
            written?
        }
        _ => log::append(deps.store.as_ref(), &slot.state, &events, ROLLER_ACTOR, at).await?,
    };
    match appended {
        Appended::Written => Metrics::add(&deps.metrics.events_appended, events.len() as u64),
        Appended::Conflict => Metrics::add(&deps.metrics.append_conflicts, 1),
    }
    catch_up(deps, service, slot).await?;
    Ok(appended == Appended::Written)
}

fn lease_lost(fence: &Fence) -> RollerError {
    RollerError::LeaseLost {
        shard: fence.shard,
        epoch: fence.epoch,
    }
}

async fn catch_up(deps: &Deps, service: &str, slot: &mut Slot) -> Result<(), RollerError> {
    let store = deps.store.as_ref();
    log::catch_up(store, &mut slot.state).await?;
    let revision = slot.state.revision.map_or(0, |r| r.0);
    if revision >= slot.snapshotted + crate::snapshot::SNAPSHOT_EVERY {
        if let Err(e) = crate::snapshot::save(store, &slot.state, ROLLER_ACTOR).await {
            tracing::warn!(service, error = %e, "saving a snapshot failed");
        }
        slot.snapshotted = revision;
    }
    Ok(())
}
