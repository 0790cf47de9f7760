//! The REST API's edges: bad input gets a 4xx naming the field, conflicts are 409, concurrent
//! commands are serialised (and recorded), and the event feed resumes from Last-Event-ID.

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use support::*;
use tower::ServiceExt;

#[tokio::test]
async fn bad_input_is_a_4xx_that_names_the_field() {
    let w = World::create();
    let (status, body) = w.call("GET", "/v1/services/hello", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = w.call("GET", "/v1/services/Not_A_Name", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["problems"][0]["field"], "service");

    let broken = HELLO
        .replace("\"min\": 2", "\"min\": 0")
        .replace("[25, 50, 100]", "[50, 25]");
    let (status, body) = w.call("PUT", "/v1/services/hello/config", &broken).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let fields: Vec<&str> = body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"instances.min") && fields.contains(&"rollout.steps[1]"),
        "{body}"
    );
    let (status, body) = w
        .call("PUT", "/v1/services/hello/config", "{ not json")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    w.save_config(HELLO).await;
    for (body, field) in [
        ("{", "body"),
        (r#"{"versio":"v1"}"#, "versio"),
        (r#"{"version":""}"#, "version"),
        (r#"{"version":"v1","reason":5}"#, "reason"),
        (r#"{"version":5}"#, "version"),
    ] {
        let (status, answer) = w.call("POST", "/v1/services/hello/releases", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["problems"][0]["field"], field, "{body}: {answer}");
    }
    let (status, answer) = w.call("GET", "/v1/services/hello/plan", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["problems"][0]["field"], "version");
    let (status, answer) = w
        .call("POST", "/v1/sim/alarms/hello-5xx", r#"{"state":"RED"}"#)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["problems"][0]["field"], "state");
    let (status, _) = w.call("POST", "/v1/services/hello/pause", "").await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing to pause");
    let (status, _) = w.call("POST", "/v1/services/hello/rollback", "").await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing to roll back to");
}

#[tokio::test]
async fn plan_reports_steps_and_worst_case() {
    let mut w = World::create();
    w.save_config(&HELLO.replace("\"until_promoted\"", "\"10s\""))
        .await;
    // A first release has nothing to protect: one step, all traffic once healthy.
    let (status, body) = w
        .call("GET", "/v1/services/hello/plan?version=v1", "")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["plan"]["steps"][0]["label"], "first release", "{body}");
    assert_eq!(body["plan"]["steps"][0]["percent"], 100, "{body}");
    assert_eq!(body["plan"]["steps"].as_array().map(Vec::len), Some(1));
    let (status, body) = w
        .call("POST", "/v1/services/hello/releases", r#"{"version":"v1"}"#)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    for _ in 0..20 {
        w.tick(1).await;
    }
    assert_eq!(w.status().await["stable_version"], "v1");
    let (status, body) = w
        .call("GET", "/v1/services/hello/plan?version=v2", "")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let percents: Vec<u64> = body["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["percent"].as_u64().unwrap())
        .collect();
    assert_eq!(percents, vec![10, 25, 50, 100]);
    // launch + 4 steps at the 2m deadline each, 10s canary pause, two 3s pauses.
    assert_eq!(body["plan"]["worst_case_secs"], 5 * 120 + 10 + 6);
}

#[tokio::test]
async fn concurrent_releases_are_serialised_and_the_loser_is_recorded_as_superseded() {
    let w = World::create();
    w.save_config(HELLO).await;
    let (a, b) = tokio::join!(
        w.call("POST", "/v1/services/hello/releases", r#"{"version":"v1"}"#),
        w.call("POST", "/v1/services/hello/releases", r#"{"version":"v2"}"#),
    );
    assert_eq!(
        (a.0, b.0),
        (StatusCode::ACCEPTED, StatusCode::ACCEPTED),
        "{a:?} {b:?}"
    );
    let status = w.status().await;
    let current = status["rollout"]["id"].clone();
    assert_eq!(status["history"][0]["outcome"], "superseded", "{status:#}");
    assert_ne!(status["history"][0]["id"], current);
    let ids = [a.1["rollout_id"].clone(), b.1["rollout_id"].clone()];
    assert!(ids.contains(&current) && ids.contains(&status["history"][0]["id"]));
}

async fn read_sse(w: &World, last_event_id: Option<&str>, want: usize) -> Vec<(String, String)> {
    let mut request = Request::builder()
        .uri("/v1/services/hello/events")
        .header("authorization", format!("Bearer {}", w.token().await));
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = w
        .router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut text = String::new();
    let mut events = Vec::new();
    while events.len() < want {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("an event within 5 s")
            .expect("stream open")
            .expect("frame");
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            if field("event:") != "caught-up" && !block.trim().is_empty() {
                events.push((field("id:"), field("event:")));
            }
        }
    }
    events
}

#[tokio::test]
async fn the_event_feed_resumes_after_last_event_id() {
    let w = World::create();
    w.save_config(HELLO).await;
    w.call("POST", "/v1/services/hello/releases", r#"{"version":"v1"}"#)
        .await;
    let first = read_sse(&w, None, 3).await;
    let types: Vec<&str> = first.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        types,
        vec!["config-saved", "release-requested", "plan-computed"]
    );
    let resumed = read_sse(&w, Some(&first[0].0), 2).await;
    assert_eq!(
        resumed,
        first[1..].to_vec(),
        "resumes strictly after the given id"
    );
    let bad = Request::builder()
        .uri("/v1/services/hello/events")
        .header("authorization", format!("Bearer {}", w.token().await))
        .header("last-event-id", "yesterday")
        .body(Body::empty())
        .unwrap();
    let response = w.router.clone().oneshot(bad).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn openapi_metrics_and_health_answer() {
    let mut w = World::create();
    w.save_config(HELLO).await;
    w.tick(1).await;
    w.tick(1).await;
    let (status, doc) = w.call("GET", "/v1/openapi.json", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["paths"]["/v1/services/{service}/releases"]["post"].is_object());
    let (status, text) = w.call("GET", "/metrics", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(text
        .as_str()
        .unwrap_or_default()
        .contains("ionroller_store_head_position"));
    let (status, _) = w.call("GET", "/healthz", "").await;
    assert_eq!(status, StatusCode::OK);
}

/// Stored configs tolerate fields a newer version adds, but a person's config must not lose a
/// misspelt setting silently: the PUT body stays strict and names the unknown field.
#[tokio::test]
async fn a_config_with_an_unknown_field_is_refused_naming_it() {
    let w = World::create();
    let typo = HELLO.replacen(
        "\"rollout\": {",
        "\"rollout\": {\n    \"pauze\": \"3s\",",
        1,
    );
    assert_ne!(
        typo, HELLO,
        "the example has a rollout object to misspell in"
    );
    let (status, body) = w.call("PUT", "/v1/services/hello/config", &typo).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["problems"][0]["field"], "rollout.pauze", "{body}");
    let (status, _) = w.call("GET", "/v1/services/hello", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was saved");
}

/// A log from before claims existed: `legacy` saved its config with no claim. Its balancer is
/// still its own (read once per process), until it saves a config naming another one.
#[tokio::test]
async fn a_load_balancer_named_before_claims_existed_stays_its_services() {
    let w = World::create();
    let config = ionroller_shared::config::parse_service_config(HELLO).expect("config");
    let legacy = ionroller_core::ServiceState::new("legacy");
    ionroller_roller::log::append(
        w.store.as_ref(),
        &legacy,
        &[ionroller_shared::events::ServiceEvent::ConfigSaved {
            config_version: 1,
            config: Box::new(config),
        }],
        "someone@example.com",
        start(),
    )
    .await
    .expect("append");
    let (status, body) = w.call("PUT", "/v1/services/shop/config", HELLO).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("service legacy")),
        "{body}"
    );
    // legacy moves to another balancer (and so claims it): the old one is free.
    let moved = HELLO.replace("hello-lb", "legacy-lb-2");
    let (status, body) = w.call("PUT", "/v1/services/legacy/config", &moved).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = w.call("PUT", "/v1/services/shop/config", HELLO).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_load_balancer_serves_one_service_and_a_second_is_refused_naming_the_owner() {
    let w = World::create();
    w.save_config(HELLO).await;
    // The most natural first move: copy hello's config for a second service.
    let (status, body) = w.call("PUT", "/v1/services/shop/config", HELLO).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("hello-lb belongs to service hello")),
        "{body}"
    );
    assert_eq!(body["problems"][0]["field"], "endpoint.load_balancer.name");
    let (status, _) = w.call("GET", "/v1/services/shop", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was saved for shop");

    // Its own load balancer is fine.
    let shop = HELLO.replace("hello-lb", "shop-lb");
    let (status, body) = w.call("PUT", "/v1/services/shop/config", &shop).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // When hello moves to another load balancer, its old one is free for others...
    let moved = HELLO.replace("hello-lb", "hello-lb-2");
    let (status, body) = w.call("PUT", "/v1/services/hello/config", &moved).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = w.call("PUT", "/v1/services/shop/config", HELLO).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // ... and hello cannot move back onto what shop now owns; shop-lb was released.
    let (status, body) = w.call("PUT", "/v1/services/hello/config", HELLO).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["message"]
        .as_str()
        .is_some_and(|m| m.contains("service shop")));
    let (status, body) = w.call("PUT", "/v1/services/hello/config", &shop).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn two_services_claiming_one_load_balancer_at_once_get_one_owner() {
    for round in 0..10 {
        let w = World::create();
        let a = format!("svc-a{round}");
        let b = format!("svc-b{round}");
        let (pa, pb) = (
            format!("/v1/services/{a}/config"),
            format!("/v1/services/{b}/config"),
        );
        let ((sa, _), (sb, _)) = tokio::join!(w.call("PUT", &pa, HELLO), w.call("PUT", &pb, HELLO));
        let won = [sa, sb].iter().filter(|s| **s == StatusCode::OK).count();
        let refused = [sa, sb]
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count();
        assert_eq!((won, refused), (1, 1), "round {round}: {sa} {sb}");
    }
}

#[tokio::test]
async fn status_says_loudly_when_nothing_is_in_service() {
    let mut w = World::create();
    w.save_config(HELLO).await;
    let (status, body) = w
        .call("POST", "/v1/services/hello/releases", r#"{"version":"v1"}"#)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    for _ in 0..40 {
        w.tick(2).await;
        let _ = w.call("POST", "/v1/services/hello/promote", "").await;
    }
    let before = w.status().await;
    assert_eq!(before["stable_version"], "v1", "{before}");
    assert_eq!(before["warnings"], serde_json::json!([]), "{before}");
    assert!(before["in_service"].as_u64().is_some_and(|n| n > 0));
    // Everything deregistered behind the roller's back, and the roller not yet back.
    let registered: Vec<String> = w
        .roller
        .state("hello")
        .map(|s| s.registrations.keys().cloned().collect())
        .unwrap_or_default();
    assert!(!registered.is_empty());
    for id in registered {
        w.sim.deregister_outside(&id).expect("sim deregisters");
    }
    // One pass observes it (and starts the repair, seen by the next observation).
    w.tick(0).await;
    let after = w.status().await;
    assert_eq!(after["in_service"], 0, "{after}");
    assert!(
        after["warnings"][0]
            .as_str()
            .is_some_and(|m| m.starts_with("NOTHING IN SERVICE")),
        "{after}"
    );
}

/// The field of the first problem and its text, checking the answer is the API's JSON error.
fn first_problem(body: &serde_json::Value) -> (String, String) {
    assert!(body["error"].is_string(), "the API's error body: {body}");
    let problem = &body["problems"][0];
    (
        problem["field"].as_str().unwrap_or_default().to_string(),
        problem["problem"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn a_config_sent_as_anything_but_json_is_a_415_naming_the_content_type() {
    let w = World::create();
    let path = "/v1/services/hello/config";
    let (status, body) = w
        .call_raw("PUT", path, Some("text/plain"), HELLO.into())
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let (field, problem) = first_problem(&body);
    assert_eq!(field, "content-type", "{body}");
    assert!(problem.contains("application/json"), "{body}");
    let (status, body) = w
        .call_raw(
            "PUT",
            path,
            Some("application/json; charset=utf-8"),
            HELLO.into(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Without a Content-Type too: commands take only JSON, said so (a browser sends a
    // cross-site form post without asking; JSON it must ask for first).
    let (status, body) = w.call_raw("PUT", path, None, HELLO.into()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let (status, body) = w
        .call_raw("POST", "/v1/services/hello/pause", None, b"{}".to_vec())
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    // An empty body needs no Content-Type.
    let (status, body) = w
        .call_raw("POST", "/v1/services/hello/pause", None, Vec::new())
        .await;
    assert_ne!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let (status, body) = w
        .call_raw(
            "POST",
            "/v1/services/hello/releases",
            Some("text/plain"),
            br#"{"version":"v1"}"#.to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert_eq!(first_problem(&body).0, "content-type", "{body}");
}

#[tokio::test]
async fn a_body_over_256_kib_is_a_413_in_the_api_s_error_format() {
    let w = World::create();
    // A config of 2 MB: valid JSON, padded with whitespace.
    let mut big = HELLO.to_string();
    big.push_str(&" ".repeat(2_000_000));
    let (status, body) = w.call("PUT", "/v1/services/hello/config", &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"], "too_large", "{body}");
    let (field, problem) = first_problem(&body);
    assert_eq!(field, "body");
    assert!(problem.contains("256 KiB"), "{body}");
    let (status, _) = w.call("GET", "/v1/services/hello", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was saved");

    w.save_config(HELLO).await;
    let release = format!(
        r#"{{"version":"v1","reason":"{}"}}"#,
        "x".repeat(300 * 1024)
    );
    let (status, body) = w
        .call("POST", "/v1/services/hello/releases", &release)
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(first_problem(&body).0, "body");
}

#[tokio::test]
async fn a_body_that_is_not_utf8_is_refused_in_the_api_s_error_format() {
    let w = World::create();
    let mut bytes = b"{\n  \"image\": \"ex".to_vec();
    bytes.extend([0xff, 0xfe]);
    bytes.extend(b"\"\n}");
    let (status, body) = w
        .call_raw(
            "PUT",
            "/v1/services/hello/config",
            Some("application/json"),
            bytes.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (field, problem) = first_problem(&body);
    assert_eq!(field, "body");
    assert!(
        problem.contains("UTF-8") && problem.contains("line 2 column 15"),
        "{body}"
    );

    w.save_config(HELLO).await;
    let (status, body) = w
        .call_raw(
            "POST",
            "/v1/services/hello/releases",
            Some("application/json"),
            bytes,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (field, problem) = first_problem(&body);
    assert_eq!(field, "body");
    assert!(problem.contains("UTF-8"), "{body}");
}

#[tokio::test]
async fn invalid_json_names_its_line_and_column() {
    let w = World::create();
    let broken = HELLO.replace("\"min\": 2,", "\"min\": 2,,");
    let (status, body) = w.call("PUT", "/v1/services/hello/config", &broken).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (field, problem) = first_problem(&body);
    assert_eq!(field, "(document)", "{body}");
    assert!(problem.contains("line 10 column"), "{body}");
    assert!(
        !body.to_string().contains("\"?\""),
        "no unknown path: {body}"
    );

    w.save_config(HELLO).await;
    for text in ["{\n  \"version\": v1\n}", "{\"version\":\"v1\"} trailing"] {
        let (status, body) = w.call("POST", "/v1/services/hello/releases", text).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (field, problem) = first_problem(&body);
        assert_eq!(field, "body", "{body}");
        assert!(
            problem.contains(" line ") && problem.contains(" column "),
            "{body}"
        );
    }
    let (_, body) = w
        .call(
            "POST",
            "/v1/services/hello/releases",
            "{\n  \"version\": v1\n}",
        )
        .await;
    assert!(first_problem(&body).1.contains("line 2 column"), "{body}");
}

#[tokio::test]
async fn a_config_the_rules_refuse_is_not_saved_and_its_field_is_named() {
    let w = World::create();
    for (config, field) in [
        (
            HELLO.replace(
                "\"GREETING\": \"hello\"",
                "\"GREETING\": \"a\", \"GREETING\": \"b\"",
            ),
            "env.GREETING",
        ),
        (
            HELLO.replace("example/hello", "example/hel\\u202elo"),
            "image",
        ),
        (
            HELLO.replace("https://hello.example.com", "not a url"),
            "endpoint.url",
        ),
        (
            HELLO.replace("\"hello\" }", &format!("\"{}\" }}", "x".repeat(5000))),
            "env",
        ),
        (
            HELLO.replace("--log-format=json", "--a\\n--b"),
            "run_args[0]",
        ),
    ] {
        let (status, body) = w.call("PUT", "/v1/services/hello/config", &config).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {body}");
        assert_eq!(first_problem(&body).0, field, "{body}");
    }
    let (status, _) = w.call("GET", "/v1/services/hello", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was saved");
}

#[tokio::test]
async fn a_reason_with_a_right_to_left_override_is_refused_naming_it() {
    let w = World::create();
    w.save_config(HELLO).await;
    for path in ["releases", "rollback", "pause", "abort"] {
        let body = r#"{"version":"v1","reason":"fix \u202eredli"}"#;
        let body = if path == "releases" {
            body.to_string()
        } else {
            body.replace("\"version\":\"v1\",", "")
        };
        let (status, answer) = w
            .call("POST", &format!("/v1/services/hello/{path}"), &body)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
        assert_eq!(first_problem(&answer).0, "reason", "{path}: {answer}");
    }
}

/// A cloud whose own check of a config (`Cloud::validate_config`) answers as told: these
/// problems, or `Err` for a cloud that cannot be asked.
struct Judging(Result<Vec<ionroller_shared::config::FieldError>, String>);

#[async_trait::async_trait]
impl ionroller_shared::cloud::Cloud for Judging {
    async fn validate_config(
        &self,
        _config: &ionroller_shared::config::ServiceConfig,
    ) -> Result<Vec<ionroller_shared::config::FieldError>, ionroller_shared::cloud::CloudError>
    {
        self.0
            .clone()
            .map_err(ionroller_shared::cloud::CloudError::Unavailable)
    }

    async fn observe(
        &self,
        _service: &str,
        _config: &ionroller_shared::config::ServiceConfig,
    ) -> Result<ionroller_shared::cloud::CloudView, ionroller_shared::cloud::CloudError> {
        Ok(Default::default())
    }

    async fn execute(
        &self,
        _service: &str,
        _config: &ionroller_shared::config::ServiceConfig,
        _action_id: uuid::Uuid,
        _action: &ionroller_shared::events::Action,
    ) -> Result<String, ionroller_shared::cloud::CloudError> {
        Ok(String::new())
    }
}

#[tokio::test]
async fn a_config_the_cloud_refuses_or_cannot_check_is_not_saved() {
    let refused = ionroller_shared::config::FieldError {
        field: "instances.type".into(),
        problem: "\"t3 small\" is not a value Elastic Beanstalk offers".into(),
    };
    for (judging, expected, code) in [
        (Ok(vec![refused]), StatusCode::BAD_REQUEST, "invalid"),
        (
            Err("DescribeConfigurationOptions: timed out".to_string()),
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
        ),
        (Ok(vec![]), StatusCode::OK, ""),
    ] {
        let mut w = World::create();
        let clock: std::sync::Arc<dyn ionroller_roller::clock::Clock> = w.clock.clone();
        w.router = ionroller_roller::api::app(
            ionroller_roller::api::AppState::new(w.store.clone(), clock)
                .with_cloud(std::sync::Arc::new(Judging(judging))),
            axum::Router::new(),
        );
        let (status, body) = w.call("PUT", "/v1/services/hello/config", HELLO).await;
        assert_eq!(status, expected, "{body}");
        if status == StatusCode::OK {
            continue;
        }
        assert_eq!(body["error"], code, "{body}");
        if status == StatusCode::BAD_REQUEST {
            assert_eq!(body["problems"][0]["field"], "instances.type", "{body}");
        } else {
            let message = body["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("could not be checked against Elastic Beanstalk"),
                "{body}"
            );
        }
        let (status, _) = w.call("GET", "/v1/services/hello", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "nothing was saved");
    }
}

/// The log keeps every config forever: a value that looks like a credential is refused with a
/// 400 naming its field and pointing at `secrets`, and the answer never repeats the value.
#[tokio::test]
async fn a_credential_looking_env_value_is_a_400_naming_the_field_and_not_saved() {
    let w = World::create();
    let key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let config = HELLO.replace(
        "\"GREETING\": \"hello\"",
        &format!("\"AWS_SECRET_ACCESS_KEY\": \"{key}\""),
    );
    let (status, body) = w.call("PUT", "/v1/services/hello/config", &config).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (field, problem) = first_problem(&body);
    assert_eq!(field, "env.AWS_SECRET_ACCESS_KEY", "{body}");
    assert!(problem.contains("AWS secret access key"), "{problem}");
    assert!(problem.contains("\"secrets\""), "{problem}");
    assert!(
        !body.to_string().contains(key),
        "the value is echoed: {body}"
    );
    let (status, _) = w.call("GET", "/v1/services/hello", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was saved");
}

/// Ticks until `done` holds on the status (at most 60 passes, 2 s apart).
async fn tick_until(
    w: &mut World,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    for _ in 0..60 {
        let status = w.status().await;
        if done(&status) {
            return status;
        }
        w.tick(2).await;
    }
    panic!("never reached: {what}: {}", w.status().await);
}

/// What the console needs from the API: a fleet sort key (`attention`), the progress deadline,
/// a dry run of every command that records nothing, a full promote, and the caller's
/// permissions on a service.
#[tokio::test]
async fn attention_deadline_dry_runs_and_a_full_promote_as_the_console_uses_them() {
    let mut w = World::create();
    w.save_config(HELLO).await;
    assert_eq!(
        w.status().await["attention"],
        serde_json::json!({ "rank": 0, "reason": "" })
    );
    w.call("POST", "/v1/services/hello/releases", r#"{"version":"v1"}"#)
        .await;
    let launching = w.status().await;
    assert_eq!(launching["attention"]["rank"], 1, "{launching}");
    assert!(
        launching["rollout"]["deadline_at"].is_string(),
        "{launching}"
    );
    tick_until(&mut w, "v1 stable", |s| s["stable_version"] == "v1").await;

    w.call("POST", "/v1/services/hello/releases", r#"{"version":"v2"}"#)
        .await;
    let canary = tick_until(&mut w, "the canary waits", |s| s["attention"]["rank"] == 2).await;
    assert!(
        canary["attention"]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("release of v2: waiting for promote")),
        "{canary}"
    );
    assert!(
        canary["rollout"]["deadline_at"].is_null(),
        "no deadline while a person is awaited: {canary}"
    );

    // Dry runs: 200, what would be recorded, and nothing recorded.
    for (path, body, would) in [
        (
            "promote",
            r#"{"full":true,"reason":"clean"}"#,
            "promote to full (every step left skipped) requested: clean",
        ),
        ("pause", r#"{"reason":"lunch"}"#, "pause requested"),
        ("abort", "", "abort requested"),
        ("rollback", "", "abort requested: rollback requested"),
    ] {
        let (status, answer) = w
            .call(
                "POST",
                &format!("/v1/services/hello/{path}?dry_run=true"),
                body,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        assert_eq!(answer["would_record"][0], would, "{path}: {answer}");
    }
    let (status, answer) = w
        .call(
            "POST",
            "/v1/services/hello/releases?dry_run=true",
            r#"{"version":"v3"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // Releasing over a rollout in progress supersedes it: the preview says so first.
    let would: Vec<String> = serde_json::from_value(answer["would_record"].clone()).expect("lines");
    assert!(would[0].starts_with("superseded by rollout"), "{would:?}");
    assert_eq!(would[1], "release of v3 requested", "{would:?}");
    let (status, answer) = w
        .call("POST", "/v1/services/hello/resume?dry_run=true", "")
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a refusal is the same as for the real command: {answer}"
    );
    let (status, answer) = w
        .call("POST", "/v1/services/hello/promote?dry_run=maybe", "")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let unchanged = w.status().await;
    assert_eq!(
        unchanged["rollout"], canary["rollout"],
        "dry runs recorded nothing"
    );

    // A full promote skips the 25% and 50% steps: the next step started is the last.
    let (status, answer) = w
        .call(
            "POST",
            "/v1/services/hello/promote",
            r#"{"full":true,"reason":"clean"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert!(answer.get("would_record").is_none(), "{answer}");
    let full = tick_until(&mut w, "the last step", |s| s["rollout"]["step"] == 4).await;
    assert_eq!(full["rollout"]["promoted_full"], true, "{full}");
    tick_until(&mut w, "v2 stable", |s| s["stable_version"] == "v2").await;

    let (status, me) = w.call("GET", "/v1/whoami?service=hello", "").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(
        me["permissions"],
        serde_json::json!(["read", "deploy", "configure", "administer"])
    );
    let (status, me) = w.call("GET", "/v1/whoami", "").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert!(me.get("permissions").is_none(), "{me}");
    let (status, bad) = w.call("GET", "/v1/whoami?service=Bad_Name", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
}

/// After an alarm rollback the service still needs a person: first for the alarm that fires,
/// then, once it is OK, for the release that was rolled back, until the next one.
#[tokio::test]
async fn a_firing_alarm_and_a_rolled_back_release_keep_a_service_at_the_top() {
    use ionroller_shared::events::AlarmState;
    let mut w = World::create();
    w.save_config(HELLO).await;
    w.call("POST", "/v1/services/hello/releases", r#"{"version":"v1"}"#)
        .await;
    tick_until(&mut w, "v1 stable", |s| s["stable_version"] == "v1").await;
    w.call("POST", "/v1/services/hello/releases", r#"{"version":"v2"}"#)
        .await;
    tick_until(&mut w, "the canary waits", |s| s["attention"]["rank"] == 2).await;
    w.sim
        .set_alarm(
            "hello-5xx",
            AlarmState::Alarm,
            Some("5xx at 9%".into()),
            None,
        )
        .expect("set the alarm");
    let firing = tick_until(&mut w, "rolled back", |s| s["rollout"].is_null()).await;
    assert_eq!(firing["attention"]["rank"], 4, "{firing}");
    assert!(
        firing["attention"]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("alarm hello-5xx is in ALARM: 5xx at 9%")),
        "{firing}"
    );
    w.sim
        .set_alarm("hello-5xx", AlarmState::Ok, None, None)
        .expect("clear the alarm");
    let after = tick_until(&mut w, "the alarm is OK", |s| s["attention"]["rank"] != 4).await;
    assert_eq!(after["attention"]["rank"], 3, "{after}");
    assert!(
        after["attention"]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("the last release, of v2, was rolled back: alarm")),
        "{after}"
    );
}
