//! The projector against a real SQLite log: unknown event types are kept as they are, a
//! poison event stops it at its position (nothing skipped), a rebuild from position zero
//! reproduces the same rows, and a trail stopped mid-rollout names its version on the rows it
//! projects after it restarts.

mod support;

use std::sync::Arc;
use std::time::Duration;

use ionroller_shared::store::{
    EventId, EventMetadata, EventStore, ExpectedRevision, NewEvent, StreamId,
};
use ionroller_store_sqlite::{SqliteOptions, SqliteStore};
use ionroller_trail::db::{Location, TrailDb};
use ionroller_trail::runner::{Trail, TrailError};
use serde_json::json;

fn event(event_type: &str, data: serde_json::Value) -> NewEvent {
    NewEvent {
        id: EventId::random(),
        event_type: event_type.into(),
        schema_version: 1,
        data,
        metadata: EventMetadata {
            actor: "alice".into(),
            correlation_id: uuid::Uuid::nil(),
            causation_id: None,
            occurred_at: chrono::Utc::now(),
        },
    }
}

/// A fresh projection: trail's SQLite file, or a PostgreSQL schema in the test server.
async fn projection(kind: &str, dir: &std::path::Path) -> Option<TrailDb> {
    match kind {
        "sqlite" => Some(TrailDb::open(dir.join("trail.sqlite")).unwrap()),
        _ => {
            let url = support::pg_url()?;
            let schema = support::fresh_schema();
            Some(TrailDb::open_postgres(&url, &schema).await.unwrap())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_types_are_kept_and_a_poison_event_stops_the_projection() {
    for kind in ["sqlite", "postgres"] {
        poison(kind).await;
    }
}

async fn poison(kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = projection(kind, dir.path()).await else {
        return;
    };
    let store: Arc<dyn EventStore> = Arc::new(
        SqliteStore::open(dir.path().join("events.sqlite"), SqliteOptions::default()).unwrap(),
    );
    let s = StreamId::new("service:hello").unwrap();
    store
        .append(
            &s,
            ExpectedRevision::NoStream,
            vec![
                event("pause-requested", json!({ "reason": "lunch" })),
                event("from-a-newer-roller", json!({ "anything": [1, 2] })),
            ],
        )
        .await
        .unwrap();
    let poison = store
        .append(
            &s,
            ExpectedRevision::Any,
            vec![event("step-started", json!({ "step": "not a number" }))],
        )
        .await
        .unwrap();
    store
        .append(
            &s,
            ExpectedRevision::Any,
            vec![event("resume-requested", json!({}))],
        )
        .await
        .unwrap();

    let trail = Trail::new(store.clone(), db);
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        trail.clone().run(std::future::pending()),
    )
    .await;
    match result {
        Ok(Err(TrailError::Poison {
            position,
            event_type,
            ..
        })) => {
            assert_eq!(position, poison.position);
            assert_eq!(event_type, "step-started");
        }
        other => panic!("expected the projection to stop at the poison event, got {other:?}"),
    }
    let status = trail.status.lock().unwrap().clone();
    assert!(status.error.unwrap().contains("step-started"));
    let rows = trail.db.rows_after(0, 100).await.unwrap();
    let types: Vec<&str> = rows.iter().map(|r| r.event_type.as_str()).collect();
    assert_eq!(
        types,
        vec!["pause-requested", "from-a-newer-roller"],
        "nothing at or after the poison event"
    );
    assert!(rows[1].summary.contains("not known to this trail"));
    assert_eq!(rows[1].data, json!({ "anything": [1, 2] }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_reproduces_the_projection() {
    for kind in ["sqlite", "postgres"] {
        rebuild(kind).await;
    }
}

async fn rebuild(kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = projection(kind, dir.path()).await else {
        return;
    };
    let store: Arc<dyn EventStore> = Arc::new(
        SqliteStore::open(dir.path().join("events.sqlite"), SqliteOptions::default()).unwrap(),
    );
    for i in 0..30 {
        let s = StreamId::new(format!("service:s{}", i % 3)).unwrap();
        store
            .append(
                &s,
                ExpectedRevision::Any,
                vec![event(
                    "pause-requested",
                    json!({ "reason": format!("r{i}") }),
                )],
            )
            .await
            .unwrap();
    }
    let trail = Trail::new(store.clone(), db);
    let runner = tokio::spawn(trail.clone().run(std::future::pending()));
    for _ in 0..100 {
        if trail.status.lock().unwrap().rows == 30 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    runner.abort();
    let _ = runner.await;
    let before = trail.db.rows_after(0, 100).await.unwrap();
    assert_eq!(before.len(), 30);
    // Damage the live projection, then rebuild it from the log.
    match kind {
        "sqlite" => {
            rusqlite::Connection::open(dir.path().join("trail.sqlite"))
                .unwrap()
                .execute("DELETE FROM audit WHERE seq > 10", [])
                .unwrap();
        }
        _ => {
            let url = std::env::var("IONROLLER_TEST_PG_URL").unwrap();
            let Location::PostgresSchema(schema) = trail.db.location() else {
                panic!("a PostgreSQL projection is in a schema");
            };
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client
                .execute(
                    &format!("DELETE FROM \"{schema}\".audit WHERE seq > 10"),
                    &[],
                )
                .await
                .unwrap();
        }
    }
    assert_eq!(
        trail.db.rows_after(0, 100).await.unwrap().len(),
        10,
        "damaged"
    );
    let rows = ionroller_trail::rebuild::rebuild(store.as_ref(), &*trail.db)
        .await
        .unwrap();
    assert_eq!(rows, 30);
    assert_eq!(trail.db.rows_after(0, 100).await.unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_resumes_far_behind_without_missing_rows() {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(
        SqliteStore::open(dir.path().join("events.sqlite"), SqliteOptions::default()).unwrap(),
    );
    for i in 0..12 {
        let batch = (0..100)
            .map(|_| event("pause-requested", json!({ "reason": "r" })))
            .collect();
        let s = StreamId::new(format!("service:s{i}")).unwrap();
        store
            .append(&s, ExpectedRevision::NoStream, batch)
            .await
            .unwrap();
    }
    let trail = Trail::new(
        store.clone(),
        TrailDb::open(dir.path().join("trail.sqlite")).unwrap(),
    );
    let runner = tokio::spawn(trail.clone().run(std::future::pending()));
    for _ in 0..200 {
        if trail.status.lock().unwrap().rows == 1200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (app, token) = support::app_with_token(trail.clone(), store.clone()).await;
    let request = Request::builder()
        .uri("/v1/feed")
        .header("last-event-id", "150")
        .header("authorization", token)
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let mut body = response.into_body();
    let mut text = String::new();
    let mut ids = Vec::new();
    while ids.len() < 1050 {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            if let Some(id) = block.lines().find_map(|l| l.strip_prefix("id:")) {
                ids.push(id.trim().parse::<u64>().unwrap());
            }
        }
    }
    assert_eq!(
        ids,
        (151..=1200).collect::<Vec<_>>(),
        "every row after 150, in order, none twice"
    );
    runner.abort();
}

/// Runs a trail over `store` and `db` until it holds `rows` rows, then stops it.
async fn project_until(store: Arc<dyn EventStore>, db: TrailDb, rows: u64) {
    let trail = Trail::new(store, db);
    let runner = tokio::spawn(trail.clone().run(std::future::pending()));
    for _ in 0..200 {
        if trail.status.lock().unwrap().rows == rows {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    runner.abort();
    let _ = runner.await;
    assert_eq!(trail.status.lock().unwrap().rows, rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trail_restarted_mid_rollout_still_names_its_version_on_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(
        SqliteStore::open(dir.path().join("events.sqlite"), SqliteOptions::default()).unwrap(),
    );
    let hello = StreamId::new("service:hello").unwrap();
    let rollout = uuid::Uuid::new_v4();
    let append = |events: Vec<NewEvent>| {
        let (store, hello) = (store.clone(), hello.clone());
        async move {
            store
                .append(&hello, ExpectedRevision::Any, events)
                .await
                .unwrap();
        }
    };
    append(vec![
        event(
            "release-requested",
            json!({ "rollout_id": rollout, "version": "v2" }),
        ),
        event(
            "step-started",
            json!({ "rollout_id": rollout, "step": 0, "percent": 10 }),
        ),
    ])
    .await;
    let open = || TrailDb::open(dir.path().join("trail.sqlite")).unwrap();
    project_until(store.clone(), open(), 2).await;
    // Trail stopped in the middle of the rollout; the rest happens while it is down.
    append(vec![
        event("promote-requested", json!({})),
        event(
            "step-completed",
            json!({ "rollout_id": rollout, "step": 0 }),
        ),
        event("rollout-completed", json!({ "rollout_id": rollout })),
        event("pause-requested", json!({ "reason": "after it" })),
    ])
    .await;
    project_until(store.clone(), open(), 6).await;
    let versions: Vec<Option<String>> = open()
        .rows_after(0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.version)
        .collect();
    let v2 = Some("v2".to_string());
    assert_eq!(
        versions,
        [v2.clone(), v2.clone(), v2.clone(), v2.clone(), v2, None]
    );
}
