//! The roller's one door to the cloud. [`sim::SimCloud`] is the embedded default; the AWS
//! driver (`roller/aws`, crate `ionroller-aws`) implements the same trait, which lives in
//! `ionroller_shared::cloud` so that the driver does not depend on this crate.

pub mod sim;

pub use ionroller_shared::cloud::{Cloud, CloudError, CloudView};
