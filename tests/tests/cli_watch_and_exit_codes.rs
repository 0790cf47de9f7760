//! The command line as a CI pipeline and an operator use it: `watch` (and `status -w`)
//! attaches to a rollout in progress and exits with its outcome; every exit code README lists
//! is produced by the real binary (refused 3, superseded or aborted 4, timed out 5,
//! unreachable 6, interrupted 130); Ctrl-C and `--timeout` stop the following, never the
//! rollout, and say how to attach again; `completion` prints a script for each shell.

mod support;

use std::io::Read;
use std::process::Child;
use std::time::Duration;

use support::*;

/// Waits for a spawned CLI command: its exit code, stdout and stderr.
fn finish(mut child: Child) -> (i32, String, String) {
    let status = child.wait().expect("CLI finishes");
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut err);
    }
    (status.code().unwrap_or(-1), out, err)
}

fn code(server: &Server, args: &[&str]) -> (i32, String, String) {
    let out = server.cli(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_attaches_and_every_exit_code_means_one_thing() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(dir.path());

    // Refused by the server (no config yet): 3, with the server's reason.
    let (c, _, err) = code(&server, &["release", "hello", "v1"]);
    assert_eq!(c, 3, "{err}");
    assert!(err.contains("404"), "{err}");
    // Nobody listening: 6.
    let (c, _, err) = code(
        &server,
        &["--server", "http://127.0.0.1:9", "status", "hello"],
    );
    assert_eq!(c, 6, "{err}");
    assert!(err.contains("could not reach the roller"), "{err}");
    // A command line clap refuses: 2.
    assert_eq!(code(&server, &["watch"]).0, 2);

    let config = dir.path().join("hello.json");
    std::fs::write(&config, example_config()).expect("write config");
    server.cli_ok(&["config", "set", "hello", config.to_str().expect("utf-8")]);

    // A refusal of the rules ends with the command that answers it.
    server.cli_ok(&["sim", "alarm", "hello-5xx", "ALARM"]);
    server
        .wait_for("hello", 10, "the alarm seen", |s| {
            s["alarms"][0]["state"] == "ALARM"
        })
        .await;
    let (c, _, err) = code(&server, &["release", "hello", "v1"]);
    assert_eq!(c, 3, "{err}");
    assert!(
        err.contains("409") && err.contains("hint: run the release again with --override-alarms"),
        "{err}"
    );
    server.cli_ok(&["sim", "alarm", "hello-5xx", "OK"]);
    server
        .wait_for("hello", 10, "the alarm cleared", |s| {
            s["alarms"][0]["state"] == "OK"
        })
        .await;

    // Events read as the audit's sentences; --raw (or -o json) gives one JSON object a line.
    let text = server.cli_ok(&["events", "hello"]);
    assert!(text.contains("config version 1 saved"), "{text}");
    let raw = server.cli_ok(&["events", "hello", "--raw"]);
    for line in raw.lines() {
        let event: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        assert!(event["type"].is_string(), "{line}");
    }
    assert_eq!(raw, server.cli_ok(&["-o", "json", "events", "hello"]));

    // Nothing in progress: watch shows the status and exits 0 at once.
    let out = server.cli_ok(&["watch", "hello"]);
    assert!(out.contains("Nothing in progress for hello."), "{out}");

    // v1 released without following; `watch` attaches and exits 0 when it completes.
    server.cli_ok(&["release", "hello", "v1", "--no-follow"]);
    let (c, out, err) = finish(server.cli_spawn(&["watch", "hello"]));
    assert_eq!(c, 0, "{out}{err}");
    assert!(out.contains("Watching hello v1"), "{out}");
    assert!(
        out.contains("completed: hello v1 serves all traffic"),
        "{out}"
    );

    // v2 waits at its canary for a person: a watch with --timeout gives up with 5 and says
    // how to attach again; the rollout is untouched.
    server.cli_ok(&["release", "hello", "v2", "--no-follow"]);
    server.wait_for_promote("v2's canary").await;
    let (c, _, err) = code(&server, &["status", "-w", "hello", "--timeout", "1s"]);
    assert_eq!(c, 5, "{err}");
    assert!(
        err.contains("timed out after 1s") && err.contains("`ionroller watch hello`"),
        "{err}"
    );
    let status = server.get("/v1/services/hello").await;
    assert_eq!(status["rollout"]["version"], "v2", "still rolling out");

    // The status says who paused and why, lists instances, and orders environments as
    // the releases made them.
    server.cli_ok(&["pause", "hello", "--reason", "checking the dashboards"]);
    let text = server.cli_ok(&["status", "hello"]);
    assert!(
        text.contains("paused by admin via token") && text.contains(": checking the dashboards"),
        "{text}"
    );
    assert!(text.contains("    instances: i-"), "{text}");
    let listed = text.split("environments:\n").nth(1).unwrap_or_default();
    let envs = listed.find("hello-v1-").zip(listed.find("hello-v2-"));
    assert!(
        envs.is_some_and(|(v1, v2)| v1 < v2),
        "v1's environment first: {text}"
    );
    server.cli_ok(&["resume", "hello"]);

    // Ctrl-C stops watching (130), never the rollout, and says how to come back.
    let watcher = server.cli_spawn(&["watch", "hello"]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let sent = std::process::Command::new("kill")
        .args(["-INT", &watcher.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(sent.success());
    let (c, _, err) = finish(watcher);
    assert_eq!(c, 130, "{err}");
    assert!(
        err.contains("stopped following hello: the rollout goes on"),
        "{err}"
    );
    let status = server.get("/v1/services/hello").await;
    assert_eq!(status["rollout"]["version"], "v2", "still rolling out");

    // A person aborts it: the watch that was attached ends with 4, not a rollback's 1.
    let watcher = server.cli_spawn(&["watch", "hello"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.cli_ok(&["abort", "hello", "--reason", "wrong build"]);
    let (c, out, err) = finish(watcher);
    assert_eq!(c, 4, "{out}{err}");
    assert!(out.contains("rolled back: aborted by"), "{out}");

    // `rollback` of a rollout in progress asked for exactly that: it exits 0.
    server.cli_ok(&["release", "hello", "v3", "--no-follow"]);
    server.wait_for_promote("v3's canary").await;
    let (c, out, err) = code(&server, &["rollback", "hello"]);
    assert_eq!(c, 0, "{out}{err}");

    // A newer release supersedes the one being followed: 4.
    server.cli_ok(&["release", "hello", "v4", "--no-follow"]);
    server.wait_for_promote("v4's canary").await;
    let follower = server.cli_spawn(&["watch", "hello"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.cli_ok(&["release", "hello", "v5", "--no-follow"]);
    let (c, out, err) = finish(follower);
    assert_eq!(c, 4, "{out}{err}");
    assert!(out.contains("superseded"), "{out}");

    // -o json: the API's answers as they are, for scripts.
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        serde_json::from_str(&server.cli_ok(&all)).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    };
    assert_eq!(json(&["status", "hello"])["rollout"]["version"], "v5");
    let services = json(&["services"]);
    assert_eq!(services["services"][0]["service"], "hello");
    assert_eq!(services["services"][0]["stable_version"], "v1");
    assert_eq!(services["services"][0]["rollout"]["version"], "v5");
    assert_eq!(json(&["plan", "hello", "v6"])["version"], "v6");
    assert_eq!(json(&["config", "get", "hello"])["config_version"], 1);
    assert!(json(&["config", "history", "hello"])["configs"].is_array());
    assert!(json(&["token", "list"])["tokens"].is_array());
    assert!(json(&["whoami"])["actor"].is_string());
    assert!(json(&["history", "hello"])["releases"].is_array());
    assert!(json(&["report"]).is_object());
    assert!(json(&["verify"]).is_object());
    let table = server.cli_ok(&["services"]);
    assert!(
        table.starts_with("SERVICE") && table.contains("hello") && table.contains("v5"),
        "{table}"
    );
    // Commands answer JSON too: a pause, and a release not followed.
    assert!(json(&["pause", "hello"]).is_object());
    let accepted = json(&["release", "hello", "v6", "--no-follow"]);
    assert!(accepted["rollout_id"].is_string(), "{accepted}");
}

#[test]
fn completion_scripts_cover_every_subcommand_for_each_shell() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let run = |shell: &str| {
        let out = std::process::Command::new(binary())
            .args(["completion", shell])
            .current_dir(dir.path())
            .output()
            .expect("run ionroller completion");
        assert!(out.status.success(), "{shell}");
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let bash = run("bash");
    assert!(bash.contains("_ionroller()"), "{bash}");
    for subcommand in ["release", "watch", "rollback", "completion", "token"] {
        assert!(bash.contains(subcommand), "bash: {subcommand}");
    }
    assert!(run("zsh").starts_with("#compdef ionroller"));
    assert!(run("fish").contains("complete -c ionroller"));
}

/// A free port on loopback (bound, read, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One setting for both sides: `up` without --listen listens where IONROLLER_URL and
/// IONROLLER_TRAIL_URL point, and the CLI (run in the same directory, with no token handling)
/// reaches it there. Ctrl-C stops `up` within seconds even while followers hold feeds open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_listens_where_the_cli_points_and_stops_within_seconds_with_followers_attached() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let roller = format!("http://127.0.0.1:{}", free_port());
    let trail = format!("http://127.0.0.1:{}", free_port());
    let env = [
        ("IONROLLER_URL", roller.as_str()),
        ("IONROLLER_TRAIL_URL", trail.as_str()),
    ];
    let cli = |args: &[&str]| {
        let mut command = std::process::Command::new(binary());
        command
            .args(args)
            .current_dir(dir.path())
            .env_remove("IONROLLER_TOKEN")
            .envs(env)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command
    };
    let mut up = cli(&["up", "--interval-ms", "200"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start ionroller up");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = cli(&["whoami"]).output().expect("run whoami");
        if out.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "up never answered at {roller}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let config = dir.path().join("hello.json");
    std::fs::write(&config, example_config()).expect("write config");
    let saved = cli(&["config", "set", "hello", config.to_str().expect("utf-8")])
        .output()
        .expect("config set");
    assert!(saved.status.success(), "{saved:?}");
    let mut followers = vec![
        cli(&["events", "hello", "--follow"])
            .spawn()
            .expect("events --follow"),
        cli(&["audit", "--follow"]).spawn().expect("audit --follow"),
    ];
    tokio::time::sleep(Duration::from_millis(800)).await;
    let stopping = std::time::Instant::now();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &up.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(sent.success());
    let stopped = loop {
        if let Some(status) = up.try_wait().expect("wait for up") {
            break status;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(10),
            "up did not stop within 10 s of Ctrl-C with followers attached"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(stopped.success(), "{stopped:?}");
    eprintln!("up stopped {:?} after Ctrl-C", stopping.elapsed());
    for follower in &mut followers {
        let _ = follower.kill();
        let _ = follower.wait();
    }
}
