//! Three `ionroller up` processes on one shared log (a real PostgreSQL; KurrentDB, the stand-in
//! or a real server) and one simulated cloud file, 50
//! services releasing twice, a fifth of them hit by their alarm during the second release;
//! while the releases roll out, the replica holding the most shards is SIGKILLed (no goodbye:
//! its leases are left to expire) and a new process takes its place, again and again. Every
//! rollout converges (alarmed ones back on v1); no acknowledged release is lost; every
//! environment is created exactly once (the simulator's own record says so); an action is
//! executed again only where a kill cut it off before its outcome was recorded; and the log
//! proves the fencing: per shard, the epochs on recorded intents never go back.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ionroller_roller::clock::{Clock, SystemClock};
use ionroller_roller::cloud::sim::{SimCloud, SimSettings};
use ionroller_shared::events::{service_of, AlarmState, ServiceEvent};
use ionroller_shared::store::lease::shard_of;
use ionroller_shared::store::ReadFilter;
use serde_json::{json, Value};
use support::{example_config, metric, replica, Server, SharedLog};

const SERVICES: usize = 50;
/// Every this-many-th service's alarm fires during the second release: it rolls back.
const ALARMED_EVERY: usize = 5;
const LEASE_TTL_MS: &str = "1500";
/// SIGKILLs while each of the two releases rolls out.
const KILLS_PER_RELEASE: usize = 3;

fn config(i: usize) -> Value {
    let text = example_config()
        .replace("hello-lb", &format!("lb-{i}"))
        .replace("hello.example.com", &format!("svc-{i}.example.com"))
        .replace("hello-5xx", &format!("svc-{i}-5xx"))
        .replace("\"until_promoted\"", "\"1s\"")
        .replace("\"3s\"", "\"1s\"");
    serde_json::from_str(&text).expect("the example config is JSON")
}

/// The replicas alive now, and how the next one is named.
struct Replicas<'a> {
    dir: &'a Path,
    log: &'a SharedLog,
    sim: &'a Path,
    running: Vec<(String, Server)>,
    started: usize,
    token: Option<String>,
}

impl Replicas<'_> {
    fn start(&mut self) {
        self.started += 1;
        let name = format!("r{}", self.started);
        let mut server = replica(self.dir, &name, self.log, self.sim, LEASE_TTL_MS);
        // The first `up` on the log created the admin token; the others share it.
        match &self.token {
            Some(token) => server.token = token.clone(),
            None => self.token = Some(server.token.clone()),
        }
        self.running.push((name, server));
    }

    /// SIGKILLs the replica holding the most shards (a lease holder, mid-rollout) and starts
    /// another in its place.
    async fn kill_a_lease_holder(&mut self) -> String {
        let mut most = (0, -1.0);
        for (i, (_, server)) in self.running.iter().enumerate() {
            let held = metric(server, "ionroller_lease_shards_held").await;
            if held > most.1 {
                most = (i, held);
            }
        }
        let (name, victim) = self.running.remove(most.0);
        victim.kill(); // SIGKILL
        self.start();
        name
    }

    fn any(&self) -> &Server {
        &self.running[0].1
    }
}

/// The two runs share the machine's two cores: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_lease_holders_sigkilled_mid_rollout_lose_no_release_and_repeat_no_action() {
    let Some(log) = SharedLog::postgres() else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    lease_holders_sigkilled_mid_rollout(&log, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kurrentdb_lease_holders_sigkilled_mid_rollout_lose_no_release_and_repeat_no_action() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(log) = SharedLog::kurrentdb(dir.path()) else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    lease_holders_sigkilled_mid_rollout(&log, dir.path()).await;
}

async fn lease_holders_sigkilled_mid_rollout(log: &SharedLog, dir: &Path) {
    let sim_file = dir.join("sim-cloud.json");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sim = SimCloud::open(&sim_file, clock.clone()).expect("the simulated cloud's file");
    sim.set_settings(SimSettings {
        launch_secs: 0.4,
        healthy_secs: 0.2,
    })
    .expect("sim settings");
    let mut replicas = Replicas {
        dir,
        log,
        sim: &sim_file,
        running: Vec::new(),
        started: 0,
        token: None,
    };
    for _ in 0..3 {
        replicas.start();
    }
    let names: Vec<String> = (0..SERVICES).map(|i| format!("svc-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let server = replicas.any();
        let response = server
            .request(
                reqwest::Method::PUT,
                &format!("{}/v1/services/{name}/config", server.url),
            )
            .json(&config(i))
            .send()
            .await
            .expect("PUT config");
        assert!(response.status().is_success(), "{name}: {response:?}");
    }

    let alarmed = |i: usize| i.is_multiple_of(ALARMED_EVERY);
    // Every release an API acknowledged, by service: none may be lost.
    let mut acknowledged: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut killed = Vec::new();
    for version in ["v1", "v2"] {
        for (i, name) in names.iter().enumerate() {
            // Commands go to every replica in turn: each is an append to the shared log.
            let server = &replicas.running[i % replicas.running.len()].1;
            let (status, body) = server
                .post(
                    &format!("/v1/services/{name}/releases"),
                    json!({ "version": version }),
                )
                .await;
            assert_eq!(status, 202, "{name} {version}: {body}");
            let id = body["rollout_id"].as_str().expect("a rollout id");
            acknowledged
                .entry(name.clone())
                .or_default()
                .push(id.to_string());
            if version == "v2" && alarmed(i) {
                // The alarm fires as soon as v2 is under way (not after the other services'
                // releases were sent: on a loaded machine this one's could be done by then),
                // and stays in ALARM while lease holders are being killed.
                sim.set_alarm(&format!("svc-{i}-5xx"), AlarmState::Alarm, None, Some(9.0))
                    .expect("alarm");
            }
        }
        for k in 0..KILLS_PER_RELEASE {
            // Moments that do not line up with the 200 ms interval.
            let pause = 400 + (k * 677 + version.len() * 131) % 1300;
            tokio::time::sleep(Duration::from_millis(pause as u64)).await;
            killed.push(replicas.kill_a_lease_holder().await);
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        for (i, name) in names.iter().enumerate() {
            // An alarmed service rolls back to v1; every other one finishes its release.
            let expected = if version == "v2" && alarmed(i) {
                "v1"
            } else {
                version
            };
            replicas
                .any()
                .wait_for(
                    name,
                    deadline.saturating_duration_since(Instant::now()).as_secs(),
                    &format!("{name} to converge on {expected} after {version}"),
                    |s| s["stable_version"] == expected && s["rollout"].is_null(),
                )
                .await;
        }
    }
    // No acknowledged release was lost: each one has its outcome in the service's history,
    // and an alarmed service's v2 was rolled back.
    for (i, name) in names.iter().enumerate() {
        let s = replicas.any().get(&format!("/v1/services/{name}")).await;
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
    let live: Vec<String> = replicas.running.iter().map(|(n, _)| n.clone()).collect();
    replicas.running.clear();

    // The simulator's own record: every environment created exactly once.
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
    // A repeat of an action is one a kill cut off between executing it and recording its
    // outcome, so there are at most as many repeats as kills.
    let mut seen = BTreeSet::new();
    let repeats = calls
        .iter()
        .filter(|c| !seen.insert((c.service.clone(), c.action.clone())))
        .count();
    assert!(
        repeats <= killed.len(),
        "{repeats} actions were executed twice, with only {} kills",
        killed.len()
    );
    let executors: BTreeSet<&str> = calls.iter().map(|c| c.by.as_str()).collect();
    assert!(
        killed.iter().any(|k| executors.contains(k.as_str()))
            && live.iter().any(|l| executors.contains(l.as_str())),
        "work moved from killed replicas {killed:?} to live ones {live:?}: {executors:?}"
    );

    // The log: every intent carries its lease, its shard is the service's, and per shard the
    // epochs never go back (no write from a replica whose lease had passed on).
    let store = log.open().await;
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
        "{} calls, {repeats} repeats, killed {killed:?}, executors {executors:?}, live {live:?}",
        calls.len()
    );
}
