//! The roller can be SIGKILLed at any instant: restarted, it finishes what it had recorded,
//! repeats no cloud action that mattered, and converges. 20 kills at random moments across
//! several overlapping releases; then every rollout has at most one environment and the
//! (simulated) cloud created each environment exactly once.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use ionroller_shared::events::{service_stream, Action, ServiceEvent};
use ionroller_shared::store::{EventStore, StreamRead};
use ionroller_store_sqlite::{SqliteOptions, SqliteStore};
use rand::Rng;
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_converges_without_duplicate_environments() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = dir.path().join("hello.json");
    // No waiting for people: releases move on their own between kills.
    std::fs::write(
        &config,
        example_config()
            .replace("\"until_promoted\"", "\"1s\"")
            .replace("\"3s\"", "\"1s\""),
    )
    .expect("write config");
    let mut server = Server::start(dir.path());
    server.cli_ok(&[
        "config",
        "set",
        "hello",
        config.to_str().expect("utf-8 path"),
    ]);
    let versions = ["v1", "v2", "v3", "v4"];
    let mut rng = rand::rng();
    for cycle in 0..20 {
        if cycle % 5 == 0 {
            let version = versions[cycle / 5];
            let (status, body) = server
                .post("/v1/services/hello/releases", json!({ "version": version }))
                .await;
            assert_eq!(status, 202, "release {version}: {body}");
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..1200))).await;
        server.kill();
        server = Server::start(dir.path());
    }
    let done = server
        .wait_for(
            "hello",
            90,
            "v4 to serve all traffic after the last restart",
            |s| s["stable_version"] == "v4" && s["rollout"].is_null() && share(s, "v4") == 100,
        )
        .await;
    assert_eq!(done["history"][0]["version"], "v4");
    server.kill();

    // Read the log the killed processes wrote.
    let store = SqliteStore::open(dir.path().join("events.sqlite"), SqliteOptions::default())
        .expect("open log");
    let events = store
        .read_stream(
            &service_stream("hello").expect("stream"),
            StreamRead::forward(usize::MAX),
        )
        .await
        .expect("read log");
    let mut rollout = String::new();
    let mut created: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for recorded in &events {
        match ServiceEvent::from_recorded(recorded)
            .expect("decodes")
            .expect("known type")
        {
            ServiceEvent::ReleaseRequested { rollout_id, .. } => rollout = rollout_id.to_string(),
            ServiceEvent::ActionIntended {
                action: Action::CreateEnvironment { environment, .. },
                ..
            } => {
                created
                    .entry(rollout.clone())
                    .or_default()
                    .insert(environment);
            }
            _ => {}
        }
    }
    for (rollout, envs) in &created {
        assert_eq!(envs.len(), 1, "rollout {rollout} created {envs:?}");
    }
    let names: BTreeSet<&String> = created.values().flatten().collect();
    let sim: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("sim-cloud.json")).expect("sim file"),
    )
    .expect("sim JSON");
    assert_eq!(
        sim["creations"].as_u64(),
        Some(names.len() as u64),
        "each environment was created exactly once: {names:?}"
    );
    let live: Vec<&String> = sim["environments"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, e)| e["terminated_at"].is_null())
        .map(|(n, _)| n)
        .collect();
    assert!(
        live.iter().all(|n| names.contains(n)),
        "every live environment was intended: {live:?}"
    );
}

/// A second `up` on a data dir in use refuses to start, naming the first; once the first is
/// SIGKILLed (no chance to clean up), the data dir is free again at once.
#[test]
fn a_second_up_on_one_data_dir_refuses_and_a_killed_one_leaves_no_lock_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = Server::start(dir.path());
    let pid = first.child.id();
    let second = Command::new(binary())
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--trail-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("run a second up");
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("another `ionroller up` (pid {pid}) is running on")),
        "{err}"
    );
    first.kill();
    let again = Server::start(dir.path());
    again.cli_ok(&["services"]);
}
