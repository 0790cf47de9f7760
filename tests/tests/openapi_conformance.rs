//! Both services against their own OpenAPI documents: `ionroller up` on the simulated cloud
//! (the real binary, with trail in-process), a service saved and released so that reads have
//! something to show, then schemathesis fuzzes every operation of `/v1/openapi.json` of the
//! roller and of trail: each answer's status must be documented, its body must match the
//! documented schema and content type, and no input may cause a 5xx.
//!
//! Excluded from fuzzing: the two server-sent-event routes (`/v1/services/{service}/events`,
//! trail's `/v1/feed`). For a valid request they answer 200 and then stream for ever, and
//! schemathesis reads a whole body before checking it, so every valid case would end in its
//! request timeout. Their documents are still generated and served; their 400s are tested in
//! `roller/tests` and `tests/tests/trail_flow.rs`.
//!
//! schemathesis comes from the venv `scripts/test.sh` installs (`scripts/lib/aws_emulators.sh`,
//! `$IONROLLER_SCHEMATHESIS`); without it the test skips loudly, and fails when `CI=true`.

mod support;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// Per operation; the coverage phase adds its own deterministic cases on top.
const MAX_EXAMPLES: &str = "20";
/// A hung run fails the test rather than the suite's patience.
const HARD_TIMEOUT: Duration = Duration::from_secs(600);
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance";
/// Streams that never end (see the module comment).
const EXCLUDE_SSE: &str = r"^/v1/(services/[^/]+/events|feed)$";

fn schemathesis_or_skip(test: &str) -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("IONROLLER_SCHEMATHESIS").map(PathBuf::from),
        std::env::var_os("IONROLLER_AWS_VENV")
            .map(|v| PathBuf::from(v).join("schemathesis/bin/schemathesis")),
        std::env::var_os("HOME").map(|h| {
            PathBuf::from(h).join(".cache/ionroller/aws-emulators/schemathesis/bin/schemathesis")
        }),
    ];
    if let Some(found) = candidates.into_iter().flatten().find(|p| p.is_file()) {
        return Some(found);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: schemathesis is not installed; run the suite with ./scripts/test.sh");
    }
    eprintln!(
        "\n*** SKIPPED {test}: schemathesis is not installed (./scripts/test.sh installs it) ***\n"
    );
    None
}

/// Runs schemathesis against one service's document; panics with its report on any failure.
fn fuzz(schemathesis: &PathBuf, what: &str, base: &str, token: &str, report_dir: &std::path::Path) {
    let mut child = Command::new(schemathesis)
        .arg("run")
        .arg(format!("{base}/v1/openapi.json"))
        // The admin token: every operation is tried with a caller allowed to do it.
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", CHECKS])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--exclude-path-regex", EXCLUDE_SSE])
        .args(["--workers", "1"])
        .args(["--request-timeout", "10"])
        .args(["--seed", "20261130"])
        .arg("--no-color")
        .arg("--report-dir")
        .arg(report_dir)
        // Its own config and cache stay out of the repository.
        .current_dir(report_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start schemathesis");
    // Drain both pipes on threads so a long report cannot block the child.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + HARD_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for schemathesis") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    match status {
        None => {
            panic!("schemathesis against {what} did not finish in {HARD_TIMEOUT:?}:\n{out}\n{err}")
        }
        Some(s) if !s.success() => {
            panic!("schemathesis found failures in {what} ({s}):\n{out}\n{err}")
        }
        Some(_) => eprintln!("schemathesis against {what}: no failures\n{out}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_services_conform_to_their_openapi_documents() {
    let test = "both_services_conform_to_their_openapi_documents";
    let Some(schemathesis) = schemathesis_or_skip(test) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&dir.path().join("data"));

    // Something to read: a saved config and a release, so `hello` (the documents' example
    // service name) answers 200 with real bodies rather than only 404s.
    let saved = server
        .request(
            reqwest::Method::PUT,
            &format!("{}/v1/services/hello/config", server.url),
        )
        .header("content-type", "application/json")
        .body(example_config())
        .send()
        .await
        .expect("PUT config");
    assert_eq!(
        saved.status(),
        200,
        "{}",
        saved.text().await.unwrap_or_default()
    );
    let (status, body) = server
        .post("/v1/services/hello/releases", json!({ "version": "v1" }))
        .await;
    assert_eq!(status, 202, "{body}");

    let roller_reports = dir.path().join("roller-report");
    let trail_reports = dir.path().join("trail-report");
    std::fs::create_dir_all(&roller_reports).expect("report dir");
    std::fs::create_dir_all(&trail_reports).expect("report dir");
    // A token of its own, under a name no generated case will hit: schemathesis also
    // exercises `DELETE /v1/tokens/{name}`, and must not revoke the token it runs with.
    let created = server.cli_ok(&[
        "token",
        "create",
        "conformance-runner-3f9c2a",
        "--role",
        "admin",
    ]);
    let token = created
        .lines()
        .find(|l| l.starts_with("ionr_"))
        .expect("the new token's secret")
        .to_string();
    let (url, trail_url) = (server.url.clone(), server.trail_url.clone());
    // schemathesis blocks for minutes: off the runtime's workers.
    tokio::task::spawn_blocking(move || {
        fuzz(&schemathesis, "the roller", &url, &token, &roller_reports);
        fuzz(&schemathesis, "trail", &trail_url, &token, &trail_reports);
    })
    .await
    .expect("schemathesis runs");
}
