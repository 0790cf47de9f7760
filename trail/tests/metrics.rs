//! `/metrics` through the router, parsed, once the projector has caught up: every family keeps
//! its name and type, and the gauges say how far trail has got. A renamed metric fails here
//! before a dashboard (or the end-to-end test that waits on `trail_lag_events 0`) notices.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use ionroller_shared::store::{
    EventId, EventMetadata, EventStore, ExpectedRevision, NewEvent, StreamId,
};
use ionroller_store_sqlite::{SqliteOptions, SqliteStore};
use ionroller_trail::db::TrailDb;
use ionroller_trail::runner::Trail;
use serde_json::json;
use tower::ServiceExt;

fn pause(reason: &str) -> NewEvent {
    NewEvent {
        id: EventId::random(),
        event_type: "pause-requested".into(),
        schema_version: 1,
        data: json!({ "reason": reason }),
        metadata: EventMetadata {
            actor: "alice".into(),
            correlation_id: uuid::Uuid::nil(),
            causation_id: None,
            occurred_at: chrono::Utc::now(),
        },
    }
}

/// `# TYPE` lines by family, and unlabelled samples by name (trail's gauges have no labels).
fn parse(text: &str) -> (BTreeMap<&str, &str>, BTreeMap<&str, f64>) {
    let mut types = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line has a kind");
            types.insert(name, kind);
        } else if !line.starts_with('#') && !line.is_empty() {
            let (name, value) = line.split_once(' ').expect("sample has a value");
            assert!(!name.contains('{'), "unexpected labels: {line}");
            samples.insert(name, value.parse().expect("sample value is a number"));
        }
    }
    (types, samples)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_keep_their_names_and_report_a_caught_up_projection() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store: Arc<dyn EventStore> = Arc::new(
        SqliteStore::open(dir.path().join("events.sqlite"), SqliteOptions::default())
            .expect("open store"),
    );
    let stream = StreamId::new("service:hello").expect("stream id");
    store
        .append(
            &stream,
            ExpectedRevision::NoStream,
            vec![pause("a"), pause("b"), pause("c")],
        )
        .await
        .expect("append");
    let trail = Trail::new(
        store.clone(),
        TrailDb::open(dir.path().join("trail.sqlite")).expect("open projection"),
    );
    let runner = tokio::spawn(trail.clone().run(std::future::pending()));
    for _ in 0..400 {
        if trail.status.lock().expect("status").rows == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let request = Request::get("/metrics")
        .body(Body::empty())
        .expect("request");
    // `--public-metrics`: a scraper without a token (the guarded default is in the e2e tests).
    let auth = std::sync::Arc::new(ionroller_auth::Authenticator::new(store.clone()));
    let response = ionroller_trail::api::app(trail.clone(), auth, true)
        .oneshot(request)
        .await
        .expect("answer");
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
    let (types, samples) = parse(&text);

    let families = [
        "trail_store_head_position",
        "trail_checkpoint_position",
        "trail_lag_events",
        "trail_audit_rows",
        "trail_stopped",
    ];
    for family in families {
        assert_eq!(types.get(family), Some(&"gauge"), "{family} in\n{text}");
    }
    let counters = [
        "trail_http_unauthenticated_total",
        "trail_http_forbidden_total",
    ];
    for family in counters {
        assert_eq!(types.get(family), Some(&"counter"), "{family} in\n{text}");
        assert_eq!(samples[family], 0.0, "{text}");
    }
    assert_eq!(samples.len(), families.len() + counters.len(), "{text}");
    let head = store.head().await.expect("head").expect("events").commit() as f64;
    assert_eq!(samples["trail_store_head_position"], head);
    assert_eq!(samples["trail_checkpoint_position"], head);
    assert_eq!(samples["trail_lag_events"], 0.0);
    assert_eq!(samples["trail_audit_rows"], 3.0);
    assert_eq!(samples["trail_stopped"], 0.0);
    // What the end-to-end tests wait on, byte for byte.
    assert!(text.contains("\ntrail_lag_events 0\n"), "{text}");
    runner.abort();
}
