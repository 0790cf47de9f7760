//! The roller's `/metrics`, through `prometheus-client` (the Prometheus project's own Rust
//! client). They describe the process and, where the cardinality allows, each service: service
//! state itself comes from the log.
//!
//! Labels are only ever the service name (hundreds at most per roller) and a fixed set of
//! outcomes; never a version, an environment or a rollout id, which grow without bound.
//! A labelled family is exposed from its first series on: before any service has failed, there
//! is no `ionroller_service_reconcile_failures_total` at all (the total says 0).
//!
//! The exposition is the classic Prometheus text format (0.0.4) rather than OpenMetrics: it
//! keeps `# TYPE` lines and sample names exactly as they were when this was written by hand,
//! and every Prometheus server reads it.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};

/// The `Content-Type` of what [`Metrics::render`] returns.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// A gauge of a count (services, positions): never negative, so `u64` like its source.
pub type Level = Gauge<u64, AtomicU64>;

/// Encoding the registry failed. Writing into a `String` cannot, so this only guards against a
/// metric that refuses to encode.
#[derive(Debug, thiserror::Error)]
#[error("encode the metrics: {0}")]
pub struct MetricsError(#[from] std::fmt::Error);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloudCallLabels {
    api: String,
    region: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    endpoint: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    service: String,
    outcome: &'static str,
}

/// Shared by the shell (which counts) and the API (which renders).
///
/// Process-wide counters and gauges are public and bumped with [`Metrics::add`] and
/// [`Metrics::set`]. Those with a per-service twin are private and bumped through a method,
/// so that the total and the per-service series cannot disagree.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    head: Level,
    pub passes: Counter,
    service_failures: Counter,
    pub events_appended: Counter,
    pub append_conflicts: Counter,
    /// Requests refused for want of valid credentials (401).
    pub unauthenticated: Counter,
    /// Requests refused for want of a role or scope (403).
    pub forbidden: Counter,
    actions_succeeded: Counter,
    actions_failed: Counter,
    pub services: Level,
    pub rollouts_in_progress: Level,
    /// Shards of the services this replica holds the lease on (all of them for a lone roller).
    pub lease_shards_held: Level,
    /// Leases taken (each at a new epoch), and lost (taken over, expired, or refused).
    pub leases_acquired: Counter,
    pub leases_lost: Counter,
    /// Appends refused because this replica's lease had passed to another.
    pub fenced_appends: Counter,
    /// Services whose turn waits for a reconcile worker of their account-region.
    pub queue_depth: Level,
    last_pass_seconds: Gauge<f64, AtomicU64>,
    pass_seconds: Histogram,
    failures_by_service: Family<ServiceLabels, Counter>,
    actions_by_service: Family<ActionLabels, Counter>,
    /// One service's reconcile, within a pass (passes reconcile several at once).
    reconcile_seconds_by_service: Family<ServiceLabels, Histogram, fn() -> Histogram>,
    /// Every attempt of every cloud API call, and those the cloud throttled.
    cloud_attempts: Family<CloudCallLabels, Counter>,
    cloud_throttled: Family<CloudCallLabels, Counter>,
    /// Notification attempts by endpoint and outcome (delivered, failed).
    notification_attempts: Family<DeliveryLabels, Counter>,
    /// 1 while an endpoint's last attempt failed (its notifications wait and are retried).
    notification_failing: Family<EndpointLabels, Level>,
}

/// 1 ms (the simulator) to about 65 s (past the 60 s per-service timeout).
fn service_reconcile_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Registers `metric` and hands it back: metrics are shared handles, so the registry's copy and
/// the returned one count together.
fn register<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::default();
        // Exposed in this order. Counters are registered without `_total`: the encoder appends
        // it (and a debug build panics on a counter name that already ends with it).
        Metrics {
            head: register(
                &mut r,
                "ionroller_store_head_position",
                "Position of the last event in the log",
                Level::default(),
            ),
            passes: register(
                &mut r,
                "ionroller_reconcile_passes",
                "Reconcile passes over all services",
                Counter::default(),
            ),
            service_failures: register(
                &mut r,
                "ionroller_reconcile_failures",
                "Service reconciles that failed (store or poison event)",
                Counter::default(),
            ),
            failures_by_service: register(
                &mut r,
                "ionroller_service_reconcile_failures",
                "Reconciles of this service that failed (store or poison event)",
                Family::default(),
            ),
            last_pass_seconds: register(
                &mut r,
                "ionroller_reconcile_last_pass_seconds",
                "Duration of the last reconcile pass",
                Gauge::default(),
            ),
            // 5 ms (a few simulated services) to about 41 s (hundreds of services on AWS, each
            // observed with several calls).
            reconcile_seconds_by_service: register(
                &mut r,
                "ionroller_service_reconcile_duration_seconds",
                "Durations of one service's reconcile within a pass",
                Family::new_with_constructor(service_reconcile_histogram as fn() -> Histogram),
            ),
            pass_seconds: register(
                &mut r,
                "ionroller_reconcile_pass_duration_seconds",
                "Durations of reconcile passes over all services",
                Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            ),
            events_appended: register(
                &mut r,
                "ionroller_events_appended",
                "Events the roller appended",
                Counter::default(),
            ),
            unauthenticated: register(
                &mut r,
                "ionroller_http_unauthenticated",
                "API requests refused without valid credentials (401)",
                Counter::default(),
            ),
            forbidden: register(
                &mut r,
                "ionroller_http_forbidden",
                "API requests refused for a missing role or scope (403)",
                Counter::default(),
            ),
            append_conflicts: register(
                &mut r,
                "ionroller_append_conflicts",
                "Appends that lost to a concurrent writer and were re-decided",
                Counter::default(),
            ),
            actions_succeeded: register(
                &mut r,
                "ionroller_actions_succeeded",
                "Cloud actions that succeeded",
                Counter::default(),
            ),
            actions_failed: register(
                &mut r,
                "ionroller_actions_failed",
                "Cloud actions that failed (each is retried with backoff)",
                Counter::default(),
            ),
            actions_by_service: register(
                &mut r,
                "ionroller_service_actions",
                "Cloud actions executed for this service, by outcome (succeeded or failed)",
                Family::default(),
            ),
            services: register(
                &mut r,
                "ionroller_services",
                "Services with a saved config",
                Level::default(),
            ),
            rollouts_in_progress: register(
                &mut r,
                "ionroller_rollouts_in_progress",
                "Services with a rollout under way",
                Level::default(),
            ),
            lease_shards_held: register(
                &mut r,
                "ionroller_lease_shards_held",
                "Shards of the services whose lease this replica holds (of 32)",
                Level::default(),
            ),
            leases_acquired: register(
                &mut r,
                "ionroller_leases_acquired",
                "Shard leases this replica took, each at a new epoch",
                Counter::default(),
            ),
            leases_lost: register(
                &mut r,
                "ionroller_leases_lost",
                "Shard leases this replica lost without giving them up (taken over or expired)",
                Counter::default(),
            ),
            fenced_appends: register(
                &mut r,
                "ionroller_fenced_appends",
                "Appends refused because the lease of the service's shard had passed to another replica",
                Counter::default(),
            ),
            queue_depth: register(
                &mut r,
                "ionroller_reconcile_queue_depth",
                "Services waiting for a reconcile worker of their account-region",
                Level::default(),
            ),
            cloud_attempts: register(
                &mut r,
                "ionroller_cloud_api_attempts",
                "Attempts of cloud API calls (retries included), by API and region",
                Family::default(),
            ),
            cloud_throttled: register(
                &mut r,
                "ionroller_cloud_api_throttled",
                "Attempts the cloud answered with a throttling error, by API and region",
                Family::default(),
            ),
            notification_attempts: register(
                &mut r,
                "ionroller_notification_attempts",
                "Attempts to deliver a notification, by endpoint and outcome (delivered, failed)",
                Family::default(),
            ),
            notification_failing: register(
                &mut r,
                "ionroller_notification_endpoint_failing",
                "1 while the endpoint's last delivery attempt failed (it is retried with backoff)",
                Family::default(),
            ),
            registry: r,
        }
    }
}

impl Metrics {
    /// One attempt to deliver a notification to `endpoint`.
    pub fn notification_attempt(&self, endpoint: &str, delivered: bool) {
        let outcome = if delivered { "delivered" } else { "failed" };
        self.notification_attempts
            .get_or_create(&DeliveryLabels {
                endpoint: endpoint.to_string(),
                outcome,
            })
            .inc();
        self.notification_failing
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.to_string(),
            })
            .set(u64::from(!delivered));
    }

    pub fn add(counter: &Counter, n: u64) {
        counter.inc_by(n);
    }

    pub fn set(gauge: &Level, value: u64) {
        gauge.set(value);
    }

    /// A reconcile of `service` failed.
    pub fn reconcile_failed(&self, service: &str) {
        self.service_failures.inc();
        self.failures_by_service
            .get_or_create(&ServiceLabels {
                service: service.to_string(),
            })
            .inc();
    }

    /// A cloud action for `service` finished; `succeeded` is false when it failed.
    pub fn action_finished(&self, service: &str, succeeded: bool) {
        let (total, outcome) = if succeeded {
            (&self.actions_succeeded, "succeeded")
        } else {
            (&self.actions_failed, "failed")
        };
        total.inc();
        self.actions_by_service
            .get_or_create(&ActionLabels {
                service: service.to_string(),
                outcome,
            })
            .inc();
    }

    /// One reconcile of `service` took `took` (abandoned ones count at their timeout).
    pub fn service_took(&self, service: &str, took: Duration) {
        self.reconcile_seconds_by_service
            .get_or_create(&ServiceLabels {
                service: service.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// A reconcile pass over all services took `took`.
    pub fn pass_took(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        self.last_pass_seconds.set(seconds);
        self.pass_seconds.observe(seconds);
    }

    /// The exposition text; `head` is the log's last position (its sequence part), read by the
    /// caller at scrape time because only it holds the store.
    pub fn render(&self, head: u64) -> Result<String, MetricsError> {
        self.head.set(head);
        let mut out = String::new();
        prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The AWS driver reports its calls here.
impl ionroller_shared::cloud::CallRecorder for Metrics {
    fn attempt(&self, api: &str, region: &str) {
        self.cloud_attempts
            .get_or_create(&CloudCallLabels {
                api: api.to_string(),
                region: region.to_string(),
            })
            .inc();
    }

    fn throttled(&self, api: &str, region: &str) {
        self.cloud_throttled
            .get_or_create(&CloudCallLabels {
                api: api.to_string(),
                region: region.to_string(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels_are_the_ones_dashboards_read() {
        let m = Metrics::default();
        Metrics::add(&m.passes, 2);
        Metrics::set(&m.services, 3);
        m.reconcile_failed("hello");
        m.action_finished("hello", true);
        m.action_finished("hello", false);
        m.pass_took(Duration::from_millis(1500));
        use ionroller_shared::cloud::CallRecorder;
        m.attempt("DescribeEnvironments", "us-east-1");
        m.attempt("DescribeEnvironments", "us-east-1");
        m.throttled("DescribeEnvironments", "us-east-1");
        let text = m.render(42).expect("render");
        for line in [
            "# TYPE ionroller_reconcile_passes_total counter",
            "ionroller_reconcile_passes_total 2",
            "ionroller_services 3",
            "ionroller_store_head_position 42",
            "ionroller_reconcile_failures_total 1",
            "ionroller_service_reconcile_failures_total{service=\"hello\"} 1",
            "ionroller_actions_succeeded_total 1",
            "ionroller_actions_failed_total 1",
            "ionroller_service_actions_total{service=\"hello\",outcome=\"succeeded\"} 1",
            "ionroller_service_actions_total{service=\"hello\",outcome=\"failed\"} 1",
            "ionroller_reconcile_last_pass_seconds 1.5",
            "ionroller_reconcile_pass_duration_seconds_count 1",
            "ionroller_reconcile_pass_duration_seconds_bucket{le=\"2.56\"} 1",
            "ionroller_cloud_api_attempts_total{api=\"DescribeEnvironments\",region=\"us-east-1\"} 2",
            "ionroller_cloud_api_throttled_total{api=\"DescribeEnvironments\",region=\"us-east-1\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
