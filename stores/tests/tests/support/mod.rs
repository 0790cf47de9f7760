//! Helpers shared by the store test suites: event builders and per-backend fixtures.
#![allow(dead_code)] // Each test binary uses a different subset.

use chrono::{DateTime, Utc};
use ionroller_shared::store::{EventId, EventMetadata, NewEvent, StreamId};
use ionroller_store_kurrentdb::testing::{test_server, StandIn};
use ionroller_store_kurrentdb::{KurrentOptions, KurrentStore};
use ionroller_store_postgres::{PgOptions, PgStore};
use ionroller_store_sqlite::{SqliteOptions, SqliteStore};
use serde_json::json;
use uuid::Uuid;

pub fn stream(name: &str) -> StreamId {
    StreamId::new(name).expect("test stream names are valid")
}

/// A timestamp with microsecond precision, which every backend stores exactly.
pub fn at_micros(micros: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_micros(micros).expect("valid test timestamp")
}

pub fn event(id: EventId, event_type: &str, data: serde_json::Value) -> NewEvent {
    NewEvent {
        id,
        event_type: event_type.to_string(),
        schema_version: 1,
        data,
        metadata: EventMetadata {
            actor: "tester@example.com".to_string(),
            correlation_id: Uuid::from_u128(7),
            causation_id: Some(Uuid::from_u128(8)),
            occurred_at: at_micros(1_764_000_000_123_456),
        },
    }
}

/// `n` fresh events of type `t` numbered from `first`.
pub fn events(n: usize, first: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|i| event(EventId::random(), "t", json!({ "n": first + i })))
        .collect()
}

pub use ionroller_store_postgres::test_server_url as pg_url;

/// A fresh SQLite log in its own temporary directory; `open` may be called again to reopen it.
pub struct SqliteFixture {
    dir: tempfile::TempDir,
}

impl SqliteFixture {
    pub fn new() -> Option<Self> {
        Some(SqliteFixture {
            dir: tempfile::tempdir().expect("create a temporary directory"),
        })
    }

    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("events.sqlite")
    }

    pub async fn open(&self) -> SqliteStore {
        self.open_with(SqliteOptions::default()).await
    }

    pub async fn open_with(&self, options: SqliteOptions) -> SqliteStore {
        SqliteStore::open(self.path(), options).expect("open the SQLite store")
    }
}

/// A fresh schema in the test PostgreSQL; `open` may be called again to reconnect to it.
pub struct PgFixture {
    url: String,
    schema: String,
}

impl PgFixture {
    pub fn new() -> Option<Self> {
        let url = pg_url()?;
        Some(PgFixture {
            url,
            schema: format!("t_{}", Uuid::new_v4().simple()),
        })
    }

    pub async fn open(&self) -> PgStore {
        self.open_with(PgOptions::new(&self.url)).await
    }

    pub async fn open_with(&self, options: PgOptions) -> PgStore {
        PgStore::open(PgOptions {
            url: self.url.clone(),
            schema: self.schema.clone(),
            ..options
        })
        .await
        .expect("open the PostgreSQL store")
    }
}

/// A KurrentDB (the real one at `IONROLLER_KURRENTDB_URL`, or the stand-in) and a namespace
/// of its own, so tests sharing a server do not see each other's streams.
pub struct KurrentFixture {
    url: String,
    namespace: String,
    pub standin: Option<StandIn>,
    _dir: tempfile::TempDir,
}

impl KurrentFixture {
    pub fn new() -> Option<Self> {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let (url, standin) = test_server(dir.path())?;
        Some(KurrentFixture {
            url,
            namespace: format!("t{}.", Uuid::new_v4().simple()),
            standin,
            _dir: dir,
        })
    }

    /// The server's connection string.
    #[allow(dead_code)] // not every test binary that shares this module needs it
    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn open(&self) -> KurrentStore {
        self.open_with_limit(ionroller_shared::store::DEFAULT_MAX_APPEND_BYTES)
            .await
    }

    /// A store in a namespace no other call has used: an empty log on the same server.
    pub async fn open_fresh(&self) -> KurrentStore {
        let namespace = format!("t{}.", Uuid::new_v4().simple());
        KurrentStore::open(KurrentOptions::new(&self.url).namespace(namespace))
            .await
            .expect("open the KurrentDB store")
    }

    pub async fn open_with_limit(&self, max_append_bytes: usize) -> KurrentStore {
        let mut options = KurrentOptions::new(&self.url).namespace(&self.namespace);
        options.max_append_bytes = max_append_bytes;
        KurrentStore::open(options)
            .await
            .expect("open the KurrentDB store")
    }
}
