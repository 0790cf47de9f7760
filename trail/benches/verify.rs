//! Verify against published checkpoints: a log of 1,000,000 events (fewer with
//! `TRAIL_BENCH_EVENTS`), projected by a trail that signs and publishes a checkpoint every
//! 1,000 rows to a directory, then `verify` over all of it: the log read once, every row
//! recomputed and compared with the projection and with the published checkpoints.
//!
//! `cargo bench -p ionroller-trail --bench verify -- [--write BENCHMARKS.md]`

#[path = "../../stores/tests/benches/report.rs"]
mod report;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ionroller_shared::events::ServiceEvent;
use ionroller_shared::store::{EventId, EventMetadata, EventStore, ExpectedRevision, StreamId};
use ionroller_store_sqlite::{SqliteOptions, SqliteStore};
use ionroller_trail::checkpoints::{Anchoring, CheckpointSink, DirSink, Publisher};
use ionroller_trail::db::TrailDb;
use ionroller_trail::runner::Trail;
use ionroller_trail::verify::{verify, Anchor, TrustedKey};
use uuid::Uuid;

const SERVICES: usize = 1_000;
const BATCH: usize = 100;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let write = report::write_target();
    let events: usize = std::env::var("TRAIL_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let profile = std::env::var("TRAIL_BENCH_PROFILE").unwrap_or_else(|_| "bench".into());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("trail-verify-bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let store = Arc::new(SqliteStore::open(
        dir.join("events.sqlite"),
        SqliteOptions::default(),
    )?);
    let started = Instant::now();
    for b in 0..events / BATCH {
        let service = format!("svc-{}", b % SERVICES);
        let stream = StreamId::new(format!("service:{service}"))?;
        let batch = (0..BATCH)
            .map(|i| {
                ServiceEvent::StepStarted {
                    rollout_id: Uuid::from_u128((b * BATCH + i) as u128),
                    step: 1,
                    percent: 50,
                }
                .to_new_event(
                    EventId::random(),
                    EventMetadata {
                        actor: "roller".into(),
                        correlation_id: Uuid::nil(),
                        causation_id: None,
                        occurred_at: Utc::now(),
                    },
                )
            })
            .collect();
        store.append(&stream, ExpectedRevision::Any, batch).await?;
    }
    eprintln!(
        "wrote {events} events in {:.0}s",
        started.elapsed().as_secs_f64()
    );

    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let sink: Arc<dyn CheckpointSink> = Arc::new(DirSink::open(dir.join("checkpoints"))?);
    let db = TrailDb::open(dir.join("trail.sqlite"))?;
    let anchoring = Anchoring::new(key.clone(), vec![sink.clone()]);
    let publisher = Arc::new(Publisher::resume(anchoring, &*db).await?);
    let trail = Trail::anchored(store.clone(), db.clone(), Some(publisher));
    let started = Instant::now();
    let runner = tokio::spawn(trail.clone().run(std::future::pending()));
    let full = (events as u64) / 1000 * 1000;
    while sink.seqs().await?.last().copied().unwrap_or(0) < full {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let catch_up = started.elapsed().as_secs_f64();
    runner.abort();
    let checkpoints = sink.seqs().await?.len();
    let bytes: u64 = std::fs::read_dir(dir.join("checkpoints"))?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    eprintln!("catch-up with publishing: {catch_up:.1}s, {checkpoints} checkpoints");

    let anchors = [Anchor {
        sink,
        key: TrustedKey::Own(key.verifying_key()),
    }];
    let started = Instant::now();
    let report = verify(store.as_ref(), &*db, &anchors).await?;
    let took = started.elapsed().as_secs_f64();
    assert!(report.ok(), "{:?}", report.findings);
    assert_eq!(report.events, events as u64);
    let rate = events as f64 / took;
    eprintln!("verify: {took:.1}s ({rate:.0} events/s)");

    let section = format!(
        "Measured {} on {}; `cargo bench -p ionroller-trail --bench verify` (profile: {profile}). \
         The log: {events} `step-started` events in {SERVICES} service streams, projected by trail \
         with a signed checkpoint published to a directory every 1,000 rows.\n\n\
         | figure | measured |\n|---|---|\n\
         | verify: log read once, every audit row recomputed and compared with the projection and the published checkpoints | {took:.1} s ({rate:.0} events/s) |\n\
         | published checkpoints | {checkpoints} files, {:.1} MB in all |\n\
         | catch-up from empty, publishing as it goes | {catch_up:.1} s |\n",
        Utc::now().format("%Y-%m-%d"),
        report::machine(),
        bytes as f64 / 1e6,
    );
    println!("{section}");
    if let Some(path) = write {
        report::replace_section(&path, "trail-verify-bench", &section)?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
