//! The notifier: tells each endpoint what happened to the services it hears, from the log.
//!
//! - **From the log, for every outcome.** One task per endpoint reads the services' events
//!   (`subscribe_all`, the same events trail reads) and folds them with
//!   `projections::notifications`; whatever ended a rollout (a person, an alarm, a deadline,
//!   a refused cloud action) is an event, so it is told.
//! - **At least once.** After an event's notifications are delivered the task appends
//!   `notification-delivered` (with the event's position) to the endpoint's own stream,
//!   `notifier:{endpoint}`, at the revision it read: that is its checkpoint. Killed between a
//!   delivery and that append, it delivers the notification again on restart, with the same
//!   `X-Ionroller-Delivery` id, which receivers drop duplicates by. A new endpoint starts at
//!   the log's head (no history is told); it folds from the start for context (which version
//!   a rollout ships) and delivers only past its checkpoint.
//! - **Never in the roller's way.** Deliveries run on their own tasks: a receiver that fails
//!   or hangs (each attempt is cut at the endpoint's timeout) is retried with doubling backoff
//!   up to a minute, holding back only that endpoint's later notifications, and shows in
//!   `/metrics` (`ionroller_notification_endpoint_failing`).
//! - **Once per log.** With replicas, the notifier runs on the one holding shard 0's lease; a
//!   replica that loses it mid-delivery may deliver one notification twice (same id).

pub mod endpoints;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hmac::{Hmac, KeyInit, Mac};
use ionroller_projections::notifications::{Meta, Notification, Notifications};
use ionroller_shared::events::{service_of, ServiceEvent};
use ionroller_shared::store::{
    EventId, EventMetadata, EventStore, ExpectedRevision, NewEvent, Position, ReadFilter, Revision,
    StoreError, StreamId, StreamRead, SubscriptionMessage,
};
use serde_json::json;
use sha2::Sha256;
use tokio::sync::watch;

pub use endpoints::{Endpoint, EndpointKind};

use crate::metrics::Metrics;
use crate::replica::Replica;

const CHECKPOINT_TYPE: &str = "notification-delivered";
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The shard whose lease holder runs the notifier when replicas share the log.
const NOTIFIER_SHARD: u32 = 0;

/// The endpoints failing now: since when, and the last error. The service status shows
/// them to the services they notify.
#[derive(Default)]
pub struct Health {
    failing: std::sync::Mutex<
        std::collections::BTreeMap<String, (chrono::DateTime<chrono::Utc>, String)>,
    >,
}

impl Health {
    fn failed(&self, endpoint: &str, error: String) {
        if let Ok(mut failing) = self.failing.lock() {
            let since = failing
                .get(endpoint)
                .map_or_else(chrono::Utc::now, |(since, _)| *since);
            failing.insert(endpoint.to_string(), (since, error));
        }
    }

    fn delivered(&self, endpoint: &str) {
        if let Ok(mut failing) = self.failing.lock() {
            failing.remove(endpoint);
        }
    }

    /// `endpoint`'s failure, if its last attempt failed: since when, and why.
    pub fn failing(&self, endpoint: &str) -> Option<(chrono::DateTime<chrono::Utc>, String)> {
        self.failing.lock().ok()?.get(endpoint).cloned()
    }
}

/// Runs one task per endpoint until `stop` turns true.
pub fn spawn(
    store: Arc<dyn EventStore>,
    endpoints: Vec<Endpoint>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    replica: Option<Arc<Replica>>,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    // A redirect would turn the POST into a GET whose 2xx says nothing about delivery.
    let http = match ionroller_auth::tls::http_client()
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            tracing::error!("notifications are off: the HTTP client could not be built: {e}");
            return Vec::new();
        }
    };
    endpoints
        .into_iter()
        .map(|endpoint| {
            let task = Task {
                store: store.clone(),
                endpoint: Arc::new(endpoint),
                http: http.clone(),
                metrics: metrics.clone(),
                health: health.clone(),
                replica: replica.clone(),
                stop: stop.clone(),
            };
            tokio::spawn(task.run())
        })
        .collect()
}

struct Task {
    store: Arc<dyn EventStore>,
    endpoint: Arc<Endpoint>,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    replica: Option<Arc<Replica>>,
    stop: watch::Receiver<bool>,
}

/// Why a round of delivering ended.
enum Ended {
    Stopped,
    /// This replica no longer holds the notifier's shard.
    NotOurs,
    Store(StoreError),
}

impl From<StoreError> for Ended {
    fn from(e: StoreError) -> Self {
        Ended::Store(e)
    }
}

impl Task {
    async fn run(mut self) {
        loop {
            if self.stopped() {
                return;
            }
            if !self.ours() {
                self.pause(Duration::from_secs(1)).await;
                continue;
            }
            match self.deliver_from_checkpoint().await {
                Ended::Stopped => return,
                // Another notifier moved the checkpoint, or the shard went: look again soon.
                Ended::NotOurs => self.pause(Duration::from_secs(1)).await,
                Ended::Store(e) => {
                    tracing::warn!(endpoint = %self.endpoint.name, "notifier: {e}; resuming");
                    self.pause(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Stopped, or the process that could stop it is gone.
    fn stopped(&self) -> bool {
        *self.stop.borrow() || self.stop.has_changed().is_err()
    }

    fn ours(&self) -> bool {
        self.replica
            .as_ref()
            .is_none_or(|r| r.holds_shard(NOTIFIER_SHARD))
    }

    async fn pause(&mut self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.stop.wait_for(|s| *s) => {}
        }
    }

    fn stream(&self) -> Result<StreamId, StoreError> {
        StreamId::new(format!("notifier:{}", self.endpoint.name))
    }

    /// The endpoint's checkpoint: the position of the last event it has told, and the
    /// revision of the stream that says so. A new endpoint starts at the head.
    async fn checkpoint(&self) -> Result<(Option<Position>, Option<Revision>), StoreError> {
        let stream = self.stream()?;
        match self
            .store
            .read_stream(&stream, StreamRead::backward(1))
            .await
        {
            Ok(last) => {
                let Some(last) = last.first() else {
                    return Ok((None, None));
                };
                let position = last.data["position"]
                    .as_str()
                    .map(Position::from_token)
                    .transpose()?;
                Ok((position, Some(last.revision)))
            }
            Err(StoreError::StreamNotFound(_)) => {
                let head = self.store.head().await?;
                let revision = self.record(head, None, &[]).await?;
                Ok((head, revision))
            }
            Err(e) => Err(e),
        }
    }

    /// Appends the checkpoint; `None` when another notifier (a replica) wrote first.
    async fn record(
        &self,
        position: Option<Position>,
        after: Option<Revision>,
        told: &[String],
    ) -> Result<Option<Revision>, StoreError> {
        let event = NewEvent {
            id: EventId::random(),
            event_type: CHECKPOINT_TYPE.into(),
            schema_version: 1,
            data: json!({
                "position": position.map(|p| p.to_token()),
                "deliveries": told,
            }),
            metadata: EventMetadata {
                actor: "notifier".into(),
                correlation_id: uuid::Uuid::new_v4(),
                causation_id: None,
                occurred_at: chrono::Utc::now(),
            },
        };
        let expected = after.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
        match self
            .store
            .append(&self.stream()?, expected, vec![event])
            .await
        {
            Ok(written) => Ok(Some(written.last_revision)),
            Err(StoreError::WrongExpectedRevision { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn deliver_from_checkpoint(&mut self) -> Ended {
        let (checkpoint, mut revision) = match self.checkpoint().await {
            Ok(c) => c,
            Err(e) => return Ended::Store(e),
        };
        let mut fold = Notifications::default();
        // Which services' configs name this endpoint (`notify`), as of the event at hand.
        let mut named: std::collections::HashSet<String> = std::collections::HashSet::new();
        // From the start, for context; only what lies past the checkpoint is told.
        let mut events = self
            .store
            .subscribe_all(None, ReadFilter::stream_prefix("service:"));
        loop {
            let message = tokio::select! {
                m = events.next() => m,
                _ = self.stop.wait_for(|s| *s) => return Ended::Stopped,
            };
            let recorded = match message {
                None => {
                    return Ended::Store(StoreError::Unavailable("the subscription ended".into()))
                }
                Some(Err(e)) => return Ended::Store(e),
                Some(Ok(SubscriptionMessage::Event(e))) => e,
                Some(Ok(_)) => continue,
            };
            let Some(service) = service_of(&recorded.stream) else {
                continue;
            };
            let event = match ServiceEvent::from_recorded(&recorded) {
                Ok(Some(event)) => event,
                // A type this build does not know: nothing it could say about it.
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(endpoint = %self.endpoint.name, position = %recorded.position.to_token(),
                        "notifier: an event it cannot read is skipped: {e}");
                    continue;
                }
            };
            if let ServiceEvent::ConfigSaved { config, .. } = &event {
                if config.notify.contains(&self.endpoint.name) {
                    named.insert(service.to_string());
                } else {
                    named.remove(service);
                }
            }
            let meta = Meta {
                service,
                event_id: recorded.id.0,
                occurred_at: recorded.metadata.occurred_at,
                actor: &recorded.metadata.actor,
            };
            let told: Vec<Notification> = fold
                .on(&meta, &event)
                .into_iter()
                .filter(|n| self.endpoint.wants(n, named.contains(service)))
                .collect();
            if told.is_empty() || checkpoint.is_some_and(|c| recorded.position <= c) {
                continue;
            }
            if !self.ours() {
                return Ended::NotOurs;
            }
            let mut ids = Vec::with_capacity(told.len());
            for n in &told {
                match self.deliver(n).await {
                    Some(id) => ids.push(id),
                    None => return Ended::Stopped,
                }
            }
            match self.record(Some(recorded.position), revision, &ids).await {
                Ok(Some(r)) => revision = Some(r),
                // Another replica's notifier moved the checkpoint: start again from it.
                Ok(None) => return Ended::NotOurs,
                Err(e) => return Ended::Store(e),
            }
        }
    }

    /// Delivers `n` until the endpoint takes it; `None` if stopped first.
    async fn deliver(&mut self, n: &Notification) -> Option<String> {
        let endpoint = self.endpoint.clone();
        let id = format!("{}:{}:{}", n.event_id, n.kind.name(), endpoint.name);
        let body = match endpoint.kind {
            EndpointKind::Webhook => n.body(&id),
            EndpointKind::Slack => n.slack(),
        };
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let mut backoff = Duration::from_secs(1);
        for attempt in 1u32.. {
            let timestamp = chrono::Utc::now().timestamp().to_string();
            let mut request = self
                .http
                .post(&endpoint.url)
                .timeout(endpoint.timeout)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::USER_AGENT, "ionroller-notifier")
                .header("x-ionroller-delivery", &id)
                .header("x-ionroller-attempt", attempt.to_string())
                .header("x-ionroller-timestamp", &timestamp);
            if let Some(secret) = &endpoint.secret {
                request = request.header(
                    "x-ionroller-signature",
                    signature(secret, &timestamp, &body),
                );
            }
            let sent = tokio::select! {
                sent = request.body(body.clone()).send() => sent,
                _ = self.stop.wait_for(|s| *s) => return None,
            };
            let failure = match sent {
                Ok(answer) if answer.status().is_success() => None,
                Ok(answer) if answer.status().is_redirection() => Some(format!(
                    "the endpoint redirects ({}): give its final URL",
                    answer.status()
                )),
                Ok(answer) => Some(format!("answered {}", answer.status())),
                Err(e) if e.is_timeout() => {
                    Some(format!("no answer within {:?}", endpoint.timeout))
                }
                Err(e) => Some(format!("not reached: {e}")),
            };
            self.metrics
                .notification_attempt(&endpoint.name, failure.is_none());
            let Some(failure) = failure else {
                self.health.delivered(&endpoint.name);
                return Some(id);
            };
            tracing::warn!(endpoint = %endpoint.name, delivery = %id, attempt,
                "notification not delivered: {failure}; retrying in {backoff:?}");
            self.health.failed(&endpoint.name, failure);
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.stop.wait_for(|s| *s) => return None,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        None
    }
}

/// `sha256=` and the hex HMAC-SHA256 of `{timestamp}.{body}` under `secret`: a receiver
/// recomputes it, compares in constant time, and refuses old timestamps (replays).
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        // HMAC takes a key of any length; this cannot fail.
        return String::new();
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_sha256_of_the_timestamp_a_dot_and_the_body() {
        // Pinned against Python's `hmac.new(b"Jefe", b"what do ya want. for nothing?",
        // hashlib.sha256).hexdigest()`: what a receiver in another language computes.
        assert_eq!(
            signature(b"Jefe", "what do ya want", b" for nothing?"),
            "sha256=ab2065b8987c48983f47a32020a95286d05c7938720abf8bfec9274ac25ed450"
        );
        assert_ne!(
            signature(b"Jefe", "what do ya want", b" for nothing?"),
            signature(b"Jefe", "what do ya want", b" for nothing!")
        );
    }
}
