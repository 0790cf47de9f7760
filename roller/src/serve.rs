//! The roller as one running service: the reconcile loop and the REST API on one listener,
//! stopped together. The caller (`ionroller up`, or a test) chooses the store, the cloud and
//! the listener; this module knows none of them concretely.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ionroller_shared::events::SERVICE_STREAM_PREFIX;
use ionroller_shared::store::lease::Leases;
use ionroller_shared::store::{EventStore, ReadFilter, SubscriptionMessage};

use crate::api::{self, AppState};
use crate::clock::Clock;
use crate::cloud::sim::SimCloud;
use crate::cloud::Cloud;
use crate::metrics::Metrics;
use crate::replica::Replica;
use crate::shell::Roller;

/// How the roller runs; every field is a choice the operator makes.
pub struct RollerConfig {
    /// Time between reconcile passes (a recorded command starts one at once).
    pub interval: Duration,
    /// Services reconciled at once; each within `shell::DEFAULT_SERVICE_TIMEOUT`.
    pub workers: usize,
    pub clock: Arc<dyn Clock>,
    /// Who may call the API: tokens from the log, and OIDC issuers if configured.
    pub auth: Arc<ionroller_auth::Authenticator>,
    /// `/metrics` without credentials.
    pub public_metrics: bool,
    /// Trail's URL, linked from the console when known.
    pub trail_url: Option<String>,
    /// With several roller processes on one log: this one's leases. `None` reconciles every
    /// service (the embedded store, which one process owns).
    pub replica: Option<ReplicaConfig>,
    /// What `/metrics` shows; shared with whatever else reports into it (the AWS driver's
    /// call counts).
    pub metrics: Arc<Metrics>,
    /// Where notifications go (`up --notifications FILE`); none: nobody is notified.
    pub notifications: Vec<crate::notify::Endpoint>,
}

/// One replica among several on a shared log.
pub struct ReplicaConfig {
    pub leases: Arc<dyn Leases>,
    /// Unique among the replicas: it is what the lease table and every intent name.
    pub holder: String,
    /// How long a lease lasts without renewal: a dead replica's services wait this long.
    pub ttl: Duration,
}

/// The cloud the roller drives. The simulator also gets its `/v1/sim/*` routes, which exist
/// only on a simulated cloud.
#[derive(Clone)]
pub enum CloudDriver {
    Simulated(SimCloud),
    Real(Arc<dyn Cloud>),
}

impl CloudDriver {
    fn cloud(&self) -> Arc<dyn Cloud> {
        match self {
            CloudDriver::Simulated(sim) => Arc::new(sim.clone()),
            CloudDriver::Real(cloud) => cloud.clone(),
        }
    }
}

/// Runs the reconcile loop and serves the API on `listener` until `shutdown` resolves, then
/// stops the loop (reconciles under way get a second), gives the leases up (or, if a reconcile
/// was cut off, leaves them to expire) and lets in-flight requests finish.
pub async fn serve(
    config: RollerConfig,
    store: Arc<dyn EventStore>,
    driver: CloudDriver,
    listener: ionroller_auth::tls::ServerListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cloud = driver.cloud();
    let metrics = config.metrics;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let replica = config
        .replica
        .map(|r| Arc::new(Replica::new(r.leases, r.holder, r.ttl).with_metrics(metrics.clone())));
    let mut roller = Roller::new(store.clone(), cloud.clone(), config.clock.clone())
        .with_metrics(metrics.clone())
        .with_concurrency(config.workers, crate::shell::DEFAULT_SERVICE_TIMEOUT);
    if let Some(replica) = &replica {
        roller = roller.with_replica(replica.clone());
    }
    let wake = Arc::new(tokio::sync::Notify::new());
    // Leases are given up only after the loop's last pass, so no pass acts on a shard that
    // another replica is already taking.
    let (leases_stop_tx, leases_stop_rx) = tokio::sync::oneshot::channel::<()>();
    // Commands recorded through another replica's API wake this loop too.
    let follower = replica.is_some().then(|| {
        let mut stop = stop_rx.clone();
        tokio::spawn(wake_on_commands(store.clone(), wake.clone(), async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        }))
    });
    let endpoints = config.notifications.clone();
    let notify_health = Arc::new(crate::notify::Health::default());
    let notifiers = crate::notify::spawn(
        store.clone(),
        config.notifications,
        metrics.clone(),
        notify_health.clone(),
        replica.clone(),
        stop_rx.clone(),
    );
    let replica_for_stop = replica.clone();
    let lease_task = replica.map(|replica| {
        tokio::spawn(replica.run(wake.clone(), async move {
            let _ = leases_stop_rx.await;
        }))
    });
    let mut roller_stop = stop_rx.clone();
    let roller_task = tokio::spawn(roller.run(config.interval, wake.clone(), async move {
        let _ = roller_stop.wait_for(|stopped| *stopped).await;
    }));
    let state = AppState::new(store, config.clock)
        .with_auth(config.auth)
        .with_public_metrics(config.public_metrics)
        .with_trail_url(config.trail_url)
        .with_wake(wake)
        .with_notifications(endpoints, notify_health)
        .with_metrics(metrics)
        .with_cloud(cloud);
    let extra = match driver {
        CloudDriver::Simulated(sim) => api::sim::routes(sim),
        CloudDriver::Real(_) => axum::Router::new(),
    };
    let router = api::app(state, extra);
    let mut server_stop = stop_rx;
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        let _ = server_stop.wait_for(|stopped| *stopped).await;
    });
    let server_task = tokio::spawn(async move { server.await });
    shutdown.await;
    let _ = stop_tx.send(true);
    match roller_task.await {
        Ok(crate::shell::Stopped::Clean) => {}
        Ok(crate::shell::Stopped::Abandoned(_)) => {
            if let Some(replica) = &replica_for_stop {
                replica.let_leases_expire();
            }
        }
        Err(e) => tracing::error!(error = %e, "the reconcile loop panicked"),
    }
    if let Some(follower) = follower {
        let _ = follower.await;
    }
    for notifier in notifiers {
        let _ = notifier.await;
    }
    let _ = leases_stop_tx.send(());
    if let Some(task) = lease_task {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "the lease keeper panicked");
        }
    }
    // Open feeds (SSE: `events --follow`, the console, dashboards) never end by themselves,
    // and graceful shutdown would wait for them for ever: after a short drain they are cut.
    let mut server_task = server_task;
    match tokio::time::timeout(DRAIN, &mut server_task).await {
        Ok(joined) => {
            joined.map_err(|e| std::io::Error::other(format!("the API server task failed: {e}")))?
        }
        Err(_) => {
            tracing::info!("connections still open {DRAIN:?} after the stop were closed");
            server_task.abort();
            Ok(())
        }
    }
}

/// How long open connections may finish after a stop, before they are closed.
pub const DRAIN: Duration = Duration::from_secs(2);

/// The event types a person's command records.
const COMMANDS: [&str; 7] = [
    "config-saved",
    "release-requested",
    "rollback-requested",
    "promote-requested",
    "pause-requested",
    "resume-requested",
    "abort-requested",
];

/// Follows the log from its head and wakes the loop on every command, whichever replica's
/// API recorded it: the replica that holds the service then acts at once, not at its next
/// interval. On PostgreSQL the subscription wakes on `NOTIFY`, so this costs no polling.
async fn wake_on_commands(
    store: Arc<dyn EventStore>,
    wake: Arc<tokio::sync::Notify>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let filter = ReadFilter {
        stream_prefix: Some(SERVICE_STREAM_PREFIX.to_string()),
        event_types: COMMANDS.iter().map(|t| t.to_string()).collect(),
    };
    let mut after = loop {
        match store.head().await {
            Ok(head) => break head,
            Err(e) => tracing::warn!(error = %e, "reading the log's head failed; retrying"),
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    };
    loop {
        let mut feed = store.subscribe_all(after, filter.clone());
        loop {
            let message = tokio::select! {
                _ = &mut shutdown => return,
                message = feed.next() => message,
            };
            match message {
                Some(Ok(SubscriptionMessage::Event(event))) => {
                    after = Some(event.position);
                    wake.notify_one();
                }
                Some(Ok(SubscriptionMessage::Checkpoint(at))) => after = Some(at),
                Some(Ok(SubscriptionMessage::CaughtUp(_))) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "following the log for commands failed; resubscribing");
                    break;
                }
                None => break,
            }
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
