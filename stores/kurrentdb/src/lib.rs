//! The KurrentDB (formerly EventStoreDB) backend, for a log replicated across a cluster and
//! acknowledged by a quorum, through the `kurrentdb` gRPC client.
//!
//! - A stream of ours is a KurrentDB stream named `{namespace}{stream}`; the namespace (empty
//!   by default) lets several ionroller installations, or test runs, share one cluster, as a
//!   PostgreSQL schema does.
//! - Expected revisions map one to one (`NoStream`, `StreamExists`, `Exact(n)` as
//!   `StreamRevision(n)`, `Any`), and a wrong one comes back with the stream's actual revision.
//!   A retry with the same event ids at the same place is answered by the server with the
//!   original result (KurrentDB's idempotent writes).
//! - Positions are KurrentDB's `(commit, prepare)` pairs. `$all` holds the server's own
//!   `$`-streams and other namespaces' streams; every read and subscription of `$all` asks the
//!   server to filter by stream name (the namespace and any prefix asked for, or "not a
//!   `$`-stream"), and event types are matched here, so a rare filter still checkpoints.
//! - Reads of `$all` from a position include the event there; the trait's reads are exclusive,
//!   so that event is dropped here. Subscriptions are exclusive on the server already.
//!
//! What KurrentDB does not give, and the trait's other backends do (ARCHITECTURE's guarantees
//! table says the same): a reused event id with another payload is not detected (the server
//! answers with the first write's result, or writes it again after the stream moved on with
//! `Any`), `recorded_at` has whole seconds (the client drops the rest), and `Ok` from
//! `append` means acknowledged by a quorum of the cluster, which fsyncs by default.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt};
use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, EventData, ReadAllOptions, ReadStreamOptions,
    StreamPosition, StreamState, SubscribeToAllOptions, SubscriptionEvent, SubscriptionFilter,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use ionroller_shared::store::plan;
use ionroller_shared::store::{
    AppendResult, Direction, EventId, EventMetadata, EventStore, ExpectedRevision, NewEvent,
    Position, ReadFilter, RecordedEvent, Revision, StoreError, StreamId, StreamRead,
    SubscriptionMessage, DEFAULT_MAX_APPEND_BYTES,
};

/// How many events one `$all` page asks the server for when the caller wants "all of them".
const PAGE: usize = 512;

#[derive(Clone, Debug)]
pub struct KurrentOptions {
    /// A connection string as KurrentDB's clients take it, e.g.
    /// `kurrentdb://admin:changeit@localhost:2113?tls=false` or
    /// `kurrentdb+discover://admin:changeit@cluster.example.com:2113?nodePreference=leader`.
    pub url: String,
    /// Prefix of every stream this store writes and reads (default empty).
    pub namespace: String,
    pub max_append_bytes: usize,
}

impl KurrentOptions {
    pub fn new(url: impl Into<String>) -> Self {
        KurrentOptions {
            url: url.into(),
            namespace: String::new(),
            max_append_bytes: DEFAULT_MAX_APPEND_BYTES,
        }
    }

    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }
}

/// A handle to one KurrentDB log. Cheap to clone.
#[derive(Clone)]
pub struct KurrentStore {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ClientSettings,
    /// Replaced when the client reports itself closed: a client whose first connection
    /// failed never connects again, and a server restarted later must still be reached.
    client: RwLock<Client>,
    options: KurrentOptions,
}

/// What ionroller keeps beside each event, as the event's custom metadata (JSON).
#[derive(Serialize, Deserialize)]
struct StoredMetadata {
    #[serde(default = "first_schema")]
    schema_version: u32,
    actor: String,
    correlation_id: Uuid,
    #[serde(default)]
    causation_id: Option<Uuid>,
    occurred_at: DateTime<Utc>,
}

fn first_schema() -> u32 {
    1
}

impl KurrentStore {
    /// Connects and checks that the server answers.
    pub async fn open(options: KurrentOptions) -> Result<Self, StoreError> {
        if options.namespace.starts_with('$') {
            return Err(StoreError::InvalidStreamId {
                name: options.namespace,
                why: "a namespace must not start with '$' (KurrentDB's system streams)".into(),
            });
        }
        let settings: ClientSettings = options.url.parse().map_err(|e| {
            StoreError::Unavailable(format!("invalid KurrentDB connection string: {e}"))
        })?;
        let client = Client::new(settings.clone())
            .map_err(|e| StoreError::Unavailable(format!("KurrentDB client: {e}")))?;
        let store = KurrentStore {
            inner: Arc::new(Inner {
                settings,
                client: RwLock::new(client),
                options,
            }),
        };
        store.head().await?;
        Ok(store)
    }

    fn client(&self) -> Result<Client, StoreError> {
        self.inner
            .client
            .read()
            .map(|c| c.clone())
            .map_err(|_| StoreError::Unavailable("KurrentDB client lock poisoned".into()))
    }

    /// Maps a client error, renewing the client when it has closed for good.
    fn failed(&self, e: kurrentdb::Error) -> StoreError {
        if matches!(
            e,
            kurrentdb::Error::ConnectionClosed | kurrentdb::Error::GrpcConnectionError(_)
        ) {
            if let (Ok(fresh), Ok(mut client)) = (
                Client::new(self.inner.settings.clone()),
                self.inner.client.write(),
            ) {
                *client = fresh;
            }
        }
        store_error(e)
    }

    fn stored_name(&self, stream: &StreamId) -> String {
        format!("{}{}", self.inner.options.namespace, stream.as_str())
    }

    /// The server-side filter every `$all` read and subscription uses: by stream name, so
    /// the server's `$`-streams and other namespaces never reach us.
    fn server_filter(&self, filter: &ReadFilter) -> SubscriptionFilter {
        let prefix = format!(
            "{}{}",
            self.inner.options.namespace,
            filter.stream_prefix.as_deref().unwrap_or("")
        );
        if prefix.is_empty() {
            SubscriptionFilter::on_stream_name().exclude_system_events()
        } else {
            SubscriptionFilter::on_stream_name().add_prefix(prefix)
        }
    }

    /// Our event, if `resolved` is one of this store's (in the namespace) that `filter` takes.
    fn ours(
        &self,
        recorded: &kurrentdb::RecordedEvent,
        filter: &ReadFilter,
    ) -> Result<Option<RecordedEvent>, StoreError> {
        let Some(name) = recorded
            .stream_id()
            .strip_prefix(self.inner.options.namespace.as_str())
        else {
            return Ok(None);
        };
        if name.starts_with('$') {
            return Ok(None);
        }
        let event = decode(name, recorded)?;
        Ok(filter.matches(&event).then_some(event))
    }
}

fn position_of(p: kurrentdb::Position) -> Position {
    Position::new(p.commit, p.prepare)
}

fn to_kurrent(p: Position) -> kurrentdb::Position {
    kurrentdb::Position {
        commit: p.commit(),
        prepare: p.prepare(),
    }
}

/// Where to start reading `$all` for "after `after`": KurrentDB takes positions, and the
/// start of the log is its own option.
fn start_of(after: Option<Position>) -> StreamPosition<kurrentdb::Position> {
    match after {
        None => StreamPosition::Start,
        Some(p) if p == Position::START => StreamPosition::Start,
        Some(p) => StreamPosition::Position(to_kurrent(p)),
    }
}

fn state_of(expected: ExpectedRevision) -> StreamState {
    match expected {
        ExpectedRevision::Any => StreamState::Any,
        ExpectedRevision::NoStream => StreamState::NoStream,
        ExpectedRevision::StreamExists => StreamState::StreamExists,
        ExpectedRevision::Exact(Revision(n)) => StreamState::StreamRevision(n),
    }
}

/// KurrentDB's errors as the store's: what may pass on retrying is `Unavailable`, what the
/// server refused is not.
fn store_error(e: kurrentdb::Error) -> StoreError {
    use kurrentdb::Error as K;
    match e {
        K::ServerError(_)
        | K::NotLeaderException(_)
        | K::ConnectionClosed
        | K::DeadlineExceeded
        | K::GrpcConnectionError(_) => StoreError::Unavailable(format!("KurrentDB: {e}")),
        K::Grpc {
            code:
                tonic::Code::Unavailable
                | tonic::Code::Aborted
                | tonic::Code::ResourceExhausted
                | tonic::Code::Cancelled,
            ..
        } => StoreError::Unavailable(format!("KurrentDB: {e}")),
        K::AccessDenied => StoreError::Refused(
            "KurrentDB denied access: check the user and password in the connection string \
             (reading $all needs an admin or ops user)"
                .into(),
        ),
        other => StoreError::Refused(format!("KurrentDB: {other}")),
    }
}

fn decode(name: &str, recorded: &kurrentdb::RecordedEvent) -> Result<RecordedEvent, StoreError> {
    let corrupt = |why: String| {
        StoreError::Corrupt(format!(
            "KurrentDB event {} in {}: {why}",
            recorded.id,
            recorded.stream_id()
        ))
    };
    let meta: StoredMetadata = serde_json::from_slice(&recorded.custom_metadata)
        .map_err(|e| corrupt(format!("its metadata is not ionroller's: {e}")))?;
    Ok(RecordedEvent {
        stream: StreamId::new(name).map_err(|e| corrupt(e.to_string()))?,
        revision: Revision(recorded.revision),
        position: position_of(recorded.position),
        recorded_at: recorded.created,
        id: EventId(recorded.id),
        event_type: recorded.event_type.clone(),
        schema_version: meta.schema_version,
        data: serde_json::from_slice(&recorded.data)
            .map_err(|e| corrupt(format!("its data is not JSON: {e}")))?,
        metadata: EventMetadata {
            actor: meta.actor,
            correlation_id: meta.correlation_id,
            causation_id: meta.causation_id,
            occurred_at: meta.occurred_at,
        },
    })
}

fn encode(event: &NewEvent) -> Result<EventData, StoreError> {
    let meta = StoredMetadata {
        schema_version: event.schema_version,
        actor: event.metadata.actor.clone(),
        correlation_id: event.metadata.correlation_id,
        causation_id: event.metadata.causation_id,
        occurred_at: event.metadata.occurred_at,
    };
    let invalid = |e: serde_json::Error| StoreError::InvalidAppend(e.to_string());
    EventData::json(&event.event_type, &event.data)
        .map_err(invalid)?
        .id(event.id.0)
        .metadata_as_json(&meta)
        .map_err(invalid)
}

#[async_trait]
impl EventStore for KurrentStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        // The same checks as every backend (non-empty, no id twice, the size limit) before
        // anything is sent.
        plan::prepare(
            stream,
            expected,
            events.clone(),
            self.inner.options.max_append_bytes,
        )?;
        let data = events.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
        let options = AppendToStreamOptions::default().stream_state(state_of(expected));
        let client = self.client()?;
        match client
            .append_to_stream(self.stored_name(stream), &options, data)
            .await
        {
            Ok(written) => Ok(AppendResult {
                last_revision: Revision(written.next_expected_version),
                position: position_of(written.position),
            }),
            Err(kurrentdb::Error::WrongExpectedVersion { current, .. }) => {
                Err(StoreError::WrongExpectedRevision {
                    stream: stream.clone(),
                    expected,
                    actual: match current {
                        kurrentdb::CurrentRevision::Current(n) => Some(Revision(n)),
                        kurrentdb::CurrentRevision::NoStream => None,
                    },
                })
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        read: StreamRead,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // `position` first: it sets a direction of its own, which the direction then overrides.
        let options = ReadStreamOptions::default()
            .position(match read.from {
                Some(Revision(n)) => StreamPosition::Position(n),
                None if read.direction == Direction::Forward => StreamPosition::Start,
                None => StreamPosition::End,
            })
            .max_count(read.limit);
        let options = match read.direction {
            Direction::Forward => options.forwards(),
            Direction::Backward => options.backwards(),
        };
        let client = self.client()?;
        let mut page = match client.read_stream(self.stored_name(stream), &options).await {
            Ok(page) => page,
            Err(kurrentdb::Error::ResourceNotFound) => {
                return Err(StoreError::StreamNotFound(stream.clone()))
            }
            Err(e) => return Err(self.failed(e)),
        };
        let mut events = Vec::new();
        loop {
            match page.next().await {
                Ok(Some(resolved)) => {
                    events.push(decode(stream.as_str(), resolved.get_original_event())?)
                }
                Ok(None) => break,
                Err(kurrentdb::Error::ResourceNotFound) => {
                    return Err(StoreError::StreamNotFound(stream.clone()))
                }
                Err(e) => return Err(self.failed(e)),
            }
        }
        if events.is_empty() && read.from.is_none() {
            return Err(StoreError::StreamNotFound(stream.clone()));
        }
        Ok(events)
    }

    async fn read_all(
        &self,
        after: Option<Position>,
        limit: usize,
        filter: &ReadFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = Vec::new();
        let mut from = after;
        let client = self.client()?;
        while events.len() < limit {
            // One more than wanted: a read from a position includes the event there.
            let want = (limit - events.len()).min(PAGE) + 1;
            let options = ReadAllOptions::default()
                .position(start_of(from))
                .forwards()
                .max_count(want)
                .filter(self.server_filter(filter));
            let mut page = client
                .read_all(&options)
                .await
                .map_err(|e| self.failed(e))?;
            let mut got = 0;
            while let Some(resolved) = page.next().await.map_err(|e| self.failed(e))? {
                let recorded = resolved.get_original_event();
                let position = position_of(recorded.position);
                got += 1;
                if from.is_some_and(|f| position <= f) {
                    continue;
                }
                from = Some(position);
                if let Some(event) = self.ours(recorded, filter)? {
                    events.push(event);
                    if events.len() == limit {
                        break;
                    }
                }
            }
            if got < want {
                break; // the end of the log
            }
        }
        Ok(events)
    }

    fn subscribe_all(
        &self,
        after: Option<Position>,
        filter: ReadFilter,
    ) -> BoxStream<'static, Result<SubscriptionMessage, StoreError>> {
        let store = self.clone();
        let client = match self.client() {
            Ok(client) => client,
            Err(e) => return futures::stream::once(async move { Err(e) }).boxed(),
        };
        // No client-side retries: the trait's subscriptions end after an error, and the
        // caller resubscribes from the last position it handled.
        let options = SubscribeToAllOptions::default()
            .position(start_of(after))
            .filter(store.server_filter(&filter));
        struct State {
            store: KurrentStore,
            client: Client,
            options: SubscribeToAllOptions,
            subscription: Option<kurrentdb::Subscription>,
            filter: ReadFilter,
            last: Option<Position>,
            failed: bool,
        }
        let state = State {
            store,
            client,
            options,
            subscription: None,
            filter,
            last: after,
            failed: false,
        };
        futures::stream::unfold(state, |mut st| async move {
            if st.failed {
                return None;
            }
            if st.subscription.is_none() {
                st.subscription = Some(st.client.subscribe_to_all(&st.options).await);
            }
            let subscription = st.subscription.as_mut()?;
            loop {
                let message = match subscription.next_subscription_event().await {
                    Ok(SubscriptionEvent::EventAppeared(resolved)) => {
                        let recorded = resolved.get_original_event();
                        let position = position_of(recorded.position);
                        st.last = Some(position);
                        match st.store.ours(recorded, &st.filter) {
                            Ok(Some(event)) => Ok(SubscriptionMessage::Event(Box::new(event))),
                            // Matched the server's filter but not the event types.
                            Ok(None) => Ok(SubscriptionMessage::Checkpoint(position)),
                            Err(e) => Err(e),
                        }
                    }
                    Ok(SubscriptionEvent::Checkpoint(p)) => {
                        let position = position_of(p);
                        if st.last.is_some_and(|l| position <= l) {
                            continue;
                        }
                        st.last = Some(position);
                        Ok(SubscriptionMessage::Checkpoint(position))
                    }
                    Ok(SubscriptionEvent::CaughtUp(up)) => {
                        let reported = up.and_then(|u| u.position).map(position_of);
                        if reported > st.last {
                            st.last = reported;
                        }
                        Ok(SubscriptionMessage::CaughtUp(st.last))
                    }
                    Ok(_) => continue,
                    Err(e) => Err(st.store.failed(e)),
                };
                st.failed = message.is_err();
                return Some((message, st));
            }
        })
        .boxed()
    }

    async fn head(&self) -> Result<Option<Position>, StoreError> {
        let options = ReadAllOptions::default()
            .position(StreamPosition::End)
            .backwards()
            .max_count(1)
            .filter(self.server_filter(&ReadFilter::all()));
        let client = self.client()?;
        let mut page = client
            .read_all(&options)
            .await
            .map_err(|e| self.failed(e))?;
        let last = page.next().await.map_err(|e| self.failed(e))?;
        Ok(last.map(|resolved| position_of(resolved.get_original_event().position)))
    }

    fn describe(&self) -> String {
        // The connection string without its user and password.
        let url = &self.inner.options.url;
        let shown = match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}{}", &url[..scheme + 3], &url[at + 1..])
            }
            _ => url.clone(),
        };
        if self.inner.options.namespace.is_empty() {
            format!("KurrentDB at {shown}")
        } else {
            format!(
                "KurrentDB at {shown}, streams prefixed {:?}",
                self.inner.options.namespace
            )
        }
    }
}

#[cfg(feature = "testing")]
pub mod testing;
