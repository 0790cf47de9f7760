//! A service's state, and `evolve`: the fold of its events into that state.
//!
//! Nothing here reads a clock: an event's time is the `occurred_at` its writer recorded.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ionroller_shared::config::{Pause, RollbackMode, ServiceConfig};
use ionroller_shared::events::{
    Action, ActionId, AlarmView, EnvironmentStatus, EnvironmentView, Health, Plan, RollbackCause,
    RolloutId, ServiceEvent,
};
use ionroller_shared::store::Revision;
use serde::{Deserialize, Serialize};

/// How many finished rollouts a state keeps (for rollback targets and status); trail keeps all.
const HISTORY: usize = 20;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ServiceState {
    pub service: String,
    /// The last event folded in; appends expect exactly this.
    #[serde(skip)]
    pub revision: Option<Revision>,
    /// Shared, so copying a fold (the API copies it once per change) costs a pointer per
    /// config version, not the configs themselves. Serialized as the configs (snapshots).
    pub configs: Vec<Arc<ConfigVersion>>,
    pub environments: BTreeMap<String, Environment>,
    /// Instances registered behind the endpoint's load balancer, and whether each is in service.
    pub registrations: BTreeMap<String, bool>,
    pub alarms: BTreeMap<String, AlarmView>,
    /// The environment that serves all traffic when no rollout is under way.
    pub stable: Option<String>,
    pub rollout: Option<Rollout>,
    pub actions: BTreeMap<ActionId, ActionRecord>,
    pub history: Vec<RolloutRecord>,
    /// The last observation failed with this error (cleared when one succeeds).
    #[serde(default)]
    pub observation_error: Option<String>,
    /// Registered instances last reported as belonging to none of the service's environments
    /// (`unknown-instances-observed`): left alone, and reported again only when they change.
    #[serde(default)]
    pub unknown_instances: std::collections::BTreeSet<String>,
    /// Instances this service's decisions registered that may still be registered: its own
    /// even after their environment replaced or lost them, so that it cleans them up.
    #[serde(default)]
    pub registered_by_us: std::collections::BTreeSet<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConfigVersion {
    pub version: u32,
    pub config: ServiceConfig,
    pub saved_at: DateTime<Utc>,
    pub saved_by: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Environment {
    pub name: String,
    pub version: String,
    pub config_version: u32,
    /// What the cloud last showed, if it has shown it yet.
    pub observed: Option<EnvironmentView>,
    pub unused_since: Option<DateTime<Utc>>,
    pub terminated: bool,
    /// It once served all traffic (a rollout to it completed): only such an environment is
    /// reused as warm. A rolled-back or half-launched one is not a known-good version.
    #[serde(default)]
    pub served: bool,
    /// The target of a rollout that was rolled back: kept only `keep_failed_for`.
    #[serde(default)]
    pub failed: bool,
    /// First seen in the cloud, not planned by this log: another installation's, or one from
    /// before this log began (a new or restored event store). It is observed, and traffic
    /// may move off it, but it is never marked unused or terminated: what ionroller did not
    /// create, it does not delete.
    #[serde(default)]
    pub foreign: bool,
    /// The log revision at which it was first planned or seen: the order releases made them.
    #[serde(default)]
    pub first_revision: u64,
}

impl Environment {
    /// How long it stays warm once unused: `keep_failed_for` for a failed release's
    /// environment, `keep_old_for` for any other. `decide` terminates it after that; the
    /// status view says when.
    pub fn kept_for(
        &self,
        policy: &ionroller_shared::config::RolloutPolicy,
    ) -> std::time::Duration {
        if self.failed {
            policy.keep_failed()
        } else {
            policy.keep_old_for.0
        }
    }

    /// Ready, Green, and at least one instance, all healthy: fit to take traffic.
    pub fn is_healthy(&self) -> bool {
        self.observed.as_ref().is_some_and(|v| {
            v.status == EnvironmentStatus::Ready
                && v.health == Health::Green
                && !v.instances.is_empty()
                && v.instances.iter().all(|i| i.healthy)
        })
    }

    /// Instance ids, sorted, that may take traffic: each one healthy, in an environment that is
    /// Ready and Green or Yellow. Per instance rather than all or nothing, so that one sick
    /// instance (or EB turning Yellow) mid-rollout keeps the healthy ones' traffic where it is
    /// instead of sending the step back and forth; a step still completes only once the whole
    /// environment [`is_healthy`](Self::is_healthy).
    pub fn healthy_instances(&self) -> Vec<String> {
        let Some(view) = &self.observed else {
            return Vec::new();
        };
        if view.status != EnvironmentStatus::Ready
            || !matches!(view.health, Health::Green | Health::Yellow)
        {
            return Vec::new();
        }
        let mut ids: Vec<String> = view
            .instances
            .iter()
            .filter(|i| i.healthy)
            .map(|i| i.id.clone())
            .collect();
        ids.sort();
        ids
    }

    pub fn instance_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .observed
            .iter()
            .flat_map(|v| v.instances.iter().map(|i| i.id.clone()))
            .collect();
        ids.sort();
        ids
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutKind {
    Release,
    Rollback,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Rollout {
    pub id: RolloutId,
    pub kind: RolloutKind,
    pub version: String,
    pub config_version: u32,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub reason: Option<String>,
    pub override_alarms: bool,
    /// Filled by `plan-computed`, appended with the request.
    pub plan: Option<Plan>,
    /// The environment serving traffic when the rollout began.
    pub from: Option<String>,
    pub stage: Stage,
    pub stage_since: DateTime<Utc>,
    pub paused: bool,
    /// When the current pause began; on resume the stage's clock moves on by its length.
    #[serde(default)]
    pub paused_since: Option<DateTime<Utc>>,
    /// Who paused it, and why (while paused).
    #[serde(default)]
    pub paused_by: Option<String>,
    #[serde(default)]
    pub pause_reason: Option<String>,
    /// A promote arrived for the current wait.
    pub promoted: bool,
    /// The roller recorded that the current stage waits for a promote (`waiting-for-promote`).
    #[serde(default)]
    pub awaiting_promote: bool,
    /// A full promote arrived: the next step started is the last (100%).
    #[serde(default)]
    pub promoted_full: bool,
}

impl Rollout {
    pub fn target(&self) -> Option<&str> {
        self.plan.as_ref().map(|p| p.environment.as_str())
    }

    /// Whether progress waits on a person (so the progress deadline does not run).
    pub fn waits_for_a_person(&self) -> bool {
        self.paused
            || match &self.stage {
                Stage::TestEndpoint => true,
                Stage::StepDone { step, .. } => self
                    .plan
                    .as_ref()
                    .and_then(|p| p.steps.get(*step))
                    .is_some_and(|s| s.pause == Some(Pause::UntilPromoted)),
                _ => false,
            }
    }

    /// When the rollout is rolled back for making no progress: the progress deadline after
    /// the stage began (a timed pause is waiting by design, so after it ends). None while it
    /// waits for a person or rolls back, when no deadline runs.
    pub fn progress_deadline(&self) -> Option<DateTime<Utc>> {
        let plan = self.plan.as_ref()?;
        if self.waits_for_a_person() || matches!(self.stage, Stage::Reverting { .. }) {
            return None;
        }
        let clock_start = match &self.stage {
            Stage::StepDone { step, at } => match plan.steps.get(*step).and_then(|s| s.pause) {
                Some(Pause::For(d)) => *at + chrono::Duration::from_std(d.0).unwrap_or_default(),
                _ => self.stage_since,
            },
            _ => self.stage_since,
        };
        // A deadline too far out to represent is one that never comes.
        let deadline = chrono::Duration::from_std(plan.progress_deadline.0).ok()?;
        clock_start.checked_add_signed(deadline)
    }
}

struct NewRollout {
    id: RolloutId,
    kind: RolloutKind,
    version: String,
    reason: Option<String>,
    override_alarms: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Stage {
    /// The new environment is being created and becoming healthy.
    Launching,
    /// Healthy at its own URL, waiting for a promote before customer traffic.
    TestEndpoint,
    /// Traffic is moving to the step's share.
    Shifting { step: usize },
    /// The step's share is reached; pausing before the next.
    StepDone { step: usize, at: DateTime<Utc> },
    /// Traffic is moving back to the previous environment; `percent` is what the new one
    /// keeps at this point (0, or the next lower step of a ramped rollback).
    Reverting { cause: RollbackCause, percent: u8 },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ActionRecord {
    pub action: Action,
    /// Identifies "the same action" across retries: kind and target.
    pub key: String,
    pub attempt: u32,
    pub status: ActionStatus,
    pub intended_at: DateTime<Utc>,
    pub rollout_id: Option<RolloutId>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ActionStatus {
    Pending,
    Succeeded,
    Failed {
        error: String,
        at: DateTime<Utc>,
        /// Unavailable or throttled (true), or refused (false); see `retry_backoff`.
        #[serde(default = "ionroller_shared::events::retryable_by_default")]
        retryable: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutRecord {
    pub id: RolloutId,
    pub version: String,
    pub from_version: Option<String>,
    pub environment: Option<String>,
    pub requested_by: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Completed,
    RolledBack { cause: RollbackCause },
    Superseded { by: RolloutId },
}

/// The identifying key of an action: retries of one intention share it.
pub fn action_key(action: &Action) -> String {
    match action {
        Action::CreateEnvironment { environment, .. } => format!("create:{environment}"),
        Action::RegisterInstances { instances, .. } => format!("register:{}", instances.join(",")),
        Action::DeregisterInstances { instances, .. } => {
            format!("deregister:{}", instances.join(","))
        }
        Action::TerminateEnvironment { environment } => format!("terminate:{environment}"),
    }
}

impl ServiceState {
    pub fn new(service: impl Into<String>) -> Self {
        ServiceState {
            service: service.into(),
            ..ServiceState::default()
        }
    }

    pub fn latest_config(&self) -> Option<&ConfigVersion> {
        self.configs.last().map(Arc::as_ref)
    }

    pub fn config(&self, version: u32) -> Option<&ConfigVersion> {
        self.configs
            .iter()
            .find(|c| c.version == version)
            .map(Arc::as_ref)
    }

    /// The version serving all traffic, if a rollout has ever completed.
    pub fn stable_version(&self) -> Option<&str> {
        let env = self.environments.get(self.stable.as_deref()?)?;
        Some(env.version.as_str())
    }

    /// A live (not terminated) environment running `version` with `config_version`.
    /// A live environment of `version` and `config_version` that served all traffic before,
    /// is not the target of the rollout in progress, and is not being terminated.
    pub fn warm_environment(&self, version: &str, config_version: u32) -> Option<&Environment> {
        let current_target = self.rollout.as_ref().and_then(|r| r.target());
        self.environments.values().find(|e| {
            e.version == version
                && e.config_version == config_version
                && e.served
                && !e.terminated
                && Some(e.name.as_str()) != current_target
                && self
                    .last_action(&format!("terminate:{}", e.name))
                    .is_none_or(|r| matches!(r.status, ActionStatus::Failed { .. }))
                && e.observed
                    .as_ref()
                    .is_some_and(|v| v.status != EnvironmentStatus::Terminated)
        })
    }

    pub fn pending_actions(&self) -> impl Iterator<Item = (&ActionId, &ActionRecord)> {
        self.actions
            .iter()
            .filter(|(_, r)| r.status == ActionStatus::Pending)
    }

    /// The latest record of an action with this key.
    pub fn last_action(&self, key: &str) -> Option<&ActionRecord> {
        self.actions
            .values()
            .filter(|r| r.key == key)
            .max_by_key(|r| (r.intended_at, r.attempt))
    }

    /// Every instance of the service's own environments, and those it registered itself: the
    /// only ones its decisions may register or deregister.
    pub fn own_instances(&self) -> std::collections::BTreeSet<String> {
        self.environments
            .values()
            .flat_map(Environment::instance_ids)
            .chain(self.registered_by_us.iter().cloned())
            .collect()
    }

    /// Registered instances that belong to none of the service's environments.
    pub fn registered_unknown(&self) -> std::collections::BTreeSet<String> {
        let own = self.own_instances();
        self.registrations
            .keys()
            .filter(|i| !own.contains(*i))
            .cloned()
            .collect()
    }

    /// Traffic share per environment (by registered, in-service instances).
    pub fn traffic_shares(&self) -> BTreeMap<String, f64> {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut total = 0;
        for (instance, in_service) in &self.registrations {
            if !in_service {
                continue;
            }
            total += 1;
            let owner = self
                .environments
                .values()
                .find(|e| e.instance_ids().contains(instance))
                .map_or_else(|| "(unknown)".to_string(), |e| e.name.clone());
            *counts.entry(owner).or_default() += 1;
        }
        counts
            .into_iter()
            .map(|(env, n)| (env, n as f64 / total.max(1) as f64))
            .collect()
    }

    /// The environment (other than `except`) with the most in-service registered instances.
    /// `decide` treats it as the previous environment when nothing is stable yet (a first
    /// release superseded after it took traffic), so its capacity is drained like any old
    /// environment's rather than dropped.
    pub fn serving_environment(&self, except: Option<&str>) -> Option<String> {
        self.environments
            .values()
            .filter(|e| !e.terminated && Some(e.name.as_str()) != except)
            .map(|e| {
                let ids = e.instance_ids();
                let n = ids
                    .iter()
                    .filter(|i| self.registrations.get(*i) == Some(&true))
                    .count();
                (n, e.name.clone())
            })
            .filter(|(n, _)| *n > 0)
            .max()
            .map(|(_, name)| name)
    }

    fn finish_rollout(&mut self, at: DateTime<Utc>, outcome: Outcome) {
        let Some(rollout) = self.rollout.take() else {
            return;
        };
        let from_version = rollout
            .from
            .as_ref()
            .and_then(|f| self.environments.get(f))
            .map(|e| e.version.clone());
        let target = rollout.target().map(str::to_string);
        match &outcome {
            Outcome::Completed => {
                if let Some(from) = &rollout.from {
                    if Some(from) != target.as_ref() {
                        self.mark_unused(from, at);
                    }
                }
                if let Some(t) = &target {
                    if let Some(env) = self.environments.get_mut(t) {
                        env.unused_since = None;
                        env.served = true;
                    }
                }
                self.stable = target.clone();
            }
            Outcome::RolledBack { .. } | Outcome::Superseded { .. } => {
                if let Some(t) = &target {
                    if self.stable.as_ref() != Some(t) {
                        self.mark_unused(t, at);
                        if let (Outcome::RolledBack { .. }, Some(env)) =
                            (&outcome, self.environments.get_mut(t))
                        {
                            env.failed = !env.served;
                        }
                    }
                }
            }
        }
        self.history.push(RolloutRecord {
            id: rollout.id,
            version: rollout.version,
            from_version,
            environment: target,
            requested_by: rollout.requested_by,
            started_at: rollout.requested_at,
            ended_at: at,
            outcome,
        });
        if self.history.len() > HISTORY {
            self.history.remove(0);
        }
        // Outcomes of finished rollouts' actions are history too; keep the map small.
        self.actions
            .retain(|_, r| r.status == ActionStatus::Pending);
    }

    /// Forgets terminated environments nothing refers to, so a long-lived service's state
    /// stays the size of what runs, not of its history (trail keeps the history).
    fn prune_terminated(&mut self) {
        let keep: Vec<String> = [
            self.stable.clone(),
            self.rollout.as_ref().and_then(|r| r.from.clone()),
            self.rollout
                .as_ref()
                .and_then(|r| r.target().map(str::to_string)),
        ]
        .into_iter()
        .flatten()
        .collect();
        self.environments
            .retain(|name, e| !e.terminated || keep.contains(name));
    }

    fn mark_unused(&mut self, env: &str, at: DateTime<Utc>) {
        if let Some(e) = self.environments.get_mut(env) {
            if e.unused_since.is_none() {
                e.unused_since = Some(at);
            }
        }
    }

    fn start_rollout(&mut self, request: NewRollout, at: DateTime<Utc>, actor: &str) {
        let Some(config_version) = self.latest_config().map(|c| c.version) else {
            return;
        };
        self.rollout = Some(Rollout {
            id: request.id,
            kind: request.kind,
            version: request.version,
            config_version,
            requested_by: actor.to_string(),
            requested_at: at,
            reason: request.reason,
            override_alarms: request.override_alarms,
            plan: None,
            from: self.stable.clone(),
            stage: Stage::Launching,
            stage_since: at,
            paused: false,
            paused_since: None,
            paused_by: None,
            pause_reason: None,
            promoted: false,
            awaiting_promote: false,
            promoted_full: false,
        });
    }

    /// Immediate rollbacks drop the new environment's share to 0 at once; ramped ones step
    /// down through the plan's lower steps first.
    fn start_reverting(&mut self, cause: RollbackCause, at: DateTime<Utc>) {
        let Some(r) = self.rollout.as_ref() else {
            return;
        };
        let ramp = self
            .config(r.config_version)
            .is_some_and(|c| c.config.rollout.rollback == RollbackMode::Ramp);
        let current = match r.stage {
            Stage::Shifting { step } | Stage::StepDone { step, .. } => Some(step),
            _ => None,
        };
        let percent = match (ramp, current, r.plan.as_ref()) {
            (true, Some(step), Some(plan)) if step > 0 => plan.steps[step - 1].percent,
            _ => 0,
        };
        self.set_stage(Stage::Reverting { cause, percent }, at);
    }

    fn set_stage(&mut self, stage: Stage, at: DateTime<Utc>) {
        if let Some(r) = self.rollout.as_mut() {
            r.stage = stage;
            r.stage_since = at;
            r.promoted = false;
            r.awaiting_promote = false;
        }
    }
}

/// Folds one event into the state. `at` is the event's `occurred_at`, `actor` its writer.
pub fn evolve(
    state: &mut ServiceState,
    event: &ServiceEvent,
    revision: Revision,
    at: DateTime<Utc>,
    actor: &str,
) {
    state.revision = Some(revision);
    let current =
        |state: &ServiceState, id: &RolloutId| state.rollout.as_ref().is_some_and(|r| r.id == *id);
    match event {
        ServiceEvent::ConfigSaved {
            config_version,
            config,
        } => state.configs.push(Arc::new(ConfigVersion {
            version: *config_version,
            config: (**config).clone(),
            saved_at: at,
            saved_by: actor.to_string(),
        })),
        ServiceEvent::ReleaseRequested {
            rollout_id,
            version,
            reason,
            override_alarms,
        } => state.start_rollout(
            NewRollout {
                id: *rollout_id,
                kind: RolloutKind::Release,
                version: version.clone(),
                reason: reason.clone(),
                override_alarms: *override_alarms,
            },
            at,
            actor,
        ),
        ServiceEvent::RollbackRequested {
            rollout_id,
            to_version,
            reason,
        } => state.start_rollout(
            NewRollout {
                id: *rollout_id,
                kind: RolloutKind::Rollback,
                version: to_version.clone(),
                reason: reason.clone(),
                // Often the firing alarm is why one rolls back; only new alarms count.
                override_alarms: true,
            },
            at,
            actor,
        ),
        ServiceEvent::PlanComputed { rollout_id, plan } => {
            if current(state, rollout_id) {
                let env = plan.environment.clone();
                if let Some(r) = state.rollout.as_mut() {
                    r.plan = Some(plan.clone());
                    let (version, config_version) = (r.version.clone(), r.config_version);
                    let e = state
                        .environments
                        .entry(env.clone())
                        .or_insert_with(|| Environment {
                            name: env,
                            version,
                            config_version,
                            observed: None,
                            unused_since: None,
                            terminated: false,
                            served: false,
                            failed: false,
                            foreign: false,
                            first_revision: revision.0,
                        });
                    e.unused_since = None;
                    e.foreign = false;
                    e.failed = false;
                }
            }
        }
        ServiceEvent::PauseRequested { reason } => {
            if let Some(r) = state.rollout.as_mut() {
                if !r.paused {
                    r.paused = true;
                    r.paused_since = Some(at);
                    r.paused_by = Some(actor.to_string());
                    r.pause_reason = reason.clone();
                }
            }
        }
        ServiceEvent::ResumeRequested { .. } => {
            if let Some(r) = state.rollout.as_mut() {
                r.paused = false;
                r.paused_by = None;
                r.pause_reason = None;
                // Time spent paused does not count against the progress deadline.
                if let Some(since) = r.paused_since.take() {
                    r.stage_since += at - since;
                }
            }
        }
        ServiceEvent::PromoteRequested { full, .. } => {
            if let Some(r) = state.rollout.as_mut() {
                r.promoted = true;
                r.promoted_full |= *full;
            }
        }
        ServiceEvent::AbortRequested { reason } => {
            let cause = RollbackCause::Aborted {
                by: actor.to_string(),
                reason: reason.clone(),
            };
            if state
                .rollout
                .as_ref()
                .is_some_and(|r| !matches!(r.stage, Stage::Reverting { .. }))
            {
                state.start_reverting(cause, at);
                if let Some(r) = state.rollout.as_mut() {
                    r.paused = false;
                }
            }
        }
        ServiceEvent::ActionIntended {
            action_id,
            attempt,
            action,
            ..
        } => {
            if let Action::RegisterInstances { instances, .. } = action {
                state.registered_by_us.extend(instances.iter().cloned());
            }
            state.actions.insert(
                *action_id,
                ActionRecord {
                    action: action.clone(),
                    key: action_key(action),
                    attempt: *attempt,
                    status: ActionStatus::Pending,
                    intended_at: at,
                    rollout_id: state.rollout.as_ref().map(|r| r.id),
                },
            );
        }
        ServiceEvent::ActionSucceeded { action_id, .. } => {
            if let Some(r) = state.actions.get_mut(action_id) {
                r.status = ActionStatus::Succeeded;
            }
        }
        ServiceEvent::ActionFailed {
            action_id,
            error,
            retryable,
            ..
        } => {
            if let Some(r) = state.actions.get_mut(action_id) {
                r.status = ActionStatus::Failed {
                    error: error.clone(),
                    at,
                    retryable: *retryable,
                };
            }
        }
        ServiceEvent::ObservationFailed { error } => {
            state.observation_error = Some(error.clone());
        }
        ServiceEvent::ObservationRecovered {} => state.observation_error = None,
        ServiceEvent::EnvironmentObserved { environment } => {
            let e = state
                .environments
                .entry(environment.name.clone())
                .or_insert_with(|| Environment {
                    name: environment.name.clone(),
                    version: environment.version.clone(),
                    config_version: environment.config_version,
                    observed: None,
                    unused_since: None,
                    terminated: false,
                    served: false,
                    failed: false,
                    // Every environment this log creates is planned before it can be seen.
                    foreign: true,
                    first_revision: revision.0,
                });
            if environment.status == EnvironmentStatus::Terminated {
                e.terminated = true;
            }
            e.observed = Some(environment.clone());
        }
        ServiceEvent::RegistrationsObserved { instances, .. } => {
            state.registrations = instances
                .iter()
                .map(|i| (i.id.clone(), i.in_service))
                .collect();
            // Gone from the load balancer, and no registration of it waiting to run.
            let pending: std::collections::BTreeSet<String> = state
                .pending_actions()
                .flat_map(|(_, r)| match &r.action {
                    Action::RegisterInstances { instances, .. } => instances.clone(),
                    _ => Vec::new(),
                })
                .collect();
            let ServiceState {
                registrations,
                registered_by_us,
                ..
            } = state;
            registered_by_us.retain(|i| registrations.contains_key(i) || pending.contains(i));
        }
        ServiceEvent::AlarmObserved { alarm } => {
            state.alarms.insert(alarm.name.clone(), alarm.clone());
        }
        ServiceEvent::TestEndpointReady { rollout_id, .. } => {
            if current(state, rollout_id) {
                state.set_stage(Stage::TestEndpoint, at);
            }
        }
        ServiceEvent::StepStarted {
            rollout_id, step, ..
        } => {
            if current(state, rollout_id) {
                state.set_stage(Stage::Shifting { step: *step }, at);
            }
        }
        ServiceEvent::StepCompleted { rollout_id, step } => {
            if current(state, rollout_id) {
                state.set_stage(Stage::StepDone { step: *step, at }, at);
            }
        }
        ServiceEvent::WaitingForPromote { rollout_id, .. } => {
            if current(state, rollout_id) {
                if let Some(r) = state.rollout.as_mut() {
                    r.awaiting_promote = true;
                }
            }
        }
        ServiceEvent::RolloutCompleted { rollout_id } => {
            if current(state, rollout_id) {
                state.finish_rollout(at, Outcome::Completed);
            }
        }
        ServiceEvent::RollbackStarted { rollout_id, cause } => {
            if current(state, rollout_id) {
                state.start_reverting(cause.clone(), at);
            }
        }
        ServiceEvent::RollbackStepStarted {
            rollout_id,
            percent,
        } => {
            if current(state, rollout_id) {
                if let Some(Stage::Reverting { percent: p, .. }) =
                    state.rollout.as_mut().map(|r| &mut r.stage)
                {
                    *p = *percent;
                }
            }
        }
        ServiceEvent::RolledBack { rollout_id, cause } => {
            if current(state, rollout_id) {
                state.finish_rollout(
                    at,
                    Outcome::RolledBack {
                        cause: cause.clone(),
                    },
                );
            }
        }
        ServiceEvent::RolloutSuperseded { rollout_id, by } => {
            if current(state, rollout_id) {
                state.finish_rollout(at, Outcome::Superseded { by: *by });
            }
        }
        ServiceEvent::EnvironmentMarkedUnused { environment } => state.mark_unused(environment, at),
        ServiceEvent::EnvironmentTerminated { environment } => {
            if let Some(e) = state.environments.get_mut(environment) {
                e.terminated = true;
            }
            // A terminated stable environment stays `stable` (and known): decide repairs it.
            state.prune_terminated();
        }
        ServiceEvent::DriftDetected { .. } => {}
        ServiceEvent::UnknownInstancesObserved { instances, .. } => {
            state.unknown_instances = instances.iter().cloned().collect();
        }
        // On the `load-balancers` stream, folded by `claims::Claims`, never a service's.
        ServiceEvent::LoadBalancerClaimed { .. } | ServiceEvent::LoadBalancerReleased { .. } => {}
        // On the `tokens` and `access` streams, folded by `ionroller_auth`, never a service's.
        ServiceEvent::TokenCreated { .. }
        | ServiceEvent::TokenRevoked { .. }
        | ServiceEvent::AccessDenied { .. } => {}
    }
}

/// Folds a stored event; events of types this build does not know only advance the revision.
pub fn apply_recorded(
    state: &mut ServiceState,
    event: &ionroller_shared::store::RecordedEvent,
) -> Result<(), String> {
    match ServiceEvent::from_recorded(event)? {
        Some(decoded) => evolve(
            state,
            &decoded,
            event.revision,
            event.metadata.occurred_at,
            &event.metadata.actor,
        ),
        None => state.revision = Some(event.revision),
    }
    Ok(())
}
