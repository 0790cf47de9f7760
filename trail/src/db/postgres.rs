//! The projection in a PostgreSQL schema, for teams whose log is in PostgreSQL too: driver
//! glue only (`tokio-postgres`, like the event store); the SQL is in `sql`. One connection,
//! reopened when it has closed; rows and checkpoint commit in one transaction.

use std::str::FromStr;

use async_trait::async_trait;
use ionroller_projections::audit::{AuditFilter, AuditRow};
use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls};

use super::projection::{ChainCheckpoint, Checkpoint, DbError, Location, Projection};
use super::sql::{self, Columns, Dialect, Statements, Value};

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        DbError::Backend {
            backend: "PostgreSQL",
            source: Box::new(e),
        }
    }
}

impl Columns for tokio_postgres::Row {
    fn int(&self, i: usize) -> Result<i64, DbError> {
        Ok(self.try_get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, DbError> {
        Ok(self.try_get(i)?)
    }
}

/// A NULL bound where the column is text (the only nullable columns are).
static NULL_TEXT: Option<String> = None;

/// The values as the driver's parameters; each is type-checked as its own Rust type.
fn params(values: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    values
        .iter()
        .map(|v| -> &(dyn ToSql + Sync) {
            match v {
                Value::Int(i) => i,
                Value::Text(s) => s,
                Value::Null => &NULL_TEXT,
            }
        })
        .collect()
}

async fn connect(config: &Config) -> Result<Client, DbError> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "trail's PostgreSQL connection closed");
        }
    });
    Ok(client)
}

pub struct PgProjection {
    config: Config,
    schema: String,
    sql: Statements,
    /// Held for a whole transaction; queries wait for it, as they did behind one lock before.
    client: Mutex<Client>,
}

impl PgProjection {
    /// Connects and creates the schema and tables if missing.
    pub async fn open(url: &str, schema: &str) -> Result<Self, DbError> {
        let config = Config::from_str(url)
            .map_err(|e| DbError::Invalid(format!("invalid PostgreSQL URL: {e}")))?;
        Self::open_config(config, schema).await
    }

    async fn open_config(config: Config, schema: &str) -> Result<Self, DbError> {
        let sql = Statements::new(Dialect::Postgres, Some(schema))?;
        let client = connect(&config).await?;
        client.batch_execute(&sql.ddl).await?;
        Ok(PgProjection {
            config,
            schema: schema.to_string(),
            sql,
            client: Mutex::new(client),
        })
    }

    /// The connection, reopened first if the last one closed (a server restart, the network).
    async fn client(&self) -> Result<MutexGuard<'_, Client>, DbError> {
        let mut client = self.client.lock().await;
        if client.is_closed() {
            *client = connect(&self.config).await?;
        }
        Ok(client)
    }

    async fn rows(&self, text: &str, values: &[Value]) -> Result<Vec<AuditRow>, DbError> {
        let rows = self.client().await?.query(text, &params(values)).await?;
        rows.iter().map(sql::decode_row).collect()
    }

    async fn drop_schema(&self, schema: &str) -> Result<(), DbError> {
        let quoted = sql::quote_schema(schema)?;
        let sql = format!("DROP SCHEMA IF EXISTS {quoted} CASCADE");
        Ok(self.client().await?.batch_execute(&sql).await?)
    }
}

#[async_trait]
impl Projection for PgProjection {
    fn location(&self) -> Location {
        Location::PostgresSchema(self.schema.clone())
    }

    async fn checkpoint(&self) -> Result<Checkpoint, DbError> {
        let client = self.client().await?;
        match client.query_opt(&self.sql.select_checkpoint, &[]).await? {
            Some(row) => sql::decode_checkpoint(&row),
            None => Ok(Checkpoint::default()),
        }
    }

    async fn commit(&self, rows: &[AuditRow], checkpoint: &Checkpoint) -> Result<(), DbError> {
        let values: Vec<_> = rows.iter().map(sql::row_values).collect();
        let chain = sql::chain_checkpoint_values(rows);
        let checkpoint = sql::checkpoint_values(checkpoint);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let insert = tx.prepare(&self.sql.insert_row).await?;
        let upsert = tx.prepare(&self.sql.upsert_chain_checkpoint).await?;
        // Sent together (pipelined on the one connection), not one round trip each; they
        // still run in order inside the transaction, and the first error aborts it.
        let bound: Vec<_> = values.iter().map(|row| params(row)).collect();
        let inserts = bound.iter().map(|row| tx.execute(&insert, row));
        futures::future::try_join_all(inserts).await?;
        for row in &chain {
            tx.execute(&upsert, &params(row)).await?;
        }
        tx.execute(&self.sql.upsert_checkpoint, &params(&checkpoint))
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn query(
        &self,
        filter: &AuditFilter,
        cursor: Option<u64>,
        newest_first: bool,
        limit: usize,
    ) -> Result<Vec<AuditRow>, DbError> {
        let (text, values) = self.sql.query(filter, cursor, newest_first, limit);
        self.rows(&text, &values).await
    }

    async fn rows_after(&self, seq: u64, limit: usize) -> Result<Vec<AuditRow>, DbError> {
        let values = [Value::Int(seq as i64), Value::Int(limit as i64)];
        self.rows(&self.sql.rows_after, &values).await
    }

    async fn chain_checkpoints(&self) -> Result<Vec<ChainCheckpoint>, DbError> {
        let client = self.client().await?;
        let rows = client.query(&self.sql.chain_checkpoints, &[]).await?;
        rows.iter().map(sql::decode_chain_checkpoint).collect()
    }

    async fn fresh_sibling(&self) -> Result<Box<dyn Projection>, DbError> {
        let schema = format!("{}_rebuild", self.schema);
        self.drop_schema(&schema).await?;
        Ok(Box::new(
            PgProjection::open_config(self.config.clone(), &schema).await?,
        ))
    }

    async fn replace_all(&self, rebuilt: &dyn Projection) -> Result<(), DbError> {
        let Location::PostgresSchema(fresh) = rebuilt.location() else {
            return Err(DbError::not_a_sibling(rebuilt));
        };
        let copy = sql::copy_all(
            self.sql.tables(),
            &format!("{}.", sql::quote_schema(&fresh)?),
        );
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.batch_execute(&copy).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn discard(self: Box<Self>) -> Result<(), DbError> {
        self.drop_schema(&self.schema).await
    }
}
