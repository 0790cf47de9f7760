//! The audit log: one row per event, with who, what, which service and version, a sentence
//! for people, and its place in the hash chain. Events of types this build does not know are
//! kept as they are (type and data), never dropped.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ionroller_shared::events::{service_of, Action, RolloutId, ServiceEvent};
use ionroller_shared::store::RecordedEvent;
use serde::{Deserialize, Serialize};

use crate::chain::{next_hash, to_hex, Hash};

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRow {
    /// 1-based, dense: the row's place in the chain.
    pub seq: u64,
    pub position: String,
    pub stream: String,
    pub service: Option<String>,
    pub revision: u64,
    pub event_type: String,
    pub actor: String,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// The release version the event concerns: the one it names (a release's, an
    /// environment's), else that of the rollout in progress on its service, so every row of a
    /// rollout carries one. Rows projected before rollouts filled it hold only the named
    /// version; `trail rebuild` fills theirs.
    pub version: Option<String>,
    pub summary: String,
    pub data: serde_json::Value,
    /// `h_seq` in hex.
    pub hash: String,
}

/// Folds events into audit rows, carrying the chain and each service's rollout in progress
/// (whose version fills the rows that name none).
#[derive(Clone, Debug)]
pub struct AuditChain {
    pub seq: u64,
    pub head: Hash,
    rollouts: BTreeMap<String, (RolloutId, String)>,
}

impl Default for AuditChain {
    fn default() -> Self {
        AuditChain {
            seq: 0,
            head: crate::chain::GENESIS,
            rollouts: BTreeMap::new(),
        }
    }
}

impl AuditChain {
    /// Continues a chain whose last row was `seq` with hash `head`, with no rollout in
    /// progress; see [`AuditChain::with_rollout`].
    pub fn resume(seq: u64, head: Hash) -> Self {
        AuditChain {
            seq,
            head,
            rollouts: BTreeMap::new(),
        }
    }

    /// Says that `service` has rollout `id` of `version` in progress, for a chain resumed
    /// in the middle of it (the release history knows which rollouts are open).
    pub fn with_rollout(mut self, service: &str, id: RolloutId, version: &str) -> Self {
        self.rollouts
            .insert(service.to_string(), (id, version.to_string()));
        self
    }

    pub fn row(&mut self, event: &RecordedEvent) -> AuditRow {
        let decoded = ServiceEvent::from_recorded(event).ok().flatten();
        self.row_decoded(event, decoded.as_ref())
    }

    /// As [`AuditChain::row`], for a caller that has decoded the event already.
    pub fn row_decoded(
        &mut self,
        event: &RecordedEvent,
        decoded: Option<&ServiceEvent>,
    ) -> AuditRow {
        self.seq += 1;
        self.head = next_hash(&self.head, event);
        let own_service = service_of(&event.stream);
        let version = decoded
            .and_then(version_of)
            .or_else(|| own_service.and_then(|s| self.rollout_version(s, decoded)));
        if let Some(service) = own_service {
            self.follow_rollout(service, decoded);
        }
        AuditRow {
            seq: self.seq,
            position: event.position.to_token(),
            stream: event.stream.to_string(),
            service: service_of(&event.stream)
                .map(str::to_string)
                .or_else(|| decoded.and_then(claiming_service)),
            revision: event.revision.0,
            event_type: event.event_type.clone(),
            actor: event.metadata.actor.clone(),
            occurred_at: event.metadata.occurred_at,
            recorded_at: event.recorded_at,
            version,
            summary: decoded.map_or_else(
                || format!("{} (not known to this trail)", event.event_type),
                summary,
            ),
            data: event.data.clone(),
            hash: to_hex(&self.head),
        }
    }
}

impl AuditChain {
    /// The version of the rollout an event of `service`'s stream belongs to: the one it names
    /// by id, else the one in progress. A config saved mid-rollout belongs to none.
    fn rollout_version(&self, service: &str, decoded: Option<&ServiceEvent>) -> Option<String> {
        if matches!(decoded, Some(ServiceEvent::ConfigSaved { .. })) {
            return None;
        }
        let (id, version) = self.rollouts.get(service)?;
        match decoded.and_then(ServiceEvent::rollout_id) {
            Some(named) if named != *id => None,
            _ => Some(version.clone()),
        }
    }

    /// A release or rollback request opens a rollout; its end (completed, rolled back,
    /// superseded) closes it, after its own row.
    fn follow_rollout(&mut self, service: &str, decoded: Option<&ServiceEvent>) {
        use ServiceEvent::*;
        match decoded {
            Some(ReleaseRequested {
                rollout_id,
                version,
                ..
            })
            | Some(RollbackRequested {
                rollout_id,
                to_version: version,
                ..
            }) => {
                self.rollouts
                    .insert(service.to_string(), (*rollout_id, version.clone()));
            }
            Some(
                RolloutCompleted { rollout_id }
                | RolledBack { rollout_id, .. }
                | RolloutSuperseded { rollout_id, .. },
            ) if self
                .rollouts
                .get(service)
                .is_some_and(|(id, _)| id == rollout_id) =>
            {
                self.rollouts.remove(service);
            }
            _ => {}
        }
    }
}

/// Whether a stored row's `version` is what the event implies: `expected` (what this build
/// projects), or, for rows projected before rollouts filled the version, only the version the
/// event names itself.
pub fn version_matches(
    expected: &AuditRow,
    event: &RecordedEvent,
    stored: Option<&String>,
) -> bool {
    stored == expected.version.as_ref()
        || stored.cloned()
            == ServiceEvent::from_recorded(event)
                .ok()
                .flatten()
                .as_ref()
                .and_then(version_of)
}

/// The service a `load-balancers` stream event is about (that stream is no service's own).
fn claiming_service(event: &ServiceEvent) -> Option<String> {
    match event {
        ServiceEvent::LoadBalancerClaimed { service, .. }
        | ServiceEvent::LoadBalancerReleased { service, .. } => Some(service.clone()),
        _ => None,
    }
}

/// The first eight hex digits of a token id: enough to tell two tokens of one name apart.
fn short_id(id: &uuid::Uuid) -> String {
    id.simple().to_string()[..8].to_string()
}

fn version_of(event: &ServiceEvent) -> Option<String> {
    match event {
        ServiceEvent::ReleaseRequested { version, .. } => Some(version.clone()),
        ServiceEvent::RollbackRequested { to_version, .. } => Some(to_version.clone()),
        ServiceEvent::EnvironmentObserved { environment } => Some(environment.version.clone()),
        ServiceEvent::ActionIntended {
            action: Action::CreateEnvironment { version, .. },
            ..
        } => Some(version.clone()),
        _ => None,
    }
}

/// ": REASON" when a person gave one.
fn because(reason: &Option<String>) -> String {
    reason
        .as_ref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default()
}

/// A sentence a person reads in the audit table.
pub fn summary(event: &ServiceEvent) -> String {
    use ServiceEvent::*;
    match event {
        ConfigSaved { config_version, .. } => format!("config version {config_version} saved"),
        ReleaseRequested {
            version,
            reason,
            override_alarms,
            ..
        } => format!(
            "release of {version} requested{}{}",
            reason
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default(),
            if *override_alarms {
                " (overriding firing alarms)"
            } else {
                ""
            }
        ),
        RollbackRequested { to_version, .. } => format!("rollback to {to_version} requested"),
        // Without its reason (in the row's data): audit rows already stored say exactly this,
        // and `trail verify` re-derives each row's sentence, so a new wording here would
        // report every stored pause as tampered with.
        PauseRequested { .. } => "pause requested".into(),
        ResumeRequested { reason } => format!("resume requested{}", because(reason)),
        PromoteRequested { full, reason } => format!(
            "promote{} requested{}",
            if *full {
                " to full (every step left skipped)"
            } else {
                ""
            },
            because(reason)
        ),
        AbortRequested { reason } => format!("abort requested{}", because(reason)),
        PlanComputed { plan, .. } => format!(
            "plan: {} step(s) into {}{}",
            plan.steps.len(),
            plan.environment,
            if plan.reuses_warm_environment {
                " (warm)"
            } else {
                ""
            }
        ),
        ActionIntended {
            action, attempt, ..
        } => {
            format!("intends to {} (attempt {attempt})", action.describe())
        }
        ActionSucceeded { detail, .. } => format!("action succeeded: {detail}"),
        ActionFailed { error, attempt, .. } => {
            format!("action failed (attempt {attempt}): {error}")
        }
        ObservationFailed { error } => format!("observing the cloud failed: {error}"),
        ObservationRecovered {} => "observing the cloud works again".to_string(),
        EnvironmentObserved { environment } => format!(
            "environment {} is {:?}/{:?} with {} instance(s)",
            environment.name,
            environment.status,
            environment.health,
            environment.instances.len()
        ),
        RegistrationsObserved {
            load_balancer,
            instances,
        } => format!(
            "{load_balancer} has {} instance(s) registered, {} in service",
            instances.len(),
            instances.iter().filter(|i| i.in_service).count()
        ),
        AlarmObserved { alarm } => format!(
            "alarm {} is {:?}: {}",
            alarm.name, alarm.state, alarm.reason
        ),
        TestEndpointReady { url, .. } => format!(
            "test endpoint ready at {}; waiting for a promote",
            url.clone().unwrap_or_else(|| "its own URL".into())
        ),
        StepStarted { step, percent, .. } => format!("step {} started: {percent}%", step + 1),
        StepCompleted { step, .. } => format!("step {} completed", step + 1),
        WaitingForPromote { step, .. } => {
            format!("waiting after step {} for a person to promote", step + 1)
        }
        RolloutCompleted { .. } => "rollout completed".into(),
        RollbackStarted { cause, .. } => format!("rollback started: {}", cause.summary()),
        RollbackStepStarted { percent, .. } => format!("rollback stepping down to {percent}%"),
        RolledBack { cause, .. } => format!("rolled back: {}", cause.summary()),
        RolloutSuperseded { by, .. } => format!("superseded by rollout {by}"),
        EnvironmentMarkedUnused { environment } => {
            format!("environment {environment} marked unused")
        }
        EnvironmentTerminated { environment } => format!("environment {environment} terminated"),
        DriftDetected { description } => format!("drift: {description}"),
        UnknownInstancesObserved {
            load_balancer,
            instances,
        } if instances.is_empty() => {
            format!("{load_balancer} has no instances of unknown origin any more")
        }
        UnknownInstancesObserved {
            load_balancer,
            instances,
        } => format!(
            "{load_balancer} has instance(s) of no environment of this service, left alone: {}",
            instances.join(", ")
        ),
        LoadBalancerClaimed {
            load_balancer,
            service,
        } => format!("{service} claimed load balancer {load_balancer}"),
        LoadBalancerReleased {
            load_balancer,
            service,
        } => format!("{service} released load balancer {load_balancer}"),
        // The secret's hash is never shown; the id names which token of that name it was.
        TokenCreated {
            token_id,
            name,
            role,
            services,
            expires_at,
            ..
        } => format!(
            "token {name} ({}) created: {role} on {}{}",
            short_id(token_id),
            if services.is_empty() {
                "every service".to_string()
            } else {
                services.join(", ")
            },
            expires_at.map_or_else(String::new, |at| format!(", expires {}", at.to_rfc3339()))
        ),
        TokenRevoked { token_id, name } => {
            format!("token {name} ({}) revoked", short_id(token_id))
        }
        AccessDenied {
            identity,
            request,
            needed,
            repeats,
        } => format!(
            "{identity} was refused {request}: {needed} was needed{}",
            if *repeats > 0 {
                format!(" ({repeats} more refusal(s) since the last one recorded)")
            } else {
                String::new()
            }
        ),
    }
}

/// The actors that are not people: the roller's own decisions and observations (its
/// `ROLLER_ACTOR`) and `ionroller up` creating the first admin token. Every other actor is a
/// token (`NAME via token ID`) or an OIDC subject (`WHO via ISSUER`), that is, a person or
/// their automation.
pub const MACHINE_ACTORS: &[&str] = &["roller", "ionroller up"];

/// Which rows an audit query wants.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditFilter {
    pub service: Option<String>,
    pub actor: Option<String>,
    /// Only rows whose actor is not one of [`MACHINE_ACTORS`].
    pub people_only: bool,
    pub event_type: Option<String>,
    pub version: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl AuditFilter {
    pub fn matches(&self, row: &AuditRow) -> bool {
        self.service
            .as_ref()
            .is_none_or(|s| row.service.as_ref() == Some(s))
            && self.actor.as_ref().is_none_or(|a| &row.actor == a)
            && !(self.people_only && MACHINE_ACTORS.contains(&row.actor.as_str()))
            && self
                .event_type
                .as_ref()
                .is_none_or(|t| &row.event_type == t)
            && self
                .version
                .as_ref()
                .is_none_or(|v| row.version.as_ref() == Some(v))
            && self.from.is_none_or(|f| row.occurred_at >= f)
            && self.to.is_none_or(|t| row.occurred_at < t)
    }
}

/// Recomputes the chain row by row against the log's events; `check` is false at the first
/// stored row that no longer matches what its event and the rows before it imply.
#[derive(Default)]
pub struct Verifier {
    chain: AuditChain,
}

impl Verifier {
    pub fn check(&mut self, row: &AuditRow, event: &RecordedEvent) -> bool {
        let expected = self.chain.row(event);
        expected.seq == row.seq
            && expected.hash == row.hash
            && expected.position == row.position
            && expected.stream == row.stream
            && expected.revision == row.revision
            && expected.event_type == row.event_type
            && expected.actor == row.actor
            && expected.occurred_at == row.occurred_at
            && version_matches(&expected, event, row.version.as_ref())
            && expected.data == row.data
    }

    pub fn rows_checked(&self) -> u64 {
        self.chain.seq
    }
}

/// Verifies a whole chain: `Ok(rows)` or `Err(seq of the first row that does not match)`.
pub fn verify<'a>(
    rows: impl IntoIterator<Item = (&'a AuditRow, &'a RecordedEvent)>,
) -> Result<u64, u64> {
    let mut verifier = Verifier::default();
    for (row, event) in rows {
        if !verifier.check(row, event) {
            return Err(row.seq);
        }
    }
    Ok(verifier.rows_checked())
}
