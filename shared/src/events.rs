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
    ResumeRequested {},
    PromoteRequested {},
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
}

/// Failures recorded before `retryable` existed were all retried alike.
pub fn retryable_by_default() -> bool {
    true
}

impl ServiceEvent {
    /// Every stored type name this build knows.
    pub const TYPES: &'static [&'static str] = &[
        "config-saved",
        "release-requested",
        "rollback-requested",
        "pause-requested",
        "resume-requested",
        "promote-requested",
        "abort-requested",
        "plan-computed",
        "action-intended",
        "action-succeeded",
        "action-failed",
        "observation-failed",
        "observation-recovered",
        "environment-observed",
        "registrations-observed",
        "alarm-observed",
        "test-endpoint-ready",
        "step-started",
        "step-completed",
        "rollout-completed",
        "rollback-started",
        "rollback-step-started",
        "rolled-back",
        "rollout-superseded",
        "environment-marked-unused",
        "environment-terminated",
        "drift-detected",
    ];

    /// Splits the event into its stored type name and JSON data.
    pub fn encode(&self) -> (String, serde_json::Value) {
        let value = serde_json::to_value(self).unwrap_or_default();
        let event_type = value
            .get("type")
            .and_then(|t| t.as_str())
            .unwrap_or("unknown")
            .to_string();
        let data = value
            .get("data")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        (event_type, data)
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
}

impl RollbackCause {
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_encodes_to_a_known_type_and_back() {
        let id = Uuid::from_u128(1);
        let samples = vec![
            ServiceEvent::ReleaseRequested {
                rollout_id: id,
                version: "v1".into(),
                reason: None,
                override_alarms: false,
            },
            ServiceEvent::ResumeRequested {},
            ServiceEvent::PromoteRequested {},
            ServiceEvent::ActionIntended {
                action_id: id,
                attempt: 1,
                action: Action::TerminateEnvironment {
                    environment: "e".into(),
                },
            },
            ServiceEvent::RolledBack {
                rollout_id: id,
                cause: RollbackCause::Aborted {
                    by: "me".into(),
                    reason: None,
                },
            },
            ServiceEvent::DriftDetected {
                description: "x".into(),
            },
        ];
        for event in samples {
            let (event_type, data) = event.encode();
            assert!(
                ServiceEvent::TYPES.contains(&event_type.as_str()),
                "{event_type}"
            );
            assert_eq!(ServiceEvent::decode(&event_type, &data), Ok(Some(event)));
        }
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
}
