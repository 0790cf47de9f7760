//! Trail's `/metrics`, through `prometheus-client` (the Prometheus project's own Rust client).
//!
//! Every value is a gauge read at scrape time: the log's head from the store, the rest from
//! the projector's [`Status`], which already is the one record of how far trail has got.
//! Keeping a second copy in counters the runner bumps could only drift from it.
//!
//! The exposition is the classic Prometheus text format (0.0.4), as the roller's is: sample
//! names and `# TYPE` lines stay what they were when this was written by hand.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use ionroller_shared::store::Position;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::runner::Status;

/// The `Content-Type` of what [`TrailMetrics::render`] returns.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

type Level = Gauge<u64, AtomicU64>;

/// Encoding the registry failed. Writing into a `String` cannot, so this only guards against a
/// metric that refuses to encode.
#[derive(Debug, thiserror::Error)]
#[error("encode the metrics: {0}")]
pub struct MetricsError(#[from] std::fmt::Error);

#[derive(Debug)]
pub struct TrailMetrics {
    /// Held from setting the gauges to encoding them, so that two scrapes at once cannot mix
    /// one's head with the other's checkpoint (the lag is only meaningful against both).
    rendering: Mutex<()>,
    registry: Registry,
    head: Level,
    checkpoint: Level,
    lag: Level,
    rows: Level,
    stopped: Level,
    unauthenticated: prometheus_client::metrics::counter::Counter,
    forbidden: prometheus_client::metrics::counter::Counter,
}

impl Default for TrailMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let mut gauge = |name: &str, help: &str| {
            let g = Level::default();
            registry.register(name, help, g.clone());
            g
        };
        // Exposed in this order.
        let head = gauge(
            "trail_store_head_position",
            "Position of the last event in the log",
        );
        let checkpoint = gauge(
            "trail_checkpoint_position",
            "Position of the last event projected",
        );
        let lag = gauge(
            "trail_lag_events",
            "Events in the log not yet projected (head - checkpoint)",
        );
        let rows = gauge("trail_audit_rows", "Audit rows stored");
        let stopped = gauge("trail_stopped", "1 when a poison event stopped projecting");
        let unauthenticated = prometheus_client::metrics::counter::Counter::default();
        registry.register(
            "trail_http_unauthenticated",
            "API requests refused without valid credentials (401)",
            unauthenticated.clone(),
        );
        let forbidden = prometheus_client::metrics::counter::Counter::default();
        registry.register(
            "trail_http_forbidden",
            "API requests refused for a missing role or scope (403)",
            forbidden.clone(),
        );
        TrailMetrics {
            unauthenticated,
            forbidden,
            rendering: Mutex::new(()),
            registry,
            head,
            checkpoint,
            lag,
            rows,
            stopped,
        }
    }
}

impl TrailMetrics {
    /// Counts a request the guard refused.
    pub fn refused(&self, refused: ionroller_auth::guard::Refused) {
        match refused {
            ionroller_auth::guard::Refused::Unauthenticated => self.unauthenticated.inc(),
            ionroller_auth::guard::Refused::Forbidden => self.forbidden.inc(),
        };
    }

    /// The exposition text; `head` is the log's last position (its sequence part).
    pub fn render(&self, head: u64, status: &Status) -> Result<String, MetricsError> {
        let checkpoint = status
            .checkpoint
            .as_deref()
            .and_then(|t| Position::from_token(t).ok())
            .map_or(0, |p| p.commit());
        // A poisoned lock only means an earlier render panicked; the gauges are atomics and
        // are all set again below, so carrying on is sound.
        let _rendering = self
            .rendering
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.head.set(head);
        self.checkpoint.set(checkpoint);
        self.lag.set(head.saturating_sub(checkpoint));
        self.rows.set(status.rows);
        self.stopped.set(u64::from(status.error.is_some()));
        let mut out = String::new();
        prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
