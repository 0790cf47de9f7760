//! `decide`: from a service's state and the time, the events to append next. Pure.
//!
//! Decisions are events: a step starting, a rollout completing, or an `action-intended` that
//! the shell then executes. While any intended action has no outcome yet, `decide` returns
//! nothing, so at most one batch of cloud actions is ever in flight per service, and a
//! restarted roller first finishes (idempotently) what it had recorded.
//!
//! Two invariants hold for every action decided here (and are property-tested):
//! - an instance is registered only while it is healthy, in an environment that is Ready and
//!   Green or Yellow (never Red, Grey or launching); a traffic step completes only once the
//!   whole new environment is Green with every instance healthy;
//! - deregistration never takes the in-service registered capacity below the service's
//!   minimum instance count (or below what the desired set itself holds, if that is less).

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ionroller_shared::config::{Pause, ServiceConfig};
use ionroller_shared::events::{
    Action, AlarmState, EnvironmentStatus, Health, RollbackCause, ServiceEvent,
};

use super::plan::{action_id, compute_plan};
use super::state::{action_key, ActionStatus, Rollout, RolloutKind, ServiceState, Stage};

/// A failed action is retried after about 2^attempt seconds, capped at this (±25%; see
/// [`retry_backoff`]) ...
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// ... or at this when the cloud refused it (a permission, a quota, a bad value): a person
/// has to act, and retrying every minute would only fill the log.
const MAX_BACKOFF_REFUSED: Duration = Duration::from_secs(15 * 60);

pub fn decide(state: &ServiceState, now: DateTime<Utc>) -> Vec<ServiceEvent> {
    let Some(latest) = state.latest_config() else {
        return Vec::new();
    };
    if state.pending_actions().next().is_some() {
        return Vec::new();
    }
    let mut events = unknown_instances(state, &latest.config);
    events.extend(match &state.rollout {
        Some(rollout) => {
            let config = state
                .config(rollout.config_version)
                .map_or(&latest.config, |c| &c.config);
            decide_rollout(state, rollout, config, now)
        }
        None => decide_steady(state, &latest.config, now),
    });
    events
}

/// Reports instances on the service's load balancer that are none of its own, when that set
/// changes. They are never deregistered by this service (see [`traffic_action`]): they may be
/// another service's, and a mistake in one service must not take another's traffic away.
fn unknown_instances(state: &ServiceState, config: &ServiceConfig) -> Vec<ServiceEvent> {
    let unknown = state.registered_unknown();
    if unknown == state.unknown_instances {
        return Vec::new();
    }
    vec![ServiceEvent::UnknownInstancesObserved {
        load_balancer: config.endpoint.load_balancer.name.clone(),
        instances: unknown.into_iter().collect(),
    }]
}

/// The action of this rollout that the cloud refused (not retryable), if its latest attempt
/// was refused: a permission, a quota or a value the cloud does not accept will not pass by
/// waiting, so the rollout ends at once with the cloud's own words.
fn refused_action(state: &ServiceState, rollout: &Rollout) -> Option<RollbackCause> {
    state
        .actions
        .values()
        .find_map(|record| match &record.status {
            ActionStatus::Failed {
                error,
                retryable: false,
                ..
            } if record.rollout_id == Some(rollout.id)
                && state
                    .last_action(&record.key)
                    .is_some_and(|last| std::ptr::eq(last, record)) =>
            {
                Some(RollbackCause::ActionRefused {
                    action: record.action.describe(),
                    error: error.clone(),
                })
            }
            _ => None,
        })
}

fn decide_rollout(
    state: &ServiceState,
    rollout: &Rollout,
    config: &ServiceConfig,
    now: DateTime<Utc>,
) -> Vec<ServiceEvent> {
    let Some(plan) = &rollout.plan else {
        return Vec::new();
    };
    let id = rollout.id;
    let target = state.environments.get(&plan.environment);
    // The environment whose capacity drains as the new one's arrives: the one that served
    // when the rollout began, or, if that is gone (never was, or terminated, as when a release
    // supersedes a repair), whichever serves most now, so its capacity is not dropped at once.
    let from = rollout
        .from
        .clone()
        .filter(|f| state.environments.get(f).is_some_and(|e| !e.terminated))
        .or_else(|| state.serving_environment(Some(&plan.environment)));
    let lb = &config.endpoint.load_balancer.name;
    let min = config.instances.min as usize;

    if let Stage::Reverting { cause, percent } = &rollout.stage {
        let keep = target.filter(|_| *percent > 0).map(|t| t.name.as_str());
        let desired = desired_registrations(state, from.as_deref(), keep, *percent);
        return match traffic_action(state, &desired, lb, min) {
            Some(action) => intend(state, action, now),
            None if registrations_match(state, &desired) => {
                // Ramped: the next lower step, until none is left.
                let lower = plan
                    .steps
                    .iter()
                    .map(|s| s.percent)
                    .filter(|p| p < percent)
                    .max();
                match lower {
                    Some(p) => vec![ServiceEvent::RollbackStepStarted {
                        rollout_id: id,
                        percent: p,
                    }],
                    None if *percent > 0 => vec![ServiceEvent::RollbackStepStarted {
                        rollout_id: id,
                        percent: 0,
                    }],
                    None => vec![ServiceEvent::RolledBack {
                        rollout_id: id,
                        cause: cause.clone(),
                    }],
                }
            }
            None => Vec::new(),
        };
    }

    if let Some(cause) = refused_action(state, rollout) {
        return rollback(id, cause);
    }

    // Automatic rollback: a configured alarm in ALARM. With an override, alarms that were
    // already firing when the release was requested are ignored; new ones still count.
    let firing = config.rollout.alarms.iter().find_map(|name| {
        state.alarms.get(name).filter(|a| {
            a.state == AlarmState::Alarm
                && !(rollout.override_alarms && a.updated_at <= rollout.requested_at)
        })
    });
    if let Some(alarm) = firing {
        return rollback(
            id,
            RollbackCause::Alarm {
                alarm: alarm.clone(),
            },
        );
    }
    if let Some(view) = target.and_then(|t| t.observed.as_ref()) {
        let failed = view.health == Health::Red
            || (view.status == EnvironmentStatus::Terminated && rollout.stage != Stage::Launching);
        if failed {
            return rollback(
                id,
                RollbackCause::EnvironmentFailed {
                    environment: view.name.clone(),
                    health: view.health,
                },
            );
        }
    }
    if rollout
        .progress_deadline()
        .is_some_and(|deadline| now > deadline)
    {
        return rollback(
            id,
            RollbackCause::DeadlineExceeded {
                stage: stage_name(&rollout.stage),
                deadline: plan.progress_deadline,
            },
        );
    }
    if rollout.paused {
        return Vec::new();
    }

    match &rollout.stage {
        Stage::Launching => {
            let Some(target) = target else {
                return Vec::new();
            };
            let live = target
                .observed
                .as_ref()
                .is_some_and(|v| v.status != EnvironmentStatus::Terminated);
            if !live {
                let action = Action::CreateEnvironment {
                    environment: target.name.clone(),
                    version: rollout.version.clone(),
                    config_version: rollout.config_version,
                    config: Box::new(config.clone()),
                };
                // Once a create succeeded, wait to observe it rather than create again.
                let created = state
                    .last_action(&action_key(&action))
                    .is_some_and(|r| r.status == ActionStatus::Succeeded);
                return if created {
                    Vec::new()
                } else {
                    intend(state, action, now)
                };
            }
            if !target.is_healthy() {
                return Vec::new();
            }
            if plan.test_endpoint {
                vec![ServiceEvent::TestEndpointReady {
                    rollout_id: id,
                    url: target.observed.as_ref().and_then(|v| v.url.clone()),
                }]
            } else {
                start_step(rollout, 0)
            }
        }
        Stage::TestEndpoint => {
            if rollout.promoted {
                start_step(rollout, 0)
            } else {
                Vec::new()
            }
        }
        Stage::Shifting { step } => {
            let percent = plan.steps.get(*step).map_or(100, |s| s.percent);
            let desired = desired_registrations(
                state,
                from.as_deref(),
                target.map(|t| t.name.as_str()),
                percent,
            );
            match traffic_action(state, &desired, lb, min) {
                Some(action) => intend(state, action, now),
                // A step is done only with the new environment healthy and holding its share.
                None if target.is_some_and(|t| t.is_healthy())
                    && registrations_match(state, &desired) =>
                {
                    vec![ServiceEvent::StepCompleted {
                        rollout_id: id,
                        step: *step,
                    }]
                }
                None => Vec::new(),
            }
        }
        Stage::StepDone { step, at } => {
            if step + 1 >= plan.steps.len() {
                return vec![ServiceEvent::RolloutCompleted { rollout_id: id }];
            }
            let nothing_changed = *step > 0
                && step_registers(state, from.as_deref(), target, plan.steps[*step].percent)
                    == step_registers(state, from.as_deref(), target, plan.steps[step - 1].percent);
            match plan.steps[*step].pause {
                // A step that moved nothing (25% of two instances is the 10% canary's one) has
                // nothing to watch: its pause would only wait.
                _ if nothing_changed => start_step(rollout, step + 1),
                None => start_step(rollout, step + 1),
                Some(Pause::For(d)) => {
                    let elapsed = (now - *at).to_std().unwrap_or_default();
                    if elapsed >= d.0 {
                        start_step(rollout, step + 1)
                    } else {
                        Vec::new()
                    }
                }
                Some(Pause::UntilPromoted) => {
                    if rollout.promoted {
                        start_step(rollout, step + 1)
                    } else if !rollout.awaiting_promote {
                        // Recorded once, so that who is told to promote is told when the
                        // roller really waits.
                        vec![ServiceEvent::WaitingForPromote {
                            rollout_id: id,
                            step: *step,
                        }]
                    } else {
                        Vec::new()
                    }
                }
            }
        }
        Stage::Reverting { .. } => Vec::new(),
    }
}

/// How many instances of the new and of the previous environment a step at `percent`
/// registers, at the sizes the environments have now.
fn step_registers(
    state: &ServiceState,
    from: Option<&str>,
    target: Option<&super::state::Environment>,
    percent: u8,
) -> (usize, usize) {
    let new = target.map_or(0, |t| t.healthy_instances().len());
    let old = from
        .and_then(|f| state.environments.get(f))
        .filter(|f| !f.terminated)
        .map_or(0, |f| f.instance_ids().len());
    super::plan::registered_at(new, old, percent)
}

fn decide_steady(
    state: &ServiceState,
    config: &ServiceConfig,
    now: DateTime<Utc>,
) -> Vec<ServiceEvent> {
    let lb = &config.endpoint.load_balancer.name;
    let min = config.instances.min as usize;
    if let Some(stable) = state
        .stable
        .as_ref()
        .and_then(|s| state.environments.get(s))
    {
        if stable.terminated {
            // Someone else terminated the serving environment: bring the version back.
            return repair(state, config, &stable.version);
        }
        let desired = desired_registrations(state, Some(&stable.name), None, 0);
        if let Some(action) = traffic_action(state, &desired, lb, min) {
            let description = format!(
                "the load balancer {lb} does not match {}: {}",
                stable.name,
                action.describe()
            );
            let intent = intend(state, action, now);
            // Recorded once per repair attempt, not on every pass while one backs off.
            if intent.is_empty() {
                return intent;
            }
            let mut events = vec![ServiceEvent::DriftDetected { description }];
            events.extend(intent);
            return events;
        }
    }
    let mut events = Vec::new();
    for env in state.environments.values() {
        // Never seen in the cloud (a superseded rollout's environment that was not created):
        // nothing to mark or terminate until it shows up. Not created by this log: not ours
        // to delete.
        if env.terminated
            || env.foreign
            || env.observed.is_none()
            || state.stable.as_deref() == Some(env.name.as_str())
        {
            continue;
        }
        // An environment still taking traffic is terminated only once it no longer is (with
        // a stable environment, drift repair deregisters it; without one, a person must).
        let serving = env
            .instance_ids()
            .iter()
            .any(|id| state.registrations.contains_key(id));
        // A failed release's environment is no rollback target: kept only for inspection.
        let keep = env.kept_for(&config.rollout);
        match env.unused_since {
            None => events.push(ServiceEvent::EnvironmentMarkedUnused {
                environment: env.name.clone(),
            }),
            Some(since) if !serving && (now - since).to_std().unwrap_or_default() >= keep => {
                let action = Action::TerminateEnvironment {
                    environment: env.name.clone(),
                };
                let done = state
                    .last_action(&action_key(&action))
                    .is_some_and(|r| r.status == ActionStatus::Succeeded);
                if !done && events.is_empty() {
                    return intend(state, action, now);
                }
            }
            Some(_) => {}
        }
    }
    events
}

/// The stable environment vanished: bring its version back as a rollback, which skips the
/// rollout policy (the version served all traffic until a moment ago) and never waits for a
/// person. Capacity first: a warm, healthy environment of that version takes all traffic at
/// once; without one, a new environment of it is registered in full as soon as it is healthy.
fn repair(state: &ServiceState, config: &ServiceConfig, version: &str) -> Vec<ServiceEvent> {
    let revision = state.revision.map_or(0, |r| r.0);
    let rollout_id = action_id(
        &state.service,
        Some(revision),
        &format!("repair:{version}"),
        0,
    );
    let warm = state
        .environments
        .values()
        .filter(|e| e.version == version && e.served && !e.terminated && e.is_healthy())
        .max_by_key(|e| e.healthy_instances().len());
    let environment = warm.map_or_else(
        || super::plan::environment_name(&state.service, version, rollout_id),
        |e| e.name.clone(),
    );
    let plan = compute_plan(config, &RolloutKind::Rollback, environment, warm.is_some());
    vec![
        ServiceEvent::DriftDetected {
            description: format!(
                "environment {} serving {version} was terminated outside ionroller; restoring {version}{}",
                state.stable.clone().unwrap_or_default(),
                warm.map(|e| format!(" from its warm environment {}", e.name)).unwrap_or_else(|| " in a new environment, registered in full once healthy".into()),
            ),
        },
        ServiceEvent::RollbackRequested {
            rollout_id,
            to_version: version.to_string(),
            reason: Some("repair: serving environment terminated outside ionroller".into()),
        },
        ServiceEvent::PlanComputed { rollout_id, plan },
    ]
}

fn rollback(rollout_id: uuid::Uuid, cause: RollbackCause) -> Vec<ServiceEvent> {
    vec![ServiceEvent::RollbackStarted { rollout_id, cause }]
}

/// Starts `step`, or, after a full promote, the last step: every step left is skipped.
fn start_step(rollout: &Rollout, step: usize) -> Vec<ServiceEvent> {
    let last = rollout
        .plan
        .as_ref()
        .map_or(step, |p| p.steps.len().saturating_sub(1));
    let step = if rollout.promoted_full {
        step.max(last)
    } else {
        step
    };
    let percent = rollout
        .plan
        .as_ref()
        .and_then(|p| p.steps.get(step))
        .map_or(100, |s| s.percent);
    vec![ServiceEvent::StepStarted {
        rollout_id: rollout.id,
        step,
        percent,
    }]
}

fn stage_name(stage: &Stage) -> String {
    match stage {
        Stage::Launching => "launching the new environment".into(),
        Stage::TestEndpoint => "test endpoint".into(),
        Stage::Shifting { step } => format!("traffic step {}", step + 1),
        Stage::StepDone { step, .. } => format!("pause after step {}", step + 1),
        Stage::Reverting { .. } => "rollback".into(),
    }
}

/// Records the intent to act, unless a failed attempt of the same action is still backing off.
fn intend(state: &ServiceState, action: Action, now: DateTime<Utc>) -> Vec<ServiceEvent> {
    let key = action_key(&action);
    let attempt = match state.last_action(&key) {
        Some(last) => match &last.status {
            ActionStatus::Failed { at, retryable, .. } => {
                let backoff = retry_backoff(&state.service, &key, last.attempt, *retryable);
                if (now - *at).to_std().unwrap_or_default() < backoff {
                    return Vec::new();
                }
                last.attempt + 1
            }
            _ => 1,
        },
        None => 1,
    };
    let revision = state.revision.map(|r| r.0);
    vec![ServiceEvent::ActionIntended {
        action_id: action_id(&state.service, revision, &key, attempt),
        attempt,
        action,
        lease: None,
    }]
}

/// How long a failed attempt waits before the next: doubling from 2 s up to [`MAX_BACKOFF`]
/// ([`MAX_BACKOFF_REFUSED`] when the cloud refused rather than failed) and then staying
/// there (a rollback or a repair must never give up), spread by ±25% so that services
/// throttled together do not retry together. The spread comes from the service, action and
/// attempt, not a random draw: the core stays deterministic, and a restarted roller waits as
/// long as the one it replaced would have.
pub fn retry_backoff(service: &str, action_key: &str, attempt: u32, retryable: bool) -> Duration {
    let cap = if retryable {
        MAX_BACKOFF
    } else {
        MAX_BACKOFF_REFUSED
    };
    let base = Duration::from_secs(1 << attempt.min(10)).min(cap);
    let seed = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("{service}/{action_key}#{attempt}").as_bytes(),
    );
    let [a, b, ..] = *seed.as_bytes();
    let spread = f64::from(u16::from_be_bytes([a, b])) / 65536.0; // in [0, 1)
    base.mul_f64(0.75 + spread / 2.0)
}

/// The instances that should be registered: `percent` of the target's healthy capacity and
/// the complementary share of the previous environment's.
pub fn desired_registrations(
    state: &ServiceState,
    from: Option<&str>,
    target: Option<&str>,
    percent: u8,
) -> BTreeSet<String> {
    let healthy = target
        .and_then(|t| state.environments.get(t))
        .map(|t| t.healthy_instances())
        .unwrap_or_default();
    let old = from
        .and_then(|f| state.environments.get(f))
        .filter(|f| !f.terminated)
        .map(|f| f.instance_ids())
        .unwrap_or_default();
    // The same arithmetic `plan` shows: with no healthy new instances (or a target that is
    // not there yet), all of the old stays.
    let (new_taken, old_kept) = super::plan::registered_at(healthy.len(), old.len(), percent);
    healthy
        .into_iter()
        .take(new_taken)
        .chain(old.into_iter().take(old_kept))
        .collect()
}

/// Whether the service's own registrations are exactly `desired`, all in service (unknown
/// instances on its load balancer are not its to match).
fn registrations_match(state: &ServiceState, desired: &BTreeSet<String>) -> bool {
    let own = state.own_instances();
    state
        .registrations
        .keys()
        .filter(|i| own.contains(*i))
        .count()
        == desired.len()
        && desired
            .iter()
            .all(|i| state.registrations.get(i).copied().unwrap_or(false))
}

/// The next load-balancer change towards `desired`: register first, and deregister only once
/// everything desired is in service, never below the minimum in-service capacity.
fn traffic_action(
    state: &ServiceState,
    desired: &BTreeSet<String>,
    lb: &str,
    min: usize,
) -> Option<Action> {
    let registerable: BTreeSet<String> = state
        .environments
        .values()
        .flat_map(|e| e.healthy_instances())
        .collect();
    let to_register: Vec<String> = desired
        .iter()
        .filter(|i| !state.registrations.contains_key(*i) && registerable.contains(*i))
        .cloned()
        .collect();
    if !to_register.is_empty() {
        return Some(Action::RegisterInstances {
            load_balancer: lb.to_string(),
            instances: to_register,
        });
    }
    let desired_waiting = desired
        .iter()
        .any(|i| state.registrations.get(i) == Some(&false));
    if desired_waiting {
        return None; // Let new registrations pass the health check first.
    }
    // Only the service's own instances: another service's, or one registered by hand, are
    // reported (`unknown-instances-observed`) and left alone, and carry none of its capacity.
    let own = state.own_instances();
    let registered: Vec<(&String, bool)> = state
        .registrations
        .iter()
        .filter(|(i, _)| own.contains(*i))
        .map(|(i, s)| (i, *s))
        .collect();
    let mut to_deregister: Vec<(&String, bool)> = registered
        .iter()
        .filter(|(i, _)| !desired.contains(*i))
        .copied()
        .collect();
    if to_deregister.is_empty() {
        return None;
    }
    // Out-of-service instances carry no capacity: remove them first, freely.
    to_deregister.sort_by_key(|(i, in_service)| (*in_service, (*i).clone()));
    let in_service_now = registered.iter().filter(|(_, s)| *s).count();
    let desired_in_service = desired
        .iter()
        .filter(|i| state.registrations.get(*i) == Some(&true))
        .count();
    let floor = min.min(desired_in_service);
    let mut removable = in_service_now.saturating_sub(floor);
    let mut chosen = Vec::new();
    for (instance, in_service) in to_deregister {
        if in_service {
            if removable == 0 {
                break;
            }
            removable -= 1;
        }
        chosen.push(instance.clone());
    }
    if chosen.is_empty() {
        return None;
    }
    Some(Action::DeregisterInstances {
        load_balancer: lb.to_string(),
        instances: chosen,
    })
}
