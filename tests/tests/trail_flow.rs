//! Trail end to end: releases, a canary promote, an alarm-triggered rollback and a manual
//! abort go through the roller; trail's audit, history, `at` answers and delivery numbers
//! must match what happened exactly. Then trail is SIGKILLed mid-catch-up (no row missing or
//! doubled), and an edited audit row is named by `verify`.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ionroller_shared::store::{
    EventId, EventMetadata, EventStore, ExpectedRevision, NewEvent, StreamId,
};
use ionroller_store_sqlite::{SqliteOptions, SqliteStore};
use rand::Rng;
use serde_json::{json, Value};
use support::*;

async fn trail_caught_up(server: &Server) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = server.trail("/v1/status").await;
        let metrics = server
            .request(
                reqwest::Method::GET,
                &format!("{}/metrics", server.trail_url),
            )
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("\ntrail_lag_events 0\n") && status["caught_up"] == true {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "trail did not catch up: {status} {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trail_reports_exactly_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let config = dir.path().join("hello.json");
    std::fs::write(&config, example_config()).unwrap();
    server.cli_ok(&["config", "set", "hello", config.to_str().unwrap()]);

    // v1 (a first release: no canary) and v2 (through its canary promote) complete.
    let release = server.cli_spawn(&["release", "hello", "v1"]);
    assert_eq!(release.wait_with_output().unwrap().status.code(), Some(0));
    let release = server.cli_spawn(&["release", "hello", "v2"]);
    server.wait_for_promote("a wait for promote").await;
    server.cli_ok(&["promote", "hello"]);
    assert_eq!(release.wait_with_output().unwrap().status.code(), Some(0));
    let v2_serving = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // v3 rolls back on an alarm; v4 is aborted by hand.
    let release = server.cli_spawn(&["release", "hello", "v3"]);
    server.wait_for_promote("a wait for promote").await;
    server.fire_alarm("hello-5xx", "5xx 12% > 5%", "12");
    assert_eq!(release.wait_with_output().unwrap().status.code(), Some(1));
    server.cli_ok(&["sim", "alarm", "hello-5xx", "OK"]);
    server
        .wait_for("hello", 10, "the alarm to clear", |s| {
            s["alarms"][0]["state"] == "OK"
        })
        .await;
    let release = server.cli_spawn(&["release", "hello", "v4"]);
    server.wait_for_promote("a wait for promote").await;
    server.cli_ok(&["abort", "hello", "--reason", "wrong build"]);
    // Aborted by a person: exit 4, apart from a rollback's 1.
    assert_eq!(release.wait_with_output().unwrap().status.code(), Some(4));
    trail_caught_up(&server).await;

    // History: who, from, to, outcome, evidence.
    let history = server.trail("/v1/services/hello/releases").await;
    let rows: Vec<(String, String, String, String)> = history["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["from_version"].as_str().unwrap_or("-").to_string(),
                r["to_version"].as_str().unwrap().to_string(),
                r["outcome"]["outcome"]
                    .as_str()
                    .unwrap_or("open")
                    .to_string(),
                r["requested_by"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // The verified identity: the admin token `up` created, by name and id.
    let who = rows[0].3.clone();
    assert!(who.starts_with("admin via token "), "{who}");
    assert_eq!(
        rows,
        vec![
            ("-".into(), "v1".into(), "completed".into(), who.clone()),
            ("v1".into(), "v2".into(), "completed".into(), who.clone()),
            ("v2".into(), "v3".into(), "rolled_back".into(), who.clone()),
            ("v2".into(), "v4".into(), "rolled_back".into(), who.clone()),
        ]
    );
    let releases = history["releases"].as_array().unwrap();
    assert_eq!(releases[2]["outcome"]["cause"]["kind"], "alarm");
    assert_eq!(releases[2]["outcome"]["cause"]["alarm"]["value"], 12.0);
    assert_eq!(releases[3]["outcome"]["cause"]["kind"], "aborted");
    assert_eq!(releases[3]["outcome"]["cause"]["reason"], "wrong build");
    assert!(
        releases[1]["waiting_for_people_secs"].as_f64().unwrap() > 0.0,
        "the canary waited for a promote"
    );
    assert_eq!(
        releases[0]["steps"].as_array().unwrap().len(),
        1,
        "a first release"
    );
    assert_eq!(releases[1]["steps"].as_array().unwrap().len(), 4);

    // Audit: filters by actor and type; the roller's own events are attributed to it.
    let actor: String = url::form_urlencoded::byte_serialize(who.as_bytes()).collect();
    let mine = server
        .trail(&format!(
            "/v1/audit?actor={actor}&type=release-requested&order=oldest"
        ))
        .await;
    let versions: Vec<&str> = mine["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, vec!["v1", "v2", "v3", "v4"]);
    let rolled = server.trail("/v1/audit?type=rolled-back").await;
    assert_eq!(rolled["rows"].as_array().unwrap().len(), 2);
    assert!(rolled["rows"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["actor"] == "roller"));
    let page = server.trail("/v1/audit?limit=5").await;
    let next = page["next_cursor"].as_str().unwrap().to_string();
    let page2 = server
        .trail(&format!("/v1/audit?limit=5&cursor={next}"))
        .await;
    let first: u64 = page["rows"][4]["seq"].as_u64().unwrap();
    assert_eq!(
        page2["rows"][0]["seq"].as_u64().unwrap(),
        first - 1,
        "stable cursor paging"
    );
    let bad = server
        .request(
            reqwest::Method::GET,
            &format!("{}/v1/audit?limit=zero", server.trail_url),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["problems"][0]["field"], "limit");

    // What ran at a moment: v2 alone, between its completion and v3's request.
    let at = server
        .trail(&format!(
            "/v1/services/hello/at?time={}",
            v2_serving.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ))
        .await;
    assert_eq!(at["traffic"].as_array().unwrap().len(), 1, "{at}");
    assert_eq!(at["traffic"][0]["version"], "v2");
    assert_eq!(at["traffic"][0]["share"], 1.0);

    // Delivery: 2 deployments, 2 failures, a time to restore from the alarm.
    let report = server.trail("/v1/reports/delivery?service=hello").await;
    assert_eq!(report["overall"]["deployments"], 2);
    assert_eq!(report["overall"]["failures"], 2);
    assert_eq!(report["overall"]["change_failure_rate"], 0.5);
    assert!(
        report["overall"]["time_to_restore_mean_secs"]
            .as_f64()
            .unwrap()
            < 10.0
    );
    assert_eq!(server.trail("/v1/verify").await["ok"], true);

    // The CLI shows the same.
    let history = server.cli_ok(&["history", "hello"]);
    assert_eq!(history.lines().count(), 4, "{history}");
    let report = server.cli_ok(&["report"]);
    assert!(report.contains("change-failure rate:  50.0%"), "{report}");

    // Edit one stored audit row: verify names it.
    server.kill();
    let trail_db = dir.path().join("trail.sqlite");
    let conn = rusqlite::Connection::open(&trail_db).unwrap();
    conn.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 7", [])
        .unwrap();
    drop(conn);
    let verify = Command::new(trail_binary())
        .args(["verify", "--events"])
        .arg(dir.path().join("events.sqlite"))
        .arg("--db")
        .arg(&trail_db)
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(1));
    let out = String::from_utf8_lossy(&verify.stdout);
    assert!(
        out.contains("audit row 7 (log position ") && out.contains("its actor differs"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_trail_mid_catch_up_neither_loses_nor_doubles_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.sqlite");
    // A log long enough that catching up takes a while: 40,000 events in 400 streams.
    {
        let store = SqliteStore::open(&events, SqliteOptions::default()).unwrap();
        for s in 0..400 {
            let batch = (0..100)
                .map(|i| NewEvent {
                    id: EventId::random(),
                    event_type: "load-generated".into(),
                    schema_version: 1,
                    data: json!({ "i": i, "pad": "x".repeat(100) }),
                    metadata: EventMetadata {
                        actor: "test".into(),
                        correlation_id: uuid::Uuid::nil(),
                        causation_id: None,
                        occurred_at: chrono::Utc::now(),
                    },
                })
                .collect();
            store
                .append(
                    &StreamId::new(format!("noise:{s}")).unwrap(),
                    ExpectedRevision::NoStream,
                    batch,
                )
                .await
                .unwrap();
        }
    }
    let db = dir.path().join("trail.sqlite");
    let mut rng = rand::rng();
    let mut partial = Vec::new();
    for _ in 0..8 {
        let mut child = Command::new(trail_binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--events"])
            .arg(&events)
            .arg("--db")
            .arg(&db)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(150..900)));
        child.kill().unwrap();
        child.wait().unwrap();
        let rows: i64 = rusqlite::Connection::open(&db)
            .and_then(|c| c.query_row("SELECT count(*) FROM audit", [], |r| r.get(0)))
            .unwrap_or(0);
        partial.push(rows);
    }
    assert!(
        partial.iter().any(|n| *n > 0 && *n < 40_000),
        "no kill landed mid-catch-up: {partial:?}"
    );
    // Finish the catch-up, then check every event is there exactly once.
    let trail = ionroller_trail_check(&events, &db).await;
    assert_eq!(trail.0, 40_000, "every event projected once");
    assert!(trail.1, "the chain verifies");
}

/// Runs trail to completion on the files and returns (rows, chain verifies).
async fn ionroller_trail_check(events: &std::path::Path, db: &std::path::Path) -> (u64, bool) {
    let mut child = Command::new(trail_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--events"])
        .arg(events)
        .arg("--db")
        .arg(db)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let conn = rusqlite::Connection::open(db).unwrap();
        let (count, max, distinct): (i64, i64, i64) = conn
            .query_row(
                "SELECT count(*), coalesce(max(seq), 0), count(DISTINCT position) FROM audit",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        let (count, max, distinct) = (count as u64, max as u64, distinct as u64);
        assert_eq!(count, max, "seqs are dense");
        assert_eq!(count, distinct, "no event projected twice");
        if count == 40_000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "trail did not finish catching up ({count})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The chain's exported checkpoints: one per 1000 rows, each matching its row's hash.
    let conn = rusqlite::Connection::open(db).unwrap();
    let (checkpoints, matching): (i64, i64) = conn
        .query_row(
            "SELECT count(*), sum(c.head = a.hash) FROM chain_checkpoints c JOIN audit a ON a.seq = c.seq",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((checkpoints, matching), (40, 40));
    let verify = Command::new(trail_binary())
        .args(["verify", "--events"])
        .arg(events)
        .arg("--db")
        .arg(db)
        .output()
        .unwrap();
    (40_000, verify.status.success())
}

/// The standalone binary end to end: `trail serve` publishes signed checkpoints beside its
/// projection (the last, partial one after `--checkpoint-interval`); an event edited in the
/// log and hidden by `trail rebuild` is still named by `trail verify`, by its position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_event_hidden_by_a_rebuild_is_named_by_trail_verify() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.sqlite");
    let db = dir.path().join("trail.sqlite");
    {
        let store = SqliteStore::open(&events, SqliteOptions::default()).unwrap();
        for i in 0..30 {
            let event = NewEvent {
                id: EventId::random(),
                event_type: "pause-requested".into(),
                schema_version: 1,
                data: json!({ "reason": format!("r{i}") }),
                metadata: EventMetadata {
                    actor: "ana".into(),
                    correlation_id: uuid::Uuid::nil(),
                    causation_id: None,
                    occurred_at: chrono::Utc::now(),
                },
            };
            store
                .append(
                    &StreamId::new("service:hello").unwrap(),
                    ExpectedRevision::Any,
                    vec![event],
                )
                .await
                .unwrap();
        }
    }
    let trail = |args: &[&str]| {
        let mut command = Command::new(trail_binary());
        command
            .args(args)
            .arg("--events")
            .arg(&events)
            .arg("--db")
            .arg(&db);
        command
    };
    let mut child = trail(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--checkpoint-interval",
        "200ms",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let newest = dir
        .path()
        .join("checkpoints")
        .join(format!("checkpoint-{:020}.json", 30));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !newest.exists() {
        assert!(Instant::now() < deadline, "no checkpoint was published");
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let key = dir.path().join("trail-signing-key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the signing key is private");
    }
    let ok = trail(&["verify"]).output().unwrap();
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{out}");
    assert!(out.contains("through row 30 (position 30-0)"), "{out}");

    rusqlite::Connection::open(&events)
        .unwrap()
        .execute(
            r#"UPDATE events SET data = '{"reason":"nothing to see"}' WHERE position = 17"#,
            [],
        )
        .unwrap();
    let rebuilt = trail(&["rebuild"]).output().unwrap();
    assert!(rebuilt.status.success());
    let verify = trail(&["verify"]).output().unwrap();
    let out = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(1), "{out}");
    assert!(
        out.contains("MISMATCH: the log's event at position 17-0 (row 17) differs"),
        "{out}"
    );
}

/// `audit --follow` keeps to its filter after the first page: with `--service hello --people`,
/// the live rows are hello's and people's only (the feed itself carries every row).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_audit_keeps_to_its_filter() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let hello = dir.path().join("hello.json");
    std::fs::write(&hello, example_config()).expect("write config");
    let mut shop: serde_json::Value = serde_json::from_str(&example_config()).expect("config");
    shop["endpoint"]["load_balancer"]["name"] = "shop-lb".into();
    let shop_file = dir.path().join("shop.json");
    std::fs::write(&shop_file, shop.to_string()).expect("write config");
    server.cli_ok(&["config", "set", "hello", hello.to_str().expect("utf-8")]);

    let mut follower = std::process::Command::new(binary())
        .args(["audit", "--service", "hello", "--people", "--follow"])
        .env("IONROLLER_URL", &server.url)
        .env("IONROLLER_TRAIL_URL", &server.trail_url)
        .env("IONROLLER_TOKEN", &server.token)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("follow the audit");
    let stdout = follower.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // A release (the roller's rows), another service's config, then hello's second config.
    let release = server.cli_spawn(&["release", "hello", "v1"]);
    assert_eq!(
        release.wait_with_output().expect("release").status.code(),
        Some(0)
    );
    server.cli_ok(&["config", "set", "shop", shop_file.to_str().expect("utf-8")]);
    server.cli_ok(&["config", "set", "hello", hello.to_str().expect("utf-8")]);
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.contains("config version 2 saved"))
    {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no hello config v2 row; saw {seen:#?}"));
        seen.push(line);
    }
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(
        seen.iter().any(|l| l.contains("release of v1 requested")),
        "{seen:#?}"
    );
    for line in &seen {
        assert!(
            line.contains(" hello ") && line.contains("admin via token"),
            "{line}"
        );
    }
}
