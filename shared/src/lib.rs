//! Everything the roller and trail services agree on: contracts only, no database driver.
//!
//! # Layout
//! - [`events`]: the event schema every stream holds, and the names of the streams;
//! - [`config`]: a service's config, and every rule a person's config must meet;
//! - [`secrets`]: references to secrets kept outside the log, and the check that refuses
//!   plain values that look like credentials;
//! - [`cloud`]: the roller's one door to the cloud (the `Cloud` trait);
//! - [`store`]: the append-only event log's contract. [`store::EventStore`] is the one trait
//!   every backend implements (the backends live in `stores/sqlite` and `stores/postgres`);
//!   the types and the pure group-commit planner do no I/O;
//! - [`http`]: the one JSON error body both services answer with.

pub mod cloud;
pub mod config;
pub mod events;
pub mod http;
pub mod secrets;
pub mod store;
