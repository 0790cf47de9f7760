//! Signed chain checkpoints published outside trail's database, as CloudTrail publishes its
//! digest files: so that an edit to the log or the projection, even one followed by `trail
//! rebuild`, is found by comparing the log with what was published before.
//!
//! - [`signed`]: the checkpoint document, its signature and its consistency checks; pure.
//! - [`key`]: trail's Ed25519 signing key (created on first start, mode 0600) and the public
//!   key's published form.
//! - [`sink`]: the [`sink::CheckpointSink`] trait (write-once publishing) and the directory
//!   sink.
//! - [`publisher`]: when checkpoints are made (every N rows, and after an interval) and the
//!   per-sink queues.

pub mod key;
pub mod publisher;
pub mod signed;
pub mod sink;

pub use publisher::{Anchoring, Publisher};
pub use sink::{CheckpointSink, DirSink};
