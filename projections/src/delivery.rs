//! The delivery report (DORA-style), computed from the release history: deployment
//! frequency, lead time from request to 100% traffic, change-failure rate, and time to
//! restore after an alarm.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Utc};
use ionroller_shared::events::RollbackCause;
use serde::{Deserialize, Serialize};

use crate::releases::{Release, ReleaseOutcome};

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryReport {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub service: Option<String>,
    pub overall: Figures,
    pub per_service: BTreeMap<String, Figures>,
    /// ISO day (`2026-11-25`) → figures for releases that ended that day.
    pub per_day: BTreeMap<String, Figures>,
    /// ISO week (`2026-W48`).
    pub per_week: BTreeMap<String, Figures>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Releases that reached 100% traffic.
    pub deployments: u64,
    /// Releases rolled back or aborted (superseded ones are neither).
    pub failures: u64,
    /// failures ÷ (deployments + failures); `None` with no finished release.
    pub change_failure_rate: Option<f64>,
    pub lead_time_mean_secs: Option<f64>,
    pub lead_time_median_secs: Option<f64>,
    /// From the alarm's transition to ALARM to traffic fully back on the previous version.
    pub time_to_restore_mean_secs: Option<f64>,
    #[serde(skip)]
    lead_times: Vec<f64>,
    #[serde(skip)]
    restores: Vec<f64>,
}

impl Figures {
    fn add(&mut self, release: &Release) {
        let Some(end) = release.ended_at else { return };
        match &release.outcome {
            Some(ReleaseOutcome::Completed) => {
                self.deployments += 1;
                self.lead_times.push(secs(release.requested_at, end));
            }
            Some(ReleaseOutcome::RolledBack { cause }) => {
                self.failures += 1;
                if let RollbackCause::Alarm { alarm } = cause {
                    self.restores
                        .push(secs(alarm.updated_at.max(release.requested_at), end));
                }
            }
            _ => {}
        }
    }

    fn finish(&mut self) {
        let finished = self.deployments + self.failures;
        self.change_failure_rate = (finished > 0).then(|| self.failures as f64 / finished as f64);
        self.lead_time_mean_secs = mean(&self.lead_times);
        self.lead_time_median_secs = median(&mut self.lead_times);
        self.time_to_restore_mean_secs = mean(&self.restores);
    }
}

/// The report over releases that ended in `[from, to)`, for one service or all.
pub fn delivery_report<'a>(
    releases: impl IntoIterator<Item = &'a Release>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    service: Option<&str>,
) -> DeliveryReport {
    let mut report = DeliveryReport {
        from,
        to,
        service: service.map(str::to_string),
        overall: Figures::default(),
        per_service: BTreeMap::new(),
        per_day: BTreeMap::new(),
        per_week: BTreeMap::new(),
    };
    for r in releases {
        let Some(end) = r.ended_at else { continue };
        if from.is_some_and(|f| end < f) || to.is_some_and(|t| end >= t) {
            continue;
        }
        if service.is_some_and(|s| s != r.service) {
            continue;
        }
        report.overall.add(r);
        report
            .per_service
            .entry(r.service.clone())
            .or_default()
            .add(r);
        report
            .per_day
            .entry(end.format("%Y-%m-%d").to_string())
            .or_default()
            .add(r);
        let week = end.iso_week();
        report
            .per_week
            .entry(format!("{}-W{:02}", week.year(), week.week()))
            .or_default()
            .add(r);
    }
    report.overall.finish();
    for f in report
        .per_service
        .values_mut()
        .chain(report.per_day.values_mut())
        .chain(report.per_week.values_mut())
    {
        f.finish();
    }
    report
}

fn secs(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds().max(0) as f64 / 1000.0
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}
