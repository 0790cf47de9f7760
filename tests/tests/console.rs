//! The roller's web console in a real browser (headless Chromium, playwright-core), against the
//! real binary: a release run from the page alone (release, canary, promote, steps, an alarm
//! rolling it back), every action recorded with the verified identity and its reason, a viewer
//! without buttons and refused by the API, the config diff, and accessibility checked by
//! axe-core. Screenshots go to the test's output directory; the wide one also to
//! `docs/console.png`, which README shows.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::browser::browser_script;
use support::*;

/// The example config with pauses long enough to watch (60 s between steps), and a second
/// version that changes one variable and the instance ceiling.
fn configs(dir: &Path) -> (PathBuf, PathBuf) {
    let mut config: Value = serde_json::from_str(&example_config()).expect("example config");
    config["rollout"]["pause"] = "60s".into();
    let first = dir.join("hello-1.json");
    std::fs::write(&first, config.to_string()).expect("write config");
    config["env"]["GREETING"] = "hello, world".into();
    config["instances"]["max"] = 6.into();
    let second = dir.join("hello-2.json");
    std::fs::write(&second, config.to_string()).expect("write config");
    (first, second)
}

fn text_at(seen: &Value, pointer: &str) -> String {
    seen.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn secret_in(output: &str) -> String {
    output
        .split_whitespace()
        .find(|w| w.starts_with("ionr_"))
        .unwrap_or_else(|| panic!("no secret in {output}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_runs_from_the_console_alone_and_every_action_is_authorized_and_audited() {
    let Some(script) = browser_script("console.mjs") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let (first, second) = configs(dir.path());
    server.cli_ok(&["config", "set", "hello", first.to_str().expect("utf-8")]);
    let release = server.cli_spawn(&["release", "hello", "v1"]);
    let released = release.wait_with_output().expect("release v1");
    assert_eq!(released.status.code(), Some(0), "v1 is released");
    server.cli_ok(&["config", "set", "hello", second.to_str().expect("utf-8")]);
    let viewer = secret_in(&server.cli_ok(&[
        "token",
        "create",
        "ana",
        "--role",
        "viewer",
        "--service",
        "hello",
    ]));

    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console");
    std::fs::create_dir_all(&out_dir).expect("screenshot dir");
    let run = Command::new("node")
        .arg(&script)
        .arg(&server.url)
        .arg(&server.token)
        .arg(&viewer)
        .arg(&out_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .expect("run the browser");
    let seen: Value = serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&run.stdout)));
    assert!(run.status.success(), "{seen:#}");
    let text = |key: &str| seen[key].as_str().unwrap_or_default().to_string();

    // Signing in, and the services list.
    assert_eq!(seen["signInShown"], true);
    assert!(text("who").contains("admin via token"), "{seen:#}");
    let services_row = text("servicesRow");
    assert!(
        services_row.contains("hello") && services_row.contains("v1"),
        "{services_row}"
    );
    assert_eq!(text("trailLink"), format!("{}/", server.trail_url));
    // And back: trail's dashboard (as `up` serves it) links to this console.
    let dashboard = http()
        .get(format!("{}/", server.trail_url))
        .send()
        .await
        .expect("trail's page")
        .text()
        .await
        .expect("its text");
    assert!(
        dashboard.contains(&format!("id=\"console-link\" href=\"{}/\"", server.url)),
        "no console link on trail's page"
    );

    // The release, previewed then confirmed, waits at the canary.
    let preview = text("releasePreview");
    assert!(
        preview.contains("release of v2 requested: ship the new greeting"),
        "{preview}"
    );
    assert!(
        preview.contains("canary") && preview.contains("10%"),
        "the plan is shown: {preview}"
    );
    assert!(
        text("canary").contains("Waiting for: promote (canary at 10%)"),
        "{seen:#}"
    );
    assert!(
        text("canaryCurrentStep").starts_with("canary 10% (1 new, 2 old)"),
        "{seen:#}"
    );

    // The traffic bar: the real shares (one v2 instance beside two of v1), drawn to scale.
    let traffic: Vec<(String, i64)> =
        serde_json::from_value(seen["canaryTraffic"].clone()).expect("traffic parts");
    assert_eq!(
        traffic
            .iter()
            .map(|(label, _)| label.as_str())
            .collect::<Vec<_>>(),
        ["v1 67%", "v2 33%"],
        "{seen:#}"
    );
    assert!(
        (traffic[0].1 - 67).abs() <= 2 && (traffic[1].1 - 33).abs() <= 2,
        "{traffic:?}"
    );

    // Promote: the ladder moves on, the canary done.
    assert!(
        text("promotePreview").contains("promote requested: canary is clean"),
        "{seen:#}"
    );
    assert!(
        text("afterPromoteStep").starts_with("step 50% (1 new, 1 old), then 1m"),
        "{seen:#}"
    );
    assert_eq!(
        seen["doneSteps"], 3,
        "launch, canary and 25% done: {seen:#}"
    );

    // The alarm rolls the release back, with its cause on the page.
    assert_eq!(seen["alarmSet"], 200);
    let rolled_back = text("rolledBack");
    assert!(
        rolled_back.contains("v2") && rolled_back.contains("rolled back: alarm hello-5xx is Alarm"),
        "{rolled_back}"
    );
    assert!(
        text("alarmRow").contains("5xx above 1% for 1 minute"),
        "{seen:#}"
    );

    // Events in sentences, people only; the raw event one click away.
    let people: Vec<String> = serde_json::from_value(seen["peopleEvents"].clone()).expect("rows");
    assert!(
        people
            .iter()
            .any(|r| r.contains("admin via token") && r.contains("release of v2 requested")),
        "{people:?}"
    );
    assert!(
        people.iter().all(|r| !r.contains("\troller\t")),
        "{people:?}"
    );
    assert!(text("rawEvent").contains("\"type\""), "{seen:#}");

    // The config diff names exactly the changed fields.
    let diff: Vec<String> = serde_json::from_value(seen["diffRows"].clone()).expect("rows");
    assert_eq!(diff.len(), 2, "{diff:?}");
    assert!(
        diff.iter()
            .any(|r| r.contains("env.GREETING") && r.contains("hello, world")),
        "{diff:?}"
    );
    assert!(
        diff.iter()
            .any(|r| r.contains("instances.max") && r.contains('6')),
        "{diff:?}"
    );
    assert!(text("plan").contains("100%"), "{seen:#}");

    // The viewer: no buttons, 403 from the API, and the token out of the address bar and
    // kept only in the tab's sessionStorage.
    assert_eq!(seen["viewerActionsHidden"], true);
    assert_eq!(seen["viewerPost"]["status"], 403, "{seen:#}");
    assert!(!text("viewerUrl").contains("ionr_"), "{seen:#}");
    assert!(
        text_at(&seen, "/viewerElsewhere/notice").contains("needs the role viewer on service shop"),
        "{seen:#}"
    );
    assert_eq!(
        seen["viewerElsewhere"]["serviceViewHidden"], true,
        "no data of hello under the name shop: {seen:#}"
    );
    assert_eq!(seen["viewerStored"]["session"], true);
    assert_eq!(seen["viewerStored"]["local"], 0);
    assert_eq!(seen["viewerStored"]["cookies"], "");

    // Accessibility basics on every view, and no script errors.
    for (view, violations) in seen["a11y"].as_object().expect("a11y results") {
        assert_eq!(violations, &serde_json::json!([]), "{view}: {violations:#}");
    }
    assert_eq!(seen["pageErrors"], serde_json::json!([]));

    // The log records the verified identity and each reason; the refusal is recorded too.
    let rows = server.trail_rows("hello", 10).await;
    let by_type = |t: &str| {
        rows.iter()
            .filter(|r| r["event_type"] == t)
            .map(|r| {
                (
                    r["actor"].as_str().unwrap_or("").to_string(),
                    r["summary"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let releases = by_type("release-requested");
    assert!(
        releases
            .iter()
            .any(|(actor, what)| actor.starts_with("admin via token")
                && what.contains("ship the new greeting")),
        "{releases:?}"
    );
    let promotes = by_type("promote-requested");
    assert!(
        promotes
            .iter()
            .any(|(actor, what)| actor.starts_with("admin via token")
                && what.contains("canary is clean")),
        "{promotes:?}"
    );
    let denied = server.trail_rows_of_type("access-denied", 10).await;
    assert!(
        denied.iter().any(|r| r["actor"]
            .as_str()
            .unwrap_or("")
            .starts_with("ana via token")),
        "{denied:?}"
    );

    for name in ["console.png", "console-800.png"] {
        let png = std::fs::read(out_dir.join(name)).expect("a screenshot was saved");
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{name}");
    }
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/console.png");
    std::fs::copy(out_dir.join("console.png"), &docs).expect("copy the screenshot to docs/");
    eprintln!("console screenshots: {}", out_dir.display());
}
