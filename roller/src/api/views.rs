//! What the API answers: `GET /v1/services/{service}` (desired and live state, for people and
//! the CLI) and the small bodies of the other routes. Each derives `ToSchema`, so the OpenAPI
//! document is generated from the same types the handlers serialize and cannot drift.

use chrono::{DateTime, Utc};
use ionroller_shared::config::{Pause, ServiceConfig};
use ionroller_shared::events::{AlarmState, AlarmView, EnvironmentStatus, Health, Plan, RolloutId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use ionroller_core::state::{
    ActionStatus, Outcome, RolloutKind, RolloutRecord, ServiceState, Stage,
};

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ServiceStatus {
    pub service: String,
    pub config_version: Option<u32>,
    pub stable_version: Option<String>,
    pub environments: Vec<EnvironmentStatusView>,
    pub traffic: Vec<TrafficShare>,
    pub rollout: Option<RolloutView>,
    pub alarms: Vec<AlarmView>,
    pub history: Vec<RolloutRecordView>,
    /// The service's own instances registered and in service behind its load balancer.
    #[serde(default)]
    pub in_service: usize,
    /// What a person must look at now, worst first: nothing in service, capacity under the
    /// minimum, instances of unknown origin on the load balancer, observation failing.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// How much this service needs a person now, for sorting a fleet (the console's list).
    #[serde(default)]
    pub attention: Attention,
}

/// How much a service needs a person, worst first: 4 customers are or may be affected (nothing
/// in service, under capacity, unknown instances, observation failing, one of its alarms in
/// ALARM); 3 traffic is going back, cloud actions fail, or its last rollout was rolled back
/// (until the next one); 2 a rollout waits for a person (canary, test endpoint, paused); 1 a
/// rollout moves by itself; 0 steady.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Attention {
    pub rank: u8,
    /// Why, in words; empty when steady.
    pub reason: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct EnvironmentStatusView {
    pub name: String,
    pub version: String,
    pub config_version: u32,
    pub status: Option<EnvironmentStatus>,
    pub health: Option<Health>,
    pub instances: usize,
    pub healthy_instances: usize,
    pub url: Option<String>,
    pub unused_since: Option<DateTime<Utc>>,
    /// An unused environment kept warm is terminated from then on (once none of its
    /// instances takes traffic): `unused_since` plus the config's `keep_old_for`, or
    /// `keep_failed_for` for a failed release's.
    #[serde(default)]
    pub terminate_after: Option<DateTime<Utc>>,
    pub terminated: bool,
    /// Not created by this log (left alone: never terminated by ionroller).
    #[serde(default)]
    pub foreign: bool,
    /// Its instances as the cloud last showed them.
    #[serde(default)]
    pub instance_ids: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TrafficShare {
    pub environment: String,
    pub version: Option<String>,
    /// 0.0 to 1.0 of in-service registered instances.
    pub share: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RolloutView {
    #[schema(value_type = uuid::Uuid)]
    pub id: RolloutId,
    pub kind: String,
    pub version: String,
    pub from_version: Option<String>,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub stage: String,
    /// 1-based step number, when shifting or pausing.
    pub step: Option<usize>,
    pub step_count: usize,
    pub step_percent: Option<u8>,
    pub paused: bool,
    /// Who paused the rollout, and why (while it is paused).
    #[serde(default)]
    pub paused_by: Option<String>,
    #[serde(default)]
    pub pause_reason: Option<String>,
    pub waiting_for: String,
    /// When the rollout is rolled back for making no progress; none while a person is awaited
    /// or traffic goes back.
    pub deadline_at: Option<DateTime<Utc>>,
    /// A full promote was given: the next step is the last.
    #[serde(default)]
    pub promoted_full: bool,
    pub plan: Option<Plan>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RolloutRecordView {
    #[schema(value_type = uuid::Uuid)]
    pub id: RolloutId,
    pub version: String,
    pub from_version: Option<String>,
    pub requested_by: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    /// `completed`, `rolled_back` or `superseded`.
    pub outcome: String,
    /// Why a rolled-back rollout was rolled back: `alarm`, `aborted`, `deadline_exceeded`,
    /// `environment_failed` or `action_refused` (none for the other outcomes).
    #[serde(default)]
    pub cause: Option<String>,
    pub detail: Option<String>,
}

impl From<&RolloutRecord> for RolloutRecordView {
    fn from(r: &RolloutRecord) -> Self {
        let (outcome, cause, detail) = match &r.outcome {
            Outcome::Completed => ("completed", None, None),
            Outcome::RolledBack { cause } => (
                "rolled_back",
                Some(cause.kind().to_string()),
                Some(cause.summary()),
            ),
            Outcome::Superseded { by } => ("superseded", None, Some(format!("by rollout {by}"))),
        };
        RolloutRecordView {
            id: r.id,
            version: r.version.clone(),
            from_version: r.from_version.clone(),
            requested_by: r.requested_by.clone(),
            started_at: r.started_at,
            ended_at: r.ended_at,
            outcome: outcome.to_string(),
            cause,
            detail,
        }
    }
}

/// `GET /v1/services`: services with a saved config.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ServiceList {
    pub services: Vec<String>,
}

/// One saved config version (`GET .../config`, and each entry of `GET .../configs`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ConfigView {
    pub config_version: u32,
    pub saved_at: DateTime<Utc>,
    pub saved_by: String,
    pub config: ServiceConfig,
}

/// `GET .../configs`: every config version, newest first.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ConfigHistory {
    pub configs: Vec<ConfigView>,
}

/// `PUT .../config`: the version the config was saved as.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ConfigSaved {
    pub service: String,
    pub config_version: u32,
}

/// `GET .../plan`: what releasing `version` with the latest config would do.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PlanView {
    pub service: String,
    pub version: String,
    pub config_version: Option<u32>,
    pub plan: Plan,
}

/// `202` to a release.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ReleaseAccepted {
    #[schema(value_type = Option<uuid::Uuid>)]
    pub rollout_id: Option<RolloutId>,
    pub service: String,
    pub version: String,
    /// `release` (a new rollout), or `attach`: this version's rollout was already under way,
    /// and `rollout_id` is that one.
    #[serde(default)]
    pub action: String,
    /// With `?dry_run=true` (then the answer is 200 and nothing is recorded): what the
    /// command would record, in the audit's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub would_record: Option<Vec<String>>,
}

/// `202` to a command on a rollout (rollback, pause, resume, promote, abort).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CommandAccepted {
    /// The rollout the command started or acted on.
    #[schema(value_type = Option<uuid::Uuid>)]
    pub rollout_id: Option<RolloutId>,
    /// `rollback`, `abort`, `pause`, `resume`, `promote`, or `attach` (the same rollback is
    /// already under way).
    pub action: String,
    /// The version a rollback moves to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// With `?dry_run=true` (then the answer is 200 and nothing is recorded): what the
    /// command would record, in the audit's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub would_record: Option<Vec<String>>,
}

fn in_service(state: &ServiceState) -> usize {
    let own = state.own_instances();
    state
        .registrations
        .iter()
        .filter(|(id, in_service)| **in_service && own.contains(*id))
        .count()
}

fn warnings(state: &ServiceState) -> Vec<String> {
    let mut warnings = Vec::new();
    let Some(config) = state.latest_config().map(|c| &c.config) else {
        return warnings;
    };
    let lb = &config.endpoint.load_balancer.name;
    let serving = in_service(state);
    // Only once something has served: before a first release there is nothing to lose.
    if state.stable.is_some()
        || state
            .history
            .iter()
            .any(|h| h.outcome == Outcome::Completed)
    {
        if serving == 0 {
            warnings.push(format!(
                "NOTHING IN SERVICE: no instance of {} takes traffic behind {lb}",
                state.service
            ));
        } else if serving < config.instances.min as usize && state.rollout.is_none() {
            warnings.push(format!(
                "only {serving} instance(s) in service behind {lb}, under the minimum of {}",
                config.instances.min
            ));
        }
    }
    if !state.unknown_instances.is_empty() {
        warnings.push(format!(
            "{lb} also has instance(s) of no environment of {}: {} (left alone)",
            state.service,
            state
                .unknown_instances
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(error) = &state.observation_error {
        warnings.push(format!("observing the cloud fails: {error}"));
    }
    warnings
}

pub fn service_status(state: &ServiceState, now: DateTime<Utc>) -> ServiceStatus {
    let policy = state.latest_config().map(|c| &c.config.rollout);
    // In the order releases made them (the map is by name).
    let mut in_order: Vec<_> = state.environments.values().collect();
    in_order.sort_by_key(|e| (e.first_revision, e.name.clone()));
    let environments = in_order
        .into_iter()
        .map(|e| {
            let observed = e.observed.as_ref();
            let terminate_after = match (e.unused_since, policy) {
                (Some(since), Some(policy)) if !e.terminated && !e.foreign => {
                    chrono::Duration::from_std(e.kept_for(policy))
                        .ok()
                        .map(|keep| since + keep)
                }
                _ => None,
            };
            EnvironmentStatusView {
                name: e.name.clone(),
                version: e.version.clone(),
                config_version: e.config_version,
                status: observed.map(|v| v.status),
                health: observed.map(|v| v.health),
                instances: observed.map_or(0, |v| v.instances.len()),
                healthy_instances: observed
                    .map_or(0, |v| v.instances.iter().filter(|i| i.healthy).count()),
                url: observed.and_then(|v| v.url.clone()),
                unused_since: e.unused_since,
                terminate_after,
                terminated: e.terminated,
                foreign: e.foreign,
                instance_ids: observed
                    .map(|v| v.instances.iter().map(|i| i.id.clone()).collect())
                    .unwrap_or_default(),
            }
        })
        .collect();
    let traffic = state
        .traffic_shares()
        .into_iter()
        .map(|(environment, share)| TrafficShare {
            version: state
                .environments
                .get(&environment)
                .map(|e| e.version.clone()),
            environment,
            share,
        })
        .collect();
    let rollout = state.rollout.as_ref().map(|r| {
        let plan = r.plan.as_ref();
        let step_count = plan.map_or(0, |p| p.steps.len());
        let step = match &r.stage {
            Stage::Shifting { step } | Stage::StepDone { step, .. } => Some(*step),
            _ => None,
        };
        let from_version = r
            .from
            .as_ref()
            .and_then(|f| state.environments.get(f))
            .map(|e| e.version.clone());
        RolloutView {
            id: r.id,
            kind: match r.kind {
                RolloutKind::Release => "release".into(),
                RolloutKind::Rollback => "rollback".into(),
            },
            version: r.version.clone(),
            from_version,
            requested_by: r.requested_by.clone(),
            requested_at: r.requested_at,
            stage: match &r.stage {
                Stage::Launching => "launching",
                Stage::TestEndpoint => "test_endpoint",
                Stage::Shifting { .. } => "shifting",
                Stage::StepDone { .. } => "step_done",
                Stage::Reverting { .. } => "reverting",
            }
            .to_string(),
            step: step.map(|s| s + 1),
            step_count,
            step_percent: step.and_then(|s| plan.and_then(|p| p.steps.get(s)).map(|s| s.percent)),
            paused: r.paused,
            paused_by: r.paused.then(|| r.paused_by.clone()).flatten(),
            pause_reason: r.paused.then(|| r.pause_reason.clone()).flatten(),
            waiting_for: waiting_for(state, now),
            deadline_at: r.progress_deadline(),
            promoted_full: r.promoted_full,
            plan: r.plan.clone(),
        }
    });
    ServiceStatus {
        service: state.service.clone(),
        config_version: state.latest_config().map(|c| c.version),
        stable_version: state.stable_version().map(str::to_string),
        environments,
        traffic,
        rollout,
        alarms: state.alarms.values().cloned().collect(),
        history: state
            .history
            .iter()
            .rev()
            .map(RolloutRecordView::from)
            .collect(),
        in_service: in_service(state),
        warnings: warnings(state),
        attention: attention(state, now),
    }
}

/// See [`Attention`]: the worst thing about the service now.
pub fn attention(state: &ServiceState, now: DateTime<Utc>) -> Attention {
    let at = |rank: u8, reason: String| Attention { rank, reason };
    if let Some(warning) = warnings(state).into_iter().next() {
        return at(4, warning);
    }
    let watched = state.latest_config().map(|c| &c.config.rollout.alarms);
    let firing = state.alarms.values().find(|a| {
        a.state == AlarmState::Alarm && watched.is_some_and(|names| names.contains(&a.name))
    });
    if let Some(alarm) = firing {
        return at(
            4,
            format!("alarm {} is in ALARM: {}", alarm.name, alarm.reason),
        );
    }
    let failing = state.actions.values().find_map(|record| {
        let latest = state
            .last_action(&record.key)
            .is_some_and(|last| std::ptr::eq(last, record));
        match &record.status {
            ActionStatus::Failed { error, .. } if latest => Some(format!(
                "{} fails (attempt {}): {error}",
                record.action.describe(),
                record.attempt
            )),
            _ => None,
        }
    });
    let Some(rollout) = &state.rollout else {
        let rolled_back = state.history.last().and_then(|last| match &last.outcome {
            Outcome::RolledBack { cause } => Some(format!(
                "the last release, of {}, was rolled back: {}",
                last.version,
                cause.summary()
            )),
            _ => None,
        });
        return match failing.or(rolled_back) {
            Some(why) => at(3, why),
            None => Attention::default(),
        };
    };
    if let Stage::Reverting { cause, .. } = &rollout.stage {
        return at(3, format!("rolling back: {}", cause.summary()));
    }
    if let Some(why) = failing {
        return at(3, why);
    }
    let waiting = format!(
        "{} {}: waiting for {}",
        kind_word(&rollout.kind),
        rollout.version,
        waiting_for(state, now)
    );
    if rollout.waits_for_a_person() && !rollout.promoted {
        return at(2, waiting);
    }
    at(1, waiting)
}

fn kind_word(kind: &RolloutKind) -> &'static str {
    match kind {
        RolloutKind::Release => "release of",
        RolloutKind::Rollback => "rollback to",
    }
}

/// What the current rollout waits for, in words.
fn waiting_for(state: &ServiceState, now: DateTime<Utc>) -> String {
    let Some(r) = &state.rollout else {
        return "nothing".into();
    };
    if r.paused {
        return "resume (paused by request)".into();
    }
    let waits_for_promote = matches!(r.stage, Stage::TestEndpoint) || r.waits_for_a_person();
    if r.promoted && waits_for_promote {
        return "the next step (promoted; it starts at the roller's next pass)".into();
    }
    let target = r.target().and_then(|t| state.environments.get(t));
    match &r.stage {
        Stage::Launching => match target.and_then(|t| t.observed.as_ref()) {
            None => format!("environment {} to be created", r.target().unwrap_or("?")),
            Some(v) => format!(
                "environment {} to become healthy ({:?}, {:?})",
                v.name, v.status, v.health
            ),
        },
        Stage::TestEndpoint => format!(
            "promote: test the new environment at {}",
            target
                .and_then(|t| t.observed.as_ref())
                .and_then(|v| v.url.clone())
                .unwrap_or_else(|| "its own URL".into())
        ),
        Stage::Shifting { step } => {
            let percent = r
                .plan
                .as_ref()
                .and_then(|p| p.steps.get(*step))
                .map_or(100, |s| s.percent);
            format!("load balancer to reach {percent}% on the new environment")
        }
        Stage::StepDone { step, at } => {
            let pause = r
                .plan
                .as_ref()
                .and_then(|p| p.steps.get(*step))
                .and_then(|s| s.pause);
            match pause {
                Some(Pause::UntilPromoted) => {
                    let label = r
                        .plan
                        .as_ref()
                        .map_or("step", |p| p.steps[*step].label.as_str());
                    format!(
                        "promote ({label} at {}%)",
                        r.plan.as_ref().map_or(0, |p| p.steps[*step].percent)
                    )
                }
                Some(Pause::For(d)) => {
                    let left = (d.0.as_secs_f64() - (now - *at).num_milliseconds() as f64 / 1000.0)
                        .max(0.0);
                    format!("pause, {left:.0}s left")
                }
                None => "completion".into(),
            }
        }
        Stage::Reverting { cause, percent } => format!(
            "traffic to return to the previous version{} ({})",
            if *percent > 0 {
                format!(", ramping down through {percent}%")
            } else {
                String::new()
            },
            cause.summary()
        ),
    }
}
