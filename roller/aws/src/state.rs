//! What the driver keeps between calls: a count of the AWS calls it made, and each Ready
//! environment's Auto Scaling groups. Caches only, never truth: everything here can be lost
//! (a restart) or dropped (a replaced environment) and is then read from AWS again.
//!
//! Its own module, below `observe`, `execute` and `alb`, so that they need nothing from the
//! crate root and the root can call them without a cycle.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub struct DriverState {
    /// AWS API calls made so far (each SDK operation counts once, however many attempts).
    calls: AtomicU64,
    /// Environment id → its Auto Scaling group names, once the environment is Ready (an
    /// environment's resources do not change after launch; a replaced one has a new id).
    pub resources: Mutex<HashMap<String, Vec<String>>>,
}

impl DriverState {
    /// Counts one AWS API call; called just before each SDK operation is sent.
    pub fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}
