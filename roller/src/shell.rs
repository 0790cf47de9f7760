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

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ionroller_shared::config::ServiceConfig;
use ionroller_shared::events::ServiceEvent;
use ionroller_shared::store::lease::Fence;
use ionroller_shared::store::{EventStore, Position, StoreError};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

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
    deps: Arc<Deps>,
    services: BTreeMap<String, Arc<Cell>>,
    discovered_until: Option<Position>,
    /// At most this many services of one account-region reconcile at once.
    workers: Arc<Bulkheads>,
    /// A service's reconcile that takes longer is abandoned until its next turn. Abandoning is
    /// the same as a crash at that point: an intent without an outcome is executed next time.
    service_timeout: Duration,
    /// Reconciles started and not finished, whichever pass started them.
    running: JoinSet<()>,
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
    /// Set when the roller stops: no reconcile starts and no cloud action begins after it.
    stopping: Arc<AtomicBool>,
}

/// One service's place in the roller. Its slot's lock is held for the whole of a reconcile,
/// so a service is reconciled strictly one pass at a time, and a pass that finds it locked
/// knows it is still being reconciled and leaves it to that reconcile.
struct Cell {
    slot: Arc<tokio::sync::Mutex<Slot>>,
    /// Set when a wake found the service mid-reconcile: the command it announces was
    /// recorded after that reconcile read the log, so it reconciles once more right after.
    again: AtomicBool,
    /// Whether the service had a rollout under way when its last reconcile ended.
    rolling: AtomicBool,
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

impl Cell {
    fn new(service: &str) -> Arc<Self> {
        Arc::new(Cell {
            slot: Arc::new(tokio::sync::Mutex::new(Slot::new(service))),
            again: AtomicBool::new(false),
            rolling: AtomicBool::new(false),
        })
    }
}

/// Defaults: services reconcile eight at a time in each account-region, each within 60 s.
pub const DEFAULT_WORKERS: usize = 8;
pub const DEFAULT_SERVICE_TIMEOUT: Duration = Duration::from_secs(60);
/// On shutdown, reconciles under way get this long to finish before they are abandoned
/// (safe at any point, as above), so that a graceful stop hands leases over within seconds
/// even while a cloud call hangs.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

impl Roller {
    pub fn new(store: Arc<dyn EventStore>, cloud: Arc<dyn Cloud>, clock: Arc<dyn Clock>) -> Self {
        Roller {
            deps: Arc::new(Deps {
                store,
                cloud,
                clock,
                metrics: Arc::default(),
                replica: None,
                stopping: Arc::default(),
            }),
            services: BTreeMap::new(),
            discovered_until: None,
            workers: Arc::new(Bulkheads::new(DEFAULT_WORKERS)),
            service_timeout: DEFAULT_SERVICE_TIMEOUT,
            running: JoinSet::new(),
        }
    }

    /// For the builder methods, called before any pass: no reconcile holds the deps yet, so
    /// this copies nothing.
    fn deps_mut(&mut self) -> &mut Deps {
        Arc::make_mut(&mut self.deps)
    }

    /// Shares counters with the API's `/metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.deps_mut().metrics = metrics;
        self
    }

    /// Reconciles only the services whose shard `replica` holds the lease on, and fences
    /// every append and action with it. Without, the roller owns every service (a lone
    /// roller on its own log).
    pub fn with_replica(mut self, replica: Arc<Replica>) -> Self {
        self.deps_mut().replica = Some(replica);
        self
    }

    /// Reconciles up to `workers` services of each account-region at once (at least one),
    /// each within `timeout`.
    pub fn with_concurrency(mut self, workers: usize, timeout: Duration) -> Self {
        self.workers = Arc::new(Bulkheads::new(workers));
        self.service_timeout = timeout;
        self
    }

    /// Starts a pass every `interval`, and at once when `wake` is notified (a command was
    /// recorded: a promote or an abort should not wait for the interval). A pass starts the
    /// reconcile of every service that is not still being reconciled and does not wait for
    /// them: a service whose cloud calls hang holds up only itself (until its timeout), never
    /// the next pass of any other service.
    pub async fn run(
        mut self,
        interval: Duration,
        wake: Arc<tokio::sync::Notify>,
        shutdown: impl Future<Output = ()>,
    ) -> Stopped {
        tokio::pin!(shutdown);
        let mut woken = false;
        loop {
            match self.start_pass(woken).await {
                Ok(pass) => {
                    tokio::spawn(pass);
                }
                Err(e) => tracing::warn!(error = %e, "reconcile pass failed"),
            }
            let next = tokio::time::sleep(interval);
            tokio::pin!(next);
            let waited = loop {
                tokio::select! {
                    _ = &mut shutdown => break None,
                    _ = &mut next => break Some(false),
                    _ = wake.notified() => break Some(true),
                    // Reaps reconciles as they end, so the set holds only running ones.
                    Some(ended) = self.running.join_next(), if !self.running.is_empty() => {
                        report_panic(ended);
                    }
                }
            };
            match waited {
                Some(w) => woken = w,
                None => break,
            }
        }
        self.stop().await
    }

    /// Starts nothing more (no reconcile, no cloud action), waits a moment for the reconciles
    /// under way, then abandons the rest.
    async fn stop(&mut self) -> Stopped {
        self.deps.stopping.store(true, Ordering::SeqCst);
        let running = &mut self.running;
        let all_done = async {
            while let Some(ended) = running.join_next().await {
                report_panic(ended);
            }
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, all_done).await.is_ok() {
            return Stopped::Clean;
        }
        let abandoned = self.running.len();
        tracing::warn!(
            abandoned,
            "reconciles still running at shutdown are abandoned; their intents are executed by whoever reconciles the services next"
        );
        self.running.shutdown().await;
        Stopped::Abandoned(abandoned)
    }

    /// One reconcile pass over every known service, waiting for all of it: up to `workers`
    /// at once, each service strictly serial and bounded by the service timeout.
    pub async fn pass(&mut self) -> Result<(), RollerError> {
        let pass = self.start_pass(false).await?;
        pass.await;
        while let Some(ended) = self.running.try_join_next() {
            report_panic(ended);
        }
        Ok(())
    }

    /// Discovers new services and starts the reconcile of every service of this replica's that
    /// is not being reconciled already. The future it returns ends when they have all ended,
    /// and records the pass in the metrics.
    async fn start_pass(
        &mut self,
        woken: bool,
    ) -> Result<impl Future<Output = ()> + Send + 'static, RollerError> {
        let started = std::time::Instant::now();
        self.discover().await?;
        let mut ends = Vec::new();
        for (name, cell) in &self.services {
            if let Some(replica) = &self.deps.replica {
                if replica.fence(name).is_none() {
                    continue;
                }
            }
            // Set before the lock is tried: a reconcile that holds it reads `again` only after
            // letting the lock go, so it cannot miss this wake.
            if woken {
                cell.again.store(true, Ordering::SeqCst);
            }
            let Ok(slot) = cell.slot.clone().try_lock_owned() else {
                // Still being reconciled (by an earlier pass): that reconcile is this pass's
                // for the service, and after a wake it looks once more when it ends.
                continue;
            };
            let (done, ended) = tokio::sync::oneshot::channel::<()>();
            ends.push(ended);
            let (deps, name, cell) = (self.deps.clone(), name.clone(), cell.clone());
            let (workers, timeout) = (self.workers.clone(), self.service_timeout);
            self.running.spawn(async move {
                let _done = done;
                reconcile_turns(&deps, &workers, timeout, &name, &cell, slot).await;
            });
        }
        let deps = self.deps.clone();
        let cells: Vec<Arc<Cell>> = self.services.values().cloned().collect();
        Ok(async move {
            // An abandoned reconcile drops its sender too: the pass ends either way.
            futures::future::join_all(ends).await;
            let m = &deps.metrics;
            Metrics::add(&m.passes, 1);
            Metrics::set(&m.services, cells.len() as u64);
            let rolling = cells
                .iter()
                .filter(|c| c.rolling.load(Ordering::Relaxed))
                .count();
            Metrics::set(&m.rollouts_in_progress, rolling as u64);
            m.pass_took(started.elapsed());
        })
    }

    /// The service's state as its last reconcile left it; `None` if the service is unknown
    /// or being reconciled right now.
    pub fn state(&self, service: &str) -> Option<ServiceState> {
        self.with_state(service, ServiceState::clone)
    }

    /// `read` of the service's state as its last reconcile left it, without copying it;
    /// `None` as for [`Roller::state`].
    pub fn with_state<R>(&self, service: &str, read: impl FnOnce(&ServiceState) -> R) -> Option<R> {
        let cell = self.services.get(service)?;
        let slot = cell.slot.try_lock().ok()?;
        Some(read(&slot.state))
    }

    /// Finds services that saved a config since the last look.
    async fn discover(&mut self) -> Result<(), RollerError> {
        let (names, next) =
            log::discover_services(self.deps.store.as_ref(), self.discovered_until).await?;
        for name in names {
            self.services
                .entry(name.clone())
                .or_insert_with(|| Cell::new(&name));
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
        let cell = self
            .services
            .entry(service.to_string())
            .or_insert_with(|| Cell::new(service))
            .clone();
        let mut slot = cell.slot.lock().await;
        reconcile(&self.deps, service, &mut slot, fence.as_ref()).await
    }
}

/// Worker permits, `per` for each account-region (a service's region and the role it is
/// reached through, as its config names them): services of an account whose calls are slow,
/// throttled or held by the rate limit take workers from that account-region only, never from
/// the services of another.
struct Bulkheads {
    per: usize,
    by_target: std::sync::Mutex<HashMap<AccountRegion, Arc<Semaphore>>>,
}

/// A config's `aws.region` and `aws.role_arn`: where the driver sends its calls.
type AccountRegion = (Option<String>, Option<String>);

impl Bulkheads {
    fn new(per: usize) -> Self {
        Bulkheads {
            per: per.max(1),
            by_target: std::sync::Mutex::default(),
        }
    }

    fn of(&self, config: Option<&ServiceConfig>) -> Arc<Semaphore> {
        let target = config.map_or((None, None), |c| {
            (c.aws.region.clone(), c.aws.role_arn.clone())
        });
        let mut by_target = self
            .by_target
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        by_target
            .entry(target)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per)))
            .clone()
    }
}

/// How [`Roller::run`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Every reconcile had ended: nothing of this roller's is under way in the cloud.
    Clean,
    /// This many reconciles were cut off, possibly in the middle of a cloud call: whoever
    /// takes the services over should wait for the leases to expire rather than be handed
    /// them, so that a call already sent lands first.
    Abandoned(usize),
}

fn report_panic(ended: Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended {
        if e.is_panic() {
            tracing::error!(error = %e, "a service's reconcile panicked");
        }
    }
}

/// Counts a turn in `ionroller_reconcile_queue_depth` while it waits for a worker, however
/// the wait ends (a worker, an error, or the task abandoned at shutdown).
struct Queued<'a>(&'a Metrics);

impl<'a> Queued<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        metrics.queue_depth.inc();
        Queued(metrics)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.queue_depth.dec();
    }
}

/// A service's turn in a pass: a worker of its account-region, then its reconcile within the
/// timeout. A wake that came while it ran (`again`) gives it one more turn, queued behind the
/// services already waiting for a worker.
async fn reconcile_turns(
    deps: &Deps,
    workers: &Bulkheads,
    timeout: Duration,
    name: &str,
    cell: &Cell,
    mut slot: tokio::sync::OwnedMutexGuard<Slot>,
) {
    loop {
        if !reconcile_turn(deps, workers, timeout, name, cell, &mut slot).await {
            return;
        }
        drop(slot);
        if !cell.again.swap(false, Ordering::SeqCst) {
            return;
        }
        slot = match cell.slot.clone().try_lock_owned() {
            Ok(slot) => slot,
            // A new pass's turn has the service already.
            Err(_) => return,
        };
    }
}

/// One turn; false when it did not reconcile (the roller stops, the lease is gone, or the
/// service's log could not be read).
async fn reconcile_turn(
    deps: &Deps,
    workers: &Bulkheads,
    timeout: Duration,
    name: &str,
    cell: &Cell,
    slot: &mut Slot,
) -> bool {
    let queued = Queued::new(&deps.metrics);
    // Its account-region is in its config: a service not folded yet (its first turn) is
    // folded first, or it would wait in the wrong account-region's queue.
    if slot.state.revision.is_none() {
        if let Err(e) = catch_up(deps, name, slot).await {
            deps.metrics.reconcile_failed(name);
            tracing::warn!(service = %name, error = %e, "reconcile failed");
            return false;
        }
    }
    let bulkhead = workers.of(slot.state.latest_config().map(|c| &c.config));
    let Ok(_permit) = bulkhead.acquire().await else {
        return false; // never closed
    };
    drop(queued);
    if deps.stopping.load(Ordering::SeqCst) {
        return false;
    }
    // The lease as it is now, after what may have been a long wait for the worker.
    let fence = match &deps.replica {
        None => None,
        Some(replica) => match replica.fence(name) {
            Some(fence) => Some(fence),
            None => return false,
        },
    };
    // What this turn reads of the log from here on includes any command a wake announced.
    cell.again.store(false, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(timeout, reconcile(deps, name, slot, fence.as_ref())).await;
    deps.metrics.service_took(name, started.elapsed());
    let failure = match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!(
            "took longer than {timeout:?}; abandoned until its next turn"
        )),
    };
    if let Some(error) = failure {
        deps.metrics.reconcile_failed(name);
        tracing::warn!(service = %name, error, "reconcile failed");
    }
    cell.rolling
        .store(slot.state.rollout.is_some(), Ordering::Relaxed);
    true
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
        // Stopping: the intent stays without an outcome, for whoever reconciles the service
        // next (this process after a restart, or the replica that takes its shard).
        if deps.stopping.load(Ordering::SeqCst) {
            return Ok(());
        }
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
