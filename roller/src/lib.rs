//! The roller: turns release intent and cloud observations into safe, gradual traffic moves.
//!
//! # Layout
//! The pure core (`evolve`, `observe`, `decide`, plans, command rules) is the
//! `ionroller-core` crate; this crate is the shell around it.
//! - [`log`]: the one write path: fold a service's stream, append at the revision folded.
//! - [`shell`]: the loop that feeds the core from the event store and the cloud.
//! - [`replica`]: shard leases, when several roller processes share one log.
//! - [`snapshot`]: cached folds of long service streams.
//! - [`cloud`]: the `Cloud` trait and the simulated cloud.
//! - [`api`]: the REST API (axum), `fn app(state) -> Router`.

pub mod api;
pub mod clock;
pub mod cloud;
pub mod log;
pub mod metrics;
pub mod notify;
pub mod replica;
mod serve;
pub mod shell;
pub mod snapshot;

pub use serve::{serve, CloudDriver, ReplicaConfig, RollerConfig};
