//! Notifications as a team receives them: a local webhook receiver checks that every kind of
//! outcome arrives once per outcome with a valid HMAC-SHA256 signature; a receiver that
//! answers 500, then one that hangs, is retried and never slows a rollout; `ionroller up`
//! SIGKILLed while a delivery hangs loses nothing when it comes back (the notification
//! arrives again, with the same delivery id).

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use support::*;

const SECRET: &str = "a-webhook-secret-of-some-length";

/// How the receiver answers, and what it received.
#[derive(Default)]
struct Receiver {
    /// Answer 500 to this many more requests.
    fail: usize,
    /// Hang (past the notifier's timeout) on this many more requests.
    hang: usize,
    /// Every request that was answered 2xx: (delivery id, attempt, body).
    delivered: Vec<(String, u32, Value)>,
    /// Requests refused or left hanging.
    refused: usize,
}

async fn start_receiver(state: Arc<Mutex<Receiver>>) -> String {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let state = state.clone();
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                };
                // The signature: HMAC-SHA256 of "{timestamp}.{body}", as README documents.
                let timestamp = header("x-ionroller-timestamp");
                let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes())
                    .expect("any key length");
                mac.update(format!("{timestamp}.{body}").as_bytes());
                let expected: String = mac
                    .finalize()
                    .into_bytes()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                assert_eq!(
                    header("x-ionroller-signature"),
                    format!("sha256={expected}"),
                    "a valid signature on {body}"
                );
                let age = chrono::Utc::now().timestamp() - timestamp.parse::<i64>().expect("ts");
                assert!((0..60).contains(&age), "a fresh timestamp: {age}");
                let (fail, hang) = {
                    let mut s = state.lock().expect("receiver state");
                    let fail = s.fail > 0;
                    let hang = !fail && s.hang > 0;
                    if fail {
                        s.fail -= 1;
                    } else if hang {
                        s.hang -= 1;
                    }
                    if fail || hang {
                        s.refused += 1;
                    }
                    (fail, hang)
                };
                if hang {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                if fail || hang {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                let value: Value = serde_json::from_str(&body).expect("a JSON body");
                assert_eq!(header("x-ionroller-delivery"), value["delivery_id"]);
                let attempt = header("x-ionroller-attempt").parse().expect("an attempt");
                state.lock().expect("receiver state").delivered.push((
                    header("x-ionroller-delivery"),
                    attempt,
                    value,
                ));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the receiver");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Deliveries by kind, each delivery id once (a redelivery repeats its id).
fn kinds(state: &Arc<Mutex<Receiver>>) -> BTreeMap<String, Vec<Value>> {
    let mut seen = std::collections::BTreeSet::new();
    let mut by_kind: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (id, _, body) in &state.lock().expect("receiver state").delivered {
        if seen.insert(id.clone()) {
            by_kind
                .entry(body["kind"].as_str().unwrap_or("?").to_string())
                .or_default()
                .push(body.clone());
        }
    }
    by_kind
}

async fn wait_until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_is_told_once_signed_retried_and_survives_a_kill() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let state = Arc::new(Mutex::new(Receiver::default()));
    let url = start_receiver(state.clone()).await;
    std::fs::write(dir.path().join("hook-secret"), SECRET).expect("write the secret");
    let file = dir.path().join("notifications.json");
    std::fs::write(
        &file,
        serde_json::json!({ "endpoints": {
            "team": {
                "kind": "webhook", "url": url, "secret_file": "hook-secret",
                "services": ["hello"], "timeout_ms": 700
            },
            // Heard only by the services whose own config names it.
            "optin": {
                "kind": "webhook", "url": url, "secret_file": "hook-secret",
                "services": ["hello"], "when_named": true, "kinds": ["completed"]
            }
        } })
        .to_string(),
    )
    .expect("write the endpoints file");
    let data = dir.path().join("data");
    let args = ["--notifications", file.to_str().expect("utf-8")];
    let server = Server::start_with(&data, &args, &[]);
    let config = dir.path().join("hello.json");
    std::fs::write(&config, example_config()).expect("write config");
    server.cli_ok(&["config", "set", "hello", config.to_str().expect("utf-8")]);

    // v1 completes while the receiver answers 500 twice: retried, the rollout not held up.
    state.lock().expect("state").fail = 2;
    let started = Instant::now();
    server.cli_ok(&["release", "hello", "v1"]);
    let v1_took = started.elapsed();
    wait_until("v1's notifications", 20, || {
        kinds(&state).get("completed").is_some_and(|c| c.len() == 1)
    })
    .await;
    assert!(state.lock().expect("state").refused >= 2);

    // v2 waits at its canary (waiting_for_person), then is aborted.
    server.cli_ok(&["release", "hello", "v2", "--no-follow"]);
    server.wait_for_promote("v2's canary").await;
    server.cli_ok(&["abort", "hello", "--reason", "wrong build"]);
    server
        .wait_for("hello", 20, "v2 aborted", |s| s["rollout"].is_null())
        .await;

    // v3 is rolled back by an alarm, while the receiver hangs: the rollback is not slowed.
    state.lock().expect("state").hang = 1;
    server.cli_ok(&["release", "hello", "v3", "--no-follow"]);
    server.wait_for_promote("v3's canary").await;
    server.fire_alarm("hello-5xx", "5xx 12% > 5%", "12");
    server
        .wait_for("hello", 20, "v3 rolled back", |s| {
            s["rollout"].is_null() && s["stable_version"] == "v1"
        })
        .await;
    wait_until("v3's rollback told", 30, || {
        kinds(&state).contains_key("rolled_back")
    })
    .await;
    server.cli_ok(&["sim", "alarm", "hello-5xx", "OK"]);
    server
        .wait_for("hello", 10, "the alarm to clear", |s| {
            s["alarms"][0]["state"] == "OK"
        })
        .await;

    // SIGKILL while a delivery hangs: v4's start is delivered after the restart.
    state.lock().expect("state").hang = 1;
    server.cli_ok(&["release", "hello", "v4", "--no-follow"]);
    wait_until("the hanging delivery", 10, || {
        state.lock().expect("state").hang == 0
    })
    .await;
    let told_before = kinds(&state).get("rollout_started").map_or(0, Vec::len);
    let token = server.token.clone();
    server.kill();
    let mut server = Server::start_with(&data, &args, &[]);
    server.token = token;
    wait_until("v4's start told after the restart", 30, || {
        kinds(&state).get("rollout_started").map_or(0, Vec::len) > told_before
    })
    .await;
    server.wait_for_promote("v4's canary").await;

    let by_kind = kinds(&state);
    let versions = |kind: &str| -> Vec<String> {
        by_kind
            .get(kind)
            .into_iter()
            .flatten()
            .map(|b| b["version"].as_str().unwrap_or("-").to_string())
            .collect()
    };
    assert_eq!(
        versions("rollout_started"),
        ["v1", "v2", "v3", "v4"],
        "{by_kind:#?}"
    );
    assert_eq!(versions("completed"), ["v1"]);
    assert_eq!(versions("aborted"), ["v2"]);
    assert_eq!(versions("rolled_back"), ["v3"]);
    // v2, v3 and v4 each waited at their canary.
    assert_eq!(
        versions("waiting_for_person"),
        ["v2", "v3", "v4"],
        "{by_kind:#?}"
    );
    assert!(
        !by_kind.contains_key("step_completed"),
        "off unless asked for"
    );
    let rollback = &by_kind["rolled_back"][0];
    assert_eq!(rollback["cause"]["kind"], "alarm", "{rollback}");
    assert_eq!(
        rollback["cause"]["alarm"]["name"], "hello-5xx",
        "{rollback}"
    );
    assert_eq!(rollback["cause"]["alarm"]["value"], 12.0, "{rollback}");
    assert!(
        rollback["text"]
            .as_str()
            .is_some_and(|t| t.contains("5xx 12% > 5%")),
        "{rollback}"
    );
    let aborted = &by_kind["aborted"][0];
    assert!(
        aborted["text"]
            .as_str()
            .is_some_and(|t| t.contains("wrong build")),
        "{aborted}"
    );
    // Who aborted it: the person, in the cause (the rollback itself is the roller's).
    assert!(
        aborted["cause"]["by"]
            .as_str()
            .is_some_and(|a| a.starts_with("admin via token")),
        "{aborted}"
    );
    // Retried deliveries say which attempt they were.
    assert!(state
        .lock()
        .expect("state")
        .delivered
        .iter()
        .any(|(_, attempt, _)| *attempt > 1));
    // The failures and the recovery show in /metrics.
    let text = metrics_text(&server).await;
    assert!(
        text.contains(r#"ionroller_notification_endpoint_failing{endpoint="team"} 0"#),
        "{text}"
    );
    // The team opts in to "optin" in its own config; a name the operator did not open to
    // it is refused naming the field.
    let optin = |state: &Arc<Mutex<Receiver>>| {
        state
            .lock()
            .expect("state")
            .delivered
            .iter()
            .filter(|(id, _, _)| id.ends_with(":optin"))
            .count()
    };
    assert_eq!(optin(&state), 0, "not named yet: nothing heard");
    let named = dir.path().join("named.json");
    let text = example_config().replacen('{', "{ \"notify\": [\"optin\"],", 1);
    std::fs::write(&named, &text).expect("write config");
    server.cli_ok(&["config", "set", "hello", named.to_str().expect("utf-8")]);
    let wrong = dir.path().join("wrong.json");
    std::fs::write(&wrong, text.replace("\"optin\"", "\"nope\"")).expect("write config");
    let out = server.cli(&["config", "set", "hello", wrong.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("notify[0]") && err.contains("optin"), "{err}");
    server.cli_ok(&["promote", "hello"]);
    wait_until("the opted-in endpoint told of v4", 30, || {
        optin(&state) == 1
    })
    .await;

    // While an endpoint fails, the status of the services it notifies says so, and stops
    // saying so once it takes the notification.
    state.lock().expect("state").fail = usize::MAX;
    server.cli_ok(&["release", "hello", "v5", "--no-follow"]);
    let failing = |s: &Value| {
        s["warnings"].as_array().is_some_and(|w| {
            w.iter().any(|w| {
                w.as_str()
                    .is_some_and(|w| w.starts_with("notifications to team are failing since"))
            })
        })
    };
    server
        .wait_for("hello", 20, "the failing endpoint in the status", failing)
        .await;
    state.lock().expect("state").fail = 0;
    server
        .wait_for("hello", 30, "the endpoint recovered", |s| !failing(s))
        .await;

    // A newer release supersedes v5; then drift on the serving environment is told too.
    server.cli_ok(&["release", "hello", "v6", "--no-follow"]);
    server.wait_for_promote("v6's canary").await;
    server.cli_ok(&["promote", "hello", "--full"]);
    let serving = server
        .wait_for("hello", 30, "v6 to serve", |s| {
            s["stable_version"] == "v6" && s["rollout"].is_null()
        })
        .await;
    let instance = serving["environments"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["version"] == "v6")
        .and_then(|e| e["instance_ids"][0].as_str())
        .expect("an instance of v6")
        .to_string();
    server.cli_ok(&["sim", "deregister", &instance]);
    wait_until("the superseded and drift notifications", 30, || {
        let by_kind = kinds(&state);
        by_kind.contains_key("superseded") && by_kind.contains_key("drift_detected")
    })
    .await;
    let by_kind = kinds(&state);
    assert_eq!(by_kind["superseded"][0]["version"], "v5", "{by_kind:#?}");
    assert!(
        by_kind["drift_detected"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains(&instance)),
        "{by_kind:#?}"
    );
    eprintln!("v1 took {v1_took:?} with its notifications failing");
}
