//! What README promises a newcomer, done by a test: `ionroller up`, save a config, release
//! v1, release v2 through its canary pause and traffic steps, then an alarm during v3 rolls
//! it back — through the HTTP API and the CLI binary.

mod support;

use std::io::Read;
use std::time::Duration;

use serde_json::json;
use support::*;

fn finish(mut child: std::process::Child) -> (i32, String) {
    let status = child.wait().expect("CLI finishes");
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut out);
    }
    (status.code().unwrap_or(-1), out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_canary_promote_steps_then_alarm_rollback() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(dir.path());
    let config = dir.path().join("hello.json");
    std::fs::write(&config, example_config()).expect("write config");

    // Bad input gets a clear answer naming the field.
    let (status, body) = server
        .post("/v1/services/hello/releases", json!({ "version": "v1" }))
        .await;
    assert_eq!(status, 404, "{body}");
    let out = server.cli_ok(&[
        "config",
        "set",
        "hello",
        config.to_str().expect("utf-8 path"),
    ]);
    assert!(out.contains("Saved config version 1"), "{out}");
    let (status, body) = server
        .post(
            "/v1/services/hello/releases",
            json!({ "version": "bad version!" }),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["problems"][0]["field"], "version", "{body}");

    // v1: nothing runs yet, so nothing to protect: it takes all traffic once healthy, with no
    // canary to promote.
    let release = server.cli_spawn(&["release", "hello", "v1"]);
    let (code, out) = finish(release);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("completed: hello v1 serves all traffic"),
        "{out}"
    );
    let status = server.get("/v1/services/hello").await;
    assert_eq!(share(&status, "v1"), 100);

    // v2: the canary holds at one new instance beside two old ones until promoted, then the
    // steps move traffic: 25% (1 new : 2 old, as the canary: it changes nothing, so it does
    // not pause), 50% (1 : 1), 100%.
    let release = server.cli_spawn(&["release", "hello", "v2", "--reason", "new greeting"]);
    let canary = server.wait_for_promote("v2 canary to wait").await;
    assert_eq!(share(&canary, "v2"), 33, "{canary:#}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let still = server.get("/v1/services/hello").await;
    assert_eq!(
        still["rollout"]["step"], 1,
        "the canary holds until promoted"
    );
    server.cli_ok(&["promote", "hello"]);
    let mut seen = Vec::new();
    for step in 3..=4u64 {
        let s = server
            .wait_for("hello", 20, "the next step to complete", |s| {
                s["rollout"]["step"] == step && s["rollout"]["stage"] == "step_done"
                    || s["rollout"].is_null()
            })
            .await;
        // The last step's completion and the rollout's are one pass: then the rollout is done.
        seen.push(share(&s, "v2"));
        if s["rollout"].is_null() {
            break;
        }
    }
    assert_eq!(seen, vec![50, 100], "traffic shares at steps 50% and 100%");
    let (code, out) = finish(release);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("step 3/4 (50%)") && out.contains("█"),
        "progress shows steps and a bar: {out}"
    );
    assert_eq!(share(&server.get("/v1/services/hello").await, "v2"), 100);

    // v3: an alarm during the 50% step rolls back to v2 within one poll interval.
    let release = server.cli_spawn(&["release", "hello", "v3"]);
    server.wait_for_promote("v3 canary").await;
    server.cli_ok(&["promote", "hello"]);
    server
        .wait_for("hello", 20, "v3 at 50%", |s| {
            s["rollout"]["step"] == 3 && s["rollout"]["stage"] == "step_done"
        })
        .await;
    server.fire_alarm("hello-5xx", "5xx rate 12% > 5%", "12");
    let (code, out) = finish(release);
    assert_eq!(code, 1, "a rolled-back release exits non-zero: {out}");
    assert!(
        out.contains("rolled back: alarm hello-5xx is Alarm: 5xx rate 12% > 5%"),
        "{out}"
    );
    let after = server.get("/v1/services/hello").await;
    assert_eq!(share(&after, "v2"), 100, "{after:#}");
    assert_eq!(after["stable_version"], "v2");
    assert_eq!(after["history"][0]["outcome"], "rolled_back");

    // The rollback event carries the alarm's evidence.
    let events = server.cli_ok(&["events", "hello", "--raw"]);
    let rolled_back = events
        .lines()
        .find(|l| l.contains(r#""type":"rolled-back""#))
        .expect("a rolled-back event");
    assert!(
        rolled_back.contains("\"name\":\"hello-5xx\"")
            && rolled_back.contains("\"value\":12.0")
            && rolled_back.contains("5xx rate 12% > 5%"),
        "{rolled_back}"
    );

    // A new release while the alarm fires is refused unless overridden (and recorded).
    let (status, body) = server
        .post("/v1/services/hello/releases", json!({ "version": "v4" }))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap_or("").contains("hello-5xx"),
        "{body}"
    );

    // Rollback after a completed release: v2's predecessor v1 is still warm, so no new
    // environment is created and traffic switches in one step.
    server.cli_ok(&["sim", "alarm", "hello-5xx", "OK"]);
    let environments_before = server.get("/v1/services/hello").await["environments"]
        .as_array()
        .map_or(0, Vec::len);
    let out = server.cli_ok(&["rollback", "hello"]);
    assert!(
        out.contains("completed: hello v1 serves all traffic"),
        "{out}"
    );
    let now = server.get("/v1/services/hello").await;
    assert_eq!(share(&now, "v1"), 100);
    assert_eq!(
        now["environments"].as_array().map_or(0, Vec::len),
        environments_before,
        "no new environment"
    );
}

/// A command wakes the roller at once: with a ten-minute interval, a release still has its
/// environment created (the pass right after the command executes the intent) rather than
/// ten minutes later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_wakes_the_roller_without_waiting_for_the_interval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(dir.path(), &["--interval-ms", "600000"], &[]);
    let config = dir.path().join("hello.json");
    std::fs::write(&config, example_config()).expect("write config");
    server.cli_ok(&["config", "set", "hello", config.to_str().expect("utf-8")]);
    server.cli_ok(&["release", "hello", "v1", "--no-follow"]);
    let created = server.trail_rows_of_type("action-succeeded", 20).await;
    assert!(
        created.iter().any(|r| r["summary"]
            .as_str()
            .is_some_and(|s| s.contains("hello-v1"))),
        "{created:?}"
    );
}
