//! Two `ionroller up` processes on one shared log (a real PostgreSQL; KurrentDB, the stand-in or
//! a real server) and one simulated cloud file share
//! the services as replicas. The leader of a service is frozen (SIGSTOP) right after a
//! command woke it, past its lease; the other replica takes over and carries the rollout on;
//! thawed (SIGCONT), the first performs no action on the service it lost (the simulator's
//! own record of who executed what says so) and records nothing under its old epoch. Then a
//! graceful stop (SIGTERM) hands the stopped replica's services over without waiting for the
//! lease to expire.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ionroller_roller::clock::SystemClock;
use ionroller_roller::cloud::sim::SimCloud;
use ionroller_shared::events::{service_stream, ServiceEvent};
use ionroller_shared::store::StreamRead;
use serde_json::json;
use support::*;

const LEASE_TTL_MS: &str = "5000";

fn replica(dir: &Path, name: &str, log: &SharedLog, sim: &Path) -> Server {
    support::replica(dir, name, log, sim, LEASE_TTL_MS)
}

/// The two runs share the machine's two cores: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The simulator's record of executed actions: (when, by whom, for which service, what).
fn calls(sim: &Path) -> Vec<(DateTime<Utc>, String, String, String)> {
    SimCloud::open(sim, Arc::new(SystemClock))
        .expect("the simulated cloud's file")
        .calls()
        .into_iter()
        .map(|c| (c.at, c.by, c.service, c.action))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_frozen_leader_past_its_lease_acts_no_more_and_a_graceful_stop_hands_over() {
    let Some(log) = SharedLog::postgres() else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    frozen_leader_and_graceful_stop(&log, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kurrentdb_a_frozen_leader_past_its_lease_acts_no_more_and_a_graceful_stop_hands_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(log) = SharedLog::kurrentdb(dir.path()) else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    frozen_leader_and_graceful_stop(&log, dir.path()).await;
}

async fn frozen_leader_and_graceful_stop(log: &SharedLog, dir: &Path) {
    let sim = dir.join("sim-cloud.json");
    let a = replica(dir, "a", log, &sim);
    // Alone, a holds every shard.
    wait_metric(&a, "ionroller_lease_shards_held", "a alone", |v| v == 32.0).await;
    let config = dir.join("hello.json");
    std::fs::write(&config, example_config().replace("\"3s\"", "\"1s\"")).expect("write config");
    a.cli_ok(&["config", "set", "hello", config.to_str().expect("utf-8")]);
    a.cli_ok(&["release", "hello", "v1", "--no-follow"]);
    a.wait_for("hello", 60, "v1 to serve", |s| {
        s["stable_version"] == "v1" && s["rollout"].is_null()
    })
    .await;

    // b joins: a gives the shards above its fair share (16..32) up and b takes them; hello is
    // on shard 11 and stays with a.
    let mut b = replica(dir, "b", log, &sim);
    b.token = a.token.clone();
    wait_metric(&b, "ionroller_lease_shards_held", "b's share", |v| {
        v == 16.0
    })
    .await;
    wait_metric(&a, "ionroller_lease_shards_held", "a's share", |v| {
        v == 16.0
    })
    .await;

    a.cli_ok(&["release", "hello", "v2", "--no-follow"]);
    a.wait_for_promote("the canary of v2").await;
    assert!(
        calls(&sim).iter().all(|(_, by, _, _)| by == "a"),
        "a leads hello so far"
    );
    // Freeze a while it leads hello's canary (idle between passes: frozen mid-action, it
    // could hold the simulated cloud's file lock, which no AWS has), then promote through
    // b's API: the command is recorded, and a, frozen, cannot act on it.
    signal(&a, "-STOP");
    let frozen_at = Utc::now();
    let frozen = Instant::now();
    let (status, body) = b
        .post(
            "/v1/services/hello/promote",
            json!({ "reason": "canary is fine" }),
        )
        .await;
    assert_eq!(status, 202, "{body}");

    // b takes every shard once a's leases and membership expire, and carries the release on.
    wait_metric(&b, "ionroller_lease_shards_held", "b takes over", |v| {
        v == 32.0
    })
    .await;
    let failover = frozen.elapsed();
    let done = b
        .wait_for("hello", 60, "v2 to serve all traffic under b", |s| {
            s["stable_version"] == "v2" && s["rollout"].is_null() && share(s, "v2") == 100
        })
        .await;
    assert_eq!(done["history"][0]["version"], "v2");
    let before_thaw = calls(&sim).len();

    // Thawed, a finds its leases gone before touching the cloud, then rejoins and gets its
    // share back (the low shards stay with b, hello among them).
    signal(&a, "-CONT");
    wait_metric(
        &a,
        "ionroller_leases_lost_total",
        "a notices its loss",
        |v| v >= 16.0,
    )
    .await;
    wait_metric(&a, "ionroller_lease_shards_held", "a rejoins", |v| {
        v == 16.0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after: Vec<_> = calls(&sim)
        .into_iter()
        .filter(|(at, by, _, _)| by == "a" && *at > frozen_at)
        .collect();
    assert!(
        after.is_empty(),
        "a executed actions after it was frozen: {after:?}"
    );
    assert!(calls(&sim).len() >= before_thaw, "the record only grows");
    assert!(
        calls(&sim)
            .iter()
            .any(|(at, by, service, _)| by == "b" && service == "hello" && *at > frozen_at),
        "b carried hello's release on"
    );
    // The log: no intent under a's epoch of hello's shard after b's first one.
    let recorded = log
        .open()
        .await
        .read_stream(
            &service_stream("hello").expect("stream"),
            StreamRead::forward(usize::MAX),
        )
        .await
        .expect("read hello's stream");
    let intents: Vec<(String, u64)> = recorded
        .iter()
        .filter_map(|e| match ServiceEvent::from_recorded(e) {
            Ok(Some(ServiceEvent::ActionIntended {
                lease: Some(lease), ..
            })) => Some((lease.holder, lease.epoch)),
            _ => None,
        })
        .collect();
    let first_b = intents.iter().position(|(h, _)| h == "b");
    let first_b = first_b.unwrap_or_else(|| panic!("b intended something: {intents:?}"));
    assert!(
        intents[first_b..].iter().all(|(h, _)| h == "b"),
        "an intent by a after b took over: {intents:?}"
    );
    let epochs: Vec<u64> = intents.iter().map(|(_, e)| *e).collect();
    assert!(epochs.windows(2).all(|w| w[0] <= w[1]), "{epochs:?}");

    // Graceful: SIGTERM hands b's shards to a well before the lease would expire.
    let handover = Instant::now();
    signal(&b, "-TERM");
    wait_metric(
        &a,
        "ionroller_lease_shards_held",
        "a takes b's shards",
        |v| v == 32.0,
    )
    .await;
    let handed = handover.elapsed();
    assert!(
        handed < Duration::from_millis(4000),
        "handover took {handed:?}: the leases expired instead of being given up"
    );
    eprintln!("failover after SIGSTOP: {failover:?}; graceful handover: {handed:?}");
    let _ = b.child.wait();
}
