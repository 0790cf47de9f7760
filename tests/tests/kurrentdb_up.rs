//! `ionroller up --kurrentdb` as an operator runs it: the log on a KurrentDB node (the
//! protocol stand-in, or the real server at `IONROLLER_KURRENTDB_URL`) in a namespace of its
//! own; a release with its canary and promote goes through, trail audits it from the same log,
//! and a restarted `up` finds everything where it was left, because nothing lives in its data
//! dir but the admin token. Restarted as the production topology runs it: trail as a service
//! of its own (`trail --kurrentdb … serve`) and `up --external-trail` pointing at it.

mod support;

use ionroller_store_kurrentdb::testing::test_server;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_on_a_kurrentdb_log_survives_a_restart_of_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((url, _standin)) = test_server(dir.path()) else {
        return;
    };
    let namespace = format!("e2e{}.", std::process::id());
    let data = dir.path().join("data");
    let args = [
        "--interval-ms",
        "200",
        "--kurrentdb",
        &url,
        "--kurrentdb-namespace",
        &namespace,
    ];
    let server = Server::start_with(&data, &args, &[]);
    let config = dir.path().join("hello.json");
    std::fs::write(&config, example_config().replace("\"3s\"", "\"1s\"")).expect("config");
    server.cli_ok(&["config", "set", "hello", config.to_str().expect("utf-8")]);
    server.cli_ok(&["release", "hello", "v1", "--no-follow"]);
    server
        .wait_for("hello", 60, "v1 to serve", |s| {
            s["stable_version"] == "v1" && s["rollout"].is_null()
        })
        .await;
    server.cli_ok(&["release", "hello", "v2", "--no-follow"]);
    server.wait_for_promote("v2's canary").await;
    server.cli_ok(&["promote", "hello"]);
    server
        .wait_for("hello", 60, "v2 to serve", |s| {
            s["stable_version"] == "v2" && s["rollout"].is_null() && share(s, "v2") == 100
        })
        .await;
    let audit = server.trail_rows("hello", 30).await;
    let releases = audit
        .iter()
        .filter(|r| r["event_type"] == "release-requested")
        .count();
    assert_eq!(
        releases, 2,
        "trail audits both releases from the KurrentDB log"
    );
    server.kill();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let trail_url = format!("http://127.0.0.1:{port}");
    let _trail = Trail(
        std::process::Command::new(trail_binary())
            .args(["--kurrentdb", &url, "--kurrentdb-namespace", &namespace])
            .arg("--db")
            .arg(dir.path().join("trail.sqlite"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start trail"),
    );
    let mut separate = args.to_vec();
    separate.extend(["--external-trail", &trail_url]);
    let again = Server::start_with(&data, &separate, &[]);
    assert_eq!(again.trail_url, trail_url, "up links to the separate trail");
    let status = again.get("/v1/services/hello").await;
    assert_eq!(status["stable_version"], "v2", "{status}");
    let history = status["history"].as_array().expect("history");
    assert_eq!(history.len(), 2, "{status}");
    // The separate trail projects the same log from the start.
    let audit = again.trail_rows("hello", 30).await;
    assert!(
        audit.iter().any(|r| r["event_type"] == "promote-requested"),
        "the separate trail audits the log"
    );
}

/// A standalone trail process, killed with the test.
struct Trail(std::process::Child);

impl Drop for Trail {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
