//! The roller's event schema, version 1. Trail reads the same types.
//!
//! Each service has one stream, `service:{name}`, holding everything about it in order:
//! commands (config saved, release requested, ...), decisions (step started, action intended,
//! ...), action outcomes, and observed cloud changes. One stream per service means one
//! expected-revision check serialises every writer of that service.
//!
//! Stored event types are the kebab-case names below (`release-requested`), never Rust paths.
//! Readers tolerate unknown fields; an unknown *type* decodes to `None` so that an older roller
//! skips what a newer one wrote (trail keeps such events as they are).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::{HumanDuration, Pause, ServiceConfig};
use crate::store::{EventId, EventMetadata, NewEvent, RecordedEvent, StoreError, StreamId};

pub const SCHEMA_VERSION: u32 = 1;
pub const SERVICE_STREAM_PREFIX: &str = "service:";

/// The stream that records which service owns which load balancer. One stream for all of
/// them, so that two services claiming one load balancer at once are serialised by its
/// expected-revision check.
pub const LOAD_BALANCER_CLAIMS_STREAM: &str = "load-balancers";

pub fn load_balancer_claims_stream() -> Result<StreamId, StoreError> {
    StreamId::new(LOAD_BALANCER_CLAIMS_STREAM)
}

/// The stream of API tokens: created and revoked. Every replica of the roller and trail folds
/// it, so a revocation holds everywhere as soon as it is appended.
pub const TOKENS_STREAM: &str = "tokens";

/// The stream of refused requests by known identities (rate-limited by the writer).
pub const ACCESS_STREAM: &str = "access";

pub fn tokens_stream() -> Result<StreamId, StoreError> {
    StreamId::new(TOKENS_STREAM)
}

pub fn access_stream() -> Result<StreamId, StoreError> {
    StreamId::new(ACCESS_STREAM)
}

pub fn service_stream(service: &str) -> Result<StreamId, StoreError> {
    StreamId::new(format!("{SERVICE_STREAM_PREFIX}{service}"))
}

/// The service a stream belongs to, if it is a service stream.
pub fn service_of(stream: &StreamId) -> Option<&str> {
    stream.as_str().strip_prefix(SERVICE_STREAM_PREFIX)
}

pub type RolloutId = Uuid;
pub type ActionId = Uuid;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
pub enum ServiceEvent {
    ConfigSaved {
        config_version: u32,
        config: Box<ServiceConfig>,
    },
    ReleaseRequested {
        rollout_id: RolloutId,
        version: String,
        #[serde(default)]
        reason: Option<String>,
        /// Release even though a configured alarm is firing (audited: the actor is recorded).
        #[serde(default)]
        override_alarms: bool,
    },
    /// Release the previous version again; fast while its environment is still warm.
    RollbackRequested {
        rollout_id: RolloutId,
        to_version: String,
        #[serde(default)]
        reason: Option<String>,
    },
    PauseRequested {
        #[serde(default)]
        reason: Option<String>,
    },
    ResumeRequested {
        #[serde(default)]
        reason: Option<String>,
    },
    /// Ends the current wait (canary, test endpoint). `full` also skips every step left: the
    /// next shift goes to 100% (Argo Rollouts' `promote --full`), alarms still watching.
    PromoteRequested {
        #[serde(default)]
        full: bool,
        #[serde(default)]
        reason: Option<String>,
    },
    AbortRequested {
        #[serde(default)]
        reason: Option<String>,
    },
    PlanComputed {
        rollout_id: RolloutId,
        plan: Plan,
    },
    ActionIntended {
        action_id: ActionId,
        attempt: u32,
        action: Action,
        /// The replica lease it was recorded under, when roller replicas share the log: which
        /// replica intended it, at which epoch of the service's shard. Absent from a lone
        /// roller's intents and from every intent recorded before replicas existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lease: Option<crate::store::lease::Fence>,
    },
    ActionSucceeded {
        action_id: ActionId,
        attempt: u32,
        #[serde(default)]
        detail: String,
    },
    ActionFailed {
        action_id: ActionId,
        attempt: u32,
        error: String,
        /// False when the cloud refused the call (a permission, a quota, a bad value) rather
        /// than being unavailable or throttling: retried too, but seldom.
        #[serde(default = "retryable_by_default")]
        retryable: bool,
    },
    /// The cloud could not be observed (the error names the call and the AWS error code).
    /// Recorded when it starts failing or the error changes, not on every pass.
    ObservationFailed {
        error: String,
    },
    /// Observation works again after `observation-failed`.
    ObservationRecovered {},
    EnvironmentObserved {
        environment: EnvironmentView,
    },
    RegistrationsObserved {
        load_balancer: String,
        instances: Vec<RegisteredInstance>,
    },
    AlarmObserved {
        alarm: AlarmView,
    },
    TestEndpointReady {
        rollout_id: RolloutId,
        url: Option<String>,
    },
    StepStarted {
        rollout_id: RolloutId,
        step: usize,
        percent: u8,
    },
    StepCompleted {
        rollout_id: RolloutId,
        step: usize,
    },
    /// The rollout holds after `step` (0-based) until a person promotes it: recorded once, when
    /// the roller decides to wait, so that what is told ("waiting for you") is what the roller
    /// does, not what the plan said it might (a pause after a step that moved nothing, or one
    /// promoted in advance, is never waited for).
    WaitingForPromote {
        rollout_id: RolloutId,
        step: usize,
    },
    RolloutCompleted {
        rollout_id: RolloutId,
    },
    /// Traffic starts moving back to the previous environment, and why.
    RollbackStarted {
        rollout_id: RolloutId,
        cause: RollbackCause,
    },
    /// A ramped rollback moves down to the next lower traffic step (`rollback: "ramp"`).
    RollbackStepStarted {
        rollout_id: RolloutId,
        percent: u8,
    },
    /// Traffic is back on the previous environment (or off the new one, for a first release).
    RolledBack {
        rollout_id: RolloutId,
        cause: RollbackCause,
    },
    RolloutSuperseded {
        rollout_id: RolloutId,
        by: RolloutId,
    },
    EnvironmentMarkedUnused {
        environment: String,
    },
    EnvironmentTerminated {
        environment: String,
    },
    DriftDetected {
        description: String,
    },
    /// Instances registered on the service's load balancer that belong to none of its
    /// environments (another service's, or someone's by hand). They are left alone: what the
    /// roller did not register it does not deregister. Recorded when the set changes; empty
    /// when none are left.
    UnknownInstancesObserved {
        load_balancer: String,
        instances: Vec<String>,
    },
    /// On the `load-balancers` stream: `service` now owns the load balancer `load_balancer`
    /// (a [`crate::config::LoadBalancerConfig::claim_key`]); no other service may name it.
    LoadBalancerClaimed {
        load_balancer: String,
        service: String,
    },
    /// On the `load-balancers` stream: `service`'s config no longer names `load_balancer`.
    LoadBalancerReleased {
        load_balancer: String,
        service: String,
    },
    /// On the `tokens` stream: an API token. Only the SHA-256 of its secret is kept; the
    /// secret itself was shown once, to its creator. `role` and `services` are kept as text so
    /// that a token written by a newer build still decodes (a role this build does not know
    /// grants nothing).
    TokenCreated {
        token_id: Uuid,
        name: String,
        role: String,
        #[serde(default)]
        services: Vec<String>,
        #[serde(default)]
        expires_at: Option<DateTime<Utc>>,
        secret_sha256: String,
    },
    /// On the `tokens` stream: the token is refused from now on.
    TokenRevoked {
        token_id: Uuid,
        name: String,
    },
    /// On the `access` stream: a known identity asked for something it may not do. `repeats`
    /// counts the further refusals of the same identity that were not recorded one by one
    /// (the writer records at most one a minute per identity, so the log cannot be flooded).
    AccessDenied {
        identity: String,
        request: String,
        needed: String,
        #[serde(default)]
        repeats: u64,
    },
}

/// Failures recorded before `retryable` existed were all retried alike.
pub fn retryable_by_default() -> bool {
    true
}

/// Names each variant's stored type once. `event_type`'s `match` is exhaustive, so a new
/// variant does not compile until it is named here; `TYPES`, which `decode` uses to tell a type
/// this build does not know (skipped) from bad data (poison), is built from the same list and
/// so cannot miss one. The names must equal serde's (`rename_all = "kebab-case"`): the round
/// trip test checks every variant.
macro_rules! stored_types {
    ($($variant:ident => $name:literal,)*) => {
        impl ServiceEvent {
            /// Every stored type name this build knows.
            pub const TYPES: &'static [&'static str] = &[$($name),*];

            /// The stored type name of this event (`release-requested`).
            pub fn event_type(&self) -> &'static str {
                match self {
                    $(ServiceEvent::$variant { .. } => $name,)*
                }
            }
        }
    };
}

stored_types! {
    ConfigSaved => "config-saved",
    ReleaseRequested => "release-requested",
    RollbackRequested => "rollback-requested",
    PauseRequested => "pause-requested",
    ResumeRequested => "resume-requested",
    PromoteRequested => "promote-requested",
    AbortRequested => "abort-requested",
    PlanComputed => "plan-computed",
    ActionIntended => "action-intended",
    ActionSucceeded => "action-succeeded",
    ActionFailed => "action-failed",
    ObservationFailed => "observation-failed",
    ObservationRecovered => "observation-recovered",
    EnvironmentObserved => "environment-observed",
    RegistrationsObserved => "registrations-observed",
    AlarmObserved => "alarm-observed",
    TestEndpointReady => "test-endpoint-ready",
    StepStarted => "step-started",
    StepCompleted => "step-completed",
    WaitingForPromote => "waiting-for-promote",
    RolloutCompleted => "rollout-completed",
    RollbackStarted => "rollback-started",
    RollbackStepStarted => "rollback-step-started",
    RolledBack => "rolled-back",
    RolloutSuperseded => "rollout-superseded",
    EnvironmentMarkedUnused => "environment-marked-unused",
    EnvironmentTerminated => "environment-terminated",
    DriftDetected => "drift-detected",
    UnknownInstancesObserved => "unknown-instances-observed",
    LoadBalancerClaimed => "load-balancer-claimed",
    LoadBalancerReleased => "load-balancer-released",
    TokenCreated => "token-created",
    TokenRevoked => "token-revoked",
    AccessDenied => "access-denied",
}

impl ServiceEvent {
    /// Splits the event into its stored type name and JSON data.
    pub fn encode(&self) -> (String, serde_json::Value) {
        let value = serde_json::to_value(self).unwrap_or_default();
        let data = value
            .get("data")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        (self.event_type().to_string(), data)
    }

    /// `Ok(None)` for a type this build does not know; `Err` when a known type's data is bad.
    pub fn decode(event_type: &str, data: &serde_json::Value) -> Result<Option<Self>, String> {
        if !Self::TYPES.contains(&event_type) {
            return Ok(None);
        }
        // Deserialize straight from the borrowed data: folding long streams is decode-bound,
        // and building `{"type", "data"}` would copy every event's data first.
        use serde::de::value::MapDeserializer;
        use serde::Deserialize as _;
        let type_value = serde_json::Value::String(event_type.to_string());
        let fields = [("type", &type_value), ("data", data)];
        let map = MapDeserializer::<_, serde_json::Error>::new(fields.into_iter());
        ServiceEvent::deserialize(map)
            .map(Some)
            .map_err(|e| format!("{event_type}: {e}"))
    }

    pub fn from_recorded(event: &RecordedEvent) -> Result<Option<Self>, String> {
        Self::decode(&event.event_type, &event.data)
    }

    pub fn to_new_event(&self, id: EventId, metadata: EventMetadata) -> NewEvent {
        let (event_type, data) = self.encode();
        NewEvent {
            id,
            event_type,
            schema_version: SCHEMA_VERSION,
            data,
            metadata,
        }
    }

    /// The rollout an event belongs to, if any.
    pub fn rollout_id(&self) -> Option<RolloutId> {
        use ServiceEvent::*;
        match self {
            ReleaseRequested { rollout_id, .. }
            | RollbackRequested { rollout_id, .. }
            | PlanComputed { rollout_id, .. }
            | TestEndpointReady { rollout_id, .. }
            | StepStarted { rollout_id, .. }
            | StepCompleted { rollout_id, .. }
            | WaitingForPromote { rollout_id, .. }
            | RolloutCompleted { rollout_id }
            | RollbackStarted { rollout_id, .. }
            | RollbackStepStarted { rollout_id, .. }
            | RolledBack { rollout_id, .. }
            | RolloutSuperseded { rollout_id, .. } => Some(*rollout_id),
            _ => None,
        }
    }
}

/// What a release will do, computed by the pure core before it starts.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The environment the rollout moves traffic to (new, or warm and reused).
    pub environment: String,
    /// A warm environment of this version exists: no launch, one switch.
    pub reuses_warm_environment: bool,
    pub test_endpoint: bool,
    pub steps: Vec<PlanStep>,
    /// Launch, steps and timed pauses at their worst (each stage up to the progress deadline);
    /// `None` when a pause waits for a person.
    pub worst_case_secs: Option<u64>,
    pub progress_deadline: HumanDuration,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanStep {
    /// `canary` or `step`.
    pub label: String,
    pub percent: u8,
    /// The wait after this step; `None` after the last.
    pub pause: Option<Pause>,
    /// What the step's percent means at the size planned: instances of the new environment
    /// and of the previous one registered once it is done (the real share is new ÷ both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<StepInstances>,
}

/// The instances registered behind the endpoint once a step is done.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepInstances {
    pub new: u32,
    pub old: u32,
}

impl StepInstances {
    /// The new environment's real share of the traffic, 0.0 to 1.0.
    pub fn share(&self) -> f64 {
        f64::from(self.new) / f64::from((self.new + self.old).max(1))
    }
}

/// A change in the cloud that the roller intends; executed only after its intent is recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    CreateEnvironment {
        environment: String,
        version: String,
        config_version: u32,
        config: Box<ServiceConfig>,
    },
    RegisterInstances {
        load_balancer: String,
        instances: Vec<String>,
    },
    DeregisterInstances {
        load_balancer: String,
        instances: Vec<String>,
    },
    TerminateEnvironment {
        environment: String,
    },
}

impl Action {
    pub fn describe(&self) -> String {
        match self {
            Action::CreateEnvironment {
                environment,
                version,
                ..
            } => format!("create environment {environment} for {version}"),
            Action::RegisterInstances { instances, .. } => {
                format!("register {}", instances.join(", "))
            }
            Action::DeregisterInstances { instances, .. } => {
                format!("deregister {}", instances.join(", "))
            }
            Action::TerminateEnvironment { environment } => {
                format!("terminate environment {environment}")
            }
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvironmentStatus {
    Launching,
    Ready,
    Terminating,
    Terminated,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Health {
    Grey,
    Green,
    Yellow,
    Red,
}

/// One environment as the cloud shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentView {
    pub name: String,
    pub version: String,
    pub config_version: u32,
    pub status: EnvironmentStatus,
    pub health: Health,
    pub instances: Vec<InstanceView>,
    /// The environment's own URL (the test endpoint).
    #[serde(default)]
    pub url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceView {
    pub id: String,
    pub healthy: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RegisteredInstance {
    pub id: String,
    /// `InService` by the load balancer's own health check.
    pub in_service: bool,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlarmState {
    Ok,
    Alarm,
    InsufficientData,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlarmView {
    pub name: String,
    pub state: AlarmState,
    pub reason: String,
    /// The datapoint the reason quotes, when there is one.
    #[serde(default)]
    pub value: Option<f64>,
    pub updated_at: DateTime<Utc>,
}

/// Why traffic went back: the evidence a person or trail needs afterwards.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RollbackCause {
    Alarm {
        alarm: AlarmView,
    },
    Aborted {
        by: String,
        #[serde(default)]
        reason: Option<String>,
    },
    DeadlineExceeded {
        stage: String,
        deadline: HumanDuration,
    },
    EnvironmentFailed {
        environment: String,
        health: Health,
    },
    /// The cloud refused an action of the rollout (a permission, a quota, a value it does not
    /// accept): retrying cannot help, so the rollout ends at once with the cloud's answer.
    ActionRefused {
        /// What the roller tried, in words (`Action::describe`).
        action: String,
        /// The cloud's error, with its code (`InvalidParameterValue: No Solution Stack ...`).
        error: String,
    },
}

impl RollbackCause {
    /// A stable name for the kind of cause, for machines (the API's `cause`, the CLI's exit
    /// code): `alarm`, `aborted`, `deadline_exceeded`, `environment_failed`, `action_refused`.
    pub fn kind(&self) -> &'static str {
        match self {
            RollbackCause::Alarm { .. } => "alarm",
            RollbackCause::Aborted { .. } => "aborted",
            RollbackCause::DeadlineExceeded { .. } => "deadline_exceeded",
            RollbackCause::EnvironmentFailed { .. } => "environment_failed",
            RollbackCause::ActionRefused { .. } => "action_refused",
        }
    }

    pub fn summary(&self) -> String {
        match self {
            RollbackCause::Alarm { alarm } => format!(
                "alarm {} is {:?}: {}",
                alarm.name, alarm.state, alarm.reason
            ),
            RollbackCause::Aborted { by, reason } => format!(
                "aborted by {by}{}",
                reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
            RollbackCause::DeadlineExceeded { stage, deadline } => {
                format!("{stage} took longer than the progress deadline ({deadline})")
            }
            RollbackCause::EnvironmentFailed {
                environment,
                health,
            } => format!("environment {environment} is {health:?}"),
            RollbackCause::ActionRefused { action, error } => {
                format!("the cloud refused to {action}: {error}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// One sample of every variant (and of every `Action` and `RollbackCause` kind).
    fn samples() -> Vec<ServiceEvent> {
        use ServiceEvent as E;
        let id = Uuid::from_u128(1);
        let other = Uuid::from_u128(2);
        let config = crate::config::parse_service_config(include_str!("../../examples/hello.json"))
            .expect("the example config is valid");
        let minute = HumanDuration(std::time::Duration::from_secs(60));
        let at = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("a valid time");
        let alarm = AlarmView {
            name: "hello-5xx".into(),
            state: AlarmState::Alarm,
            reason: "Threshold Crossed: 1 datapoint [12.5] > 5".into(),
            value: Some(12.5),
            updated_at: at,
        };
        let action = |action| E::ActionIntended {
            action_id: id,
            attempt: 2,
            action,
            lease: None,
        };
        let rolled_back = |cause| E::RolledBack {
            rollout_id: id,
            cause,
        };
        vec![
            E::ConfigSaved {
                config_version: 3,
                config: Box::new(config.clone()),
            },
            E::ReleaseRequested {
                rollout_id: id,
                version: "v2".into(),
                reason: Some("fixes the greeting".into()),
                override_alarms: true,
            },
            E::RollbackRequested {
                rollout_id: id,
                to_version: "v1".into(),
                reason: None,
            },
            E::PauseRequested {
                reason: Some("lunch".into()),
            },
            E::ResumeRequested {
                reason: Some("back from lunch".into()),
            },
            E::PromoteRequested {
                full: true,
                reason: Some("canary is clean".into()),
            },
            E::AbortRequested { reason: None },
            E::PlanComputed {
                rollout_id: id,
                plan: Plan {
                    environment: "hello-v2-c3".into(),
                    reuses_warm_environment: false,
                    test_endpoint: true,
                    steps: vec![
                        PlanStep {
                            label: "canary".into(),
                            percent: 10,
                            pause: Some(Pause::UntilPromoted),
                            instances: None,
                        },
                        PlanStep {
                            label: "step".into(),
                            percent: 50,
                            pause: Some(Pause::For(minute)),
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
                    progress_deadline: minute,
                },
            },
            action(Action::CreateEnvironment {
                environment: "hello-v2-c3".into(),
                version: "v2".into(),
                config_version: 3,
                config: Box::new(config),
            }),
            action(Action::RegisterInstances {
                load_balancer: "hello-lb".into(),
                instances: vec!["i-1".into(), "i-2".into()],
            }),
            action(Action::DeregisterInstances {
                load_balancer: "hello-lb".into(),
                instances: vec!["i-0".into()],
            }),
            action(Action::TerminateEnvironment {
                environment: "hello-v1-c1".into(),
            }),
            E::ActionSucceeded {
                action_id: id,
                attempt: 2,
                detail: "created".into(),
            },
            E::ActionFailed {
                action_id: id,
                attempt: 1,
                error: "AccessDenied: not allowed".into(),
                retryable: false,
            },
            E::ObservationFailed {
                error: "DescribeEnvironments: Throttling".into(),
            },
            E::ObservationRecovered {},
            E::EnvironmentObserved {
                environment: EnvironmentView {
                    name: "hello-v2-c3".into(),
                    version: "v2".into(),
                    config_version: 3,
                    status: EnvironmentStatus::Ready,
                    health: Health::Green,
                    instances: vec![InstanceView {
                        id: "i-1".into(),
                        healthy: true,
                    }],
                    url: Some("hello-v2-c3.example.com".into()),
                },
            },
            E::RegistrationsObserved {
                load_balancer: "hello-lb".into(),
                instances: vec![RegisteredInstance {
                    id: "i-1".into(),
                    in_service: false,
                }],
            },
            E::AlarmObserved {
                alarm: alarm.clone(),
            },
            E::TestEndpointReady {
                rollout_id: id,
                url: None,
            },
            E::StepStarted {
                rollout_id: id,
                step: 1,
                percent: 50,
            },
            E::StepCompleted {
                rollout_id: id,
                step: 1,
            },
            E::WaitingForPromote {
                rollout_id: id,
                step: 1,
            },
            E::RolloutCompleted { rollout_id: id },
            E::RollbackStarted {
                rollout_id: id,
                cause: RollbackCause::Alarm { alarm },
            },
            E::RollbackStepStarted {
                rollout_id: id,
                percent: 10,
            },
            rolled_back(RollbackCause::Aborted {
                by: "alice@example.com".into(),
                reason: Some("wrong build".into()),
            }),
            rolled_back(RollbackCause::DeadlineExceeded {
                stage: "launch".into(),
                deadline: minute,
            }),
            rolled_back(RollbackCause::EnvironmentFailed {
                environment: "hello-v2-c3".into(),
                health: Health::Red,
            }),
            E::RolloutSuperseded {
                rollout_id: id,
                by: other,
            },
            E::EnvironmentMarkedUnused {
                environment: "hello-v1-c1".into(),
            },
            E::EnvironmentTerminated {
                environment: "hello-v1-c1".into(),
            },
            E::DriftDetected {
                description: "i-9 is registered but belongs to no environment".into(),
            },
            rolled_back(RollbackCause::ActionRefused {
                action: "create environment hello-v2-c3".into(),
                error: "InvalidParameterValue: No Solution Stack named '64bit Windows' found"
                    .into(),
            }),
            E::UnknownInstancesObserved {
                load_balancer: "hello-lb".into(),
                instances: vec!["i-9".into()],
            },
            E::LoadBalancerClaimed {
                load_balancer: "classic/hello-lb".into(),
                service: "hello".into(),
            },
            E::LoadBalancerReleased {
                load_balancer: "classic/hello-lb".into(),
                service: "hello".into(),
            },
            E::TokenCreated {
                token_id: Uuid::nil(),
                name: "ci-payments".into(),
                role: "deployer".into(),
                services: vec!["payments-*".into()],
                expires_at: None,
                secret_sha256: "00".repeat(32),
            },
            E::TokenRevoked {
                token_id: Uuid::nil(),
                name: "ci-payments".into(),
            },
            E::AccessDenied {
                identity: "ci-payments via token 00000000".into(),
                request: "POST /v1/services/hello/releases".into(),
                needed: "deployer on service hello".into(),
                repeats: 2,
            },
        ]
    }

    #[test]
    fn every_variant_round_trips_through_its_stored_form() {
        let samples = samples();
        for event in &samples {
            let (event_type, data) = event.encode();
            // The name `stored_types!` gives must be the one serde writes and reads.
            let tagged = serde_json::to_value(event).expect("events serialize");
            assert_eq!(tagged["type"], event_type.as_str(), "{event:?}");
            // As the store keeps it: text, read back.
            let stored: serde_json::Value =
                serde_json::from_str(&data.to_string()).expect("stored data is JSON");
            assert_eq!(
                ServiceEvent::decode(&event_type, &stored),
                Ok(Some(event.clone())),
                "{event_type}"
            );
        }
        // A variant added without a sample fails here (and one not named in `stored_types!`
        // does not compile).
        let sampled: BTreeSet<&str> = samples.iter().map(ServiceEvent::event_type).collect();
        let known: BTreeSet<&str> = ServiceEvent::TYPES.iter().copied().collect();
        assert_eq!(
            known.len(),
            ServiceEvent::TYPES.len(),
            "a type is named twice"
        );
        assert_eq!(sampled, known, "every stored type needs a sample above");
    }

    #[test]
    fn unknown_types_are_skipped_and_unknown_fields_tolerated() {
        assert_eq!(
            ServiceEvent::decode("from-the-future", &serde_json::json!({})),
            Ok(None)
        );
        let decoded = ServiceEvent::decode(
            "pause-requested",
            &serde_json::json!({ "reason": "lunch", "added_later": 42 }),
        );
        assert_eq!(
            decoded,
            Ok(Some(ServiceEvent::PauseRequested {
                reason: Some("lunch".into())
            }))
        );
        assert!(ServiceEvent::decode("step-started", &serde_json::json!({})).is_err());
    }

    /// A newer version adds a field to every object a stored event holds: each sample still
    /// decodes, to what it was.
    #[test]
    fn every_variant_tolerates_fields_added_at_any_depth() {
        fn add_field_everywhere(value: &mut serde_json::Value) {
            match value {
                serde_json::Value::Object(fields) => {
                    // `env` is the service's variables, where a new key is data, not a field.
                    fields
                        .iter_mut()
                        .filter(|(name, _)| *name != "env")
                        .for_each(|(_, value)| add_field_everywhere(value));
                    fields.insert("future_setting".into(), serde_json::json!({ "n": 3 }));
                }
                serde_json::Value::Array(items) => items.iter_mut().for_each(add_field_everywhere),
                _ => {}
            }
        }
        for event in samples() {
            let (event_type, mut data) = event.encode();
            add_field_everywhere(&mut data);
            assert_eq!(
                ServiceEvent::decode(&event_type, &data),
                Ok(Some(event)),
                "{data}"
            );
        }
    }
}
