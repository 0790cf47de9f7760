//! `trail`: the audit and reporting service, on its own. (`ionroller up` runs it too.)

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ionroller_shared::store::EventStore;
use ionroller_store_postgres::{PgOptions, PgStore};
use ionroller_store_sqlite::{SqliteOptions, SqliteStore};

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
    #[arg(long, global = true, env = "IONROLLER_POSTGRES_URL")]
    postgres: Option<String>,
    /// Trail's own projection file.
    #[arg(long, global = true, default_value = ".ionroller/trail.sqlite")]
    db: PathBuf,
    /// Keep the projection in PostgreSQL instead (schema `--projection-schema`).
    #[arg(long, global = true, env = "TRAIL_PROJECTION_POSTGRES_URL")]
    projection_postgres: Option<String>,
    #[arg(long, global = true, default_value = "trail")]
    projection_schema: String,
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
    },
    /// Replay the log from position zero into a fresh projection and switch over.
    Rebuild,
    /// Recompute the audit hash chain against the log; exit 1 at the first mismatch.
    Verify,
}

async fn open_store(cli: &Cli) -> anyhow::Result<Arc<dyn EventStore>> {
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
        } => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listen on {listen}"))?;
            println!(
                "trail is up: http://{}/ (reading {})",
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
            ionroller_trail::serve(store, db, listener, access, async {
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
            let trail = ionroller_trail::runner::Trail::new(store, db);
            match ionroller_trail::api::verify_chain(&trail).await {
                Ok(Ok(0)) => {
                    println!("NOTHING CHECKED: the projection holds no audit rows (run `trail rebuild`, or check --db)");
                    std::process::exit(1);
                }
                Ok(Ok(rows)) => {
                    println!("ok: {rows} audit rows match the log");
                    Ok(())
                }
                Ok(Err(seq)) => {
                    println!("MISMATCH: audit row {seq} does not match the log (edited, removed or reordered)");
                    std::process::exit(1);
                }
                Err(_) => anyhow::bail!("verify could not read the log or the projection"),
            }
        }
    }
}
