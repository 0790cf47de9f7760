//! A roller killed between recording an intent and recording its outcome repairs itself on
//! restart: it finishes the recorded action idempotently, so the cloud ends up with exactly
//! one environment whether or not the call went through before the crash.

mod support;

use std::sync::Arc;

use ionroller_core::state::apply_recorded;
use ionroller_core::{decide, ServiceState};
use ionroller_roller::clock::Clock;
use ionroller_roller::cloud::Cloud;
use ionroller_roller::shell::Roller;
use ionroller_shared::events::{service_stream, Action, ServiceEvent};
use ionroller_shared::store::{EventId, EventMetadata, ExpectedRevision, StreamRead};
use support::*;
use uuid::Uuid;

/// Folds the log, decides, and records the first decision as the roller would, without acting.
async fn record_intent_then_crash(w: &World) -> Action {
    let stream = service_stream("hello").expect("stream");
    let mut state = ServiceState::new("hello");
    for e in w
        .store
        .read_stream(&stream, StreamRead::forward(1000))
        .await
        .expect("read")
    {
        apply_recorded(&mut state, &e).expect("fold");
    }
    let decided = decide(&state, w.clock.now());
    let Some(intent @ ServiceEvent::ActionIntended { .. }) = decided.into_iter().next() else {
        panic!("expected an intent to create the environment");
    };
    let ServiceEvent::ActionIntended { action, .. } = &intent else {
        unreachable!()
    };
    let action = action.clone();
    let metadata = EventMetadata {
        actor: "roller".into(),
        correlation_id: Uuid::new_v4(),
        causation_id: None,
        occurred_at: w.clock.now(),
    };
    w.store
        .append(
            &stream,
            ExpectedRevision::after(state.revision),
            vec![intent.to_new_event(EventId::random(), metadata)],
        )
        .await
        .expect("record the intent");
    action
}

async fn restarted_roller_finishes(w: &mut World) -> Vec<ServiceEvent> {
    let clock: Arc<dyn Clock> = w.clock.clone();
    w.roller = Roller::new(w.store.clone(), Arc::new(w.sim.clone()), clock);
    w.tick(0).await;
    let stream = service_stream("hello").expect("stream");
    w.store
        .read_stream(&stream, StreamRead::forward(1000))
        .await
        .expect("read")
        .iter()
        .filter_map(|e| ServiceEvent::from_recorded(e).expect("decodes"))
        .collect()
}

#[tokio::test]
async fn intent_recorded_and_call_made_before_the_crash() {
    let mut w = World::create();
    w.save_config(HELLO).await;
    w.call("POST", "/v1/services/hello/releases", r#"{"version":"v1"}"#)
        .await;
    let action = record_intent_then_crash(&w).await;
    // The call reached the cloud, then the process died before recording the outcome.
    let config: ionroller_shared::config::ServiceConfig =
        serde_json::from_str(HELLO).expect("config");
    w.sim
        .execute("hello", &config, uuid::Uuid::new_v4(), &action)
        .await
        .expect("the call before the crash");
    let events = restarted_roller_finishes(&mut w).await;
    let outcome = events.iter().find_map(|e| match e {
        ServiceEvent::ActionSucceeded { detail, .. } => Some(detail.clone()),
        _ => None,
    });
    assert_eq!(
        outcome.as_deref().map(|d| d.ends_with("already exists")),
        Some(true),
        "{outcome:?}"
    );
    assert_eq!(w.sim.creations(), 1, "no second environment");
    assert_eq!(w.sim.live_environments("hello").len(), 1);
}

#[tokio::test]
async fn intent_recorded_but_call_never_made() {
    let mut w = World::create();
    w.save_config(HELLO).await;
    w.call("POST", "/v1/services/hello/releases", r#"{"version":"v1"}"#)
        .await;
    record_intent_then_crash(&w).await;
    assert_eq!(w.sim.creations(), 0);
    let events = restarted_roller_finishes(&mut w).await;
    let creates = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                ServiceEvent::ActionIntended {
                    action: Action::CreateEnvironment { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(
        creates, 1,
        "the restarted roller executed the recorded intent instead of deciding again"
    );
    assert_eq!(w.sim.creations(), 1);
    // And the release goes on to completion from there.
    for _ in 0..40 {
        w.tick(1).await;
        w.call("POST", "/v1/services/hello/promote", "").await;
    }
    let status = w.status().await;
    assert_eq!(status["stable_version"], "v1", "{status:#}");
}
