//! What a release would do, and the deterministic names and ids the roller uses.

use std::time::Duration;

use ionroller_shared::config::{Pause, ServiceConfig};
use ionroller_shared::events::{Plan, PlanStep, RolloutId, StepInstances};
use ionroller_shared::store::StreamId;
use uuid::Uuid;

use super::state::{RolloutKind, ServiceState};

/// Namespace for ionroller's name-based (v5) UUIDs.
const NAMESPACE: Uuid = Uuid::from_u128(0x6a0e_1b2c_9d4f_4e7a_8c3b_5f1e_2d7a_9c40);

/// The environment a rollout creates. Derived from the rollout, so a retried or repeated
/// create finds the environment instead of making a second one. Elastic Beanstalk allows 4 to
/// 40 letters, digits and hyphens.
pub fn environment_name(service: &str, version: &str, rollout_id: RolloutId) -> String {
    let mut clean: String = version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    clean.truncate(40 - service.len().min(23) - 8);
    let clean = clean.trim_matches('-');
    let short = &rollout_id.simple().to_string()[..6];
    let name = if clean.is_empty() {
        format!("{service}-{short}")
    } else {
        format!("{service}-{clean}-{short}")
    };
    name.replace("--", "-")
}

/// An event id derived from where and what it is: a retried append of the same decision gets
/// the same id (and the store makes it a no-op); another event at that revision does not.
pub fn event_id(
    stream: &StreamId,
    revision: u64,
    event_type: &str,
    data: &serde_json::Value,
) -> Uuid {
    let text = format!("{stream}@{revision}:{event_type}:{data}");
    Uuid::new_v5(&NAMESPACE, text.as_bytes())
}

/// An action id derived from the service, the revision it was decided at, and the action.
pub fn action_id(service: &str, revision: Option<u64>, key: &str, attempt: u32) -> Uuid {
    let text = format!("{service}@{revision:?}:{key}#{attempt}");
    Uuid::new_v5(&NAMESPACE, text.as_bytes())
}

/// What a preview shows for the environment of a rollout that would launch one: its name
/// derives from the rollout's id, which exists only once the release is requested.
pub const UNNAMED_ENVIRONMENT: &str = "(a new environment, named when the release starts)";

/// The plan of a rollout of `version` under the service's current config: the one place that
/// chooses between reusing a warm environment of that version (one switch, no launch) and a
/// new environment named after the rollout. `rollout_id` is `None` for a preview, which then
/// shows [`UNNAMED_ENVIRONMENT`] rather than a name the release would not use. `None` when the
/// service has no config.
pub fn plan_rollout(
    state: &ServiceState,
    kind: &RolloutKind,
    version: &str,
    rollout_id: Option<RolloutId>,
) -> Option<Plan> {
    let config = state.latest_config()?;
    let warm = state.warm_environment(version, config.version);
    let environment = match (warm, rollout_id) {
        (Some(env), _) => env.name.clone(),
        (None, Some(id)) => environment_name(&state.service, version, id),
        (None, None) => UNNAMED_ENVIRONMENT.to_string(),
    };
    let first = *kind == RolloutKind::Release
        && warm.is_none()
        && state.stable.is_none()
        && state.serving_environment(None).is_none();
    let mut plan = if first {
        first_release_plan(&config.config, environment)
    } else {
        compute_plan(&config.config, kind, environment, warm.is_some())
    };
    // The size planned: a warm environment as it is, a new one at the configured minimum,
    // beside what serves now.
    let new = warm.map_or(config.config.instances.min as usize, |e| {
        e.instance_ids().len()
    });
    let old = state
        .serving_environment(warm.map(|e| e.name.as_str()))
        .and_then(|name| state.environments.get(&name))
        .map_or(0, |e| e.instance_ids().len());
    for step in &mut plan.steps {
        let (n, o) = registered_at(new, old, step.percent);
        step.instances = Some(StepInstances {
            new: n as u32,
            old: o as u32,
        });
    }
    Some(plan)
}

/// A first release (nothing serves yet) has no customers to protect and no previous version to
/// go back to: its environment takes all traffic once healthy, with no canary, steps, pauses
/// or test endpoint, like a rollback's one switch.
fn first_release_plan(config: &ServiceConfig, environment: String) -> Plan {
    let mut plan = compute_plan(config, &RolloutKind::Rollback, environment, false);
    for step in &mut plan.steps {
        step.label = "first release".into();
    }
    plan
}

/// How many of the new environment's `new` (healthy) instances and of the previous
/// environment's `old` instances take traffic at `percent`: the new share rounds up (a 10%
/// canary of two instances is one), and old capacity goes only as new capacity arrives (with
/// no new instance yet, all the old stays).
pub fn registered_at(new: usize, old: usize, percent: u8) -> (usize, usize) {
    let percent = percent.min(100) as usize;
    let new_taken = (new * percent).div_ceil(100);
    let old_kept = if new_taken == 0 {
        old
    } else {
        old - old * percent / 100
    };
    (new_taken, old_kept)
}

/// The steps and pauses a release would take, and its worst-case duration.
pub fn compute_plan(
    config: &ServiceConfig,
    kind: &RolloutKind,
    environment: String,
    reuses_warm_environment: bool,
) -> Plan {
    let policy = &config.rollout;
    // Rollbacks and warm switches are for getting back fast: one step, no waits.
    let fast = reuses_warm_environment || *kind == RolloutKind::Rollback;
    let mut steps = Vec::new();
    if fast {
        steps.push(PlanStep {
            label: "switch".into(),
            percent: 100,
            pause: None,
            instances: None,
        });
    } else {
        if let Some(canary) = &policy.canary {
            steps.push(PlanStep {
                label: "canary".into(),
                percent: canary.percent,
                pause: Some(canary.pause),
                instances: None,
            });
        }
        for percent in &policy.steps {
            steps.push(PlanStep {
                label: "step".into(),
                percent: *percent,
                pause: Some(policy.pause),
                instances: None,
            });
        }
        if let Some(last) = steps.last_mut() {
            last.pause = None;
        }
    }
    let test_endpoint = policy.test_endpoint && !fast;
    let deadline = policy.progress_deadline.0;
    let mut worst = Some(Duration::ZERO);
    let stages = steps.len() as u32 + u32::from(!reuses_warm_environment);
    worst = worst.map(|w| w + deadline * stages);
    if test_endpoint {
        worst = None;
    }
    for step in &steps {
        match step.pause {
            Some(Pause::UntilPromoted) => worst = None,
            Some(Pause::For(d)) => worst = worst.map(|w| w + d.0),
            None => {}
        }
    }
    Plan {
        environment,
        reuses_warm_environment,
        test_endpoint,
        steps,
        worst_case_secs: worst.map(|d| d.as_secs()),
        progress_deadline: policy.progress_deadline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ionroller_shared::config::parse_service_config;

    fn example() -> ServiceConfig {
        parse_service_config(include_str!("../../../examples/hello.json")).expect("valid example")
    }

    #[test]
    fn environment_names_fit_beanstalk_and_are_stable() {
        let id = Uuid::from_u128(0xabcdef);
        let a = environment_name("hello", "v1.2.3", id);
        assert_eq!(a, environment_name("hello", "v1.2.3", id));
        assert_eq!(a, "hello-v1-2-3-000000");
        let long = environment_name(&"s".repeat(23), &"V".repeat(40), id);
        assert!(long.len() <= 40, "{long}");
        assert!(long.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        assert!(!long.ends_with('-') && !long.contains("--"));
        assert_ne!(
            a,
            environment_name("hello", "v1.2.3", Uuid::from_u128(0xabcdf0 << 100))
        );
    }

    #[test]
    fn plans_follow_the_policy() {
        let config = example();
        let plan = compute_plan(&config, &RolloutKind::Release, "env".into(), false);
        let steps: Vec<(String, u8, Option<Pause>)> = plan
            .steps
            .iter()
            .map(|s| (s.label.clone(), s.percent, s.pause))
            .collect();
        let three = Pause::For(ionroller_shared::config::HumanDuration(
            Duration::from_secs(3),
        ));
        assert_eq!(
            steps,
            vec![
                ("canary".into(), 10, Some(Pause::UntilPromoted)),
                ("step".into(), 25, Some(three)),
                ("step".into(), 50, Some(three)),
                ("step".into(), 100, None),
            ]
        );
        assert_eq!(plan.worst_case_secs, None, "the canary waits for a person");

        let mut timed = config.clone();
        timed.rollout.canary = None;
        let plan = compute_plan(&timed, &RolloutKind::Release, "env".into(), false);
        // launch + 3 steps, each up to the 2m deadline, plus two 3s pauses
        assert_eq!(plan.worst_case_secs, Some(4 * 120 + 6));

        let warm = compute_plan(&config, &RolloutKind::Release, "env".into(), true);
        assert_eq!(warm.steps.len(), 1);
        assert_eq!(warm.steps[0].percent, 100);
        assert_eq!(warm.worst_case_secs, Some(120));
        let rollback = compute_plan(&config, &RolloutKind::Rollback, "env".into(), false);
        assert_eq!(rollback.steps.len(), 1);
        assert!(!rollback.test_endpoint);
    }

    #[test]
    fn instance_arithmetic_rounds_the_new_share_up_and_drains_old_as_new_arrives() {
        // (new, old, percent) → (new registered, old registered)
        let table = [
            ((2, 2, 10), (1, 2)), // a 10% canary of 2 is 1 beside 2: really 33%
            ((2, 2, 25), (1, 2)), // the same instances: this step changes nothing
            ((2, 2, 50), (1, 1)),
            ((2, 2, 100), (2, 0)),
            ((0, 3, 50), (0, 3)), // nothing new healthy: all the old stays
            ((10, 10, 10), (1, 9)),
            ((3, 0, 10), (1, 0)), // a first release
        ];
        for ((new, old, percent), want) in table {
            assert_eq!(
                registered_at(new, old, percent),
                want,
                "{new} {old} {percent}%"
            );
        }
    }
}
