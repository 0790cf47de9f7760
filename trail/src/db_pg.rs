//! The projection in a PostgreSQL schema, for teams whose log is in PostgreSQL too. Same
//! tables and the same rule: rows and checkpoint in one transaction.
//!
//! Uses the blocking `postgres` client: trail calls it from the blocking thread pool, like
//! the SQLite projection.

use ionroller_projections::audit::{AuditFilter, AuditRow};
use ionroller_projections::chain::to_hex;
use postgres::{Client, NoTls};

use crate::db::{Checkpoint, DbError, CHAIN_CHECKPOINT_EVERY};

pub struct PgProjection {
    /// Always `Some` until dropped; see `Drop`.
    client: Option<Client>,
    url: String,
    schema: String,
}

impl Drop for PgProjection {
    fn drop(&mut self) {
        // The blocking client closes its connection with `block_on`, which panics on a thread
        // that drives async tasks; trail may drop its projection there, so close it elsewhere.
        if let Some(client) = self.client.take() {
            let _ = std::thread::Builder::new()
                .name("trail-pg-close".into())
                .spawn(move || drop(client));
        }
    }
}

const COLUMNS: &str = "seq, position, stream, service, revision, event_type, actor, occurred_at, \
                       recorded_at, version, summary, data, hash";

fn valid_schema(schema: &str) -> Result<(), DbError> {
    let ok = !schema.is_empty()
        && schema.len() <= 48
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(DbError::Corrupt(format!(
            "invalid schema name {schema:?}: lowercase letters, digits, _"
        )))
    }
}

impl PgProjection {
    pub fn open(url: &str, schema: &str) -> Result<Self, DbError> {
        valid_schema(schema)?;
        let mut client = Client::connect(url, NoTls)?;
        client.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
             CREATE TABLE IF NOT EXISTS \"{schema}\".audit (
                 seq bigint PRIMARY KEY, position text NOT NULL, stream text NOT NULL, service text,
                 revision bigint NOT NULL, event_type text NOT NULL, actor text NOT NULL,
                 occurred_at bigint NOT NULL, recorded_at bigint NOT NULL, version text,
                 summary text NOT NULL, data text NOT NULL, hash text NOT NULL);
             CREATE INDEX IF NOT EXISTS audit_service ON \"{schema}\".audit (service, seq);
             CREATE INDEX IF NOT EXISTS audit_actor ON \"{schema}\".audit (actor, seq);
             CREATE INDEX IF NOT EXISTS audit_type ON \"{schema}\".audit (event_type, seq);
             CREATE INDEX IF NOT EXISTS audit_service_type ON \"{schema}\".audit (service, event_type, seq);
             CREATE INDEX IF NOT EXISTS audit_version ON \"{schema}\".audit (version, seq);
             CREATE INDEX IF NOT EXISTS audit_time ON \"{schema}\".audit (occurred_at);
             CREATE TABLE IF NOT EXISTS \"{schema}\".chain_checkpoints (
                 seq bigint PRIMARY KEY, position text NOT NULL, head text NOT NULL);
             CREATE TABLE IF NOT EXISTS \"{schema}\".checkpoints (
                 projection text PRIMARY KEY, position text, seq bigint NOT NULL, head text NOT NULL);"
        ))?;
        Ok(PgProjection {
            client: Some(client),
            url: url.to_string(),
            schema: schema.to_string(),
        })
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    fn client(&mut self) -> Result<&mut Client, DbError> {
        self.client
            .as_mut()
            .ok_or_else(|| DbError::Corrupt("projection connection already closed".into()))
    }

    fn table(&self, name: &str) -> String {
        format!("\"{}\".{name}", self.schema)
    }

    pub fn checkpoint(&mut self) -> Result<Checkpoint, DbError> {
        let sql = format!(
            "SELECT position, seq, head FROM {} WHERE projection = 'audit'",
            self.table("checkpoints")
        );
        let Some(row) = self.client()?.query_opt(&sql, &[])? else {
            return Ok(Checkpoint::default());
        };
        Checkpoint::from_stored(row.get(0), row.get(1), row.get(2))
    }

    pub fn commit(&mut self, rows: &[AuditRow], checkpoint: &Checkpoint) -> Result<(), DbError> {
        let (audit, chain, checkpoints) = (
            self.table("audit"),
            self.table("chain_checkpoints"),
            self.table("checkpoints"),
        );
        let mut tx = self.client()?.transaction()?;
        let insert = tx.prepare(&format!(
            "INSERT INTO {audit} ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))?;
        for r in rows {
            tx.execute(
                &insert,
                &[
                    &(r.seq as i64),
                    &r.position,
                    &r.stream,
                    &r.service,
                    &(r.revision as i64),
                    &r.event_type,
                    &r.actor,
                    &r.occurred_at.timestamp_micros(),
                    &r.recorded_at.timestamp_micros(),
                    &r.version,
                    &r.summary,
                    &r.data.to_string(),
                    &r.hash,
                ],
            )?;
            if r.seq % CHAIN_CHECKPOINT_EVERY == 0 {
                tx.execute(
                    &format!("INSERT INTO {chain} (seq, position, head) VALUES ($1, $2, $3) ON CONFLICT (seq) DO UPDATE SET position = $2, head = $3"),
                    &[&(r.seq as i64), &r.position, &r.hash],
                )?;
            }
        }
        tx.execute(
            &format!(
                "INSERT INTO {checkpoints} (projection, position, seq, head) VALUES ('audit', $1, $2, $3)
                 ON CONFLICT (projection) DO UPDATE SET position = $1, seq = $2, head = $3"
            ),
            &[&checkpoint.position.map(|p| p.to_token()), &(checkpoint.seq as i64), &to_hex(&checkpoint.head)],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn query(
        &mut self,
        filter: &AuditFilter,
        cursor: Option<u64>,
        newest_first: bool,
        limit: usize,
    ) -> Result<Vec<AuditRow>, DbError> {
        let mut sql = format!("SELECT {COLUMNS} FROM {} WHERE true", self.table("audit"));
        let mut texts: Vec<String> = Vec::new();
        let mut numbers: Vec<i64> = Vec::new();
        let mut order: Vec<bool> = Vec::new(); // true: text parameter
        let mut text = |sql: &mut String, clause: &str, v: String| {
            texts.push(v);
            order.push(true);
            sql.push_str(&clause.replace('?', &format!("${}", order.len())));
        };
        if let Some(v) = &filter.service {
            text(&mut sql, " AND service = ?", v.clone());
        }
        if let Some(v) = &filter.actor {
            text(&mut sql, " AND actor = ?", v.clone());
        }
        if let Some(v) = &filter.event_type {
            text(&mut sql, " AND event_type = ?", v.clone());
        }
        if let Some(v) = &filter.version {
            text(&mut sql, " AND version = ?", v.clone());
        }
        let mut number = |sql: &mut String, clause: &str, v: i64| {
            numbers.push(v);
            order.push(false);
            sql.push_str(&clause.replace('?', &format!("${}", order.len())));
        };
        if let Some(f) = filter.from {
            number(&mut sql, " AND occurred_at >= ?", f.timestamp_micros());
        }
        if let Some(t) = filter.to {
            number(&mut sql, " AND occurred_at < ?", t.timestamp_micros());
        }
        if let Some(c) = cursor {
            number(
                &mut sql,
                if newest_first {
                    " AND seq < ?"
                } else {
                    " AND seq > ?"
                },
                c as i64,
            );
        }
        number(
            &mut sql,
            if newest_first {
                " ORDER BY seq DESC LIMIT ?"
            } else {
                " ORDER BY seq ASC LIMIT ?"
            },
            limit.min(10_000) as i64,
        );
        let (mut ti, mut ni) = (0, 0);
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = order
            .iter()
            .map(|is_text| -> &(dyn postgres::types::ToSql + Sync) {
                if *is_text {
                    ti += 1;
                    &texts[ti - 1]
                } else {
                    ni += 1;
                    &numbers[ni - 1]
                }
            })
            .collect();
        let rows = self.client()?.query(&sql, &params)?;
        rows.iter().map(read_row).collect()
    }

    pub fn rows_after(&mut self, seq: u64, limit: usize) -> Result<Vec<AuditRow>, DbError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} WHERE seq > $1 ORDER BY seq LIMIT $2",
            self.table("audit")
        );
        let rows = self
            .client()?
            .query(&sql, &[&(seq as i64), &(limit as i64)])?;
        rows.iter().map(read_row).collect()
    }

    pub fn chain_checkpoints(&mut self) -> Result<Vec<(u64, String, String)>, DbError> {
        let sql = format!(
            "SELECT seq, position, head FROM {} ORDER BY seq",
            self.table("chain_checkpoints")
        );
        Ok(self
            .client()?
            .query(&sql, &[])?
            .iter()
            .map(|r| (r.get::<_, i64>(0) as u64, r.get(1), r.get(2)))
            .collect())
    }

    pub fn fresh_sibling(&self) -> Result<PgProjection, DbError> {
        let schema = format!("{}_rebuild", self.schema);
        let mut client = Client::connect(&self.url, NoTls)?;
        client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))?;
        PgProjection::open(&self.url, &schema)
    }

    pub fn replace_all(&mut self, rebuilt: &PgProjection) -> Result<(), DbError> {
        let (live, fresh) = (self.schema.clone(), rebuilt.schema.clone());
        self.client()?.batch_execute(&format!(
            "BEGIN;
             DELETE FROM \"{live}\".audit; INSERT INTO \"{live}\".audit SELECT * FROM \"{fresh}\".audit;
             DELETE FROM \"{live}\".checkpoints; INSERT INTO \"{live}\".checkpoints SELECT * FROM \"{fresh}\".checkpoints;
             DELETE FROM \"{live}\".chain_checkpoints; INSERT INTO \"{live}\".chain_checkpoints SELECT * FROM \"{fresh}\".chain_checkpoints;
             COMMIT;"
        ))?;
        Ok(())
    }

    pub fn drop_schema(mut self) -> Result<(), DbError> {
        let schema = self.schema.clone();
        self.client()?
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))?;
        Ok(())
    }
}

fn read_row(r: &postgres::Row) -> Result<AuditRow, DbError> {
    let seq: i64 = r.get(0);
    let time = |micros: i64| {
        chrono::DateTime::from_timestamp_micros(micros)
            .ok_or_else(|| DbError::Corrupt(format!("row {seq}: time")))
    };
    let data: String = r.get(11);
    Ok(AuditRow {
        seq: seq as u64,
        position: r.get(1),
        stream: r.get(2),
        service: r.get(3),
        revision: r.get::<_, i64>(4) as u64,
        event_type: r.get(5),
        actor: r.get(6),
        occurred_at: time(r.get(7))?,
        recorded_at: time(r.get(8))?,
        version: r.get(9),
        summary: r.get(10),
        data: serde_json::from_str(&data)
            .map_err(|e| DbError::Corrupt(format!("row {seq} data: {e}")))?,
        hash: r.get(12),
    })
}
