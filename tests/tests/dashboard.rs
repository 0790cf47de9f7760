//! Trail's dashboard in a real browser: headless Chromium (Debian's package) driven by
//! playwright-core, against a trail fed by real scripted rollouts (one completed, one rolled
//! back by an alarm, one aborted). Asserts by text what the page shows and what its controls
//! do, checks it with axe-core, and saves screenshots 1280 and 800 px wide under the test's
//! output directory (the wide one also as `docs/trail-dashboard.png`, which README shows).

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::browser::browser_script;
use support::*;

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_string())
        .collect()
}

/// Waits until trail has projected `n` rollbacks.
async fn trail_has_rollbacks(server: &Server, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let page = server.trail("/v1/audit?type=rolled-back").await;
        if page["rows"].as_array().map_or(0, Vec::len) >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "trail saw {n} rollbacks: {page}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_lanes_delivery_with_denominators_and_a_paged_filterable_audit() {
    let Some(script) = browser_script("dashboard.mjs") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let config = dir.path().join("hello.json");
    std::fs::write(&config, example_config()).unwrap();
    server.cli_ok(&["config", "set", "hello", config.to_str().unwrap()]);
    // v1: a first release, nothing to protect, so no canary; it completes.
    let release = server.cli_spawn(&["release", "hello", "v1"]);
    assert_eq!(release.wait_with_output().unwrap().status.code(), Some(0));
    // v2: rolled back by an alarm during its canary.
    let release = server.cli_spawn(&["release", "hello", "v2"]);
    server.wait_for_promote("v2's canary").await;
    server.cli_ok(&["sim", "alarm", "hello-5xx", "ALARM"]);
    assert_eq!(release.wait_with_output().unwrap().status.code(), Some(1));
    server.cli_ok(&["sim", "alarm", "hello-5xx", "OK"]);
    server
        .wait_for("hello", 10, "the alarm to clear", |s| {
            s["alarms"][0]["state"] == "OK"
        })
        .await;
    // v3: aborted by a person during its canary.
    let release = server.cli_spawn(&["release", "hello", "v3"]);
    server.wait_for_promote("v3's canary").await;
    server.cli_ok(&["abort", "hello", "--reason", "wrong build"]);
    assert_eq!(release.wait_with_output().unwrap().status.code(), Some(4));
    trail_has_rollbacks(&server, 2).await;

    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let wide = out.join("trail-dashboard-wide.png");
    let narrow = out.join("trail-dashboard-800.png");
    for png in [&wide, &narrow] {
        let _ = std::fs::remove_file(png);
    }
    let mut browser = Command::new("node")
        .arg(&script)
        .arg(format!("{}/#token={}", server.trail_url, server.token))
        .arg(&wide)
        .arg(&narrow)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(browser.stdout.take().unwrap()).lines();
    let seen: Value =
        serde_json::from_str(&lines.next().expect("the page was used").unwrap()).unwrap();
    // A new event while the page is open must appear in the table without a reload.
    server.cli_ok(&["sim", "alarm", "hello-5xx", "ALARM"]);
    let live: Value =
        serde_json::from_str(&lines.next().expect("the live row arrived").unwrap()).unwrap();
    assert!(browser.wait().unwrap().success());

    // First paint: data, not "loading…".
    let status = seen["status"].as_str().unwrap();
    assert!(status.ends_with("events, live"), "{status}");
    assert_eq!(seen["shares"], serde_json::json!(["v1 100%"]), "{seen}");
    let last = seen["lastRelease"].as_str().unwrap();
    assert!(
        last.starts_with("last: v3 (release), aborted, ended ") && last.ends_with(" UTC"),
        "{last}"
    );

    // Lanes: labelled by service, a time axis with ticks in a named zone, a legend, and each
    // way of ending in its own class and colour.
    assert_eq!(strings(&seen["laneLabels"]), ["hello"]);
    assert_eq!(seen["axisTitle"], "time (UTC)");
    assert!(strings(&seen["ticks"]).len() >= 2, "{seen}");
    assert!(
        strings(&seen["ticks"])
            .iter()
            .all(|t| t.chars().any(|c| c.is_ascii_digit()) && t.contains(':')),
        "tick labels are times: {seen}"
    );
    assert_eq!(
        strings(&seen["legend"]),
        [
            "completed",
            "alarm rollback",
            "environment Red (failed)",
            "aborted",
            "deadline exceeded",
            "cloud refused an action",
            "superseded",
            "in progress"
        ]
    );
    assert_eq!(
        strings(&seen["releases"]),
        [
            "v1 release completed",
            "v2 release alarm",
            "v3 release aborted"
        ]
    );
    let colours = &seen["releaseColours"];
    assert_ne!(colours["alarm"], colours["aborted"], "{colours}");
    assert_ne!(colours["alarm"], colours["completed"], "{colours}");
    // Zoomed to 24 h: the same releases on a redrawn axis.
    assert_eq!(seen["releases24h"], 3);
    assert!(strings(&seen["ticks24h"]).len() >= 2, "{seen}");
    assert_ne!(seen["ticks24h"], seen["ticks"]);

    // Delivery: every figure says what it is out of.
    let figures = &seen["figures"];
    assert_eq!(figures["deployments"]["value"], "1");
    assert_eq!(
        figures["deployments"]["of"],
        "of 3 finished releases reached 100%"
    );
    assert_eq!(figures["failures"]["value"], "2");
    assert_eq!(figures["change-failure rate"]["value"], "67%");
    assert_eq!(
        figures["change-failure rate"]["of"],
        "2 of 3 releases failed — 67%"
    );
    assert!(
        figures["time to restore (mean)"]["of"]
            .as_str()
            .unwrap()
            .ends_with("over 1 alarm rollback"),
        "{figures}"
    );
    assert_eq!(
        seen["perService"][0].as_array().unwrap()[..4],
        ["hello", "1", "2", "2 of 3 releases failed — 67%"]
    );
    assert!(seen["dayBars"].as_u64().unwrap() >= 1, "{seen}");
    let chart = strings(&seen["chartTicks"]);
    assert!(
        chart.contains(&"0".to_string()) && chart.contains(&"releases".to_string()),
        "the per-day chart has a y axis: {chart:?}"
    );
    assert!(
        chart.iter().any(|t| t.starts_with("day (UTC")),
        "and an x axis: {chart:?}"
    );

    // A click on the alarm rollback opens its details and narrows the audit to its rollout,
    // every row of which names a version.
    let details = seen["details"].as_str().unwrap();
    assert!(details.contains("hello v2: alarm rollback"), "{details}");
    assert!(details.contains("alarm hello-5xx is"), "{details}");
    assert!(seen["rolloutFilter"].as_str().unwrap().contains("hello v2"));
    let rollout = seen["rolloutRows"].as_array().unwrap();
    assert!(rollout.len() >= 5, "{seen}");
    assert!(
        rollout
            .iter()
            .all(|r| !r["version"].as_str().unwrap().is_empty()),
        "no row of the rollout leaves the version blank: {rollout:#?}"
    );
    assert!(
        rollout
            .iter()
            .filter(|r| r["actor"] == "roller" && r["type"] != "environment-observed")
            .all(|r| r["version"] == "v2"),
        "{rollout:#?}"
    );
    assert_eq!(rollout.first().unwrap()["type"], "rolled-back");
    assert_eq!(rollout.last().unwrap()["type"], "release-requested");
    assert!(seen["afterClear"].as_u64().unwrap() > rollout.len() as u64);

    // People only: rows by the admin token, none by the roller; exported alike.
    let people = strings(&seen["peopleActors"]);
    assert!(!people.is_empty(), "{seen}");
    assert!(
        people.iter().all(|a| a.starts_with("admin via token ")),
        "{people:?}"
    );
    let csv = strings(&seen["csv"]["lines"]);
    assert_eq!(
        csv[0],
        "seq,occurred_at,service,actor,event_type,version,summary,stream,position,hash"
    );
    assert_eq!(csv.len() as u64 - 1, seen["peopleRows"].as_u64().unwrap());
    assert!(csv[1..].iter().all(|l| l.contains(",\"admin via token ")));
    assert!(seen["csv"]["name"].as_str().unwrap().ends_with(".csv"));
    assert_eq!(seen["json"]["rows"], seen["peopleRows"]);
    assert_eq!(strings(&seen["json"]["actors"]), people);
    assert!(seen["json"]["name"].as_str().unwrap().ends_with(".json"));

    // Paging with the cursor: 25 rows, the next 25 older ones, and back to the first page.
    let paging = &seen["paging"];
    assert_eq!(paging["page1"]["rows"], 25);
    assert!(paging["page1"]["info"]
        .as_str()
        .unwrap()
        .starts_with("page 1:"));
    assert!(paging["page2"]["info"]
        .as_str()
        .unwrap()
        .starts_with("page 2:"));
    // The next page starts right below the last row of the first (live rows only ever arrive
    // at the top of the first page).
    assert_eq!(paging["page2"]["rows"], 25);
    assert_eq!(
        paging["page2"]["first"].as_u64().unwrap(),
        paging["page1"]["last"].as_u64().unwrap() - 1
    );
    assert!(paging["back"]["first"].as_u64() >= paging["page1"]["first"].as_u64());
    assert!(paging["back"]["info"]
        .as_str()
        .unwrap()
        .starts_with("page 1:"));

    // Times carry their zone; search narrows the page.
    assert!(
        seen["firstTime"].as_str().unwrap().ends_with(" UTC"),
        "{seen}"
    );
    assert_eq!(seen["timeHeader"], "time (UTC)");
    // The browser runs in New York: its zone is offered, and every time then names it.
    assert_eq!(strings(&seen["zones"]), ["UTC", "America/New_York"]);
    let header = seen["localHeader"].as_str().unwrap();
    let zone = header
        .strip_prefix("time (")
        .and_then(|z| z.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{header}"));
    assert!(zone != "UTC" && !zone.is_empty(), "{header}");
    assert!(
        seen["localTime"]
            .as_str()
            .unwrap()
            .ends_with(&format!(" {zone}")),
        "{seen}"
    );
    assert_eq!(seen["localAxis"], format!("time ({zone})"));
    assert_eq!(seen["searchRows"], 1, "{seen}");
    assert!(seen["searchRow"].as_str().unwrap().contains("rolled-back"));

    // Accessibility: axe-core's WCAG 2 A/AA rules, with the details open, wide and narrow.
    for key in ["a11yDetails", "a11y"] {
        assert!(strings(&seen[key]).is_empty(), "{key}: {:#?}", seen[key]);
    }
    assert!(
        strings(&live["a11yNarrow"]).is_empty(),
        "{:#?}",
        live["a11yNarrow"]
    );
    assert!(strings(&live["narrowTicks"]).len() >= 2, "{live}");

    // Live.
    assert!(
        live["liveRows"].as_u64().unwrap() > seen["rowsBeforeLive"].as_u64().unwrap(),
        "{live}"
    );

    for png in [&wide, &narrow] {
        let bytes = std::fs::read(png).expect("a screenshot was saved");
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{}",
            png.display()
        );
    }
    // README shows the wide one.
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::copy(&wide, docs.join("trail-dashboard.png")).unwrap();
    eprintln!(
        "dashboard screenshots: {} and {}",
        wide.display(),
        narrow.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trail_serve_links_its_dashboard_to_the_console_url_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let trail = |args: &[&str]| {
        let mut command = Command::new(trail_binary());
        command
            .arg("--events")
            .arg(dir.path().join("events.sqlite"))
            .arg("--db")
            .arg(dir.path().join("trail.sqlite"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn");
        command
    };
    let refused = trail(&["--console-url", "javascript:alert(1)"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is not an http:// or https:// URL"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let mut child = trail(&["--console-url", "http://127.0.0.1:7878/"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let up = lines.next().expect("trail printed its URL").unwrap();
    let url = up
        .strip_prefix("trail is up: ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{up}"))
        .trim_end_matches('/')
        .to_string();
    std::thread::spawn(move || for _ in lines {});
    let page = http()
        .get(format!("{url}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        page.contains("<a id=\"console-link\" href=\"http://127.0.0.1:7878/\">roller console</a>"),
        "the dashboard links to the console"
    );
}
