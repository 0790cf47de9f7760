//! `ionroller`: the command-line entry point.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ionroller_shared::store::{sqlite::SqliteOptions, sqlite::SqliteStore, EventStore};

#[derive(Parser)]
#[command(
    name = "ionroller",
    version,
    about = "Ship Docker-image releases to AWS, gradually and reversibly"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Open the embedded event store and keep the service running until Ctrl-C.
    Up {
        /// Where the embedded store and the simulated cloud keep their files.
        #[arg(long, default_value = ".ionroller")]
        data_dir: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Up { data_dir } => {
            let path = data_dir.join("events.sqlite");
            let store = SqliteStore::open(&path, SqliteOptions::default())
                .with_context(|| format!("open the event store at {}", path.display()))?;
            let head = store.head().await.context("read the event store's head")?;
            println!("ionroller: event store is the {}", store.describe());
            println!(
                "ionroller: {} (press Ctrl-C to stop)",
                head.map_or("the log is empty".to_string(), |p| format!(
                    "last position {p}"
                ))
            );
            tokio::signal::ctrl_c().await.context("wait for Ctrl-C")?;
            Ok(())
        }
    }
}
