//! Tampering with a copy, as an attacker with write access to the files would: a real SQLite
//! log, trail's real projection file, real signed checkpoints in a directory. Each case edits
//! the files with SQL (or the checkpoint files by hand) and checks that `verify` fails naming
//! the log position (and row) that differs; the untouched fixture verifies, so each check can
//! fail. The cases that edit the log run against a SQLite log and, when the test command
//! started a server, a PostgreSQL log.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use ionroller_shared::store::{
    EventId, EventMetadata, EventStore, ExpectedRevision, NewEvent, StreamId,
};
use ionroller_store_postgres::{PgOptions, PgStore};
use ionroller_store_sqlite::{SqliteOptions, SqliteStore};
use ionroller_trail::checkpoints::{Anchoring, CheckpointSink, DirSink, Publisher};
use ionroller_trail::db::TrailDb;
use ionroller_trail::runner::Trail;
use ionroller_trail::verify::{verify, Anchor, Finding, Report, TrustedKey};
use serde_json::json;

/// Events in the fixture's log; with a checkpoint every 10 rows, all of them are anchored.
const EVENTS: u64 = 40;
const EVERY: u64 = 10;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn event(i: u64) -> NewEvent {
    NewEvent {
        id: EventId::random(),
        event_type: "pause-requested".into(),
        schema_version: 1,
        data: json!({ "reason": format!("r{i}") }),
        metadata: EventMetadata {
            actor: "alice".into(),
            correlation_id: uuid::Uuid::nil(),
            causation_id: None,
            occurred_at: chrono::Utc::now(),
        },
    }
}

/// Where the fixture's log is.
#[derive(Clone)]
enum Log {
    Sqlite,
    /// A schema of its own in the test server.
    Postgres {
        url: String,
        schema: String,
    },
}

/// The logs to run a case against: SQLite always, PostgreSQL when a server is running.
fn logs() -> Vec<Log> {
    let mut logs = vec![Log::Sqlite];
    if let Some(url) = support::pg_url() {
        logs.push(Log::Postgres {
            url,
            schema: support::fresh_schema(),
        });
    }
    logs
}

struct Fixture {
    dir: tempfile::TempDir,
    log: Log,
}

impl Fixture {
    fn events(&self) -> PathBuf {
        self.dir.path().join("events.sqlite")
    }
    fn projection(&self) -> PathBuf {
        self.dir.path().join("trail.sqlite")
    }
    fn checkpoints(&self) -> PathBuf {
        self.dir.path().join("checkpoints")
    }

    async fn store(&self) -> Arc<dyn EventStore> {
        match &self.log {
            Log::Sqlite => {
                Arc::new(SqliteStore::open(self.events(), SqliteOptions::default()).unwrap())
            }
            Log::Postgres { url, schema } => Arc::new(
                PgStore::open(PgOptions::new(url).schema(schema))
                    .await
                    .unwrap(),
            ),
        }
    }

    fn sink(&self) -> Arc<dyn CheckpointSink> {
        Arc::new(DirSink::open(self.checkpoints()).unwrap())
    }

    /// Verifies the files as they are now, trusting trail's own key.
    async fn verify(&self) -> Report {
        let anchors = [Anchor {
            sink: self.sink(),
            key: TrustedKey::Own(key().verifying_key()),
        }];
        let db = TrailDb::open(self.projection()).unwrap();
        verify(self.store().await.as_ref(), &*db, &anchors)
            .await
            .unwrap()
    }

    /// `trail rebuild`: the projection replayed from the (perhaps edited) log.
    async fn rebuild(&self) {
        let db = TrailDb::open(self.projection()).unwrap();
        ionroller_trail::rebuild::rebuild(self.store().await.as_ref(), &*db)
            .await
            .unwrap();
    }

    /// Runs `sql` on the log's database; `{events}` names the log's table.
    async fn log_sql(&self, sql: &str) {
        match &self.log {
            Log::Sqlite => rusqlite::Connection::open(self.events())
                .unwrap()
                .execute_batch(&sql.replace("{events}", "events"))
                .unwrap(),
            Log::Postgres { url, schema } => {
                let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(connection);
                let table = format!("\"{schema}\".ionroller_events");
                client
                    .batch_execute(&sql.replace("{events}", &table))
                    .await
                    .unwrap();
            }
        }
    }

    fn projection_sql(&self, sql: &str) {
        rusqlite::Connection::open(self.projection())
            .unwrap()
            .execute_batch(sql)
            .unwrap();
    }
}

/// A log of `EVENTS` events (positions 1..=40, one per append, in three streams), projected
/// by a trail that publishes a signed checkpoint every 10 rows.
async fn fixture() -> Fixture {
    fixture_on(Log::Sqlite).await
}

async fn fixture_on(log: Log) -> Fixture {
    let fixture = Fixture {
        dir: tempfile::tempdir().unwrap(),
        log,
    };
    let store = fixture.store().await;
    append(store.as_ref(), 0..EVENTS).await;
    project(&fixture, store, EVENTS).await;
    fixture
}

async fn append(store: &dyn EventStore, range: std::ops::Range<u64>) {
    for i in range {
        let stream = StreamId::new(format!("service:s{}", i % 3)).unwrap();
        store
            .append(&stream, ExpectedRevision::Any, vec![event(i)])
            .await
            .unwrap();
    }
}

/// Runs trail (projector and publisher) until it holds `rows` rows and has published every
/// full checkpoint they make.
async fn project(fixture: &Fixture, store: Arc<dyn EventStore>, rows: u64) {
    let db = TrailDb::open(fixture.projection()).unwrap();
    let mut anchoring = Anchoring::new(key(), vec![fixture.sink()]);
    anchoring.every = EVERY;
    anchoring.interval = Duration::from_secs(3600);
    let publisher = Publisher::resume(anchoring, &*db).await.unwrap();
    let trail = Trail::anchored(store, db, Some(Arc::new(publisher)));
    let runner = tokio::spawn(trail.clone().run(std::future::pending()));
    let published = || async { fixture.sink().seqs().await.unwrap().last().copied() };
    for _ in 0..200 {
        if trail.status.lock().unwrap().rows == rows
            && published().await == Some(rows / EVERY * EVERY)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    runner.abort();
    let _ = runner.await;
    assert_eq!(trail.status.lock().unwrap().rows, rows, "trail caught up");
    assert_eq!(published().await, Some(rows / EVERY * EVERY), "published");
}

fn only(report: &Report) -> &Finding {
    assert_eq!(report.findings.len(), 1, "{:#?}", report.findings);
    &report.findings[0]
}

/// The finding naming the log against the published checkpoints.
fn log_finding(report: &Report) -> &Finding {
    report
        .findings
        .iter()
        .find(|f| matches!(f, Finding::LogDiffers { .. }))
        .unwrap_or_else(|| panic!("no finding against the checkpoints: {:#?}", report.findings))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untouched_log_and_projection_verify_against_their_checkpoints() {
    let f = fixture().await;
    let report = f.verify().await;
    assert!(report.ok(), "{:#?}", report.findings);
    assert_eq!((report.events, report.rows, report.unanchored), (40, 40, 0));
    let anchor = &report.anchors[0];
    assert_eq!((anchor.checkpoints, anchor.newest_seq), (4, 40));
    assert_eq!(anchor.newest_position.as_deref(), Some("40-0"));
    assert_eq!(anchor.key_source, "own");
    // One file per checkpoint, plus the public key.
    let files = std::fs::read_dir(f.checkpoints()).unwrap().count();
    assert_eq!(files, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_event_is_named_by_its_position_even_after_a_rebuild() {
    for log in logs() {
        edited_event(log).await;
    }
}

async fn edited_event(log: Log) {
    let f = fixture_on(log).await;
    f.log_sql(r#"UPDATE {events} SET data = '{"reason":"nothing to see"}' WHERE position = 17"#)
        .await;
    // Before the rebuild both the projection and the checkpoints disagree with the log.
    let report = f.verify().await;
    assert!(report.findings.contains(&Finding::RowDiffers {
        seq: 17,
        position: "17-0".into(),
        column: "data".into()
    }));
    f.rebuild().await;
    let report = f.verify().await;
    assert_eq!(
        only(&report),
        &Finding::LogDiffers {
            sink: f.sink().describe(),
            seq: 17,
            published_position: "17-0".into(),
            log_position: Some("17-0".into()),
        }
    );
    assert!(
        only(&report).to_string().contains("position 17-0"),
        "{}",
        only(&report)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_event_is_named_by_its_position_even_after_a_rebuild() {
    for log in logs() {
        deleted_event(log).await;
    }
}

async fn deleted_event(log: Log) {
    let f = fixture_on(log).await;
    f.log_sql("DELETE FROM {events} WHERE position = 17").await;
    f.rebuild().await;
    let report = f.verify().await;
    assert_eq!(
        only(&report),
        &Finding::LogDiffers {
            sink: f.sink().describe(),
            seq: 17,
            published_position: "17-0".into(),
            log_position: Some("18-0".into()),
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_events_are_named_by_position_even_after_a_rebuild() {
    for log in logs() {
        reordered_events(log).await;
    }
}

async fn reordered_events(log: Log) {
    let f = fixture_on(log).await;
    // Swap the events at positions 17 and 18 (a temporary position frees the key).
    f.log_sql(
        "UPDATE {events} SET position = 1000 WHERE position = 17;
         UPDATE {events} SET position = 17 WHERE position = 18;
         UPDATE {events} SET position = 18 WHERE position = 1000;",
    )
    .await;
    f.rebuild().await;
    let report = f.verify().await;
    assert_eq!(
        log_finding(&report),
        &Finding::LogDiffers {
            sink: f.sink().describe(),
            seq: 17,
            published_position: "17-0".into(),
            log_position: Some("17-0".into()),
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_removed_from_the_end_of_the_log_are_found() {
    for log in logs() {
        removed_tail(log).await;
    }
}

async fn removed_tail(log: Log) {
    let f = fixture_on(log).await;
    f.log_sql("DELETE FROM {events} WHERE position > 33").await;
    f.rebuild().await;
    let report = f.verify().await;
    assert_eq!(
        only(&report),
        &Finding::LogDiffers {
            sink: f.sink().describe(),
            seq: 34,
            published_position: "34-0".into(),
            log_position: None,
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_appended_straight_into_the_log_is_reported_as_not_anchored() {
    let f = fixture().await;
    // A copy of event 40 under a new id and position: as a writer of the file could add one.
    f.log_sql(
        "INSERT INTO {events} (position, stream, revision, event_id, event_type, schema_version,
                             data, actor, correlation_id, causation_id, occurred_at, recorded_at)
         SELECT 41, stream, revision + 100, randomblob(16), event_type, schema_version,
                '{\"reason\":\"slipped in\"}', 'mallory', correlation_id, causation_id,
                occurred_at, recorded_at
         FROM {events} WHERE position = 40",
    )
    .await;
    let report = f.verify().await;
    // It is after every published checkpoint: nothing can tell it from a real append, but
    // the report says it is unanchored (and the projection does not hold it).
    assert!(report.ok(), "{:#?}", report.findings);
    assert_eq!((report.events, report.unanchored), (41, 1));
    assert!(report
        .summary()
        .contains("newest 1 events are not in a published checkpoint"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_to_any_audit_column_are_named_by_row_and_position() {
    for (column, sql) in [
        (
            "summary",
            "UPDATE audit SET summary = 'nothing happened' WHERE seq = 12",
        ),
        (
            "service",
            "UPDATE audit SET service = 'other' WHERE seq = 12",
        ),
        (
            "recorded_at",
            "UPDATE audit SET recorded_at = recorded_at + 1 WHERE seq = 12",
        ),
        ("version", "UPDATE audit SET version = 'v9' WHERE seq = 12"),
        (
            "hash",
            "UPDATE audit SET hash = replace(hash, substr(hash, 1, 1), 'x') WHERE seq = 12",
        ),
    ] {
        let f = fixture().await;
        f.projection_sql(sql);
        let report = f.verify().await;
        assert_eq!(
            only(&report),
            &Finding::RowDiffers {
                seq: 12,
                position: "12-0".into(),
                column: column.into(),
            },
            "{column}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_audit_row_is_named_by_its_own_position() {
    let f = fixture().await;
    f.projection_sql("DELETE FROM audit WHERE seq = 12");
    let report = f.verify().await;
    assert!(
        matches!(only(&report), Finding::RowMissing { seq: 12, position, .. } if position == "12-0"),
        "{:#?}",
        report.findings
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_audit_table_is_found_against_the_newest_checkpoint() {
    for (sql, first_missing) in [
        // The tail, with the projection's own checkpoint moved back to match.
        (
            "DELETE FROM audit WHERE seq > 25;
             UPDATE checkpoints SET seq = 25, position = '25-0',
                 head = (SELECT hash FROM audit WHERE seq = 25);
             DELETE FROM chain_checkpoints WHERE seq > 25;",
            26,
        ),
        // All of it.
        (
            "DELETE FROM audit; DELETE FROM checkpoints; DELETE FROM chain_checkpoints;",
            1,
        ),
    ] {
        let f = fixture().await;
        f.projection_sql(sql);
        let report = f.verify().await;
        match only(&report) {
            Finding::RowMissing {
                seq,
                position,
                evidence,
            } => {
                assert_eq!(*seq, first_missing);
                assert_eq!(position, &format!("{first_missing}-0"));
                assert!(evidence.contains("checkpoint published in"), "{evidence}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_audit_table_is_found_by_its_own_checkpoint_without_published_ones() {
    let f = fixture().await;
    f.projection_sql("DELETE FROM audit WHERE seq > 25");
    let db = TrailDb::open(f.projection()).unwrap();
    let report = verify(f.store().await.as_ref(), &*db, &[]).await.unwrap();
    assert!(
        matches!(only(&report), Finding::RowMissing { seq: 26, evidence, .. } if evidence.contains("its own checkpoint")),
        "{:#?}",
        report.findings
    );
}

fn checkpoint_file(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("checkpoint-{seq:020}.json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_checkpoint_is_reported_as_such() {
    // An entry edited in place: the signature no longer verifies.
    let f = fixture().await;
    let path = checkpoint_file(&f.checkpoints(), 20);
    let text = std::fs::read_to_string(&path).unwrap();
    let forged = text.replacen("\"15-0\"", "\"15-1\"", 1);
    assert_ne!(forged, text);
    std::fs::write(&path, forged).unwrap();
    let report = f.verify().await;
    assert!(
        matches!(only(&report), Finding::BadCheckpoint { seq: 20, why, .. } if why.contains("signature")),
        "{:#?}",
        report.findings
    );

    // Every checkpoint and the public key replaced by ones signed with another key: trail's
    // own key (or a pinned one) does not accept them.
    let f = fixture().await;
    let mallory = SigningKey::from_bytes(&[66; 32]);
    for seq in [10, 20, 30, 40] {
        let path = checkpoint_file(&f.checkpoints(), seq);
        let bytes = std::fs::read(&path).unwrap();
        let body = ionroller_trail::checkpoints::signed::CheckpointBody::open(
            &bytes,
            &key().verifying_key(),
        )
        .unwrap();
        std::fs::write(&path, body.sign(&mallory).unwrap()).unwrap();
    }
    let public = ionroller_trail::checkpoints::key::PublicKeyFile::of(&mallory.verifying_key());
    std::fs::write(
        f.checkpoints().join("public-key.json"),
        serde_json::to_vec(&public).unwrap(),
    )
    .unwrap();
    let report = f.verify().await;
    assert!(
        report
            .findings
            .iter()
            .any(|x| matches!(x, Finding::BadCheckpoint { why, .. } if why.contains("signature"))),
        "{:#?}",
        report.findings
    );

    // A checkpoint removed from the middle of the sequence.
    let f = fixture().await;
    std::fs::remove_file(checkpoint_file(&f.checkpoints(), 20)).unwrap();
    let report = f.verify().await;
    assert!(
        matches!(only(&report), Finding::BadCheckpoint { seq: 30, why, .. } if why.contains("missing")),
        "{:#?}",
        report.findings
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_resumes_after_a_restart_and_the_tail_is_anchored_on_the_interval() {
    let f = fixture().await;
    let store = f.store().await;
    append(store.as_ref(), EVENTS..EVENTS + 15).await;
    project(&f, store.clone(), EVENTS + 15).await;
    let report = f.verify().await;
    assert!(report.ok(), "{:#?}", report.findings);
    // 50 is a full checkpoint; 51..55 wait for the interval (an hour here).
    assert_eq!(report.anchors[0].newest_seq, 50);
    assert_eq!(report.unanchored, 5);

    // With a short interval the waiting rows get a checkpoint of their own.
    let db = TrailDb::open(f.projection()).unwrap();
    let mut anchoring = Anchoring::new(key(), vec![f.sink()]);
    anchoring.every = EVERY;
    anchoring.interval = Duration::from_millis(100);
    let publisher = Arc::new(Publisher::resume(anchoring, &*db).await.unwrap());
    let trail = Trail::anchored(store, db, Some(publisher));
    let runner = tokio::spawn(trail.clone().run(std::future::pending()));
    let mut newest = 0;
    for _ in 0..100 {
        newest = f.sink().seqs().await.unwrap().last().copied().unwrap_or(0);
        if newest == 55 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    runner.abort();
    assert_eq!(newest, 55);
    let report = f.verify().await;
    assert!(report.ok(), "{:#?}", report.findings);
    assert_eq!(report.unanchored, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_trails_with_one_key_publishing_to_one_directory_agree() {
    // `ionroller up` and a `trail serve` over one data directory: the same rows and key.
    let f = fixture().await;
    let store = f.store().await;
    append(store.as_ref(), EVENTS..EVENTS + 10).await;
    let db = TrailDb::open(f.projection()).unwrap();
    let mut anchoring = Anchoring::new(key(), vec![f.sink()]);
    anchoring.every = EVERY;
    let first = Publisher::resume(anchoring.clone(), &*db).await.unwrap();
    let second = Publisher::resume(anchoring, &*db).await.unwrap();
    project(&f, store, EVENTS + 10).await; // publishes 50 through a third publisher
    let rows = db.rows_after(EVENTS, 100).await.unwrap();
    first.offer(&rows).await;
    second.offer(&rows).await;
    // Each finds row 50's checkpoint already there with its own head: published, not stuck.
    assert_eq!((first.pending().await, second.pending().await), (0, 0));
    assert_eq!(f.sink().seqs().await.unwrap(), vec![10, 20, 30, 40, 50]);
    let report = f.verify().await;
    assert!(report.ok(), "{:#?}", report.findings);
    assert_eq!(report.anchors[0].newest_seq, 50);
}
