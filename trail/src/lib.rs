//! Trail: reads the event log (never writes to the roller's streams) and answers who changed
//! what, when and why, what ran at any moment, and how delivery is going.
//!
//! # Layout
//! - [`db`]: the projection store: audit rows, their checkpoint (committed together) and the
//!   chain checkpoints, behind the [`db::Projection`] trait; in trail's own SQLite file by
//!   default or in a PostgreSQL schema. The SQL is written once (`db::sql`) for both.
//! - [`runner`]: the projector: one catch-up subscription, batches, poison-event handling,
//!   in-memory release history and traffic timeline (folds from `ionroller-projections`).
//! - [`api`]: the query API, live feed, metrics and dashboard page.
//! - [`metrics`]: the gauges behind `/metrics`, through `prometheus-client`.
//! - [`rebuild`]: replays the log into a fresh projection and switches over.
//! - [`checkpoints`]: signed chain checkpoints, published to a directory (or another
//!   [`checkpoints::CheckpointSink`]) outside trail's database.
//! - [`verify`]: checks the projection against the log, and the log against the published
//!   checkpoints.
//! - [`views`]: the API's JSON bodies, from which its OpenAPI document is generated.

pub mod api;
pub mod checkpoints;
pub mod db;
pub mod metrics;
pub mod rebuild;
pub mod runner;
pub mod verify;
pub mod views;

use std::future::Future;
use std::sync::Arc;

use ionroller_shared::store::EventStore;

/// Who may read trail: the same tokens (and OIDC issuers) as the roller, folded from the log.
pub struct Access {
    pub auth: Arc<ionroller_auth::Authenticator>,
    /// `/metrics` without credentials.
    pub public_metrics: bool,
}

/// Runs the projector and the API on `listener` until `shutdown` resolves; with `anchoring`,
/// it also signs and publishes chain checkpoints. The dashboard links where `page` says (the
/// roller's console).
pub async fn serve(
    store: Arc<dyn EventStore>,
    db: db::TrailDb,
    anchoring: Option<checkpoints::Anchoring>,
    listener: ionroller_auth::tls::ServerListener,
    access: Access,
    page: api::Page,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let publisher = match anchoring {
        Some(anchoring) => Some(Arc::new(
            checkpoints::Publisher::resume(anchoring, &*db)
                .await
                .context("start publishing chain checkpoints")?,
        )),
        None => None,
    };
    let trail = runner::Trail::anchored(store, db, publisher);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut projector_stop = stop_rx.clone();
    let projector = tokio::spawn(trail.clone().run(async move {
        let _ = projector_stop.wait_for(|s| *s).await;
    }));
    let mut server_stop = stop_rx;
    let app = api::app_with_page(trail, access.auth, access.public_metrics, &page);
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = server_stop.wait_for(|s| *s).await;
    });
    let server = tokio::spawn(async move { server.await });
    shutdown.await;
    let _ = stop_tx.send(true);
    match projector.await {
        Ok(Err(e)) => tracing::error!(error = %e, "trail projector stopped"),
        Err(e) => tracing::error!(error = %e, "trail projector panicked"),
        Ok(Ok(())) => {}
    }
    // Open feeds (the live audit, dashboards) never end by themselves, and graceful shutdown
    // would wait for them for ever: after a short drain they are cut.
    let mut server = server;
    match tokio::time::timeout(DRAIN, &mut server).await {
        Ok(joined) => joined
            .context("join the trail API")?
            .context("serve the trail API")?,
        Err(_) => {
            tracing::info!("connections still open {DRAIN:?} after the stop were closed");
            server.abort();
        }
    }
    Ok(())
}

/// How long open connections may finish after a stop, before they are closed.
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(2);
