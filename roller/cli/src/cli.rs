//! The `ionroller` command line: `up` runs the service; everything else is a client of its API.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use ionroller_shared::store::EventStore;
use ionroller_store_postgres::{PgOptions, PgStore};
use ionroller_store_sqlite::{SqliteOptions, SqliteStore};
use serde_json::{json, Value};
use sse_stream::{Sse, SseByteStream};

use ionroller_roller::api::views::ServiceStatus;
use ionroller_roller::api::ACTOR_HEADER;
use ionroller_roller::clock::{Clock, SystemClock};
use ionroller_roller::cloud::sim::SimCloud;
use ionroller_roller::{CloudDriver, RollerConfig};

use crate::jsonc;
use crate::time_args::time_arg;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

#[derive(Parser)]
#[command(
    name = "ionroller",
    version,
    about = "Ship Docker-image releases to AWS, gradually and reversibly"
)]
pub struct Cli {
    /// The roller's URL.
    #[arg(
        long,
        global = true,
        env = "IONROLLER_URL",
        default_value = "http://127.0.0.1:7878"
    )]
    server: String,
    /// Trail's URL (audit, history, reports).
    #[arg(
        long,
        global = true,
        env = "IONROLLER_TRAIL_URL",
        default_value = "http://127.0.0.1:7879"
    )]
    trail: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CloudKind {
    Sim,
    Aws,
}

#[derive(Subcommand)]
enum Command {
    /// Run the roller and trail on the embedded event store, on the simulated cloud or AWS.
    Up {
        /// Where the event log (and the simulated cloud) keep their files.
        #[arg(long, default_value = ".ionroller")]
        data_dir: PathBuf,
        /// `sim` (no account needed) or `aws`: the AWS SDK's standard configuration
        /// (region, credentials, `AWS_ENDPOINT_URL*`) decides where calls go.
        #[arg(long, value_enum, default_value_t = CloudKind::Sim)]
        cloud: CloudKind,
        /// Keep the event log in PostgreSQL (a libpq URL) instead of the embedded SQLite file.
        #[arg(long, env = "IONROLLER_POSTGRES_URL")]
        postgres: Option<String>,
        /// The PostgreSQL schema for the log's tables (created if missing).
        #[arg(long, default_value = "public")]
        postgres_schema: String,
        /// Address for the API (loopback by default).
        #[arg(long, default_value = DEFAULT_LISTEN)]
        listen: String,
        /// How often each service is observed and reconciled, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// Address for trail's API and dashboard.
        #[arg(long, default_value = "127.0.0.1:7879")]
        trail_listen: String,
    },
    /// Trail: audit rows, newest first; with --follow, then every new one.
    Audit {
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        actor: Option<String>,
        #[arg(long = "type")]
        event_type: Option<String>,
        /// A duration back from now ("1h", "30m", "7d") or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        follow: bool,
    },
    /// Trail: every rollout of a service, with its outcome.
    History {
        service: String,
    },
    /// Trail: what served SERVICE at TIME (RFC 3339, or a duration ago such as "2h").
    At {
        service: String,
        time: String,
    },
    /// Trail: the delivery report (deployments, lead time, failure rate, time to restore).
    Report {
        /// A duration back from now ("7d", "12h") or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        service: Option<String>,
    },
    /// Trail: recompute the audit hash chain against the log.
    Verify,
    /// Service configurations.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Release a version and follow it until it completes (exit 0) or rolls back (exit 1).
    Release {
        service: String,
        version: String,
        #[arg(long)]
        reason: Option<String>,
        /// Release even though a configured alarm is firing (recorded).
        #[arg(long)]
        override_alarms: bool,
        #[command(flatten)]
        follow: FollowArgs,
    },
    /// Release the previous version again (fast while its environment is warm); during a
    /// rollout without --to, send traffic back.
    Rollback {
        service: String,
        #[arg(long = "to")]
        to_version: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        follow: FollowArgs,
    },
    /// Hold the rollout where it is.
    Pause {
        service: String,
        #[arg(long)]
        reason: Option<String>,
    },
    Resume {
        service: String,
    },
    /// End the current wait: canary, test endpoint or pause.
    Promote {
        service: String,
    },
    /// Move traffic back to the previous version.
    Abort {
        service: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Environments, traffic split, and the rollout in progress.
    Status {
        service: String,
    },
    /// Services with a saved config.
    Services,
    /// The service's events; with --follow, keep printing new ones.
    Events {
        service: String,
        #[arg(long)]
        follow: bool,
    },
    /// The steps, pauses and worst-case duration a release would take.
    Plan {
        service: String,
        version: String,
    },
    /// Drive the simulated cloud (demos and what-ifs).
    #[command(subcommand)]
    Sim(SimCommand),
}

#[derive(Args)]
struct FollowArgs {
    /// Return once the request is accepted instead of following progress.
    #[arg(long)]
    no_follow: bool,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a commented template to start from.
    Init {
        service: String,
    },
    /// Save FILE as the service's next config version (JSON with comments and trailing commas).
    Set {
        service: String,
        file: PathBuf,
    },
    Get {
        service: String,
    },
    History {
        service: String,
    },
}

#[derive(Subcommand)]
enum SimCommand {
    /// Set a CloudWatch alarm's state: ALARM, OK or INSUFFICIENT_DATA.
    Alarm {
        name: String,
        state: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        value: Option<f64>,
    },
    /// Make environments of SERVICE at VERSION turn Red.
    FailEnv { service: String, version: String },
    /// Terminate an environment behind the roller's back (drift).
    TerminateEnv { environment: String },
    /// Deregister an instance behind the roller's back (drift).
    Deregister { instance: String },
}

pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let client = Client::new(&cli.server, "the roller")?;
    let trail = Client::new(&cli.trail, "trail")?;
    match cli.command {
        Command::Up {
            data_dir,
            cloud,
            postgres,
            postgres_schema,
            listen,
            interval_ms,
            trail_listen,
        } => {
            let store = match postgres {
                Some(url) => StoreChoice::Postgres {
                    url,
                    schema: postgres_schema,
                },
                None => StoreChoice::Embedded,
            };
            up(
                data_dir,
                store,
                cloud,
                &listen,
                &trail_listen,
                Duration::from_millis(interval_ms),
            )
            .await?;
            Ok(0)
        }
        Command::Audit {
            service,
            actor,
            event_type,
            since,
            limit,
            follow,
        } => {
            let mut query = vec![("limit".to_string(), limit.to_string())];
            for (k, v) in [("service", service), ("actor", actor), ("type", event_type)] {
                if let Some(v) = v {
                    query.push((k.into(), v));
                }
            }
            if let Some(since) = since {
                query.push(("from".into(), time_arg(&since, chrono::Utc::now())?));
            }
            let page = trail
                .get(&format!("/v1/audit?{}", encode_query(&query)))
                .await?;
            let mut rows: Vec<Value> = page["rows"].as_array().cloned().unwrap_or_default();
            rows.reverse();
            for row in &rows {
                println!("{}", audit_line(row));
            }
            if follow {
                follow_feed(&trail, rows.last().and_then(|r| r["seq"].as_u64())).await?;
            }
            Ok(0)
        }
        Command::History { service } => {
            let answer = trail
                .get(&format!("/v1/services/{service}/releases"))
                .await?;
            for r in answer["releases"].as_array().into_iter().flatten() {
                println!(
                    "{}  {:<8} {} -> {:<10} by {:<24} {:<12} {}",
                    r["requested_at"]
                        .as_str()
                        .unwrap_or("?")
                        .get(..19)
                        .unwrap_or("?"),
                    r["kind"].as_str().unwrap_or("?"),
                    r["from_version"].as_str().unwrap_or("-"),
                    r["to_version"].as_str().unwrap_or("?"),
                    r["requested_by"].as_str().unwrap_or("?"),
                    r["outcome"]["outcome"].as_str().unwrap_or("in progress"),
                    r["outcome"]["cause"]["kind"].as_str().unwrap_or("")
                );
            }
            Ok(0)
        }
        Command::At { service, time } => {
            let at = time_arg(&time, chrono::Utc::now())?;
            let query = encode_query(&[("time".into(), at.clone())]);
            let answer = trail
                .get(&format!("/v1/services/{service}/at?{query}"))
                .await?;
            println!("{service} at {at}:");
            match answer["traffic"].as_array() {
                None => println!("  nothing was serving"),
                Some(shares) => {
                    for s in shares {
                        println!(
                            "  {:>3.0}% {} (environment {}, config v{})",
                            s["share"].as_f64().unwrap_or(0.0) * 100.0,
                            s["version"].as_str().unwrap_or("?"),
                            s["environment"].as_str().unwrap_or("?"),
                            s["config_version"]
                        );
                    }
                }
            }
            if let Some(r) = answer["rollout_in_progress"].as_object() {
                println!(
                    "  rollout in progress: {} requested by {}",
                    r["to_version"].as_str().unwrap_or("?"),
                    r["requested_by"].as_str().unwrap_or("?")
                );
            }
            Ok(0)
        }
        Command::Report { since, service } => {
            let mut query = Vec::new();
            if let Some(since) = since {
                query.push(("from".to_string(), time_arg(&since, chrono::Utc::now())?));
            }
            if let Some(s) = service {
                query.push(("service".to_string(), s));
            }
            let r = trail
                .get(&format!("/v1/reports/delivery?{}", encode_query(&query)))
                .await?;
            let o = &r["overall"];
            let num = |v: &Value, scale: f64, unit: &str| {
                v.as_f64()
                    .map_or("-".to_string(), |x| format!("{:.1}{unit}", x * scale))
            };
            println!("deployments:          {}", o["deployments"]);
            println!("failures:             {}", o["failures"]);
            println!(
                "change-failure rate:  {}",
                num(&o["change_failure_rate"], 100.0, "%")
            );
            println!(
                "lead time (mean):     {}",
                num(&o["lead_time_mean_secs"], 1.0, "s")
            );
            println!(
                "lead time (median):   {}",
                num(&o["lead_time_median_secs"], 1.0, "s")
            );
            println!(
                "time to restore:      {}",
                num(&o["time_to_restore_mean_secs"], 1.0, "s")
            );
            for (day, f) in r["per_day"].as_object().into_iter().flatten() {
                println!(
                    "  {day}: {} deployed, {} failed",
                    f["deployments"], f["failures"]
                );
            }
            Ok(0)
        }
        Command::Verify => {
            let answer = trail.get("/v1/verify").await?;
            if answer["ok"].as_bool() == Some(true) {
                println!("ok: {} audit rows match the log", answer["rows"]);
                Ok(0)
            } else {
                println!("MISMATCH: {}", answer["message"].as_str().unwrap_or("?"));
                Ok(1)
            }
        }
        Command::Config(c) => config(&client, c).await,
        Command::Release {
            service,
            version,
            reason,
            override_alarms,
            follow,
        } => {
            let accepted = client
                .post(&format!("/v1/services/{service}/releases"), &json!({ "version": version, "reason": reason, "override_alarms": override_alarms }))
                .await?;
            let id = accepted["rollout_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            println!("Releasing {service} {version} (rollout {id})");
            if follow.no_follow {
                return Ok(0);
            }
            follow_rollout(&client, &service, &id).await
        }
        Command::Rollback {
            service,
            to_version,
            reason,
            follow,
        } => {
            let accepted = client
                .post(
                    &format!("/v1/services/{service}/rollback"),
                    &json!({ "to_version": to_version, "reason": reason }),
                )
                .await?;
            let id = accepted["rollout_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            match accepted["action"].as_str() {
                Some("abort") => println!("Rolling back the rollout in progress of {service}: traffic returns to the previous version"),
                _ => println!("Rolling {service} back to {} (rollout {id})", accepted["version"].as_str().unwrap_or("?")),
            }
            if follow.no_follow {
                return Ok(0);
            }
            follow_rollout(&client, &service, &id).await
        }
        Command::Pause { service, reason } => {
            simple(&client, &service, "pause", json!({ "reason": reason })).await
        }
        Command::Resume { service } => simple(&client, &service, "resume", json!({})).await,
        Command::Promote { service } => simple(&client, &service, "promote", json!({})).await,
        Command::Abort { service, reason } => {
            simple(&client, &service, "abort", json!({ "reason": reason })).await
        }
        Command::Status { service } => {
            let status: ServiceStatus =
                serde_json::from_value(client.get(&format!("/v1/services/{service}")).await?)?;
            print!("{}", render_status(&status));
            Ok(0)
        }
        Command::Services => {
            let list = client.get("/v1/services").await?;
            for name in list["services"].as_array().into_iter().flatten() {
                println!("{}", name.as_str().unwrap_or_default());
            }
            Ok(0)
        }
        Command::Events { service, follow } => events(&client, &service, follow).await,
        Command::Plan { service, version } => {
            let plan = client
                .get(&format!("/v1/services/{service}/plan?version={version}"))
                .await?;
            print!("{}", render_plan(&plan));
            Ok(0)
        }
        Command::Sim(s) => {
            let answer = match s {
                SimCommand::Alarm {
                    name,
                    state,
                    reason,
                    value,
                } => client
                    .post(
                        &format!("/v1/sim/alarms/{name}"),
                        &json!({ "state": state.to_uppercase(), "reason": reason, "value": value }),
                    )
                    .await?,
                SimCommand::FailEnv { service, version } => {
                    client
                        .post(
                            "/v1/sim/fail-env",
                            &json!({ "service": service, "version": version }),
                        )
                        .await?
                }
                SimCommand::TerminateEnv { environment } => {
                    client
                        .post(
                            "/v1/sim/terminate-env",
                            &json!({ "environment": environment }),
                        )
                        .await?
                }
                SimCommand::Deregister { instance } => {
                    client
                        .post("/v1/sim/deregister", &json!({ "instance": instance }))
                        .await?
                }
            };
            println!("{answer}");
            Ok(0)
        }
    }
}

/// Runs the roller and its API until Ctrl-C (or SIGTERM).
/// Where `up` keeps the event log.
pub enum StoreChoice {
    /// `events.sqlite` in the data directory.
    Embedded,
    Postgres {
        url: String,
        schema: String,
    },
}

pub async fn up(
    data_dir: PathBuf,
    store: StoreChoice,
    cloud: CloudKind,
    listen: &str,
    trail_listen: &str,
    interval: Duration,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    let store: Arc<dyn EventStore> = match store {
        StoreChoice::Embedded => Arc::new(
            SqliteStore::open(data_dir.join("events.sqlite"), SqliteOptions::default())
                .context("open the embedded event store")?,
        ),
        StoreChoice::Postgres { url, schema } => Arc::new(
            PgStore::open(PgOptions::new(url).schema(schema))
                .await
                .context("open the PostgreSQL event store")?,
        ),
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (driver, cloud_line) = match cloud {
        CloudKind::Sim => {
            let sim = SimCloud::open(data_dir.join("sim-cloud.json"), clock.clone())
                .context("open the simulated cloud")?;
            let line = format!("simulated ({})", sim.path().display());
            (CloudDriver::Simulated(sim), line)
        }
        CloudKind::Aws => {
            let aws = ionroller_aws::AwsCloud::from_env().await;
            let region = aws.default_region().unwrap_or_else(|| "none set".into());
            let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "AWS".into());
            let line = format!("AWS (default region {region}, endpoint {endpoint})");
            (CloudDriver::Real(Arc::new(aws)), line)
        }
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listen on {listen}"))?;
    let addr = listener.local_addr().context("read the bound address")?;
    let trail_listener = tokio::net::TcpListener::bind(trail_listen)
        .await
        .with_context(|| format!("listen on {trail_listen} for trail"))?;
    let trail_addr = trail_listener
        .local_addr()
        .context("read trail's bound address")?;
    let trail_db = ionroller_trail::db::TrailDb::open(data_dir.join("trail.sqlite"))
        .context("open trail's projection")?;
    println!("ionroller is up");
    println!("  API:          http://{addr}/v1   (OpenAPI: http://{addr}/v1/openapi.json)");
    println!("  trail:        http://{trail_addr}/   (dashboard; API under /v1)");
    println!("  event store:  {}", store.describe());
    println!("  cloud:        {cloud_line}");
    println!("  try:          ionroller config set hello examples/hello.json && ionroller release hello v1");
    let _ = std::io::stdout().flush();

    // One signal stops both services; each finishes what it is doing first.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let trail_task = tokio::spawn(ionroller_trail::serve(
        store.clone(),
        trail_db,
        trail_listener,
        stopped(stop_rx.clone()),
    ));
    let roller_task = tokio::spawn(ionroller_roller::serve(
        RollerConfig { interval, clock },
        store,
        driver,
        listener,
        stopped(stop_rx),
    ));
    shutdown_signal().await;
    println!("ionroller: stopping");
    let _ = stop_tx.send(true);
    match trail_task.await {
        Ok(Err(e)) => eprintln!("ionroller: trail stopped: {e:#}"),
        Err(e) => eprintln!("ionroller: trail task: {e}"),
        Ok(Ok(())) => {}
    }
    roller_task
        .await
        .context("join the roller")?
        .context("serve the roller's API")?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

struct Client {
    base: String,
    /// "the roller" or "trail": named when the server cannot be reached.
    name: &'static str,
    http: reqwest::Client,
    actor: String,
}

impl Client {
    fn new(base: &str, name: &'static str) -> anyhow::Result<Self> {
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            name,
            http: reqwest::Client::builder()
                .build()
                .context("build the HTTP client")?,
            actor: whoami(),
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .header(ACTOR_HEADER, &self.actor)
            .send()
            .await
            .with_context(|| format!("reach the roller at {} (is `ionroller up` running? set --server or IONROLLER_URL)", self.base))?;
        let status = response.status();
        let text = response.text().await.context("read the roller's answer")?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let message = body["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| body.to_string());
            let mut out = format!("{status}: {message}");
            for p in body["problems"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "\n  - {}: {}",
                    p["field"].as_str().unwrap_or("?"),
                    p["problem"].as_str().unwrap_or("?")
                ));
            }
            bail!(out);
        }
        Ok(body)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    async fn put_text(&self, path: &str, body: String) -> anyhow::Result<Value> {
        self.send(
            self.http
                .put(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    /// The server-sent events at `path`, resuming after `last_event_id` when given.
    async fn events(
        &self,
        path: &str,
        last_event_id: Option<String>,
    ) -> anyhow::Result<impl futures::Stream<Item = Result<Sse, sse_stream::Error>>> {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("reach {} at {}", self.name, self.base))?;
        if !response.status().is_success() {
            bail!(
                "{}: {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
        // Blocks without data (a bare `retry:` or `id:`) carry nothing to show.
        Ok(SseByteStream::new(response.bytes_stream())
            .filter(|e| std::future::ready(!matches!(e, Ok(sse) if sse.data.is_none()))))
    }
}

/// Who is issuing commands: `IONROLLER_ACTOR`, else git's user.email, else $USER.
fn whoami() -> String {
    if let Ok(actor) = std::env::var("IONROLLER_ACTOR") {
        if !actor.is_empty() {
            return actor;
        }
    }
    let git = std::process::Command::new("git")
        .args(["config", "user.email"])
        .output();
    if let Ok(out) = git {
        let email = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !email.is_empty() {
            return email;
        }
    }
    std::env::var("USER").unwrap_or_else(|_| "anonymous".into())
}

async fn simple(client: &Client, service: &str, what: &str, body: Value) -> anyhow::Result<i32> {
    client
        .post(&format!("/v1/services/{service}/{what}"), &body)
        .await?;
    println!("{what}: accepted for {service}");
    Ok(0)
}

const TEMPLATE: &str = include_str!("../../../examples/template.jsonc");

async fn config(client: &Client, command: ConfigCommand) -> anyhow::Result<i32> {
    match command {
        ConfigCommand::Init { service } => {
            print!("{}", TEMPLATE.replace("SERVICE", &service));
            Ok(0)
        }
        ConfigCommand::Set { service, file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("read {}", file.display()))?;
            // The server takes plain JSON and checks every field itself (unknown ones too).
            let json =
                jsonc::to_json(&text).with_context(|| format!("parse {}", file.display()))?;
            let answer = client
                .put_text(&format!("/v1/services/{service}/config"), json)
                .await?;
            println!(
                "Saved config version {} of {service}",
                answer["config_version"]
            );
            Ok(0)
        }
        ConfigCommand::Get { service } => {
            let answer = client
                .get(&format!("/v1/services/{service}/config"))
                .await?;
            println!("{}", serde_json::to_string_pretty(&answer["config"])?);
            Ok(0)
        }
        ConfigCommand::History { service } => {
            let answer = client
                .get(&format!("/v1/services/{service}/configs"))
                .await?;
            for c in answer["configs"].as_array().into_iter().flatten() {
                println!(
                    "version {}  saved {} by {}",
                    c["config_version"],
                    c["saved_at"].as_str().unwrap_or("?"),
                    c["saved_by"].as_str().unwrap_or("?")
                );
            }
            Ok(0)
        }
    }
}

fn encode_query(pairs: &[(String, String)]) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn audit_line(row: &Value) -> String {
    format!(
        "#{:<6} {} {:<12} {:<24} {:<24} {}",
        row["seq"],
        row["occurred_at"]
            .as_str()
            .unwrap_or("?")
            .get(..19)
            .unwrap_or("?"),
        row["service"].as_str().unwrap_or("-"),
        row["actor"].as_str().unwrap_or("?"),
        row["event_type"].as_str().unwrap_or("?"),
        row["summary"].as_str().unwrap_or("")
    )
}

/// Prints trail's live audit feed from after row `seq` (its SSE id), so that no row is
/// missed or shown twice between the page above and the feed.
async fn follow_feed(trail: &Client, seq: Option<u64>) -> anyhow::Result<()> {
    let mut feed = trail.events("/v1/feed", seq.map(|s| s.to_string())).await?;
    while let Some(event) = feed.next().await {
        let event = event.context("read the feed")?;
        let data = event.data.as_deref().unwrap_or_default();
        let row: Value = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
        println!("{}", audit_line(&row));
    }
    Ok(())
}

/// Polls the service until the rollout ends; prints a line whenever the picture changes.
async fn follow_rollout(client: &Client, service: &str, rollout_id: &str) -> anyhow::Result<i32> {
    let started = Instant::now();
    let mut last_line = String::new();
    loop {
        let status: ServiceStatus =
            serde_json::from_value(client.get(&format!("/v1/services/{service}")).await?)?;
        if let Some(done) = status
            .history
            .iter()
            .find(|h| h.id.to_string() == rollout_id)
        {
            let elapsed = started.elapsed().as_secs();
            return Ok(match done.outcome.as_str() {
                "completed" => {
                    println!(
                        "[{elapsed:>4}s] completed: {} {} serves all traffic",
                        service, done.version
                    );
                    0
                }
                other => {
                    println!(
                        "[{elapsed:>4}s] {}: {}",
                        other.replace('_', " "),
                        done.detail.clone().unwrap_or_default()
                    );
                    1
                }
            });
        }
        let line = progress_line(&status);
        if line != last_line {
            println!("[{:>4}s] {line}", started.elapsed().as_secs());
            last_line = line;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn bar(share: f64, width: usize) -> String {
    let filled = (share * width as f64).round() as usize;
    format!(
        "{}{}",
        "█".repeat(filled.min(width)),
        "░".repeat(width - filled.min(width))
    )
}

/// One line: stage and step, the traffic split as a bar, the new environment's health, and
/// what the rollout waits for.
pub fn progress_line(status: &ServiceStatus) -> String {
    let Some(r) = &status.rollout else {
        return "waiting for the roller to pick up the request".into();
    };
    let new_share = status
        .traffic
        .iter()
        .filter(|t| t.version.as_deref() == Some(r.version.as_str()))
        .fold(0.0, |sum, t| sum + t.share);
    let step = match (r.step, r.step_percent) {
        (Some(s), Some(p)) => format!("step {s}/{} ({p}%)", r.step_count),
        _ => r.stage.replace('_', " "),
    };
    let env = r
        .plan
        .as_ref()
        .and_then(|p| status.environments.iter().find(|e| e.name == p.environment))
        .map(|e| {
            format!(
                "{} {:?} {}/{}",
                e.name,
                e.health.unwrap_or(ionroller_shared::events::Health::Grey),
                e.healthy_instances,
                e.instances
            )
        })
        .unwrap_or_else(|| "environment pending".into());
    format!(
        "{step:<18} {} {:>3.0}% {} | {} · waiting for {}",
        bar(new_share, 20),
        new_share * 100.0,
        r.version,
        env,
        r.waiting_for
    )
}

pub fn render_status(s: &ServiceStatus) -> String {
    let mut out = format!(
        "{}  config v{}  stable {}\n",
        s.service,
        s.config_version.map_or("-".into(), |v| v.to_string()),
        s.stable_version.clone().unwrap_or_else(|| "none".into())
    );
    out.push_str("traffic:\n");
    if s.traffic.is_empty() {
        out.push_str("  (nothing registered)\n");
    }
    for t in &s.traffic {
        out.push_str(&format!(
            "  {} {:>3.0}% {} ({})\n",
            bar(t.share, 20),
            t.share * 100.0,
            t.version.clone().unwrap_or_default(),
            t.environment
        ));
    }
    out.push_str("environments:\n");
    for e in s.environments.iter().filter(|e| !e.terminated) {
        out.push_str(&format!(
            "  {:<32} {:<10} {}/{} {}/{} healthy{}\n",
            e.name,
            e.version,
            e.status.map_or("unseen".into(), |s| format!("{s:?}")),
            e.health.map_or("-".into(), |h| format!("{h:?}")),
            e.healthy_instances,
            e.instances,
            if e.foreign {
                ", not created by this log: left alone".to_string()
            } else {
                e.unused_since
                    .map(|t| format!(", unused since {}", t.format("%H:%M:%S")))
                    .unwrap_or_default()
            }
        ));
    }
    if let Some(r) = &s.rollout {
        out.push_str(&format!(
            "rollout {} of {}: {} · waiting for {}\n",
            r.id,
            r.version,
            progress_line(s),
            r.waiting_for
        ));
    }
    for a in &s.alarms {
        out.push_str(&format!("alarm {}: {:?} ({})\n", a.name, a.state, a.reason));
    }
    if let Some(h) = s.history.first() {
        out.push_str(&format!(
            "last rollout: {} {} {}\n",
            h.version,
            h.outcome,
            h.detail.clone().unwrap_or_default()
        ));
    }
    out
}

fn render_plan(answer: &Value) -> String {
    let plan = &answer["plan"];
    let mut out = format!(
        "Releasing {} {} (config v{}) into {}{}\n",
        answer["service"].as_str().unwrap_or("?"),
        answer["version"].as_str().unwrap_or("?"),
        answer["config_version"],
        plan["environment"].as_str().unwrap_or("?"),
        if plan["reuses_warm_environment"].as_bool() == Some(true) {
            " (warm: no launch)"
        } else {
            ""
        }
    );
    if plan["test_endpoint"].as_bool() == Some(true) {
        out.push_str("  test endpoint: waits for a promote before any customer traffic\n");
    }
    for (i, s) in plan["steps"].as_array().into_iter().flatten().enumerate() {
        out.push_str(&format!(
            "  {}. {} {}%{}\n",
            i + 1,
            s["label"].as_str().unwrap_or("step"),
            s["percent"],
            match &s["pause"] {
                Value::Null => String::new(),
                p => format!(", then pause {}", p.as_str().unwrap_or("?")),
            }
        ));
    }
    out.push_str(&match plan["worst_case_secs"].as_u64() {
        Some(s) => format!(
            "  worst case: {s}s (each stage up to the {} progress deadline)\n",
            plan["progress_deadline"].as_str().unwrap_or("?")
        ),
        None => "  worst case: open-ended (waits for a person to promote)\n".into(),
    });
    out
}

async fn events(client: &Client, service: &str, follow: bool) -> anyhow::Result<i32> {
    let mut events = client
        .events(&format!("/v1/services/{service}/events"), None)
        .await?;
    while let Some(event) = events.next().await {
        let event = event.context("read the event stream")?;
        if event.event.as_deref() == Some("caught-up") {
            if !follow {
                return Ok(0);
            }
            continue;
        }
        let data = event.data.as_deref().unwrap_or_default();
        let v: Value = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
        println!(
            "{} #{:<4} {:<24} {:<20} {}",
            v["occurred_at"].as_str().unwrap_or("?"),
            v["revision"],
            v["type"].as_str().unwrap_or("?"),
            v["actor"].as_str().unwrap_or("?"),
            v["data"]
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_template_is_valid_and_ready_for_aws() {
        let json = jsonc::to_json(&TEMPLATE.replace("SERVICE", "hello"))
            .unwrap_or_else(|e| panic!("the template does not parse: {e}"));
        let config = ionroller_shared::config::parse_service_config(&json)
            .unwrap_or_else(|e| panic!("the template is not a valid config: {e:?}"));
        let problems = ionroller_aws::spec::check_config(&config);
        assert!(problems.is_empty(), "{problems:?}");
    }
}
