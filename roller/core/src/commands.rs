//! Command rules: what a person may ask of a service in its current state, and the events that
//! record an accepted command. Pure, like `decide`: the HTTP layer parses input, calls
//! [`handle`] on the state it folded, and appends the events at that state's revision, so a
//! concurrent change makes it re-read and ask again rather than act on a stale answer.

use ionroller_shared::config::ServiceConfig;
use ionroller_shared::events::{AlarmState, RolloutId, ServiceEvent};

use crate::plan::plan_rollout;
use crate::state::{Outcome, Rollout, RolloutKind, ServiceState, Stage};

/// What a person asks of one service.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    SaveConfig(Box<ServiceConfig>),
    Release {
        version: String,
        reason: Option<String>,
        /// Release even though alarms already fire (recorded); only alarms that go off after
        /// the release then roll it back.
        override_alarms: bool,
    },
    /// Back to `to_version`, or, with none, to the version that served before the stable one
    /// (mid-rollout with none: send traffic back, as an abort does).
    Rollback {
        to_version: Option<String>,
        reason: Option<String>,
    },
    Pause {
        reason: Option<String>,
    },
    Resume {
        reason: Option<String>,
    },
    /// Ends the current wait; `full` skips the steps left and goes to 100%.
    Promote {
        full: bool,
        reason: Option<String>,
    },
    Abort {
        reason: Option<String>,
    },
}

/// An accepted command: the events to append, and what to tell the person.
#[derive(Clone, Debug, PartialEq)]
pub struct Accepted {
    pub events: Vec<ServiceEvent>,
    /// The rollout the command started or acted on.
    pub rollout_id: Option<RolloutId>,
    /// What it does, in one word: `release`, `rollback`, `abort`, `pause`, `resume`, `promote`,
    /// `config`, or `attach` (the same release or rollback is already under way: no events).
    pub action: &'static str,
    /// The version a release or rollback moves to.
    pub version: Option<String>,
}

/// Why a command was refused. Every refusal is about the service's current state (a conflict),
/// never about the input's form, which the HTTP layer checks before asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    NoConfig {
        service: String,
    },
    AlreadyServing {
        service: String,
        version: String,
    },
    AlarmsFiring {
        alarms: Vec<String>,
    },
    NothingToRollBackTo {
        service: String,
    },
    NoRollout {
        service: String,
        what: &'static str,
    },
    AlreadyRollingBack {
        what: &'static str,
    },
    AlreadyPaused,
    NotPaused,
    /// Another service's config names this load balancer (see [`crate::claims`]).
    LoadBalancerOwned {
        load_balancer: String,
        owner: String,
    },
    /// A promote while the rollout is paused would take effect only on resume.
    PromoteWhilePaused,
    /// `rollback --to` a version that never served this service at 100%: a rollback skips
    /// the rollout policy, so it may only go back to something known to have served.
    NeverServed {
        version: String,
        served: Vec<String>,
    },
}

impl Refusal {
    /// A stable name for the refusal, for machines: the API's `error` on a 409, and what the
    /// command line turns into a hint worded as a command.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NoConfig { .. } => "no_config",
            Refusal::AlreadyServing { .. } => "already_serving",
            Refusal::AlarmsFiring { .. } => "alarms_firing",
            Refusal::NothingToRollBackTo { .. } => "nothing_to_roll_back_to",
            Refusal::NoRollout { .. } => "no_rollout",
            Refusal::AlreadyRollingBack { .. } => "already_rolling_back",
            Refusal::AlreadyPaused => "already_paused",
            Refusal::NotPaused => "not_paused",
            Refusal::PromoteWhilePaused => "promote_while_paused",
            Refusal::LoadBalancerOwned { .. } => "load_balancer_owned",
            Refusal::NeverServed { .. } => "never_served",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NoConfig { service } => {
                write!(f, "service {service} has no config yet; save one first")
            }
            Refusal::AlreadyServing { service, version } => {
                write!(f, "{version} is already serving all traffic of {service}")
            }
            Refusal::AlarmsFiring { alarms } => write!(
                f,
                "alarm(s) {} already in ALARM; fix them first, or release with the alarms \
                 overridden (the override is recorded)",
                alarms.join(", ")
            ),
            Refusal::NothingToRollBackTo { service } => {
                write!(f, "{service} has no previous version to roll back to")
            }
            Refusal::NoRollout { service, what } => {
                write!(f, "{service} has no rollout in progress to {what}")
            }
            Refusal::AlreadyRollingBack { what } => {
                write!(f, "the rollout is already rolling back; nothing to {what}")
            }
            Refusal::AlreadyPaused => write!(f, "the rollout is already paused"),
            Refusal::NotPaused => write!(f, "the rollout is not paused"),
            Refusal::PromoteWhilePaused => {
                write!(f, "the rollout is paused: resume it first, then promote")
            }
            Refusal::LoadBalancerOwned {
                load_balancer,
                owner,
            } => write!(
                f,
                "load balancer {load_balancer} belongs to service {owner}; a load balancer serves \
                 one service, so name this one's own in endpoint.load_balancer.name (or move \
                 {owner} off it first)"
            ),
            Refusal::NeverServed { version, served } if served.is_empty() => write!(
                f,
                "{version} never served all traffic of this service, and no version has yet; \
                 release it instead (it goes through the rollout policy)"
            ),
            Refusal::NeverServed { version, served } => write!(
                f,
                "{version} never served all traffic of this service, so it cannot be a rollback \
                 target; release it instead (it goes through the rollout policy), or roll back to \
                 one of: {}",
                served.join(", ")
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// Checks `command` against `state` and returns the events that record it. `new_rollout_id`
/// names the rollout a release or rollback would start (the caller draws it, so that this
/// stays a function of its inputs).
pub fn handle(
    state: &ServiceState,
    command: &Command,
    new_rollout_id: RolloutId,
) -> Result<Accepted, Refusal> {
    match command {
        Command::SaveConfig(config) => Ok(Accepted {
            events: vec![ServiceEvent::ConfigSaved {
                config_version: state.latest_config().map_or(1, |c| c.version + 1),
                config: config.clone(),
            }],
            rollout_id: None,
            action: "config",
            version: None,
        }),
        Command::Release {
            version,
            reason,
            override_alarms,
        } => {
            let firing = firing_alarms(state);
            if !firing.is_empty() && !override_alarms {
                return Err(Refusal::AlarmsFiring { alarms: firing });
            }
            let start = StartRollout {
                kind: RolloutKind::Release,
                version,
                reason: reason.clone(),
                override_alarms: *override_alarms,
            };
            start_rollout(state, start, new_rollout_id)
        }
        Command::Rollback { to_version, reason } => {
            // Mid-rollout with no explicit version: send traffic back, as an abort does.
            if let (Some(rollout), None) = (&state.rollout, to_version) {
                not_rolling_back(rollout, "roll back")?;
                return Ok(Accepted {
                    events: vec![ServiceEvent::AbortRequested {
                        reason: reason.clone().or(Some("rollback requested".into())),
                    }],
                    rollout_id: Some(rollout.id),
                    action: "abort",
                    version: None,
                });
            }
            let to = match to_version {
                Some(version) => {
                    let served = served_versions(state);
                    if !served.contains(version) {
                        return Err(Refusal::NeverServed {
                            version: version.clone(),
                            served,
                        });
                    }
                    version.clone()
                }
                None => previous_version(state).ok_or_else(|| Refusal::NothingToRollBackTo {
                    service: state.service.clone(),
                })?,
            };
            let start = StartRollout {
                kind: RolloutKind::Rollback,
                version: &to,
                reason: reason.clone(),
                override_alarms: false,
            };
            start_rollout(state, start, new_rollout_id)
        }
        Command::Pause { reason } => on_rollout(state, "pause", |rollout| {
            not_rolling_back(rollout, "pause")?;
            if rollout.paused {
                return Err(Refusal::AlreadyPaused);
            }
            Ok(ServiceEvent::PauseRequested {
                reason: reason.clone(),
            })
        }),
        Command::Resume { reason } => on_rollout(state, "resume", |rollout| {
            if !rollout.paused {
                return Err(Refusal::NotPaused);
            }
            Ok(ServiceEvent::ResumeRequested {
                reason: reason.clone(),
            })
        }),
        Command::Promote { full, reason } => on_rollout(state, "promote", |rollout| {
            not_rolling_back(rollout, "promote")?;
            if rollout.paused {
                return Err(Refusal::PromoteWhilePaused);
            }
            Ok(ServiceEvent::PromoteRequested {
                full: *full,
                reason: reason.clone(),
            })
        }),
        Command::Abort { reason } => on_rollout(state, "abort", |rollout| {
            not_rolling_back(rollout, "abort")?;
            Ok(ServiceEvent::AbortRequested {
                reason: reason.clone(),
            })
        }),
    }
}

/// The service's configured alarms that are in ALARM now.
pub fn firing_alarms(state: &ServiceState) -> Vec<String> {
    let Some(config) = state.latest_config() else {
        return Vec::new();
    };
    config
        .config
        .rollout
        .alarms
        .iter()
        .filter(|name| {
            state
                .alarms
                .get(*name)
                .is_some_and(|a| a.state == AlarmState::Alarm)
        })
        .cloned()
        .collect()
}

/// The versions that served all of this service's traffic (a rollout to them completed), newest
/// first: what a rollback may return to. From the recent history and the environments still
/// known (a warm one keeps its `served` mark after its rollout left the history).
pub fn served_versions(state: &ServiceState) -> Vec<String> {
    let mut served: Vec<String> = Vec::new();
    let completed = state
        .history
        .iter()
        .rev()
        .filter(|h| h.outcome == Outcome::Completed)
        .map(|h| h.version.as_str());
    let from = state
        .history
        .iter()
        .rev()
        .filter_map(|h| h.from_version.as_deref());
    let warm = state
        .environments
        .values()
        .filter(|e| e.served)
        .map(|e| e.version.as_str());
    for version in completed.chain(from).chain(warm) {
        if !served.iter().any(|v| v == version) {
            served.push(version.to_string());
        }
    }
    served
}

/// The version that served before the stable one, from the completed rollouts.
fn previous_version(state: &ServiceState) -> Option<String> {
    state
        .history
        .iter()
        .rev()
        .find(|h| {
            h.outcome == Outcome::Completed
                && h.from_version.is_some()
                && h.from_version.as_deref() != state.stable_version()
        })
        .and_then(|h| h.from_version.clone())
}

struct StartRollout<'a> {
    kind: RolloutKind,
    version: &'a str,
    reason: Option<String>,
    override_alarms: bool,
}

/// The events that start a rollout of `start.version`, superseding one in flight.
fn start_rollout(
    state: &ServiceState,
    start: StartRollout<'_>,
    rollout_id: RolloutId,
) -> Result<Accepted, Refusal> {
    if state.latest_config().is_none() {
        return Err(Refusal::NoConfig {
            service: state.service.clone(),
        });
    }
    if state.rollout.is_none() && state.stable_version() == Some(start.version) {
        return Err(Refusal::AlreadyServing {
            service: state.service.clone(),
            version: start.version.to_string(),
        });
    }
    // The same request again (a retried `ionroller release`, a second person): follow the
    // rollout already under way rather than supersede it with a second environment.
    if let Some(current) = state.rollout.as_ref().filter(|r| {
        r.version == start.version
            && r.kind == start.kind
            && !matches!(r.stage, Stage::Reverting { .. })
    }) {
        return Ok(Accepted {
            events: Vec::new(),
            rollout_id: Some(current.id),
            action: "attach",
            version: Some(current.version.clone()),
        });
    }
    let Some(plan) = plan_rollout(state, &start.kind, start.version, Some(rollout_id)) else {
        return Err(Refusal::NoConfig {
            service: state.service.clone(),
        });
    };
    let mut events = Vec::new();
    if let Some(current) = &state.rollout {
        events.push(ServiceEvent::RolloutSuperseded {
            rollout_id: current.id,
            by: rollout_id,
        });
    }
    let version = start.version.to_string();
    events.push(match start.kind {
        RolloutKind::Release => ServiceEvent::ReleaseRequested {
            rollout_id,
            version: version.clone(),
            reason: start.reason,
            override_alarms: start.override_alarms,
        },
        RolloutKind::Rollback => ServiceEvent::RollbackRequested {
            rollout_id,
            to_version: version.clone(),
            reason: start.reason,
        },
    });
    events.push(ServiceEvent::PlanComputed { rollout_id, plan });
    Ok(Accepted {
        events,
        rollout_id: Some(rollout_id),
        action: match start.kind {
            RolloutKind::Release => "release",
            RolloutKind::Rollback => "rollback",
        },
        version: Some(version),
    })
}

/// A command that acts on the rollout in progress.
fn on_rollout(
    state: &ServiceState,
    what: &'static str,
    event: impl FnOnce(&Rollout) -> Result<ServiceEvent, Refusal>,
) -> Result<Accepted, Refusal> {
    let rollout = state.rollout.as_ref().ok_or_else(|| Refusal::NoRollout {
        service: state.service.clone(),
        what,
    })?;
    Ok(Accepted {
        events: vec![event(rollout)?],
        rollout_id: Some(rollout.id),
        action: what,
        version: None,
    })
}

fn not_rolling_back(rollout: &Rollout, what: &'static str) -> Result<(), Refusal> {
    if matches!(rollout.stage, Stage::Reverting { .. }) {
        return Err(Refusal::AlreadyRollingBack { what });
    }
    Ok(())
}
