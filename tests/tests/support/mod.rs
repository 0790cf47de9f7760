//! Runs the real `ionroller` binary: `up` as a server process, and CLI commands against it.
#![allow(dead_code)]

pub mod browser;
pub mod fault_proxy;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `ionroller` binary, built beside this test by `cargo build --workspace --bins`
/// (`scripts/test.sh` does; `cargo test` alone does not build another package's binary).
pub fn binary() -> PathBuf {
    built("ionroller")
}

/// The standalone `trail` binary.
pub fn trail_binary() -> PathBuf {
    built("trail")
}

fn built(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// An HTTP client (reqwest needs rustls's provider installed first; see `ionroller_auth::tls`).
pub fn http() -> reqwest::Client {
    ionroller_auth::tls::http_client()
        .build()
        .expect("build the HTTP client")
}

pub fn example_config() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/hello.json"
    ))
    .expect("read examples/hello.json")
}

/// A running `ionroller up`.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub trail_url: String,
    /// The admin token the first `up` on the data dir wrote to `admin.token`.
    pub token: String,
}

impl Server {
    /// Starts `ionroller up` on a free port and waits for it to print its URL.
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, &["--interval-ms", "200"], &[])
    }

    /// `ionroller up` with more arguments (e.g. `--cloud aws`) and environment variables.
    pub fn start_with(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(binary());
        command.arg("up").arg("--data-dir").arg(data_dir);
        Server::spawn(command, data_dir, args, env)
    }

    /// `ionroller up` run in `dir` with no `--data-dir`, as README's walkthrough runs it: the
    /// data dir is `dir/.ionroller`.
    pub fn start_in(dir: &Path) -> Server {
        let mut command = Command::new(binary());
        command.arg("up").current_dir(dir);
        Server::spawn(
            command,
            &dir.join(".ionroller"),
            &["--interval-ms", "200"],
            &[],
        )
    }

    fn spawn(mut command: Command, data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "--trail-listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start ionroller up");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut url = None;
        let mut trail_url = None;
        while url.is_none() || trail_url.is_none() {
            assert!(
                Instant::now() < deadline,
                "ionroller up did not print its URLs"
            );
            let line = lines
                .next()
                .expect("ionroller up exited before printing its URLs")
                .expect("read stdout");
            let first_url = |rest: &str| {
                rest.split_whitespace()
                    .next()
                    .map(|u| u.trim_end_matches("/v1").trim_end_matches('/').to_string())
            };
            if let Some(rest) = line.trim().strip_prefix("API:") {
                url = first_url(rest);
            } else if let Some(rest) = line.trim().strip_prefix("trail:") {
                trail_url = first_url(rest);
            }
        }
        let (url, trail_url) = (url.unwrap_or_default(), trail_url.unwrap_or_default());
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        // A replica joining a shared log that has tokens already writes none: the caller
        // sets the first one's token.
        let token = std::fs::read_to_string(data_dir.join("admin.token"))
            .map(|t| t.trim().to_string())
            .unwrap_or_default();
        Server {
            child,
            url,
            trail_url,
            token,
        }
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Runs an `ionroller` CLI command against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(binary())
            .args(args)
            .env("IONROLLER_URL", &self.url)
            .env("IONROLLER_TRAIL_URL", &self.trail_url)
            .env("IONROLLER_TOKEN", &self.token)
            .output()
            .expect("run the ionroller CLI")
    }

    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "ionroller {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Puts the simulated alarm `alarm` into ALARM with `reason`, quoting the datapoint
    /// `value`, through the CLI (`ionroller sim alarm`).
    pub fn fire_alarm(&self, alarm: &str, reason: &str, value: &str) -> String {
        self.cli_ok(&[
            "sim", "alarm", alarm, "ALARM", "--reason", reason, "--value", value,
        ])
    }

    /// Spawns a CLI command (e.g. a following `release`) without waiting for it.
    pub fn cli_spawn(&self, args: &[&str]) -> Child {
        Command::new(binary())
            .args(args)
            .env("IONROLLER_URL", &self.url)
            .env("IONROLLER_TOKEN", &self.token)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the ionroller CLI")
    }

    pub async fn get(&self, path: &str) -> Value {
        let response = http()
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET");
        response.json().await.expect("JSON answer")
    }

    /// A request to `url` (either service) carrying the admin token.
    pub fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        http().request(method, url).bearer_auth(&self.token)
    }

    /// GET from trail.
    pub async fn trail(&self, path: &str) -> Value {
        let response = http()
            .get(format!("{}{path}", self.trail_url))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET trail");
        response.json().await.expect("JSON answer from trail")
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = http()
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Trail's audit rows of `service`, once trail has at least one (waits up to `secs`).
    pub async fn trail_rows(&self, service: &str, secs: u64) -> Vec<Value> {
        self.trail_rows_matching(&format!("/v1/audit?service={service}&limit=500"), secs)
            .await
    }

    /// Trail's audit rows of one event type, once there is one (waits up to `secs`).
    pub async fn trail_rows_of_type(&self, event_type: &str, secs: u64) -> Vec<Value> {
        self.trail_rows_matching(&format!("/v1/audit?type={event_type}&limit=500"), secs)
            .await
    }

    async fn trail_rows_matching(&self, path: &str, secs: u64) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let page = self.trail(path).await;
            let rows = page["rows"].as_array().cloned().unwrap_or_default();
            if !rows.is_empty() {
                return rows;
            }
            assert!(Instant::now() < deadline, "no audit rows at {path}: {page}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls the service status until `done` holds (or panics after `secs`).
    pub async fn wait_for(
        &self,
        service: &str,
        secs: u64,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let status = self.get(&format!("/v1/services/{service}")).await;
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last status: {status:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Waits until the service's rollout waits for a promote (a canary or an `until_promoted` pause).
    pub async fn wait_for_promote(&self, what: &str) -> Value {
        self.wait_for_promote_of("hello", what).await
    }

    pub async fn wait_for_promote_of(&self, service: &str, what: &str) -> Value {
        self.wait_for(service, 30, what, |s| {
            s["rollout"]["waiting_for"]
                .as_str()
                .is_some_and(|w| w.starts_with("promote"))
        })
        .await
    }
}

/// The share of in-service traffic on `version` in a status answer, in percent.
pub fn share(status: &Value, version: &str) -> u32 {
    let total: f64 = status["traffic"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["version"].as_str() == Some(version))
        .map(|t| t["share"].as_f64().unwrap_or(0.0))
        .sum();
    (total * 100.0).round() as u32
}

/// The live environment that runs `version`, from the roller's status.
pub fn environment_of(status: &Value, version: &str) -> String {
    status["environments"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["version"] == version && e["terminated"] == false)
        .and_then(|e| e["name"].as_str())
        .unwrap_or_else(|| panic!("no live environment for {version}: {status:#}"))
        .to_string()
}

/// One log that several `up` processes share as replicas: a schema of the test PostgreSQL,
/// or a namespace on KurrentDB (the stand-in, or the server at `IONROLLER_KURRENTDB_URL`).
pub enum SharedLog {
    Postgres {
        url: String,
        schema: String,
    },
    Kurrent {
        url: String,
        namespace: String,
        _standin: Option<ionroller_store_kurrentdb::testing::StandIn>,
    },
}

impl SharedLog {
    /// A fresh schema on the test PostgreSQL (`None`, said loudly, without one).
    pub fn postgres() -> Option<Self> {
        let url = ionroller_store_postgres::test_server_url()?;
        Some(SharedLog::Postgres {
            url,
            schema: format!("log_{}", uuid::Uuid::new_v4().simple()),
        })
    }

    /// A fresh namespace on KurrentDB, its stand-in keeping its data under `dir`.
    pub fn kurrentdb(dir: &Path) -> Option<Self> {
        let (url, standin) = ionroller_store_kurrentdb::testing::test_server(dir)?;
        Some(SharedLog::Kurrent {
            url,
            namespace: format!("log{}", uuid::Uuid::new_v4().simple()),
            _standin: standin,
        })
    }

    /// The arguments that put `up` on this log.
    pub fn args(&self) -> Vec<String> {
        match self {
            SharedLog::Postgres { url, schema } => {
                vec![
                    "--postgres".into(),
                    url.clone(),
                    "--postgres-schema".into(),
                    schema.clone(),
                ]
            }
            SharedLog::Kurrent { url, namespace, .. } => vec![
                "--kurrentdb".into(),
                url.clone(),
                "--kurrentdb-namespace".into(),
                namespace.clone(),
            ],
        }
    }

    /// The log itself, as the test reads it.
    pub async fn open(&self) -> std::sync::Arc<dyn ionroller_shared::store::EventStore> {
        match self {
            SharedLog::Postgres { url, schema } => std::sync::Arc::new(
                ionroller_store_postgres::PgStore::open(
                    ionroller_store_postgres::PgOptions::new(url).schema(schema),
                )
                .await
                .expect("open the shared PostgreSQL log"),
            ),
            SharedLog::Kurrent { url, namespace, .. } => std::sync::Arc::new(
                ionroller_store_kurrentdb::KurrentStore::open(
                    ionroller_store_kurrentdb::KurrentOptions::new(url).namespace(namespace),
                )
                .await
                .expect("open the shared KurrentDB log"),
            ),
        }
    }
}

/// An `ionroller up` replica `name` on `log` and the simulated cloud file `sim`, its data dir
/// `dir/name`, reconciling every 200 ms with leases of `lease_ttl_ms`.
pub fn replica(dir: &Path, name: &str, log: &SharedLog, sim: &Path, lease_ttl_ms: &str) -> Server {
    let data = dir.join(name);
    let mut args: Vec<String> = ["--interval-ms", "200", "--replica-id", name]
        .map(String::from)
        .to_vec();
    args.extend(log.args());
    args.extend(
        [
            "--lease-ttl-ms",
            lease_ttl_ms,
            "--sim-file",
            sim.to_str().expect("utf-8 path"),
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start_with(&data, &args, &[])
}

/// Sends `sig` (as `kill` takes it: `-STOP`, `-TERM`, ...) to the server's process.
pub fn signal(server: &Server, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &server.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {sig}");
}

/// The roller's `/metrics` page.
pub async fn metrics_text(server: &Server) -> String {
    server
        .request(reqwest::Method::GET, &format!("{}/metrics", server.url))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

/// A gauge or counter from `/metrics` (0 when the series is absent).
pub async fn metric(server: &Server, name: &str) -> f64 {
    metrics_text(server)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits (up to 30 s) until `done` holds for the metric `name`.
pub async fn wait_metric(server: &Server, name: &str, what: &str, done: impl Fn(f64) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let value = metric(server, name).await;
        if done(value) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {name} is {value}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
