//! One roller replica among several on a shared log: it keeps its shard leases alive, takes
//! its fair share (the rule is `ionroller_core::leases::plan`), and tells the reconcile loop
//! which services it may act on now, and under which [`Fence`].
//!
//! Two guards, because neither alone is enough:
//! - **Writes** are fenced by the store: an append under a fence whose shard has passed on is
//!   refused (`Leases::append_fenced`; on PostgreSQL in the write's own transaction, on
//!   KurrentDB by a read of the lease table just before it).
//! - **Cloud actions** cannot be fenced by AWS, so a replica acts only while its lease is
//!   valid by its own monotonic clock: from the moment it *sent* the renewal, for 80% of the
//!   time to live. The database lets another replica take over only after the full time to
//!   live from when it *received* the renewal, so the old holder has stopped acting at least
//!   a fifth of the time to live before anyone else starts. A replica frozen (SIGSTOP, a long
//!   pause) past its lease finds its validity gone when it wakes, before any cloud call.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ionroller_shared::store::lease::{shard_of, Fence, Grant, Leases};
use ionroller_shared::store::StoreError;
use tokio::sync::Notify;

use crate::metrics::Metrics;

/// The part of the time to live a replica counts on; the rest is the margin.
const VALID_FRACTION: f64 = 0.8;

#[derive(Clone, Copy, Debug)]
struct Held {
    epoch: u64,
    valid_until: Instant,
}

pub struct Replica {
    store: Arc<dyn Leases>,
    holder: String,
    ttl: Duration,
    held: Mutex<BTreeMap<u32, Held>>,
    metrics: Arc<Metrics>,
    /// Cleared when the roller stopped with a reconcile cut off mid-call: the leases are then
    /// left to expire instead of being handed over at once.
    hand_over: std::sync::atomic::AtomicBool,
}

impl Replica {
    pub fn new(store: Arc<dyn Leases>, holder: impl Into<String>, ttl: Duration) -> Self {
        Replica {
            store,
            holder: holder.into(),
            ttl,
            held: Mutex::default(),
            metrics: Arc::default(),
            hand_over: std::sync::atomic::AtomicBool::new(true),
        }
    }

    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The store, for fenced appends.
    pub fn store(&self) -> &dyn Leases {
        self.store.as_ref()
    }

    /// How often leases are renewed: ten times per time to live, so one slow round costs
    /// nothing and a released shard is taken within about a tenth of it.
    pub fn round_every(&self) -> Duration {
        (self.ttl / 10).max(Duration::from_millis(50))
    }

    /// The fence to act on `service` under, if this replica holds its shard's lease now.
    pub fn fence(&self, service: &str) -> Option<Fence> {
        let shard = shard_of(service);
        let held = self.held.lock().ok()?.get(&shard).copied()?;
        (held.valid_until > Instant::now()).then(|| Fence {
            shard,
            epoch: held.epoch,
            holder: self.holder.clone(),
        })
    }

    /// Whether this replica holds `shard`'s lease and it is valid now (the notifier runs on
    /// the holder of one shard).
    pub fn holds_shard(&self, shard: u32) -> bool {
        self.held.lock().is_ok_and(|held| {
            held.get(&shard)
                .is_some_and(|h| h.valid_until > Instant::now())
        })
    }

    /// Whether `fence` is still this replica's and valid now: asked right before every cloud
    /// action.
    pub fn holds(&self, fence: &Fence) -> bool {
        self.held.lock().is_ok_and(|held| {
            held.get(&fence.shard)
                .is_some_and(|h| h.epoch == fence.epoch && h.valid_until > Instant::now())
        })
    }

    /// The database refused a fenced append: the shard is gone, whatever the clock says.
    pub fn lost(&self, fence: &Fence) {
        let removed = self
            .held
            .lock()
            .ok()
            .and_then(|mut held| match held.get(&fence.shard) {
                Some(h) if h.epoch == fence.epoch => held.remove(&fence.shard),
                _ => None,
            });
        if removed.is_some() {
            Metrics::add(&self.metrics.leases_lost, 1);
            tracing::warn!(
                shard = fence.shard,
                epoch = fence.epoch,
                "lease lost: a fenced append was refused"
            );
        }
        self.publish();
    }

    /// The shards held now, with their epochs.
    pub fn grants(&self) -> Vec<Grant> {
        self.held
            .lock()
            .map(|held| {
                held.iter()
                    .map(|(shard, h)| Grant {
                        shard: *shard,
                        epoch: h.epoch,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One round: heartbeat and renew, then take or give up shards by the fair-share rule.
    /// Returns whether a shard was taken (its services should be reconciled at once).
    pub async fn round(&self) -> Result<bool, StoreError> {
        let mine = self.grants();
        let sent = Instant::now();
        let (renewed, table) = self.store.heartbeat(&self.holder, &mine, self.ttl).await?;
        let valid_until = sent + self.ttl.mul_f64(VALID_FRACTION);
        let renewed_shards: BTreeSet<u32> = renewed.iter().map(|g| g.shard).collect();
        let lost = mine
            .iter()
            .filter(|g| !renewed_shards.contains(&g.shard))
            .count();
        if lost > 0 {
            Metrics::add(&self.metrics.leases_lost, lost as u64);
            tracing::warn!(
                lost,
                "leases lost: taken over or gone while this replica was away"
            );
        }
        self.replace(&renewed, valid_until);
        let plan = ionroller_core::leases::plan(&self.holder, &renewed_shards, &table);
        if !plan.release.is_empty() {
            let giving: Vec<Grant> = renewed
                .iter()
                .filter(|g| plan.release.contains(&g.shard))
                .copied()
                .collect();
            // Forget them before releasing: nothing may act on a shard being handed over.
            self.forget(&plan.release);
            self.store.release(&self.holder, &giving, false).await?;
            tracing::info!(shards = ?plan.release, "gave up leases above the fair share");
        }
        let mut taken = false;
        if !plan.acquire.is_empty() {
            let sent = Instant::now();
            let granted = self
                .store
                .acquire(&self.holder, &plan.acquire, self.ttl)
                .await?;
            if !granted.is_empty() {
                taken = true;
                Metrics::add(&self.metrics.leases_acquired, granted.len() as u64);
                tracing::info!(shards = ?granted.iter().map(|g| (g.shard, g.epoch)).collect::<Vec<_>>(), "took leases");
                self.add(&granted, sent + self.ttl.mul_f64(VALID_FRACTION));
            }
        }
        self.publish();
        Ok(taken)
    }

    /// Keeps the leases until `shutdown`, waking the reconcile loop whenever it takes a
    /// shard; then gives every lease up at once so the other replicas take over without
    /// waiting for expiry, unless `let_leases_expire` was called.
    pub async fn run(self: Arc<Self>, wake: Arc<Notify>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.round().await {
                Ok(true) => wake.notify_one(),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "lease round failed"),
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(self.round_every()) => {}
            }
        }
        if self.hand_over.load(std::sync::atomic::Ordering::SeqCst) {
            self.leave().await;
        } else {
            tracing::warn!(
                "leases left to expire: a cloud call cut off at shutdown may still land, and whoever takes over starts after it"
            );
        }
    }

    /// On shutdown, leave the leases to expire (as after a crash) rather than give them up.
    pub fn let_leases_expire(&self) {
        self.hand_over
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Gives up every lease and the membership.
    pub async fn leave(&self) {
        let grants = self.grants();
        let shards: Vec<u32> = grants.iter().map(|g| g.shard).collect();
        self.forget(&shards);
        if let Err(e) = self.store.release(&self.holder, &grants, true).await {
            tracing::warn!(error = %e, "giving leases up failed; they expire on their own");
        }
        self.publish();
    }

    fn replace(&self, renewed: &[Grant], valid_until: Instant) {
        if let Ok(mut held) = self.held.lock() {
            *held = renewed
                .iter()
                .map(|g| {
                    (
                        g.shard,
                        Held {
                            epoch: g.epoch,
                            valid_until,
                        },
                    )
                })
                .collect();
        }
    }

    fn add(&self, granted: &[Grant], valid_until: Instant) {
        if let Ok(mut held) = self.held.lock() {
            for g in granted {
                held.insert(
                    g.shard,
                    Held {
                        epoch: g.epoch,
                        valid_until,
                    },
                );
            }
        }
    }

    fn forget(&self, shards: &[u32]) {
        if let Ok(mut held) = self.held.lock() {
            for shard in shards {
                held.remove(shard);
            }
        }
    }

    fn publish(&self) {
        let n = self.held.lock().map(|h| h.len()).unwrap_or(0);
        Metrics::set(&self.metrics.lease_shards_held, n as u64);
    }
}
