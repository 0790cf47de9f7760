//! The KurrentDB (formerly EventStoreDB) backend, for a log replicated across a cluster and
//! acknowledged by a quorum, through the `kurrentdb` gRPC client.
//!
//! - A stream of ours is the KurrentDB stream `{namespace}#{stream}`, or `{stream}` in the
//!   default, empty namespace. `#` appears in no stream id of ours and in no namespace, so
//!   namespaces that are prefixes of each other (`p`, `p2`) still name different streams, and
//!   several ionroller installations, or test runs, share one cluster as PostgreSQL schemas
//!   share a database. Each event's metadata also names its namespace, and only events of
//!   this store's namespace are read as its own.
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
//!
//! Shard leases, for several roller replicas on one log, are in `leases.rs`: a table in a
//! stream of its own, changed by compare-and-set, expiry judged by each reader's monotonic
//! clock, and a fence checked by a read before the append rather than in the same write.

use std::sync::{Arc, Mutex, RwLock};

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
    SubscriptionMessage,
};

/// How many events one `$all` page asks the server for when the caller wants "all of them".
const PAGE: usize = 512;
/// KurrentDB refuses appends over 1 MiB up to 25.0 (its default `MaxAppendSize`), counting
/// its own framing too; checked here first, an append over it is `TooLarge` (a 413 at the
/// API) rather than a refusal from the server.
pub const DEFAULT_KURRENTDB_MAX_APPEND_BYTES: usize = 1024 * 1024 - 64 * 1024;

#[derive(Clone, Debug)]
pub struct KurrentOptions {
    /// A connection string as KurrentDB's clients take it, e.g.
    /// `kurrentdb://admin:changeit@localhost:2113?tls=false` or
    /// `kurrentdb+discover://admin:changeit@cluster.example.com:2113?nodePreference=leader`.
    pub url: String,
    /// Names this installation's streams apart from others on the cluster (default empty).
    pub namespace: String,
    pub max_append_bytes: usize,
}

impl KurrentOptions {
    pub fn new(url: impl Into<String>) -> Self {
        KurrentOptions {
            url: url.into(),
            namespace: String::new(),
            max_append_bytes: DEFAULT_KURRENTDB_MAX_APPEND_BYTES,
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
    client: RwLock<Arc<Client>>,
    options: KurrentOptions,
    /// When this process first saw each lease renewal (`leases.rs`).
    sightings: Mutex<leases::Sightings>,
}

/// What ionroller keeps beside each event, as the event's custom metadata (JSON).
#[derive(Serialize, Deserialize)]
struct StoredMetadata {
    /// The namespace the event was written in, so that an event another writer put under a
    /// name of ours is not taken for one of ours.
    ionroller_namespace: String,
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
        let ns = &options.namespace;
        if ns.starts_with('$')
            || ns
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || "-_.:/@".contains(c)))
        {
            return Err(StoreError::InvalidStreamId {
                name: ns.clone(),
                why: "a namespace takes ASCII letters, digits and -_.:/@ and must not start \
                      with '$' (KurrentDB's system streams)"
                    .into(),
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
                client: RwLock::new(Arc::new(client)),
                options,
                sightings: Mutex::default(),
            }),
        };
        store.head().await?;
        Ok(store)
    }

    fn client(&self) -> Result<Arc<Client>, StoreError> {
        self.inner
            .client
            .read()
            .map(|c| c.clone())
            .map_err(|_| StoreError::Unavailable("KurrentDB client lock poisoned".into()))
    }

    /// Maps an error of `used`, replacing that client when it cannot recover by itself: one
    /// whose first connection failed never connects again, and one whose node went away keeps
    /// calling that node (the client only moves on a not-leader answer, which a dead node
    /// never gives), so a fresh client, which asks the cluster again, takes its place. Only
    /// the client that failed is replaced, never one another call already renewed.
    fn failed(&self, used: &Arc<Client>, e: kurrentdb::Error) -> StoreError {
        if matches!(
            e,
            kurrentdb::Error::ConnectionClosed
                | kurrentdb::Error::GrpcConnectionError(_)
                | kurrentdb::Error::ServerError(_)
        ) {
            if let Ok(mut client) = self.inner.client.write() {
                if Arc::ptr_eq(&client, used) {
                    match Client::new(self.inner.settings.clone()) {
                        Ok(fresh) => *client = Arc::new(fresh),
                        Err(why) => tracing::warn!(error = %why, "renewing the KurrentDB client"),
                    }
                }
            }
        }
        store_error(e)
    }

    /// The server's name for our `stream`.
    fn stored_name(&self, stream: &StreamId) -> String {
        match self.inner.options.namespace.as_str() {
            "" => stream.as_str().to_string(),
            ns => format!("{ns}#{}", stream.as_str()),
        }
    }

    /// Our name for the server's stream `name`, if it is in this store's namespace.
    fn our_name<'a>(&self, name: &'a str) -> Option<&'a str> {
        match self.inner.options.namespace.as_str() {
            "" => (!name.contains('#')).then_some(name),
            ns => name.strip_prefix(ns)?.strip_prefix('#'),
        }
    }

    /// The server-side filter every `$all` read and subscription uses: by stream name, so
    /// the server's `$`-streams and other namespaces never reach us.
    fn server_filter(&self, filter: &ReadFilter) -> SubscriptionFilter {
        let prefix = match self.inner.options.namespace.as_str() {
            "" => filter.stream_prefix.clone().unwrap_or_default(),
            ns => format!("{ns}#{}", filter.stream_prefix.as_deref().unwrap_or("")),
        };
        if prefix.is_empty() {
            // Not the server's `$`-streams, nor a lease table (`%` is in no name of ours).
            SubscriptionFilter::on_stream_name().regex("^[^$%][^%]*$")
        } else {
            SubscriptionFilter::on_stream_name().add_prefix(prefix)
        }
    }

    /// Our event, if `recorded` is one of this store's that `filter` takes. Streams of the
    /// server (`$`), records it keeps under a stream's own name (such as a deletion's
    /// `$streamDeleted`), other applications' events and other namespaces' events (their
    /// metadata names another namespace, or is not ionroller's) are not ours, and skipped.
    fn ours(
        &self,
        recorded: &kurrentdb::RecordedEvent,
        filter: &ReadFilter,
    ) -> Result<Option<RecordedEvent>, StoreError> {
        let namespace = self.inner.options.namespace.as_str();
        let Some(name) = self.our_name(recorded.stream_id()) else {
            return Ok(None);
        };
        if name.starts_with('$') || recorded.event_type.starts_with('$') {
            return Ok(None);
        }
        let written_in = serde_json::from_slice::<serde_json::Value>(&recorded.custom_metadata)
            .ok()
            .and_then(|m| m.get("ionroller_namespace")?.as_str().map(str::to_string));
        if written_in.as_deref() != Some(namespace) {
            return Ok(None);
        }
        // Ours: from here on, anything undecodable is corrupt, never skipped.
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

/// A position this log can have given out: KurrentDB's commit is never below its prepare
/// (the SQL backends' positions, `(sequence, 0)`, pass; a real server answers anything else
/// with an error its client reports as retryable, so it is refused here instead).
fn checked(after: Option<Position>) -> Result<Option<Position>, StoreError> {
    match after {
        Some(p) if p.commit() < p.prepare() => Err(StoreError::InvalidPosition {
            token: p.to_token(),
        }),
        other => Ok(other),
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
             (reading $all needs an admin user, or one granted read on $all)"
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

fn encode(namespace: &str, event: &NewEvent) -> Result<EventData, StoreError> {
    let meta = StoredMetadata {
        ionroller_namespace: namespace.to_string(),
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
        let namespace = self.inner.options.namespace.as_str();
        let data = events
            .iter()
            .map(|e| encode(namespace, e))
            .collect::<Result<Vec<_>, _>>()?;
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
            Err(e) => Err(self.failed(&client, e)),
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
            Err(e) => return Err(self.failed(&client, e)),
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
                Err(e) => return Err(self.failed(&client, e)),
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
        let mut from = checked(after)?;
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
                .map_err(|e| self.failed(&client, e))?;
            let mut got = 0;
            while let Some(resolved) = page.next().await.map_err(|e| self.failed(&client, e))? {
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
        let after = match checked(after) {
            Ok(after) => after,
            Err(e) => return futures::stream::once(async move { Err(e) }).boxed(),
        };
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
            client: Arc<Client>,
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
                    Err(e) => Err(st.store.failed(&st.client, e)),
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
            .map_err(|e| self.failed(&client, e))?;
        let last = page.next().await.map_err(|e| self.failed(&client, e))?;
        Ok(last.map(|resolved| position_of(resolved.get_original_event().position)))
    }

    fn describe(&self) -> String {
        // The connection string without its user and password.
        let url = &self.inner.options.url;
        // The user and password sit between `://` and the last `@` before the path or query.
        let shown = match url.find("://") {
            Some(scheme) => {
                let rest = &url[scheme + 3..];
                let authority = rest.find(['/', '?']).map_or(rest, |end| &rest[..end]);
                match authority.rfind('@') {
                    Some(at) => format!("{}{}", &url[..scheme + 3], &rest[at + 1..]),
                    None => url.clone(),
                }
            }
            None => url.clone(),
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

mod leases;
pub use leases::KEEP as LEASE_TABLES_KEPT;

#[cfg(feature = "testing")]
pub mod testing;
