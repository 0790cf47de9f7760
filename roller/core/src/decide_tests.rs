//! Table tests for `decide`: each case folds a short history and checks the next events.

use chrono::{DateTime, Duration, Utc};
use ionroller_shared::config::{parse_service_config, HumanDuration, Pause, ServiceConfig};
use ionroller_shared::events::{
    Action, AlarmState, AlarmView, EnvironmentStatus, EnvironmentView, Health, InstanceView,
    RegisteredInstance, RollbackCause, ServiceEvent,
};
use ionroller_shared::store::Revision;
use uuid::Uuid;

use super::decide::decide;
use super::plan::{compute_plan, plan_rollout};
use super::state::{evolve, RolloutKind, ServiceState};

pub(crate) const SERVICE: &str = "hello";

pub(crate) fn t(secs: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("valid") + Duration::seconds(secs)
}

pub(crate) fn example() -> ServiceConfig {
    parse_service_config(include_str!("../../../examples/hello.json")).expect("valid example")
}

/// A service history under construction.
pub(crate) struct History {
    pub(crate) state: ServiceState,
    next: u64,
}

impl History {
    pub(crate) fn with(config: ServiceConfig) -> Self {
        let mut h = History {
            state: ServiceState::new(SERVICE),
            next: 0,
        };
        h.push(
            0,
            ServiceEvent::ConfigSaved {
                config_version: 1,
                config: Box::new(config),
            },
        );
        h
    }

    pub(crate) fn new() -> Self {
        Self::with(example())
    }

    pub(crate) fn push(&mut self, at: i64, event: ServiceEvent) -> &mut Self {
        evolve(
            &mut self.state,
            &event,
            Revision(self.next),
            t(at),
            "tester",
        );
        self.next += 1;
        self
    }

    pub(crate) fn pushes(&mut self, at: i64, events: Vec<ServiceEvent>) -> &mut Self {
        for e in events {
            self.push(at, e);
        }
        self
    }

    /// Requests a release and its plan, as the API does; returns the rollout id and env name.
    pub(crate) fn release(
        &mut self,
        at: i64,
        version: &str,
        override_alarms: bool,
    ) -> (Uuid, String) {
        self.release_into(at, version, override_alarms, None)
    }

    pub(crate) fn release_into(
        &mut self,
        at: i64,
        version: &str,
        override_alarms: bool,
        name: Option<&str>,
    ) -> (Uuid, String) {
        let id = Uuid::from_u128(self.next as u128 + 1000);
        let mut plan = plan_rollout(&self.state, &RolloutKind::Release, version, Some(id))
            .expect("a configured service");
        if let (Some(name), false) = (name, plan.reuses_warm_environment) {
            plan.environment = name.to_string();
        }
        let env = plan.environment.clone();
        self.push(
            at,
            ServiceEvent::ReleaseRequested {
                rollout_id: id,
                version: version.into(),
                reason: None,
                override_alarms,
            },
        );
        self.push(
            at,
            ServiceEvent::PlanComputed {
                rollout_id: id,
                plan,
            },
        );
        (id, env)
    }

    pub(crate) fn env(
        &mut self,
        at: i64,
        name: &str,
        version: &str,
        status: EnvironmentStatus,
        health: Health,
    ) -> &mut Self {
        let healthy = health == Health::Green;
        self.push(
            at,
            ServiceEvent::EnvironmentObserved {
                environment: EnvironmentView {
                    name: name.into(),
                    version: version.into(),
                    config_version: 1,
                    status,
                    health,
                    instances: (0..2)
                        .map(|i| InstanceView {
                            id: format!("i-{name}-{i}"),
                            healthy,
                        })
                        .collect(),
                    url: Some(format!("http://{name}")),
                },
            },
        )
    }

    /// Step `step` (at `percent`) of rollout `id` started and completed at `at`.
    pub(crate) fn step_done(&mut self, at: i64, id: Uuid, step: usize, percent: u8) -> &mut Self {
        self.push(
            at,
            ServiceEvent::StepStarted {
                rollout_id: id,
                step,
                percent,
            },
        );
        self.push(
            at,
            ServiceEvent::StepCompleted {
                rollout_id: id,
                step,
            },
        )
    }

    pub(crate) fn green(&mut self, at: i64, name: &str, version: &str) -> &mut Self {
        self.env(at, name, version, EnvironmentStatus::Ready, Health::Green)
    }

    pub(crate) fn registered(&mut self, at: i64, ids: &[&str]) -> &mut Self {
        self.push(
            at,
            ServiceEvent::RegistrationsObserved {
                load_balancer: "hello-lb".into(),
                instances: ids
                    .iter()
                    .map(|id| RegisteredInstance {
                        id: id.to_string(),
                        in_service: true,
                    })
                    .collect(),
            },
        )
    }

    pub(crate) fn alarm(&mut self, at: i64, state: AlarmState) -> &mut Self {
        self.push(
            at,
            ServiceEvent::AlarmObserved {
                alarm: AlarmView {
                    name: "hello-5xx".into(),
                    state,
                    reason: "Threshold Crossed: 12 > 5".into(),
                    value: Some(12.0),
                    updated_at: t(at),
                },
            },
        )
    }

    /// Runs decide and, like the shell, records the decision and marks actions done.
    pub(crate) fn decide_and_apply(&mut self, at: i64) -> Vec<ServiceEvent> {
        let events = decide(&self.state, t(at));
        for e in &events {
            self.push(at, e.clone());
            if let ServiceEvent::ActionIntended {
                action_id, attempt, ..
            } = e
            {
                self.push(
                    at,
                    ServiceEvent::ActionSucceeded {
                        action_id: *action_id,
                        attempt: *attempt,
                        detail: String::new(),
                    },
                );
            }
        }
        events
    }

    fn decide(&self, at: i64) -> Vec<ServiceEvent> {
        decide(&self.state, t(at))
    }

    /// A service whose v1 completed and serves all traffic from `hello-v1`.
    pub(crate) fn serving_v1() -> Self {
        Self::serving_v1_with(example())
    }

    /// As [`History::serving_v1`], with `config`.
    pub(crate) fn serving_v1_with(config: ServiceConfig) -> Self {
        let mut h = History::with(config);
        let (id, _) = h.release_into(1, "v1", false, Some("hello-v1"));
        h.green(2, "hello-v1", "v1")
            .registered(3, &["i-hello-v1-0", "i-hello-v1-1"])
            .push(3, ServiceEvent::RolloutCompleted { rollout_id: id });
        h
    }
}

fn kinds(events: &[ServiceEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            ServiceEvent::ActionIntended { action, .. } => match action {
                Action::CreateEnvironment { environment, .. } => format!("create {environment}"),
                Action::RegisterInstances { instances, .. } => {
                    format!("register {}", instances.join(","))
                }
                Action::DeregisterInstances { instances, .. } => {
                    format!("deregister {}", instances.join(","))
                }
                Action::TerminateEnvironment { environment } => format!("terminate {environment}"),
            },
            ServiceEvent::StepStarted { step, percent, .. } => format!("step {step} {percent}%"),
            ServiceEvent::StepCompleted { step, .. } => format!("step {step} done"),
            ServiceEvent::RollbackStarted { cause, .. } => format!("rollback: {}", cause.summary()),
            other => other.encode().0,
        })
        .collect()
}

#[test]
fn no_config_or_no_rollout_means_nothing_to_do() {
    let empty = ServiceState::new(SERVICE);
    assert!(decide(&empty, t(0)).is_empty());
    assert!(History::new().decide(5).is_empty());
}

#[test]
fn first_release_creates_the_environment_once() {
    let mut h = History::new();
    let (_, env) = h.release(1, "v1", false);
    assert_eq!(kinds(&h.decide_and_apply(1)), vec![format!("create {env}")]);
    // Created but not yet observed: no second create.
    assert!(h.decide(2).is_empty());
    h.env(3, &env, "v1", EnvironmentStatus::Launching, Health::Grey);
    assert!(h.decide(3).is_empty(), "waits while launching");
    h.green(4, &env, "v1");
    // Nothing serves yet, so nothing to protect: all traffic at once, no canary or pauses.
    assert_eq!(kinds(&h.decide(4)), vec!["step 0 100%"]);
    let plan = h
        .state
        .rollout
        .as_ref()
        .and_then(|r| r.plan.clone())
        .expect("planned");
    assert_eq!(plan.steps.len(), 1, "{plan:?}");
    assert_eq!(
        (plan.steps[0].label.as_str(), plan.steps[0].pause),
        ("first release", None)
    );
    assert!(!plan.test_endpoint);
}

#[test]
fn a_pending_action_blocks_new_decisions() {
    let mut h = History::new();
    h.release(1, "v1", false);
    let intent = h.decide(1);
    h.pushes(1, intent);
    assert!(
        h.decide(2).is_empty(),
        "the shell must execute the recorded intent first"
    );
}

#[test]
fn canary_waits_for_promote_then_steps_follow_timed_pauses() {
    let mut h = History::serving_v1();
    let (id, env) = h.release(10, "v2", false);
    h.decide_and_apply(10);
    h.green(12, &env, "v2");
    assert_eq!(kinds(&h.decide_and_apply(12)), vec!["step 0 10%"]);
    // 10% of 2 new instances rounds up to one; old keeps 2 - floor(0.2) = 2.
    assert_eq!(
        kinds(&h.decide_and_apply(12)),
        vec![format!("register i-{env}-0")]
    );
    h.registered(13, &["i-hello-v1-0", "i-hello-v1-1", &format!("i-{env}-0")]);
    assert_eq!(kinds(&h.decide_and_apply(13)), vec!["step 0 done"]);
    assert_eq!(
        kinds(&h.decide_and_apply(13)),
        vec!["waiting-for-promote"],
        "the wait is recorded, once"
    );
    assert!(
        h.decide(60).is_empty(),
        "the canary waits for a promote, without a deadline"
    );
    h.push(
        61,
        ServiceEvent::PromoteRequested {
            full: false,
            reason: None,
        },
    );
    assert_eq!(kinds(&h.decide_and_apply(61)), vec!["step 1 25%"]);
    h.decide_and_apply(61); // nothing to move at 25% with 2 instances each: 1 new, 2 old.
    let _ = id;
}

/// v2 rolling out beside v1 (two instances each), with step `step` of the example's plan
/// (canary 10%, 25%, 50%, 100%) done at t=13.
fn v2_step_done(step: usize, percent: u8) -> History {
    let mut h = History::serving_v1();
    let (id, env) = h.release(10, "v2", false);
    h.green(12, &env, "v2").step_done(13, id, step, percent);
    h
}

#[test]
fn timed_pause_then_next_step() {
    let h = v2_step_done(2, 50);
    assert!(h.decide(15).is_empty(), "3s pause not over");
    assert_eq!(kinds(&h.decide(16)), vec!["step 3 100%"]);
}

#[test]
fn a_pause_for_a_promote_after_a_step_that_moved_nothing_is_neither_waited_nor_recorded() {
    let mut config = example();
    config.rollout.pause = Pause::UntilPromoted;
    // 25% of two instances is one, as the 10% canary was.
    let mut h = History::serving_v1_with(config.clone());
    let (id, env) = h.release(10, "v2", false);
    h.green(12, &env, "v2").step_done(13, id, 1, 25);
    assert_eq!(kinds(&h.decide(13)), vec!["step 2 50%"]);
    // 50% moves a second instance: that pause is waited, and told.
    let mut h = History::serving_v1_with(config);
    let (id, env) = h.release(10, "v2", false);
    h.green(12, &env, "v2").step_done(13, id, 2, 50);
    assert_eq!(kinds(&h.decide(13)), vec!["waiting-for-promote"]);
}

#[test]
fn a_step_that_changes_nothing_does_not_pause() {
    // 25% of two instances is one, as the 10% canary was: nothing moved, nothing to watch.
    let h = v2_step_done(1, 25);
    assert_eq!(kinds(&h.decide(13)), vec!["step 2 50%"]);
}

#[test]
fn shifting_registers_new_before_deregistering_old() {
    let mut h = History::serving_v1();
    let (id, env) = h.release(10, "v2", false);
    h.green(12, &env, "v2");
    h.push(
        13,
        ServiceEvent::StepStarted {
            rollout_id: id,
            step: 3,
            percent: 100,
        },
    );
    assert_eq!(
        kinds(&h.decide(13)),
        vec![format!("register i-{env}-0,i-{env}-1")]
    );
    h.registered(
        14,
        &[
            "i-hello-v1-0",
            "i-hello-v1-1",
            &format!("i-{env}-0"),
            &format!("i-{env}-1"),
        ],
    );
    assert_eq!(
        kinds(&h.decide(14)),
        vec!["deregister i-hello-v1-0,i-hello-v1-1"]
    );
    h.registered(15, &[&format!("i-{env}-0"), &format!("i-{env}-1")]);
    assert_eq!(kinds(&h.decide(15)), vec!["step 3 done"]);
    h.push(
        15,
        ServiceEvent::StepCompleted {
            rollout_id: id,
            step: 3,
        },
    );
    assert_eq!(kinds(&h.decide(15)), vec!["rollout-completed"]);
}

#[test]
fn a_target_with_one_sick_instance_keeps_the_traffic_it_has_and_does_not_complete_the_step() {
    let mut h = History::serving_v1();
    let (id, env) = h.release(10, "v2", false);
    h.green(12, &env, "v2");
    h.push(
        13,
        ServiceEvent::StepStarted {
            rollout_id: id,
            step: 0,
            percent: 10,
        },
    );
    assert_eq!(
        kinds(&h.decide_and_apply(13)),
        vec![format!("register i-{env}-0")]
    );
    h.registered(14, &["i-hello-v1-0", "i-hello-v1-1", &format!("i-{env}-0")]);
    // EB turns Yellow: the registered canary instance is fine, the other one is not.
    let view = |sick: &str| EnvironmentView {
        name: env.clone(),
        version: "v2".into(),
        config_version: 1,
        status: EnvironmentStatus::Ready,
        health: Health::Yellow,
        instances: [format!("i-{env}-0"), format!("i-{env}-1")]
            .map(|id| InstanceView {
                healthy: id != sick,
                id,
            })
            .into(),
        url: None,
    };
    h.push(
        15,
        ServiceEvent::EnvironmentObserved {
            environment: view(&format!("i-{env}-1")),
        },
    );
    for at in 15..20 {
        assert!(
            h.decide_and_apply(at).is_empty(),
            "the canary keeps its instance, and the step waits for the whole environment"
        );
    }
    // The registered one falls sick instead: it goes out, the healthy one comes in.
    h.push(
        20,
        ServiceEvent::EnvironmentObserved {
            environment: view(&format!("i-{env}-0")),
        },
    );
    assert_eq!(
        kinds(&h.decide_and_apply(20)),
        vec![format!("register i-{env}-1")]
    );
}

#[test]
fn an_unhealthy_target_gets_no_traffic_and_the_old_keeps_all_of_it() {
    let mut h = History::serving_v1();
    let (id, env) = h.release(10, "v2", false);
    h.env(12, &env, "v2", EnvironmentStatus::Ready, Health::Yellow);
    h.push(
        13,
        ServiceEvent::StepStarted {
            rollout_id: id,
            step: 2,
            percent: 50,
        },
    );
    let decided = h.decide(13);
    assert!(
        decided.is_empty(),
        "neither register the unhealthy nor drop the old: {:?}",
        kinds(&decided)
    );
}

/// v2 healthy at its own URL at t=3 (a config with `test_endpoint`), waiting for a promote.
fn v2_at_the_test_endpoint() -> History {
    let mut config = example();
    config.rollout.test_endpoint = true;
    let mut h = History::serving_v1_with(config);
    let (_, env) = h.release(1, "v2", false);
    h.decide_and_apply(1);
    h.green(3, &env, "v2");
    assert_eq!(kinds(&h.decide_and_apply(3)), vec!["test-endpoint-ready"]);
    h
}

#[test]
fn test_endpoint_waits_for_promote_before_customer_traffic() {
    let mut h = v2_at_the_test_endpoint();
    assert!(
        h.decide(1000).is_empty(),
        "no traffic and no deadline while testing"
    );
    h.push(
        1001,
        ServiceEvent::PromoteRequested {
            full: false,
            reason: None,
        },
    );
    assert_eq!(kinds(&h.decide(1001)), vec!["step 0 10%"]);
}

#[test]
fn an_alarm_during_a_rollout_rolls_back_with_its_evidence() {
    let mut h = History::serving_v1();
    let (id, env) = h.release(10, "v2", false);
    h.green(12, &env, "v2");
    h.push(
        13,
        ServiceEvent::StepStarted {
            rollout_id: id,
            step: 1,
            percent: 25,
        },
    );
    h.registered(13, &["i-hello-v1-0", "i-hello-v1-1", &format!("i-{env}-0")]);
    h.alarm(14, AlarmState::Alarm);
    let decided = h.decide(14);
    match &decided[..] {
        [ServiceEvent::RollbackStarted {
            cause: RollbackCause::Alarm { alarm },
            ..
        }] => {
            assert_eq!(alarm.name, "hello-5xx");
            assert_eq!(alarm.value, Some(12.0));
            assert!(alarm.reason.contains("Threshold"));
        }
        other => panic!("expected an alarm rollback, got {:?}", kinds(other)),
    }
    h.pushes(14, decided);
    assert_eq!(kinds(&h.decide(14)), vec![format!("deregister i-{env}-0")]);
    h.registered(15, &["i-hello-v1-0", "i-hello-v1-1"]);
    assert_eq!(kinds(&h.decide(15)), vec!["rolled-back"]);
}

#[test]
fn an_override_ignores_alarms_already_firing_but_not_new_ones() {
    let mut h = History::serving_v1();
    h.alarm(5, AlarmState::Alarm);
    let (_, env) = h.release(10, "v2", true);
    assert_eq!(kinds(&h.decide(10)), vec![format!("create {env}")]);
    h.alarm(11, AlarmState::Ok).alarm(12, AlarmState::Alarm);
    assert!(kinds(&h.decide(12))[0].starts_with("rollback: alarm hello-5xx"));
}

#[test]
fn an_environment_that_never_gets_healthy_hits_the_deadline() {
    let mut h = History::serving_v1();
    let (_, env) = h.release(10, "v2", false);
    h.decide_and_apply(10);
    h.env(11, &env, "v2", EnvironmentStatus::Ready, Health::Grey);
    assert!(h.decide(129).is_empty());
    assert_eq!(
        kinds(&h.decide(131)),
        vec!["rollback: launching the new environment took longer than the progress deadline (2m)"]
    );
}

#[test]
fn a_red_environment_rolls_back() {
    let mut h = History::serving_v1();
    let (_, env) = h.release(10, "v2", false);
    h.env(12, &env, "v2", EnvironmentStatus::Ready, Health::Red);
    assert_eq!(
        kinds(&h.decide(12)),
        vec![format!("rollback: environment {env} is Red")]
    );
}

#[test]
fn manual_abort_returns_traffic_to_the_old_environment() {
    let mut h = History::serving_v1();
    let (_, env) = h.release(10, "v2", false);
    h.green(12, &env, "v2");
    h.registered(13, &["i-hello-v1-0", "i-hello-v1-1", &format!("i-{env}-0")]);
    h.push(
        14,
        ServiceEvent::AbortRequested {
            reason: Some("looks wrong".into()),
        },
    );
    assert_eq!(kinds(&h.decide(14)), vec![format!("deregister i-{env}-0")]);
    h.registered(15, &["i-hello-v1-0", "i-hello-v1-1"]);
    match &h.decide(15)[..] {
        [ServiceEvent::RolledBack {
            cause: RollbackCause::Aborted { by, reason },
            ..
        }] => {
            assert_eq!(by, "tester");
            assert_eq!(reason.as_deref(), Some("looks wrong"));
        }
        other => panic!("{:?}", kinds(other)),
    }
}

#[test]
fn paused_rollouts_hold_still() {
    let mut h = History::serving_v1();
    let (id, env) = h.release(10, "v2", false);
    h.green(12, &env, "v2");
    h.push(
        13,
        ServiceEvent::StepStarted {
            rollout_id: id,
            step: 3,
            percent: 100,
        },
    );
    h.push(13, ServiceEvent::PauseRequested { reason: None });
    assert!(
        h.decide(500).is_empty(),
        "no progress and no deadline while paused"
    );
    h.push(501, ServiceEvent::ResumeRequested { reason: None });
    // The pause did not count against the deadline: the step goes on.
    assert_eq!(
        kinds(&h.decide(501)),
        vec![format!("register i-{env}-0,i-{env}-1")]
    );
}

#[test]
fn rollback_to_a_warm_environment_is_one_switch_without_a_launch() {
    let mut h = History::serving_v1();
    let (id, env) = h.release(10, "v2", false);
    h.green(12, &env, "v2");
    h.registered(20, &[&format!("i-{env}-0"), &format!("i-{env}-1")]);
    h.push(20, ServiceEvent::RolloutCompleted { rollout_id: id });
    assert!(h.state.environments["hello-v1"].unused_since.is_some());
    let (_, target) = h.release(30, "v1", false);
    assert_eq!(target, "hello-v1", "the warm environment is reused");
    assert_eq!(kinds(&h.decide_and_apply(30)), vec!["step 0 100%"]);
    assert_eq!(
        kinds(&h.decide(30)),
        vec!["register i-hello-v1-0,i-hello-v1-1"]
    );
}

#[test]
fn after_the_warm_window_the_old_environment_is_terminated() {
    let mut h = History::serving_v1();
    let (id, env) = h.release(10, "v2", false);
    h.green(12, &env, "v2");
    h.registered(20, &[&format!("i-{env}-0"), &format!("i-{env}-1")]);
    h.push(20, ServiceEvent::RolloutCompleted { rollout_id: id });
    assert!(h.decide(20 + 599).is_empty(), "keep_old_for is 10m");
    assert_eq!(
        kinds(&h.decide_and_apply(20 + 600)),
        vec!["terminate hello-v1"]
    );
    assert!(h.decide(20 + 700).is_empty(), "terminated once");
    // A release of v1 after the window needs a new environment.
    h.env(
        701,
        "hello-v1",
        "v1",
        EnvironmentStatus::Terminated,
        Health::Grey,
    );
    let (_, target) = h.release(800, "v1", false);
    assert_ne!(target, "hello-v1");
}

#[test]
fn an_environment_this_log_did_not_create_is_never_terminated() {
    // Another installation's environment in the same application, or one from before this
    // log began: observed, but not ionroller's to delete.
    let mut h = History::serving_v1();
    h.green(5, "hello-elsewhere", "v0");
    assert!(h.state.environments["hello-elsewhere"].foreign);
    assert!(!h.state.environments["hello-v1"].foreign);
    for at in [5, 5 + 600, 5 + 86_400] {
        assert!(h.decide(at).is_empty(), "{:?}", kinds(&h.decide(at)));
    }
}

#[test]
fn a_new_log_over_a_running_service_keeps_what_serves_beside_the_canary_and_on_rollback() {
    // The event store was replaced: the endpoint serves from an environment the log has
    // never planned.
    let mut h = History::new();
    h.green(1, "hello-old", "v1")
        .registered(1, &["i-hello-old-0", "i-hello-old-1"]);
    assert!(h.decide(2).is_empty(), "no stable, no drift repair");
    let (_, env) = h.release(3, "v2", false);
    h.decide_and_apply(3);
    h.green(4, &env, "v2");
    // The canary joins beside the serving instances, which stay.
    assert_eq!(kinds(&h.decide_and_apply(4)), vec!["step 0 10%"]);
    assert_eq!(
        kinds(&h.decide_and_apply(4)),
        vec![format!("register i-{env}-0")]
    );
    h.registered(
        5,
        &["i-hello-old-0", "i-hello-old-1", &format!("i-{env}-0")],
    );
    // An alarm now sends traffic back to what served before, not to nothing.
    h.push(
        6,
        ServiceEvent::AbortRequested {
            reason: Some("test".into()),
        },
    );
    let events = h.decide_and_apply(6);
    assert!(
        kinds(&events).contains(&format!("deregister i-{env}-0")),
        "{:?}",
        kinds(&events)
    );
    h.registered(7, &["i-hello-old-0", "i-hello-old-1"]);
    h.decide_and_apply(7);
    assert!(h.state.rollout.is_none(), "rolled back");
    // After the warm window the rolled-back environment goes; the one that serves stays.
    assert_eq!(
        kinds(&h.decide_and_apply(7 + 86_400)),
        vec![format!("terminate {env}")]
    );
    assert!(h.decide(7 + 86_401).is_empty());
}

#[test]
fn an_unused_environment_still_taking_traffic_is_deregistered_before_termination() {
    let mut h = History::serving_v1();
    let (id, env) = h.release(10, "v2", false);
    h.green(12, &env, "v2");
    h.registered(20, &[&format!("i-{env}-0"), &format!("i-{env}-1")]);
    h.push(20, ServiceEvent::RolloutCompleted { rollout_id: id });
    // Someone registered an old instance again during the warm window.
    h.registered(
        300,
        &[&format!("i-{env}-0"), &format!("i-{env}-1"), "i-hello-v1-0"],
    );
    let kinds_now = kinds(&h.decide_and_apply(20 + 600));
    assert_eq!(
        kinds_now,
        vec!["drift-detected", "deregister i-hello-v1-0"],
        "not terminated while registered"
    );
    h.registered(20 + 601, &[&format!("i-{env}-0"), &format!("i-{env}-1")]);
    assert_eq!(
        kinds(&h.decide_and_apply(20 + 602)),
        vec!["terminate hello-v1"]
    );
}

#[test]
fn drift_is_recorded_and_repaired() {
    let mut h = History::serving_v1();
    h.registered(5, &["i-hello-v1-1"]);
    assert_eq!(
        kinds(&h.decide(5)),
        vec!["drift-detected", "register i-hello-v1-0"]
    );
    h.env(
        6,
        "hello-v1",
        "v1",
        EnvironmentStatus::Terminated,
        Health::Grey,
    );
    assert_eq!(
        kinds(&h.decide(6)),
        vec!["drift-detected", "rollback-requested", "plan-computed"]
    );
}

/// The plan a repair chose (the last event of the repair's decision).
fn repair_plan(events: &[ServiceEvent]) -> ionroller_shared::events::Plan {
    match events.last() {
        Some(ServiceEvent::PlanComputed { plan, .. }) => plan.clone(),
        other => panic!("expected a plan, got {other:?}"),
    }
}

#[test]
fn a_repair_without_a_warm_environment_launches_one_and_registers_it_in_full() {
    let mut h = History::serving_v1();
    h.env(
        5,
        "hello-v1",
        "v1",
        EnvironmentStatus::Terminated,
        Health::Grey,
    );
    h.registered(5, &[]);
    let plan = repair_plan(&h.decide_and_apply(6));
    assert!(!plan.reuses_warm_environment);
    assert_ne!(plan.environment, "hello-v1");
    assert_eq!(plan.steps.len(), 1, "no canary, no steps: {plan:?}");
    assert_eq!((plan.steps[0].percent, plan.steps[0].pause), (100, None));
    let env = plan.environment.clone();
    assert_eq!(kinds(&h.decide_and_apply(6)), vec![format!("create {env}")]);
    h.green(30, &env, "v1");
    assert_eq!(kinds(&h.decide_and_apply(30)), vec!["step 0 100%"]);
    assert_eq!(
        kinds(&h.decide(30)),
        vec![format!("register i-{env}-0,i-{env}-1")],
        "every healthy instance at once"
    );
}

#[test]
fn a_repair_reuses_a_warm_healthy_environment_of_the_serving_version() {
    let mut h = History::serving_v1();
    // A second live environment of v1 that served (say, from an earlier release of v1).
    h.green(4, "hello-v1-b", "v1");
    if let Some(e) = h.state.environments.get_mut("hello-v1-b") {
        e.served = true;
        e.foreign = false;
    }
    h.env(
        5,
        "hello-v1",
        "v1",
        EnvironmentStatus::Terminated,
        Health::Grey,
    );
    h.registered(5, &[]);
    let events = h.decide_and_apply(6);
    let plan = repair_plan(&events);
    assert_eq!(plan.environment, "hello-v1-b");
    assert!(plan.reuses_warm_environment);
    // Straight to all traffic, and its instances are registered at once: no launch, no canary.
    assert_eq!(kinds(&h.decide_and_apply(6)), vec!["step 0 100%"]);
    assert_eq!(
        kinds(&h.decide(6)),
        vec!["register i-hello-v1-b-0,i-hello-v1-b-1"]
    );
}

/// v1 serves; v2's environment create failed with `error`, refused or retryable.
fn v2_create_failed(error: &str, retryable: bool) -> History {
    let mut h = History::serving_v1();
    h.release(10, "v2", false);
    let intent = h.decide(10);
    let ServiceEvent::ActionIntended { action_id, .. } = intent[0].clone() else {
        panic!("expected the create");
    };
    h.pushes(10, intent);
    h.push(
        11,
        ServiceEvent::ActionFailed {
            action_id,
            attempt: 1,
            error: error.into(),
            retryable,
        },
    );
    h
}

#[test]
fn a_refused_action_ends_the_rollout_at_once_with_the_clouds_words() {
    let h = v2_create_failed(
        "InvalidParameterValue: No Solution Stack named '64bit Windows' found.",
        false,
    );
    let events = h.decide(12);
    let [ServiceEvent::RollbackStarted { cause, .. }] = &events[..] else {
        panic!("expected a rollback, got {:?}", kinds(&events));
    };
    assert!(
        matches!(cause, RollbackCause::ActionRefused { action, error }
            if action.starts_with("create environment") && error.starts_with("InvalidParameterValue")),
        "{cause:?}"
    );
    assert!(cause
        .summary()
        .contains("No Solution Stack named '64bit Windows'"));
}

#[test]
fn an_unavailable_cloud_is_retried_not_a_reason_to_roll_back() {
    let h = v2_create_failed("ServiceUnavailable: try again", true);
    assert!(kinds(&h.decide(20)).iter().all(|k| k.starts_with("create")));
}

#[test]
fn instances_of_unknown_origin_are_reported_once_and_never_deregistered() {
    let mut h = History::serving_v1();
    // Another service's instance shows up behind hello's load balancer.
    h.registered(5, &["i-hello-v1-0", "i-hello-v1-1", "i-shop-0"]);
    let events = h.decide_and_apply(5);
    assert_eq!(kinds(&events), vec!["unknown-instances-observed"]);
    assert!(h.decide(6).is_empty(), "reported once, and left alone");
    // A rollout of hello completes without touching it, and its steps still complete.
    let (id, env) = h.release(10, "v2", false);
    h.green(12, &env, "v2");
    h.push(
        13,
        ServiceEvent::StepStarted {
            rollout_id: id,
            step: 3,
            percent: 100,
        },
    );
    let mut registered = vec![
        "i-hello-v1-0".to_string(),
        "i-hello-v1-1".into(),
        "i-shop-0".into(),
    ];
    for at in 13..30 {
        let events = h.decide_and_apply(at);
        for e in &events {
            match e {
                ServiceEvent::ActionIntended {
                    action: Action::RegisterInstances { instances, .. },
                    ..
                } => registered.extend(instances.iter().cloned()),
                ServiceEvent::ActionIntended {
                    action: Action::DeregisterInstances { instances, .. },
                    ..
                } => {
                    assert!(
                        !instances.contains(&"i-shop-0".to_string()),
                        "{instances:?}"
                    );
                    registered.retain(|i| !instances.contains(i));
                }
                _ => {}
            }
        }
        let ids: Vec<&str> = registered.iter().map(String::as_str).collect();
        h.registered(at, &ids);
    }
    assert_eq!(
        h.state.stable.as_deref(),
        Some(env.as_str()),
        "the rollout completed beside the unknown instance"
    );
    assert!(h.state.registrations.contains_key("i-shop-0"));
    // Once it leaves, that is reported too (an empty set).
    h.registered(40, &[&format!("i-{env}-0"), &format!("i-{env}-1")]);
    assert_eq!(
        kinds(&h.decide_and_apply(40)),
        vec!["unknown-instances-observed"]
    );
    assert!(h.state.unknown_instances.is_empty());
}

#[test]
fn an_instance_the_service_registered_stays_its_own_after_its_environment_drops_it() {
    let mut h = History::serving_v1();
    // Drift: hello registers i-hello-v1-1 again itself.
    h.registered(5, &["i-hello-v1-0"]);
    assert_eq!(
        kinds(&h.decide_and_apply(5)),
        vec!["drift-detected", "register i-hello-v1-1"]
    );
    h.registered(6, &["i-hello-v1-0", "i-hello-v1-1"]);
    // EB replaces i-hello-v1-1 with i-hello-v1-2; the old one stays registered on the balancer.
    h.push(
        7,
        ServiceEvent::EnvironmentObserved {
            environment: EnvironmentView {
                name: "hello-v1".into(),
                version: "v1".into(),
                config_version: 1,
                status: EnvironmentStatus::Ready,
                health: Health::Green,
                instances: ["i-hello-v1-0", "i-hello-v1-2"]
                    .map(|id| InstanceView {
                        id: id.into(),
                        healthy: true,
                    })
                    .into(),
                url: None,
            },
        },
    );
    // hello registered it, so hello cleans it up: the replacement goes in, then it goes out.
    assert_eq!(
        kinds(&h.decide_and_apply(8)),
        vec!["drift-detected", "register i-hello-v1-2"]
    );
    h.registered(9, &["i-hello-v1-0", "i-hello-v1-1", "i-hello-v1-2"]);
    assert_eq!(
        kinds(&h.decide_and_apply(9)),
        vec!["drift-detected", "deregister i-hello-v1-1"]
    );
    h.registered(10, &["i-hello-v1-0", "i-hello-v1-2"]);
    assert!(h.state.registered_by_us.contains("i-hello-v1-2"));
    assert!(
        !h.state.registered_by_us.contains("i-hello-v1-1"),
        "forgotten once gone"
    );
}

#[test]
fn a_failed_release_is_kept_for_inspection_only_then_terminated_before_a_warm_one_would_be() {
    let mut config = example();
    config.rollout.keep_old_for = HumanDuration(std::time::Duration::from_secs(600));
    config.rollout.keep_failed_for = Some(HumanDuration(std::time::Duration::from_secs(60)));
    let mut h = History::with(config);
    let (v1, _) = h.release_into(1, "v1", false, Some("hello-v1"));
    h.green(2, "hello-v1", "v1")
        .registered(3, &["i-hello-v1-0", "i-hello-v1-1"])
        .push(3, ServiceEvent::RolloutCompleted { rollout_id: v1 });
    let (v2, env) = h.release(10, "v2", false);
    h.green(12, &env, "v2");
    h.push(
        13,
        ServiceEvent::RolledBack {
            rollout_id: v2,
            cause: RollbackCause::EnvironmentFailed {
                environment: env.clone(),
                health: Health::Red,
            },
        },
    );
    assert!(h.state.environments[&env].failed);
    assert!(h.decide(13 + 59).is_empty(), "kept for keep_failed_for");
    assert_eq!(
        kinds(&h.decide_and_apply(13 + 60)),
        vec![format!("terminate {env}")],
        "not kept warm for keep_old_for: it never served"
    );
    // By default: 10 minutes, or keep_old_for when that is shorter.
    let mut policy = example().rollout;
    policy.keep_old_for = HumanDuration(std::time::Duration::from_secs(3600));
    assert_eq!(policy.keep_failed(), std::time::Duration::from_secs(600));
    policy.keep_old_for = HumanDuration(std::time::Duration::from_secs(30));
    assert_eq!(policy.keep_failed(), std::time::Duration::from_secs(30));
}

#[test]
fn failed_actions_back_off_then_retry() {
    let mut h = History::new();
    h.release(1, "v1", false);
    let intent = h.decide(1);
    let ServiceEvent::ActionIntended { action_id, .. } = intent[0].clone() else {
        panic!("expected an intent");
    };
    h.pushes(1, intent);
    h.push(
        1,
        ServiceEvent::ActionFailed {
            action_id,
            attempt: 1,
            error: "Throttling".into(),
            retryable: true,
        },
    );
    assert!(h.decide(2).is_empty(), "backing off for 2s ±25%");
    match &h.decide(4)[..] {
        [ServiceEvent::ActionIntended {
            attempt: 2,
            action_id: retry,
            ..
        }] => assert_ne!(*retry, action_id),
        other => panic!("{:?}", kinds(other)),
    }
}

#[test]
fn retry_backoff_doubles_to_a_cap_and_is_spread_per_action() {
    use super::decide::retry_backoff;
    use std::time::Duration as Std;
    // Unavailable or throttled: up to a minute. Refused: up to 15 minutes.
    for (retryable, cap) in [(true, 60), (false, 900)] {
        for attempt in 1..=14u32 {
            let base = Std::from_secs(1 << attempt.min(10)).min(Std::from_secs(cap));
            let mut seen = std::collections::BTreeSet::new();
            for n in 0..64 {
                let key = format!("register:i-{n}");
                let wait = retry_backoff(SERVICE, &key, attempt, retryable);
                assert!(
                    wait >= base.mul_f64(0.75) && wait < base.mul_f64(1.25),
                    "attempt {attempt}: {wait:?} is not within 25% of {base:?}"
                );
                assert_eq!(wait, retry_backoff(SERVICE, &key, attempt, retryable));
                seen.insert(wait);
            }
            assert!(
                seen.len() > 32,
                "attempt {attempt}: actions retry at spread times"
            );
        }
    }
}

#[test]
fn pauses_can_be_timed_or_wait_for_a_promote() {
    let mut config = example();
    config.rollout.canary = None;
    config.rollout.pause = Pause::For(HumanDuration(std::time::Duration::from_secs(0)));
    let mut h = History::serving_v1_with(config);
    let (id, env) = h.release(1, "v2", false);
    h.green(2, &env, "v2");
    h.step_done(2, id, 0, 25);
    assert_eq!(
        kinds(&h.decide(2)),
        vec!["step 1 50%"],
        "a zero pause moves straight on"
    );
}

#[test]
fn a_ramped_rollback_steps_down_through_the_lower_steps() {
    let mut config = example();
    config.rollout.rollback = ionroller_shared::config::RollbackMode::Ramp;
    config.instances.min = 4;
    let mut h = History::with(config);
    let (v1, _) = h.release_into(1, "v1", false, Some("hello-v1"));
    let four = |env: &str| (0..4).map(|i| format!("i-{env}-{i}")).collect::<Vec<_>>();
    let observe4 = |h: &mut History, at: i64, env: &str, version: &str| {
        h.push(
            at,
            ServiceEvent::EnvironmentObserved {
                environment: EnvironmentView {
                    name: env.into(),
                    version: version.into(),
                    config_version: 1,
                    status: EnvironmentStatus::Ready,
                    health: Health::Green,
                    instances: four(env)
                        .into_iter()
                        .map(|id| InstanceView { id, healthy: true })
                        .collect(),
                    url: None,
                },
            },
        );
    };
    observe4(&mut h, 2, "hello-v1", "v1");
    let old = four("hello-v1");
    let refs = |ids: &[String]| {
        ids.iter()
            .map(String::as_str)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    h.registered(3, &old.iter().map(String::as_str).collect::<Vec<_>>());
    h.push(3, ServiceEvent::RolloutCompleted { rollout_id: v1 });
    let (id, env) = h.release(10, "v2", false);
    observe4(&mut h, 12, &env, "v2");
    let new = four(&env);
    // At the 50% step: 2 new and 2 old registered.
    h.push(
        13,
        ServiceEvent::StepStarted {
            rollout_id: id,
            step: 2,
            percent: 50,
        },
    );
    let mut both: Vec<String> = refs(&old[..2]);
    both.extend(refs(&new[..2]));
    h.registered(14, &both.iter().map(String::as_str).collect::<Vec<_>>());
    h.alarm(15, AlarmState::Alarm);
    h.pushes(15, h.decide(15));
    // Down to 25% (1 new of 4, 3 old): register an old one first, then drop a new one.
    assert_eq!(
        kinds(&h.decide_and_apply(15)),
        vec!["register i-hello-v1-2"]
    );
    let mut at25: Vec<String> = refs(&old[..3]);
    at25.extend(refs(&new[..2]));
    h.registered(16, &at25.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        kinds(&h.decide_and_apply(16)),
        vec![format!("deregister i-{env}-1")]
    );
    at25.retain(|i| *i != format!("i-{env}-1"));
    h.registered(17, &at25.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        kinds(&h.decide_and_apply(17)),
        vec!["rollback-step-started"],
        "then 10%"
    );
    // 10% of 4 rounds up to one new instance, beside 4 - floor(0.4) = 4 old.
    assert_eq!(
        kinds(&h.decide_and_apply(17)),
        vec!["register i-hello-v1-3"]
    );
    let mut at10 = old.clone();
    at10.push(new[0].clone());
    h.registered(18, &at10.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        kinds(&h.decide_and_apply(18)),
        vec!["rollback-step-started"],
        "then 0%"
    );
    assert_eq!(
        kinds(&h.decide_and_apply(18)),
        vec![format!("deregister i-{env}-0")]
    );
    h.registered(19, &old.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(kinds(&h.decide(19)), vec!["rolled-back"]);
}

#[test]
fn a_timed_pause_longer_than_the_deadline_is_not_a_stall() {
    let mut config = example();
    config.rollout.canary = None;
    config.rollout.pause = Pause::For(HumanDuration(std::time::Duration::from_secs(300)));
    let mut h = History::serving_v1_with(config);
    let (id, env) = h.release(1, "v2", false);
    h.green(2, &env, "v2");
    h.step_done(3, id, 0, 25);
    assert!(
        h.decide(250).is_empty(),
        "inside a 5m pause with a 2m deadline: still waiting"
    );
    assert_eq!(kinds(&h.decide(303)), vec!["step 1 50%"]);
}

#[test]
fn a_rollback_is_not_undone_by_the_alarm_that_caused_it() {
    let mut h = History::serving_v1();
    h.alarm(5, AlarmState::Alarm);
    let id = Uuid::from_u128(77);
    h.push(
        6,
        ServiceEvent::RollbackRequested {
            rollout_id: id,
            to_version: "v0".into(),
            reason: None,
        },
    );
    let plan = compute_plan(&example(), &RolloutKind::Rollback, "hello-v0".into(), false);
    h.push(
        6,
        ServiceEvent::PlanComputed {
            rollout_id: id,
            plan,
        },
    );
    assert_eq!(kinds(&h.decide(6)), vec!["create hello-v0"]);
    h.alarm(7, AlarmState::Ok).alarm(8, AlarmState::Alarm);
    assert!(
        kinds(&h.decide(8))[0].starts_with("rollback:"),
        "a new alarm still counts"
    );
}

#[test]
fn only_an_environment_that_served_is_warm() {
    let mut h = History::serving_v1();
    let (_, env) = h.release(10, "v2", false);
    h.green(12, &env, "v2");
    assert!(
        h.state.warm_environment("v2", 1).is_none(),
        "the rollout's own target is not warm"
    );
    assert!(
        h.state.warm_environment("v1", 1).is_some(),
        "the serving version is"
    );
}

#[test]
fn with_nothing_stable_an_environment_taking_traffic_is_not_terminated() {
    // A first release rolled back: nothing is stable, so there is no drift repair. If its
    // instances are registered again (by hand, say), they serve: the environment stays.
    let mut h = History::new();
    let (_, env) = h.release(1, "v1", false);
    h.decide_and_apply(1);
    h.green(2, &env, "v1");
    h.decide_and_apply(2);
    h.decide_and_apply(2);
    h.registered(3, &[&format!("i-{env}-0")]);
    h.push(4, ServiceEvent::AbortRequested { reason: None });
    assert_eq!(
        kinds(&h.decide_and_apply(4)),
        vec![format!("deregister i-{env}-0")]
    );
    h.registered(5, &[]);
    h.decide_and_apply(5);
    assert!(h.state.rollout.is_none() && h.state.stable.is_none());
    h.registered(6, &[&format!("i-{env}-0")]);
    assert!(
        h.decide(6 + 86_400).is_empty(),
        "{:?}",
        kinds(&h.decide(6 + 86_400))
    );
    h.registered(86_500, &[]);
    assert_eq!(
        kinds(&h.decide_and_apply(86_501)),
        vec![format!("terminate {env}")]
    );
}

#[test]
fn a_release_that_supersedes_a_repair_drains_the_repaired_environment_not_drops_it() {
    let mut h = History::serving_v1();
    h.env(
        5,
        "hello-v1",
        "v1",
        EnvironmentStatus::Terminated,
        Health::Grey,
    );
    h.registered(5, &[]);
    let repair = repair_plan(&h.decide_and_apply(6));
    let b = repair.environment.clone();
    assert_eq!(kinds(&h.decide_and_apply(6)), vec![format!("create {b}")]);
    h.green(7, &b, "v1");
    assert_eq!(kinds(&h.decide_and_apply(7)), vec!["step 0 100%"]);
    h.decide_and_apply(7);
    h.registered(8, &[&format!("i-{b}-0"), &format!("i-{b}-1")]);
    // A person releases before the repair completes: its rollout began from the terminated
    // hello-v1, but the repaired environment is what serves now.
    let (_, c) = h.release(9, "v1", false);
    assert_eq!(kinds(&h.decide_and_apply(9)), vec![format!("create {c}")]);
    h.green(10, &c, "v1");
    assert_eq!(kinds(&h.decide_and_apply(10)), vec!["step 0 10%"]);
    assert_eq!(
        kinds(&h.decide_and_apply(10)),
        vec![format!("register i-{c}-0")]
    );
    h.registered(
        11,
        &[
            &format!("i-{b}-0"),
            &format!("i-{b}-1"),
            &format!("i-{c}-0"),
        ],
    );
    assert_eq!(
        kinds(&h.decide(11)),
        vec!["step 0 done"],
        "the repaired environment keeps its capacity beside the canary"
    );
}

fn promote(full: bool) -> ServiceEvent {
    ServiceEvent::PromoteRequested {
        full,
        reason: Some("looks good".into()),
    }
}

#[test]
fn a_full_promote_of_the_canary_skips_every_step_left() {
    let mut h = v2_step_done(0, 10);
    h.push(20, promote(true));
    assert_eq!(kinds(&h.decide_and_apply(20)), vec!["step 3 100%"]);
}

#[test]
fn a_full_promote_of_the_test_endpoint_goes_straight_to_the_last_step() {
    let mut h = v2_at_the_test_endpoint();
    h.push(10, promote(true));
    assert_eq!(kinds(&h.decide(10)), vec!["step 3 100%"]);
}

#[test]
fn a_plain_promote_moves_one_step_and_a_full_one_holds_for_the_rest_of_the_rollout() {
    let mut h = v2_step_done(0, 10);
    h.push(20, promote(false));
    assert_eq!(kinds(&h.decide_and_apply(20)), vec!["step 1 25%"]);
    // Promoted in full during step 1's shift: the next step started is the last.
    h.push(21, promote(true));
    let rollout = h.state.rollout.clone().expect("a rollout");
    h.push(
        22,
        ServiceEvent::StepCompleted {
            rollout_id: rollout.id,
            step: 1,
        },
    );
    assert_eq!(kinds(&h.decide(22)), vec!["step 3 100%"]);
}

#[test]
fn the_progress_deadline_runs_from_the_stage_or_the_end_of_a_timed_pause_and_not_while_a_person_is_awaited(
) {
    // Launching since t=10, the example's deadline is 2m.
    let mut h = History::serving_v1();
    h.release(10, "v2", false);
    let rollout = h.state.rollout.clone().expect("a rollout");
    assert_eq!(rollout.progress_deadline(), Some(t(10 + 120)));
    // Step 2 (50%, a 3s pause) done at t=13: the clock starts when the pause ends.
    let h = v2_step_done(2, 50);
    let rollout = h.state.rollout.clone().expect("a rollout");
    assert_eq!(rollout.progress_deadline(), Some(t(13 + 3 + 120)));
    // The canary waits for a person: no deadline.
    let h = v2_step_done(0, 10);
    let rollout = h.state.rollout.clone().expect("a rollout");
    assert_eq!(rollout.progress_deadline(), None);
}
