//! The embedded store survives being killed at any instant.
//!
//! The parent re-runs this test binary as a child (selected by an environment variable, as
//! sled's crash tests do). The child appends 3-event batches from several tasks and prints
//! `ACK <batch>` after each `Ok`; the parent SIGKILLs it at a random moment, reopens the file
//! and checks that every acknowledged batch is there, that no batch is partial, that every row
//! decodes, and that SQLite's own integrity check passes. 50 cycles by default
//! (`IONROLLER_CRASH_CYCLES` changes it).

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use ionroller_shared::store::*;
use ionroller_store_sqlite::{SqliteOptions, SqliteStore};
use rand::Rng;
use serde_json::json;
use support::*;

const CHILD_DB: &str = "IONROLLER_CRASH_CHILD_DB";
const CHILD_FIRST_BATCH: &str = "IONROLLER_CRASH_CHILD_FIRST_BATCH";
const BATCH: u64 = 3;

/// The child's body. A no-op unless the parent set `IONROLLER_CRASH_CHILD_DB`.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_DB) else {
        return;
    };
    let first: u64 = std::env::var(CHILD_FIRST_BATCH)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let runtime = tokio::runtime::Runtime::new().expect("child runtime");
    runtime.block_on(async move {
        let store = SqliteStore::open(&path, SqliteOptions::default()).expect("child opens store");
        let mut tasks = Vec::new();
        for task in 0..4u64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for k in 0.. {
                    let batch = first + k * 4 + task;
                    let events = (0..BATCH)
                        .map(|i| {
                            event(
                                EventId::random(),
                                "crash",
                                json!({ "batch": batch, "i": i }),
                            )
                        })
                        .collect();
                    let s = stream(&format!("crash-{}", batch % 5));
                    if store
                        .append(&s, ExpectedRevision::Any, events)
                        .await
                        .is_ok()
                    {
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "ACK {batch}");
                        let _ = out.flush();
                    }
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
}

#[test]
fn crash_loop_keeps_every_acknowledged_append() {
    let cycles: u64 = std::env::var("IONROLLER_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let fixture = SqliteFixture::new().expect("temporary directory");
    let path = fixture.path();
    let exe = std::env::current_exe().expect("path of this test binary");
    let runtime = tokio::runtime::Runtime::new().expect("parent runtime");
    let mut acked: HashSet<u64> = HashSet::new();
    let mut rng = rand::rng();
    for cycle in 0..cycles {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DB, &path)
            .env(CHILD_FIRST_BATCH, (cycle * 1_000_000).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the child");
        let stdout = child.stdout.take().expect("child stdout");
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|line| {
                    line.strip_prefix("ACK ")
                        .and_then(|b| b.parse::<u64>().ok())
                })
                .collect::<Vec<u64>>()
        });
        std::thread::sleep(Duration::from_millis(rng.random_range(20..250)));
        child.kill().expect("SIGKILL the child");
        let _ = child.wait();
        acked.extend(reader.join().expect("reader thread"));

        runtime.block_on(check_log(&path, &acked, cycle));
    }
    eprintln!(
        "crash loop: {cycles} SIGKILL cycles, {} acknowledged batches all present",
        acked.len()
    );
    assert!(
        acked.len() as u64 > cycles,
        "the children acknowledged only {} batches in {cycles} cycles; the test did not exercise the store",
        acked.len()
    );
}

async fn check_log(path: &std::path::Path, acked: &HashSet<u64>, cycle: u64) {
    let integrity: String = rusqlite::Connection::open(path)
        .and_then(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get(0)))
        .expect("run SQLite's integrity check");
    assert_eq!(integrity, "ok", "cycle {cycle}: SQLite integrity check");
    let store = SqliteStore::open(path, SqliteOptions::default()).expect("reopen after crash");
    let mut batches: BTreeMap<u64, Vec<RecordedEvent>> = BTreeMap::new();
    let mut next_revision: HashMap<StreamId, u64> = HashMap::new();
    let mut after = None;
    let mut last_position = None;
    loop {
        let page = store
            .read_all(after, 1000, &ReadFilter::all())
            .await
            .unwrap_or_else(|e| panic!("cycle {cycle}: every stored row decodes: {e}"));
        let Some(last) = page.last() else { break };
        after = Some(last.position);
        for e in page {
            assert!(Some(e.position) > last_position, "positions increase");
            last_position = Some(e.position);
            let expected = next_revision.entry(e.stream.clone()).or_default();
            assert_eq!(
                e.revision.0, *expected,
                "cycle {cycle}: revisions are dense"
            );
            *expected += 1;
            let batch = e.data["batch"].as_u64().expect("batch number");
            batches.entry(batch).or_default().push(e);
        }
    }
    for (batch, events) in &batches {
        assert_eq!(
            events.len() as u64,
            BATCH,
            "cycle {cycle}: batch {batch} is partial"
        );
        let is: Vec<u64> = events
            .iter()
            .map(|e| e.data["i"].as_u64().unwrap_or(99))
            .collect();
        assert_eq!(is, (0..BATCH).collect::<Vec<_>>(), "batch {batch} in order");
        assert!(
            events
                .windows(2)
                .all(|w| w[0].stream == w[1].stream && w[1].revision.0 == w[0].revision.0 + 1),
            "batch {batch} is contiguous"
        );
    }
    let missing: Vec<&u64> = acked
        .iter()
        .filter(|b| !batches.contains_key(b))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "cycle {cycle}: acknowledged batches lost: {missing:?}"
    );
}
