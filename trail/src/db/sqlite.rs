//! The projection in trail's own SQLite file (the default): driver glue only; the SQL is in
//! `sql`. rusqlite blocks, so every call runs on the blocking pool, one at a time on the one
//! connection (WAL, `synchronous=FULL`: a commit that returned is durable).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ionroller_projections::audit::{AuditFilter, AuditRow};
use rusqlite::{params_from_iter, Connection, OptionalExtension, TransactionBehavior};

use super::projection::{ChainCheckpoint, Checkpoint, DbError, Location, Projection};
use super::sql::{self, Columns, Dialect, Statements, Value};

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Backend {
            backend: "SQLite",
            source: Box::new(e),
        }
    }
}

impl Columns for rusqlite::Row<'_> {
    fn int(&self, i: usize) -> Result<i64, DbError> {
        Ok(self.get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, DbError> {
        Ok(self.get(i)?)
    }
}

fn bind(values: Vec<Value>) -> impl rusqlite::Params {
    params_from_iter(values.into_iter().map(|v| match v {
        Value::Int(i) => rusqlite::types::Value::Integer(i),
        Value::Text(s) => rusqlite::types::Value::Text(s),
        Value::Null => rusqlite::types::Value::Null,
    }))
}

/// The projection in one SQLite file.
pub struct SqliteProjection {
    conn: Arc<Mutex<Connection>>,
    sql: Arc<Statements>,
    path: PathBuf,
}

impl SqliteProjection {
    /// Opens (creating if needed) the file. Blocking, but quick: a file open and the DDL.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DbError> {
        let path = path.as_ref().to_path_buf();
        let sql = Statements::new(Dialect::Sqlite, None)?;
        let conn = Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
        conn.execute_batch("PRAGMA synchronous=FULL;")?;
        conn.execute_batch(&sql.ddl)?;
        Ok(SqliteProjection {
            conn: Arc::new(Mutex::new(conn)),
            sql: Arc::new(sql),
            path,
        })
    }

    /// Runs `f` on the connection on the blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &Statements) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let (conn, sql) = (self.conn.clone(), self.sql.clone());
        tokio::task::spawn_blocking(move || {
            let mut conn = conn
                .lock()
                .map_err(|_| DbError::Invalid("the connection's lock is poisoned".into()))?;
            f(&mut conn, &sql)
        })
        .await?
    }

    /// Rows for a statement that reads [`sql::COLUMNS`].
    async fn rows(&self, text: String, values: Vec<Value>) -> Result<Vec<AuditRow>, DbError> {
        self.run(move |conn, _| {
            let mut stmt = conn.prepare_cached(&text)?;
            let mut rows = stmt.query(bind(values))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(sql::decode_row(row)?);
            }
            Ok(out)
        })
        .await
    }
}

/// The files SQLite keeps for a database at `path`.
fn remove_files(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        // Absent files are the goal; any other failure shows up when the file is reused.
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[async_trait]
impl Projection for SqliteProjection {
    fn location(&self) -> Location {
        Location::SqliteFile(self.path.clone())
    }

    async fn checkpoint(&self) -> Result<Checkpoint, DbError> {
        self.run(|conn, sql| {
            let mut stmt = conn.prepare_cached(&sql.select_checkpoint)?;
            match stmt
                .query_row([], |r| Ok(sql::decode_checkpoint(r)))
                .optional()?
            {
                Some(checkpoint) => checkpoint,
                None => Ok(Checkpoint::default()),
            }
        })
        .await
    }

    async fn commit(&self, rows: &[AuditRow], checkpoint: &Checkpoint) -> Result<(), DbError> {
        let values: Vec<_> = rows.iter().map(sql::row_values).collect();
        let chain = sql::chain_checkpoint_values(rows);
        let checkpoint = sql::checkpoint_values(checkpoint);
        self.run(move |conn, sql| {
            // IMMEDIATE: take the write lock before reading anything, so the transaction
            // cannot fail half-way for another writer.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut insert = tx.prepare_cached(&sql.insert_row)?;
                for row in values {
                    insert.execute(bind(row))?;
                }
                let mut chain_checkpoint = tx.prepare_cached(&sql.upsert_chain_checkpoint)?;
                for row in chain {
                    chain_checkpoint.execute(bind(row))?;
                }
                tx.execute(&sql.upsert_checkpoint, bind(checkpoint))?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn query(
        &self,
        filter: &AuditFilter,
        cursor: Option<u64>,
        newest_first: bool,
        limit: usize,
    ) -> Result<Vec<AuditRow>, DbError> {
        let (text, values) = self.sql.query(filter, cursor, newest_first, limit);
        self.rows(text, values).await
    }

    async fn rows_after(&self, seq: u64, limit: usize) -> Result<Vec<AuditRow>, DbError> {
        let values = vec![Value::Int(seq as i64), Value::Int(limit as i64)];
        self.rows(self.sql.rows_after.clone(), values).await
    }

    async fn chain_checkpoints(&self) -> Result<Vec<ChainCheckpoint>, DbError> {
        self.run(|conn, sql| {
            let mut stmt = conn.prepare_cached(&sql.chain_checkpoints)?;
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(sql::decode_chain_checkpoint(row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn fresh_sibling(&self) -> Result<Box<dyn Projection>, DbError> {
        let path = self.path.with_extension("rebuild.sqlite");
        let fresh = tokio::task::spawn_blocking(move || {
            remove_files(&path);
            SqliteProjection::open(path)
        })
        .await??;
        Ok(Box::new(fresh))
    }

    async fn replace_all(&self, rebuilt: &dyn Projection) -> Result<(), DbError> {
        let Location::SqliteFile(other) = rebuilt.location() else {
            return Err(DbError::not_a_sibling(rebuilt));
        };
        self.run(move |conn, _| {
            conn.execute(
                "ATTACH DATABASE ?1 AS rebuilt",
                [other.display().to_string()],
            )?;
            let copied = (|| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.execute_batch(&sql::copy_all("main.", "rebuilt."))?;
                tx.commit()
            })();
            // Detach even when the copy failed, so the next switch-over can attach again.
            let detached = conn.execute_batch("DETACH DATABASE rebuilt");
            copied?;
            detached?;
            Ok(())
        })
        .await
    }

    async fn discard(self: Box<Self>) -> Result<(), DbError> {
        let path = self.path.clone();
        drop(self); // Closes the connection before its files go.
        Ok(tokio::task::spawn_blocking(move || remove_files(&path)).await?)
    }
}
