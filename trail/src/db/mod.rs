//! Where trail keeps its projection: audit rows, the checkpoint (last log position projected,
//! the chain's length and head hash) and the exported chain checkpoints.
//!
//! - [`projection`]: the [`Projection`] trait and what it speaks in ([`Checkpoint`],
//!   [`DbError`], [`Location`]); no driver.
//! - [`sql`]: the tables, columns, row encoding and the audit query builder, once for both
//!   dialects; pure.
//! - [`sqlite`] (the default: trail's own file) and [`postgres`] (a schema, with
//!   `--projection-postgres`): driver glue only. They depend on `projection` and `sql`, never
//!   on each other or on this module.
//!
//! [`TrailDb`] is the handle the rest of trail holds: it opens a backend and derefs to it.

pub mod postgres;
pub mod projection;
pub mod sql;
pub mod sqlite;

use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

pub use projection::{
    ChainCheckpoint, Checkpoint, DbError, Location, Projection, CHAIN_CHECKPOINT_EVERY,
};

/// A shared handle to the open projection, whichever backend holds it. Cheap to clone.
#[derive(Clone)]
pub struct TrailDb(Arc<dyn Projection>);

impl TrailDb {
    /// Trail's own SQLite file, created if missing. Blocking, but quick.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DbError> {
        Ok(TrailDb(Arc::new(sqlite::SqliteProjection::open(path)?)))
    }

    /// A schema in a PostgreSQL database, created if missing.
    pub async fn open_postgres(url: &str, schema: &str) -> Result<Self, DbError> {
        Ok(TrailDb(Arc::new(
            postgres::PgProjection::open(url, schema).await?,
        )))
    }
}

impl From<Box<dyn Projection>> for TrailDb {
    fn from(projection: Box<dyn Projection>) -> Self {
        TrailDb(projection.into())
    }
}

impl Deref for TrailDb {
    type Target = dyn Projection;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}
