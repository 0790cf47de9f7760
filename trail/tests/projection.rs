//! One conformance suite for trail's projection store. Each test is written once, in `suite`,
//! and run against every backend by `conformance!`: a SQLite file in a temporary directory,
//! and a fresh schema in the PostgreSQL at `IONROLLER_TEST_PG_URL`. Queries are checked
//! against `AuditFilter::matches` over the committed rows, so both backends must return the
//! same rows.

mod support;

use chrono::{DateTime, Utc};
use ionroller_projections::audit::AuditRow;
use ionroller_trail::db::{Location, TrailDb};
use serde_json::json;

/// Where a test's projection lives; `open` may be called again to reopen it.
enum Fixture {
    Sqlite(tempfile::TempDir),
    Postgres { url: String, schema: String },
}

impl Fixture {
    fn sqlite() -> Option<Self> {
        Some(Fixture::Sqlite(
            tempfile::tempdir().expect("create a temporary directory"),
        ))
    }

    fn postgres() -> Option<Self> {
        Some(Fixture::Postgres {
            url: support::pg_url()?,
            schema: support::fresh_schema(),
        })
    }

    async fn open(&self) -> TrailDb {
        match self {
            Fixture::Sqlite(dir) => TrailDb::open(dir.path().join("trail.sqlite")),
            Fixture::Postgres { url, schema } => TrailDb::open_postgres(url, schema).await,
        }
        .expect("open the projection")
    }
}

macro_rules! conformance {
    ($backend:ident, $fixture:expr, [$($test:ident),* $(,)?]) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if let Some(fixture) = $fixture {
                        suite::$test(&fixture).await;
                    }
                }
            )*
        }
    };
}

macro_rules! all_backends {
    ($($test:ident),* $(,)?) => {
        conformance!(sqlite, Fixture::sqlite(), [$($test),*]);
        conformance!(postgres, Fixture::postgres(), [$($test),*]);
    };
}

all_backends![
    an_empty_projection_has_the_default_checkpoint,
    rows_and_checkpoint_commit_together_and_round_trip,
    a_failed_commit_stores_nothing,
    query_filters_match_the_reference,
    cursors_page_through_every_match_once,
    rows_after_pages_in_chain_order,
    a_chain_checkpoint_is_kept_every_1000_rows,
    a_rebuild_switches_over_in_one_step,
    reopening_keeps_everything,
];

const SERVICES: [Option<&str>; 3] = [Some("hello"), Some("world"), None];
const ACTORS: [&str; 2] = ["alice@example.com", "roller"];
const TYPES: [&str; 3] = ["release-requested", "step-started", "pause-requested"];
const VERSIONS: [Option<&str>; 3] = [Some("v1"), None, Some("v2")];

fn time(minutes: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(1_764_000_000_000_000 + minutes as i64 * 60_000_000 + 123)
        .expect("valid test time")
}

/// Row `seq`, its fields cycling through the values above at different rates so that every
/// combination occurs.
fn row(seq: u64) -> AuditRow {
    let i = seq as usize;
    AuditRow {
        seq,
        position: format!("{seq}-0"),
        stream: format!("service:s{}", i % 3),
        service: SERVICES[i % 3].map(String::from),
        revision: seq / 3,
        event_type: TYPES[i / 2 % 3].into(),
        actor: ACTORS[i / 3 % 2].into(),
        occurred_at: time(seq),
        recorded_at: time(seq + 1),
        version: VERSIONS[i / 5 % 3].map(String::from),
        summary: format!("row {seq}: «quoted» ‘text’ 'with' \"quotes\""),
        data: json!({ "n": seq, "nested": { "list": [1, "two", null] } }),
        hash: format!("{seq:064x}"),
    }
}

fn rows(seqs: std::ops::RangeInclusive<u64>) -> Vec<AuditRow> {
    seqs.map(row).collect()
}

fn checkpoint_after(rows: &[AuditRow]) -> ionroller_trail::db::Checkpoint {
    let last = rows.last().expect("at least one row");
    ionroller_trail::db::Checkpoint {
        position: Some(ionroller_shared::store::Position::new(last.seq, 0)),
        seq: last.seq,
        head: [last.seq as u8; 32],
    }
}

/// Commits `rows` with the checkpoint after them.
async fn commit(db: &TrailDb, rows: &[AuditRow]) {
    db.commit(rows, &checkpoint_after(rows))
        .await
        .expect("commit rows");
}

mod suite {
    use ionroller_projections::audit::AuditFilter;
    use ionroller_trail::db::{Checkpoint, CHAIN_CHECKPOINT_EVERY};

    use super::*;

    pub async fn an_empty_projection_has_the_default_checkpoint(f: &Fixture) {
        let db = f.open().await;
        assert_eq!(db.checkpoint().await.unwrap(), Checkpoint::default());
        assert!(db.rows_after(0, 10).await.unwrap().is_empty());
        assert!(db.chain_checkpoints().await.unwrap().is_empty());
        let all = db.query(&AuditFilter::default(), None, true, 10).await;
        assert!(all.unwrap().is_empty());
    }

    pub async fn rows_and_checkpoint_commit_together_and_round_trip(f: &Fixture) {
        let db = f.open().await;
        let first = rows(1..=4);
        commit(&db, &first).await;
        assert_eq!(db.checkpoint().await.unwrap(), checkpoint_after(&first));
        assert_eq!(db.rows_after(0, 100).await.unwrap(), first, "every field");
        let second = rows(5..=6);
        commit(&db, &second).await;
        assert_eq!(db.checkpoint().await.unwrap(), checkpoint_after(&second));
        assert_eq!(db.rows_after(0, 100).await.unwrap(), rows(1..=6));
        // A checkpoint without a position (nothing projected yet) round-trips too.
        db.commit(&[], &Checkpoint::default()).await.unwrap();
        assert_eq!(db.checkpoint().await.unwrap(), Checkpoint::default());
    }

    pub async fn a_failed_commit_stores_nothing(f: &Fixture) {
        let db = f.open().await;
        commit(&db, &rows(1..=3)).await;
        // Row 4 is new, row 3 is already stored: the batch fails as a whole.
        let batch = vec![row(4), row(3)];
        let failed = db.commit(&batch, &checkpoint_after(&batch)).await;
        assert!(failed.is_err(), "a duplicate seq is refused");
        assert_eq!(db.rows_after(0, 100).await.unwrap(), rows(1..=3));
        assert_eq!(
            db.checkpoint().await.unwrap(),
            checkpoint_after(&rows(1..=3))
        );
        commit(&db, &rows(4..=5)).await;
        assert_eq!(db.rows_after(0, 100).await.unwrap(), rows(1..=5));
    }

    fn filters() -> Vec<AuditFilter> {
        let text = |s: &str| Some(s.to_string());
        let none = AuditFilter::default;
        vec![
            none(),
            AuditFilter {
                service: text("hello"),
                ..none()
            },
            AuditFilter {
                service: text("nobody"),
                ..none()
            },
            AuditFilter {
                actor: text("roller"),
                ..none()
            },
            AuditFilter {
                event_type: text("step-started"),
                ..none()
            },
            AuditFilter {
                version: text("v2"),
                ..none()
            },
            AuditFilter {
                from: Some(time(20)),
                ..none()
            },
            AuditFilter {
                to: Some(time(20)),
                ..none()
            },
            AuditFilter {
                from: Some(time(10)),
                to: Some(time(10)),
                ..none()
            },
            AuditFilter {
                service: text("world"),
                actor: text("alice@example.com"),
                event_type: text("release-requested"),
                version: text("v1"),
                from: Some(time(5)),
                to: Some(time(55)),
                people_only: false,
            },
            AuditFilter {
                service: text("hello"),
                event_type: text("pause-requested"),
                ..none()
            },
            AuditFilter {
                people_only: true,
                ..none()
            },
            AuditFilter {
                service: text("hello"),
                people_only: true,
                ..none()
            },
        ]
    }

    fn seqs(rows: &[AuditRow]) -> Vec<u64> {
        rows.iter().map(|r| r.seq).collect()
    }

    pub async fn query_filters_match_the_reference(f: &Fixture) {
        let db = f.open().await;
        let all = rows(1..=60);
        commit(&db, &all).await;
        for filter in filters() {
            let expected: Vec<AuditRow> =
                all.iter().filter(|r| filter.matches(r)).cloned().collect();
            let oldest = db.query(&filter, None, false, 1000).await.unwrap();
            assert_eq!(oldest, expected, "{filter:?}");
            let newest = db.query(&filter, None, true, 1000).await.unwrap();
            let mut reversed = seqs(&expected);
            reversed.reverse();
            assert_eq!(seqs(&newest), reversed, "{filter:?}, newest first");
        }
        let matched = all.iter().filter(|r| filters()[9].matches(r)).count();
        assert!(matched > 0, "the combined filter matches something");
    }

    pub async fn cursors_page_through_every_match_once(f: &Fixture) {
        let db = f.open().await;
        commit(&db, &rows(1..=60)).await;
        for filter in [AuditFilter::default(), filters()[3].clone()] {
            let expected: Vec<u64> = (1..=60).filter(|s| filter.matches(&row(*s))).collect();
            for newest_first in [false, true] {
                let (mut seen, mut cursor) = (Vec::new(), None);
                loop {
                    let page = db.query(&filter, cursor, newest_first, 7).await.unwrap();
                    assert!(page.len() <= 7);
                    seen.extend(seqs(&page));
                    if page.len() < 7 {
                        break;
                    }
                    cursor = page.last().map(|r| r.seq);
                }
                if newest_first {
                    seen.reverse();
                }
                assert_eq!(seen, expected, "{filter:?}, newest first: {newest_first}");
            }
        }
    }

    pub async fn rows_after_pages_in_chain_order(f: &Fixture) {
        let db = f.open().await;
        commit(&db, &rows(1..=25)).await;
        assert_eq!(
            seqs(&db.rows_after(0, 10).await.unwrap()),
            (1..=10).collect::<Vec<_>>()
        );
        assert_eq!(
            seqs(&db.rows_after(20, 10).await.unwrap()),
            (21..=25).collect::<Vec<_>>()
        );
        assert!(db.rows_after(25, 10).await.unwrap().is_empty());
    }

    pub async fn a_chain_checkpoint_is_kept_every_1000_rows(f: &Fixture) {
        let db = f.open().await;
        // Batches of 300 that cross the boundaries at different offsets.
        let all = rows(1..=2500);
        for batch in all.chunks(300) {
            commit(&db, batch).await;
        }
        let expected: Vec<_> = [1000, 2000]
            .into_iter()
            .map(|seq| (seq, format!("{seq}-0"), format!("{seq:064x}")))
            .collect();
        assert_eq!(CHAIN_CHECKPOINT_EVERY, 1000);
        assert_eq!(db.chain_checkpoints().await.unwrap(), expected);
        assert_eq!(db.checkpoint().await.unwrap().seq, 2500);
    }

    pub async fn a_rebuild_switches_over_in_one_step(f: &Fixture) {
        let live = f.open().await;
        commit(&live, &rows(1..=5)).await;
        // What an interrupted rebuild left behind is gone from the next fresh sibling.
        let abandoned = live.fresh_sibling().await.unwrap();
        abandoned
            .commit(&rows(1..=2), &Checkpoint::default())
            .await
            .unwrap();
        drop(abandoned);
        let fresh = live.fresh_sibling().await.unwrap();
        assert_ne!(fresh.location(), live.location());
        assert_eq!(fresh.checkpoint().await.unwrap(), Checkpoint::default());
        assert!(fresh.rows_after(0, 10).await.unwrap().is_empty());
        // The rebuilt projection differs from the live one in rows, checkpoint and chain.
        let rebuilt: Vec<AuditRow> = rows(1..=1200)
            .into_iter()
            .map(|mut r| {
                r.summary = format!("rebuilt {}", r.seq);
                r
            })
            .collect();
        fresh
            .commit(&rebuilt, &checkpoint_after(&rebuilt))
            .await
            .unwrap();
        live.replace_all(fresh.as_ref()).await.unwrap();
        fresh.discard().await.unwrap();
        assert_eq!(live.rows_after(0, 2000).await.unwrap(), rebuilt);
        assert_eq!(live.checkpoint().await.unwrap(), checkpoint_after(&rebuilt));
        assert_eq!(live.chain_checkpoints().await.unwrap().len(), 1);
        // After the discard, the next rebuild starts from an empty sibling again.
        let next = live.fresh_sibling().await.unwrap();
        assert!(next.rows_after(0, 10).await.unwrap().is_empty());
        next.discard().await.unwrap();
    }

    pub async fn reopening_keeps_everything(f: &Fixture) {
        let db = f.open().await;
        let all = rows(1..=1001);
        commit(&db, &all).await;
        let location = db.location();
        match &location {
            Location::SqliteFile(path) => assert!(db.describe().contains(&*path.to_string_lossy())),
            Location::PostgresSchema(schema) => assert!(db.describe().contains(schema.as_str())),
        }
        drop(db);
        let db = f.open().await;
        assert_eq!(db.location(), location);
        assert_eq!(db.checkpoint().await.unwrap(), checkpoint_after(&all));
        assert_eq!(db.rows_after(0, 2000).await.unwrap(), all);
        assert_eq!(db.chain_checkpoints().await.unwrap().len(), 1);
    }
}
