//! The roller at scale, on the simulated cloud (in memory) with an injected latency on every
//! cloud call: how long a quiet reconcile pass takes, and how long from every service's alarm
//! entering ALARM to all of each service's traffic back on its previous version (p50 and p99
//! over services), at 100, 1,000 and 10,000 services. Measured side by side in one run with
//! one worker (the roller before concurrent reconcile: one service after another) and with
//! `--workers` at once. Also the memory the services take and the CPU one quiet pass costs.
//!
//! Each service runs the example config (a canary that waits to be promoted, alarm
//! `<service>-5xx`): v1 is released and served, v2 reaches its canary, then latency is turned on,
//! every alarm fires right after a pass ends (so each waits a whole interval for the next pass,
//! as the worst case does) and the roller runs pass, sleep interval, pass ... (`Roller::pass`
//! waits for every turn; `up` starts a pass every interval without waiting, so where a pass is
//! longer than the interval these times are an upper bound for it).
//!
//! `cargo bench -p ionroller-roller --bench scale -- [--services 100,1000,10000]
//!  [--one-worker-up-to 1000] [--workers 64] [--latency-ms 50] [--interval-ms 5000]
//!  [--store-dir /dev/shm] [--write "$PWD/BENCHMARKS.md"]`

#[path = "../../stores/tests/benches/report.rs"]
mod report;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use futures::StreamExt;
use ionroller_roller::api::{app, AppState};
use ionroller_roller::clock::{Clock, SystemClock};
use ionroller_roller::cloud::sim::{SimCloud, SimSettings};
use ionroller_roller::cloud::{Cloud, CloudError, CloudView};
use ionroller_roller::shell::Roller;
use ionroller_shared::config::ServiceConfig;
use ionroller_shared::events::{Action, AlarmState};
use ionroller_shared::store::EventStore;
use ionroller_store_sqlite::{SqliteOptions, SqliteStore};
use tower::ServiceExt;
use uuid::Uuid;

type Error = Box<dyn std::error::Error>;

const CONFIG: &str = include_str!("../../examples/hello.json");

/// The simulator behind a latency every call waits first, noting when each service's last
/// traffic action finished.
struct Latent {
    sim: SimCloud,
    latency_ms: AtomicU64,
    traffic_moved: Mutex<HashMap<String, Instant>>,
}

impl Latent {
    async fn wait(&self) {
        let ms = self.latency_ms.load(Ordering::Relaxed);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

#[async_trait]
impl Cloud for Latent {
    async fn observe(
        &self,
        service: &str,
        config: &ServiceConfig,
    ) -> Result<CloudView, CloudError> {
        self.wait().await;
        self.sim.observe(service, config).await
    }

    async fn execute(
        &self,
        service: &str,
        config: &ServiceConfig,
        action_id: Uuid,
        action: &Action,
    ) -> Result<String, CloudError> {
        self.wait().await;
        let done = self.sim.execute(service, config, action_id, action).await;
        if matches!(
            action,
            Action::RegisterInstances { .. } | Action::DeregisterInstances { .. }
        ) {
            if let Ok(mut moved) = self.traffic_moved.lock() {
                moved.insert(service.to_string(), Instant::now());
            }
        }
        done
    }
}

struct Api {
    router: Router,
    bearer: String,
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: String) -> Result<(), Error> {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", &self.bearer)
            .header("content-type", "application/json")
            .body(Body::from(body))?;
        let response = match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        if !response.status().is_success() && response.status() != StatusCode::ACCEPTED {
            return Err(format!("{method} {path}: {}", response.status()).into());
        }
        Ok(())
    }

    /// The same request for every service, `at_once` at a time.
    async fn each(
        &self,
        at_once: usize,
        services: &[String],
        method: &str,
        path: impl Fn(&str) -> String,
        body: impl Fn(&str) -> String,
    ) -> Result<(), Error> {
        let calls: Vec<_> = services
            .iter()
            .map(|s| {
                let (path, body) = (path(s), body(s));
                async move { self.call(method, &path, body).await }
            })
            .collect();
        let results: Vec<Result<(), Error>> = futures::stream::iter(calls)
            .buffer_unordered(at_once)
            .collect()
            .await;
        results.into_iter().collect()
    }
}

/// One run's figures; a child process hands them to the parent as JSON.
#[derive(serde::Serialize, serde::Deserialize)]
struct Figures {
    services: usize,
    workers: usize,
    quiet_pass: Duration,
    back_p50: Duration,
    back_p99: Duration,
    back_max: Duration,
    kib_per_service: f64,
    cpu_ms_per_pass: f64,
}

/// User + system CPU time of this process so far, in milliseconds (from clock ticks).
fn cpu_ms() -> f64 {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // After the command name (in parentheses): fields 14 and 15 are utime and stime.
            let rest = s.rsplit_once(')')?.1.to_string();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .unwrap_or(0.0);
    ticks * 10.0 // USER_HZ is 100 on Linux
}

/// Passes (without latency) until every service satisfies `done`.
async fn settle(
    roller: &mut Roller,
    services: &[String],
    what: &str,
    done: impl Fn(&ionroller_core::ServiceState) -> bool,
) -> Result<(), Error> {
    for _ in 0..60 {
        roller.pass().await?;
        if services
            .iter()
            .all(|s| roller.with_state(s, &done).unwrap_or(false))
        {
            return Ok(());
        }
    }
    let stuck = services
        .iter()
        .filter(|s| !roller.with_state(s, &done).unwrap_or(false))
        .count();
    Err(format!("{stuck} services never reached {what}").into())
}

async fn measure(
    services: usize,
    workers: usize,
    latency: Duration,
    interval: Duration,
) -> Result<Figures, Error> {
    // The log's directory: `--store-dir` (e.g. /dev/shm, so setting up 10,000 services is not
    // 40,000 fsyncs one after another) or a temporary directory on the working disk.
    let dir = match arg("--store-dir") {
        Some(parent) => tempfile::tempdir_in(parent)?,
        None => tempfile::tempdir()?,
    };
    let setup = Instant::now();
    let phase = |what: &str| eprintln!("  {:>7.1} s  {what}", setup.elapsed().as_secs_f64());
    let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(
        dir.path().join("events.sqlite"),
        SqliteOptions::default(),
    )?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sim = SimCloud::in_memory(clock.clone());
    sim.set_settings(SimSettings {
        launch_secs: 0.0,
        healthy_secs: 0.0,
    })?;
    let cloud = Arc::new(Latent {
        sim: sim.clone(),
        latency_ms: AtomicU64::new(0),
        traffic_moved: Mutex::default(),
    });
    let auth = ionroller_auth::Authenticator::new(store.clone());
    let mut secret = String::new();
    auth.bootstrap_admin(clock.now(), |s| {
        secret = s.to_string();
        Ok::<(), std::convert::Infallible>(())
    })
    .await?;
    let api = Api {
        router: app(
            AppState::new(store.clone(), clock.clone()).with_auth(Arc::new(auth)),
            Router::new(),
        ),
        bearer: format!("Bearer {secret}"),
    };
    let names: Vec<String> = (0..services).map(|i| format!("svc{i:05}")).collect();
    let rss_before = report::rss_kib();
    // One at a time: each save claims its endpoint in one shared stream, and concurrent
    // claims are serialised by that stream's expected version (a 409 to retry).
    api.each(
        1,
        &names,
        "PUT",
        |s| format!("/v1/services/{s}/config"),
        |s| {
            CONFIG
                .replace("hello-lb", &format!("{s}-lb"))
                .replace("hello-5xx", &format!("{s}-5xx"))
                .replace("hello.example.com", &format!("{s}.example.com"))
        },
    )
    .await?;
    phase("configs saved");
    let release = |version: &'static str| move |_: &str| format!(r#"{{"version": "{version}"}}"#);
    api.each(
        16,
        &names,
        "POST",
        |s| format!("/v1/services/{s}/releases"),
        release("v1"),
    )
    .await?;
    phase("v1 released");
    // Set up many at once, whatever the worker count measured.
    let mut roller = Roller::new(store.clone(), cloud.clone(), clock.clone())
        .with_concurrency(64, Duration::from_secs(600));
    // v1 has no previous version: its rollout waits for nothing.
    settle(&mut roller, &names, "v1 serving", |s| {
        s.rollout.is_none() && s.stable_version() == Some("v1")
    })
    .await?;
    phase("v1 serving");
    api.each(
        16,
        &names,
        "POST",
        |s| format!("/v1/services/{s}/releases"),
        release("v2"),
    )
    .await?;
    phase("v2 released");
    settle(&mut roller, &names, "v2's canary", |s| {
        s.rollout.as_ref().is_some_and(|r| r.waits_for_a_person())
    })
    .await?;
    phase("v2 at its canary");
    let kib_per_service = (report::rss_kib() - rss_before) / services as f64;

    // Now as measured: latency on, the worker count under test.
    let mut roller = roller.with_concurrency(workers, Duration::from_secs(60));
    cloud.latency_ms.store(
        u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    roller.pass().await?; // warm
    let cpu = cpu_ms();
    let started = Instant::now();
    roller.pass().await?;
    let quiet_pass = started.elapsed();
    let cpu_ms_per_pass = cpu_ms() - cpu;

    // Every alarm fires just after a pass.
    if let Ok(mut moved) = cloud.traffic_moved.lock() {
        moved.clear();
    }
    let fired = Instant::now();
    for name in &names {
        sim.set_alarm(&format!("{name}-5xx"), AlarmState::Alarm, None, Some(12.0))?;
    }
    let rolled_back =
        |s: &ionroller_core::ServiceState| s.rollout.is_none() && s.stable_version() == Some("v1");
    for round in 0.. {
        tokio::time::sleep(interval).await;
        roller.pass().await?;
        if names
            .iter()
            .all(|s| roller.with_state(s, rolled_back).unwrap_or(false))
        {
            break;
        }
        if round > 50 {
            return Err("the services did not all roll back within 50 passes".into());
        }
    }
    let mut back: Vec<Duration> = {
        let moved = cloud
            .traffic_moved
            .lock()
            .map_err(|_| "poisoned".to_string())?;
        names
            .iter()
            .map(|s| {
                moved
                    .get(s)
                    .map(|at| at.duration_since(fired))
                    .ok_or_else(|| format!("{s} rolled back without moving traffic"))
            })
            .collect::<Result<_, _>>()?
    };
    // And every service's load balancer holds v1 only.
    for name in &names {
        let config = roller
            .with_state(name, |s| s.latest_config().map(|c| c.config.clone()))
            .flatten()
            .ok_or("no config")?;
        let view = sim.observe(name, &config).await?;
        let v1: Vec<&String> = view
            .environments
            .iter()
            .filter(|e| e.version == "v1")
            .flat_map(|e| e.instances.iter().map(|i| &i.id))
            .collect();
        if view.registrations.is_empty() || view.registrations.iter().any(|r| !v1.contains(&&r.id))
        {
            return Err(format!("{name}: traffic not back on v1: {:?}", view.registrations).into());
        }
    }
    Ok(Figures {
        services,
        workers,
        quiet_pass,
        back_p50: report::percentile(&mut back, 0.50),
        back_p99: report::percentile(&mut back, 0.99),
        back_max: report::percentile(&mut back, 1.0),
        kib_per_service,
        cpu_ms_per_pass,
    })
}

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

fn main() -> Result<(), Error> {
    let counts: Vec<usize> = arg("--services")
        .unwrap_or_else(|| "100,1000,10000".into())
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let one_worker_up_to: usize = arg("--one-worker-up-to").map_or(Ok(1000), |a| a.parse())?;
    let workers: usize = arg("--workers").map_or(Ok(64), |a| a.parse())?;
    let latency = Duration::from_millis(arg("--latency-ms").map_or(Ok(50), |a| a.parse())?);
    let interval = Duration::from_millis(arg("--interval-ms").map_or(Ok(5000), |a| a.parse())?);
    // A child process measures one (services, workers): memory figures then start from an
    // empty process, not from what an earlier, smaller run left behind.
    if let Some(one) = arg("--one") {
        let (n, w) = one.split_once('x').ok_or("--one NxW")?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let f = runtime.block_on(measure(n.parse()?, w.parse()?, latency, interval))?;
        println!("{}", serde_json::to_string(&f)?);
        return Ok(());
    }
    let store_dir = arg("--store-dir");
    let mut rows = Vec::new();
    for &n in &counts {
        let mut runs = vec![workers];
        if n <= one_worker_up_to {
            runs.insert(0, 1);
        }
        for w in runs {
            eprintln!("{n} services, {w} worker(s) ...");
            let out = std::process::Command::new(std::env::current_exe()?)
                .args(["--one", &format!("{n}x{w}")])
                .args(["--latency-ms", &latency.as_millis().to_string()])
                .args(["--interval-ms", &interval.as_millis().to_string()])
                .args(
                    arg("--store-dir")
                        .map(|d| vec!["--store-dir".to_string(), d])
                        .unwrap_or_default(),
                )
                .stderr(std::process::Stdio::inherit())
                .output()?;
            if !out.status.success() {
                return Err(format!("the run of {n} services with {w} workers failed").into());
            }
            let f: Figures = serde_json::from_slice(&out.stdout)?;
            eprintln!(
                "  quiet pass {:.2} s; alarm → traffic back p50 {:.2} s, p99 {:.2} s, max {:.2} s; {:.0} KiB/service; {:.0} ms CPU/pass",
                f.quiet_pass.as_secs_f64(),
                f.back_p50.as_secs_f64(),
                f.back_p99.as_secs_f64(),
                f.back_max.as_secs_f64(),
                f.kib_per_service,
                f.cpu_ms_per_pass
            );
            rows.push(f);
        }
    }
    let mut body = format!(
        "Measured {} on {}, with `cargo bench -p ionroller-roller --bench scale -- --services {} \
         --one-worker-up-to {one_worker_up_to} --workers {workers} --latency-ms {} --interval-ms {}{}`. \
         Simulated cloud in memory, {} ms before every call; interval {} s (target: alarm → \
         traffic back within two intervals, {} s, at 1,000 services). \"1 worker\" is the roller \
         before concurrent reconcile (one service after another). {}\n\n\
         Memory per service is the growth of the process's resident memory while the services \
         were set up (their folded states, the store's and the simulator's share), each size \
         measured in a fresh process.\n\n\
         | services | workers | quiet pass | alarm → traffic back p50 | p99 | max | memory per service | CPU per quiet pass |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        report::machine(),
        counts
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(","),
        latency.as_millis(),
        interval.as_millis(),
        store_dir.as_ref().map(|d| format!(" --store-dir {d}")).unwrap_or_default(),
        latency.as_millis(),
        interval.as_secs_f64(),
        2.0 * interval.as_secs_f64(),
        match &store_dir {
            Some(d) => format!(
                "The SQLite log is in {d}: setting 10,000 services up through the API is two \
                 synced appends per config save, one after another (each claims its endpoint in \
                 one shared stream), which ran past ten minutes on this machine's disk before \
                 anything was measured and takes about a minute on tmpfs. The store's own costs \
                 are in the store sections."
            ),
            None => "The SQLite log is on the working disk.".to_string(),
        },
    );
    for f in &rows {
        body.push_str(&format!(
            "| {} | {} | {:.2} s | {:.2} s | {:.2} s | {:.2} s | {:.0} KiB | {:.0} ms |\n",
            f.services,
            f.workers,
            f.quiet_pass.as_secs_f64(),
            f.back_p50.as_secs_f64(),
            f.back_p99.as_secs_f64(),
            f.back_max.as_secs_f64(),
            f.kib_per_service,
            f.cpu_ms_per_pass
        ));
    }
    print!("{body}");
    if let Some(path) = report::write_target() {
        report::replace_section(&path, "scale", &body)?;
    }
    Ok(())
}
