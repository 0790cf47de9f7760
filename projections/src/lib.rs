//! Pure folds of the event log into trail's read models. No I/O, no clock: the same events
//! always give the same rows, so trail can rebuild any projection from position zero.
//!
//! - [`audit`]: one row per event, filterable, each carrying the [`chain`] hash;
//! - [`releases`]: each rollout's request, steps, outcome with evidence, and waits;
//! - [`timeline`]: which version served what share of traffic, when;
//! - [`delivery`]: deployment frequency, lead time, change-failure rate, time to restore;
//! - [`notifications`]: what a team is told, per event (the roller's notifier delivers it).

pub mod audit;
pub mod chain;
pub mod delivery;
pub mod notifications;
pub mod releases;
pub mod timeline;

#[cfg(test)]
mod history_tests;
#[cfg(test)]
mod schema_evolution_tests;
#[cfg(test)]
pub(crate) mod testing;
