//! Trail's dashboard in a real browser: headless Chromium (Debian's package) driven by
//! playwright-core, against a trail fed by a real scripted rollout. Asserts what the page
//! shows and saves a screenshot under the test's output directory.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::*;

fn browser_ready() -> Option<PathBuf> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    let have_node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let ready = Path::new(&chromium).exists()
        && have_node
        && script.join("node_modules/playwright-core").exists();
    if ready {
        return Some(script.join("dashboard.mjs"));
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("the dashboard browser test needs {chromium}, node and tests/browser/node_modules in CI; scripts/test.sh installs them");
    }
    eprintln!("\n*** SKIPPING the dashboard browser test: Chromium, node or playwright-core is missing. Run scripts/test.sh to install them. ***\n");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_services_releases_delivery_and_a_live_audit_table() {
    let Some(script) = browser_ready() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let config = dir.path().join("hello.json");
    std::fs::write(&config, example_config()).unwrap();
    server.cli_ok(&["config", "set", "hello", config.to_str().unwrap()]);
    // A first release: nothing to protect, so no canary to promote.
    let release = server.cli_spawn(&["release", "hello", "v1"]);
    assert_eq!(release.wait_with_output().unwrap().status.code(), Some(0));
    let release = server.cli_spawn(&["release", "hello", "v2"]);
    server.wait_for_promote("v2's canary").await;
    server.cli_ok(&["sim", "alarm", "hello-5xx", "ALARM"]);
    assert_eq!(release.wait_with_output().unwrap().status.code(), Some(1));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let mut browser = Command::new("node")
        .arg(&script)
        .arg(format!("{}/#token={}", server.trail_url, server.token))
        .arg(&screenshot)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(browser.stdout.take().unwrap()).lines();
    let first: Value =
        serde_json::from_str(&lines.next().expect("the page rendered").unwrap()).unwrap();
    // A new event while the page is open must appear in the table without a reload.
    server.cli_ok(&["sim", "alarm", "hello-5xx", "OK"]);
    let seen: Value =
        serde_json::from_str(&lines.next().expect("the live row arrived").unwrap()).unwrap();
    assert!(browser.wait().unwrap().success());

    assert_eq!(first["ready"], true);
    assert!(seen["auditRows"].as_u64().unwrap() >= 30, "{seen}");
    assert!(
        seen["liveRows"].as_u64().unwrap() > seen["auditRows"].as_u64().unwrap(),
        "{seen}"
    );
    assert_eq!(seen["shares"], serde_json::json!(["v1 100%"]), "{seen}");
    assert_eq!(
        seen["releases"],
        serde_json::json!(["release completed", "release rolled_back"]),
        "{seen}"
    );
    assert_eq!(seen["figures"]["deployments"], "1");
    assert_eq!(seen["figures"]["failures"], "1");
    assert_eq!(seen["figures"]["change-failure rate"], "50%");
    assert!(
        seen["dayBars"].as_u64().unwrap() >= 1,
        "a delivery chart element"
    );
    assert_eq!(
        seen["searchRows"], 1,
        "searching 'rolled back' finds the one rollback row"
    );
    assert!(
        seen["firstRow"].as_str().unwrap().contains("rolled-back"),
        "{seen}"
    );
    let png = std::fs::read(&screenshot).expect("a screenshot was saved");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot at {}",
        screenshot.display()
    );
    eprintln!("dashboard screenshot: {}", screenshot.display());
}
