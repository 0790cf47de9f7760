//! Trail's own SQLite file: the audit rows and, in the same transaction, the checkpoint (the
//! last log position projected, the chain's length and head hash). A crash between two
//! batches loses nothing and doubles nothing: rows and checkpoint commit together.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use ionroller_projections::audit::{AuditFilter, AuditRow};
use ionroller_projections::chain::{from_hex, Hash, GENESIS};
use ionroller_shared::store::{
    EventId, EventMetadata, Position, RecordedEvent, Revision, StreamId,
};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("trail database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("trail database (PostgreSQL): {0}")]
    Postgres(#[from] postgres::Error),
    #[error("trail database is corrupt: {0}")]
    Corrupt(String),
}

/// Every this many rows the chain's (seq, position, head hash) is kept for export, so an
/// auditor can hold a copy outside trail and later check the chain still leads to it.
pub const CHAIN_CHECKPOINT_EVERY: u64 = 1000;

/// Where the audit projection stands.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub position: Option<Position>,
    pub seq: u64,
    pub head: Hash,
}

impl Checkpoint {
    /// From its stored columns (either database).
    pub(crate) fn from_stored(
        position: Option<String>,
        seq: i64,
        head: String,
    ) -> Result<Self, DbError> {
        Ok(Checkpoint {
            position: position
                .map(|p| Position::from_token(&p))
                .transpose()
                .map_err(|e| DbError::Corrupt(e.to_string()))?,
            seq: seq as u64,
            head: from_hex(&head).ok_or_else(|| DbError::Corrupt("checkpoint head hash".into()))?,
        })
    }
}

impl Default for Checkpoint {
    fn default() -> Self {
        Checkpoint {
            position: None,
            seq: 0,
            head: GENESIS,
        }
    }
}

/// The projection in one SQLite file (the default).
pub struct SqliteProjection {
    conn: Connection,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit (
    seq         INTEGER PRIMARY KEY,
    position    TEXT    NOT NULL,
    stream      TEXT    NOT NULL,
    service     TEXT,
    revision    INTEGER NOT NULL,
    event_type  TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    occurred_at INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    version     TEXT,
    summary     TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    hash        TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_service ON audit (service, seq);
CREATE INDEX IF NOT EXISTS audit_actor ON audit (actor, seq);
CREATE INDEX IF NOT EXISTS audit_type ON audit (event_type, seq);
CREATE INDEX IF NOT EXISTS audit_service_type ON audit (service, event_type, seq);
CREATE INDEX IF NOT EXISTS audit_version ON audit (version, seq);
CREATE INDEX IF NOT EXISTS audit_time ON audit (occurred_at);
CREATE TABLE IF NOT EXISTS chain_checkpoints (
    seq      INTEGER PRIMARY KEY,
    position TEXT    NOT NULL,
    head     TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    projection TEXT PRIMARY KEY,
    position   TEXT,
    seq        INTEGER NOT NULL,
    head       TEXT    NOT NULL
);";

const COLUMNS: &str = "seq, position, stream, service, revision, event_type, actor, occurred_at, \
                       recorded_at, version, summary, data, hash";

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn time(micros: i64) -> Result<DateTime<Utc>, DbError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| DbError::Corrupt(format!("time {micros}")))
}

impl SqliteProjection {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DbError> {
        let path = path.as_ref().to_path_buf();
        let conn = Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
        conn.execute_batch("PRAGMA synchronous=FULL;")?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteProjection { conn, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn checkpoint(&self) -> Result<Checkpoint, DbError> {
        let row: Option<(Option<String>, i64, String)> = self
            .conn
            .query_row(
                "SELECT position, seq, head FROM checkpoints WHERE projection = 'audit'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((position, seq, head)) = row else {
            return Ok(Checkpoint::default());
        };
        Checkpoint::from_stored(position, seq, head)
    }

    /// Appends rows and moves the checkpoint, atomically.
    pub fn commit(&mut self, rows: &[AuditRow], checkpoint: &Checkpoint) -> Result<(), DbError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(&format!(
                "INSERT INTO audit ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
            ))?;
            for r in rows {
                insert.execute(params![
                    r.seq as i64,
                    r.position,
                    r.stream,
                    r.service,
                    r.revision as i64,
                    r.event_type,
                    r.actor,
                    micros(r.occurred_at),
                    micros(r.recorded_at),
                    r.version,
                    r.summary,
                    r.data.to_string(),
                    r.hash,
                ])?;
            }
            let mut chain_checkpoint = tx.prepare_cached(
                "INSERT OR REPLACE INTO chain_checkpoints (seq, position, head) VALUES (?1, ?2, ?3)",
            )?;
            for r in rows.iter().filter(|r| r.seq % CHAIN_CHECKPOINT_EVERY == 0) {
                chain_checkpoint.execute(params![r.seq as i64, r.position, r.hash])?;
            }
            tx.execute(
                "INSERT INTO checkpoints (projection, position, seq, head) VALUES ('audit', ?1, ?2, ?3)
                 ON CONFLICT (projection) DO UPDATE SET position = ?1, seq = ?2, head = ?3",
                params![
                    checkpoint.position.map(|p| p.to_token()),
                    checkpoint.seq as i64,
                    ionroller_projections::chain::to_hex(&checkpoint.head)
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Rows matching `filter`, `limit` at most, after (or before, newest first) `cursor`.
    pub fn query(
        &self,
        filter: &AuditFilter,
        cursor: Option<u64>,
        newest_first: bool,
        limit: usize,
    ) -> Result<Vec<AuditRow>, DbError> {
        let mut sql = format!("SELECT {COLUMNS} FROM audit WHERE 1 = 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut add = |clause: &str, value: rusqlite::types::Value| {
            sql.push_str(clause);
            args.push(value);
        };
        if let Some(s) = &filter.service {
            add(" AND service = ?", s.clone().into());
        }
        if let Some(a) = &filter.actor {
            add(" AND actor = ?", a.clone().into());
        }
        if let Some(t) = &filter.event_type {
            add(" AND event_type = ?", t.clone().into());
        }
        if let Some(v) = &filter.version {
            add(" AND version = ?", v.clone().into());
        }
        if let Some(f) = filter.from {
            add(" AND occurred_at >= ?", micros(f).into());
        }
        if let Some(t) = filter.to {
            add(" AND occurred_at < ?", micros(t).into());
        }
        if let Some(c) = cursor {
            add(
                if newest_first {
                    " AND seq < ?"
                } else {
                    " AND seq > ?"
                },
                (c as i64).into(),
            );
        }
        add(
            if newest_first {
                " ORDER BY seq DESC LIMIT ?"
            } else {
                " ORDER BY seq ASC LIMIT ?"
            },
            (limit.min(10_000) as i64).into(),
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), read_row)?;
        rows.map(|r| r?).collect()
    }

    /// Every row in chain order, in pages (for verify and rebuilding in-memory folds).
    pub fn rows_after(&self, seq: u64, limit: usize) -> Result<Vec<AuditRow>, DbError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![seq as i64, limit as i64], read_row)?;
        rows.map(|r| r?).collect()
    }

    /// The exported chain checkpoints, oldest first: (seq, position, head hash).
    pub fn chain_checkpoints(&self) -> Result<Vec<(u64, String, String)>, DbError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, position, head FROM chain_checkpoints ORDER BY seq")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Replaces everything with a rebuilt projection in one transaction.
    pub fn replace_all(&mut self, rebuilt: &SqliteProjection) -> Result<(), DbError> {
        let other = rebuilt.path.display().to_string().replace('\'', "''");
        self.conn.execute_batch(&format!(
            "ATTACH DATABASE '{other}' AS rebuilt;
             BEGIN IMMEDIATE;
             DELETE FROM main.audit;
             INSERT INTO main.audit SELECT * FROM rebuilt.audit;
             DELETE FROM main.checkpoints;
             INSERT INTO main.checkpoints SELECT * FROM rebuilt.checkpoints;
             DELETE FROM main.chain_checkpoints;
             INSERT INTO main.chain_checkpoints SELECT * FROM rebuilt.chain_checkpoints;
             COMMIT;
             DETACH DATABASE rebuilt;"
        ))?;
        Ok(())
    }
}

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<AuditRow, DbError>> {
    let seq: i64 = r.get(0)?;
    let occurred: i64 = r.get(7)?;
    let recorded: i64 = r.get(8)?;
    let data: String = r.get(11)?;
    let fields = (
        r.get::<_, String>(1)?,
        r.get::<_, String>(2)?,
        r.get::<_, Option<String>>(3)?,
        r.get::<_, i64>(4)?,
        r.get::<_, String>(5)?,
        r.get::<_, String>(6)?,
        r.get::<_, Option<String>>(9)?,
        r.get::<_, String>(10)?,
        r.get::<_, String>(12)?,
    );
    Ok((|| {
        let (position, stream, service, revision, event_type, actor, version, summary, hash) =
            fields;
        Ok(AuditRow {
            seq: seq as u64,
            position,
            stream,
            service,
            revision: revision as u64,
            event_type,
            actor,
            occurred_at: time(occurred)?,
            recorded_at: time(recorded)?,
            version,
            summary,
            data: serde_json::from_str(&data)
                .map_err(|e| DbError::Corrupt(format!("row {seq} data: {e}")))?,
            hash,
        })
    })())
}

/// The event an audit row records, as far as the read-model folds need it.
pub fn row_event(row: &AuditRow) -> Result<RecordedEvent, DbError> {
    let corrupt = |what: &str| DbError::Corrupt(format!("row {}: {what}", row.seq));
    Ok(RecordedEvent {
        stream: StreamId::new(row.stream.clone()).map_err(|_| corrupt("stream"))?,
        revision: Revision(row.revision),
        position: Position::from_token(&row.position).map_err(|_| corrupt("position"))?,
        recorded_at: row.recorded_at,
        id: EventId(uuid::Uuid::nil()),
        event_type: row.event_type.clone(),
        schema_version: 1,
        data: row.data.clone(),
        metadata: EventMetadata {
            actor: row.actor.clone(),
            correlation_id: uuid::Uuid::nil(),
            causation_id: None,
            occurred_at: row.occurred_at,
        },
    })
}

/// Where trail keeps its projection: its own SQLite file by default, or a PostgreSQL schema.
pub enum TrailDb {
    Sqlite(SqliteProjection),
    Postgres(Box<crate::db_pg::PgProjection>),
}

impl TrailDb {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DbError> {
        SqliteProjection::open(path).map(TrailDb::Sqlite)
    }

    /// Blocking: call it outside the async runtime (e.g. in `spawn_blocking`).
    pub fn open_postgres(url: &str, schema: &str) -> Result<Self, DbError> {
        crate::db_pg::PgProjection::open(url, schema).map(|p| TrailDb::Postgres(Box::new(p)))
    }

    pub fn describe(&self) -> String {
        match self {
            TrailDb::Sqlite(db) => format!("sqlite file {}", db.path().display()),
            TrailDb::Postgres(db) => format!("postgresql schema {}", db.schema()),
        }
    }

    pub fn checkpoint(&mut self) -> Result<Checkpoint, DbError> {
        match self {
            TrailDb::Sqlite(db) => db.checkpoint(),
            TrailDb::Postgres(db) => db.checkpoint(),
        }
    }

    pub fn commit(&mut self, rows: &[AuditRow], checkpoint: &Checkpoint) -> Result<(), DbError> {
        match self {
            TrailDb::Sqlite(db) => db.commit(rows, checkpoint),
            TrailDb::Postgres(db) => db.commit(rows, checkpoint),
        }
    }

    pub fn query(
        &mut self,
        filter: &AuditFilter,
        cursor: Option<u64>,
        newest_first: bool,
        limit: usize,
    ) -> Result<Vec<AuditRow>, DbError> {
        match self {
            TrailDb::Sqlite(db) => db.query(filter, cursor, newest_first, limit),
            TrailDb::Postgres(db) => db.query(filter, cursor, newest_first, limit),
        }
    }

    pub fn rows_after(&mut self, seq: u64, limit: usize) -> Result<Vec<AuditRow>, DbError> {
        match self {
            TrailDb::Sqlite(db) => db.rows_after(seq, limit),
            TrailDb::Postgres(db) => db.rows_after(seq, limit),
        }
    }

    pub fn chain_checkpoints(&mut self) -> Result<Vec<(u64, String, String)>, DbError> {
        match self {
            TrailDb::Sqlite(db) => db.chain_checkpoints(),
            TrailDb::Postgres(db) => db.chain_checkpoints(),
        }
    }

    /// A fresh, empty projection beside this one, for `rebuild`.
    pub fn fresh_sibling(&self) -> Result<TrailDb, DbError> {
        match self {
            TrailDb::Sqlite(db) => {
                let path = db.path().with_extension("rebuild.sqlite");
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
                TrailDb::open(path)
            }
            TrailDb::Postgres(db) => db.fresh_sibling().map(|p| TrailDb::Postgres(Box::new(p))),
        }
    }

    /// Replaces this projection's contents with `rebuilt`'s in one transaction.
    pub fn replace_all(&mut self, rebuilt: &TrailDb) -> Result<(), DbError> {
        match (self, rebuilt) {
            (TrailDb::Sqlite(live), TrailDb::Sqlite(fresh)) => live.replace_all(fresh),
            (TrailDb::Postgres(live), TrailDb::Postgres(fresh)) => live.replace_all(fresh),
            _ => Err(DbError::Corrupt(
                "a rebuild must use the same kind of database".into(),
            )),
        }
    }

    /// Removes a fresh sibling after the switch.
    pub fn discard(self) -> Result<(), DbError> {
        match self {
            TrailDb::Sqlite(db) => {
                let path = db.path().to_path_buf();
                drop(db);
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
                Ok(())
            }
            TrailDb::Postgres(db) => (*db).drop_schema(),
        }
    }
}
