//! Model-based property test: random sequences of appends, retries and reads against each
//! backend and against an in-memory reference model must agree on every outcome.

mod support;

use std::sync::OnceLock;

use ionroller_shared::store::*;
use proptest::prelude::*;
use support::*;

const STREAMS: usize = 3;

#[derive(Clone, Debug)]
enum Expect {
    Any,
    NoStream,
    StreamExists,
    /// The stream's current revision (or 0 when it has none).
    Current,
    /// The current revision shifted by -2..=2: usually stale or ahead.
    Off(i64),
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        stream: usize,
        expect: Expect,
        n: usize,
    },
    /// The last successful append again, with the same ids and expectation.
    RetryLast,
    ReadStream {
        stream: usize,
        backward: bool,
        from: Option<u64>,
        limit: usize,
    },
    ReadAll {
        after: Option<usize>,
        limit: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let expect = prop_oneof![
        Just(Expect::Any),
        Just(Expect::NoStream),
        Just(Expect::StreamExists),
        Just(Expect::Current),
        (-2i64..=2).prop_map(Expect::Off),
    ];
    prop_oneof![
        4 => (0..STREAMS, expect, 1usize..4).prop_map(|(stream, expect, n)| Op::Append { stream, expect, n }),
        1 => Just(Op::RetryLast),
        2 => (0..STREAMS, any::<bool>(), proptest::option::of(0u64..8), 1usize..6)
            .prop_map(|(stream, backward, from, limit)| Op::ReadStream { stream, backward, from, limit }),
        1 => (proptest::option::of(0usize..20), 1usize..8).prop_map(|(after, limit)| Op::ReadAll { after, limit }),
    ]
}

/// The reference: the log as a list of (stream, revision, id) in commit order.
#[derive(Default)]
struct Model {
    log: Vec<(usize, u64, EventId)>,
    last_ok: Option<(usize, ExpectedRevision, Vec<NewEvent>, AppendResult)>,
}

impl Model {
    fn head(&self, stream: usize) -> Option<Revision> {
        self.log
            .iter()
            .filter(|e| e.0 == stream)
            .map(|e| Revision(e.1))
            .next_back()
    }
}

fn name(stream: usize) -> StreamId {
    support::stream(&format!("model-{stream}"))
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Runtime::new().expect("test runtime"))
}

async fn run(store: &dyn EventStore, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Append { stream, expect, n } => {
                let head = model.head(*stream);
                let expected = match expect {
                    Expect::Any => ExpectedRevision::Any,
                    Expect::NoStream => ExpectedRevision::NoStream,
                    Expect::StreamExists => ExpectedRevision::StreamExists,
                    Expect::Current => ExpectedRevision::Exact(head.unwrap_or(Revision(0))),
                    Expect::Off(d) => {
                        let base = head.map_or(0, |r| r.0 as i64);
                        ExpectedRevision::Exact(Revision((base + d).max(0) as u64))
                    }
                };
                let batch = events(*n, step * 10);
                let got = store.append(&name(*stream), expected, batch.clone()).await;
                if expected.admits(head) {
                    let result =
                        got.map_err(|e| TestCaseError::fail(format!("step {step}: {e}")))?;
                    let first = head.map_or(0, |r| r.0 + 1);
                    prop_assert_eq!(result.last_revision, Revision(first + *n as u64 - 1));
                    for (i, e) in batch.iter().enumerate() {
                        model.log.push((*stream, first + i as u64, e.id));
                    }
                    model.last_ok = Some((*stream, expected, batch, result));
                } else {
                    match got {
                        Err(StoreError::WrongExpectedRevision { actual, .. }) => {
                            prop_assert_eq!(actual, head)
                        }
                        other => prop_assert!(
                            false,
                            "step {}: expected WrongExpectedRevision, got {:?}",
                            step,
                            other
                        ),
                    }
                }
            }
            Op::RetryLast => {
                if let Some((stream, expected, batch, result)) = model.last_ok.clone() {
                    let got = store.append(&name(stream), expected, batch).await;
                    prop_assert_eq!(
                        got.ok(),
                        Some(result),
                        "step {}: a retry is a no-op success",
                        step
                    );
                }
            }
            Op::ReadStream {
                stream,
                backward,
                from,
                limit,
            } => {
                let mut read = if *backward {
                    StreamRead::backward(*limit)
                } else {
                    StreamRead::forward(*limit)
                };
                read.from = from.map(Revision);
                let got = store.read_stream(&name(*stream), read).await;
                let mut want: Vec<(u64, EventId)> = model
                    .log
                    .iter()
                    .filter(|e| e.0 == *stream)
                    .filter(|e| match (from, backward) {
                        (None, _) => true,
                        (Some(f), false) => e.1 >= *f,
                        (Some(f), true) => e.1 <= *f,
                    })
                    .map(|e| (e.1, e.2))
                    .collect();
                if *backward {
                    want.reverse();
                }
                want.truncate(*limit);
                if model.head(*stream).is_none() {
                    prop_assert!(
                        matches!(got, Err(StoreError::StreamNotFound(_))),
                        "step {}: {:?}",
                        step,
                        got
                    );
                } else {
                    let got: Vec<(u64, EventId)> = got
                        .map_err(|e| TestCaseError::fail(format!("step {step}: {e}")))?
                        .iter()
                        .map(|e| (e.revision.0, e.id))
                        .collect();
                    prop_assert_eq!(got, want);
                }
            }
            Op::ReadAll { after, limit } => {
                let everything = store
                    .read_all(None, usize::MAX, &ReadFilter::all())
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let ids: Vec<EventId> = everything.iter().map(|e| e.id).collect();
                let model_ids: Vec<EventId> = model.log.iter().map(|e| e.2).collect();
                prop_assert_eq!(&ids, &model_ids, "step {}: the whole log", step);
                prop_assert!(everything.windows(2).all(|w| w[0].position < w[1].position));
                let (after_position, skip) = match after {
                    Some(i) if *i < everything.len() => (Some(everything[*i].position), i + 1),
                    _ => (None, 0),
                };
                let page = store
                    .read_all(after_position, *limit, &ReadFilter::all())
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let page: Vec<EventId> = page.iter().map(|e| e.id).collect();
                let want: Vec<EventId> =
                    model_ids.iter().skip(skip).take(*limit).copied().collect();
                prop_assert_eq!(page, want, "step {}: page after {:?}", step, after);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
    #[test]
    fn sqlite_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let fixture = SqliteFixture::new().expect("temporary directory");
        runtime().block_on(async {
            let store = fixture.open().await;
            run(&store, &ops).await
        })?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
    #[test]
    fn postgres_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        if let Some(fixture) = PgFixture::new() {
            runtime().block_on(async {
                let store = fixture.open().await;
                run(&store, &ops).await
            })?;
        }
    }
}

/// One KurrentDB (the stand-in, or the real server) for every case, each case in a namespace
/// of its own: starting a node per case would cost more than the cases.
#[test]
fn kurrentdb_agrees_with_the_model() {
    let Some(server) = KurrentFixture::new() else {
        return;
    };
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 16,
        ..ProptestConfig::default()
    });
    let outcome = runner.run(&proptest::collection::vec(op(), 1..40), |ops| {
        runtime().block_on(async {
            let store = server.open_fresh().await;
            run(&store, &ops).await
        })
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
}
