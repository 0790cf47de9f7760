//! Counters the roller keeps for `/metrics` (Prometheus text format). They describe the
//! process, not the services: service state comes from the log.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub passes: AtomicU64,
    pub service_failures: AtomicU64,
    pub events_appended: AtomicU64,
    pub append_conflicts: AtomicU64,
    pub actions_succeeded: AtomicU64,
    pub actions_failed: AtomicU64,
    pub services: AtomicU64,
    pub rollouts_in_progress: AtomicU64,
    /// Duration of the last reconcile pass, in microseconds.
    pub last_pass_micros: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn set(gauge: &AtomicU64, value: u64) {
        gauge.store(value, Ordering::Relaxed);
    }

    /// The exposition text; `head` is the log's last position (its sequence part).
    pub fn render(&self, head: u64) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let rows: [(&str, &str, &str, String); 10] = [
            (
                "ionroller_store_head_position",
                "gauge",
                "Position of the last event in the log.",
                head.to_string(),
            ),
            (
                "ionroller_reconcile_passes_total",
                "counter",
                "Reconcile passes over all services.",
                get(&self.passes).to_string(),
            ),
            (
                "ionroller_reconcile_failures_total",
                "counter",
                "Service reconciles that failed (store or poison event).",
                get(&self.service_failures).to_string(),
            ),
            (
                "ionroller_reconcile_last_pass_seconds",
                "gauge",
                "Duration of the last reconcile pass.",
                format!("{:.6}", get(&self.last_pass_micros) as f64 / 1e6),
            ),
            (
                "ionroller_events_appended_total",
                "counter",
                "Events the roller appended.",
                get(&self.events_appended).to_string(),
            ),
            (
                "ionroller_append_conflicts_total",
                "counter",
                "Appends that lost to a concurrent writer and were re-decided.",
                get(&self.append_conflicts).to_string(),
            ),
            (
                "ionroller_actions_succeeded_total",
                "counter",
                "Cloud actions that succeeded.",
                get(&self.actions_succeeded).to_string(),
            ),
            (
                "ionroller_actions_failed_total",
                "counter",
                "Cloud actions that failed (each is retried with backoff).",
                get(&self.actions_failed).to_string(),
            ),
            (
                "ionroller_services",
                "gauge",
                "Services with a saved config.",
                get(&self.services).to_string(),
            ),
            (
                "ionroller_rollouts_in_progress",
                "gauge",
                "Services with a rollout under way.",
                get(&self.rollouts_in_progress).to_string(),
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        }
        out
    }
}
