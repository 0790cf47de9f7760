//! The projector against a real SQLite log: unknown event types are kept as they are, a
//! poison event stops it at its position (nothing skipped), and a rebuild from position zero
//! reproduces the same rows.

use std::sync::Arc;
use std::time::Duration;

use ionroller_shared::store::sqlite::{SqliteOptions, SqliteStore};
use ionroller_shared::store::{
    EventId, EventMetadata, EventStore, ExpectedRevision, NewEvent, StreamId,
};
use ionroller_trail::db::TrailDb;
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

#[tokio::test]
async fn unknown_types_are_kept_and_a_poison_event_stops_the_projection() {
    let dir = tempfile::tempdir().unwrap();
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

    let trail = Trail::new(
        store.clone(),
        TrailDb::open(dir.path().join("trail.sqlite")).unwrap(),
    );
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
    let rows = trail.with_db(|db| db.rows_after(0, 100)).await.unwrap();
    let types: Vec<&str> = rows.iter().map(|r| r.event_type.as_str()).collect();
    assert_eq!(
        types,
        vec!["pause-requested", "from-a-newer-roller"],
        "nothing at or after the poison event"
    );
    assert!(rows[1].summary.contains("not known to this trail"));
    assert_eq!(rows[1].data, json!({ "anything": [1, 2] }));
}

#[tokio::test]
async fn rebuild_reproduces_the_projection() {
    let dir = tempfile::tempdir().unwrap();
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
    let db_path = dir.path().join("trail.sqlite");
    let trail = Trail::new(store.clone(), TrailDb::open(&db_path).unwrap());
    let runner = tokio::spawn(trail.clone().run(std::future::pending()));
    for _ in 0..100 {
        if trail.status.lock().unwrap().rows == 30 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    runner.abort();
    let before = trail.with_db(|db| db.rows_after(0, 100)).await.unwrap();
    assert_eq!(before.len(), 30);
    // Damage the live projection, then rebuild it from the log.
    rusqlite::Connection::open(&db_path)
        .unwrap()
        .execute("DELETE FROM audit WHERE seq > 10", [])
        .unwrap();
    let rows = ionroller_trail::rebuild::rebuild(store.as_ref(), &db_path)
        .await
        .unwrap();
    assert_eq!(rows, 30);
    let after = TrailDb::open(&db_path).unwrap().rows_after(0, 100).unwrap();
    assert_eq!(after, before);
}
