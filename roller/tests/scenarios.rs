//! Each behaviour the roller must get right, end to end in one process: API command → log →
//! shell → simulated cloud → observations → decisions, on a manual clock.

mod support;

use axum::http::StatusCode;
use serde_json::Value;
use support::*;

/// Ticks `secs` at a time until `done` holds; panics with the last status after `max` ticks.
async fn until(
    w: &mut World,
    secs: i64,
    max: usize,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..max {
        let status = w.status().await;
        if done(&status) {
            return status;
        }
        w.tick(secs).await;
    }
    panic!("never reached: {what}; last status {:#}", w.status().await);
}

fn share(status: &Value, version: &str) -> u32 {
    let total: f64 = status["traffic"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["version"] == version)
        .map(|t| t["share"].as_f64().unwrap_or(0.0))
        .sum();
    (total * 100.0).round() as u32
}

fn idle_on(version: &'static str) -> impl Fn(&Value) -> bool {
    move |s| s["rollout"].is_null() && s["stable_version"] == version && share(s, version) == 100
}

async fn release(w: &World, version: &str) -> (StatusCode, Value) {
    w.call(
        "POST",
        "/v1/services/hello/releases",
        &format!(r#"{{"version":"{version}"}}"#),
    )
    .await
}

/// A world whose config has no human waits, serving v1.
async fn serving_v1(config: &str) -> World {
    let mut w = World::create();
    w.save_config(config).await;
    release(&w, "v1").await;
    until(&mut w, 1, 60, "v1 serving", idle_on("v1")).await;
    w
}

fn no_waits() -> String {
    HELLO.replace("\"until_promoted\"", "\"1s\"")
}

#[tokio::test]
async fn test_endpoint_then_promote() {
    let mut w = serving_v1(&no_waits()).await;
    let config = no_waits().replace("\"rollback\"", "\"test_endpoint\": true, \"rollback\"");
    w.save_config(&config).await;
    release(&w, "v2").await;
    let waiting = until(&mut w, 1, 30, "v2 at its test endpoint", |s| {
        s["rollout"]["stage"] == "test_endpoint"
    })
    .await;
    assert!(
        waiting["rollout"]["waiting_for"]
            .as_str()
            .unwrap_or("")
            .contains("http://"),
        "{waiting:#}"
    );
    for _ in 0..5 {
        w.tick(60).await;
    }
    let still = w.status().await;
    assert_eq!(
        still["rollout"]["stage"], "test_endpoint",
        "no deadline while a person tests"
    );
    assert_eq!(
        share(&still, "v2"),
        0,
        "no customer traffic before the promote"
    );
    w.call("POST", "/v1/services/hello/promote", "").await;
    until(&mut w, 1, 60, "v2 serving", idle_on("v2")).await;
}

#[tokio::test]
async fn manual_abort_mid_shift_returns_traffic() {
    let mut w = serving_v1(&no_waits()).await;
    release(&w, "v2").await;
    until(&mut w, 1, 30, "v2 taking some traffic", |s| {
        share(s, "v2") > 0
    })
    .await;
    let (status, _) = w
        .call(
            "POST",
            "/v1/services/hello/abort",
            r#"{"reason":"latency looks off"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let done = until(&mut w, 1, 30, "back on v1", idle_on("v1")).await;
    assert_eq!(done["history"][0]["outcome"], "rolled_back");
    assert!(done["history"][0]["detail"]
        .as_str()
        .unwrap_or("")
        .contains("aborted by admin via token"));
}

#[tokio::test]
async fn alarm_firing_before_a_release_refuses_it_unless_overridden() {
    let mut w = serving_v1(&no_waits()).await;
    w.sim
        .set_alarm(
            "hello-5xx",
            ionroller_shared::events::AlarmState::Alarm,
            None,
            None,
        )
        .unwrap();
    w.tick(1).await;
    let (status, body) = release(&w, "v2").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = w
        .call(
            "POST",
            "/v1/services/hello/releases",
            r#"{"version":"v2","override_alarms":true,"reason":"the fix for the alarm"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    until(
        &mut w,
        1,
        60,
        "v2 serving despite the old alarm",
        idle_on("v2"),
    )
    .await;
}

#[tokio::test]
async fn an_environment_that_never_gets_healthy_is_rolled_back_at_the_deadline() {
    let mut w = serving_v1(&no_waits()).await;
    w.sim.fail_version("hello", "v2").unwrap();
    release(&w, "v2").await;
    let done = until(&mut w, 10, 40, "v2 given up", |s| s["rollout"].is_null()).await;
    assert_eq!(share(&done, "v1"), 100);
    assert!(
        done["history"][0]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("is Red"),
        "{done:#}"
    );

    // Grey forever (never Green, never Red) is caught by the progress deadline instead.
    w.sim
        .set_settings(ionroller_roller::cloud::sim::SimSettings {
            launch_secs: 2.0,
            healthy_secs: 1e9,
        })
        .unwrap();
    release(&w, "v3").await;
    let done = until(&mut w, 10, 40, "v3 given up", |s| s["rollout"].is_null()).await;
    assert!(
        done["history"][0]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("progress deadline (2m)"),
        "{done:#}"
    );
    assert_eq!(share(&done, "v1"), 100);
}

#[tokio::test]
async fn old_environment_is_terminated_after_keep_old_for_and_rollback_then_needs_a_new_one() {
    let mut w = serving_v1(&no_waits()).await;
    release(&w, "v2").await;
    until(&mut w, 1, 60, "v2 serving", idle_on("v2")).await;
    assert_eq!(w.sim.live_environments("hello").len(), 2, "v1 stays warm");
    w.tick(9 * 60).await;
    assert_eq!(
        w.sim.live_environments("hello").len(),
        2,
        "still inside the 10m window"
    );
    w.tick(61).await;
    w.tick(1).await;
    assert_eq!(
        w.sim.live_environments("hello").len(),
        1,
        "v1 terminated after keep_old_for"
    );
    let created = w.sim.creations();
    let (status, body) = w.call("POST", "/v1/services/hello/rollback", "").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["version"], "v1");
    until(&mut w, 1, 60, "v1 back", idle_on("v1")).await;
    assert_eq!(w.sim.creations(), created + 1, "a new environment for v1");
}

#[tokio::test]
async fn drift_is_observed_recorded_and_repaired() {
    let mut w = serving_v1(&no_waits()).await;
    let env = w.sim.live_environments("hello")[0].clone();
    w.sim.deregister_outside(&format!("i-{env}-0")).unwrap();
    w.tick(1).await;
    w.tick(1).await;
    let status = w.status().await;
    assert_eq!(share(&status, "v1"), 100);
    assert_eq!(status["traffic"][0]["share"], 1.0);
    let (_, events) = (
        0,
        w.store
            .read_all(None, 10_000, &Default::default())
            .await
            .unwrap(),
    );
    assert!(events.iter().any(|e| e.event_type == "drift-detected"));

    w.sim.terminate_outside(&env).unwrap();
    let repaired = until(
        &mut w,
        1,
        60,
        "v1 serving again from a new environment",
        |s| idle_on("v1")(s) && w_live_differs(s, &env),
    )
    .await;
    assert_eq!(repaired["history"][0]["version"], "v1");
}

fn w_live_differs(status: &Value, old: &str) -> bool {
    status["traffic"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|t| t["environment"] != old)
}

#[tokio::test]
async fn an_alarm_sends_traffic_back_in_the_pass_that_sees_it() {
    let mut w = serving_v1(&no_waits()).await;
    release(&w, "v2").await;
    let canary = until(&mut w, 1, 30, "v2 taking some traffic", |s| {
        share(s, "v2") > 0
    })
    .await;
    assert!(share(&canary, "v1") > 0, "old instances still registered");
    w.sim
        .set_alarm(
            "hello-5xx",
            ionroller_shared::events::AlarmState::Alarm,
            Some("5xx rate 9%".into()),
            Some(9.0),
        )
        .expect("set alarm");
    w.tick(1).await;
    // One pass observed the alarm, started the rollback and made its traffic change: no
    // interval is lost between deciding to roll back and doing it.
    let config: ionroller_shared::config::ServiceConfig =
        serde_json::from_str(&no_waits()).expect("config");
    let view = ionroller_shared::cloud::Cloud::observe(&w.sim, "hello", &config)
        .await
        .expect("observe");
    let v2: Vec<&str> = view
        .environments
        .iter()
        .filter(|e| e.version == "v2")
        .flat_map(|e| e.instances.iter().map(|i| i.id.as_str()))
        .collect();
    assert!(!v2.is_empty());
    assert!(
        view.registrations
            .iter()
            .all(|r| !v2.contains(&r.id.as_str())),
        "{view:#?}"
    );
}

#[tokio::test]
async fn a_repair_never_waits_for_a_person_and_brings_back_full_capacity() {
    // The example config: the canary waits for a promote. v1 is served after one.
    let mut w = World::create();
    w.save_config(HELLO).await;
    release(&w, "v1").await;
    for _ in 0..60 {
        w.tick(1).await;
        let _ = w.call("POST", "/v1/services/hello/promote", "").await;
        if idle_on("v1")(&w.status().await) {
            break;
        }
    }
    let before = w.status().await;
    assert!(idle_on("v1")(&before), "{before:#}");
    let capacity = before["in_service"].as_u64().unwrap_or(0);
    let env = w.sim.live_environments("hello")[0].clone();

    // The serving environment is terminated behind ionroller's back. No one promotes now.
    w.sim.terminate_outside(&env).unwrap();
    let repaired = until(&mut w, 1, 60, "v1 serving again without a promote", |s| {
        idle_on("v1")(s) && w_live_differs(s, &env)
    })
    .await;
    assert_eq!(
        repaired["in_service"].as_u64(),
        Some(capacity),
        "{repaired:#}"
    );
    assert_eq!(
        repaired["history"][0]["requested_by"], "roller",
        "{repaired:#}"
    );
    assert_eq!(
        repaired["history"][0]["outcome"], "completed",
        "{repaired:#}"
    );
}

#[tokio::test]
async fn rollback_to_a_version_that_never_served_is_refused_with_the_choices() {
    let mut w = serving_v1(&no_waits()).await;
    let (status, body) = w
        .call(
            "POST",
            "/v1/services/hello/rollback",
            r#"{"to_version":"v99"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("v99 never served"), "{message}");
    assert!(message.contains("one of: v1"), "{message}");
    assert!(
        w.sim.live_environments("hello").len() == 1,
        "nothing launched"
    );
    w.tick(1).await;
    assert!(w.status().await["rollout"].is_null());
}

/// Secrets are references: the config, its events and the cloud hold the ARN, and the
/// simulated cloud records it on the environment as Elastic Beanstalk records its environment
/// secrets.
#[tokio::test]
async fn secrets_reach_the_cloud_as_references() {
    let arn = "arn:aws:ssm:us-east-1:111122223333:parameter/hello/db-password";
    let config = no_waits().replace(
        "\"run_args\"",
        &format!("\"secrets\": {{ \"DB_PASSWORD\": \"{arn}\" }}, \"run_args\""),
    );
    let w = serving_v1(&config).await;
    let status = w.status().await;
    let environment = status["environments"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["version"] == "v1")
        .and_then(|e| e["name"].as_str())
        .unwrap_or_else(|| panic!("no v1 environment: {status:#}"))
        .to_string();
    let recorded = w.sim.environment_secrets(&environment).expect("recorded");
    assert_eq!(
        recorded.get("DB_PASSWORD").map(String::as_str),
        Some(arn),
        "{recorded:?}"
    );
    let (_, saved) = w.call("GET", "/v1/services/hello/config", "").await;
    assert_eq!(saved["config"]["secrets"]["DB_PASSWORD"], arn, "{saved}");
    let log = w
        .store
        .read_all(
            None,
            1000,
            &ionroller_shared::store::ReadFilter::stream_prefix("service:hello"),
        )
        .await
        .expect("read the log");
    let intent = log
        .iter()
        .find(|e| {
            e.data.to_string().contains("create_environment")
                || e.data.to_string().contains("create-environment")
        })
        .unwrap_or_else(|| panic!("no create-environment intent in {log:?}"));
    assert_eq!(
        intent.data.to_string().matches(arn).count(),
        1,
        "the intent carries the reference: {}",
        intent.data
    );
}
