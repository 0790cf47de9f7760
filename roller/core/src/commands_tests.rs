//! Table tests for the command rules: each case folds a short history, hands a command to
//! `handle`, and checks what it accepts (the events) or why it refuses.

use ionroller_shared::events::{AlarmState, RollbackCause, ServiceEvent};
use uuid::Uuid;

use super::commands::{handle, Command, Refusal};
use super::decide_tests::{History, SERVICE};
use super::plan::UNNAMED_ENVIRONMENT;
use super::state::{RolloutKind, ServiceState};

const NEW: Uuid = Uuid::from_u128(42);

fn release(version: &str) -> Command {
    Command::Release {
        version: version.into(),
        reason: None,
        override_alarms: false,
    }
}

fn types(events: &[ServiceEvent]) -> Vec<String> {
    events.iter().map(|e| e.encode().0).collect()
}

#[test]
fn refusals_name_what_is_wrong() {
    let mut rolling = History::serving_v1();
    rolling.release(10, "v2", false);
    let mut paused = History::serving_v1();
    paused.release(10, "v2", false);
    paused.push(11, ServiceEvent::PauseRequested { reason: None });
    let mut firing = History::serving_v1();
    firing.alarm(5, AlarmState::Alarm);
    let cases: Vec<(&str, ServiceState, Command, Refusal)> = vec![
        (
            "release without a config",
            ServiceState::new(SERVICE),
            release("v1"),
            Refusal::NoConfig {
                service: SERVICE.into(),
            },
        ),
        (
            "release of what already serves",
            History::serving_v1().state,
            release("v1"),
            Refusal::AlreadyServing {
                service: SERVICE.into(),
                version: "v1".into(),
            },
        ),
        (
            "release while an alarm fires",
            firing.state.clone(),
            release("v2"),
            Refusal::AlarmsFiring {
                alarms: vec!["hello-5xx".into()],
            },
        ),
        (
            "promote with nothing in progress",
            History::serving_v1().state,
            Command::Promote {
                full: false,
                reason: None,
            },
            Refusal::NoRollout {
                service: SERVICE.into(),
                what: "promote",
            },
        ),
        (
            "pause twice",
            paused.state.clone(),
            Command::Pause { reason: None },
            Refusal::AlreadyPaused,
        ),
        (
            "promote while paused",
            paused.state.clone(),
            Command::Promote {
                full: false,
                reason: None,
            },
            Refusal::PromoteWhilePaused,
        ),
        (
            "resume what runs",
            rolling.state.clone(),
            Command::Resume { reason: None },
            Refusal::NotPaused,
        ),
        (
            "rollback with no earlier version",
            History::serving_v1().state,
            Command::Rollback {
                to_version: None,
                reason: None,
            },
            Refusal::NothingToRollBackTo {
                service: SERVICE.into(),
            },
        ),
        (
            "rollback to a version that never served",
            rolling.state.clone(),
            Command::Rollback {
                to_version: Some("v99".into()),
                reason: None,
            },
            Refusal::NeverServed {
                version: "v99".into(),
                served: vec!["v1".into()],
            },
        ),
        (
            "rollback to the version in progress, which has not served yet",
            rolling.state.clone(),
            Command::Rollback {
                to_version: Some("v2".into()),
                reason: None,
            },
            Refusal::NeverServed {
                version: "v2".into(),
                served: vec!["v1".into()],
            },
        ),
    ];
    for (name, state, command, refusal) in cases {
        assert_eq!(handle(&state, &command, NEW), Err(refusal), "{name}");
    }
}

#[test]
fn an_override_releases_despite_firing_alarms() {
    let mut h = History::serving_v1();
    h.alarm(5, AlarmState::Alarm);
    let command = Command::Release {
        version: "v2".into(),
        reason: Some("hotfix for the alarm".into()),
        override_alarms: true,
    };
    let accepted = handle(&h.state, &command, NEW).expect("accepted");
    assert_eq!(
        types(&accepted.events),
        ["release-requested", "plan-computed"]
    );
}

#[test]
fn a_release_names_its_environment_after_the_rollout_and_supersedes_one_in_flight() {
    let mut h = History::serving_v1();
    let (first, _) = h.release(10, "v2", false);
    let accepted = handle(&h.state, &release("v3"), NEW).expect("accepted");
    assert_eq!(accepted.rollout_id, Some(NEW));
    assert_eq!(accepted.action, "release");
    assert_eq!(
        types(&accepted.events),
        ["rollout-superseded", "release-requested", "plan-computed"]
    );
    assert!(matches!(
        &accepted.events[0],
        ServiceEvent::RolloutSuperseded { rollout_id, by } if *rollout_id == first && *by == NEW
    ));
    let ServiceEvent::PlanComputed { plan, .. } = &accepted.events[2] else {
        panic!("the plan comes last");
    };
    assert_eq!(
        plan.environment,
        super::plan::environment_name(SERVICE, "v3", NEW)
    );
}

#[test]
fn a_preview_does_not_invent_an_environment_name() {
    let h = History::serving_v1();
    let preview =
        super::plan::plan_rollout(&h.state, &RolloutKind::Release, "v2", None).expect("configured");
    assert_eq!(preview.environment, UNNAMED_ENVIRONMENT);
    let real = super::plan::plan_rollout(&h.state, &RolloutKind::Release, "v2", Some(NEW))
        .expect("configured");
    assert_eq!(preview.steps, real.steps, "the same steps either way");
}

#[test]
fn rollback_mid_rollout_without_a_version_aborts() {
    let mut h = History::serving_v1();
    let (id, _) = h.release(10, "v2", false);
    let command = Command::Rollback {
        to_version: None,
        reason: None,
    };
    let accepted = handle(&h.state, &command, NEW).expect("accepted");
    assert_eq!(accepted.action, "abort");
    assert_eq!(accepted.rollout_id, Some(id));
    assert_eq!(types(&accepted.events), ["abort-requested"]);
}

#[test]
fn commands_on_a_rollout_that_rolls_back_are_refused() {
    let mut h = History::serving_v1();
    let (rollout_id, _) = h.release(10, "v2", false);
    h.push(
        11,
        ServiceEvent::RollbackStarted {
            rollout_id,
            cause: RollbackCause::Aborted {
                by: "tester".into(),
                reason: None,
            },
        },
    );
    for (command, what) in [
        (
            Command::Promote {
                full: false,
                reason: None,
            },
            "promote",
        ),
        (Command::Pause { reason: None }, "pause"),
        (Command::Abort { reason: None }, "abort"),
    ] {
        assert_eq!(
            handle(&h.state, &command, NEW),
            Err(Refusal::AlreadyRollingBack { what }),
            "{what}"
        );
    }
}

#[test]
fn saving_a_config_numbers_it_after_the_last() {
    let h = History::serving_v1();
    let config = h.state.latest_config().expect("config").config.clone();
    let accepted = handle(&h.state, &Command::SaveConfig(Box::new(config)), NEW).expect("ok");
    assert!(matches!(
        accepted.events[..],
        [ServiceEvent::ConfigSaved {
            config_version: 2,
            ..
        }]
    ));
}

#[test]
fn rollback_goes_only_to_versions_that_served_and_the_refusal_lists_them() {
    let mut h = History::serving_v1();
    let (v2, env) = h.release(10, "v2", false);
    h.green(12, &env, "v2");
    h.registered(20, &[&format!("i-{env}-0"), &format!("i-{env}-1")]);
    h.push(20, ServiceEvent::RolloutCompleted { rollout_id: v2 });
    // v3 is released and rolled back: it never served all traffic.
    let (v3, _) = h.release(30, "v3", false);
    h.push(
        31,
        ServiceEvent::RolledBack {
            rollout_id: v3,
            cause: RollbackCause::Aborted {
                by: "tester".into(),
                reason: None,
            },
        },
    );
    let to = |v: &str| Command::Rollback {
        to_version: Some(v.into()),
        reason: None,
    };
    let refusal = handle(&h.state, &to("v3"), NEW).expect_err("v3 never served");
    assert_eq!(
        refusal,
        Refusal::NeverServed {
            version: "v3".into(),
            served: vec!["v2".into(), "v1".into()],
        }
    );
    assert!(refusal.to_string().contains("one of: v2, v1"), "{refusal}");
    let accepted = handle(&h.state, &to("v1"), NEW).expect("v1 served");
    assert_eq!(accepted.action, "rollback");
}

#[test]
fn releasing_the_version_in_progress_again_attaches_to_it() {
    let mut h = History::serving_v1();
    let (id, _) = h.release(10, "v2", false);
    let accepted = handle(&h.state, &release("v2"), NEW).expect("accepted");
    assert_eq!(
        accepted.events,
        vec![],
        "no second rollout, no second environment"
    );
    assert_eq!(accepted.rollout_id, Some(id));
    assert_eq!(accepted.action, "attach");
    // Another version still supersedes it.
    let other = handle(&h.state, &release("v3"), NEW).expect("accepted");
    assert_eq!(types(&other.events)[0], "rollout-superseded");
}
