//! `trail`: the audit and reporting service, on its own. (`ionroller up` runs it too.)

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ionroller_shared::store::EventStore;
use ionroller_store_kurrentdb::{KurrentOptions, KurrentStore};
use ionroller_store_postgres::{PgOptions, PgStore};
use ionroller_store_sqlite::{SqliteOptions, SqliteStore};
use ionroller_trail::checkpoints::{self, CheckpointSink, DirSink};
use ionroller_trail::verify::{Anchor, TrustedKey};

#[derive(Parser)]
#[command(
    name = "trail",
    version,
    about = "Audit and delivery reports over ionroller's event log"
)]
struct Cli {
    /// The embedded event log to read.
    #[arg(long, global = true, default_value = ".ionroller/events.sqlite")]
    events: PathBuf,
    /// Read a PostgreSQL event log instead.
    #[arg(
        long,
        global = true,
        env = "IONROLLER_POSTGRES_URL",
        hide_env_values = true
    )]
    postgres: Option<String>,
    /// Read a KurrentDB event log instead (`kurrentdb://...` or `kurrentdb+discover://...`,
    /// as `ionroller up --kurrentdb` takes it; the user must be allowed to read `$all`).
    #[arg(
        long,
        global = true,
        env = "IONROLLER_KURRENTDB_CONNECTION_STRING",
        hide_env_values = true,
        conflicts_with = "postgres"
    )]
    kurrentdb: Option<String>,
    /// With --kurrentdb, the stream prefix `ionroller up --kurrentdb-namespace` was given.
    #[arg(
        long,
        global = true,
        env = "IONROLLER_KURRENTDB_NAMESPACE",
        default_value = ""
    )]
    kurrentdb_namespace: String,
    /// Trail's own projection file.
    #[arg(long, global = true, default_value = ".ionroller/trail.sqlite")]
    db: PathBuf,
    /// Keep the projection in PostgreSQL instead (schema `--projection-schema`).
    #[arg(
        long,
        global = true,
        env = "TRAIL_PROJECTION_POSTGRES_URL",
        hide_env_values = true
    )]
    projection_postgres: Option<String>,
    #[arg(long, global = true, default_value = "trail")]
    projection_schema: String,
    /// Publish signed chain checkpoints to this directory (default: `checkpoints` beside
    /// `--db`).
    #[arg(long, global = true)]
    publish_dir: Option<PathBuf>,
    /// Trail's Ed25519 signing key (default: `trail-signing-key` beside `--db`, created
    /// with mode 0600 on first start).
    #[arg(long, global = true)]
    signing_key: Option<PathBuf>,
    /// `verify`: check checkpoint signatures with this public key (a `public-key.json` as
    /// trail publishes it), rather than trail's own key or the one published beside them.
    #[arg(long, global = true)]
    public_key: Option<PathBuf>,
    /// Publish a checkpoint at least every this many audit rows.
    #[arg(long, global = true, default_value_t = ionroller_trail::checkpoints::publisher::DEFAULT_EVERY)]
    checkpoint_every: u64,
    /// ... and whatever rows are waiting once this long has passed since the last one.
    #[arg(long, global = true, default_value = "60s", value_parser = humantime::parse_duration)]
    checkpoint_interval: std::time::Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Project the log and serve the API and dashboard.
    Serve {
        #[arg(long, default_value = "127.0.0.1:7879")]
        listen: String,
        /// Also accept bearer JWTs from the OpenID Connect issuers this JSON file names (the
        /// same file as `ionroller up --oidc`). Tokens are read from the log either way.
        #[arg(long)]
        oidc: Option<std::path::PathBuf>,
        /// Serve `/metrics` without credentials.
        #[arg(long)]
        public_metrics: bool,
        /// PEM certificate chain: serve TLS (with --tls-key).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<std::path::PathBuf>,
        /// PEM private key of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<std::path::PathBuf>,
        /// Allow plain HTTP on an address other machines can reach (a TLS-terminating load
        /// balancer stands in front).
        #[arg(long, conflicts_with = "tls_cert")]
        insecure_http: bool,
        /// The roller's URL, whose `/` serves its console: the dashboard links to it.
        #[arg(long, value_parser = ionroller_trail::api::parse_console_url)]
        console_url: Option<String>,
    },
    /// Replay the log from position zero into a fresh projection and switch over.
    Rebuild,
    /// Check the projection against the log and the log against the published signed
    /// checkpoints; exit 1 naming the first position that differs.
    Verify,
}

async fn open_store(cli: &Cli) -> anyhow::Result<Arc<dyn EventStore>> {
    if let Some(url) = &cli.kurrentdb {
        return Ok(Arc::new(
            KurrentStore::open(KurrentOptions::new(url).namespace(&cli.kurrentdb_namespace))
                .await
                .context("open the KurrentDB log")?,
        ));
    }
    Ok(match &cli.postgres {
        Some(url) => Arc::new(
            PgStore::open(PgOptions::new(url))
                .await
                .context("open the PostgreSQL log")?,
        ),
        None => Arc::new(
            SqliteStore::open(&cli.events, SqliteOptions::default())
                .context("open the event log")?,
        ),
    })
}

async fn open_db(cli: &Cli) -> anyhow::Result<ionroller_trail::db::TrailDb> {
    use ionroller_trail::db::TrailDb;
    match &cli.projection_postgres {
        Some(url) => TrailDb::open_postgres(url, &cli.projection_schema)
            .await
            .context("open the PostgreSQL projection"),
        None => TrailDb::open(&cli.db).with_context(|| format!("open {}", cli.db.display())),
    }
}

/// The directory `--db` is in: trail's data directory, where its key and checkpoints go by
/// default.
fn data_dir(cli: &Cli) -> PathBuf {
    cli.db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from)
}

fn key_path(cli: &Cli) -> PathBuf {
    cli.signing_key
        .clone()
        .unwrap_or_else(|| data_dir(cli).join(checkpoints::publisher::KEY_FILE))
}

fn sink(cli: &Cli) -> anyhow::Result<Arc<dyn CheckpointSink>> {
    let dir = cli
        .publish_dir
        .clone()
        .unwrap_or_else(|| data_dir(cli).join(checkpoints::publisher::CHECKPOINT_DIR));
    let sink = DirSink::open(&dir).with_context(|| format!("open {}", dir.display()))?;
    Ok(Arc::new(sink))
}

fn anchoring(cli: &Cli) -> anyhow::Result<checkpoints::Anchoring> {
    let path = key_path(cli);
    let key = checkpoints::key::load_or_create(&path)
        .with_context(|| format!("load the signing key {}", path.display()))?;
    let mut anchoring = checkpoints::Anchoring::new(key, vec![sink(cli)?]);
    anchoring.every = cli.checkpoint_every.max(1);
    anchoring.interval = cli.checkpoint_interval;
    Ok(anchoring)
}

/// The sinks `verify` reads, with the key to trust: `--public-key`, else trail's own key,
/// else whatever key the sink publishes (said so in the output).
fn anchors(cli: &Cli) -> anyhow::Result<Vec<Anchor>> {
    let key = match &cli.public_key {
        Some(path) => {
            let text = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
            let file: checkpoints::key::PublicKeyFile = serde_json::from_slice(&text)
                .with_context(|| format!("{} is not a public key file", path.display()))?;
            TrustedKey::Pinned(
                file.key()
                    .with_context(|| format!("{} is not an Ed25519 key", path.display()))?,
            )
        }
        None => match checkpoints::key::load_existing(&key_path(cli))? {
            Some(key) => TrustedKey::Own(key.verifying_key()),
            None => TrustedKey::Published,
        },
    };
    Ok(vec![Anchor {
        sink: sink(cli)?,
        key,
    }])
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let store = open_store(&cli).await?;
    match &cli.command {
        Command::Serve {
            listen,
            oidc,
            public_metrics,
            tls_cert,
            tls_key,
            insecure_http,
            console_url,
        } => {
            use ionroller_auth::tls::{check_plain_allowed, server_config, ServerListener};
            let tcp = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listen on {listen}"))?;
            let listener = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => ServerListener::tls(tcp, server_config(cert, key)?)?,
                _ => {
                    check_plain_allowed(tcp.local_addr()?, *insecure_http)?;
                    ServerListener::plain(tcp)?
                }
            };
            println!(
                "trail is up: {}://{}/ (reading {})",
                listener.scheme(),
                listener.local_addr()?,
                store.describe()
            );
            let db = open_db(&cli).await?;
            println!("trail projection: {}", db.describe());
            let auth = ionroller_auth::Authenticator::for_service(store.clone(), oidc.as_deref())?;
            let access = ionroller_trail::Access {
                auth: std::sync::Arc::new(auth),
                public_metrics: *public_metrics,
            };
            let anchoring = anchoring(&cli)?;
            for sink in &anchoring.sinks {
                println!(
                    "trail checkpoints: signed, published to {}",
                    sink.describe()
                );
            }
            let page = ionroller_trail::api::Page {
                console_url: console_url.clone(),
            };
            ionroller_trail::serve(store, db, Some(anchoring), listener, access, page, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
        }
        Command::Rebuild => {
            let db = open_db(&cli).await?;
            let rows = ionroller_trail::rebuild::rebuild(store.as_ref(), &*db).await?;
            println!("rebuilt {rows} audit rows into {}", db.describe());
            Ok(())
        }
        Command::Verify => {
            let db = open_db(&cli).await?;
            let anchors = anchors(&cli)?;
            let report = ionroller_trail::verify::verify(store.as_ref(), &*db, &anchors)
                .await
                .context("verify")?;
            for finding in &report.findings {
                println!("MISMATCH: {finding}");
            }
            if !report.ok() {
                std::process::exit(1);
            }
            if report.nothing_checked() {
                println!("NOTHING CHECKED: the projection holds no audit rows and no checkpoints are published (run `trail rebuild`, or check --db and --publish-dir)");
                std::process::exit(1);
            }
            println!("ok: {}", report.summary());
            Ok(())
        }
    }
}
