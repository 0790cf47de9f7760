//! A roller wired to a real SQLite log and the simulated cloud on a manual clock, driven
//! pass by pass, with the API as a `Router` called in-process.
#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use ionroller_roller::api::{app, AppState};
use ionroller_roller::clock::{Clock, ManualClock};
use ionroller_roller::cloud::sim::{SimCloud, SimSettings};
use ionroller_roller::shell::Roller;
use ionroller_shared::store::EventStore;
use ionroller_store_sqlite::{SqliteOptions, SqliteStore};
use serde_json::Value;
use tower::ServiceExt;

pub struct World {
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn EventStore>,
    pub clock: Arc<ManualClock>,
    pub sim: SimCloud,
    pub roller: Roller,
    pub router: axum::Router,
    /// The admin token every call sends, created on the first call.
    pub token: tokio::sync::OnceCell<String>,
    /// Notified by the API when it records a command, as `up` wires it.
    pub wake: Arc<tokio::sync::Notify>,
}

pub fn start() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("valid time")
}

impl World {
    pub fn create() -> Self {
        World::create_with(|sim| Arc::new(sim), |roller| roller)
    }

    /// A world whose roller drives `cloud(sim)` (say, the simulator behind a wrapper that
    /// delays it) and is set up further by `roller`.
    pub fn create_with(
        cloud: impl FnOnce(SimCloud) -> Arc<dyn ionroller_roller::cloud::Cloud>,
        roller: impl FnOnce(Roller) -> Roller,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store: Arc<dyn EventStore> = Arc::new(
            SqliteStore::open(dir.path().join("events.sqlite"), SqliteOptions::default())
                .expect("open store"),
        );
        let clock = Arc::new(ManualClock::new(start()));
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let sim = SimCloud::open(dir.path().join("sim.json"), dyn_clock.clone()).expect("open sim");
        sim.set_settings(SimSettings {
            launch_secs: 2.0,
            healthy_secs: 1.0,
        })
        .expect("sim settings");
        let metrics = Arc::new(ionroller_roller::metrics::Metrics::default());
        let roller = roller(
            Roller::new(store.clone(), cloud(sim.clone()), dyn_clock.clone())
                .with_metrics(metrics.clone()),
        );
        let wake = Arc::new(tokio::sync::Notify::new());
        let router = app(
            AppState::new(store.clone(), dyn_clock)
                .with_metrics(metrics)
                .with_wake(wake.clone()),
            ionroller_roller::api::sim::routes(sim.clone()),
        );
        World {
            dir,
            store,
            clock,
            sim,
            roller,
            router,
            token: tokio::sync::OnceCell::new(),
            wake,
        }
    }

    /// The admin token, created in the log on first use as the first `up` would.
    pub async fn token(&self) -> String {
        self.token
            .get_or_init(|| async {
                let auth = ionroller_auth::Authenticator::new(self.store.clone());
                let mut kept = String::new();
                auth.bootstrap_admin(start(), |secret| {
                    kept = secret.to_string();
                    Ok::<(), std::convert::Infallible>(())
                })
                .await
                .expect("create the admin token");
                kept
            })
            .await
            .clone()
    }

    /// Calls the API in-process; returns the status and JSON body.
    pub async fn call(&self, method: &str, path: &str, body: &str) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", self.token().await))
            .body(Body::from(body.to_string()))
            .expect("request");
        self.send(request).await
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        send(&self.router, request).await
    }

    /// Calls the API in-process with raw bytes and the Content-Type given (none if `None`).
    pub async fn call_raw(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {}", self.token().await));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let request = request.body(Body::from(body)).expect("request");
        self.send(request).await
    }

    pub async fn save_config(&self, config: &str) {
        let (status, body) = self.call("PUT", "/v1/services/hello/config", config).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// Advances the clock by `secs` and runs one reconcile pass.
    pub async fn tick(&mut self, secs: i64) {
        self.clock.advance(chrono::Duration::seconds(secs));
        self.roller.pass().await.expect("reconcile pass");
    }

    pub async fn status(&self) -> Value {
        let (status, body) = self.call("GET", "/v1/services/hello", "").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

pub const HELLO: &str = include_str!("../../../examples/hello.json");

/// Sends `request` to `router`; returns the status and the JSON body (or its text).
pub async fn send(router: &axum::Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("router answers");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}
