//! What trail needs from wherever it keeps its projection (audit rows, the checkpoint and the
//! chain checkpoints), independent of the database. The backends implement [`Projection`];
//! nothing here knows a driver.

use std::fmt;
use std::path::PathBuf;

use async_trait::async_trait;
use ionroller_projections::audit::{AuditFilter, AuditRow};
use ionroller_projections::chain::{Hash, GENESIS};
use ionroller_shared::store::Position;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database refused or failed an operation (the driver's error is the source).
    #[error("trail database ({backend}): {source}")]
    Backend {
        backend: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored value does not decode: the projection was edited or written by something else.
    #[error("trail database is corrupt: {0}")]
    Corrupt(String),
    /// The caller asked for something the projection cannot do (a bad schema name, a rebuild
    /// across two kinds of database).
    #[error("trail database: {0}")]
    Invalid(String),
    /// The task that ran a blocking database call panicked or was cancelled.
    #[error("trail database task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl DbError {
    /// `rebuilt` is not a fresh sibling of the projection being replaced.
    pub fn not_a_sibling(rebuilt: &dyn Projection) -> Self {
        DbError::Invalid(format!(
            "a rebuild must use the same kind of database, not {}",
            rebuilt.describe()
        ))
    }
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

impl Default for Checkpoint {
    fn default() -> Self {
        Checkpoint {
            position: None,
            seq: 0,
            head: GENESIS,
        }
    }
}

/// An exported chain checkpoint: (seq, position token, head hash in hex).
pub type ChainCheckpoint = (u64, String, String);

/// Where a projection lives. A rebuild's switch-over uses it to find the fresh sibling's
/// tables from the live projection's connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    SqliteFile(PathBuf),
    PostgresSchema(String),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::SqliteFile(path) => write!(f, "sqlite file {}", path.display()),
            Location::PostgresSchema(schema) => write!(f, "postgresql schema {schema}"),
        }
    }
}

/// Trail's projection store. Async because the PostgreSQL driver is; the SQLite backend runs
/// its (blocking) calls on the blocking pool. Methods take `&self` so one handle can be
/// shared by the projector and the API; each backend serialises its own connection.
#[async_trait]
pub trait Projection: Send + Sync {
    fn location(&self) -> Location;

    /// For logs and the command line: e.g. `sqlite file .ionroller/trail.sqlite`.
    fn describe(&self) -> String {
        self.location().to_string()
    }

    /// Where projecting stopped; the default checkpoint when nothing was ever committed.
    async fn checkpoint(&self) -> Result<Checkpoint, DbError>;

    /// Appends `rows`, keeps a chain checkpoint for each row whose seq is a multiple of
    /// [`CHAIN_CHECKPOINT_EVERY`], and moves the checkpoint: all in one transaction, so a
    /// crash neither skips nor doubles a row.
    async fn commit(&self, rows: &[AuditRow], checkpoint: &Checkpoint) -> Result<(), DbError>;

    /// Rows matching `filter`, `limit` at most (capped at 10,000), after `cursor` (a seq) in
    /// chain order, or before it, newest first.
    async fn query(
        &self,
        filter: &AuditFilter,
        cursor: Option<u64>,
        newest_first: bool,
        limit: usize,
    ) -> Result<Vec<AuditRow>, DbError>;

    /// Every row in chain order, in pages (for verify and refolding the in-memory models).
    async fn rows_after(&self, seq: u64, limit: usize) -> Result<Vec<AuditRow>, DbError>;

    /// The exported chain checkpoints, oldest first.
    async fn chain_checkpoints(&self) -> Result<Vec<ChainCheckpoint>, DbError>;

    /// A fresh, empty projection beside this one (same kind, same database server), for a
    /// rebuild. Whatever an earlier, interrupted rebuild left there is removed first.
    async fn fresh_sibling(&self) -> Result<Box<dyn Projection>, DbError>;

    /// Replaces this projection's contents with `rebuilt`'s in one transaction: readers see
    /// the old rows or the new ones, never a mix.
    async fn replace_all(&self, rebuilt: &dyn Projection) -> Result<(), DbError>;

    /// Closes and removes a fresh sibling after the switch-over.
    async fn discard(self: Box<Self>) -> Result<(), DbError>;
}
