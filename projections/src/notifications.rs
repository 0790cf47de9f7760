//! What a team is told about its service: the log's events turned into notifications, one per
//! outcome or wait, with the words and evidence a person needs. Pure: the notifier (in the
//! roller) feeds it the events it reads, in order, and delivers what comes out.
//!
//! Every outcome is told, whoever caused it: a completed rollout, a rollback by an alarm, a
//! red environment, a missed deadline or a refused cloud action, an abort by a person, a
//! superseded release. So are the moments a rollout waits for a person (a canary or a test
//! endpoint to promote, a pause), a cloud action refused, and drift the roller repairs.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use ionroller_shared::events::{RollbackCause, RolloutId, ServiceEvent};

/// The kinds of notification, as endpoints choose them (`kinds` in the notifications file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A release or rollback was requested and starts.
    RolloutStarted,
    /// The rollout waits for a person: a canary or test endpoint to promote, or a pause.
    WaitingForPerson,
    /// A traffic step finished (off unless an endpoint asks for it: it is chatty).
    StepCompleted,
    Completed,
    /// Traffic went back: an alarm, a failed environment.
    RolledBack,
    /// A person aborted the rollout; traffic went back.
    Aborted,
    /// The rollout took longer than its progress deadline; traffic went back.
    DeadlineExceeded,
    /// The cloud refused an action (a permission, a quota, a value): retrying cannot help.
    ActionRefused,
    /// A newer release replaced the rollout.
    Superseded,
    /// The cloud no longer matched the log (an environment gone, an instance deregistered
    /// behind the roller's back); the roller repairs it at once.
    DriftDetected,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::RolloutStarted,
        Kind::WaitingForPerson,
        Kind::StepCompleted,
        Kind::Completed,
        Kind::RolledBack,
        Kind::Aborted,
        Kind::DeadlineExceeded,
        Kind::ActionRefused,
        Kind::Superseded,
        Kind::DriftDetected,
    ];

    /// What an endpoint gets unless it lists its kinds: everything but the step by step.
    pub fn default_set() -> Vec<Kind> {
        Kind::ALL
            .into_iter()
            .filter(|k| *k != Kind::StepCompleted)
            .collect()
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::RolloutStarted => "rollout_started",
            Kind::WaitingForPerson => "waiting_for_person",
            Kind::StepCompleted => "step_completed",
            Kind::Completed => "completed",
            Kind::RolledBack => "rolled_back",
            Kind::Aborted => "aborted",
            Kind::DeadlineExceeded => "deadline_exceeded",
            Kind::ActionRefused => "action_refused",
            Kind::Superseded => "superseded",
            Kind::DriftDetected => "drift_detected",
        }
    }
}

/// One thing to tell, about one event of one service.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Notification {
    pub kind: Kind,
    pub service: String,
    /// The event it is about: with the endpoint, what a receiver drops duplicates by.
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    /// Who caused it (a person's verified identity, or the roller).
    pub actor: String,
    pub rollout_id: Option<RolloutId>,
    /// The version the rollout ships.
    pub version: Option<String>,
    /// One sentence for people.
    pub text: String,
    /// For a rollback: the cause as the log records it (an alarm's name, state, reason and
    /// the datapoint it quoted; an environment's health; the refused action and AWS's error).
    pub cause: Option<Value>,
}

impl Notification {
    /// The generic webhook body: stable field names, documented in README.
    pub fn body(&self, delivery_id: &str) -> Value {
        json!({
            "delivery_id": delivery_id,
            "kind": self.kind.name(),
            "service": self.service,
            "event_id": self.event_id,
            "occurred_at": self.occurred_at,
            "actor": self.actor,
            "rollout_id": self.rollout_id,
            "version": self.version,
            "text": self.text,
            "cause": self.cause,
        })
    }

    /// A Slack incoming-webhook message (also what Mattermost and Teams' Slack-compatible
    /// hooks take).
    pub fn slack(&self) -> Value {
        json!({ "text": format!("*{}*: {}", self.service, self.text) })
    }
}

/// What the fold remembers per service between events: the rollouts in flight (their
/// version). Bounded: a rollout is forgotten when it ends.
#[derive(Default)]
pub struct Notifications {
    rollouts: HashMap<(String, RolloutId), InFlight>,
}

struct InFlight {
    version: String,
}

/// What the fold needs of a recorded event besides its decoded body.
pub struct Meta<'a> {
    pub service: &'a str,
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub actor: &'a str,
}

impl Notifications {
    /// The notifications `event` gives rise to, given what came before it.
    pub fn on(&mut self, meta: &Meta<'_>, event: &ServiceEvent) -> Vec<Notification> {
        let service = meta.service.to_string();
        let make =
            |kind: Kind, rollout: Option<RolloutId>, version: Option<String>, text: String| {
                Notification {
                    kind,
                    service: service.clone(),
                    event_id: meta.event_id,
                    occurred_at: meta.occurred_at,
                    actor: meta.actor.to_string(),
                    rollout_id: rollout,
                    version,
                    text,
                    cause: None,
                }
            };
        let version_of = |this: &Self, id: &RolloutId| {
            this.rollouts
                .get(&(service.clone(), *id))
                .map(|r| r.version.clone())
        };
        match event {
            ServiceEvent::ReleaseRequested {
                rollout_id,
                version,
                reason,
                ..
            } => {
                self.started(&service, *rollout_id, version);
                vec![make(
                    Kind::RolloutStarted,
                    Some(*rollout_id),
                    Some(version.clone()),
                    format!(
                        "release of {version} requested by {}{}",
                        meta.actor,
                        because(reason)
                    ),
                )]
            }
            ServiceEvent::RollbackRequested {
                rollout_id,
                to_version,
                reason,
            } => {
                self.started(&service, *rollout_id, to_version);
                vec![make(
                    Kind::RolloutStarted,
                    Some(*rollout_id),
                    Some(to_version.clone()),
                    format!(
                        "rollback to {to_version} requested by {}{}",
                        meta.actor,
                        because(reason)
                    ),
                )]
            }
            ServiceEvent::TestEndpointReady { rollout_id, url } => {
                let version = version_of(self, rollout_id);
                vec![make(
                    Kind::WaitingForPerson,
                    Some(*rollout_id),
                    version.clone(),
                    format!(
                        "{} waits at its test endpoint{} for a promote",
                        version.as_deref().unwrap_or("the release"),
                        url.as_deref().map(|u| format!(" {u}")).unwrap_or_default()
                    ),
                )]
            }
            ServiceEvent::StepCompleted { rollout_id, step } => {
                let version = version_of(self, rollout_id);
                vec![make(
                    Kind::StepCompleted,
                    Some(*rollout_id),
                    version.clone(),
                    format!(
                        "{} finished step {}",
                        version.as_deref().unwrap_or("the release"),
                        step + 1
                    ),
                )]
            }
            // Told when the roller decides to wait, not when the plan said a step might: a
            // step that moved nothing is not waited after.
            ServiceEvent::WaitingForPromote { rollout_id, step } => {
                let version = version_of(self, rollout_id);
                vec![make(
                    Kind::WaitingForPerson,
                    Some(*rollout_id),
                    version.clone(),
                    format!(
                        "{} waits after step {} for a promote (ionroller promote {})",
                        version.as_deref().unwrap_or("the release"),
                        step + 1,
                        meta.service
                    ),
                )]
            }
            ServiceEvent::PauseRequested { reason } => vec![make(
                Kind::WaitingForPerson,
                None,
                None,
                format!("paused by {}{}", meta.actor, because(reason)),
            )],
            ServiceEvent::RolloutCompleted { rollout_id } => {
                let version = self.ended(&service, rollout_id);
                vec![make(
                    Kind::Completed,
                    Some(*rollout_id),
                    version.clone(),
                    format!(
                        "{} serves all traffic",
                        version.as_deref().unwrap_or("the release")
                    ),
                )]
            }
            ServiceEvent::RolledBack { rollout_id, cause } => {
                let version = self.ended(&service, rollout_id);
                let kind = match cause {
                    RollbackCause::Aborted { .. } => Kind::Aborted,
                    RollbackCause::DeadlineExceeded { .. } => Kind::DeadlineExceeded,
                    _ => Kind::RolledBack,
                };
                let mut n = make(
                    kind,
                    Some(*rollout_id),
                    version.clone(),
                    format!(
                        "{} rolled back: {}",
                        version.as_deref().unwrap_or("the release"),
                        cause.summary()
                    ),
                );
                n.cause = serde_json::to_value(cause).ok();
                vec![n]
            }
            ServiceEvent::RolloutSuperseded { rollout_id, by } => {
                let version = self.ended(&service, rollout_id);
                vec![make(
                    Kind::Superseded,
                    Some(*rollout_id),
                    version.clone(),
                    format!(
                        "{} was superseded by rollout {by}",
                        version.as_deref().unwrap_or("the release")
                    ),
                )]
            }
            ServiceEvent::ActionFailed {
                error,
                retryable: false,
                ..
            } => vec![make(
                Kind::ActionRefused,
                None,
                None,
                format!("the cloud refused an action: {error}"),
            )],
            ServiceEvent::DriftDetected { description } => vec![make(
                Kind::DriftDetected,
                None,
                None,
                format!("drift: {description}; the roller repairs it"),
            )],
            _ => Vec::new(),
        }
    }

    fn started(&mut self, service: &str, id: RolloutId, version: &str) {
        self.rollouts.insert(
            (service.to_string(), id),
            InFlight {
                version: version.to_string(),
            },
        );
    }

    fn ended(&mut self, service: &str, id: &RolloutId) -> Option<String> {
        self.rollouts
            .remove(&(service.to_string(), *id))
            .map(|r| r.version)
    }
}

fn because(reason: &Option<String>) -> String {
    reason
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ionroller_shared::events::{AlarmState, AlarmView};

    fn meta(actor: &str) -> Meta<'_> {
        Meta {
            service: "hello",
            event_id: Uuid::nil(),
            occurred_at: DateTime::<Utc>::UNIX_EPOCH,
            actor,
        }
    }

    fn kinds(n: &[Notification]) -> Vec<Kind> {
        n.iter().map(|n| n.kind).collect()
    }

    #[test]
    fn a_release_is_told_when_it_starts_waits_for_a_person_and_ends() {
        let mut fold = Notifications::default();
        let id = Uuid::from_u128(7);
        let started = fold.on(
            &meta("ana via token 1234"),
            &ServiceEvent::ReleaseRequested {
                rollout_id: id,
                version: "v2".into(),
                reason: Some("fix login".into()),
                override_alarms: false,
            },
        );
        assert_eq!(kinds(&started), [Kind::RolloutStarted]);
        assert_eq!(
            started[0].text,
            "release of v2 requested by ana via token 1234 (fix login)"
        );
        // A step is told as such; a wait only when the roller records one.
        let canary = fold.on(
            &meta("roller"),
            &ServiceEvent::StepCompleted {
                rollout_id: id,
                step: 0,
            },
        );
        assert_eq!(kinds(&canary), [Kind::StepCompleted]);
        assert_eq!(canary[0].text, "v2 finished step 1");
        let waiting = fold.on(
            &meta("roller"),
            &ServiceEvent::WaitingForPromote {
                rollout_id: id,
                step: 0,
            },
        );
        assert_eq!(kinds(&waiting), [Kind::WaitingForPerson]);
        assert!(
            waiting[0].text.starts_with("v2 waits after step 1 "),
            "{}",
            waiting[0].text
        );
        assert!(
            waiting[0].text.contains("ionroller promote hello"),
            "{}",
            waiting[0].text
        );
        let done = fold.on(
            &meta("roller"),
            &ServiceEvent::RolloutCompleted { rollout_id: id },
        );
        assert_eq!(kinds(&done), [Kind::Completed]);
        assert_eq!(done[0].text, "v2 serves all traffic");
        assert_eq!(done[0].version.as_deref(), Some("v2"));
        assert!(fold.rollouts.is_empty(), "an ended rollout is forgotten");
    }

    #[test]
    fn every_way_a_rollout_ends_has_its_kind_and_a_rollback_carries_its_evidence() {
        let alarm = AlarmView {
            name: "hello-5xx".into(),
            state: AlarmState::Alarm,
            reason: "5xx 12% > 5%".into(),
            updated_at: DateTime::<Utc>::UNIX_EPOCH,
            value: Some(12.0),
        };
        let cases = [
            (RollbackCause::Alarm { alarm }, Kind::RolledBack),
            (
                RollbackCause::Aborted {
                    by: "ana".into(),
                    reason: None,
                },
                Kind::Aborted,
            ),
            (
                RollbackCause::DeadlineExceeded {
                    stage: "launching".into(),
                    deadline: serde_json::from_value(json!("10m")).expect("a duration"),
                },
                Kind::DeadlineExceeded,
            ),
            (
                RollbackCause::ActionRefused {
                    action: "create environment hello-v2".into(),
                    error: "InsufficientPrivilegesException: no".into(),
                },
                Kind::RolledBack,
            ),
        ];
        for (cause, kind) in cases {
            let mut fold = Notifications::default();
            let id = Uuid::from_u128(9);
            fold.on(
                &meta("ana"),
                &ServiceEvent::ReleaseRequested {
                    rollout_id: id,
                    version: "v3".into(),
                    reason: None,
                    override_alarms: false,
                },
            );
            let out = fold.on(
                &meta("roller"),
                &ServiceEvent::RolledBack {
                    rollout_id: id,
                    cause: cause.clone(),
                },
            );
            assert_eq!(kinds(&out), [kind]);
            assert_eq!(out[0].cause, serde_json::to_value(&cause).ok());
            assert!(
                out[0].text.starts_with("v3 rolled back: "),
                "{}",
                out[0].text
            );
        }
        let mut fold = Notifications::default();
        let refused = fold.on(
            &meta("roller"),
            &ServiceEvent::ActionFailed {
                action_id: Uuid::nil(),
                attempt: 1,
                error: "AccessDenied: not allowed".into(),
                retryable: false,
            },
        );
        assert_eq!(kinds(&refused), [Kind::ActionRefused]);
        let retried = fold.on(
            &meta("roller"),
            &ServiceEvent::ActionFailed {
                action_id: Uuid::nil(),
                attempt: 1,
                error: "Throttling".into(),
                retryable: true,
            },
        );
        assert!(
            retried.is_empty(),
            "a retryable failure is retried, not told"
        );
    }

    #[test]
    fn bodies_have_their_documented_fields() {
        let mut fold = Notifications::default();
        let n = fold
            .on(
                &meta("roller"),
                &ServiceEvent::DriftDetected {
                    description: "environment hello-v1 was terminated".into(),
                },
            )
            .remove(0);
        let body = n.body("d-1");
        for field in [
            "delivery_id",
            "kind",
            "service",
            "event_id",
            "occurred_at",
            "actor",
            "rollout_id",
            "version",
            "text",
            "cause",
        ] {
            assert!(body.get(field).is_some(), "{field}");
        }
        assert_eq!(body["kind"], "drift_detected");
        assert_eq!(
            n.slack()["text"],
            "*hello*: drift: environment hello-v1 was terminated; the roller repairs it"
        );
        assert_eq!(Kind::default_set().len(), Kind::ALL.len() - 1);
    }
}
