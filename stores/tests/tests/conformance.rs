//! One conformance suite for every event-store backend. Each test is written once, in `suite`,
//! and instantiated per backend by `conformance!` below. Two promises only the SQL backends
//! keep are tested for them alone (`sql_backends!`), as the store trait's docs and
//! ARCHITECTURE's guarantees table say: a reused event id with another payload is refused
//! (KurrentDB answers with the first write), and a commit held open cannot be overtaken
//! (KurrentDB offers no such hook; its positions are the server's own).

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use ionroller_shared::store::testing::HoldCommit;
use ionroller_shared::store::*;
use ionroller_store_kurrentdb::KurrentStore;
use ionroller_store_postgres::{PgOptions, PgStore};
use ionroller_store_sqlite::{SqliteOptions, SqliteStore};
use serde_json::json;
use support::*;

#[async_trait]
trait Fixture: Send + Sync {
    type Store: EventStore + Clone;
    async fn open(&self) -> Self::Store;
    async fn open_with_limit(&self, max_append_bytes: usize) -> Self::Store;
}

#[async_trait]
impl Fixture for SqliteFixture {
    type Store = SqliteStore;
    async fn open(&self) -> SqliteStore {
        SqliteFixture::open(self).await
    }
    async fn open_with_limit(&self, max_append_bytes: usize) -> SqliteStore {
        self.open_with(SqliteOptions { max_append_bytes }).await
    }
}

#[async_trait]
impl Fixture for PgFixture {
    type Store = PgStore;
    async fn open(&self) -> PgStore {
        PgFixture::open(self).await
    }
    async fn open_with_limit(&self, max_append_bytes: usize) -> PgStore {
        let mut options = PgOptions::new("");
        options.max_append_bytes = max_append_bytes;
        self.open_with(options).await
    }
}

macro_rules! conformance {
    ($backend:ident, $fixture:expr, [$($test:ident),* $(,)?]) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    if let Some(fixture) = $fixture {
                        suite::$test(&fixture).await;
                    }
                }
            )*
        }
    };
}

#[async_trait]
impl Fixture for KurrentFixture {
    type Store = KurrentStore;
    async fn open(&self) -> KurrentStore {
        KurrentFixture::open(self).await
    }
    async fn open_with_limit(&self, max_append_bytes: usize) -> KurrentStore {
        self.open_with_limit(max_append_bytes).await
    }
}

macro_rules! all_backends {
    ($($test:ident),* $(,)?) => {
        conformance!(sqlite, SqliteFixture::new(), [$($test),*]);
        conformance!(postgres, PgFixture::new(), [$($test),*]);
        conformance!(kurrentdb, KurrentFixture::new(), [$($test),*]);
    };
}

macro_rules! sql_backends {
    ($($test:ident),* $(,)?) => {
        mod sql {
            use super::*;
            conformance!(sqlite, SqliteFixture::new(), [$($test),*]);
            conformance!(postgres, PgFixture::new(), [$($test),*]);
        }
    };
}

all_backends![
    expected_revision_rules,
    concurrent_exact_appends_have_one_winner,
    retry_is_idempotent,
    oversized_batch_writes_nothing,
    read_stream_forward_and_backward,
    events_round_trip_every_field,
    many_writers_read_all_exactly_once_in_order,
    read_all_filters_by_stream_prefix_and_type,
    subscription_resumes_after_reopen,
    filtered_subscription_checkpoints_past_other_events,
];

sql_backends![
    reused_ids_conflict,
    slow_commit_does_not_let_a_subscriber_skip,
];

mod suite {
    use super::*;

    fn wrong_actual(result: Result<AppendResult, StoreError>) -> Option<Revision> {
        match result {
            Err(StoreError::WrongExpectedRevision { actual, .. }) => actual,
            other => panic!("expected WrongExpectedRevision, got {other:?}"),
        }
    }

    pub async fn expected_revision_rules<F: Fixture>(f: &F) {
        let store = f.open().await;
        let s = stream("svc-a");
        assert_eq!(store.head().await.unwrap(), None);
        let first = store
            .append(&s, ExpectedRevision::NoStream, events(1, 0))
            .await
            .unwrap();
        assert_eq!(first.last_revision, Revision(0));
        assert_eq!(store.head().await.unwrap(), Some(first.position));
        let again = store
            .append(&s, ExpectedRevision::NoStream, events(1, 1))
            .await;
        assert_eq!(wrong_actual(again), Some(Revision(0)));
        let stale = store
            .append(&s, ExpectedRevision::Exact(Revision(5)), events(1, 1))
            .await;
        assert_eq!(wrong_actual(stale), Some(Revision(0)));
        let missing = store
            .append(
                &stream("svc-missing"),
                ExpectedRevision::StreamExists,
                events(1, 0),
            )
            .await;
        assert_eq!(wrong_actual(missing), None);
        let any = store
            .append(&s, ExpectedRevision::Any, events(2, 1))
            .await
            .unwrap();
        assert_eq!(any.last_revision, Revision(2));
        let exists = store
            .append(&s, ExpectedRevision::StreamExists, events(1, 3))
            .await
            .unwrap();
        let exact = store
            .append(
                &s,
                ExpectedRevision::Exact(exists.last_revision),
                events(1, 4),
            )
            .await
            .unwrap();
        assert_eq!(exact.last_revision, Revision(4));
        assert!(exact.position > exists.position);
        // Nothing the failed appends carried was written.
        let all = store.read_all(None, 100, &ReadFilter::all()).await.unwrap();
        assert_eq!(all.len(), 5);
    }

    pub async fn concurrent_exact_appends_have_one_winner<F: Fixture>(f: &F) {
        let store = f.open().await;
        let s = stream("race");
        store
            .append(&s, ExpectedRevision::NoStream, events(1, 0))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..16 {
            let store = store.clone();
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .append(&s, ExpectedRevision::Exact(Revision(0)), events(2, 10 * i))
                    .await
            }));
        }
        let mut wins = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(r) => {
                    wins += 1;
                    assert_eq!(r.last_revision, Revision(2));
                }
                Err(e) => assert_eq!(wrong_actual(Err(e)), Some(Revision(2))),
            }
        }
        assert_eq!(wins, 1, "exactly one concurrent Exact(0) append may win");
        let read = store
            .read_stream(&s, StreamRead::forward(100))
            .await
            .unwrap();
        assert_eq!(read.len(), 3);
    }

    pub async fn retry_is_idempotent<F: Fixture>(f: &F) {
        let store = f.open().await;
        let s = stream("idem");
        let batch = events(3, 0);
        let first = store
            .append(&s, ExpectedRevision::NoStream, batch.clone())
            .await
            .unwrap();
        // The same call again (an unknown outcome retried) succeeds without writing.
        let retry = store
            .append(&s, ExpectedRevision::NoStream, batch.clone())
            .await
            .unwrap();
        assert_eq!(retry, first);
        let next = store
            .append(
                &s,
                ExpectedRevision::Exact(first.last_revision),
                events(1, 3),
            )
            .await
            .unwrap();
        // A retry still succeeds after others appended, as long as the ids match in place.
        let late_retry = store
            .append(&s, ExpectedRevision::NoStream, batch.clone())
            .await
            .unwrap();
        assert_eq!(late_retry, first);
        // Ids that only partly match what is in place are no retry: refused, nothing written
        // (the SQL backends name the reused id, KurrentDB the stream's revision).
        let mut partly = batch.clone();
        partly[2] = event(EventId::random(), "t", json!({ "n": 2 }));
        let mismatch = store.append(&s, ExpectedRevision::NoStream, partly).await;
        assert!(
            matches!(
                mismatch,
                Err(StoreError::IdConflict { .. })
                    | Err(StoreError::WrongExpectedRevision {
                        actual: Some(Revision(3)),
                        ..
                    })
            ),
            "got {mismatch:?}"
        );
        let read = store
            .read_stream(&s, StreamRead::forward(100))
            .await
            .unwrap();
        assert_eq!(read.len(), 4);
        assert_eq!(read[3].position, next.position);
    }

    pub async fn reused_ids_conflict<F: Fixture>(f: &F) {
        let store = f.open().await;
        let s = stream("idem");
        let batch = events(3, 0);
        store
            .append(&s, ExpectedRevision::NoStream, batch.clone())
            .await
            .unwrap();
        // Same id, different payload: a conflict, nothing written.
        let mut tampered = batch.clone();
        tampered[1].data = json!({ "n": "other" });
        let conflict = store.append(&s, ExpectedRevision::Any, tampered).await;
        assert!(
            matches!(conflict, Err(StoreError::IdConflict { event_id, .. }) if event_id == batch[0].id || event_id == batch[1].id),
            "got {conflict:?}"
        );
        // Same ids in another stream: a conflict too.
        let elsewhere = store
            .append(&stream("idem-other"), ExpectedRevision::Any, batch.clone())
            .await;
        assert!(
            matches!(elsewhere, Err(StoreError::IdConflict { .. })),
            "got {elsewhere:?}"
        );
        let read = store
            .read_stream(&s, StreamRead::forward(100))
            .await
            .unwrap();
        assert_eq!(read.len(), 3);
        assert!(matches!(
            store
                .read_stream(&stream("idem-other"), StreamRead::forward(1))
                .await,
            Err(StoreError::StreamNotFound(_))
        ));
    }

    pub async fn oversized_batch_writes_nothing<F: Fixture>(f: &F) {
        let store = f.open_with_limit(4_000).await;
        let s = stream("big");
        let big = "x".repeat(1_500);
        let batch: Vec<NewEvent> = (0..3)
            .map(|i| event(EventId::random(), "t", json!({ "i": i, "pad": big })))
            .collect();
        let result = store.append(&s, ExpectedRevision::Any, batch).await;
        assert!(
            matches!(result, Err(StoreError::TooLarge { limit: 4_000, .. })),
            "got {result:?}"
        );
        assert_eq!(store.head().await.unwrap(), None);
        assert!(matches!(
            store.read_stream(&s, StreamRead::forward(10)).await,
            Err(StoreError::StreamNotFound(_))
        ));
        // A batch under the limit still goes through.
        store
            .append(&s, ExpectedRevision::Any, events(2, 0))
            .await
            .unwrap();
    }

    pub async fn read_stream_forward_and_backward<F: Fixture>(f: &F) {
        let store = f.open().await;
        let s = stream("pages");
        store
            .append(&s, ExpectedRevision::NoStream, events(4, 0))
            .await
            .unwrap();
        store
            .append(&stream("noise"), ExpectedRevision::Any, events(3, 0))
            .await
            .unwrap();
        store
            .append(&s, ExpectedRevision::Exact(Revision(3)), events(6, 4))
            .await
            .unwrap();
        let revisions = |events: Vec<RecordedEvent>| -> Vec<u64> {
            events.iter().map(|e| e.revision.0).collect()
        };
        let fwd = store
            .read_stream(&s, StreamRead::forward(4).from(Revision(3)))
            .await
            .unwrap();
        assert_eq!(revisions(fwd), vec![3, 4, 5, 6]);
        let back = store
            .read_stream(&s, StreamRead::backward(3))
            .await
            .unwrap();
        assert_eq!(revisions(back), vec![9, 8, 7]);
        let back_from = store
            .read_stream(&s, StreamRead::backward(10).from(Revision(2)))
            .await
            .unwrap();
        assert_eq!(revisions(back_from), vec![2, 1, 0]);
        let all = store
            .read_stream(&s, StreamRead::forward(100))
            .await
            .unwrap();
        assert_eq!(revisions(all.clone()), (0..10).collect::<Vec<_>>());
        assert!(all.windows(2).all(|w| w[0].position < w[1].position));
        let data: Vec<i64> = all.iter().map(|e| e.data["n"].as_i64().unwrap()).collect();
        assert_eq!(data, (0..10).collect::<Vec<_>>());
        // Past the end of an existing stream: empty, not "not found".
        let past = store
            .read_stream(&s, StreamRead::forward(5).from(Revision(10)))
            .await
            .unwrap();
        assert!(past.is_empty());
        assert!(matches!(
            store.read_stream(&stream("nobody"), StreamRead::backward(5)).await,
            Err(StoreError::StreamNotFound(ref id)) if id.as_str() == "nobody"
        ));
    }

    pub async fn events_round_trip_every_field<F: Fixture>(f: &F) {
        let store = f.open().await;
        let s = stream("svc/round-trip@1");
        let mut with_cause = event(
            EventId::random(),
            "release-requested",
            json!({ "version": "v2", "nested": { "list": [1, 2.5, null, "ü"], "flag": true } }),
        );
        with_cause.schema_version = 3;
        let mut without_cause = event(EventId::random(), "observed", json!(null));
        without_cause.metadata.causation_id = None;
        without_cause.metadata.actor = "roller".into();
        let before = chrono::Utc::now() - chrono::Duration::seconds(5);
        store
            .append(
                &s,
                ExpectedRevision::NoStream,
                vec![with_cause.clone(), without_cause.clone()],
            )
            .await
            .unwrap();
        let read = store
            .read_stream(&s, StreamRead::forward(10))
            .await
            .unwrap();
        for (got, sent) in read.iter().zip([&with_cause, &without_cause]) {
            assert_eq!(got.stream, s);
            assert_eq!(got.id, sent.id);
            assert_eq!(got.event_type, sent.event_type);
            assert_eq!(got.schema_version, sent.schema_version);
            assert_eq!(got.data, sent.data);
            assert_eq!(got.metadata, sent.metadata);
            assert!(
                got.recorded_at >= before,
                "recorded_at {} is too early",
                got.recorded_at
            );
        }
        let token = read[1].position.to_token();
        assert_eq!(Position::from_token(&token).unwrap(), read[1].position);
    }

    pub async fn many_writers_read_all_exactly_once_in_order<F: Fixture>(f: &F) {
        let store = f.open().await;
        let mut tasks = Vec::new();
        for writer in 0..8usize {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..40usize {
                    let s = stream(&format!("many-{}", (writer * 7 + i) % 10));
                    let batch = events(1 + i % 3, i);
                    ids.extend(batch.iter().map(|e| e.id));
                    store
                        .append(&s, ExpectedRevision::Any, batch)
                        .await
                        .unwrap();
                }
                ids
            }));
        }
        let mut written = HashSet::new();
        for task in tasks {
            written.extend(task.await.unwrap());
        }
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store.read_all(after, 37, &ReadFilter::all()).await.unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.position);
            seen.extend(page);
        }
        assert_eq!(seen.len(), written.len());
        let unique: HashSet<EventId> = seen.iter().map(|e| e.id).collect();
        assert_eq!(unique, written, "every event exactly once");
        assert!(seen.windows(2).all(|w| w[0].position < w[1].position));
        let mut next_revision: HashMap<StreamId, u64> = HashMap::new();
        for e in &seen {
            let expected = next_revision.entry(e.stream.clone()).or_default();
            assert_eq!(
                e.revision.0, *expected,
                "stream {} revisions in log order",
                e.stream
            );
            *expected += 1;
        }
    }

    pub async fn read_all_filters_by_stream_prefix_and_type<F: Fixture>(f: &F) {
        let store = f.open().await;
        for (name, ty) in [
            ("svc-a", "x"),
            ("svc-b", "y"),
            ("env-a", "x"),
            ("svc-a", "y"),
        ] {
            store
                .append(
                    &stream(name),
                    ExpectedRevision::Any,
                    vec![event(EventId::random(), ty, json!({}))],
                )
                .await
                .unwrap();
        }
        let pick = |events: Vec<RecordedEvent>| -> Vec<(String, String)> {
            events
                .into_iter()
                .map(|e| (e.stream.to_string(), e.event_type))
                .collect()
        };
        let svc = store
            .read_all(None, 10, &ReadFilter::stream_prefix("svc-"))
            .await
            .unwrap();
        assert_eq!(
            pick(svc),
            vec![
                ("svc-a".into(), "x".into()),
                ("svc-b".into(), "y".into()),
                ("svc-a".into(), "y".into())
            ]
        );
        let typed = ReadFilter {
            stream_prefix: None,
            event_types: vec!["x".into()],
        };
        let x = store.read_all(None, 10, &typed).await.unwrap();
        assert_eq!(
            pick(x),
            vec![("svc-a".into(), "x".into()), ("env-a".into(), "x".into())]
        );
        let both = ReadFilter {
            stream_prefix: Some("svc-".into()),
            event_types: vec!["y".into()],
        };
        let limited = store.read_all(None, 1, &both).await.unwrap();
        assert_eq!(pick(limited), vec![("svc-b".into(), "y".into())]);
        // A prefix with LIKE metacharacters is taken literally.
        let odd = store
            .read_all(None, 10, &ReadFilter::stream_prefix("svc%"))
            .await
            .unwrap();
        assert!(odd.is_empty());
    }

    /// Collects subscription messages until `CaughtUp`.
    async fn until_caught_up(
        sub: &mut (impl futures::Stream<Item = Result<SubscriptionMessage, StoreError>> + Unpin),
    ) -> (Vec<RecordedEvent>, Option<Position>) {
        let mut events = Vec::new();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), sub.next())
                .await
                .expect("subscription answers within 10 s")
                .expect("subscription is open")
                .expect("subscription works");
            match message {
                SubscriptionMessage::Event(e) => events.push(*e),
                SubscriptionMessage::CaughtUp(at) => return (events, at),
                SubscriptionMessage::Checkpoint(_) => {}
            }
        }
    }

    async fn next_events(
        sub: &mut (impl futures::Stream<Item = Result<SubscriptionMessage, StoreError>> + Unpin),
        n: usize,
    ) -> Vec<RecordedEvent> {
        let mut events = Vec::new();
        while events.len() < n {
            let message = tokio::time::timeout(Duration::from_secs(10), sub.next())
                .await
                .expect("live event arrives within 10 s")
                .expect("subscription is open")
                .expect("subscription works");
            match message {
                SubscriptionMessage::Event(e) => events.push(*e),
                SubscriptionMessage::CaughtUp(_) => panic!("CaughtUp must appear only once"),
                SubscriptionMessage::Checkpoint(_) => {}
            }
        }
        events
    }

    pub async fn slow_commit_does_not_let_a_subscriber_skip<F: Fixture>(f: &F)
    where
        F::Store: HoldCommit,
    {
        let store = f.open().await;
        store
            .append(&stream("before"), ExpectedRevision::Any, events(3, 0))
            .await
            .unwrap();
        let mut sub = store.subscribe_all(None, ReadFilter::all());
        let (history, caught_up) = until_caught_up(&mut sub).await;
        assert_eq!(history.len(), 3);
        assert_eq!(caught_up, Some(history[2].position));

        // One append's transaction stays open with its position allocated...
        let held_events = events(2, 100);
        let held = store
            .append_and_hold(
                &stream("slow"),
                ExpectedRevision::NoStream,
                held_events.clone(),
            )
            .await
            .unwrap();
        // ...while others try to commit.
        let mut others = Vec::new();
        for i in 0..6 {
            let store = store.clone();
            others.push(tokio::spawn(async move {
                store
                    .append(
                        &stream(&format!("fast-{i}")),
                        ExpectedRevision::NoStream,
                        events(1, i),
                    )
                    .await
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Nothing past the held append may be visible yet.
        let early = tokio::time::timeout(Duration::from_millis(700), sub.next()).await;
        assert!(
            early.is_err(),
            "a subscriber saw {early:?} while an earlier append was uncommitted"
        );
        assert!(store
            .read_all(caught_up, 100, &ReadFilter::all())
            .await
            .unwrap()
            .is_empty());

        let held_result = held.commit().await.unwrap();
        for task in others {
            task.await.unwrap().unwrap();
        }
        let live = next_events(&mut sub, 8).await;
        assert_eq!(live[0].id, held_events[0].id, "the slow append comes first");
        assert_eq!(live[1].position, held_result.position);
        assert!(live.windows(2).all(|w| w[0].position < w[1].position));
        assert!(history[2].position < live[0].position);
    }

    pub async fn subscription_resumes_after_reopen<F: Fixture>(f: &F) {
        let saved = {
            let store = f.open().await;
            store
                .append(&stream("r"), ExpectedRevision::NoStream, events(5, 0))
                .await
                .unwrap();
            let mut sub = store.subscribe_all(None, ReadFilter::all());
            let first = next_events(&mut sub, 3).await;
            first[2].position.to_token()
        };
        let store = f.open().await;
        store
            .append(
                &stream("r"),
                ExpectedRevision::Exact(Revision(4)),
                events(2, 5),
            )
            .await
            .unwrap();
        let after = Position::from_token(&saved).unwrap();
        let mut sub = store.subscribe_all(Some(after), ReadFilter::all());
        let (history, _) = until_caught_up(&mut sub).await;
        let ns: Vec<i64> = history
            .iter()
            .map(|e| e.data["n"].as_i64().unwrap())
            .collect();
        assert_eq!(
            ns,
            vec![3, 4, 5, 6],
            "resumes strictly after the saved position"
        );
        let writer = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            writer
                .append(
                    &stream("r"),
                    ExpectedRevision::Exact(Revision(6)),
                    events(1, 7),
                )
                .await
        });
        let live = next_events(&mut sub, 1).await;
        assert_eq!(live[0].data["n"], 7);
    }

    pub async fn filtered_subscription_checkpoints_past_other_events<F: Fixture>(f: &F) {
        let store = f.open().await;
        store
            .append(&stream("mine-1"), ExpectedRevision::Any, events(1, 0))
            .await
            .unwrap();
        let others = store
            .append(&stream("other"), ExpectedRevision::Any, events(4, 0))
            .await
            .unwrap();
        let mut sub = store.subscribe_all(None, ReadFilter::stream_prefix("mine-"));
        let mut seen = Vec::new();
        let checkpoint = loop {
            match sub.next().await.unwrap().unwrap() {
                SubscriptionMessage::Event(e) => seen.push(*e),
                SubscriptionMessage::Checkpoint(p) => break p,
                SubscriptionMessage::CaughtUp(_) => {
                    panic!("a checkpoint past the other events comes before CaughtUp")
                }
            }
        };
        assert_eq!(seen.len(), 1);
        assert_eq!(checkpoint, others.position);
        assert!(
            matches!(sub.next().await, Some(Ok(SubscriptionMessage::CaughtUp(Some(p)))) if p == others.position)
        );
        store
            .append(&stream("other"), ExpectedRevision::Any, events(1, 9))
            .await
            .unwrap();
        let mine = store
            .append(&stream("mine-2"), ExpectedRevision::Any, events(1, 1))
            .await
            .unwrap();
        let live = next_events(&mut sub, 1).await;
        assert_eq!(live[0].position, mine.position);
    }
}
