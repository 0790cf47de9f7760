//! `ionroller`: the command-line entry point. See `ionroller --help`.

use clap::Parser;

mod cli;
mod jsonc;
mod time_args;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,ionroller_roller=info".into()),
        )
        .init();
    let cli = cli::Cli::parse();
    match cli::run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("ionroller: {e:#}");
            std::process::exit(2);
        }
    }
}
