//! Services reconcile concurrently, up to the worker count, and a service whose cloud calls
//! hang delays no other service beyond its own timeout.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::http::StatusCode;
use ionroller_roller::cloud::sim::SimCloud;
use ionroller_roller::cloud::{Cloud, CloudError};
use ionroller_shared::cloud::CloudView;
use ionroller_shared::config::ServiceConfig;
use ionroller_shared::events::Action;
use support::*;
use uuid::Uuid;

/// The simulator, with observations that count how many run at once, wait (up to `linger`)
/// for `together` of them to be in flight, and never return for the service `stuck`.
struct Gated {
    sim: SimCloud,
    in_flight: AtomicUsize,
    most: Arc<AtomicUsize>,
    together: usize,
    linger: Duration,
    stuck: Option<&'static str>,
}

#[async_trait]
impl Cloud for Gated {
    async fn observe(
        &self,
        service: &str,
        config: &ServiceConfig,
    ) -> Result<CloudView, CloudError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        if self.stuck == Some(service) {
            std::future::pending::<()>().await;
        }
        let until = Instant::now() + self.linger;
        while self.in_flight.load(Ordering::SeqCst) < self.together && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let view = self.sim.observe(service, config).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        view
    }

    async fn execute(
        &self,
        service: &str,
        config: &ServiceConfig,
        action_id: Uuid,
        action: &Action,
    ) -> Result<String, CloudError> {
        self.sim.execute(service, config, action_id, action).await
    }
}

fn world(
    workers: usize,
    timeout: Duration,
    stuck: Option<&'static str>,
    most: Arc<AtomicUsize>,
) -> World {
    World::create_with(
        |sim| {
            Arc::new(Gated {
                sim,
                in_flight: AtomicUsize::new(0),
                most,
                together: 3,
                linger: Duration::from_millis(300),
                stuck,
            })
        },
        |roller| roller.with_concurrency(workers, timeout),
    )
}

/// Three services, each with its own load balancer.
async fn three_services(w: &World) {
    for name in ["alpha", "beta", "gamma"] {
        let mut config: serde_json::Value = serde_json::from_str(HELLO).expect("example config");
        config["endpoint"]["load_balancer"]["name"] = format!("{name}-lb").into();
        config["rollout"]["alarms"] = serde_json::json!([]);
        let (status, body) = w
            .call(
                "PUT",
                &format!("/v1/services/{name}/config"),
                &config.to_string(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_reconcile_up_to_the_worker_count_at_once() {
    for (workers, expected) in [(3, 3), (2, 2), (1, 1)] {
        let most = Arc::new(AtomicUsize::new(0));
        let mut w = world(workers, Duration::from_secs(30), None, most.clone());
        three_services(&w).await;
        w.tick(1).await;
        assert_eq!(most.load(Ordering::SeqCst), expected, "{workers} worker(s)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_whose_cloud_hangs_delays_no_other_beyond_its_timeout() {
    let most = Arc::new(AtomicUsize::new(0));
    let mut w = world(2, Duration::from_millis(200), Some("beta"), most);
    three_services(&w).await;
    for name in ["alpha", "beta", "gamma"] {
        let (status, body) = w
            .call(
                "POST",
                &format!("/v1/services/{name}/releases"),
                r#"{"version":"v1"}"#,
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    // Each pass returns (beta abandoned at its timeout), and the others go on releasing.
    for _ in 0..20 {
        w.tick(2).await;
    }
    for name in ["alpha", "gamma"] {
        let state = w.roller.state(name).expect("known");
        assert_eq!(state.stable_version(), Some("v1"), "{name} was released");
    }
    let beta = w.roller.state("beta").expect("known");
    assert_eq!(beta.stable_version(), None, "beta's cloud never answered");
}
