//! Release history: every rollout of every service, with who asked, from which version to
//! which, each step's times, how it ended and why, and how long it waited for a person.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ionroller_shared::config::Pause;
use ionroller_shared::events::{service_of, Plan, RollbackCause, RolloutId, ServiceEvent};
use ionroller_shared::store::RecordedEvent;
use serde::{Deserialize, Serialize};

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Release {
    #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid))]
    pub rollout_id: RolloutId,
    pub service: String,
    /// `release` or `rollback`.
    pub kind: String,
    pub requested_by: String,
    pub reason: Option<String>,
    pub from_version: Option<String>,
    pub to_version: String,
    pub requested_at: DateTime<Utc>,
    pub steps: Vec<StepTiming>,
    pub ended_at: Option<DateTime<Utc>>,
    pub outcome: Option<ReleaseOutcome>,
    /// Seconds spent waiting for a person: test endpoint, `until_promoted` pauses, pauses.
    pub waiting_for_people_secs: f64,
}

impl Release {
    pub fn duration_secs(&self) -> Option<f64> {
        self.ended_at
            .map(|end| (end - self.requested_at).num_milliseconds() as f64 / 1000.0)
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepTiming {
    pub step: usize,
    pub percent: u8,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ReleaseOutcome {
    Completed,
    /// With the cause's evidence; `aborted` and deadline rollbacks are causes too.
    RolledBack {
        cause: RollbackCause,
    },
    Superseded {
        #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid))]
        by: RolloutId,
    },
}

impl ReleaseOutcome {
    pub fn name(&self) -> &'static str {
        match self {
            ReleaseOutcome::Completed => "completed",
            ReleaseOutcome::RolledBack {
                cause: RollbackCause::Aborted { .. },
            } => "aborted",
            ReleaseOutcome::RolledBack {
                cause: RollbackCause::DeadlineExceeded { .. },
            } => "deadline",
            ReleaseOutcome::RolledBack { .. } => "rolled_back",
            ReleaseOutcome::Superseded { .. } => "superseded",
        }
    }
}

/// What the fold needs to remember per service between events.
#[derive(Clone, Debug, Default)]
struct ServiceProgress {
    stable_version: Option<String>,
    current: Option<usize>,
    plan: Option<Plan>,
    waiting_since: Option<DateTime<Utc>>,
    paused_since: Option<DateTime<Utc>>,
}

/// All services' releases, oldest first.
#[derive(Clone, Debug, Default)]
pub struct ReleaseHistory {
    pub releases: Vec<Release>,
    services: BTreeMap<String, ServiceProgress>,
}

impl ReleaseHistory {
    pub fn for_service<'a>(&'a self, service: &'a str) -> impl Iterator<Item = &'a Release> + 'a {
        self.releases.iter().filter(move |r| r.service == service)
    }

    pub fn apply(&mut self, event: &RecordedEvent) -> Result<(), String> {
        let decoded = ServiceEvent::from_recorded(event)?;
        self.apply_decoded(event, decoded.as_ref());
        Ok(())
    }

    /// As `apply`, for a caller that has decoded the event already (`None`: unknown type).
    pub fn apply_decoded(&mut self, event: &RecordedEvent, decoded: Option<&ServiceEvent>) {
        let Some(service) = service_of(&event.stream) else {
            return;
        };
        let Some(decoded) = decoded.cloned() else {
            return;
        };
        let at = event.metadata.occurred_at;
        let progress = self.services.entry(service.to_string()).or_default();
        let current = progress.current;
        let release = current.and_then(|i| self.releases.get_mut(i));
        match decoded {
            ServiceEvent::ReleaseRequested {
                rollout_id,
                version,
                reason,
                ..
            }
            | ServiceEvent::RollbackRequested {
                rollout_id,
                to_version: version,
                reason,
            } => {
                let kind = if event.event_type == "rollback-requested" {
                    "rollback"
                } else {
                    "release"
                };
                self.releases.push(Release {
                    rollout_id,
                    service: service.to_string(),
                    kind: kind.into(),
                    requested_by: event.metadata.actor.clone(),
                    reason,
                    from_version: progress.stable_version.clone(),
                    to_version: version,
                    requested_at: at,
                    steps: Vec::new(),
                    ended_at: None,
                    outcome: None,
                    waiting_for_people_secs: 0.0,
                });
                *progress = ServiceProgress {
                    stable_version: progress.stable_version.clone(),
                    current: Some(self.releases.len() - 1),
                    ..ServiceProgress::default()
                };
            }
            ServiceEvent::PlanComputed { plan, .. } => progress.plan = Some(plan),
            ServiceEvent::TestEndpointReady { .. } => progress.waiting_since = Some(at),
            // A pause during a wait for a promote is the same wait: count it once.
            ServiceEvent::PauseRequested { .. }
                if progress.waiting_since.is_none() && progress.paused_since.is_none() =>
            {
                progress.paused_since = Some(at);
            }
            ServiceEvent::ResumeRequested { .. } => {
                if let (Some(since), Some(r)) = (progress.paused_since.take(), release) {
                    r.waiting_for_people_secs += secs(since, at);
                }
            }
            // An abort ends any wait for people; the revert after it is the machine's time.
            ServiceEvent::AbortRequested { .. } => {
                if let Some(r) = release {
                    for since in [progress.waiting_since.take(), progress.paused_since.take()]
                        .into_iter()
                        .flatten()
                    {
                        r.waiting_for_people_secs += secs(since, at);
                    }
                }
            }
            ServiceEvent::StepStarted { step, percent, .. } => {
                if let Some(r) = release {
                    if let Some(since) = progress.waiting_since.take() {
                        r.waiting_for_people_secs += secs(since, at);
                    }
                    r.steps.push(StepTiming {
                        step,
                        percent,
                        started_at: at,
                        completed_at: None,
                    });
                }
            }
            ServiceEvent::StepCompleted { step, .. } => {
                if let Some(r) = release {
                    if let Some(s) = r.steps.iter_mut().rev().find(|s| s.step == step) {
                        s.completed_at = Some(at);
                    }
                }
                let waits = progress
                    .plan
                    .as_ref()
                    .and_then(|p| p.steps.get(step))
                    .is_some_and(|s| s.pause == Some(Pause::UntilPromoted));
                if waits {
                    progress.waiting_since = Some(at);
                }
            }
            ServiceEvent::RolloutCompleted { .. } => {
                if let Some(r) = release {
                    progress.stable_version = Some(r.to_version.clone());
                }
                finish(
                    self.releases.get_mut(current.unwrap_or(usize::MAX)),
                    progress,
                    at,
                    ReleaseOutcome::Completed,
                );
            }
            ServiceEvent::RolledBack { cause, .. } => {
                finish(release, progress, at, ReleaseOutcome::RolledBack { cause });
            }
            ServiceEvent::RolloutSuperseded { by, .. } => {
                finish(release, progress, at, ReleaseOutcome::Superseded { by });
            }
            _ => {}
        }
    }
}

fn finish(
    release: Option<&mut Release>,
    progress: &mut ServiceProgress,
    at: DateTime<Utc>,
    outcome: ReleaseOutcome,
) {
    if let Some(r) = release {
        for since in [progress.waiting_since.take(), progress.paused_since.take()]
            .into_iter()
            .flatten()
        {
            r.waiting_for_people_secs += secs(since, at);
        }
        r.ended_at = Some(at);
        r.outcome = Some(outcome);
    }
    progress.current = None;
    progress.plan = None;
}

fn secs(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds().max(0) as f64 / 1000.0
}
