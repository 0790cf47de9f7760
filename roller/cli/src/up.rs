//! `ionroller up`: one process with the event store, a cloud (simulated or AWS), the roller
//! (`ionroller_roller::serve`) and trail (`ionroller_trail::serve`), stopped together by one
//! signal. This is the only place that knows the concrete stores and clouds.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ionroller_roller::clock::{Clock, SystemClock};
use ionroller_roller::cloud::sim::SimCloud;
use ionroller_roller::{CloudDriver, ReplicaConfig, RollerConfig};
use ionroller_shared::store::EventStore;
use ionroller_store_kurrentdb::{KurrentOptions, KurrentStore};
use ionroller_store_postgres::{PgOptions, PgStore};
use ionroller_store_sqlite::{SqliteOptions, SqliteStore};

use crate::args::CloudKind;
use crate::credentials::ADMIN_TOKEN_FILE;

/// Who may call the services `up` starts, beyond the tokens in the log, and how.
pub struct Access {
    /// OIDC issuers and group rules (a JSON file).
    pub oidc: Option<PathBuf>,
    pub public_metrics: bool,
    /// PEM certificate chain and private key: both listeners speak TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Plain HTTP off loopback, because a TLS-terminating proxy stands in front.
    pub insecure_http: bool,
}

/// The address `up` listens on when no `--listen` says: the one the CLI's URL names
/// (`IONROLLER_URL`, or `IONROLLER_TRAIL_URL` for trail), so one setting serves both.
pub fn address_of(url: &str) -> anyhow::Result<String> {
    let parsed = url::Url::parse(url).with_context(|| {
        format!("{url:?} is not a URL to listen at; give --listen HOST:PORT instead")
    })?;
    let port = parsed
        .port_or_known_default()
        .with_context(|| format!("{url} names no port; give --listen HOST:PORT instead"))?;
    match parsed.host() {
        Some(url::Host::Ipv6(ip)) => Ok(format!("[{ip}]:{port}")),
        Some(host) => Ok(format!("{host}:{port}")),
        None => anyhow::bail!("{url} names no host; give --listen HOST:PORT instead"),
    }
}

/// Binds `address` and wraps it in TLS when configured; plain HTTP off loopback is refused
/// unless acknowledged.
async fn listen(
    address: &str,
    what: &str,
    access: &Access,
) -> anyhow::Result<ionroller_auth::tls::ServerListener> {
    use ionroller_auth::tls::{check_plain_allowed, server_config, ServerListener};
    let tcp = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| {
            format!(
                "listen on {address} for {what} (--listen and --trail-listen choose; without them \
             the addresses of IONROLLER_URL and IONROLLER_TRAIL_URL)"
            )
        })?;
    let bound = tcp.local_addr().context("read the bound address")?;
    Ok(match &access.tls {
        Some((cert, key)) => ServerListener::tls(tcp, server_config(cert, key)?)?,
        None => {
            check_plain_allowed(bound, access.insecure_http)?;
            ServerListener::plain(tcp)?
        }
    })
}

/// How the roller's loop runs, and whom it tells.
pub struct Reconcile {
    /// Between passes (a recorded command starts one at once).
    pub interval: Duration,
    /// Services reconciled at once.
    pub workers: usize,
    /// The endpoints of `--notifications FILE` (read and checked before `up` starts).
    pub notifications: Vec<ionroller_roller::notify::Endpoint>,
}

/// Where `up` keeps the event log.
pub enum StoreChoice {
    /// `events.sqlite` in the data directory.
    Embedded,
    /// Shared by replicas: each `up` on the same database takes a share of the services.
    Postgres {
        url: String,
        schema: String,
        replica: Replication,
    },
    /// A KurrentDB node or cluster, shared by replicas as PostgreSQL is (the lease table is a
    /// stream there; see `ionroller_store_kurrentdb`'s `leases.rs` for what that changes).
    Kurrent {
        url: String,
        namespace: String,
        replica: Replication,
    },
}

/// Where trail runs.
pub enum TrailChoice {
    /// In this process, on its own listener, stopped with the roller.
    InProcess { listen: String },
    /// As a service of its own (`trail serve` on the same log), at this URL.
    External { url: String },
}

/// This process as one replica among several on a shared log.
pub struct Replication {
    pub id: String,
    pub lease_ttl: Duration,
}

/// Host name, process id and a random suffix: unique even for two containers that both run
/// as pid 1 on hosts of one name.
pub fn default_replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "roller".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &suffix[..6])
}

/// Which cloud `up` drives, and for the simulator, which file holds it.
pub struct CloudChoice {
    pub kind: CloudKind,
    pub sim_file: Option<PathBuf>,
    /// The AWS driver's client-side rate limit per API and account-region.
    pub aws_calls_per_second: u32,
}

/// Runs the roller and its API until Ctrl-C (or SIGTERM).
pub async fn up(
    data_dir: PathBuf,
    store: StoreChoice,
    cloud: CloudChoice,
    listen: &str,
    trail: TrailChoice,
    reconcile: Reconcile,
    access: Access,
) -> anyhow::Result<()> {
    // Listeners first: a refused address (plain HTTP off loopback, a port in use) must stop
    // `up` before it writes anything, such as a first admin token.
    let listener = self::listen(listen, "the roller", &access).await?;
    let addr = listener.local_addr().context("read the bound address")?;
    let scheme = listener.scheme();
    let (trail_listener, trail_url) = match &trail {
        TrailChoice::InProcess { listen } => {
            let trail_listener = self::listen(listen, "trail", &access).await?;
            let trail_addr = trail_listener
                .local_addr()
                .context("read trail's bound address")?;
            (Some(trail_listener), format!("{scheme}://{trail_addr}"))
        }
        TrailChoice::External { url } => (None, url.trim_end_matches('/').to_string()),
    };
    std::fs::create_dir_all(&data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    // Before anything in the data dir is opened; held until `up` returns.
    let _data_dir_lock = crate::data_dir_lock::lock(&data_dir)?;
    let (store, replica): (Arc<dyn EventStore>, _) = match store {
        StoreChoice::Embedded => (
            Arc::new(
                SqliteStore::open(data_dir.join("events.sqlite"), SqliteOptions::default())
                    .context("open the embedded event store")?,
            ),
            None,
        ),
        StoreChoice::Postgres {
            url,
            schema,
            replica,
        } => {
            let pg = Arc::new(
                PgStore::open(PgOptions::new(url).schema(schema))
                    .await
                    .context("open the PostgreSQL event store")?,
            );
            let replica = ReplicaConfig {
                leases: pg.clone(),
                holder: replica.id,
                ttl: replica.lease_ttl,
            };
            (pg, Some(replica))
        }
        StoreChoice::Kurrent {
            url,
            namespace,
            replica,
        } => {
            let kurrent = Arc::new(
                KurrentStore::open(KurrentOptions::new(url).namespace(namespace))
                    .await
                    .context("open the KurrentDB event store")?,
            );
            let replica = ReplicaConfig {
                leases: kurrent.clone(),
                holder: replica.id,
                ttl: replica.lease_ttl,
            };
            (kurrent, Some(replica))
        }
    };
    let replica_line = match &replica {
        Some(r) => format!(
            "{} (shares the services with every `up` on this log; leases last {:?})",
            r.holder, r.ttl
        ),
        None => "the only one (the embedded store belongs to this process)".into(),
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let auth = Arc::new(ionroller_auth::Authenticator::for_service(
        store.clone(),
        access.oidc.as_deref(),
    )?);
    let admin_token_line = bootstrap_admin_token(&auth, &data_dir, clock.now()).await?;
    let metrics = Arc::new(ionroller_roller::metrics::Metrics::default());
    let (driver, cloud_line) = match cloud.kind {
        CloudKind::Sim => {
            let file = cloud
                .sim_file
                .unwrap_or_else(|| data_dir.join("sim-cloud.json"));
            // The call record names the replica that executed each action.
            let caller = replica.as_ref().map_or("roller", |r| r.holder.as_str());
            let sim = SimCloud::open(file, clock.clone())
                .context("open the simulated cloud")?
                .with_caller(caller);
            let line = match sim.path() {
                Some(path) => format!("simulated ({})", path.display()),
                None => "simulated (in memory)".into(),
            };
            (CloudDriver::Simulated(sim), line)
        }
        CloudKind::Aws => {
            let per_second = std::num::NonZeroU32::new(cloud.aws_calls_per_second)
                .context("--aws-calls-per-second must be at least 1")?;
            // A pass's observations share reads of their account-region; a read at most half
            // an interval old means every pass starts from a fresh one.
            let window = ionroller_aws::DEFAULT_OBSERVATION_WINDOW.min(reconcile.interval / 2);
            let aws = ionroller_aws::AwsCloud::from_env()
                .await
                .with_calls_per_second(per_second)
                .with_observation_window(window)
                .with_recorder(metrics.clone());
            let region = aws.default_region().unwrap_or_else(|| "none set".into());
            let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "AWS".into());
            let line = format!("AWS (default region {region}, endpoint {endpoint})");
            (CloudDriver::Real(Arc::new(aws)), line)
        }
    };
    say(&format!(
        "ionroller is up\n\
         \x20 console:      {scheme}://{addr}/   (`ionroller console` prints a signed-in link)\n\
         \x20 API:          {scheme}://{addr}/v1   (OpenAPI: {scheme}://{addr}/v1/openapi.json)\n\
         \x20 trail:        {trail_url}/   ({})\n\
         \x20 event store:  {}\n\
         \x20 cloud:        {cloud_line}\n\
         \x20 replica:      {replica_line}\n\
         \x20 notifies:     {}\n\
         \x20 admin token:  {admin_token_line}\n\
         \x20 try:          {}\n",
        match trail {
            TrailChoice::InProcess { .. } => "dashboard; API under /v1",
            TrailChoice::External { .. } => "a service of its own, not started here",
        },
        store.describe(),
        notifies_line(&reconcile.notifications),
        suggestion(cloud.kind),
    ));

    // One signal stops both services; each finishes what it is doing first.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let trail_task = match trail_listener {
        Some(trail_listener) => {
            let trail_db = ionroller_trail::db::TrailDb::open(data_dir.join("trail.sqlite"))
                .context("open trail's projection")?;
            // Trail signs its chain checkpoints with a key kept in the data dir and publishes
            // them to `checkpoints/` there (ARCHITECTURE.md, "Trail").
            let trail_anchoring = ionroller_trail::checkpoints::Anchoring::beside(&data_dir)
                .context("set up trail's signed checkpoints")?;
            Some(tokio::spawn(ionroller_trail::serve(
                store.clone(),
                trail_db,
                Some(trail_anchoring),
                trail_listener,
                ionroller_trail::Access {
                    auth: auth.clone(),
                    public_metrics: access.public_metrics,
                },
                ionroller_trail::api::Page {
                    console_url: Some(format!("{scheme}://{addr}/")),
                },
                stopped(stop_rx.clone()),
            )))
        }
        None => None,
    };
    let roller_task = tokio::spawn(ionroller_roller::serve(
        RollerConfig {
            interval: reconcile.interval,
            workers: reconcile.workers,
            clock,
            auth,
            public_metrics: access.public_metrics,
            trail_url: Some(trail_url),
            replica,
            metrics,
            notifications: reconcile.notifications,
        },
        store,
        driver,
        listener,
        stopped(stop_rx),
    ));
    shutdown_signal().await;
    say("ionroller: stopping\n");
    let _ = stop_tx.send(true);
    if let Some(task) = trail_task {
        match task.await {
            Ok(Err(e)) => complain(&format!("ionroller: trail stopped: {e:#}")),
            Err(e) => complain(&format!("ionroller: trail task: {e}")),
            Ok(Ok(())) => {}
        }
    }
    roller_task
        .await
        .context("join the roller")?
        .context("serve the roller's API")?;
    Ok(())
}

/// The banner's line about notifications: the endpoints by name, never their URLs.
fn notifies_line(endpoints: &[ionroller_roller::notify::Endpoint]) -> String {
    if endpoints.is_empty() {
        return "nobody (--notifications FILE names webhooks and Slack hooks)".into();
    }
    endpoints
        .iter()
        .map(|e| format!("{} ({:?})", e.name, e.kind).to_lowercase())
        .collect::<Vec<_>>()
        .join(", ")
}

/// On a log with no token yet, creates the admin token and writes it to `admin.token` in the
/// data dir, readable by its owner only; the CLI reads it from there when the server is local.
/// Returns what the banner says about it.
async fn bootstrap_admin_token(
    auth: &ionroller_auth::Authenticator,
    data_dir: &std::path::Path,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<String> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    let created = auth
        .bootstrap_admin(now, |secret| write_owner_only(&path, secret))
        .await
        .map_err(|e| anyhow::anyhow!("create the first admin token: {e}"))?;
    Ok(if created {
        format!(
            "created, in {} (readable by you only; the CLI finds it there)",
            path.display()
        )
    } else if path.exists() {
        format!("{}", path.display())
    } else {
        "the log already has tokens; use yours (`ionroller token list`)".to_string()
    })
}

/// Writes `secret` to `path` with mode 0600, replacing a stale file from an earlier start
/// whose token never reached the log.
fn write_owner_only(path: &std::path::Path, secret: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // `mode` applies only when the file is created; an older file keeps its mode otherwise.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(format!("{secret}\n").as_bytes())?;
    file.sync_all()
}

/// What the banner suggests trying first. On the simulator, the demo config. On AWS, the
/// commented template (`ionroller config init`): it names a Docker solution stack, the instance
/// profile option and a deployment bucket, which the AWS driver requires and examples/hello.json
/// (written for the simulator) lacks.
fn suggestion(cloud: CloudKind) -> &'static str {
    match cloud {
        CloudKind::Sim => {
            "ionroller config set hello examples/hello.json && ionroller release hello v1"
        }
        CloudKind::Aws => {
            "ionroller config init hello > hello.jsonc, set your load balancer and bucket in it, then\n\
             \x20               ionroller config set hello hello.jsonc && ionroller release hello v1"
        }
    }
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

/// Writes `text` to standard output, best effort: a server keeps serving when whoever started
/// it stops reading (`ionroller up | head -3`), so a closed pipe is not an error here.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Writes `text` and a newline to standard error, best effort (`eprintln!` panics on failure).
fn complain(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::config::TEMPLATE;

    #[test]
    fn up_listens_where_the_cli_s_url_points() {
        for (url, address) in [
            ("http://127.0.0.1:7878", "127.0.0.1:7878"),
            ("http://127.0.0.1:9000/", "127.0.0.1:9000"),
            ("https://roller.internal", "roller.internal:443"),
            ("http://localhost", "localhost:80"),
            ("http://[::1]:7878", "[::1]:7878"),
        ] {
            assert_eq!(address_of(url).expect(url), address, "{url}");
        }
        for bad in ["127.0.0.1:7878", "not a url", "unix:/tmp/socket"] {
            let e = address_of(bad).expect_err(bad).to_string();
            assert!(e.contains("--listen"), "{bad}: {e}");
        }
    }

    /// The config `ionroller up --cloud aws` suggests (the template `config init` prints for the
    /// service it names) is one the AWS driver accepts: stack, instance profile and bucket.
    #[test]
    fn the_aws_banner_suggests_a_config_the_aws_driver_accepts() {
        let line = suggestion(CloudKind::Aws);
        let service = line
            .split("config init ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("the banner suggests `ionroller config init SERVICE`");
        assert!(line.contains(&format!("config set {service} ")), "{line}");
        let json = crate::jsonc::to_json(&TEMPLATE.replace("SERVICE", service))
            .unwrap_or_else(|e| panic!("the template does not parse: {e}"));
        let config = ionroller_shared::config::parse_service_config(&json)
            .unwrap_or_else(|e| panic!("the suggested config is not valid: {e:?}"));
        let problems = ionroller_aws::spec::check_config(&config);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            config.aws.solution_stack.as_deref(),
            Some(ionroller_aws::spec::DEFAULT_SOLUTION_STACK),
            "the stack the driver knows to run Docker"
        );
        // The simulator's suggestion stays the demo config, which AWS would refuse.
        assert!(suggestion(CloudKind::Sim).contains("examples/hello.json"));
    }
}
