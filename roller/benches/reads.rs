//! What a request costs as a service's history grows: `GET /v1/services/{name}` and a config
//! save against a service with 10 config versions and one with 10,000, through the real router
//! (guard, fold cache, views) on a real SQLite log, in process. Reads are measured one at a
//! time (latency) and 32 at once for a minute per service, with the process's resident memory
//! read before, every second during (its peak) and after those concurrent reads. Throughput is
//! then measured for both services in alternating 5-second rounds, so that whatever else the
//! machine does in that time weighs on both alike: the ratio compares like with like.
//!
//! `cargo bench -p ionroller-roller --bench reads -- [--write "$PWD/BENCHMARKS.md"]`

#[path = "../../stores/tests/benches/report.rs"]
mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use ionroller_core::ServiceState;
use ionroller_roller::api::{app, AppState};
use ionroller_roller::clock::{Clock, SystemClock};
use ionroller_roller::log;
use ionroller_shared::config::parse_service_config;
use ionroller_shared::events::ServiceEvent;
use ionroller_shared::store::EventStore;
use ionroller_store_sqlite::{SqliteOptions, SqliteStore};
use tower::ServiceExt;

const CONFIG: &str = include_str!("../../examples/hello.json");
const READS: usize = 400;
const CONCURRENT: usize = 32;
/// A minute, as long as it takes a leak or an unbounded cache to show in resident memory.
const CONCURRENT_FOR: Duration = Duration::from_secs(60);
const SAVES: usize = 20;
/// Alternating rounds of concurrent reads, for the throughput ratio: a minute per service.
const ROUNDS: u32 = 12;
const ROUND: Duration = Duration::from_secs(5);

struct Setup {
    _dir: tempfile::TempDir,
    router: Router,
    bearer: String,
}

/// A log where `hello` has `versions` config versions (appended in batches, as saves would
/// have), and the API over it with an admin token.
async fn setup(versions: u32) -> Result<Setup, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(
        dir.path().join("events.sqlite"),
        SqliteOptions::default(),
    )?);
    let config = parse_service_config(CONFIG).map_err(|e| format!("{e:?}"))?;
    let mut state = ServiceState::new("hello");
    let clock = SystemClock;
    let mut next = 1;
    while next <= versions {
        let batch: Vec<ServiceEvent> = (next..=versions.min(next + 499))
            .map(|v| ServiceEvent::ConfigSaved {
                config_version: v,
                config: Box::new(config.clone()),
            })
            .collect();
        next += batch.len() as u32;
        log::append(store.as_ref(), &state, &batch, "bench", clock.now()).await?;
        log::catch_up(store.as_ref(), &mut state).await?;
    }
    let auth = ionroller_auth::Authenticator::new(store.clone());
    let mut secret = String::new();
    auth.bootstrap_admin(clock.now(), |s| {
        secret = s.to_string();
        Ok::<(), std::convert::Infallible>(())
    })
    .await?;
    let router = app(
        AppState::new(store, Arc::new(SystemClock)).with_auth(Arc::new(auth)),
        Router::new(),
    );
    Ok(Setup {
        _dir: dir,
        router,
        bearer: format!("Bearer {secret}"),
    })
}

async fn call(s: &Setup, method: &str, path: &str, body: String) -> StatusCode {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", &s.bearer)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("request");
    match s.router.clone().oneshot(request).await {
        Ok(response) => response.status(),
        Err(never) => match never {},
    }
}

struct Figures {
    read_p50: Duration,
    read_p99: Duration,
    save_p50: Duration,
    rss_before_mib: f64,
    rss_peak_mib: f64,
    rss_after_mib: f64,
}

async fn measure(versions: u32) -> Result<(Figures, Arc<Setup>), Box<dyn std::error::Error>> {
    let s = Arc::new(setup(versions).await?);
    // The first read folds the whole stream into the cache; what follows is steady state.
    assert_eq!(
        call(&s, "GET", "/v1/services/hello", String::new()).await,
        StatusCode::OK
    );
    let mut reads = Vec::with_capacity(READS);
    for _ in 0..READS {
        let started = Instant::now();
        let status = call(&s, "GET", "/v1/services/hello", String::new()).await;
        reads.push(started.elapsed());
        assert_eq!(status, StatusCode::OK);
    }
    let rss_before_mib = report::rss_kib() / 1024.0;
    let until = Instant::now() + CONCURRENT_FOR;
    let reads_running = tokio::spawn(concurrent_reads(s.clone(), CONCURRENT_FOR));
    // Resident memory once a second while the reads run: flat, or growing with them.
    let mut rss_peak_mib = rss_before_mib;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_peak_mib = rss_peak_mib.max(report::rss_kib() / 1024.0);
    }
    reads_running.await??;
    let rss_after_mib = report::rss_kib() / 1024.0;
    let mut saves = Vec::with_capacity(SAVES);
    for _ in 0..SAVES {
        let started = Instant::now();
        let status = call(&s, "PUT", "/v1/services/hello/config", CONFIG.to_string()).await;
        saves.push(started.elapsed());
        assert_eq!(status, StatusCode::OK);
    }
    Ok((
        Figures {
            read_p50: report::percentile(&mut reads, 0.5),
            read_p99: report::percentile(&mut reads, 0.99),
            save_p50: report::percentile(&mut saves, 0.5),
            rss_before_mib,
            rss_peak_mib,
            rss_after_mib,
        },
        s,
    ))
}

/// `CONCURRENT` readers of `hello` for `span`; how many reads they completed.
async fn concurrent_reads(s: Arc<Setup>, span: Duration) -> Result<u64, String> {
    let until = Instant::now() + span;
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENT {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                let status = call(&s, "GET", "/v1/services/hello", String::new()).await;
                if status != StatusCode::OK {
                    return Err(format!("GET answered {status}"));
                }
                n += 1;
            }
            Ok(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.map_err(|e| e.to_string())??;
    }
    Ok(total)
}

/// GET req/s of each service, in alternating rounds (which goes first alternates too).
async fn interleaved_throughput(a: &Arc<Setup>, b: &Arc<Setup>) -> Result<(f64, f64), String> {
    let (mut reads_a, mut reads_b) = (0, 0);
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            reads_a += concurrent_reads(a.clone(), ROUND).await?;
            reads_b += concurrent_reads(b.clone(), ROUND).await?;
        } else {
            reads_b += concurrent_reads(b.clone(), ROUND).await?;
            reads_a += concurrent_reads(a.clone(), ROUND).await?;
        }
    }
    let span = (ROUND * ROUNDS).as_secs_f64();
    Ok((reads_a as f64 / span, reads_b as f64 / span))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    ionroller_auth::tls::install_crypto_provider();
    let write = report::write_target();
    let (short, short_setup) = measure(10).await?;
    let (long, long_setup) = measure(10_000).await?;
    let (short_rps, long_rps) = interleaved_throughput(&short_setup, &long_setup).await?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let row = |name: &str, f: &Figures, rps: f64| {
        format!(
            "| {name} | {:.2} | {:.2} | {rps:.0} | {:.1} | {:.0} → {:.0} (peak {:.0}) |\n",
            ms(f.read_p50),
            ms(f.read_p99),
            ms(f.save_p50),
            f.rss_before_mib,
            f.rss_after_mib,
            f.rss_peak_mib
        )
    };
    let section = format!(
        "Measured {} on {}, `bench` profile (optimized).\n\
         Reproduce: `cargo bench -p ionroller-roller --bench reads -- --write \"$PWD/BENCHMARKS.md\"`.\n\n\
         | service history | GET p50 (ms) | GET p99 (ms) | GET req/s at {CONCURRENT} at once ({} rounds of {} s, alternating) | config save p50 (ms) | RSS before → after {} s of concurrent reads (MiB) |\n\
         |---|---|---|---|---|---|\n{}{}\n\
         Ratio of GET req/s, 10,000 versions to 10 (target ≥ 0.8): **{:.2}**. Ratio of config \
         save p50, 10,000 to 10: {:.1}.\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        report::machine(),
        ROUNDS,
        ROUND.as_secs(),
        CONCURRENT_FOR.as_secs(),
        row("10 config versions", &short, short_rps),
        row("10,000 config versions", &long, long_rps),
        long_rps / short_rps,
        long.save_p50.as_secs_f64() / short.save_p50.as_secs_f64(),
    );
    print!("{section}");
    if let Some(path) = write {
        report::replace_section(&path, "reads-bench", &section)?;
    }
    Ok(())
}
