//! The embedded default: the whole log in one SQLite file, no server.
//!
//! - WAL journal with `synchronous=FULL`: a commit is on disk before `append` returns.
//! - One writer thread owns the only write connection. Appends reach it through a channel, and
//!   it commits whatever is queued as one `BEGIN IMMEDIATE` transaction (group commit), so
//!   sixteen concurrent appenders cost about one fsync, not sixteen.
//! - `BEGIN IMMEDIATE` takes SQLite's write lock before positions are allocated, so positions
//!   commit in order even with several processes on one file.
//! - Readers use their own connections, at most eight at once (a semaphore), kept open in a pool
//!   and run on the blocking thread pool.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use ionroller_shared::store::plan::{self, PendingAppend, StoredEventId};
#[cfg(feature = "testing")]
use ionroller_shared::store::testing::{HeldAppend, HoldCommit};
use ionroller_shared::store::{
    subscription, AppendResult, Direction, EventId, EventMetadata, EventStore, ExpectedRevision,
    NewEvent, Position, ReadFilter, RecordedEvent, Revision, StoreError, StreamId, StreamRead,
    SubscriptionMessage, DEFAULT_MAX_APPEND_BYTES,
};

/// Most appends one group commit takes from the queue.
const MAX_GROUP: usize = 512;
/// How long a writer waits for another process's write lock before reporting `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Reads running at once, each on its own connection, kept open between reads. More would
/// only queue on two to eight cores' blocking threads; fewer idle than running would open and
/// close a connection (parsing the schema each time) for every read beyond them, which at
/// 64 reconcile workers cost more CPU than the reads themselves.
const MAX_READERS: usize = 8;

const COLUMNS: &str = "position, stream, revision, event_id, event_type, schema_version, data, \
                       actor, correlation_id, causation_id, occurred_at, recorded_at";

#[derive(Clone, Debug)]
pub struct SqliteOptions {
    pub max_append_bytes: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            max_append_bytes: DEFAULT_MAX_APPEND_BYTES,
        }
    }
}

/// A handle to one SQLite event log. Cheap to clone; the writer thread stops when the last
/// clone is dropped.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    options: SqliteOptions,
    writer: Mutex<Option<mpsc::Sender<WriteRequest>>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    /// One permit per reader connection: at most [`MAX_READERS`] reads at once.
    reading: Arc<tokio::sync::Semaphore>,
    /// The writer thread holds a clone; this one is for the held append of the conformance
    /// suite, which commits on a thread of its own.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    wake_tx: Arc<watch::Sender<u64>>,
    wake_rx: watch::Receiver<u64>,
}

struct WriteRequest {
    append: PendingAppend,
    reply: oneshot::Sender<Result<AppendResult, StoreError>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the log at `path` and migrates its schema.
    pub fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("create directory {}: {e}", dir.display()))
            })?;
        }
        let mut conn = open_write_connection(&path)?;
        migrate(&mut conn)?;
        let (wake_tx, wake_rx) = watch::channel(0u64);
        let wake_tx = Arc::new(wake_tx);
        let (tx, rx) = mpsc::channel();
        let thread_wake = wake_tx.clone();
        let writer_thread = std::thread::Builder::new()
            .name("ionroller-sqlite-writer".into())
            .spawn(move || run_writer(conn, rx, thread_wake))
            .map_err(|e| StoreError::Unavailable(format!("start writer thread: {e}")))?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                options,
                writer: Mutex::new(Some(tx)),
                writer_thread: Mutex::new(Some(writer_thread)),
                readers: Mutex::new(Vec::new()),
                reading: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
                wake_tx,
                wake_rx,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on a reader connection on the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        // Held by the blocking task, so a read whose caller gave up still counts until done.
        let permit = self
            .inner
            .reading
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("sqlite readers closed".into()))?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = inner.take_reader()?;
            let result = f(&conn);
            inner.return_reader(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("sqlite reader task: {e}")))?
    }
}

impl Inner {
    fn take_reader(&self) -> Result<Connection, StoreError> {
        let idle = self.readers.lock().ok().and_then(|mut pool| pool.pop());
        match idle {
            Some(conn) => Ok(conn),
            None => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(sqlite_error)?;
                conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_error)?;
                Ok(conn)
            }
        }
    }

    fn return_reader(&self, conn: Connection) {
        if let Ok(mut pool) = self.readers.lock() {
            if pool.len() < MAX_READERS {
                pool.push(conn);
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the writer loop; joining closes the file before we return,
        // so a test (or a restart) can reopen it at once.
        if let Ok(mut writer) = self.writer.lock() {
            writer.take();
        }
        if let Some(handle) = self.writer_thread.lock().ok().and_then(|mut h| h.take()) {
            let _ = handle.join();
        }
    }
}

fn open_write_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(sqlite_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_error)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(sqlite_error)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "sqlite at {} refused WAL mode (got {mode})",
            path.display()
        )));
    }
    // FULL: the WAL is fsync'd at every commit, so `Ok` survives power loss, not only a crash.
    conn.execute_batch("PRAGMA synchronous=FULL;")
        .map_err(sqlite_error)?;
    Ok(conn)
}

/// Schema versions, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &["CREATE TABLE events (
        position       INTEGER PRIMARY KEY,
        stream         TEXT    NOT NULL,
        revision       INTEGER NOT NULL,
        event_id       BLOB    NOT NULL UNIQUE,
        event_type     TEXT    NOT NULL,
        schema_version INTEGER NOT NULL,
        data           TEXT    NOT NULL,
        actor          TEXT    NOT NULL,
        correlation_id BLOB    NOT NULL,
        causation_id   BLOB,
        occurred_at    INTEGER NOT NULL, -- microseconds since the Unix epoch
        recorded_at    INTEGER NOT NULL,
        UNIQUE (stream, revision)
    );"];

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_error)?;
    let applied: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sqlite_error)?;
    let applied = usize::try_from(applied).unwrap_or(0);
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Unavailable(format!(
            "the event log's schema version {applied} is newer than this build knows ({}); upgrade ionroller",
            MIGRATIONS.len()
        )));
    }
    for sql in &MIGRATIONS[applied..] {
        tx.execute_batch(sql).map_err(sqlite_error)?;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {}", MIGRATIONS.len()))
        .map_err(sqlite_error)?;
    tx.commit().map_err(sqlite_error)?;
    Ok(())
}

fn run_writer(
    mut conn: Connection,
    requests: mpsc::Receiver<WriteRequest>,
    wake: Arc<watch::Sender<u64>>,
) {
    while let Ok(first) = requests.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match requests.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let (appends, replies): (Vec<_>, Vec<_>) =
            group.into_iter().map(|r| (r.append, r.reply)).unzip();
        match commit_group(&mut conn, &appends) {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "sqlite group commit failed");
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Unavailable(format!("sqlite: {e}"))));
                }
            }
        }
        wake.send_modify(|n| *n += 1);
    }
}

fn commit_group(
    conn: &mut Connection,
    appends: &[PendingAppend],
) -> rusqlite::Result<Vec<Result<AppendResult, StoreError>>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let outcomes = write_group(&tx, appends)?;
    tx.commit()?;
    Ok(outcomes)
}

/// Plans and inserts a group inside an open write transaction.
fn write_group(
    tx: &rusqlite::Transaction<'_>,
    appends: &[PendingAppend],
) -> rusqlite::Result<Vec<Result<AppendResult, StoreError>>> {
    let mut heads = HashMap::new();
    {
        let mut head_stmt =
            tx.prepare_cached("SELECT max(revision) FROM events WHERE stream = ?1")?;
        for stream in plan::group_streams(appends) {
            let head: Option<i64> = head_stmt.query_row([stream.as_str()], |r| r.get(0))?;
            if let Some(h) = head {
                heads.insert(stream, Revision(h as u64));
            }
        }
    }
    let mut stored = HashMap::new();
    {
        let mut id_stmt = tx.prepare_cached(
            "SELECT stream, revision, position, event_type, schema_version, data
             FROM events WHERE event_id = ?1",
        )?;
        for id in plan::group_event_ids(appends) {
            let found = id_stmt
                .query_row([id.0.as_bytes().as_slice()], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                })
                .optional()?;
            if let Some((stream, revision, position, event_type, schema_version, data_json)) = found
            {
                let Ok(stream) = StreamId::new(stream) else {
                    continue; // Unreadable rows are reported by readers, not here.
                };
                stored.insert(
                    id,
                    StoredEventId {
                        stream,
                        revision: Revision(revision as u64),
                        position: position as u64,
                        event_type,
                        schema_version: schema_version as u32,
                        data_json,
                    },
                );
            }
        }
    }
    let last_position: i64 =
        tx.query_row("SELECT coalesce(max(position), 0) FROM events", [], |r| {
            r.get(0)
        })?;
    let plan = plan::plan_group(appends, heads, stored, last_position as u64);
    let recorded_at = Utc::now().timestamp_micros();
    let mut insert = tx.prepare_cached(
        "INSERT INTO events (position, stream, revision, event_id, event_type, schema_version,
             data, actor, correlation_id, causation_id, occurred_at, recorded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    for row in &plan.rows {
        let e = row.event;
        insert.execute(params![
            row.position as i64,
            row.stream.as_str(),
            row.revision as i64,
            e.id.0.as_bytes().as_slice(),
            e.event_type,
            e.schema_version,
            e.data_json,
            e.actor,
            e.correlation_id.as_bytes().as_slice(),
            e.causation_id.as_ref().map(|c| c.as_bytes().to_vec()),
            e.occurred_at.timestamp_micros(),
            recorded_at,
        ])?;
    }
    Ok(plan.outcomes)
}

fn decode_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<RecordedEvent, StoreError>> {
    let position: i64 = row.get(0)?;
    let stream: String = row.get(1)?;
    let revision: i64 = row.get(2)?;
    let event_id: Vec<u8> = row.get(3)?;
    let event_type: String = row.get(4)?;
    let schema_version: i64 = row.get(5)?;
    let data: String = row.get(6)?;
    let actor: String = row.get(7)?;
    let correlation_id: Vec<u8> = row.get(8)?;
    let causation_id: Option<Vec<u8>> = row.get(9)?;
    let occurred_at: i64 = row.get(10)?;
    let recorded_at: i64 = row.get(11)?;
    Ok((|| {
        let corrupt =
            |what: &str| StoreError::Corrupt(format!("event at position {position}: {what}"));
        let uuid = |bytes: &[u8], what: &str| Uuid::from_slice(bytes).map_err(|_| corrupt(what));
        let time = |micros: i64, what: &str| {
            DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(|| corrupt(what))
        };
        Ok(RecordedEvent {
            stream: StreamId::new(stream).map_err(|_| corrupt("stream id"))?,
            revision: Revision(revision as u64),
            position: Position::from_sequence(position as u64),
            recorded_at: time(recorded_at, "recorded_at")?,
            id: EventId(uuid(&event_id, "event id")?),
            event_type,
            schema_version: schema_version as u32,
            data: serde_json::from_str(&data).map_err(|_| corrupt("data is not JSON"))?,
            metadata: EventMetadata {
                actor,
                correlation_id: uuid(&correlation_id, "correlation id")?,
                causation_id: causation_id.map(|c| uuid(&c, "causation id")).transpose()?,
                occurred_at: time(occurred_at, "occurred_at")?,
            },
        })
    })())
}

fn collect_rows(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows = stmt.query_map(params, decode_row).map_err(sqlite_error)?;
    let mut events = Vec::new();
    for row in rows {
        events.push(row.map_err(sqlite_error)??);
    }
    Ok(events)
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        let append = plan::prepare(
            stream,
            expected,
            events,
            self.inner.options.max_append_bytes,
        )?;
        let (reply, outcome) = oneshot::channel();
        {
            let writer = self
                .inner
                .writer
                .lock()
                .map_err(|_| StoreError::Unavailable("sqlite writer lock poisoned".into()))?;
            let writer = writer
                .as_ref()
                .ok_or_else(|| StoreError::Unavailable("sqlite store is closed".into()))?;
            writer
                .send(WriteRequest { append, reply })
                .map_err(|_| StoreError::Unavailable("sqlite writer thread stopped".into()))?;
        }
        outcome
            .await
            .map_err(|_| StoreError::Unavailable("sqlite writer thread stopped".into()))?
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        read: StreamRead,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let stream = stream.clone();
        self.read(move |conn| {
            let (cmp, order, start) = match read.direction {
                Direction::Forward => (">=", "ASC", read.from.map_or(0, |r| r.0 as i64)),
                Direction::Backward => ("<=", "DESC", read.from.map_or(i64::MAX, |r| r.0 as i64)),
            };
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM events WHERE stream = ?1 AND revision {cmp} ?2
                 ORDER BY revision {order} LIMIT ?3"
                ))
                .map_err(sqlite_error)?;
            let events = collect_rows(
                &mut stmt,
                params![stream.as_str(), start, sql_limit(read.limit)],
            )?;
            if events.is_empty() {
                let exists: Option<i64> = conn
                    .prepare_cached("SELECT 1 FROM events WHERE stream = ?1 LIMIT 1")
                    .map_err(sqlite_error)?
                    .query_row([stream.as_str()], |r| r.get(0))
                    .optional()
                    .map_err(sqlite_error)?;
                if exists.is_none() {
                    return Err(StoreError::StreamNotFound(stream));
                }
            }
            Ok(events)
        })
        .await
    }

    async fn read_all(
        &self,
        after: Option<Position>,
        limit: usize,
        filter: &ReadFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let filter = filter.clone();
        self.read(move |conn| {
            let after = after.map_or(0, |p| p.sequence() as i64);
            let mut sql = format!("SELECT {COLUMNS} FROM events WHERE position > ?");
            let mut args: Vec<rusqlite::types::Value> = vec![after.into()];
            if let Some(prefix) = &filter.stream_prefix {
                sql.push_str(" AND substr(stream, 1, length(?)) = ?");
                args.push(prefix.clone().into());
                args.push(prefix.clone().into());
            }
            if !filter.event_types.is_empty() {
                let marks = vec!["?"; filter.event_types.len()].join(", ");
                sql.push_str(&format!(" AND event_type IN ({marks})"));
                args.extend(filter.event_types.iter().map(|t| t.clone().into()));
            }
            sql.push_str(" ORDER BY position LIMIT ?");
            args.push(sql_limit(limit).into());
            let mut stmt = conn.prepare_cached(&sql).map_err(sqlite_error)?;
            collect_rows(&mut stmt, rusqlite::params_from_iter(args))
        })
        .await
    }

    fn subscribe_all(
        &self,
        after: Option<Position>,
        filter: ReadFilter,
    ) -> BoxStream<'static, Result<SubscriptionMessage, StoreError>> {
        subscription::subscribe(self.clone(), self.inner.wake_rx.clone(), after, filter)
    }

    async fn head(&self) -> Result<Option<Position>, StoreError> {
        self.read(|conn| {
            let head: Option<i64> = conn
                .query_row("SELECT max(position) FROM events", [], |r| r.get(0))
                .map_err(sqlite_error)?;
            Ok(head.map(|p| Position::from_sequence(p as u64)))
        })
        .await
    }

    fn describe(&self) -> String {
        format!("sqlite file {}", self.inner.path.display())
    }
}

#[cfg(feature = "testing")]
#[async_trait]
impl HoldCommit for SqliteStore {
    async fn append_and_hold(
        &self,
        stream: &StreamId,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<HeldAppend, StoreError> {
        let append = plan::prepare(
            stream,
            expected,
            events,
            self.inner.options.max_append_bytes,
        )?;
        let path = self.inner.path.clone();
        let wake = self.inner.wake_tx.clone();
        let (held, release, outcome) = HeldAppend::new();
        let (written_tx, written) = oneshot::channel();
        std::thread::spawn(move || {
            let result =
                (|| -> Result<AppendResult, StoreError> {
                    let mut conn = open_write_connection(&path)?;
                    let tx = conn
                        .transaction_with_behavior(TransactionBehavior::Immediate)
                        .map_err(sqlite_error)?;
                    let mut outcomes =
                        write_group(&tx, std::slice::from_ref(&append)).map_err(sqlite_error)?;
                    let planned = outcomes.pop().unwrap_or_else(|| {
                        Err(StoreError::Unavailable(
                            "group plan returned no outcome".into(),
                        ))
                    });
                    let _ =
                        written_tx.send(planned.as_ref().map(|r| *r).map_err(|e| {
                            StoreError::Unavailable(format!("held append failed: {e}"))
                        }));
                    // Hold the write lock, rows written but not committed, until released.
                    let _ = release.blocking_recv();
                    tx.commit().map_err(sqlite_error)?;
                    planned
                })();
            wake.send_modify(|n| *n += 1);
            let _ = outcome.send(result);
        });
        written
            .await
            .map_err(|_| StoreError::Unavailable("held append thread stopped".into()))??;
        Ok(held)
    }
}

/// A SQLite failure as the store reports it: the database could not do what was asked, so the
/// call may be retried (data that cannot be decoded is reported as `Corrupt` where it is read).
fn sqlite_error(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("sqlite: {e}"))
}
