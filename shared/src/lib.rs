//! Everything the roller and trail services agree on.
//!
//! # Layout
//! - [`store`]: the append-only event log. [`store::EventStore`] is the one trait every
//!   backend implements; [`store::sqlite`] is the embedded default (one file, no server) and
//!   [`store::postgres`] is for teams that already run PostgreSQL. The types and the pure
//!   group-commit planner in [`store`] do no I/O; only the backend modules touch a database.

pub mod cloud;
pub mod config;
pub mod events;
pub mod http;
pub mod store;
