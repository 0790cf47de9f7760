//! Which shards a roller replica should take or give up, from the lease table it just read.
//!
//! Every replica runs this after each heartbeat. With `n` live replicas each aims for its fair
//! share, `ceil(SHARDS / n)`: it gives up shards above that (so a replica that joins gets work
//! within one round) and takes free ones up to it (so a dead replica's shards are taken as soon
//! as they expire). The database decides every race: a shard two replicas both try to take
//! goes to one of them, at a new epoch.

use std::collections::BTreeSet;

use ionroller_shared::store::lease::{LeaseTable, SHARDS};

/// What a replica does after a heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeasePlan {
    /// Free shards to try to take.
    pub acquire: Vec<u32>,
    /// Held shards to give up, above the fair share.
    pub release: Vec<u32>,
}

/// The fair share of `SHARDS` among `replicas` live replicas (at least one: the asker).
pub fn fair_share(replicas: usize) -> usize {
    (SHARDS as usize).div_ceil(replicas.max(1))
}

/// The plan for `me`, holding `held` (after its renewal), given the table as read.
///
/// Free shards are tried starting at an offset that depends on the replica's name, so
/// replicas that start together mostly ask for different shards.
pub fn plan(me: &str, held: &BTreeSet<u32>, table: &LeaseTable) -> LeasePlan {
    let live = table.replicas.iter().filter(|r| r.as_str() != me).count() + 1;
    let fair = fair_share(live);
    if held.len() > fair {
        return LeasePlan {
            acquire: Vec::new(),
            // The highest first: which ones does not matter, only that it is deterministic.
            release: held.iter().rev().take(held.len() - fair).copied().collect(),
        };
    }
    let taken: BTreeSet<u32> = table
        .leases
        .iter()
        .filter(|row| row.live)
        .map(|row| row.shard)
        .chain(held.iter().copied())
        .collect();
    let offset = me
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % SHARDS;
    let acquire = (0..SHARDS)
        .map(|i| (offset + i) % SHARDS)
        .filter(|shard| !taken.contains(shard))
        .take(fair - held.len())
        .collect();
    LeasePlan {
        acquire,
        release: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ionroller_shared::store::lease::LeaseRow;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn table(rows: &[(u32, &str, bool)], replicas: &[&str]) -> LeaseTable {
        LeaseTable {
            leases: rows
                .iter()
                .map(|(shard, holder, live)| LeaseRow {
                    shard: *shard,
                    holder: holder.to_string(),
                    epoch: 1,
                    live: *live,
                })
                .collect(),
            replicas: replicas.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn fair_shares() {
        for (replicas, fair) in [(0, 32), (1, 32), (2, 16), (3, 11), (5, 7), (32, 1), (40, 1)] {
            assert_eq!(fair_share(replicas), fair, "{replicas} replicas");
        }
    }

    #[test]
    fn a_lone_replica_takes_every_shard() {
        let plan = plan("a", &BTreeSet::new(), &table(&[], &["a"]));
        assert_eq!(plan.acquire.len(), SHARDS as usize);
        assert!(plan.release.is_empty());
    }

    #[test]
    fn a_replica_above_its_share_gives_the_excess_up() {
        let held: BTreeSet<u32> = (0..SHARDS).collect();
        let rows: Vec<(u32, &str, bool)> = (0..SHARDS).map(|s| (s, "a", true)).collect();
        let plan = plan("a", &held, &table(&rows, &["a", "b"]));
        assert_eq!(plan.release, (16..32).rev().collect::<Vec<_>>());
        assert!(plan.acquire.is_empty());
    }

    #[test]
    fn expired_and_released_shards_are_free_live_ones_are_not() {
        // b holds 1 and 3..32 live; 0 expired with its dead holder, 2 was released.
        let mut rows = vec![(0, "dead", false), (1, "b", true), (2, "b", false)];
        rows.extend((3..SHARDS).map(|s| (s, "b", true)));
        let plan = plan("a", &BTreeSet::new(), &table(&rows, &["a", "b"]));
        assert_eq!(
            plan.acquire.iter().copied().collect::<BTreeSet<_>>(),
            [0, 2].into()
        );
        let plan = plan_of_fresh_table();
        assert_eq!(plan.acquire.len(), 16);
    }

    fn plan_of_fresh_table() -> LeasePlan {
        plan(
            "a",
            &BTreeSet::new(),
            &table(&[(1, "b", true)], &["a", "b"]),
        )
    }

    /// A model of the database: atomic take of free shards, expiry by round.
    #[derive(Default)]
    struct Db {
        leases: BTreeMap<u32, (String, u64)>,
        replicas: BTreeSet<String>,
    }

    impl Db {
        fn table(&self) -> LeaseTable {
            LeaseTable {
                leases: self
                    .leases
                    .iter()
                    .map(|(shard, (holder, epoch))| LeaseRow {
                        shard: *shard,
                        holder: holder.clone(),
                        epoch: *epoch,
                        live: self.replicas.contains(holder),
                    })
                    .collect(),
                replicas: self.replicas.iter().cloned().collect(),
            }
        }

        fn round(&mut self, me: &str) {
            let held: BTreeSet<u32> = self
                .leases
                .iter()
                .filter(|(_, (h, _))| h == me)
                .map(|(s, _)| *s)
                .collect();
            let p = plan(me, &held, &self.table());
            for shard in p.release {
                self.leases.remove(&shard);
            }
            for shard in p.acquire {
                let free = self
                    .leases
                    .get(&shard)
                    .is_none_or(|(h, _)| !self.replicas.contains(h));
                if free {
                    let epoch = self.leases.get(&shard).map_or(1, |(_, e)| e + 1);
                    self.leases.insert(shard, (me.to_string(), epoch));
                }
            }
        }
    }

    proptest! {
        /// Whatever replicas come and go, in whatever order they run their rounds, a few
        /// rounds after the last change every shard has exactly one live holder and nobody
        /// holds more than the fair share.
        #[test]
        fn replicas_converge_to_fair_exclusive_shares(
            joins in proptest::collection::vec(0usize..6, 1..12),
            order in proptest::collection::vec(0usize..6, 30..60),
        ) {
            let mut db = Db::default();
            let names: Vec<String> = (0..6).map(|i| format!("replica-{i}")).collect();
            for j in &joins {
                // Toggle: a replica joins, or dies (its heartbeat stops, its leases expire).
                let name = &names[*j];
                if !db.replicas.insert(name.clone()) {
                    db.replicas.remove(name);
                }
                for i in &order[..10] {
                    let who = names[*i].clone();
                    if db.replicas.contains(&who) {
                        db.round(&who);
                    }
                }
            }
            let live: Vec<String> = db.replicas.iter().cloned().collect();
            prop_assume!(!live.is_empty());
            for _ in 0..3 {
                for who in &live {
                    db.round(who);
                }
            }
            let fair = fair_share(live.len());
            for shard in 0..SHARDS {
                let holder = db.leases.get(&shard).map(|(h, _)| h.clone());
                prop_assert!(holder.as_ref().is_some_and(|h| db.replicas.contains(h)),
                    "shard {shard} has no live holder: {holder:?}");
            }
            for who in &live {
                let n = db.leases.values().filter(|(h, _)| h == who).count();
                prop_assert!(n <= fair, "{who} holds {n} > {fair}");
            }
        }
    }
}
