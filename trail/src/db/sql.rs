//! The projection's SQL, written once for both backends: the tables, the column list, how a
//! row becomes parameters and back, and the audit query builder. Only what the two dialects
//! really spell differently is parameterised: placeholders (`?N` / `$N`), the 64-bit integer
//! type (SQLite's `INTEGER PRIMARY KEY` must stay `INTEGER` to be the rowid) and schema
//! qualification. Everything here is pure: the backends run the text and bind the values.

use chrono::{DateTime, Utc};
use ionroller_projections::audit::{AuditFilter, AuditRow};
use ionroller_projections::chain::{from_hex, to_hex};
use ionroller_shared::store::Position;

use super::projection::{ChainCheckpoint, Checkpoint, DbError, CHAIN_CHECKPOINT_EVERY};

/// The columns of `audit`, in the order every statement here binds and reads them.
pub const COLUMNS: &str = "seq, position, stream, service, revision, event_type, actor, \
                           occurred_at, recorded_at, version, summary, data, hash";

/// A queried page is capped here whatever the caller asks, so one request cannot load the
/// whole projection.
pub const MAX_QUERY_ROWS: usize = 10_000;

const DDL: &str = "
CREATE TABLE IF NOT EXISTS {t}audit (
    seq         {int} PRIMARY KEY,
    position    TEXT  NOT NULL,
    stream      TEXT  NOT NULL,
    service     TEXT,
    revision    {int} NOT NULL,
    event_type  TEXT  NOT NULL,
    actor       TEXT  NOT NULL,
    occurred_at {int} NOT NULL,
    recorded_at {int} NOT NULL,
    version     TEXT,
    summary     TEXT  NOT NULL,
    data        TEXT  NOT NULL,
    hash        TEXT  NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_service ON {t}audit (service, seq);
CREATE INDEX IF NOT EXISTS audit_actor ON {t}audit (actor, seq);
CREATE INDEX IF NOT EXISTS audit_type ON {t}audit (event_type, seq);
CREATE INDEX IF NOT EXISTS audit_service_type ON {t}audit (service, event_type, seq);
CREATE INDEX IF NOT EXISTS audit_version ON {t}audit (version, seq);
CREATE INDEX IF NOT EXISTS audit_time ON {t}audit (occurred_at);
CREATE TABLE IF NOT EXISTS {t}chain_checkpoints (
    seq      {int} PRIMARY KEY,
    position TEXT  NOT NULL,
    head     TEXT  NOT NULL
);
CREATE TABLE IF NOT EXISTS {t}checkpoints (
    projection TEXT PRIMARY KEY,
    position   TEXT,
    seq        {int} NOT NULL,
    head       TEXT  NOT NULL
);";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A value bound to a statement; each backend maps it to its driver's parameter type.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    Text(String),
    Null,
}

impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Self {
        v.map_or(Value::Null, Value::Text)
    }
}

/// Reads one result row's columns by index; each backend implements it for its row type.
pub trait Columns {
    fn int(&self, i: usize) -> Result<i64, DbError>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, DbError>;
    fn text(&self, i: usize) -> Result<String, DbError> {
        self.opt_text(i)?
            .ok_or_else(|| DbError::Corrupt(format!("column {i} is NULL")))
    }
}

/// The SQL text for one projection's tables, built once when it is opened.
pub struct Statements {
    dialect: Dialect,
    /// Prefix for table names: empty for SQLite's main database, `"schema".` for PostgreSQL.
    tables: String,
    pub ddl: String,
    pub insert_row: String,
    pub upsert_chain_checkpoint: String,
    pub upsert_checkpoint: String,
    pub select_checkpoint: String,
    pub rows_after: String,
    pub chain_checkpoints: String,
}

impl Statements {
    /// Statements for SQLite's main database (`schema` None) or a PostgreSQL schema.
    pub fn new(dialect: Dialect, schema: Option<&str>) -> Result<Self, DbError> {
        let (tables, create_schema) = match schema {
            Some(schema) => {
                let quoted = quote_schema(schema)?;
                (
                    format!("{quoted}."),
                    format!("CREATE SCHEMA IF NOT EXISTS {quoted};"),
                )
            }
            None => (String::new(), String::new()),
        };
        let int = match dialect {
            Dialect::Sqlite => "INTEGER",
            Dialect::Postgres => "BIGINT",
        };
        let r = |template: &str| render(dialect, &tables, template);
        let params: Vec<String> = (1..=13).map(|n| format!("${n}")).collect();
        Ok(Statements {
            dialect,
            ddl: create_schema + &r(&DDL.replace("{int}", int)),
            insert_row: r(&format!(
                "INSERT INTO {{t}}audit ({COLUMNS}) VALUES ({})",
                params.join(", ")
            )),
            upsert_chain_checkpoint: r("INSERT INTO {t}chain_checkpoints (seq, position, head) \
                 VALUES ($1, $2, $3) ON CONFLICT (seq) \
                 DO UPDATE SET position = excluded.position, head = excluded.head"),
            upsert_checkpoint: r(
                "INSERT INTO {t}checkpoints (projection, position, seq, head) \
                 VALUES ('audit', $1, $2, $3) ON CONFLICT (projection) \
                 DO UPDATE SET position = excluded.position, seq = excluded.seq, \
                 head = excluded.head",
            ),
            select_checkpoint: r(
                "SELECT position, seq, head FROM {t}checkpoints WHERE projection = 'audit'",
            ),
            rows_after: r(&format!(
                "SELECT {COLUMNS} FROM {{t}}audit WHERE seq > $1 ORDER BY seq LIMIT $2"
            )),
            chain_checkpoints: r(
                "SELECT seq, position, head FROM {t}chain_checkpoints ORDER BY seq",
            ),
            tables,
        })
    }

    /// The prefix this projection's table names carry (`""` or `"schema".`).
    pub fn tables(&self) -> &str {
        &self.tables
    }

    /// The audit query: `filter` as a WHERE clause, then the cursor, order and limit.
    pub fn query(
        &self,
        filter: &AuditFilter,
        cursor: Option<u64>,
        newest_first: bool,
        limit: usize,
    ) -> (String, Vec<Value>) {
        let mut sql = format!("SELECT {COLUMNS} FROM {}audit WHERE 1 = 1", self.tables);
        let mut args = Vec::new();
        let mut add = |condition: &str, value: Value| {
            args.push(value);
            sql.push_str(condition);
            sql.push_str(&placeholder(self.dialect, args.len()));
        };
        let equal = [
            ("service", &filter.service),
            ("actor", &filter.actor),
            ("event_type", &filter.event_type),
            ("version", &filter.version),
        ];
        for (column, value) in equal {
            if let Some(value) = value {
                add(&format!(" AND {column} = "), Value::Text(value.clone()));
            }
        }
        if filter.people_only {
            for machine in ionroller_projections::audit::MACHINE_ACTORS {
                add(" AND actor <> ", Value::Text(machine.to_string()));
            }
        }
        if let Some(from) = filter.from {
            add(" AND occurred_at >= ", Value::Int(micros(from)));
        }
        if let Some(to) = filter.to {
            add(" AND occurred_at < ", Value::Int(micros(to)));
        }
        let (before_or_after, order) = if newest_first {
            (" AND seq < ", " ORDER BY seq DESC LIMIT ")
        } else {
            (" AND seq > ", " ORDER BY seq ASC LIMIT ")
        };
        if let Some(cursor) = cursor {
            add(before_or_after, Value::Int(cursor as i64));
        }
        add(order, Value::Int(limit.min(MAX_QUERY_ROWS) as i64));
        (sql, args)
    }
}

/// Replaces every table under `into` (a table prefix such as `main.` or `"trail".`) with the
/// contents of the same tables under `from`. Run it inside one transaction.
pub fn copy_all(into: &str, from: &str) -> String {
    ["audit", "checkpoints", "chain_checkpoints"]
        .iter()
        .map(|table| {
            format!(
                "DELETE FROM {into}{table}; INSERT INTO {into}{table} SELECT * FROM {from}{table};"
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A PostgreSQL schema name, checked and quoted. Only names that need no escaping are
/// accepted, so the name can be spliced into SQL text safely.
pub fn quote_schema(schema: &str) -> Result<String, DbError> {
    let ok = !schema.is_empty()
        && schema.len() <= 48
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(format!("\"{schema}\""))
    } else {
        Err(DbError::Invalid(format!(
            "invalid schema name {schema:?}: 1 to 48 lowercase letters, digits and _, not starting with a digit"
        )))
    }
}

fn placeholder(dialect: Dialect, n: usize) -> String {
    match dialect {
        Dialect::Sqlite => format!("?{n}"),
        Dialect::Postgres => format!("${n}"),
    }
}

/// Statement templates name tables `{t}name` and parameters `$n`.
fn render(dialect: Dialect, tables: &str, template: &str) -> String {
    let text = template.replace("{t}", tables);
    match dialect {
        // `?n` binds by position, like PostgreSQL's `$n`; no template has `$` anywhere else.
        Dialect::Sqlite => text.replace('$', "?"),
        Dialect::Postgres => text,
    }
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// A row's parameters for `insert_row`, in [`COLUMNS`] order.
pub fn row_values(r: &AuditRow) -> Vec<Value> {
    vec![
        Value::Int(r.seq as i64),
        Value::Text(r.position.clone()),
        Value::Text(r.stream.clone()),
        r.service.clone().into(),
        Value::Int(r.revision as i64),
        Value::Text(r.event_type.clone()),
        Value::Text(r.actor.clone()),
        Value::Int(micros(r.occurred_at)),
        Value::Int(micros(r.recorded_at)),
        r.version.clone().into(),
        Value::Text(r.summary.clone()),
        Value::Text(r.data.to_string()),
        Value::Text(r.hash.clone()),
    ]
}

/// Parameters for `upsert_chain_checkpoint`, one set per row that is due one.
pub fn chain_checkpoint_values(rows: &[AuditRow]) -> Vec<Vec<Value>> {
    rows.iter()
        .filter(|r| r.seq % CHAIN_CHECKPOINT_EVERY == 0)
        .map(|r| {
            vec![
                Value::Int(r.seq as i64),
                Value::Text(r.position.clone()),
                Value::Text(r.hash.clone()),
            ]
        })
        .collect()
}

/// Parameters for `upsert_checkpoint`.
pub fn checkpoint_values(c: &Checkpoint) -> Vec<Value> {
    vec![
        c.position.map(|p| p.to_token()).into(),
        Value::Int(c.seq as i64),
        Value::Text(to_hex(&c.head)),
    ]
}

fn unsigned(value: i64, what: &str) -> Result<u64, DbError> {
    u64::try_from(value).map_err(|_| DbError::Corrupt(format!("{what} {value}")))
}

/// A row read with [`COLUMNS`].
pub fn decode_row(r: &impl Columns) -> Result<AuditRow, DbError> {
    let seq = unsigned(r.int(0)?, "seq")?;
    let time = |i: usize| {
        let micros = r.int(i)?;
        DateTime::from_timestamp_micros(micros)
            .ok_or_else(|| DbError::Corrupt(format!("row {seq}: time {micros}")))
    };
    Ok(AuditRow {
        seq,
        position: r.text(1)?,
        stream: r.text(2)?,
        service: r.opt_text(3)?,
        revision: unsigned(r.int(4)?, "revision")?,
        event_type: r.text(5)?,
        actor: r.text(6)?,
        occurred_at: time(7)?,
        recorded_at: time(8)?,
        version: r.opt_text(9)?,
        summary: r.text(10)?,
        data: serde_json::from_str(&r.text(11)?)
            .map_err(|e| DbError::Corrupt(format!("row {seq} data: {e}")))?,
        hash: r.text(12)?,
    })
}

/// The row `select_checkpoint` reads.
pub fn decode_checkpoint(r: &impl Columns) -> Result<Checkpoint, DbError> {
    Ok(Checkpoint {
        position: r
            .opt_text(0)?
            .map(|p| Position::from_token(&p))
            .transpose()
            .map_err(|e| DbError::Corrupt(e.to_string()))?,
        seq: unsigned(r.int(1)?, "checkpoint seq")?,
        head: from_hex(&r.text(2)?)
            .ok_or_else(|| DbError::Corrupt("checkpoint head hash".into()))?,
    })
}

/// A row `chain_checkpoints` reads.
pub fn decode_chain_checkpoint(r: &impl Columns) -> Result<ChainCheckpoint, DbError> {
    Ok((
        unsigned(r.int(0)?, "chain checkpoint seq")?,
        r.text(1)?,
        r.text(2)?,
    ))
}

#[cfg(test)]
mod tests;
