//! Leases that share the services among several roller replicas on one log, with fencing.
//!
//! The services are split into [`SHARDS`] shards by a stable hash of their name
//! ([`shard_of`]). A replica reconciles a service only while it holds the lease on its shard.
//! On PostgreSQL a lease is a row beside the log, not an event: renewing it every second
//! grows nothing. On KurrentDB, which has no rows, the table is a stream of its own whose
//! newest events alone are kept (`ionroller_store_kurrentdb`'s `leases.rs`).
//!
//! - Every change of holder raises the shard's **epoch**. A [`Fence`] is (shard, epoch,
//!   holder); [`Leases::append_fenced`] writes only if the fence still holds its shard. On
//!   PostgreSQL that is checked in the same transaction as the write: once another replica
//!   has taken the shard, nothing the old holder appends can land, whatever it believes about
//!   its lease. KurrentDB checks it by a read just before the write, so one append that
//!   raced a takeover can land (naming its old epoch).
//! - Expiry is never judged by comparing replicas' clocks: PostgreSQL judges it by the
//!   database's clock, KurrentDB by each reader's monotonic clock since it saw the renewal. A
//!   replica counts its own lease as valid until the time it *sent* the renewal plus the
//!   time to live, minus a margin, on its monotonic clock: it stops acting before the
//!   database lets anyone else take over.
//! - Replicas also heartbeat a membership row, so every replica knows how many are alive and
//!   takes its fair share (see `ionroller_core::leases::plan`).
//!
//! The embedded SQLite store has no leases: one process owns its file (`up` holds a lock on
//! the data dir), and that process reconciles every service.

use std::time::Duration;

use async_trait::async_trait;

use super::{AppendResult, EventStore, ExpectedRevision, NewEvent, StoreError, StreamId};

/// How many shards the services are split into. Every replica on one log must agree, so it
/// is a constant of the protocol, not a setting.
pub const SHARDS: u32 = 32;

/// The shard of a service: FNV-1a over its name, stable across builds and platforms.
pub fn shard_of(service: &str) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in service.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(SHARDS)) as u32
}

/// The right to write for one shard, as granted at one epoch.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Fence {
    pub shard: u32,
    pub epoch: u64,
    pub holder: String,
}

/// A lease held: the shard and the epoch it was granted at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grant {
    pub shard: u32,
    pub epoch: u64,
}

/// One shard's row as the database sees it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRow {
    pub shard: u32,
    pub holder: String,
    pub epoch: u64,
    /// Unexpired and not released.
    pub live: bool,
}

/// The lease table and the replicas whose heartbeat has not expired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseTable {
    pub leases: Vec<LeaseRow>,
    pub replicas: Vec<String>,
}

/// Leases beside an event log. Implemented by the stores that several processes can share.
#[async_trait]
pub trait Leases: EventStore {
    /// Marks `holder` alive for `ttl`, extends those of `held` it still holds at their epoch,
    /// and returns the ones extended with the whole table as it stands after.
    async fn heartbeat(
        &self,
        holder: &str,
        held: &[Grant],
        ttl: Duration,
    ) -> Result<(Vec<Grant>, LeaseTable), StoreError>;

    /// Takes each of `shards` that nobody holds (never taken, expired or released), for
    /// `ttl`, at a new epoch. Returns the grants made; a shard someone else holds is left out.
    async fn acquire(
        &self,
        holder: &str,
        shards: &[u32],
        ttl: Duration,
    ) -> Result<Vec<Grant>, StoreError>;

    /// Gives up `grants` at once, so another replica may take them without waiting for
    /// expiry; with `leaving`, also the membership (graceful shutdown).
    async fn release(
        &self,
        holder: &str,
        grants: &[Grant],
        leaving: bool,
    ) -> Result<(), StoreError>;

    /// [`EventStore::append`], only if `fence` still holds its shard at its epoch:
    /// [`StoreError::Fenced`] otherwise, and nothing is written. PostgreSQL checks in the
    /// write's transaction; KurrentDB just before the write.
    async fn append_fenced(
        &self,
        fence: &Fence,
        stream: &StreamId,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError>;
}

/// A replica's lease time to live unless the operator chooses.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_spread() {
        // Pinned: replicas of different builds must agree on every service's shard.
        assert_eq!(shard_of("hello"), shard_of("hello"));
        let pinned: Vec<u32> = ["hello", "payments", "search"]
            .iter()
            .map(|s| shard_of(s))
            .collect();
        assert_eq!(pinned, PINNED);
        let mut counts = [0u32; SHARDS as usize];
        for i in 0..3200 {
            counts[shard_of(&format!("service-{i}")) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 50 && c < 150), "{counts:?}");
    }

    const PINNED: [u32; 3] = [11, 6, 9];
}
