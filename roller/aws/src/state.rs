//! What the driver keeps between calls: counts of the AWS calls it made, the client-side rate
//! limit every call waits on, each Ready environment's Auto Scaling groups, and the recent
//! observations of each account-region ([`crate::batch`]). Caches and counters only, never
//! truth: everything here can be lost (a restart) or dropped (a replaced environment) and is
//! then read from AWS again.
//!
//! Its own module, below `observe`, `execute` and `alb`, so that they need nothing from the
//! crate root and the root can call them without a cycle.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::clients::{Clients, Target};

/// AWS does not publish Elastic Beanstalk's, Auto Scaling's or ELB's API rate limits; its
/// accounts see throttling from roughly 10–20 calls per second per API and region. ionroller
/// stays under the lower end by default (`ionroller up --aws-calls-per-second`).
pub const DEFAULT_CALLS_PER_SECOND: u32 = 10;

/// One API in one account-region: what the rate limit and the counts are kept by.
type ApiKey = (Target, &'static str);

pub struct DriverState {
    /// AWS API calls made so far (each SDK operation counts once, however many attempts).
    calls: AtomicU64,
    /// The same, by account-region and API.
    by_api: Mutex<BTreeMap<ApiKey, u64>>,
    /// Every call waits here for its (account, region, API) turn.
    limiter: DefaultKeyedRateLimiter<ApiKey>,
    /// Environment id → its Auto Scaling group names, once the environment is Ready (an
    /// environment's resources do not change after launch; a replaced one has a new id).
    pub resources: Mutex<HashMap<String, Vec<String>>>,
}

impl Default for DriverState {
    fn default() -> Self {
        DriverState::new(NonZeroU32::new(DEFAULT_CALLS_PER_SECOND).unwrap_or(NonZeroU32::MIN))
    }
}

impl DriverState {
    /// At most `per_second` calls of one API in one account-region, in bursts of as many.
    pub fn new(per_second: NonZeroU32) -> Self {
        DriverState {
            calls: AtomicU64::default(),
            by_api: Mutex::default(),
            limiter: RateLimiter::keyed(Quota::per_second(per_second)),
            resources: Mutex::default(),
        }
    }

    /// Waits for the rate limit of `api` in the clients' account-region, then counts one
    /// call. Called just before each SDK operation is sent.
    pub async fn call(&self, c: &Clients, api: &'static str) {
        let key = (c.target.clone(), api);
        self.limiter.until_key_ready(&key).await;
        self.calls.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut by_api) = self.by_api.lock() {
            *by_api.entry(key).or_default() += 1;
        }
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Calls made so far by API name, summed over accounts and regions.
    pub fn calls_by_api(&self) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        if let Ok(by_api) = self.by_api.lock() {
            for ((_, api), n) in by_api.iter() {
                *out.entry(*api).or_default() += n;
            }
        }
        out
    }
}
