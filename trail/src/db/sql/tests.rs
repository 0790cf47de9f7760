//! The SQL builder, checked without a database.

use super::*;

fn filter() -> AuditFilter {
    AuditFilter {
        service: Some("hello".into()),
        version: Some("v2".into()),
        from: DateTime::from_timestamp_micros(5),
        ..AuditFilter::default()
    }
}

#[test]
fn both_dialects_build_the_same_query_but_for_placeholders_and_schema() {
    let sqlite = Statements::new(Dialect::Sqlite, None).unwrap();
    let pg = Statements::new(Dialect::Postgres, Some("trail")).unwrap();
    let (lite_sql, lite_args) = sqlite.query(&filter(), Some(40), true, 50);
    let (pg_sql, pg_args) = pg.query(&filter(), Some(40), true, 50);
    assert_eq!(
        lite_sql,
        format!(
            "SELECT {COLUMNS} FROM audit WHERE 1 = 1 AND service = ?1 AND version = ?2 \
             AND occurred_at >= ?3 AND seq < ?4 ORDER BY seq DESC LIMIT ?5"
        )
    );
    assert_eq!(pg_sql.replace("\"trail\".", "").replace('$', "?"), lite_sql);
    let expected = vec![
        Value::Text("hello".into()),
        Value::Text("v2".into()),
        Value::Int(5),
        Value::Int(40),
        Value::Int(50),
    ];
    assert_eq!(lite_args, expected);
    assert_eq!(pg_args, expected);
}

#[test]
fn a_page_is_capped_and_oldest_first_reads_after_the_cursor() {
    let sqlite = Statements::new(Dialect::Sqlite, None).unwrap();
    let (sql, args) = sqlite.query(&AuditFilter::default(), Some(7), false, 1_000_000);
    assert!(
        sql.ends_with("AND seq > ?1 ORDER BY seq ASC LIMIT ?2"),
        "{sql}"
    );
    assert_eq!(args, vec![Value::Int(7), Value::Int(MAX_QUERY_ROWS as i64)]);
}

#[test]
fn statements_use_each_dialects_placeholders_and_types() {
    let sqlite = Statements::new(Dialect::Sqlite, None).unwrap();
    let pg = Statements::new(Dialect::Postgres, Some("trail")).unwrap();
    assert!(sqlite.insert_row.ends_with("?12, ?13)"));
    assert!(!sqlite.ddl.contains('$') && !sqlite.ddl.contains("BIGINT"));
    assert!(
        sqlite.ddl.contains("seq         INTEGER PRIMARY KEY"),
        "the rowid"
    );
    assert!(pg.insert_row.starts_with("INSERT INTO \"trail\".audit"));
    assert!(pg.insert_row.ends_with("$12, $13)"));
    assert!(pg.ddl.starts_with("CREATE SCHEMA IF NOT EXISTS \"trail\";"));
    assert!(pg.ddl.contains("seq         BIGINT PRIMARY KEY"));
}

#[test]
fn only_plain_schema_names_are_accepted() {
    assert_eq!(quote_schema("trail_2").unwrap(), "\"trail_2\"");
    for bad in ["", "Trail", "2trail", "a\"b", "a;b", &"x".repeat(49)] {
        assert!(quote_schema(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_chain_checkpoint_is_due_every_1000_rows() {
    let row = |seq| AuditRow {
        seq,
        position: format!("{seq}-0"),
        stream: "service:a".into(),
        service: None,
        revision: 0,
        event_type: "t".into(),
        actor: "a".into(),
        occurred_at: DateTime::UNIX_EPOCH,
        recorded_at: DateTime::UNIX_EPOCH,
        version: None,
        summary: String::new(),
        data: serde_json::Value::Null,
        hash: format!("h{seq}"),
    };
    let rows: Vec<_> = (999..=2001).map(row).collect();
    let due: Vec<_> = chain_checkpoint_values(&rows)
        .into_iter()
        .map(|v| v[0].clone())
        .collect();
    assert_eq!(due, vec![Value::Int(1000), Value::Int(2000)]);
}

#[test]
fn people_only_leaves_out_every_machine_actor() {
    let sqlite = Statements::new(Dialect::Sqlite, None).unwrap();
    let people = AuditFilter {
        people_only: true,
        ..AuditFilter::default()
    };
    let (sql, args) = sqlite.query(&people, None, true, 10);
    assert_eq!(
        sql,
        format!(
            "SELECT {COLUMNS} FROM audit WHERE 1 = 1 AND actor <> ?1 AND actor <> ?2 \
             ORDER BY seq DESC LIMIT ?3"
        )
    );
    assert_eq!(
        args,
        vec![
            Value::Text("roller".into()),
            Value::Text("ionroller up".into()),
            Value::Int(10),
        ]
    );
}
