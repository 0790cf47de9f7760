//! The roller as one running service: the reconcile loop and the REST API on one listener,
//! stopped together. The caller (`ionroller up`, or a test) chooses the store, the cloud and
//! the listener; this module knows none of them concretely.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ionroller_shared::store::EventStore;

use crate::api::{self, AppState};
use crate::clock::Clock;
use crate::cloud::sim::SimCloud;
use crate::cloud::Cloud;
use crate::metrics::Metrics;
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
/// lets in-flight requests and the current pass finish.
pub async fn serve(
    config: RollerConfig,
    store: Arc<dyn EventStore>,
    driver: CloudDriver,
    listener: ionroller_auth::tls::ServerListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cloud = driver.cloud();
    let metrics = Arc::new(Metrics::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let roller = Roller::new(store.clone(), cloud.clone(), config.clock.clone())
        .with_metrics(metrics.clone())
        .with_concurrency(config.workers, crate::shell::DEFAULT_SERVICE_TIMEOUT);
    let mut roller_stop = stop_rx.clone();
    let wake = Arc::new(tokio::sync::Notify::new());
    let roller_task = tokio::spawn(roller.run(config.interval, wake.clone(), async move {
        let _ = roller_stop.wait_for(|stopped| *stopped).await;
    }));
    let state = AppState::new(store, config.clock)
        .with_auth(config.auth)
        .with_public_metrics(config.public_metrics)
        .with_trail_url(config.trail_url)
        .with_wake(wake)
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
    if let Err(e) = roller_task.await {
        tracing::error!(error = %e, "the reconcile loop panicked");
    }
    server_task
        .await
        .map_err(|e| std::io::Error::other(format!("the API server task failed: {e}")))?
}
