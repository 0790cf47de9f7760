//! The command line's exit codes, one meaning each, so a CI pipeline can branch on them
//! (README, "Exit codes"). Whatever fails without one of these meanings exits [`USAGE`].

/// The command did what was asked; a followed rollout completed.
pub const OK: i32 = 0;
/// A followed rollout was rolled back (an alarm, a failed environment, a missed progress
/// deadline, a refused cloud action); `trail verify` found a mismatch.
pub const ROLLED_BACK: i32 = 1;
/// The command line was wrong (clap's own code for a parse error), or something on this side
/// failed: a file that cannot be read, an answer that cannot be understood.
pub const USAGE: i32 = 2;
/// The server refused the request (any 4xx: bad input, not allowed, not found, a conflict
/// such as alarms firing or a rollout in progress).
pub const REFUSED: i32 = 3;
/// A followed rollout was superseded by a newer release, or aborted by a person.
pub const STOPPED: i32 = 4;
/// `--timeout` passed before the followed rollout ended (the rollout goes on).
pub const TIMED_OUT: i32 = 5;
/// The server could not be reached, or answered that it cannot serve now (5xx).
pub const UNREACHABLE: i32 = 6;
/// Following was interrupted with Ctrl-C (the rollout goes on): the shell's code for SIGINT.
pub const INTERRUPTED: i32 = 130;

/// An error that carries its exit code; `main` prints the message and exits with the code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
}

/// The exit code for an error that reached `main`.
pub fn code_of(e: &anyhow::Error) -> i32 {
    e.chain()
        .find_map(|cause| cause.downcast_ref::<Failure>())
        .map_or(USAGE, |f| f.code)
}
