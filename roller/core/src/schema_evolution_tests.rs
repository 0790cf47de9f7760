//! A log written by a newer version: a config with fields this one does not know, events
//! with added fields, an event type it has never heard of. The fold must go on through all
//! of it (an older roller that stopped here would stop rolling out), and a snapshot a newer
//! roller wrote must load.

use chrono::{DateTime, Duration, Utc};
use ionroller_shared::config::{parse_service_config, HumanDuration, Pause, ServiceConfig};
use ionroller_shared::events::{Plan, PlanStep, ServiceEvent as E};
use ionroller_shared::store::{
    EventId, EventMetadata, Position, RecordedEvent, Revision, StreamId,
};
use serde_json::{json, Value};
use uuid::Uuid;

use super::state::{apply_recorded, ServiceState, Stage};

const EXAMPLE: &str = include_str!("../../../examples/hello.json");

fn example() -> ServiceConfig {
    parse_service_config(EXAMPLE).expect("the example config is valid")
}

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("a valid time")
        + Duration::seconds(secs)
}

/// Adds `field: value` to the object at `pointer` (RFC 6901) inside `data`.
fn add_field(data: &mut Value, pointer: &str, field: &str, value: Value) {
    data.pointer_mut(pointer)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("no object at {pointer:?}"))
        .insert(field.into(), value);
}

/// The newer version's log, as the store returns it: revision n at second n, by alice.
fn future_log() -> Vec<RecordedEvent> {
    let rollout = Uuid::from_u128(7);
    let mut config_saved = E::ConfigSaved {
        config_version: 1,
        config: Box::new(example()),
    }
    .encode();
    add_field(&mut config_saved.1, "/config", "future_setting", json!(3));
    add_field(
        &mut config_saved.1,
        "/config/rollout",
        "future_setting",
        json!(3),
    );
    let mut release = E::ReleaseRequested {
        rollout_id: rollout,
        version: "v2".into(),
        reason: Some("new greeting".into()),
        override_alarms: false,
    }
    .encode();
    add_field(&mut release.1, "", "approved_by", json!(["bob"]));
    let mut plan = E::PlanComputed {
        rollout_id: rollout,
        plan: Plan {
            environment: "hello-v2-c1".into(),
            reuses_warm_environment: false,
            test_endpoint: false,
            steps: vec![
                PlanStep {
                    label: "step".into(),
                    percent: 25,
                    pause: Some(Pause::UntilPromoted),
                    instances: None,
                },
                PlanStep {
                    label: "step".into(),
                    percent: 100,
                    pause: None,
                    instances: None,
                },
            ],
            worst_case_secs: None,
            progress_deadline: HumanDuration(std::time::Duration::from_secs(120)),
        },
    }
    .encode();
    add_field(&mut plan.1, "/plan/steps/0", "future_setting", json!(true));
    let step = E::StepStarted {
        rollout_id: rollout,
        step: 0,
        percent: 25,
    }
    .encode();
    let unknown_type = ("approval-granted".to_string(), json!({ "by": "bob" }));
    [config_saved, release, unknown_type, plan, step]
        .into_iter()
        .enumerate()
        .map(|(n, (event_type, data))| RecordedEvent {
            stream: StreamId::new("service:hello").expect("a valid stream"),
            revision: Revision(n as u64),
            position: Position::new(n as u64 + 1, 0),
            recorded_at: t(n as i64),
            id: EventId(Uuid::from_u128(n as u128 + 1)),
            event_type,
            schema_version: 1,
            data,
            metadata: EventMetadata {
                actor: "alice".into(),
                correlation_id: Uuid::nil(),
                causation_id: None,
                occurred_at: t(n as i64),
            },
        })
        .collect()
}

fn fold(log: &[RecordedEvent]) -> ServiceState {
    let mut state = ServiceState::new("hello");
    for event in log {
        apply_recorded(&mut state, event)
            .unwrap_or_else(|e| panic!("revision {} is poison: {e}", event.revision.0));
    }
    state
}

#[test]
fn a_log_with_fields_and_types_from_a_newer_version_folds() {
    let state = fold(&future_log());
    assert_eq!(state.revision, Some(Revision(4)));
    assert_eq!(state.configs.len(), 1);
    assert_eq!(state.configs[0].version, 1);
    assert_eq!(
        state.configs[0].config,
        example(),
        "unknown fields are dropped"
    );
    let rollout = state.rollout.as_ref().expect("the release is under way");
    assert_eq!(rollout.id, Uuid::from_u128(7));
    assert_eq!(rollout.version, "v2");
    assert_eq!(rollout.config_version, 1);
    assert_eq!(rollout.requested_by, "alice");
    assert_eq!(rollout.reason.as_deref(), Some("new greeting"));
    assert_eq!(rollout.target(), Some("hello-v2-c1"));
    assert_eq!(rollout.stage, Stage::Shifting { step: 0 });
    assert_eq!(rollout.stage_since, t(4));
    let environment = &state.environments["hello-v2-c1"];
    assert!(!environment.foreign, "this log planned it");
}

#[test]
fn a_snapshot_with_fields_from_a_newer_version_loads() {
    let state = fold(&future_log());
    let saved = serde_json::to_value(&state).expect("a state serializes");
    let mut newer = saved.clone();
    for pointer in [
        "",
        "/configs/0",
        "/configs/0/config",
        "/configs/0/config/rollout",
        "/environments/hello-v2-c1",
        "/rollout",
        "/rollout/plan",
        "/rollout/stage",
    ] {
        add_field(&mut newer, pointer, "future_setting", json!({ "n": 3 }));
    }
    let loaded: ServiceState =
        serde_json::from_value(newer).expect("a snapshot with unknown fields loads");
    assert_eq!(serde_json::to_value(&loaded).ok(), Some(saved));
}
