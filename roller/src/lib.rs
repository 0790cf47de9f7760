//! The roller: turns release intent and cloud observations into safe, gradual traffic moves.
//!
//! # Layout
//! - [`core`]: the pure core: `evolve`, `observe`, `decide`, plans. No I/O, no clock.
//! - [`shell`]: the loop that feeds the core from the event store and the cloud.
//! - [`snapshot`]: cached folds of long service streams.
//! - [`cloud`]: the `Cloud` trait and the simulated cloud.
//! - [`api`]: the REST API (axum), `fn app(state) -> Router`.
//! - [`cli`]: the `ionroller` command line (client of the API, and `up`).

pub mod api;
pub mod cli;
pub mod clock;
pub mod cloud;
pub mod core;
pub mod metrics;
pub mod shell;
pub mod snapshot;
