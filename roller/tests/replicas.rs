//! Three roller replicas on one real PostgreSQL log and one simulated cloud (a shared file,
//! each replica through its own handle, as each would reach AWS), with replicas killed at
//! random moments (their tasks dropped mid-await: no goodbye, leases left to expire) and
//! replaced, over 50 services releasing twice, a fifth of them hit by their alarm during the
//! second release. Every rollout converges (alarmed ones back on v1); no acknowledged release
//! is lost; every environment is created exactly once; an action is executed again only
//! where a kill cut it off before its outcome was recorded; and the log proves the fencing:
//! per shard, the epochs on recorded intents never go back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use ionroller_roller::api::{app, AppState};
use ionroller_roller::clock::{Clock, SystemClock};
use ionroller_roller::cloud::sim::{SimCloud, SimSettings};
use ionroller_roller::replica::Replica;
use ionroller_roller::shell::Roller;
use ionroller_shared::events::{service_of, AlarmState, ServiceEvent};
use ionroller_shared::store::lease::{shard_of, Leases};
use ionroller_shared::store::{EventStore, ReadFilter};
use ionroller_store_postgres::{PgOptions, PgStore};
use serde_json::{json, Value};
use tower::ServiceExt;

const SERVICES: usize = 50;
/// Every this-many-th service's alarm fires during the second release: it rolls back.
const ALARMED_EVERY: usize = 5;
const LEASE_TTL: Duration = Duration::from_millis(1500);
const KILLS: usize = 8;

fn pg_url() -> Option<String> {
    match std::env::var("IONROLLER_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").is_err(),
                "IONROLLER_TEST_PG_URL is not set in CI: run the tests through scripts/test.sh"
            );
            eprintln!("*** SKIPPING: IONROLLER_TEST_PG_URL is not set ***");
            None
        }
    }
}

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
        let response = self
            .router
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
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

/// A running replica: its reconcile loop and its lease keeper, both dropped on a kill.
struct Running {
    id: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    async fn start(url: &str, schema: &str, sim_file: &std::path::Path, id: String) -> Running {
        let pg = Arc::new(
            PgStore::open(PgOptions::new(url).schema(schema))
                .await
                .expect("open the log"),
        );
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let sim = SimCloud::open(sim_file, clock.clone())
            .expect("open the shared simulated cloud")
            .with_caller(id.clone());
        let leases: Arc<dyn Leases> = pg.clone();
        let replica = Arc::new(Replica::new(leases, id.clone(), LEASE_TTL));
        let roller = Roller::new(pg, Arc::new(sim), clock)
            .with_concurrency(4, Duration::from_secs(10))
            .with_replica(replica.clone());
        let wake = Arc::new(tokio::sync::Notify::new());
        let never = std::future::pending::<()>();
        let tasks = vec![
            tokio::spawn(replica.run(wake.clone(), std::future::pending::<()>())),
            tokio::spawn(roller.run(Duration::from_millis(200), wake, never)),
        ];
        Running { id, tasks }
    }

    fn kill(self) {
        for task in self.tasks {
            task.abort();
        }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_killed_at_random_converge_with_each_action_fenced_and_done_once() {
    let Some(url) = pg_url() else {
        return;
    };
    let schema = format!("r_{}", uuid::Uuid::new_v4().simple());
    let dir = tempfile::tempdir().expect("tempdir");
    let sim_file = dir.path().join("sim-cloud.json");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    SimCloud::open(&sim_file, clock.clone())
        .expect("sim")
        .set_settings(SimSettings {
            launch_secs: 0.4,
            healthy_secs: 0.2,
        })
        .expect("sim settings");
    let store: Arc<dyn EventStore> = Arc::new(
        PgStore::open(PgOptions::new(&url).schema(&schema))
            .await
            .expect("open the log"),
    );
    let api = Api::bootstrap(store.clone(), clock.clone()).await;
    let names: Vec<String> = (0..SERVICES).map(|i| format!("svc-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let config: Value = serde_json::from_str(&config(i)).expect("config JSON");
        let (status, body) = api
            .call("PUT", &format!("/v1/services/{name}/config"), config)
            .await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
    }

    let mut next_id = 0;
    let start = |next_id: &mut usize| {
        *next_id += 1;
        format!("replica-{next_id}")
    };
    let mut running = Vec::new();
    for _ in 0..3 {
        let id = start(&mut next_id);
        running.push(Running::start(&url, &schema, &sim_file, id).await);
    }
    let alarmed = |i: usize| i.is_multiple_of(ALARMED_EVERY);
    // Every release the API acknowledged, by service: none may be lost.
    let mut acknowledged: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for version in ["v1", "v2"] {
        for name in &names {
            let (status, body) = api
                .call(
                    "POST",
                    &format!("/v1/services/{name}/releases"),
                    json!({ "version": version }),
                )
                .await;
            assert_eq!(status, StatusCode::ACCEPTED, "{name} {version}: {body}");
            let id = body["rollout_id"].as_str().expect("a rollout id");
            acknowledged
                .entry(name.clone())
                .or_default()
                .push(id.to_string());
        }
        if version == "v2" {
            // Alarms fire while v2 rolls out and replicas are being killed.
            let sim = SimCloud::open(&sim_file, clock.clone()).expect("sim");
            for i in (0..SERVICES).filter(|i| alarmed(*i)) {
                sim.set_alarm(&format!("svc-{i}-5xx"), AlarmState::Alarm, None, Some(9.0))
                    .expect("alarm");
            }
        }
        // Kills while these releases roll out: a random replica, at a random moment.
        for k in 0..KILLS / 2 {
            let pause = 300 + (k * 677 + version.len() * 131) % 1500;
            tokio::time::sleep(Duration::from_millis(pause as u64)).await;
            let victim = (k * 7 + next_id) % running.len();
            running.remove(victim).kill();
            let id = start(&mut next_id);
            running.push(Running::start(&url, &schema, &sim_file, id).await);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        for (i, name) in names.iter().enumerate() {
            // An alarmed service rolls back to v1; every other one finishes its release.
            let expected = if version == "v2" && alarmed(i) {
                "v1"
            } else {
                version
            };
            loop {
                let (_, s) = api
                    .call("GET", &format!("/v1/services/{name}"), Value::Null)
                    .await;
                if s["stable_version"] == expected && s["rollout"].is_null() {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{name} did not converge on {version}: {s}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    // No acknowledged release was lost: each one has its outcome in the service's history,
    // and an alarmed service's v2 was rolled back.
    for (i, name) in names.iter().enumerate() {
        let (_, s) = api
            .call("GET", &format!("/v1/services/{name}"), Value::Null)
            .await;
        let history = s["history"].as_array().expect("history");
        for id in &acknowledged[name] {
            assert!(
                history.iter().any(|r| r["id"] == id.as_str()),
                "{name}: release {id} was acknowledged but has no outcome: {history:?}"
            );
        }
        let v2 = history
            .iter()
            .find(|r| r["version"] == "v2")
            .expect("v2's outcome");
        let outcome = if alarmed(i) {
            "rolled_back"
        } else {
            "completed"
        };
        assert_eq!(v2["outcome"], outcome, "{name}: {v2}");
    }
    let live: Vec<String> = running.iter().map(|r| r.id.clone()).collect();
    for r in running {
        r.kill();
    }

    // The simulator's own record: every environment created exactly once.
    let sim = SimCloud::open(&sim_file, clock).expect("sim");
    let calls = sim.calls();
    let mut creates: BTreeMap<String, usize> = BTreeMap::new();
    for call in calls
        .iter()
        .filter(|c| c.effective && c.action.starts_with("create"))
    {
        *creates.entry(call.action.clone()).or_default() += 1;
    }
    // (An alarmed service may roll back before its v2 environment was asked for.)
    let unalarmed = (0..SERVICES).filter(|i| !alarmed(*i)).count();
    assert!(
        (SERVICES + unalarmed..=2 * SERVICES).contains(&creates.len()),
        "{creates:?}"
    );
    assert!(creates.values().all(|n| *n == 1), "{creates:?}");
    // A repeat of an action is an action a kill cut off before its outcome was recorded,
    // so there are at most as many repeats as kills.
    let mut seen = BTreeSet::new();
    let repeats = calls
        .iter()
        .filter(|c| !seen.insert((c.service.clone(), c.action.clone())))
        .count();
    assert!(
        repeats <= KILLS,
        "{repeats} actions were executed twice, with only {KILLS} kills"
    );
    let executors: BTreeSet<&str> = calls.iter().map(|c| c.by.as_str()).collect();
    assert!(
        executors.len() > 3,
        "work moved between replicas: {executors:?}"
    );

    // The log: every intent carries its lease, its shard is the service's, and per shard the
    // epochs never go back (no write from a replica whose lease had passed on).
    let events = store
        .read_all(None, usize::MAX, &ReadFilter::default())
        .await
        .expect("read the log");
    let mut last_epoch: BTreeMap<u32, (u64, String)> = BTreeMap::new();
    let mut intents = 0;
    for recorded in &events {
        let Ok(Some(ServiceEvent::ActionIntended { lease, .. })) =
            ServiceEvent::from_recorded(recorded)
        else {
            continue;
        };
        intents += 1;
        let lease = lease.expect("every replica's intent carries its lease");
        let service = service_of(&recorded.stream).expect("a service stream");
        assert_eq!(lease.shard, shard_of(service));
        if let Some((epoch, holder)) = last_epoch.get(&lease.shard) {
            assert!(
                lease.epoch > *epoch || (lease.epoch == *epoch && lease.holder == *holder),
                "shard {}: epoch {} by {} after epoch {epoch} by {holder}",
                lease.shard,
                lease.epoch,
                lease.holder
            );
        }
        last_epoch.insert(lease.shard, (lease.epoch, lease.holder));
    }
    assert!(intents >= 4 * SERVICES, "{intents} intents");
    eprintln!(
        "{} calls, {repeats} repeats, executors {executors:?}, last replicas {live:?}",
        calls.len()
    );
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
