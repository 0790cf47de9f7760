//! Shard leases on KurrentDB (the contract is `ionroller_shared::store::lease`), so several
//! roller replicas can share one KurrentDB log.
//!
//! KurrentDB has no rows to update in place and no write that spans two streams, so:
//! - **The table is one stream** beside the namespace's streams, `{namespace}%leases` (no
//!   stream name or namespace of ours holds a `%`, so no stream of ours can be it, and the
//!   stream-name filter of every read of `$all` leaves it out). Its last event is the whole
//!   table. Every change reads that event and appends the changed table at exactly the
//!   revision it read: the server's expected-revision check is the compare-and-set, so two
//!   replicas taking one shard at once get one grant, and the loser reads again.
//! - **Expiry is judged by the reader's monotonic clock, never by comparing clocks.** A row
//!   (or a replica) is live while the renewal it shows was first seen by this process less
//!   than its time to live ago. A reader can see a renewal only after its holder sent it, so
//!   a holder that counts on 80% of the time to live from sending (the roller's `Replica`)
//!   stops acting before any reader deems its lease expired, whatever the wall clocks say. A
//!   process that has just started counts every row as renewed when it first reads it, so it
//!   waits a whole time to live before it takes anything over.
//! - **Every renewal is an event**, there being nothing else to update: the stream's
//!   `$maxCount` keeps the last [`KEEP`] tables readable and the server's scavenge reclaims
//!   the rest, so renewals do not grow the log without bound, though they do write (one
//!   table of well under a kilobyte per replica per tenth of the time to live).
//! - **`append_fenced` is two calls**: it reads the table, then appends at the caller's
//!   expected revision. A takeover between the two lets that one append of the old holder
//!   land (its intent names the old epoch); the old holder still executes no cloud action
//!   once its own validity has passed, and the new holder executes the intent (actions are
//!   idempotent). PostgreSQL checks the fence in the write's transaction instead.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kurrentdb::{
    AppendToStreamOptions, EventData, ReadStreamOptions, StreamMetadata, StreamPosition,
    StreamState,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use ionroller_shared::store::lease::{Fence, Grant, LeaseRow, LeaseTable, Leases};
use ionroller_shared::store::{
    AppendResult, EventStore, ExpectedRevision, NewEvent, StoreError, StreamId,
};

use crate::KurrentStore;

/// How many tables the lease stream keeps readable (`$maxCount`): only the last is read.
pub const KEEP: u64 = 16;
/// A replica unrenewed for this many times to live is dropped from the table by the next
/// change (each restart under a new id would otherwise leave it there for good).
const FORGET_REPLICA_AFTER_TTLS: u32 = 10;
/// Attempts at one change while other replicas keep changing the table first.
const ATTEMPTS: usize = 32;
const EVENT_TYPE: &str = "ionroller-lease-table";

/// The whole lease table, as the last event of the lease stream holds it. Decoded
/// tolerantly, as every stored record is: fields added later default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Table {
    #[serde(default)]
    shards: BTreeMap<u32, Row>,
    #[serde(default)]
    replicas: BTreeMap<String, Member>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Row {
    holder: String,
    epoch: u64,
    /// Bumped by every renewal: what a reader watches for change.
    #[serde(default)]
    renewals: u64,
    #[serde(default)]
    ttl_ms: u64,
    #[serde(default)]
    released: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Member {
    #[serde(default)]
    beats: u64,
    #[serde(default)]
    ttl_ms: u64,
}

/// When this process first saw each row's and each replica's current renewal, keyed by
/// `s{shard}` (value: epoch and renewals) and `r{holder}` (value: beats).
#[derive(Default)]
pub(crate) struct Sightings {
    seen: HashMap<String, ((u64, u64), Instant)>,
}

impl Sightings {
    /// Notes the renewals in `table` at `now`: a value not seen before starts its clock.
    fn note(&mut self, table: &Table, now: Instant) {
        let watched = table
            .shards
            .iter()
            .map(|(shard, row)| (format!("s{shard}"), (row.epoch, row.renewals)))
            .chain(
                table
                    .replicas
                    .iter()
                    .map(|(holder, m)| (format!("r{holder}"), (m.beats, 0))),
            );
        let mut keep = HashMap::with_capacity(table.shards.len() + table.replicas.len());
        for (key, value) in watched {
            let since = match self.seen.get(&key) {
                Some((old, since)) if *old == value => *since,
                _ => now,
            };
            keep.insert(key, (value, since));
        }
        self.seen = keep;
    }

    /// How long `value` of `key` has gone unchanged; zero for one never noted (so a row
    /// this process has not watched is never taken for expired).
    fn unchanged_for(&self, key: &str, value: (u64, u64), now: Instant) -> Duration {
        match self.seen.get(key) {
            Some((seen, since)) if *seen == value => now.saturating_duration_since(*since),
            _ => Duration::ZERO,
        }
    }

    fn row_live(&self, shard: u32, row: &Row, now: Instant) -> bool {
        !row.released
            && self.unchanged_for(&format!("s{shard}"), (row.epoch, row.renewals), now)
                < Duration::from_millis(row.ttl_ms)
    }

    fn replica_quiet_for(&self, holder: &str, member: &Member, now: Instant) -> Duration {
        self.unchanged_for(&format!("r{holder}"), (member.beats, 0), now)
    }
}

impl Table {
    fn lease_table(&self, sightings: &Sightings, now: Instant) -> LeaseTable {
        LeaseTable {
            leases: self
                .shards
                .iter()
                .map(|(shard, row)| LeaseRow {
                    shard: *shard,
                    holder: row.holder.clone(),
                    epoch: row.epoch,
                    live: sightings.row_live(*shard, row, now),
                })
                .collect(),
            replicas: self
                .replicas
                .iter()
                .filter(|(holder, m)| {
                    sightings.replica_quiet_for(holder, m, now) < Duration::from_millis(m.ttl_ms)
                })
                .map(|(holder, _)| holder.clone())
                .collect(),
        }
    }

    /// Marks `holder` alive, renews those of `held` it still holds at their epoch, and
    /// forgets replicas long gone. Returns the grants renewed.
    fn beat(
        &mut self,
        holder: &str,
        held: &[Grant],
        ttl: Duration,
        sightings: &Sightings,
        now: Instant,
    ) -> Vec<Grant> {
        let ttl_ms = millis(ttl);
        self.replicas.retain(|other, m| {
            other == holder
                || sightings.replica_quiet_for(other, m, now)
                    < Duration::from_millis(m.ttl_ms) * FORGET_REPLICA_AFTER_TTLS
        });
        let member = self
            .replicas
            .entry(holder.to_string())
            .or_insert(Member { beats: 0, ttl_ms });
        member.beats += 1;
        member.ttl_ms = ttl_ms;
        let mut renewed = Vec::new();
        for grant in held {
            if let Some(row) = self.shards.get_mut(&grant.shard) {
                if row.holder == holder && row.epoch == grant.epoch && !row.released {
                    row.renewals += 1;
                    row.ttl_ms = ttl_ms;
                    renewed.push(*grant);
                }
            }
        }
        renewed.sort();
        renewed
    }

    /// Takes each of `shards` that nobody holds (never taken, expired or released) at a new
    /// epoch.
    fn take(
        &mut self,
        holder: &str,
        shards: &[u32],
        ttl: Duration,
        sightings: &Sightings,
        now: Instant,
    ) -> Vec<Grant> {
        let mut granted = Vec::new();
        for &shard in shards {
            let epoch = match self.shards.get(&shard) {
                None => 1,
                Some(row) if !sightings.row_live(shard, row, now) => row.epoch + 1,
                Some(_) => continue,
            };
            self.shards.insert(
                shard,
                Row {
                    holder: holder.to_string(),
                    epoch,
                    renewals: 0,
                    ttl_ms: millis(ttl),
                    released: false,
                },
            );
            granted.push(Grant { shard, epoch });
        }
        granted.sort();
        granted.dedup();
        granted
    }

    /// Gives `grants` up; with `leaving`, the membership too. Whether anything changed.
    fn give_up(&mut self, holder: &str, grants: &[Grant], leaving: bool) -> bool {
        let mut changed = false;
        for grant in grants {
            if let Some(row) = self.shards.get_mut(&grant.shard) {
                if row.holder == holder && row.epoch == grant.epoch && !row.released {
                    row.released = true;
                    changed = true;
                }
            }
        }
        if leaving {
            changed |= self.replicas.remove(holder).is_some();
        }
        changed
    }

    fn holds(&self, fence: &Fence) -> bool {
        self.shards.get(&fence.shard).is_some_and(|row| {
            row.holder == fence.holder && row.epoch == fence.epoch && !row.released
        })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl KurrentStore {
    /// The server's name for the lease table's stream.
    fn lease_stream(&self) -> String {
        format!("{}%leases", self.inner.options.namespace)
    }

    /// The table as it stands, the revision it was read at (`None`: no table yet), with its
    /// renewals noted.
    async fn read_table(&self) -> Result<(Table, Option<u64>, Instant), StoreError> {
        let options = ReadStreamOptions::default()
            .position(StreamPosition::End)
            .backwards()
            .max_count(1);
        let client = self.client()?;
        let mut page = match client.read_stream(self.lease_stream(), &options).await {
            Ok(page) => page,
            Err(kurrentdb::Error::ResourceNotFound) => return Ok(self.noted(Table::default())),
            Err(e) => return Err(self.failed(&client, e)),
        };
        let last = match page.next().await {
            Ok(last) => last,
            Err(kurrentdb::Error::ResourceNotFound) => return Ok(self.noted(Table::default())),
            Err(e) => return Err(self.failed(&client, e)),
        };
        let Some(resolved) = last else {
            return Ok(self.noted(Table::default()));
        };
        let recorded = resolved.get_original_event();
        // Anything else there would decode as an empty table, every shard free at once.
        if recorded.event_type != EVENT_TYPE {
            return Err(StoreError::Corrupt(format!(
                "{} ends with a {:?} event, not a lease table",
                self.lease_stream(),
                recorded.event_type
            )));
        }
        let table: Table = serde_json::from_slice(&recorded.data).map_err(|e| {
            StoreError::Corrupt(format!(
                "the lease table at revision {} of {}: {e}",
                recorded.revision,
                self.lease_stream()
            ))
        })?;
        let (table, _, now) = self.noted(table);
        Ok((table, Some(recorded.revision), now))
    }

    fn noted(&self, table: Table) -> (Table, Option<u64>, Instant) {
        let now = Instant::now();
        if let Ok(mut sightings) = self.inner.sightings.lock() {
            sightings.note(&table, now);
        }
        (table, None, now)
    }

    /// Appends `table` exactly after `revision`. `Ok(false)`: another replica changed the
    /// table first.
    async fn write_table(&self, table: &Table, revision: Option<u64>) -> Result<bool, StoreError> {
        let event = EventData::json(EVENT_TYPE, table)
            .map_err(|e| StoreError::InvalidAppend(e.to_string()))?
            .id(Uuid::new_v4());
        let state = match revision {
            Some(n) => StreamState::StreamRevision(n),
            None => StreamState::NoStream,
        };
        let options = AppendToStreamOptions::default().stream_state(state);
        let client = self.client()?;
        match client
            .append_to_stream(self.lease_stream(), &options, event)
            .await
        {
            Ok(_) => {}
            Err(kurrentdb::Error::WrongExpectedVersion { .. }) => return Ok(false),
            Err(e) => return Err(self.failed(&client, e)),
        }
        if revision.is_none() {
            // The stream was just made: keep only the last tables readable. Without this
            // the table still works; the stream only grows until someone sets it.
            let metadata = StreamMetadata::builder().max_count(KEEP).build();
            if let Err(e) = client
                .set_stream_metadata(
                    self.lease_stream(),
                    &AppendToStreamOptions::default(),
                    &metadata,
                )
                .await
            {
                tracing::warn!(
                    stream = %self.lease_stream(),
                    "could not set $maxCount on the lease stream: {e}"
                );
            }
        }
        Ok(true)
    }

    /// Reads the table, lets `change` change it, and writes it back at the revision read;
    /// again while other replicas win the race. `change` returns its answer and whether it
    /// changed anything (nothing changed: nothing is written).
    async fn change_table<T>(
        &self,
        mut change: impl FnMut(&mut Table, &Sightings, Instant) -> (T, bool) + Send,
    ) -> Result<(T, Table, Instant), StoreError> {
        for _ in 0..ATTEMPTS {
            let (mut table, revision, now) = self.read_table().await?;
            let (answer, changed) = {
                let sightings = self
                    .inner
                    .sightings
                    .lock()
                    .map_err(|_| StoreError::Unavailable("the lease sightings lock".into()))?;
                change(&mut table, &sightings, now)
            };
            if !changed || self.write_table(&table, revision).await? {
                // What this process wrote, it has seen: its own renewals start now.
                let (_, _, now) = self.noted(table.clone());
                return Ok((answer, table, now));
            }
        }
        Err(StoreError::Unavailable(format!(
            "the lease table changed under {ATTEMPTS} attempts in a row"
        )))
    }

    fn lease_table_now(&self, table: &Table, now: Instant) -> Result<LeaseTable, StoreError> {
        let sightings = self
            .inner
            .sightings
            .lock()
            .map_err(|_| StoreError::Unavailable("the lease sightings lock".into()))?;
        Ok(table.lease_table(&sightings, now))
    }
}

#[async_trait]
impl Leases for KurrentStore {
    async fn heartbeat(
        &self,
        holder: &str,
        held: &[Grant],
        ttl: Duration,
    ) -> Result<(Vec<Grant>, LeaseTable), StoreError> {
        let (renewed, table, now) = self
            .change_table(|table, sightings, now| {
                (table.beat(holder, held, ttl, sightings, now), true)
            })
            .await?;
        Ok((renewed, self.lease_table_now(&table, now)?))
    }

    async fn acquire(
        &self,
        holder: &str,
        shards: &[u32],
        ttl: Duration,
    ) -> Result<Vec<Grant>, StoreError> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let (granted, _, _) = self
            .change_table(|table, sightings, now| {
                let granted = table.take(holder, shards, ttl, sightings, now);
                let changed = !granted.is_empty();
                (granted, changed)
            })
            .await?;
        Ok(granted)
    }

    async fn release(
        &self,
        holder: &str,
        grants: &[Grant],
        leaving: bool,
    ) -> Result<(), StoreError> {
        self.change_table(|table, _, _| ((), table.give_up(holder, grants, leaving)))
            .await?;
        Ok(())
    }

    async fn append_fenced(
        &self,
        fence: &Fence,
        stream: &StreamId,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        let (table, _, _) = self.read_table().await?;
        if !table.holds(fence) {
            return Err(StoreError::Fenced {
                shard: fence.shard,
                epoch: fence.epoch,
            });
        }
        self.append(stream, expected, events).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_millis(1000);

    fn grant(shard: u32, epoch: u64) -> Grant {
        Grant { shard, epoch }
    }

    #[test]
    fn a_shard_is_taken_once_then_again_only_after_a_whole_ttl_without_renewal() {
        let mut table = Table::default();
        let mut seen = Sightings::default();
        let t0 = Instant::now();
        assert_eq!(
            table.take("a", &[3, 1, 3], TTL, &seen, t0),
            [grant(1, 1), grant(3, 1)]
        );
        seen.note(&table, t0);
        assert!(table.take("b", &[1], TTL, &seen, t0 + TTL / 2).is_empty());
        // Renewed at 0.9 ttl: the renewal's clock starts when it is seen.
        let t1 = t0 + TTL * 9 / 10;
        assert_eq!(
            table.beat("a", &[grant(1, 1)], TTL, &seen, t1),
            [grant(1, 1)]
        );
        seen.note(&table, t1);
        assert!(table
            .take("b", &[1], TTL, &seen, t1 + TTL * 9 / 10)
            .is_empty());
        // Shard 3 was not renewed: b takes it at epoch 2, and a's renewal of it then fails.
        assert_eq!(table.take("b", &[3], TTL, &seen, t0 + TTL), [grant(3, 2)]);
        seen.note(&table, t0 + TTL);
        assert!(table.beat("a", &[grant(3, 1)], TTL, &seen, t1).is_empty());
        let view = table.lease_table(&seen, t0 + TTL);
        let three = view
            .leases
            .iter()
            .find(|l| l.shard == 3)
            .map(|l| (l.holder.as_str(), l.epoch, l.live));
        assert_eq!(three, Some(("b", 2, true)));
    }

    #[test]
    fn a_reader_that_has_just_started_waits_a_whole_ttl_before_taking_over() {
        let mut table = Table::default();
        let long_ago = Instant::now();
        table.take("a", &[5], TTL, &Sightings::default(), long_ago);
        // A new process sees the row for the first time much later: it counts from then.
        let mut fresh = Sightings::default();
        let later = long_ago + TTL * 50;
        fresh.note(&table, later);
        assert!(table
            .take("b", &[5], TTL, &fresh, later + TTL / 2)
            .is_empty());
        assert_eq!(
            table.take("b", &[5], TTL, &fresh, later + TTL),
            [grant(5, 2)]
        );
    }

    #[test]
    fn a_released_shard_is_taken_at_once_and_a_leaver_leaves_the_membership() {
        let mut table = Table::default();
        let mut seen = Sightings::default();
        let now = Instant::now();
        table.beat("a", &[], TTL, &seen, now);
        table.beat("b", &[], TTL, &seen, now);
        let a = table.take("a", &[7], TTL, &seen, now);
        seen.note(&table, now);
        assert!(table.give_up("a", &a, true));
        assert!(
            !table.give_up("a", &a, true),
            "a second release changes nothing"
        );
        assert_eq!(table.take("b", &[7], TTL, &seen, now), [grant(7, 2)]);
        seen.note(&table, now);
        assert_eq!(table.lease_table(&seen, now).replicas, ["b"]);
        assert!(!table.holds(&Fence {
            shard: 7,
            epoch: 1,
            holder: "a".into()
        }));
        assert!(table.holds(&Fence {
            shard: 7,
            epoch: 2,
            holder: "b".into()
        }));
        assert!(!table.holds(&Fence {
            shard: 7,
            epoch: 2,
            holder: "a".into()
        }));
    }

    #[test]
    fn replicas_quiet_for_ten_ttls_are_forgotten_by_the_next_heartbeat() {
        let mut table = Table::default();
        let mut seen = Sightings::default();
        let t0 = Instant::now();
        table.beat("gone", &[], TTL, &seen, t0);
        table.beat("live", &[], TTL, &seen, t0);
        seen.note(&table, t0);
        let t1 = t0 + TTL * 3;
        table.beat("live", &[], TTL, &seen, t1);
        seen.note(&table, t1);
        assert_eq!(table.replicas.len(), 2, "expired but recent: still known");
        assert_eq!(table.lease_table(&seen, t1).replicas, ["live"]);
        let t2 = t0 + TTL * 11;
        table.beat("live", &[], TTL, &seen, t2);
        assert_eq!(table.replicas.keys().collect::<Vec<_>>(), ["live"]);
    }

    #[test]
    fn tables_decode_tolerantly() {
        let table: Table = serde_json::from_str(
            r#"{"shards": {"4": {"holder": "a", "epoch": 3, "later": true}}, "extra": 1}"#,
        )
        .expect("decodes");
        assert_eq!(table.shards[&4].epoch, 3);
        assert_eq!(table.shards[&4].renewals, 0);
    }
}
