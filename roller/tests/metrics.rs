//! `/metrics` through the router, parsed: every family keeps its name and type, and the
//! per-service series carry their labels. A renamed metric fails here before a dashboard
//! notices.

mod support;

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use ionroller_shared::store::{EventId, EventMetadata, ExpectedRevision, NewEvent, StreamId};
use support::{World, HELLO};
use tower::ServiceExt;

/// The families and samples of a text exposition.
#[derive(Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Exposition {
    /// Parses the classic text format; label values here never hold `,` or `"`.
    fn parse(text: &str) -> Self {
        let mut out = Exposition::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE line has a kind");
                out.types.insert(name.into(), kind.into());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample has a value");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (
                    name,
                    labels
                        .trim_end_matches('}')
                        .split(',')
                        .map(|pair| {
                            let (k, v) = pair.split_once('=').expect("label is key=value");
                            (k.to_string(), v.trim_matches('"').to_string())
                        })
                        .collect(),
                ),
                None => (series, BTreeMap::new()),
            };
            let value = value.parse().expect("sample value is a number");
            out.samples.push((name.into(), labels, value));
        }
        out
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|(n, l, _)| n == name && *l == want)
            .map(|(_, _, v)| *v)
            .unwrap_or_else(|| panic!("no sample {name} {want:?}"))
    }
}

#[tokio::test]
async fn every_family_keeps_its_name_type_and_labels() {
    let mut w = World::create();
    w.save_config(HELLO).await;
    let (status, body) = w
        .call("POST", "/v1/services/hello/releases", r#"{"version":"v1"}"#)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    for _ in 0..5 {
        w.tick(5).await;
    }
    // A known type whose data does not decode: the next reconcile of `hello` fails, which is
    // what the per-service failure series is for.
    let poison = NewEvent {
        id: EventId::random(),
        event_type: "step-started".into(),
        schema_version: 1,
        data: serde_json::json!({}),
        metadata: EventMetadata {
            actor: "tester".into(),
            correlation_id: uuid::Uuid::nil(),
            causation_id: None,
            occurred_at: support::start(),
        },
    };
    let stream = StreamId::new("service:hello").expect("stream id");
    w.store
        .append(&stream, ExpectedRevision::Any, vec![poison])
        .await
        .expect("append");
    w.tick(5).await;

    let request = Request::get("/metrics")
        .header("authorization", format!("Bearer {}", w.token().await))
        .body(Body::empty())
        .expect("request");
    let response = w.router.clone().oneshot(request).await.expect("answer");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8(bytes.to_vec()).expect("UTF-8");
    let m = Exposition::parse(&text);

    for (family, kind) in [
        ("ionroller_store_head_position", "gauge"),
        ("ionroller_reconcile_passes_total", "counter"),
        ("ionroller_reconcile_failures_total", "counter"),
        ("ionroller_service_reconcile_failures_total", "counter"),
        ("ionroller_reconcile_last_pass_seconds", "gauge"),
        ("ionroller_reconcile_pass_duration_seconds", "histogram"),
        ("ionroller_service_reconcile_duration_seconds", "histogram"),
        ("ionroller_events_appended_total", "counter"),
        ("ionroller_append_conflicts_total", "counter"),
        ("ionroller_http_unauthenticated_total", "counter"),
        ("ionroller_http_forbidden_total", "counter"),
        ("ionroller_actions_succeeded_total", "counter"),
        ("ionroller_actions_failed_total", "counter"),
        ("ionroller_service_actions_total", "counter"),
        ("ionroller_services", "gauge"),
        ("ionroller_rollouts_in_progress", "gauge"),
    ] {
        assert_eq!(
            m.types.get(family).map(String::as_str),
            Some(kind),
            "{family} in\n{text}"
        );
    }
    assert_eq!(m.value("ionroller_reconcile_passes_total", &[]), 6.0);
    assert_eq!(m.value("ionroller_reconcile_failures_total", &[]), 1.0);
    assert_eq!(
        m.value(
            "ionroller_service_reconcile_failures_total",
            &[("service", "hello")]
        ),
        1.0
    );
    assert_eq!(m.value("ionroller_services", &[]), 1.0);
    assert!(m.value("ionroller_store_head_position", &[]) > 0.0);
    assert!(m.value("ionroller_events_appended_total", &[]) > 0.0);
    let succeeded = m.value("ionroller_actions_succeeded_total", &[]);
    assert!(succeeded > 0.0, "the release executed actions:\n{text}");
    assert_eq!(
        m.value(
            "ionroller_service_actions_total",
            &[("service", "hello"), ("outcome", "succeeded")]
        ),
        succeeded,
        "one service: its series is the total"
    );
    assert_eq!(
        m.value(
            "ionroller_reconcile_pass_duration_seconds_bucket",
            &[("le", "+Inf")]
        ),
        6.0
    );
    assert_eq!(
        m.value("ionroller_reconcile_pass_duration_seconds_count", &[]),
        6.0
    );
    assert_eq!(
        m.value(
            "ionroller_service_reconcile_duration_seconds_count",
            &[("service", "hello")]
        ),
        6.0,
        "one reconcile of hello per pass"
    );
}
