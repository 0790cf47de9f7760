//! The roller's pure core: no I/O, no clock reads, no randomness.
//!
//! - [`state::evolve`] folds one event into a [`state::ServiceState`];
//! - [`observe::observe`] turns a cloud observation into the events that record what changed;
//! - [`decide::decide`] turns a state and the time into the next events, including the
//!   `action-intended` events the shell executes;
//! - [`commands::handle`] checks a person's command against the state and returns the events
//!   that record it (or why it is refused);
//! - [`claims`] decides which service owns which load balancer (one each), for config saves;
//! - [`leases`] decides which shards of the services a roller replica takes or gives up;
//! - [`plan`] computes a release's steps and the deterministic names and ids.

pub mod claims;
pub mod commands;
pub mod decide;
pub mod leases;
pub mod observe;
pub mod plan;
pub mod state;

#[cfg(test)]
mod commands_tests;
#[cfg(test)]
mod decide_tests;
#[cfg(test)]
mod schema_evolution_tests;

pub use commands::{handle, Command, Refusal};
pub use decide::decide;
pub use observe::{observe, CloudView};
pub use state::{evolve, ServiceState};
