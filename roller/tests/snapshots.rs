//! Snapshots are a cache of the fold: loading one and folding the rest gives exactly the state
//! a full fold gives, and a snapshot of another format is ignored.

mod support;

use ionroller_core::state::apply_recorded;
use ionroller_core::ServiceState;
use ionroller_roller::log::catch_up;
use ionroller_roller::snapshot;
use ionroller_shared::events::service_stream;
use ionroller_shared::store::{EventId, EventMetadata, ExpectedRevision, NewEvent, StreamRead};
use support::*;

#[tokio::test]
async fn a_snapshot_plus_the_rest_equals_the_full_fold() {
    let mut w = World::create();
    w.save_config(&HELLO.replace("\"until_promoted\"", "\"1s\""))
        .await;
    w.call("POST", "/v1/services/hello/releases", r#"{"version":"v1"}"#)
        .await;
    for _ in 0..12 {
        w.tick(1).await;
    }
    w.call("POST", "/v1/services/hello/releases", r#"{"version":"v2"}"#)
        .await;
    for _ in 0..12 {
        w.tick(1).await;
    }
    let stream = service_stream("hello").unwrap();
    let events = w
        .store
        .read_stream(&stream, StreamRead::forward(10_000))
        .await
        .unwrap();
    assert!(
        events.len() > 30,
        "a history worth snapshotting: {}",
        events.len()
    );
    let fold = |n: usize| {
        let mut state = ServiceState::new("hello");
        for e in &events[..n] {
            apply_recorded(&mut state, e).unwrap();
        }
        state
    };
    let full = fold(events.len());

    // No snapshot yet: a fresh catch-up is a full fold.
    let mut fresh = ServiceState::new("hello");
    catch_up(w.store.as_ref(), &mut fresh).await.unwrap();
    assert_eq!(
        serde_json::to_value(&fresh).unwrap(),
        serde_json::to_value(&full).unwrap()
    );

    // A snapshot taken mid-way, then the rest folded on top.
    let half = fold(events.len() / 2);
    snapshot::save(w.store.as_ref(), &half, "roller")
        .await
        .unwrap();
    let loaded = snapshot::load(w.store.as_ref(), "hello")
        .await
        .expect("snapshot loads");
    assert_eq!(loaded.revision, half.revision);
    let mut resumed = ServiceState::new("hello");
    catch_up(w.store.as_ref(), &mut resumed).await.unwrap();
    assert_eq!(resumed.revision, full.revision);
    assert_eq!(
        serde_json::to_value(&resumed).unwrap(),
        serde_json::to_value(&full).unwrap()
    );

    // A snapshot in a format this build does not know is ignored, not trusted.
    let mut data = serde_json::to_value(&half).unwrap();
    data = serde_json::json!({ "format": 999, "revision": 3, "state": data });
    w.store
        .append(
            &snapshot::snapshot_stream("hello").unwrap(),
            ExpectedRevision::Any,
            vec![NewEvent {
                id: EventId::random(),
                event_type: "service-snapshot".into(),
                schema_version: 999,
                data,
                metadata: EventMetadata {
                    actor: "test".into(),
                    correlation_id: uuid::Uuid::nil(),
                    causation_id: None,
                    occurred_at: chrono::Utc::now(),
                },
            }],
        )
        .await
        .unwrap();
    assert!(snapshot::load(w.store.as_ref(), "hello").await.is_none());
    let mut again = ServiceState::new("hello");
    catch_up(w.store.as_ref(), &mut again).await.unwrap();
    assert_eq!(
        serde_json::to_value(&again).unwrap(),
        serde_json::to_value(&full).unwrap()
    );
}
