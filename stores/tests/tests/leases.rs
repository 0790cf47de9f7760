//! Shard leases and fenced appends, what roller replicas rely on, on a real PostgreSQL and
//! on KurrentDB (the stand-in, or the server at `IONROLLER_KURRENTDB_URL`). PostgreSQL judges
//! expiry by the database's clock, KurrentDB by each reader's monotonic clock since it saw
//! the renewal; either way these tests wait real (short) times.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ionroller_shared::store::lease::{Fence, Grant, Leases};
use ionroller_shared::store::*;
use serde_json::json;
use support::*;

const TTL: Duration = Duration::from_millis(800);

/// A log that several stores (each as one process would open it) can share.
enum Backend {
    Postgres(PgFixture),
    Kurrent(KurrentFixture),
}

impl Backend {
    async fn open(&self) -> Arc<dyn Leases> {
        match self {
            Backend::Postgres(f) => Arc::new(f.open().await),
            Backend::Kurrent(f) => Arc::new(f.open().await),
        }
    }
}

macro_rules! on_both {
    ($($test:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if let Some(f) = super::PgFixture::new() {
                        super::$test(super::Backend::Postgres(f)).await;
                    }
                }
            )*
        }
        mod kurrentdb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if let Some(f) = super::KurrentFixture::new() {
                        super::$test(super::Backend::Kurrent(f)).await;
                    }
                }
            )*
        }
    };
}

on_both![
    a_held_shard_is_refused_to_others_until_it_expires_then_taken_at_a_new_epoch,
    a_fenced_append_lands_only_while_its_epoch_holds_the_shard,
    a_refused_fence_does_not_fail_the_appends_grouped_with_it,
    replicas_racing_for_every_shard_get_disjoint_sets_and_a_leaver_disappears,
];

fn fence(holder: &str, grant: Grant) -> Fence {
    Fence {
        shard: grant.shard,
        epoch: grant.epoch,
        holder: holder.to_string(),
    }
}

fn one_event() -> Vec<NewEvent> {
    vec![event(EventId::random(), "t", json!({}))]
}

async fn a_held_shard_is_refused_to_others_until_it_expires_then_taken_at_a_new_epoch(
    fixture: Backend,
) {
    let store = fixture.open().await;
    let a = store.acquire("a", &[3, 1], TTL).await.expect("acquire");
    assert_eq!(
        a,
        vec![Grant { shard: 1, epoch: 1 }, Grant { shard: 3, epoch: 1 }]
    );
    assert!(store
        .acquire("b", &[1, 3], TTL)
        .await
        .expect("acquire")
        .is_empty());
    // Renewed, a keeps it past the first time to live.
    tokio::time::sleep(TTL / 2).await;
    let (renewed, table) = store.heartbeat("a", &a, TTL).await.expect("heartbeat");
    assert_eq!(renewed, a);
    assert_eq!(table.replicas, vec!["a".to_string()]);
    tokio::time::sleep(TTL / 2 + Duration::from_millis(100)).await;
    assert!(store
        .acquire("b", &[1], TTL)
        .await
        .expect("acquire")
        .is_empty());
    // Unrenewed, it expires and goes to b at epoch 2; a's renewal of it then fails.
    tokio::time::sleep(TTL + Duration::from_millis(100)).await;
    let b = store.acquire("b", &[1], TTL).await.expect("acquire");
    assert_eq!(b, vec![Grant { shard: 1, epoch: 2 }]);
    let (renewed, table) = store.heartbeat("a", &a, TTL).await.expect("heartbeat");
    assert_eq!(
        renewed,
        vec![Grant { shard: 3, epoch: 1 }],
        "a keeps only 3"
    );
    let one = table
        .leases
        .iter()
        .find(|l| l.shard == 1)
        .expect("row of 1");
    assert_eq!((one.holder.as_str(), one.epoch, one.live), ("b", 2, true));
}

async fn a_fenced_append_lands_only_while_its_epoch_holds_the_shard(fixture: Backend) {
    let store = fixture.open().await;
    let s = stream("service-hello");
    let a = store.acquire("a", &[7], TTL).await.expect("acquire")[0];
    store
        .append_fenced(&fence("a", a), &s, ExpectedRevision::NoStream, one_event())
        .await
        .expect("a holds 7");
    // Released (a graceful handover): b takes it at once, and a's next append is refused.
    store.release("a", &[a], false).await.expect("release");
    let b = store.acquire("b", &[7], TTL).await.expect("acquire")[0];
    assert_eq!(b.epoch, a.epoch + 1);
    let refused = store
        .append_fenced(&fence("a", a), &s, ExpectedRevision::Any, one_event())
        .await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { shard: 7, epoch }) if epoch == a.epoch),
        "{refused:?}"
    );
    // A fence naming the right epoch but another holder is refused too.
    let forged = Fence {
        holder: "a".into(),
        ..fence("b", b)
    };
    assert!(matches!(
        store
            .append_fenced(&forged, &s, ExpectedRevision::Any, one_event())
            .await,
        Err(StoreError::Fenced { .. })
    ));
    store
        .append_fenced(
            &fence("b", b),
            &s,
            ExpectedRevision::Exact(Revision(0)),
            one_event(),
        )
        .await
        .expect("b holds 7");
    let stored = store
        .read_stream(&s, StreamRead::forward(10))
        .await
        .expect("read");
    assert_eq!(
        stored.len(),
        2,
        "nothing of the refused appends was written"
    );
}

async fn a_refused_fence_does_not_fail_the_appends_grouped_with_it(fixture: Backend) {
    let store = fixture.open().await;
    let stale = Fence {
        shard: 2,
        epoch: 9,
        holder: "nobody".into(),
    };
    let held = store.acquire("a", &[4], TTL).await.expect("acquire")[0];
    // Many at once, so that the writer commits them in shared groups.
    let mut writes = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        let f = if i % 2 == 0 {
            stale.clone()
        } else {
            fence("a", held)
        };
        writes.push(tokio::spawn(async move {
            let s = stream(&format!("s-{i}"));
            (
                i,
                store
                    .append_fenced(&f, &s, ExpectedRevision::NoStream, one_event())
                    .await,
            )
        }));
    }
    for w in writes {
        let (i, result) = w.await.expect("task");
        if i % 2 == 0 {
            assert!(
                matches!(result, Err(StoreError::Fenced { .. })),
                "{i}: {result:?}"
            );
        } else {
            assert!(result.is_ok(), "{i}: {result:?}");
        }
    }
    let all = store
        .read_all(None, 100, &ReadFilter::default())
        .await
        .expect("read");
    assert_eq!(all.len(), 20);
    if let Backend::Postgres(_) = fixture {
        // The SQL stores' positions are dense; KurrentDB's are byte offsets.
        let positions: Vec<u64> = all.iter().map(|e| e.position.sequence()).collect();
        assert_eq!(positions, (1..=20).collect::<Vec<_>>(), "dense positions");
    }
}

async fn replicas_racing_for_every_shard_get_disjoint_sets_and_a_leaver_disappears(
    fixture: Backend,
) {
    let all: Vec<u32> = (0..lease::SHARDS).collect();
    let mut racers = Vec::new();
    for name in ["a", "b", "c"] {
        let store = fixture.open().await;
        let all = all.clone();
        racers.push(tokio::spawn(async move {
            let (_, _) = store.heartbeat(name, &[], TTL).await.expect("join");
            (name, store.acquire(name, &all, TTL).await.expect("acquire"))
        }));
    }
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for r in racers {
        let (_, grants) = r.await.expect("task");
        total += grants.len();
        seen.extend(grants.iter().map(|g| g.shard));
    }
    assert_eq!(total, lease::SHARDS as usize, "each shard granted once");
    assert_eq!(seen.len(), lease::SHARDS as usize);
    let store = fixture.open().await;
    let (_, table) = store.heartbeat("a", &[], TTL).await.expect("heartbeat");
    assert_eq!(table.replicas, ["a", "b", "c"].map(String::from).to_vec());
    store.release("b", &[], true).await.expect("leave");
    let (_, table) = store.heartbeat("a", &[], TTL).await.expect("heartbeat");
    assert_eq!(table.replicas, ["a", "c"].map(String::from).to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_gone_for_ten_lease_times_are_forgotten() {
    let Some(fixture) = PgFixture::new() else {
        return;
    };
    let store = fixture.open().await;
    let ttl = Duration::from_millis(100);
    store.heartbeat("gone", &[], ttl).await.expect("heartbeat");
    store.heartbeat("live", &[], ttl).await.expect("heartbeat");
    // Expired but recent: still known.
    tokio::time::sleep(ttl * 3).await;
    store.heartbeat("live", &[], ttl).await.expect("heartbeat");
    assert_eq!(
        store.replica_rows().await.expect("rows"),
        vec!["gone".to_string(), "live".to_string()]
    );
    // Ten times to live later, the next heartbeat deletes it; the live one stays.
    tokio::time::sleep(ttl * 10).await;
    let (_, table) = store.heartbeat("live", &[], ttl).await.expect("heartbeat");
    assert_eq!(table.replicas, vec!["live".to_string()]);
    assert_eq!(
        store.replica_rows().await.expect("rows"),
        vec!["live".to_string()]
    );
}
