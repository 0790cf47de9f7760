//! The PostgreSQL backend, for teams that already run a database server.
//!
//! - Appends go through one writer task per process that commits whatever is queued as one
//!   transaction (group commit): one fsync for many appends.
//! - Every append transaction first takes a transaction-scoped advisory lock, then allocates
//!   positions as `max(position) + 1`. PostgreSQL makes a commit visible before it releases
//!   the transaction's locks, so the next writer can only allocate a higher position after the
//!   previous one is visible: readers never see position `n + 1` before `n` (the "skipped
//!   event" bug of sequence-based stores). Several roller processes on one database are
//!   serialised the same way.
//! - A unique index on `event_id` backs idempotent retries.
//! - `pg_notify` inside the append transaction wakes subscribers, in this process and others,
//!   when it commits.
//! - The schema is created by numbered migrations on open, under an advisory lock.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Statement};
use uuid::Uuid;

use ionroller_shared::store::lease::{Fence, Grant, LeaseRow, LeaseTable, Leases};
use ionroller_shared::store::plan::{self, PendingAppend, StoredEventId};
#[cfg(feature = "testing")]
use ionroller_shared::store::testing::{HeldAppend, HoldCommit};
use ionroller_shared::store::{
    subscription, AppendResult, Direction, EventId, EventMetadata, EventStore, ExpectedRevision,
    NewEvent, Position, ReadFilter, RecordedEvent, Revision, StoreError, StreamId, StreamRead,
    SubscriptionMessage, DEFAULT_MAX_APPEND_BYTES,
};

const MAX_GROUP: usize = 512;
/// A replica row unrenewed for this many lease times to live is deleted by the next heartbeat.
const FORGET_REPLICA_AFTER_TTLS: u32 = 10;
const QUEUE: usize = 4096;
const RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// How long the writer's transaction may sit idle before the server ends its session. A
/// group commit is a few pipelined statements, so only a stalled process comes near this.
const STALLED_WRITER: Duration = Duration::from_secs(3);

const COLUMNS: &str = "position, stream, revision, event_id, event_type, schema_version, \
                       data::text, actor, correlation_id, causation_id, occurred_at, recorded_at";

#[derive(Clone, Debug)]
pub struct PgOptions {
    /// A libpq-style URL or key=value string, e.g. `postgresql://user:pw@host:5432/db`.
    pub url: String,
    /// The schema that holds ionroller's tables; created if missing. Default `public`.
    pub schema: String,
    pub max_append_bytes: usize,
    /// Connections kept for reads (each pipelines many queries).
    pub read_connections: usize,
}

impl PgOptions {
    pub fn new(url: impl Into<String>) -> Self {
        PgOptions {
            url: url.into(),
            schema: "public".to_string(),
            max_append_bytes: DEFAULT_MAX_APPEND_BYTES,
            read_connections: 2,
        }
    }

    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }
}

/// A handle to the PostgreSQL event log. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<PgInner>,
}

struct PgInner {
    config: Config,
    sql: Arc<Sql>,
    options: PgOptions,
    writer: mpsc::Sender<WriteRequest>,
    readers: Vec<Mutex<Option<Arc<Client>>>>,
    next_reader: AtomicUsize,
    wake_rx: watch::Receiver<u64>,
    listener: JoinHandle<()>,
}

impl Drop for PgInner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

struct WriteRequest {
    append: PendingAppend,
    /// Written only if this lease still holds, checked in the group's transaction.
    fence: Option<Fence>,
    reply: oneshot::Sender<Result<AppendResult, StoreError>>,
}

/// SQL text for one schema, built once.
struct Sql {
    schema: String,
    table: String,
    leases: String,
    replicas: String,
    channel: String,
    lock_key: i64,
}

impl Sql {
    fn new(schema: &str) -> Result<Self, StoreError> {
        let valid = !schema.is_empty()
            && schema.len() <= 48
            && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(StoreError::Unavailable(format!(
                "invalid PostgreSQL schema name {schema:?}: use 1 to 48 lowercase letters, digits and _, not starting with a digit"
            )));
        }
        Ok(Sql {
            schema: schema.to_string(),
            table: format!("\"{schema}\".ionroller_events"),
            leases: format!("\"{schema}\".ionroller_leases"),
            replicas: format!("\"{schema}\".ionroller_replicas"),
            channel: format!("ionroller_events_{schema}"),
            lock_key: stable_key(&format!("ionroller:append:{schema}")),
        })
    }
}

/// FNV-1a: a stable 64-bit key for advisory locks (std's hasher is randomised per process).
fn stable_key(text: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

async fn connect(config: &Config) -> Result<Client, StoreError> {
    let (client, connection) = config.connect(NoTls).await.map_err(postgres_error)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

impl PgStore {
    /// Connects, migrates the schema and starts the writer and notification tasks.
    pub async fn open(options: PgOptions) -> Result<Self, StoreError> {
        let config = Config::from_str(&options.url)
            .map_err(|e| StoreError::Unavailable(format!("invalid PostgreSQL URL: {e}")))?;
        let sql = Arc::new(Sql::new(&options.schema)?);
        let mut client = connect(&config).await?;
        migrate(&mut client, &sql).await?;
        let (wake_tx, wake_rx) = watch::channel(0u64);
        let wake_tx = Arc::new(wake_tx);
        let (writer, requests) = mpsc::channel(QUEUE);
        tokio::spawn(run_writer(
            Some(client),
            config.clone(),
            sql.clone(),
            requests,
            wake_tx.clone(),
        ));
        let listener = tokio::spawn(run_listener(config.clone(), sql.clone(), wake_tx));
        let readers = (0..options.read_connections.max(1))
            .map(|_| Mutex::new(None))
            .collect();
        Ok(PgStore {
            inner: Arc::new(PgInner {
                config,
                sql,
                options,
                writer,
                readers,
                next_reader: AtomicUsize::new(0),
                wake_rx,
                listener,
            }),
        })
    }

    async fn reader(&self) -> Result<Arc<Client>, StoreError> {
        let i = self.inner.next_reader.fetch_add(1, Ordering::Relaxed) % self.inner.readers.len();
        let slot = &self.inner.readers[i];
        let current = slot.lock().ok().and_then(|c| c.clone());
        if let Some(client) = current.filter(|c| !c.is_closed()) {
            return Ok(client);
        }
        let client = Arc::new(connect(&self.inner.config).await?);
        if let Ok(mut guard) = slot.lock() {
            *guard = Some(client.clone());
        }
        Ok(client)
    }
}

const MIGRATIONS: &[&str] = &[
    "CREATE TABLE {table} (
        position       bigint      PRIMARY KEY,
        stream         text        NOT NULL,
        revision       bigint      NOT NULL,
        event_id       uuid        NOT NULL UNIQUE,
        event_type     text        NOT NULL,
        schema_version integer     NOT NULL,
        data           json        NOT NULL,
        actor          text        NOT NULL,
        correlation_id uuid        NOT NULL,
        causation_id   uuid,
        occurred_at    timestamptz NOT NULL,
        recorded_at    timestamptz NOT NULL,
        UNIQUE (stream, revision)
    );",
    // Leases of the roller replicas (see `ionroller_shared::store::lease`). Rows, not events:
    // a renewal updates one row in place.
    "CREATE TABLE {schema}.ionroller_leases (
        shard      integer     PRIMARY KEY,
        holder     text        NOT NULL,
        epoch      bigint      NOT NULL,
        expires_at timestamptz NOT NULL
    );
    CREATE TABLE {schema}.ionroller_replicas (
        holder     text        PRIMARY KEY,
        seen_until timestamptz NOT NULL
    );",
];

async fn migrate(client: &mut Client, sql: &Sql) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(postgres_error)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&stable_key(&format!("ionroller:migrate:{}", sql.schema))],
    )
    .await
    .map_err(postgres_error)?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
         CREATE TABLE IF NOT EXISTS \"{schema}\".ionroller_migrations (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now());",
        schema = sql.schema
    ))
    .await
    .map_err(postgres_error)?;
    let applied: Option<i32> = tx
        .query_one(
            &format!(
                "SELECT max(version) FROM \"{}\".ionroller_migrations",
                sql.schema
            ),
            &[],
        )
        .await
        .map_err(postgres_error)?
        .get(0);
    let applied = applied.unwrap_or(0).max(0) as usize;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Unavailable(format!(
            "the event log's schema version {applied} is newer than this build knows ({}); upgrade ionroller",
            MIGRATIONS.len()
        )));
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        let migration = migration
            .replace("{table}", &sql.table)
            .replace("{schema}", &format!("\"{}\"", sql.schema));
        tx.batch_execute(&migration).await.map_err(postgres_error)?;
        tx.execute(
            &format!(
                "INSERT INTO \"{}\".ionroller_migrations (version) VALUES ($1)",
                sql.schema
            ),
            &[&(i as i32 + 1)],
        )
        .await
        .map_err(postgres_error)?;
    }
    tx.commit().await.map_err(postgres_error)?;
    Ok(())
}

/// Statements the writer prepares once per connection.
struct Statements {
    lock: Statement,
    last_position: Statement,
    heads: Statement,
    stored: Statement,
    insert: Statement,
    notify: Statement,
    fences: Statement,
}

impl Statements {
    async fn prepare(client: &Client, sql: &Sql) -> Result<Self, StoreError> {
        let t = &sql.table;
        Ok(Statements {
            lock: client.prepare("SELECT pg_advisory_xact_lock($1)").await.map_err(postgres_error)?,
            last_position: client
                .prepare(&format!("SELECT coalesce(max(position), 0) FROM {t}"))
                .await.map_err(postgres_error)?,
            heads: client
                .prepare(&format!(
                    // One index probe per stream (newest revision first), whatever its length.
                    "SELECT s, (SELECT revision FROM {t} WHERE stream = s ORDER BY revision DESC LIMIT 1)
                     FROM unnest($1::text[]) AS s"
                ))
                .await.map_err(postgres_error)?,
            stored: client
                .prepare(&format!(
                    // A join from the ids keeps one index probe per id even under a generic
                    // plan, where `event_id = ANY($1)` may turn into a scan of the whole log.
                    "SELECT e.event_id, e.stream, e.revision, e.position, e.event_type,
                            e.schema_version, e.data::text
                     FROM unnest($1::uuid[]) AS q(id) JOIN {t} e ON e.event_id = q.id"
                ))
                .await.map_err(postgres_error)?,
            insert: client
                .prepare(&format!(
                    "INSERT INTO {t} (position, stream, revision, event_id, event_type,
                         schema_version, data, actor, correlation_id, causation_id,
                         occurred_at, recorded_at)
                     SELECT p, s, r, i, ty, v, d::json, a, c, ca, o, now()
                     FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], $5::text[],
                                 $6::int[], $7::text[], $8::text[], $9::uuid[], $10::uuid[],
                                 $11::timestamptz[])
                          AS u(p, s, r, i, ty, v, d, a, c, ca, o)"
                ))
                .await.map_err(postgres_error)?,
            notify: client.prepare("SELECT pg_notify($1, '')").await.map_err(postgres_error)?,
            fences: client
                .prepare(&format!(
                    // Rows locked in shard order, the order a renewal locks them in too.
                    "SELECT l.shard, l.epoch FROM {} l
                     JOIN unnest($1::int[], $2::bigint[], $3::text[]) AS f(s, e, h)
                       ON l.shard = f.s AND l.epoch = f.e AND l.holder = f.h
                     ORDER BY l.shard FOR SHARE OF l",
                    sql.leases
                ))
                .await.map_err(postgres_error)?,
        })
    }
}

async fn run_writer(
    mut client: Option<Client>,
    config: Config,
    sql: Arc<Sql>,
    mut requests: mpsc::Receiver<WriteRequest>,
    wake: Arc<watch::Sender<u64>>,
) {
    let mut statements: Option<Statements> = None;
    while let Some(first) = requests.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match requests.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let mut appends = Vec::with_capacity(group.len());
        let mut fences = Vec::with_capacity(group.len());
        let mut replies = Vec::with_capacity(group.len());
        for request in group {
            appends.push(request.append);
            fences.push(request.fence);
            replies.push(request.reply);
        }
        let result = async {
            if client.as_ref().is_none_or(|c| c.is_closed()) {
                statements = None;
                let c = connect(&config).await?;
                // A process frozen mid-commit (SIGSTOP, a stalled VM) would otherwise hold the
                // append lock, and its fences' lease rows, for as long as its connection
                // lives: every other replica's appends and takeovers would wait on it. The
                // server ends such a session instead; the frozen writer's commit then fails
                // and nothing of it lands.
                c.batch_execute(&format!(
                    "SET idle_in_transaction_session_timeout = {}",
                    STALLED_WRITER.as_millis()
                ))
                .await
                .map_err(postgres_error)?;
                client = Some(c);
            }
            let Some(c) = client.as_mut() else {
                return Err(StoreError::Unavailable("no postgres connection".into()));
            };
            if statements.is_none() {
                statements = Some(Statements::prepare(c, &sql).await?);
            }
            let Some(stmts) = statements.as_ref() else {
                return Err(StoreError::Unavailable("statements not prepared".into()));
            };
            let tx = c.transaction().await.map_err(postgres_error)?;
            let outcomes = write_group(&tx, stmts, &sql, &appends, &fences).await?;
            tx.commit().await.map_err(postgres_error)?;
            Ok(outcomes)
        }
        .await;
        match result {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "postgres group commit failed");
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Unavailable(e.to_string())));
                }
                if client.as_ref().is_some_and(|c| c.is_closed()) {
                    tokio::time::sleep(RECONNECT_DELAY).await;
                }
            }
        }
        wake.send_modify(|n| *n += 1);
    }
}

/// Locks, plans and inserts a group inside an open transaction; the caller commits.
///
/// An append with a fence is written only if its lease still holds: the fences' lease rows
/// are share-locked until commit, so a takeover (an UPDATE of the row) waits for this group,
/// and any group after the takeover sees the new epoch and refuses the old holder.
async fn write_group(
    tx: &tokio_postgres::Transaction<'_>,
    stmts: &Statements,
    sql: &Sql,
    appends: &[PendingAppend],
    fences: &[Option<Fence>],
) -> Result<Vec<Result<AppendResult, StoreError>>, StoreError> {
    let streams: Vec<String> = plan::group_streams(appends)
        .into_iter()
        .map(String::from)
        .collect();
    let ids: Vec<Uuid> = plan::group_event_ids(appends)
        .into_iter()
        .map(|id| id.0)
        .collect();
    let held: Vec<&Fence> = fences.iter().flatten().collect();
    let shards: Vec<i32> = held.iter().map(|f| f.shard as i32).collect();
    let epochs: Vec<i64> = held.iter().map(|f| f.epoch as i64).collect();
    let holders: Vec<&str> = held.iter().map(|f| f.holder.as_str()).collect();
    // Sent together (pipelined); the server runs them in order, so everything after the lock
    // sees the state under it.
    let lock_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&sql.lock_key];
    let fence_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
        [&shards, &epochs, &holders];
    let head_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&streams];
    let id_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&ids];
    let fence_rows = async {
        if held.is_empty() {
            Ok(Vec::new())
        } else {
            tx.query(&stmts.fences, &fence_params).await
        }
    };
    let (_, fence_rows, last, head_rows, stored_rows) = tokio::try_join!(
        tx.execute(&stmts.lock, &lock_params),
        fence_rows,
        tx.query_one(&stmts.last_position, &[]),
        tx.query(&stmts.heads, &head_params),
        tx.query(&stmts.stored, &id_params),
    )
    .map_err(postgres_error)?;
    let mut valid = HashSet::new();
    for row in fence_rows {
        let shard: i32 = row.try_get(0).map_err(postgres_error)?;
        let epoch: i64 = row.try_get(1).map_err(postgres_error)?;
        valid.insert((shard as u32, epoch as u64));
    }
    let refused: Vec<bool> = fences
        .iter()
        .map(|f| {
            f.as_ref()
                .is_some_and(|f| !valid.contains(&(f.shard, f.epoch)))
        })
        .collect();
    let last_position: i64 = last.try_get(0).map_err(postgres_error)?;
    let mut heads = HashMap::new();
    for row in head_rows {
        let stream: String = row.try_get(0).map_err(postgres_error)?;
        if let Some(head) = row.try_get::<_, Option<i64>>(1).map_err(postgres_error)? {
            heads.insert(corrupt_stream(stream)?, Revision(head as u64));
        }
    }
    let mut stored = HashMap::new();
    for row in stored_rows {
        let id: Uuid = row.try_get(0).map_err(postgres_error)?;
        stored.insert(
            EventId(id),
            StoredEventId {
                stream: corrupt_stream(row.try_get(1).map_err(postgres_error)?)?,
                revision: Revision(row.try_get::<_, i64>(2).map_err(postgres_error)? as u64),
                position: row.try_get::<_, i64>(3).map_err(postgres_error)? as u64,
                event_type: row.try_get(4).map_err(postgres_error)?,
                schema_version: row.try_get::<_, i32>(5).map_err(postgres_error)? as u32,
                data_json: row.try_get(6).map_err(postgres_error)?,
            },
        );
    }
    if refused.iter().all(|r| !r) {
        return insert_planned(tx, stmts, sql, appends, heads, stored, last_position).await;
    }
    // Only after a lease was lost: plan the others without the refused appends.
    let admitted: Vec<PendingAppend> = appends
        .iter()
        .zip(&refused)
        .filter(|(_, refused)| !**refused)
        .map(|(a, _)| a.clone())
        .collect();
    let mut written = insert_planned(tx, stmts, sql, &admitted, heads, stored, last_position)
        .await?
        .into_iter();
    Ok(fences
        .iter()
        .zip(refused)
        .map(|(fence, refused)| match (fence, refused) {
            (Some(f), true) => Err(StoreError::Fenced {
                shard: f.shard,
                epoch: f.epoch,
            }),
            _ => written.next().unwrap_or_else(|| {
                Err(StoreError::Unavailable(
                    "the group plan returned too few outcomes".into(),
                ))
            }),
        })
        .collect())
}

/// Plans `appends` against what the locked reads found, and inserts the rows.
async fn insert_planned(
    tx: &tokio_postgres::Transaction<'_>,
    stmts: &Statements,
    sql: &Sql,
    appends: &[PendingAppend],
    heads: HashMap<StreamId, Revision>,
    stored: HashMap<EventId, StoredEventId>,
    last_position: i64,
) -> Result<Vec<Result<AppendResult, StoreError>>, StoreError> {
    let plan = plan::plan_group(appends, heads, stored, last_position as u64);
    if !plan.rows.is_empty() {
        let n = plan.rows.len();
        let mut positions = Vec::with_capacity(n);
        let mut row_streams = Vec::with_capacity(n);
        let mut revisions = Vec::with_capacity(n);
        let mut event_ids = Vec::with_capacity(n);
        let mut types = Vec::with_capacity(n);
        let mut versions = Vec::with_capacity(n);
        let mut datas = Vec::with_capacity(n);
        let mut actors = Vec::with_capacity(n);
        let mut correlations = Vec::with_capacity(n);
        let mut causations = Vec::with_capacity(n);
        let mut occurred = Vec::with_capacity(n);
        for row in &plan.rows {
            let e = row.event;
            positions.push(row.position as i64);
            row_streams.push(row.stream.as_str());
            revisions.push(row.revision as i64);
            event_ids.push(e.id.0);
            types.push(e.event_type.as_str());
            versions.push(e.schema_version as i32);
            datas.push(e.data_json.as_str());
            actors.push(e.actor.as_str());
            correlations.push(e.correlation_id);
            causations.push(e.causation_id);
            occurred.push(e.occurred_at);
        }
        tx.execute(
            &stmts.insert,
            &[
                &positions,
                &row_streams,
                &revisions,
                &event_ids,
                &types,
                &versions,
                &datas,
                &actors,
                &correlations,
                &causations,
                &occurred,
            ],
        )
        .await
        .map_err(postgres_error)?;
        tx.execute(&stmts.notify, &[&sql.channel])
            .await
            .map_err(postgres_error)?;
    }
    Ok(plan.outcomes)
}

fn corrupt_stream(name: String) -> Result<StreamId, StoreError> {
    StreamId::new(name).map_err(|e| StoreError::Corrupt(format!("stored stream id: {e}")))
}

/// Forwards `NOTIFY`s from other processes' (and our own) commits to local subscribers.
async fn run_listener(config: Config, sql: Arc<Sql>, wake: Arc<watch::Sender<u64>>) {
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let forward_wake = wake.clone();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(_)) => {
                                forward_wake.send_modify(|n| *n += 1)
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "postgres listener connection failed");
                                break;
                            }
                        }
                    }
                });
                let listen = format!("LISTEN \"{}\"", sql.channel);
                if let Err(e) = client.batch_execute(&listen).await {
                    tracing::warn!(error = %e, "postgres LISTEN failed");
                    driver.abort();
                } else {
                    // Notifications may have been missed while (re)connecting.
                    wake.send_modify(|n| *n += 1);
                    let _ = driver.await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "postgres listener cannot connect"),
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

fn decode_row(row: &tokio_postgres::Row) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row.try_get(0).map_err(postgres_error)?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("event at position {position}: {what}"));
    let data: String = row.try_get(6).map_err(postgres_error)?;
    Ok(RecordedEvent {
        stream: StreamId::new(row.try_get::<_, String>(1).map_err(postgres_error)?)
            .map_err(|_| corrupt("stream id"))?,
        revision: Revision(row.try_get::<_, i64>(2).map_err(postgres_error)? as u64),
        position: Position::from_sequence(position as u64),
        recorded_at: row
            .try_get::<_, DateTime<Utc>>(11)
            .map_err(postgres_error)?,
        id: EventId(row.try_get(3).map_err(postgres_error)?),
        event_type: row.try_get(4).map_err(postgres_error)?,
        schema_version: row.try_get::<_, i32>(5).map_err(postgres_error)? as u32,
        data: serde_json::from_str(&data).map_err(|_| corrupt("data is not JSON"))?,
        metadata: EventMetadata {
            actor: row.try_get(7).map_err(postgres_error)?,
            correlation_id: row.try_get(8).map_err(postgres_error)?,
            causation_id: row.try_get(9).map_err(postgres_error)?,
            occurred_at: row.try_get(10).map_err(postgres_error)?,
        },
    })
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[async_trait]
impl EventStore for PgStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.write(stream, expected, events, None).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        read: StreamRead,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.reader().await?;
        let t = &self.inner.sql.table;
        let (cmp, order, start) = match read.direction {
            Direction::Forward => (">=", "ASC", read.from.map_or(0, |r| r.0 as i64)),
            Direction::Backward => ("<=", "DESC", read.from.map_or(i64::MAX, |r| r.0 as i64)),
        };
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM {t} WHERE stream = $1 AND revision {cmp} $2
                     ORDER BY revision {order} LIMIT $3"
                ),
                &[&stream.as_str(), &start, &sql_limit(read.limit)],
            )
            .await
            .map_err(postgres_error)?;
        if rows.is_empty() {
            let exists = client
                .query_opt(
                    &format!("SELECT 1 FROM {t} WHERE stream = $1 LIMIT 1"),
                    &[&stream.as_str()],
                )
                .await
                .map_err(postgres_error)?;
            if exists.is_none() {
                return Err(StoreError::StreamNotFound(stream.clone()));
            }
        }
        rows.iter().map(decode_row).collect()
    }

    async fn read_all(
        &self,
        after: Option<Position>,
        limit: usize,
        filter: &ReadFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.reader().await?;
        let after = after.map_or(0, |p| p.sequence() as i64);
        let prefix = filter.stream_prefix.clone().unwrap_or_default();
        let types = filter.event_types.clone();
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM {} WHERE position > $1
                       AND ($2 = '' OR starts_with(stream, $2))
                       AND (cardinality($3::text[]) = 0 OR event_type = ANY($3))
                     ORDER BY position LIMIT $4",
                    self.inner.sql.table
                ),
                &[&after, &prefix, &types, &sql_limit(limit)],
            )
            .await
            .map_err(postgres_error)?;
        rows.iter().map(decode_row).collect()
    }

    fn subscribe_all(
        &self,
        after: Option<Position>,
        filter: ReadFilter,
    ) -> BoxStream<'static, Result<SubscriptionMessage, StoreError>> {
        subscription::subscribe(self.clone(), self.inner.wake_rx.clone(), after, filter)
    }

    async fn head(&self) -> Result<Option<Position>, StoreError> {
        let client = self.reader().await?;
        let row = client
            .query_one(
                &format!("SELECT max(position) FROM {}", self.inner.sql.table),
                &[],
            )
            .await
            .map_err(postgres_error)?;
        let head: Option<i64> = row.try_get(0).map_err(postgres_error)?;
        Ok(head.map(|p| Position::from_sequence(p as u64)))
    }

    fn describe(&self) -> String {
        let hosts: Vec<String> = self
            .inner
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        format!(
            "postgresql database {} on {} (schema {})",
            self.inner.config.get_dbname().unwrap_or("(default)"),
            hosts.join(","),
            self.inner.sql.schema
        )
    }
}

impl PgStore {
    /// Queues one append for the group writer.
    async fn write(
        &self,
        stream: &StreamId,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
        fence: Option<Fence>,
    ) -> Result<AppendResult, StoreError> {
        let append = plan::prepare(
            stream,
            expected,
            events,
            self.inner.options.max_append_bytes,
        )?;
        let (reply, outcome) = oneshot::channel();
        self.inner
            .writer
            .send(WriteRequest {
                append,
                fence,
                reply,
            })
            .await
            .map_err(|_| StoreError::Unavailable("postgres writer task stopped".into()))?;
        outcome
            .await
            .map_err(|_| StoreError::Unavailable("postgres writer task stopped".into()))?
    }
}

/// Grants from rows of (shard, epoch).
fn grants(rows: &[tokio_postgres::Row]) -> Result<Vec<Grant>, StoreError> {
    rows.iter()
        .map(|row| {
            Ok(Grant {
                shard: row.try_get::<_, i32>(0).map_err(postgres_error)? as u32,
                epoch: row.try_get::<_, i64>(1).map_err(postgres_error)? as u64,
            })
        })
        .collect()
}

/// Leases are judged by the database's clock (`now()`), never a replica's.
#[async_trait]
impl Leases for PgStore {
    async fn heartbeat(
        &self,
        holder: &str,
        held: &[Grant],
        ttl: Duration,
    ) -> Result<(Vec<Grant>, LeaseTable), StoreError> {
        let client = self.reader().await?;
        let sql = &self.inner.sql;
        let ttl = ttl.as_secs_f64();
        let shards: Vec<i32> = held.iter().map(|g| g.shard as i32).collect();
        let epochs: Vec<i64> = held.iter().map(|g| g.epoch as i64).collect();
        // Every restart of a replica under a new id leaves a row behind: rows that went
        // unrenewed for `FORGET_REPLICA_AFTER_TTLS` times the time to live are deleted, so
        // the table holds the replicas of the last few minutes, not of the cluster's life.
        let member = format!(
            "WITH forgotten AS (
                 DELETE FROM {r}
                 WHERE seen_until < now() - {FORGET_REPLICA_AFTER_TTLS} * $2::float8 * interval '1 second'
                   AND holder <> $1)
             INSERT INTO {r} (holder, seen_until) VALUES ($1, now() + $2::float8 * interval '1 second')
             ON CONFLICT (holder) DO UPDATE SET seen_until = excluded.seen_until",
            r = sql.replicas
        );
        // Rows locked in shard order, as the fenced writer locks them.
        let renew = format!(
            "UPDATE {l} l SET expires_at = now() + $4::float8 * interval '1 second'
             FROM (SELECT shard FROM {l}
                   WHERE holder = $1 AND (shard, epoch) IN
                         (SELECT * FROM unnest($2::int[], $3::bigint[]))
                   ORDER BY shard FOR UPDATE) AS mine
             WHERE l.shard = mine.shard
             RETURNING l.shard, l.epoch",
            l = sql.leases
        );
        let table = format!(
            "SELECT shard, holder, epoch, expires_at > now() FROM {} ORDER BY shard",
            sql.leases
        );
        let replicas = format!(
            "SELECT holder FROM {} WHERE seen_until > now() ORDER BY holder",
            sql.replicas
        );
        client
            .execute(&member, &[&holder, &ttl])
            .await
            .map_err(postgres_error)?;
        let renewed = client
            .query(&renew, &[&holder, &shards, &epochs, &ttl])
            .await
            .map_err(postgres_error)?;
        let (rows, live) =
            tokio::try_join!(client.query(&table, &[]), client.query(&replicas, &[]))
                .map_err(postgres_error)?;
        let mut leases = Vec::with_capacity(rows.len());
        for row in &rows {
            leases.push(LeaseRow {
                shard: row.try_get::<_, i32>(0).map_err(postgres_error)? as u32,
                holder: row.try_get(1).map_err(postgres_error)?,
                epoch: row.try_get::<_, i64>(2).map_err(postgres_error)? as u64,
                live: row.try_get(3).map_err(postgres_error)?,
            });
        }
        let replicas = live
            .iter()
            .map(|row| row.try_get(0).map_err(postgres_error))
            .collect::<Result<_, _>>()?;
        let mut renewed = grants(&renewed)?;
        renewed.sort();
        Ok((renewed, LeaseTable { leases, replicas }))
    }

    async fn acquire(
        &self,
        holder: &str,
        shards: &[u32],
        ttl: Duration,
    ) -> Result<Vec<Grant>, StoreError> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let mut wanted: Vec<i32> = shards.iter().map(|s| *s as i32).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let client = self.reader().await?;
        let acquire = format!(
            "INSERT INTO {l} AS l (shard, holder, epoch, expires_at)
             SELECT s, $1, 1, now() + $3::float8 * interval '1 second'
             FROM unnest($2::int[]) AS s ORDER BY s
             ON CONFLICT (shard) DO UPDATE
               SET holder = excluded.holder, epoch = l.epoch + 1, expires_at = excluded.expires_at
               WHERE l.expires_at <= now()
             RETURNING shard, epoch",
            l = self.inner.sql.leases
        );
        let rows = client
            .query(&acquire, &[&holder, &wanted, &ttl.as_secs_f64()])
            .await
            .map_err(postgres_error)?;
        let mut granted = grants(&rows)?;
        granted.sort();
        Ok(granted)
    }

    async fn release(
        &self,
        holder: &str,
        grants: &[Grant],
        leaving: bool,
    ) -> Result<(), StoreError> {
        let client = self.reader().await?;
        let sql = &self.inner.sql;
        let shards: Vec<i32> = grants.iter().map(|g| g.shard as i32).collect();
        let epochs: Vec<i64> = grants.iter().map(|g| g.epoch as i64).collect();
        let release = format!(
            "UPDATE {l} l SET expires_at = '-infinity'
             FROM (SELECT shard FROM {l}
                   WHERE holder = $1 AND (shard, epoch) IN
                         (SELECT * FROM unnest($2::int[], $3::bigint[]))
                   ORDER BY shard FOR UPDATE) AS mine
             WHERE l.shard = mine.shard",
            l = sql.leases
        );
        client
            .execute(&release, &[&holder, &shards, &epochs])
            .await
            .map_err(postgres_error)?;
        if leaving {
            client
                .execute(
                    &format!("DELETE FROM {} WHERE holder = $1", sql.replicas),
                    &[&holder],
                )
                .await
                .map_err(postgres_error)?;
        }
        Ok(())
    }

    async fn append_fenced(
        &self,
        fence: &Fence,
        stream: &StreamId,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.write(stream, expected, events, Some(fence.clone()))
            .await
    }
}

/// The PostgreSQL server the test command started (`IONROLLER_TEST_PG_URL`, which
/// scripts/test.sh sets), if any. In CI (`CI=true`) its absence fails the test, so a green CI
/// run means the PostgreSQL tests ran; elsewhere the test is skipped, loudly.
#[cfg(feature = "testing")]
pub fn test_server_url() -> Option<String> {
    match std::env::var("IONROLLER_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
                "IONROLLER_TEST_PG_URL is not set in CI: the PostgreSQL tests cannot be skipped \
                 there; run them through scripts/test.sh"
            );
            eprintln!(
                "\n*** SKIPPING a PostgreSQL test: IONROLLER_TEST_PG_URL is not set. Run \
                 scripts/test.sh to start a throwaway PostgreSQL. ***\n"
            );
            None
        }
    }
}

#[cfg(feature = "testing")]
impl PgStore {
    /// Every replica row, renewed or not (`LeaseTable::replicas` has only the live ones).
    pub async fn replica_rows(&self) -> Result<Vec<String>, StoreError> {
        let client = self.reader().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT holder FROM {} ORDER BY holder",
                    self.inner.sql.replicas
                ),
                &[],
            )
            .await
            .map_err(postgres_error)?;
        rows.iter()
            .map(|row| row.try_get(0).map_err(postgres_error))
            .collect()
    }
}

#[cfg(feature = "testing")]
#[async_trait]
impl HoldCommit for PgStore {
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
        let mut client = connect(&self.inner.config).await?;
        let sql = self.inner.sql.clone();
        let (held, release, outcome) = HeldAppend::new();
        let (written_tx, written) = oneshot::channel();
        tokio::spawn(async move {
            let result = async {
                let stmts = Statements::prepare(&client, &sql).await?;
                let tx = client.transaction().await.map_err(postgres_error)?;
                let mut outcomes =
                    write_group(&tx, &stmts, &sql, std::slice::from_ref(&append), &[None]).await?;
                let planned = outcomes.pop().unwrap_or_else(|| {
                    Err(StoreError::Unavailable(
                        "group plan returned no outcome".into(),
                    ))
                });
                let _ = written_tx.send(
                    planned
                        .as_ref()
                        .map(|r| *r)
                        .map_err(|e| StoreError::Unavailable(format!("held append failed: {e}"))),
                );
                let _ = release.await;
                tx.commit().await.map_err(postgres_error)?;
                planned
            }
            .await;
            let _ = outcome.send(result);
        });
        written
            .await
            .map_err(|_| StoreError::Unavailable("held append task stopped".into()))??;
        Ok(held)
    }
}

/// A PostgreSQL failure as the store reports it: the server could not do what was asked, so
/// the call may be retried.
fn postgres_error(e: tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(format!("postgres: {e}"))
}
