//! `ionroller`: the command-line entry point. See `ionroller --help`.
//!
//! Exit codes (`exit.rs`, README's "Exit codes"): 0 done or completed, 1 rolled back, 2 usage,
//! 3 refused by the server, 4 superseded or aborted, 5 timed out, 6 unreachable, 130
//! interrupted; the reason printed once on stderr. 0 when the reader of standard output went
//! away (see `output`).

use std::io::Write;

use clap::Parser;

mod args;
mod client;
mod commands;
mod credentials;
mod data_dir_lock;
mod exit;
mod jsonc;
mod output;
mod render;
mod render_trail;
mod time_args;
mod up;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,ionroller_roller=info".into()),
        )
        .init();
    let cli = args::Cli::parse();
    let code = match commands::run(cli).await {
        Ok(code) => code,
        Err(e) if e.is::<output::StdoutClosed>() => 0,
        Err(e) => {
            // Best effort: with stderr closed too there is no one left to tell.
            let _ = writeln!(std::io::stderr().lock(), "ionroller: {e:#}");
            exit::code_of(&e)
        }
    };
    std::process::exit(code);
}
