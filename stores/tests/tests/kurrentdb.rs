//! What only the KurrentDB backend has to get right, beyond the shared suites: a subscription
//! and a store handle that outlive a server restart (the subscription ends with a retryable
//! error and resumes from the last position handled, skipping and repeating nothing), and the
//! server's refusals kept apart from its absences, and the lease table's stream. Those that
//! restart the node run against the stand-in only; with `IONROLLER_KURRENTDB_URL` set they
//! are skipped, saying so.

mod support;

use futures::StreamExt;
use ionroller_shared::store::lease::Leases;
use ionroller_shared::store::*;
use ionroller_store_kurrentdb::{KurrentOptions, KurrentStore, LEASE_TABLES_KEPT};
use support::*;

/// A fixture whose node this test may restart.
fn restartable() -> Option<KurrentFixture> {
    let fixture = KurrentFixture::new()?;
    if fixture.standin.is_none() {
        eprintln!("*** SKIPPING: a real KurrentDB server cannot be restarted by the test ***");
        return None;
    }
    Some(fixture)
}

async fn next_message(
    sub: &mut futures::stream::BoxStream<'static, Result<SubscriptionMessage, StoreError>>,
) -> Option<Result<SubscriptionMessage, StoreError>> {
    tokio::time::timeout(std::time::Duration::from_secs(20), sub.next())
        .await
        .expect("the subscription answered within 20 s")
}

/// Events until `CaughtUp` (checkpoints ignored).
async fn until_caught_up(
    sub: &mut futures::stream::BoxStream<'static, Result<SubscriptionMessage, StoreError>>,
) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    loop {
        match next_message(sub).await {
            Some(Ok(SubscriptionMessage::Event(e))) => events.push(*e),
            Some(Ok(SubscriptionMessage::CaughtUp(_))) => return events,
            Some(Ok(SubscriptionMessage::Checkpoint(_))) => {}
            other => panic!("before catching up: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_resumes_across_a_server_restart_without_gaps_or_repeats() {
    let Some(mut fixture) = restartable() else {
        return;
    };
    let store = fixture.open().await;
    let s = stream("svc-restart");
    let first = store
        .append(&s, ExpectedRevision::NoStream, events(3, 0))
        .await
        .expect("append before the restart");
    let mut sub = store.subscribe_all(None, ReadFilter::all());
    let before = until_caught_up(&mut sub).await;
    assert_eq!(before.len(), 3);
    let handled = before[2].position;

    fixture
        .standin
        .as_mut()
        .expect("a stand-in")
        .restart()
        .expect("restart the node");
    // The open subscription notices, with an error a caller may retry, and ends.
    match next_message(&mut sub).await {
        Some(Err(e)) => assert!(e.is_retryable(), "not retryable: {e}"),
        other => panic!("expected the subscription to fail with the node: {other:?}"),
    }
    assert!(
        next_message(&mut sub).await.is_none(),
        "it ends after its error"
    );

    // The same handle reaches the restarted node, whose log survived.
    let mut appended = None;
    for _ in 0..50 {
        match store
            .append(
                &s,
                ExpectedRevision::Exact(first.last_revision),
                events(2, 3),
            )
            .await
        {
            Ok(r) => {
                appended = Some(r);
                break;
            }
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            Err(e) => panic!("append after the restart: {e}"),
        }
    }
    let appended = appended.expect("the store reached the restarted node");
    assert_eq!(appended.last_revision, Revision(4));

    // Resubscribed from the last position handled: exactly the two new events.
    let mut again = store.subscribe_all(Some(handled), ReadFilter::all());
    let after = until_caught_up(&mut again).await;
    let revisions: Vec<u64> = after.iter().map(|e| e.revision.0).collect();
    assert_eq!(revisions, vec![3, 4]);
    assert!(after[0].position > handled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused_and_a_missing_node_is_unavailable() {
    let Some(fixture) = restartable() else {
        return;
    };
    let url = fixture
        .standin
        .as_ref()
        .expect("a stand-in")
        .url
        .replace("admin:changeit", "admin:wrong");
    match KurrentStore::open(KurrentOptions::new(url)).await {
        Err(e @ StoreError::Refused(_)) => assert!(!e.is_retryable()),
        Err(other) => panic!("wrong credentials gave {other}"),
        Ok(_) => panic!("wrong credentials were accepted"),
    }
    let store = fixture.open().await;
    drop(fixture); // stops the node
    let gone = store
        .append(&stream("svc-gone"), ExpectedRevision::Any, events(1, 0))
        .await;
    assert!(
        matches!(&gone, Err(e) if e.is_retryable()),
        "a stopped node gave {gone:?}"
    );
}

/// Namespaces that are prefixes of each other (`""`, `p`, `p2`) on one node, beside another
/// application's stream and a record the server keeps under a stream's own name: each store
/// reads its own events only, and nothing foreign is taken for corrupt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_that_prefix_each_other_stay_apart() {
    let Some(fixture) = restartable() else {
        return;
    };
    let url = fixture.standin.as_ref().expect("a stand-in").url.clone();
    let open = |namespace: &str| KurrentStore::open(KurrentOptions::new(&url).namespace(namespace));
    let (root, p, p2) = (
        open("").await.expect("root"),
        open("p").await.expect("p"),
        open("p2").await.expect("p2"),
    );
    root.append(&stream("svc"), ExpectedRevision::NoStream, events(1, 0))
        .await
        .expect("root append");
    p.append(&stream("2svc"), ExpectedRevision::NoStream, events(2, 0))
        .await
        .expect("p append");
    p2.append(&stream("svc"), ExpectedRevision::NoStream, events(3, 0))
        .await
        .expect("p2 append");
    // Another application's event in the root namespace: no ionroller metadata at all.
    let foreign = kurrentdb::Client::new(url.parse().expect("settings")).expect("client");
    foreign
        .append_to_stream(
            "orders-1",
            &Default::default(),
            kurrentdb::EventData::json("order-placed", &serde_json::json!({"n": 1}))
                .expect("event"),
        )
        .await
        .expect("foreign append");
    for (store, streams, n) in [(&root, "svc", 1), (&p, "2svc", 2), (&p2, "svc", 3)] {
        let all = store
            .read_all(None, 100, &ReadFilter::all())
            .await
            .expect("read_all");
        assert_eq!(all.len(), n, "{}: {all:?}", store.describe());
        assert!(all.iter().all(|e| e.stream.as_str() == streams));
        let mut sub = store.subscribe_all(None, ReadFilter::all());
        assert_eq!(until_caught_up(&mut sub).await.len(), n);
    }
}

/// Every lease renewal is an event on KurrentDB: the lease stream keeps only the newest
/// tables readable (`$maxCount`, so a scavenge reclaims the rest), and no reader of the log's
/// events, in that namespace or in the default one, ever sees a table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_renewals_keep_only_the_newest_tables_and_stay_out_of_the_events() {
    let Some(fixture) = KurrentFixture::new() else {
        return;
    };
    let namespace = format!("l{}", uuid::Uuid::new_v4().simple());
    let store = KurrentStore::open(KurrentOptions::new(fixture.url()).namespace(&namespace))
        .await
        .expect("open");
    let ttl = std::time::Duration::from_secs(5);
    let grants = store.acquire("a", &[1, 2], ttl).await.expect("acquire");
    for _ in 0..(LEASE_TABLES_KEPT + 10) {
        let (renewed, _) = store.heartbeat("a", &grants, ttl).await.expect("heartbeat");
        assert_eq!(renewed, grants);
    }
    let client = kurrentdb::Client::new(fixture.url().parse().expect("settings")).expect("client");
    let lease_stream = format!("{namespace}%leases");
    let metadata = client
        .get_stream_metadata(lease_stream.as_str(), &Default::default())
        .await
        .expect("the lease stream's metadata");
    let kurrentdb::StreamMetadataResult::Success(metadata) = metadata else {
        panic!("no metadata on {lease_stream}: {metadata:?}");
    };
    assert_eq!(metadata.metadata().max_count, Some(LEASE_TABLES_KEPT));
    let mut read = client
        .read_stream(lease_stream.as_str(), &Default::default())
        .await
        .expect("read the lease stream");
    let mut readable = 0;
    while let Some(event) = read.next().await.expect("next") {
        readable += 1;
        assert_eq!(
            event.get_original_event().event_type,
            "ionroller-lease-table"
        );
    }
    assert_eq!(
        readable as u64, LEASE_TABLES_KEPT,
        "only the newest tables stay readable"
    );
    assert!(store
        .read_all(None, 100, &ReadFilter::all())
        .await
        .expect("read_all")
        .is_empty());
    assert_eq!(store.head().await.expect("head"), None);
    let root = KurrentStore::open(KurrentOptions::new(fixture.url()))
        .await
        .expect("open the default namespace");
    let seen = root
        .read_all(None, usize::MAX, &ReadFilter::all())
        .await
        .expect("read_all");
    assert!(seen.iter().all(|e| e.event_type != "ionroller-lease-table"));

    // Anything else written there is corrupt, never an empty table with every shard free.
    client
        .append_to_stream(
            lease_stream.as_str(),
            &Default::default(),
            kurrentdb::EventData::json("something-else", &serde_json::json!({})).expect("event"),
        )
        .await
        .expect("a foreign append");
    let refused = store.acquire("b", &[3], ttl).await;
    assert!(
        matches!(refused, Err(StoreError::Corrupt(_))),
        "{refused:?}"
    );
}
