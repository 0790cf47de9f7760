//! A command recorded on the shared log through any API wakes the replica that holds the
//! service at once. (Replicas SIGKILLed mid-rollout, as real processes: tests/tests/
//! replicas_killed.rs; frozen past their lease: tests/tests/replicas.rs.)

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ionroller_roller::api::{app, AppState};
use ionroller_roller::clock::{Clock, SystemClock};
use ionroller_roller::cloud::sim::SimCloud;
use ionroller_shared::store::EventStore;
use ionroller_store_postgres::{test_server_url as pg_url, PgOptions, PgStore};
use serde_json::{json, Value};

const LEASE_TTL: Duration = Duration::from_millis(1500);

struct Api {
    router: axum::Router,
    token: String,
}

impl Api {
    /// The first admin token on the log, as the first `up` creates it, and an API on `store`.
    async fn bootstrap(store: Arc<dyn EventStore>, clock: Arc<dyn Clock>) -> Api {
        let auth = ionroller_auth::Authenticator::new(store.clone());
        let mut token = String::new();
        auth.bootstrap_admin(clock.now(), |secret| {
            token = secret.to_string();
            Ok::<(), std::convert::Infallible>(())
        })
        .await
        .expect("admin token");
        Api {
            router: app(AppState::new(store, clock), axum::Router::new()),
            token,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        support::send(&self.router, request).await
    }
}

fn config(i: usize) -> String {
    include_str!("../../examples/hello.json")
        .replace("hello-lb", &format!("lb-{i}"))
        .replace("hello.example.com", &format!("svc-{i}.example.com"))
        .replace("hello-5xx", &format!("svc-{i}-5xx"))
        .replace("\"until_promoted\"", "\"1s\"")
        .replace("\"3s\"", "\"1s\"")
}

/// A command recorded anywhere on the shared log (here through an API that is not the
/// replica's own) wakes the replica holding the service at once: with a ten-minute interval,
/// the release still starts within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_recorded_elsewhere_wakes_the_replica_that_holds_the_service() {
    let Some(url) = pg_url() else {
        return;
    };
    let schema = format!("w_{}", uuid::Uuid::new_v4().simple());
    let dir = tempfile::tempdir().expect("tempdir");
    let sim_file = dir.path().join("sim-cloud.json");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let pg = Arc::new(
        PgStore::open(PgOptions::new(&url).schema(&schema))
            .await
            .expect("open the log"),
    );
    let store: Arc<dyn EventStore> = pg.clone();
    let api = Api::bootstrap(store.clone(), clock.clone()).await;
    let sim = SimCloud::open(&sim_file, clock.clone())
        .expect("sim")
        .with_caller("solo");
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let listener = ionroller_auth::tls::ServerListener::plain(tcp).expect("listener");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ionroller_roller::serve(
        ionroller_roller::RollerConfig {
            interval: Duration::from_secs(600),
            workers: 4,
            clock: clock.clone(),
            auth: Arc::new(ionroller_auth::Authenticator::new(store.clone())),
            public_metrics: false,
            trail_url: None,
            replica: Some(ionroller_roller::ReplicaConfig {
                leases: pg.clone(),
                holder: "solo".into(),
                ttl: LEASE_TTL,
            }),
            metrics: Arc::default(),
            notifications: Vec::new(),
        },
        store.clone(),
        ionroller_roller::CloudDriver::Simulated(sim.clone()),
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    // Let the replica take its leases and finish the passes that taking them started.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let config: Value = serde_json::from_str(&config(0)).expect("config");
    let (status, body) = api.call("PUT", "/v1/services/svc-0/config", config).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api
        .call(
            "POST",
            "/v1/services/svc-0/releases",
            json!({ "version": "v1" }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !sim.calls().iter().any(|c| c.action.starts_with("create")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the release waited for the ten-minute interval"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    server.await.expect("join").expect("serve");
}
