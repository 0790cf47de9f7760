//! The traffic timeline: for each service, the intervals during which each version (and
//! environment, and config version) served what share of in-service traffic, so that "what
//! ran at time T" is one binary search.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ionroller_shared::events::{service_of, ServiceEvent};
use ionroller_shared::store::RecordedEvent;
use serde::{Deserialize, Serialize};

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub from: DateTime<Utc>,
    /// `None` while it is the current one.
    pub to: Option<DateTime<Utc>>,
    pub shares: Vec<Share>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Share {
    pub version: String,
    pub environment: String,
    pub config_version: u32,
    /// 0.0 to 1.0 of in-service registered instances.
    pub share: f64,
}

#[derive(Clone, Debug, Default)]
struct Instances {
    /// Instance id → (environment, version, config version).
    owners: BTreeMap<String, (String, String, u32)>,
}

#[derive(Clone, Debug, Default)]
pub struct TrafficTimeline {
    pub services: BTreeMap<String, Vec<Interval>>,
    instances: BTreeMap<String, Instances>,
}

impl TrafficTimeline {
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
        match decoded {
            ServiceEvent::EnvironmentObserved { environment } => {
                let known = self.instances.entry(service.to_string()).or_default();
                for i in &environment.instances {
                    known.owners.insert(
                        i.id.clone(),
                        (
                            environment.name.clone(),
                            environment.version.clone(),
                            environment.config_version,
                        ),
                    );
                }
            }
            ServiceEvent::RegistrationsObserved { instances, .. } => {
                let known = self.instances.entry(service.to_string()).or_default();
                let in_service: Vec<&String> = instances
                    .iter()
                    .filter(|i| i.in_service)
                    .map(|i| &i.id)
                    .collect();
                let mut counts: BTreeMap<(String, String, u32), usize> = BTreeMap::new();
                for id in &in_service {
                    let owner = known
                        .owners
                        .get(*id)
                        .cloned()
                        .unwrap_or_else(|| ("(unknown)".into(), "(unknown)".into(), 0));
                    *counts.entry(owner).or_default() += 1;
                }
                let total = in_service.len().max(1) as f64;
                let shares: Vec<Share> = counts
                    .into_iter()
                    .map(|((environment, version, config_version), n)| Share {
                        version,
                        environment,
                        config_version,
                        share: n as f64 / total,
                    })
                    .collect();
                let intervals = self.services.entry(service.to_string()).or_default();
                if intervals.last().is_some_and(|last| last.shares == shares) {
                    return;
                }
                if let Some(last) = intervals.last_mut() {
                    last.to = Some(at);
                }
                intervals.push(Interval {
                    from: at,
                    to: None,
                    shares,
                });
            }
            _ => {}
        }
    }

    /// What served `service` at `time`: the interval containing it, if any.
    pub fn at(&self, service: &str, time: DateTime<Utc>) -> Option<&Interval> {
        let intervals = self.services.get(service)?;
        let i = intervals.partition_point(|iv| iv.from <= time);
        let candidate = intervals.get(i.checked_sub(1)?)?;
        candidate.to.is_none_or(|to| time < to).then_some(candidate)
    }
}
