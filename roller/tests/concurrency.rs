//! Services reconcile concurrently, up to the worker count, and a service whose cloud calls
//! hang delays no other service beyond its own timeout.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::http::StatusCode;
use ionroller_roller::cloud::sim::{SimCloud, SimSettings};
use ionroller_roller::cloud::{Cloud, CloudError};
use ionroller_roller::shell::{Roller, Stopped};
use ionroller_shared::cloud::CloudView;
use ionroller_shared::config::ServiceConfig;
use ionroller_shared::events::{Action, AlarmState};
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
    /// The first observation of this service says so and waits for a go.
    held: Option<Held>,
}

struct Held {
    service: &'static str,
    entered: Arc<tokio::sync::Notify>,
    go: Arc<tokio::sync::Notify>,
    once: std::sync::atomic::AtomicBool,
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
        if let Some(held) = self.held.as_ref().filter(|h| h.service == service) {
            if !held.once.swap(true, Ordering::SeqCst) {
                held.entered.notify_one();
                held.go.notified().await;
            }
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
    world_held(workers, timeout, stuck, most, None)
}

fn world_held(
    workers: usize,
    timeout: Duration,
    stuck: Option<&'static str>,
    most: Arc<AtomicUsize>,
    held: Option<Held>,
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
                held,
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

async fn release_v1_of_all_three(w: &World) {
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
    release_v1_of_all_three(&w).await;
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

/// The roller of `w`, run as `up` runs it (a pass every 50 ms), and how to stop it.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<ionroller_roller::shell::Stopped>,
    started: Instant,
}

/// Everything these tests wait for happens within this, far less than the service timeout.
const WITHIN: Duration = Duration::from_secs(20);

fn run(w: &mut World) -> Running {
    run_every(w, Duration::from_millis(50))
}

/// The roller of `w` with passes every `interval`, and at once when the API records a command.
fn run_every(w: &mut World, interval: Duration) -> Running {
    let idle = Roller::new(w.store.clone(), Arc::new(w.sim.clone()), w.clock.clone());
    let roller = std::mem::replace(&mut w.roller, idle);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(roller.run(interval, w.wake.clone(), async move {
        let _ = stopped.await;
    }));
    Running {
        stop,
        task,
        started: Instant::now(),
    }
}

impl Running {
    /// Stops the roller; it must stop within its shutdown grace, whatever still hangs.
    async fn stop(self) -> Stopped {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the roller stops within its shutdown grace")
            .expect("the roller's task")
    }
}

async fn status_of(w: &World, name: &str) -> serde_json::Value {
    let (status, body) = w.call("GET", &format!("/v1/services/{name}"), "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Waits until `done` holds for `name`'s status, failing once `WITHIN` has passed since the
/// roller started.
async fn wait_until(
    w: &World,
    r: &Running,
    name: &str,
    what: &str,
    done: fn(&serde_json::Value) -> bool,
) {
    loop {
        let body = status_of(w, name).await;
        if done(&body) {
            return;
        }
        assert!(r.started.elapsed() < WITHIN, "{name}: {what}: {body:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn v1_serving(s: &serde_json::Value) -> bool {
    s["rollout"].is_null() && s["stable_version"] == "v1"
}

/// A world of three services whose simulated environments launch at once, and whose cloud
/// never answers for beta; `service_timeout` is far longer than the test.
async fn beta_hangs(workers: usize) -> World {
    let most = Arc::new(AtomicUsize::new(0));
    let w = world(workers, Duration::from_secs(600), Some("beta"), most);
    w.sim
        .set_settings(SimSettings {
            launch_secs: 0.0,
            healthy_secs: 0.0,
        })
        .expect("sim settings");
    three_services(&w).await;
    w
}

async fn save(w: &World, name: &str, config: serde_json::Value) {
    let (status, body) = w
        .call(
            "PUT",
            &format!("/v1/services/{name}/config"),
            &config.to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

fn hello_on(load_balancer: &str) -> serde_json::Value {
    let mut config: serde_json::Value = serde_json::from_str(HELLO).expect("example config");
    config["endpoint"]["load_balancer"]["name"] = load_balancer.into();
    config
}

/// The roller as `up` runs it, with one service's cloud calls hanging: the other services
/// release, and an alarm rolls one of them back, within seconds. Passes do not wait for the
/// hung service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_service_does_not_delay_another_services_rollback() {
    // 2 workers: beta's hung reconcile holds one of them throughout.
    let mut w = beta_hangs(2).await;
    let mut alpha = hello_on("alpha-lb");
    alpha["rollout"]["alarms"] = serde_json::json!(["alpha-5xx"]);
    save(&w, "alpha", alpha).await;
    let r = run(&mut w);

    release_v1_of_all_three(&w).await;
    wait_until(&w, &r, "alpha", "v1 serving", v1_serving).await;
    wait_until(&w, &r, "gamma", "v1 serving", v1_serving).await;
    let (status, body) = w
        .call("POST", "/v1/services/alpha/releases", r#"{"version":"v2"}"#)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    wait_until(&w, &r, "alpha", "v2 at its canary", |s| {
        s["rollout"]["waiting_for"]
            .as_str()
            .is_some_and(|w| w.starts_with("promote"))
    })
    .await;
    w.clock.advance(chrono::Duration::seconds(1));
    w.sim
        .set_alarm("alpha-5xx", AlarmState::Alarm, None, Some(12.0))
        .expect("alarm");
    wait_until(&w, &r, "alpha", "rolled back to v1", |s| {
        v1_serving(s) && s["history"][0]["outcome"] == "rolled_back"
    })
    .await;
    let beta = status_of(&w, "beta").await;
    assert!(
        beta["stable_version"].is_null(),
        "beta's cloud never answered: {beta:#}"
    );
    assert_eq!(
        r.stop().await,
        Stopped::Abandoned(1),
        "beta's reconcile, cut off"
    );
}

/// Workers are counted per account-region: with one worker, beta (in an account of its own)
/// hanging holds that account's worker, and the services of the other account go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_account_takes_no_worker_of_another_account() {
    let mut w = beta_hangs(1).await;
    let mut beta = hello_on("beta-lb");
    beta["aws"]["role_arn"] = "arn:aws:iam::210987654321:role/ionroller-deployer".into();
    save(&w, "beta", beta).await;
    let r = run(&mut w);

    release_v1_of_all_three(&w).await;
    // In name order, beta's reconcile starts before gamma's: with one worker for all
    // accounts, gamma would wait for beta's timeout.
    wait_until(&w, &r, "alpha", "v1 serving", v1_serving).await;
    wait_until(&w, &r, "gamma", "v1 serving", v1_serving).await;
    assert_eq!(
        r.stop().await,
        Stopped::Abandoned(1),
        "beta's reconcile, cut off"
    );
}

/// A command recorded while its service is being reconciled (here: its observation held
/// until the command is in) is acted on as soon as that reconcile ends, not at the next
/// interval (a minute here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_recorded_mid_reconcile_is_acted_on_without_waiting_for_the_interval() {
    let entered = Arc::new(tokio::sync::Notify::new());
    let go = Arc::new(tokio::sync::Notify::new());
    let held = Held {
        service: "alpha",
        entered: entered.clone(),
        go: go.clone(),
        once: std::sync::atomic::AtomicBool::new(false),
    };
    let most = Arc::new(AtomicUsize::new(0));
    let mut w = world_held(3, Duration::from_secs(600), None, most, Some(held));
    three_services(&w).await;
    let r = run_every(&mut w, Duration::from_secs(60));
    entered.notified().await;
    let (status, body) = w
        .call("POST", "/v1/services/alpha/releases", r#"{"version":"v1"}"#)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    go.notify_one();
    while w.sim.creations() == 0 {
        assert!(
            r.started.elapsed() < Duration::from_secs(10),
            "alpha's environment was not created"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(r.stop().await, Stopped::Clean);
}
