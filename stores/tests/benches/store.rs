//! Event-store throughput, measured against the disk's own fsync limit on the same filesystem.
//!
//! `scripts/bench.sh` runs it with a throwaway PostgreSQL; by hand:
//! `cargo bench -p ionroller-store-tests --bench store -- [--pg URL] [--write BENCHMARKS.md]`.
//! KurrentDB is measured against the server at `IONROLLER_KURRENTDB_URL` when one is given,
//! otherwise against the protocol stand-in (a Python gRPC server: that row measures the
//! client path, the stand-in's speed, not KurrentDB's), when scripts/bench.sh set it up.
//! With `--write`, the figures replace the section between the `store-bench` markers.

#[path = "report.rs"]
mod report;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ionroller_shared::store::*;
use ionroller_store_kurrentdb::testing::test_server;
use ionroller_store_kurrentdb::{KurrentOptions, KurrentStore};
use ionroller_store_postgres::{PgOptions, PgStore};
use ionroller_store_sqlite::{SqliteOptions, SqliteStore};
use serde_json::json;
use uuid::Uuid;

const RUN_FOR: Duration = Duration::from_secs(3);

struct Args {
    pg: Option<String>,
    write: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args {
        pg: std::env::var("IONROLLER_BENCH_PG_URL").ok(),
        write: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--pg" => args.pg = it.next(),
            "--write" => args.write = it.next().map(PathBuf::from),
            _ => {} // cargo bench passes --bench
        }
    }
    args
}

fn event(n: usize) -> NewEvent {
    NewEvent {
        id: EventId::random(),
        event_type: "observed-environment".into(),
        schema_version: 1,
        data: json!({ "service": "checkout", "environment": "checkout-v42", "health": "Green", "instances": n % 7 }),
        metadata: EventMetadata {
            actor: "roller".into(),
            correlation_id: Uuid::new_v4(),
            causation_id: None,
            occurred_at: Utc::now(),
        },
    }
}

/// fdatasync calls per second for small appends to a file in `dir`: the ceiling for durable
/// commits on this filesystem.
fn fdatasync_rate(dir: &Path) -> std::io::Result<f64> {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let block = [7u8; 512];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN_FOR {
        file.write_all(&block)?;
        file.sync_data()?;
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok(rate)
}

/// Appends from `tasks` concurrent tasks, `batch` events per append, for `RUN_FOR`.
async fn appends(store: Arc<dyn EventStore>, tasks: usize, batch: usize) -> f64 {
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let stream = StreamId::new(format!("bench-{}-{t}", Uuid::new_v4().simple()))
                .expect("valid stream id");
            let mut events = 0usize;
            let mut expected = ExpectedRevision::NoStream;
            while start.elapsed() < RUN_FOR {
                let batch_events = (0..batch).map(|i| event(events + i)).collect();
                let result = store
                    .append(&stream, expected, batch_events)
                    .await
                    .expect("bench append");
                expected = ExpectedRevision::Exact(result.last_revision);
                events += batch;
            }
            events
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await.expect("bench task");
    }
    total as f64 / start.elapsed().as_secs_f64()
}

async fn read_all_rate(store: &dyn EventStore) -> (f64, usize) {
    let start = Instant::now();
    let mut after = None;
    let mut n = 0;
    loop {
        let page = store
            .read_all(after, 1000, &ReadFilter::all())
            .await
            .expect("bench read_all");
        let Some(last) = page.last() else { break };
        after = Some(last.position);
        n += page.len();
    }
    (n as f64 / start.elapsed().as_secs_f64(), n)
}

struct Figures {
    single: f64,
    concurrent: f64,
    batched: f64,
    read: (f64, usize),
}

async fn measure(store: Arc<dyn EventStore>) -> Figures {
    let single = appends(store.clone(), 1, 1).await;
    let concurrent = appends(store.clone(), 16, 1).await;
    let batched = appends(store.clone(), 1, 100).await;
    let read = read_all_rate(store.as_ref()).await;
    Figures {
        single,
        concurrent,
        batched,
        read,
    }
}

fn row(name: &str, f: &Figures, fsync: f64) -> String {
    format!(
        "| {name} | {:.0} ({:.0}% of fdatasync) | {:.0} | {:.0} | {:.0} (over {} events) |",
        f.single,
        100.0 * f.single / fsync,
        f.concurrent,
        f.batched,
        f.read.0,
        f.read.1
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("store-bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;

    let fsync = fdatasync_rate(&dir)?;
    eprintln!("fdatasync: {fsync:.0}/s");
    let sqlite = SqliteStore::open(dir.join("events.sqlite"), SqliteOptions::default())?;
    let sqlite_figures = measure(Arc::new(sqlite)).await;
    eprintln!("{}", row("embedded (SQLite)", &sqlite_figures, fsync));

    let mut rows = vec![row("embedded (SQLite)", &sqlite_figures, fsync)];
    if let Some(url) = &args.pg {
        let schema = format!("bench_{}", Uuid::new_v4().simple());
        let pg = PgStore::open(PgOptions::new(url).schema(schema)).await?;
        let pg_figures = measure(Arc::new(pg)).await;
        eprintln!("{}", row("PostgreSQL", &pg_figures, fsync));
        rows.push(row("PostgreSQL", &pg_figures, fsync));
    } else {
        eprintln!("no --pg URL: PostgreSQL not measured");
    }
    // `test_server` never skips silently: without a server or the stand-in it says so.
    if let Some((url, standin)) = test_server(&dir) {
        let label = if standin.is_some() {
            "KurrentDB protocol stand-in (client path only)"
        } else {
            "KurrentDB"
        };
        let namespace = format!("bench{}.", Uuid::new_v4().simple());
        let kurrent = KurrentStore::open(KurrentOptions::new(url).namespace(namespace)).await?;
        let figures = measure(Arc::new(kurrent)).await;
        eprintln!("{}", row(label, &figures, fsync));
        rows.push(row(label, &figures, fsync));
        drop(standin);
    }

    let section = format!(
        "Measured {date} on {machine}; fdatasync on the same filesystem: **{fsync:.0}/s**.\n\
         Each figure runs for {secs} s; events are ~200-byte JSON observations.\n\n\
         | backend | single appends/s, 1 task | single appends/s, 16 tasks | events/s, batches of 100 | read_all events/s |\n\
         |---|---|---|---|---|\n{rows}\n",
        date = Utc::now().format("%Y-%m-%d"),
        machine = report::machine(),
        secs = RUN_FOR.as_secs(),
        rows = rows.join("\n"),
    );
    println!("{section}");
    if let Some(path) = args.write {
        report::replace_section(&path, "store-bench", &section)?;
        eprintln!("wrote {}", path.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
