//! Observation shared by the services of one account-region. The roller observes each
//! service on its own (so that each one's pass stays independent), but AWS answers most of
//! what an observation needs for many services in one call: DescribeEnvironments lists every
//! application's environments, DescribeAutoScalingGroups takes 50 groups and DescribeAlarms
//! 50 alarms. So concurrent observations in one account-region wait for one read
//! ([`read_region`]) and each takes its part; calls per pass grow with the region's
//! environments / 100 and groups / 50, plus one load-balancer read per service, instead of
//! with services × calls.
//!
//! A read answers a service only when it is fresh enough to act on:
//! - it started after the last action executed for that service ended, so the roller always
//!   sees its own actions' effects (as it did when each service read AWS itself);
//! - it is at most `window` old (the roller passes every interval; a window shorter than the
//!   interval makes every pass start with a new read);
//! - it covers the service and every alarm the service's config names (a service seen for
//!   the first time, or one whose alarms changed, makes a new read).
//!
//! A failed read fails every service waiting for it with the same error, once: the next
//! observation after the window tries again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ionroller_shared::cloud::{CloudError, CloudView};
use ionroller_shared::config::ServiceConfig;

use crate::clients::{Clients, Target};
use crate::observe::{read_region, registrations, Listing, RegionRead};
use crate::state::DriverState;

/// A service not observed for this long is no longer read for (its shard moved to another
/// replica, or it was deleted).
const INTEREST_TTL: Duration = Duration::from_secs(300);

/// How old a shared read may be by default: less than the shortest sensible interval, so
/// each pass reads afresh, and long enough for a pass's concurrent observations to share it.
pub const DEFAULT_WINDOW: Duration = Duration::from_millis(1000);

pub struct Batches {
    window: Duration,
    regions: Mutex<HashMap<Target, Arc<Region>>>,
}

/// One account-region: who is interested in it, and its latest read.
#[derive(Default)]
struct Region {
    interest: Mutex<BTreeMap<String, Interest>>,
    /// Held while a read is taken, so that concurrent observers wait for that one read
    /// instead of each making their own.
    latest: tokio::sync::Mutex<Option<Arc<Read>>>,
}

/// A read, or why it failed and when it started.
type Read = Result<RegionRead, (Instant, CloudError)>;

struct Interest {
    alarms: Vec<String>,
    asked: Instant,
    /// When the last action executed for the service ended.
    acted: Option<Instant>,
}

impl Batches {
    /// Reads are shared for at most `window` (zero: every observation reads afresh, for its
    /// own service only, as a driver without sharing would).
    pub fn new(window: Duration) -> Self {
        Batches {
            window,
            regions: Mutex::default(),
        }
    }

    fn region(&self, target: &Target) -> Arc<Region> {
        match self.regions.lock() {
            Ok(mut regions) => regions.entry(target.clone()).or_default().clone(),
            // A poisoned map only loses sharing: a lone region reads for itself.
            Err(_) => Arc::default(),
        }
    }

    /// Notes that an action for `service` was executed just now: its next observation must
    /// come from a read that started after it.
    pub fn acted(&self, target: &Target, service: &str) {
        let region = self.region(target);
        let Ok(mut interest) = region.interest.lock() else {
            return;
        };
        let now = Instant::now();
        interest
            .entry(service.to_string())
            .or_insert(Interest {
                alarms: Vec::new(),
                asked: now,
                acted: None,
            })
            .acted = Some(now);
    }

    /// One service's observation, from a shared read of its account-region.
    pub async fn observe(
        &self,
        state: &DriverState,
        c: &Clients,
        service: &str,
        config: &ServiceConfig,
    ) -> Result<CloudView, CloudError> {
        let region = self.region(&c.target);
        let alarms = &config.rollout.alarms;
        let acted = region.register(service, alarms);
        let read = {
            let mut latest = region.latest.lock().await;
            let usable = latest.as_ref().filter(|read| {
                let (started, covers) = match read.as_ref() {
                    Ok(r) => (r.started, r.covers(service, alarms)),
                    // A failure covers whoever waited for it: it started after they asked.
                    Err((started, _)) => (*started, acted.asked <= *started),
                };
                answers(started, covers, acted.acted, Instant::now(), self.window)
            });
            match usable {
                Some(read) => read.clone(),
                None => {
                    // Reads shared with no one (a zero window, or one service here) list the
                    // service's own application: the cheaper listing for one.
                    let (services, alarm_names) = if self.window.is_zero() {
                        (
                            BTreeSet::from([service.to_string()]),
                            alarms.iter().cloned().collect(),
                        )
                    } else {
                        region.wanted()
                    };
                    let listing = if services.len() > 1 {
                        Listing::Region
                    } else {
                        Listing::Application(service)
                    };
                    let started = Instant::now();
                    let read = Arc::new(
                        read_region(state, c, listing, services, alarm_names)
                            .await
                            .map_err(|e| (started, e)),
                    );
                    *latest = Some(read.clone());
                    read
                }
            }
        };
        match read.as_ref() {
            Ok(read) => {
                let registered = registrations(state, c, config).await?;
                Ok(read.view(service, config, registered))
            }
            Err((_, e)) => Err(e.clone()),
        }
    }
}

/// Whether a read that started at `started` (and `covers` what the service needs) may answer
/// a service that last acted at `acted`, at `now`. Pure.
fn answers(
    started: Instant,
    covers: bool,
    acted: Option<Instant>,
    now: Instant,
    window: Duration,
) -> bool {
    covers && acted.is_none_or(|a| started >= a) && now.saturating_duration_since(started) <= window
}

/// What `register` returns: when the service asked, and when it last acted.
struct Asked {
    asked: Instant,
    acted: Option<Instant>,
}

impl Region {
    /// Records that `service` wants a view with `alarms`, and forgets services that stopped
    /// asking.
    fn register(&self, service: &str, alarms: &[String]) -> Asked {
        let now = Instant::now();
        let Ok(mut interest) = self.interest.lock() else {
            return Asked {
                asked: now,
                acted: None,
            };
        };
        interest.retain(|_, i| now.duration_since(i.asked) < INTEREST_TTL);
        let entry = interest.entry(service.to_string()).or_insert(Interest {
            alarms: Vec::new(),
            asked: now,
            acted: None,
        });
        entry.alarms = alarms.to_vec();
        entry.asked = now;
        Asked {
            asked: now,
            acted: entry.acted,
        }
    }

    /// Every service interested now, and every alarm they name.
    fn wanted(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        match self.interest.lock() {
            Ok(interest) => (
                interest.keys().cloned().collect(),
                interest.values().flat_map(|i| i.alarms.clone()).collect(),
            ),
            Err(_) => (BTreeSet::new(), BTreeSet::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_answers_only_when_it_covers_follows_the_last_action_and_is_recent() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let w = 2 * s;
        // (started, covers, acted, now, answers)
        let table = [
            (t0, true, None, t0 + s, true),
            (t0, true, None, t0 + w, true),
            (t0, true, None, t0 + w + s, false),    // too old
            (t0, false, None, t0, false),           // another service's, or without its alarms
            (t0 + s, true, Some(t0), t0 + s, true), // started after the action ended
            (t0 + s, true, Some(t0 + s), t0 + s, true),
            (t0, true, Some(t0 + s), t0 + s, false), // the action may not show in it
        ];
        for (started, covers, acted, now, expected) in table {
            assert_eq!(
                answers(started, covers, acted, now, w),
                expected,
                "started {:?} covers {covers} acted {:?} now {:?}",
                started - t0,
                acted.map(|a| a - t0),
                now - t0
            );
        }
        // A zero window never shares: every observation reads for itself.
        assert!(!answers(
            t0,
            true,
            None,
            t0 + Duration::from_nanos(1),
            Duration::ZERO
        ));
    }
}
