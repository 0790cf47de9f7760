//! Failover between roller replicas, as real processes on a real PostgreSQL log (or, with
//! `--log kurrentdb`, on KurrentDB: the stand-in, or the server at `IONROLLER_KURRENTDB_URL`): two
//! `ionroller up` replicas (default lease time to live, 10 s) share the services; one is
//! SIGKILLed and the time until the other holds every shard (it reconciles a shard's services
//! at once when it takes it) is measured, then a new replica joins and takes its share back;
//! 20 times. Then graceful handover: SIGTERM instead, 5 times.
//!
//! `IONROLLER_TEST_PG_URL=postgresql://... cargo bench -p ionroller-e2e --bench failover --
//!  [--kills 20] [--write "$PWD/BENCHMARKS.md"]` (scripts/bench.sh starts a PostgreSQL; needs
//! the `ionroller` binary built: `cargo build --bin ionroller`).

#[path = "../../stores/tests/benches/report.rs"]
mod report;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::{metric, replica, signal, wait_metric, Server, SharedLog};

const LEASE_TTL_MS: &str = "10000";
const SHARDS: f64 = 32.0;

/// Until `server` holds every shard; how long that took from `since`.
async fn holds_all(server: &Server, since: Instant) -> Result<Duration, String> {
    loop {
        if metric(server, "ionroller_lease_shards_held").await == SHARDS {
            return Ok(since.elapsed());
        }
        if since.elapsed() > Duration::from_secs(60) {
            return Err("no replica took the shards over within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let kills: usize = arg("--kills").map_or(Ok(20), |k| k.parse().map_err(|_| "--kills N"))?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let log = match arg("--log").as_deref() {
        None | Some("postgres") => {
            let Ok(url) = std::env::var("IONROLLER_TEST_PG_URL") else {
                println!(
                    "skipped: IONROLLER_TEST_PG_URL is not set (scripts/bench.sh starts PostgreSQL)"
                );
                return Ok(());
            };
            SharedLog::Postgres {
                url,
                schema: format!("failover_{}", std::process::id()),
            }
        }
        Some("kurrentdb") => SharedLog::kurrentdb(dir.path())
            .ok_or("no KurrentDB: set IONROLLER_KURRENTDB_URL or the stand-in's variables")?,
        Some(other) => return Err(format!("--log postgres|kurrentdb, not {other}")),
    };
    let sim = dir.path().join("sim-cloud.json");
    let mut next = 0;
    let mut start = |token: Option<String>| {
        next += 1;
        let mut server = replica(dir.path(), &format!("r{next}"), &log, &sim, LEASE_TTL_MS);
        if let Some(token) = token {
            server.token = token;
        }
        server
    };
    let first = start(None);
    let token = first.token.clone();
    let mut pair = vec![first, start(Some(token.clone()))];
    let mut failovers = Vec::new();
    let mut handovers = Vec::new();
    for round in 0..kills + 5 {
        for server in &pair {
            wait_metric(server, "ionroller_lease_shards_held", "a fair share", |v| {
                v == SHARDS / 2.0
            })
            .await;
        }
        let leaving = pair.remove(0);
        let since = Instant::now();
        let took = if round < kills {
            leaving.kill();
            holds_all(&pair[0], since).await?
        } else {
            signal(&leaving, "-TERM");
            let took = holds_all(&pair[0], since).await?;
            leaving.kill();
            took
        };
        let what = if round < kills { "SIGKILL" } else { "SIGTERM" };
        eprintln!("round {round}: {what} → the other replica holds every shard in {took:.2?}");
        if round < kills {
            failovers.push(took);
        } else {
            handovers.push(took);
        }
        pair.push(start(Some(token.clone())));
    }
    for server in pair {
        server.kill();
    }
    let p50 = report::percentile(&mut failovers, 0.5);
    let p99 = report::percentile(&mut failovers, 0.99);
    let worst = report::percentile(&mut failovers, 1.0);
    let h50 = report::percentile(&mut handovers, 0.5);
    let hworst = report::percentile(&mut handovers, 1.0);
    let (on, flag, name) = match &log {
        SharedLog::Postgres { .. } => ("PostgreSQL", "", "failover"),
        SharedLog::Kurrent { .. } if std::env::var("IONROLLER_KURRENTDB_URL").is_ok() => (
            "a KurrentDB server",
            " -- --log kurrentdb",
            "failover-kurrentdb",
        ),
        SharedLog::Kurrent { .. } => (
            "the KurrentDB stand-in (the lease protocol and the client path, not a server's \
             speed)",
            " -- --log kurrentdb",
            "failover-kurrentdb",
        ),
    };
    let section = format!(
        "Measured {} on {}; `cargo bench -p ionroller-e2e --bench failover{flag}` (two \
         `ionroller up` replicas on {on}, `--lease-ttl-ms {LEASE_TTL_MS}`, the default). Time \
         from the signal to the other replica holding all {SHARDS} shards (it reconciles a \
         shard's services at once on taking it).\n\n\
         | figure | measured | target |\n|---|---|---|\n\
         | SIGKILL of a replica → the other holds its shards, {} kills | p50 {:.2} s, p99 {:.2} s, worst {:.2} s | ≤ 15 s (p99) |\n\
         | SIGTERM (graceful handover), {} stops | p50 {:.2} s, worst {:.2} s | ≤ 2 s |\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        report::machine(),
        failovers.len(),
        p50.as_secs_f64(),
        p99.as_secs_f64(),
        worst.as_secs_f64(),
        handovers.len(),
        h50.as_secs_f64(),
        hworst.as_secs_f64(),
    );
    println!("{section}");
    if let Some(path) = report::write_target() {
        report::replace_section(&path, name, &section).map_err(|e| e.to_string())?;
    }
    Ok(())
}
