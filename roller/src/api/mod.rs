//! The REST API under `/v1`. Handlers read by folding the service's stream and write by
//! appending at the exact revision they read; a concurrent writer makes them re-read and
//! re-check (a few times) before answering 409.

mod error;
mod openapi;
pub mod sim;
pub mod views;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use ionroller_shared::config::{parse_service_config, validate_service_name, validate_version};
use ionroller_shared::events::{service_stream, AlarmState, ServiceEvent};
use ionroller_shared::store::{
    EventId, EventMetadata, EventStore, ExpectedRevision, Position, ReadFilter, StoreError,
    SubscriptionMessage,
};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

pub use error::ApiError;

use crate::clock::Clock;
use crate::cloud::Cloud;
use crate::metrics::Metrics;
use crate::shell::catch_up;
use ionroller_core::plan::{compute_plan, environment_name, event_id};
use ionroller_core::state::{RolloutKind, Stage};
use ionroller_core::ServiceState;

/// Header naming who sends a command; recorded as the events' actor.
pub const ACTOR_HEADER: &str = "x-ionroller-actor";
const COMMAND_RETRIES: usize = 5;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn EventStore>,
    pub clock: Arc<dyn Clock>,
    /// Folded states by service, caught up from the log on every use: a request folds only
    /// what is new, not the service's whole history.
    pub folds: Arc<tokio::sync::Mutex<std::collections::HashMap<String, ServiceState>>>,
    /// The roller's counters, when it runs in this process.
    pub metrics: Arc<Metrics>,
    /// The cloud the roller drives, for its own config requirements (`Cloud::check_config`).
    pub cloud: Option<Arc<dyn Cloud>>,
}

impl AppState {
    pub fn new(store: Arc<dyn EventStore>, clock: Arc<dyn Clock>) -> Self {
        AppState {
            store,
            clock,
            folds: Arc::default(),
            metrics: Arc::default(),
            cloud: None,
        }
    }

    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Configs are also checked against this cloud's requirements when saved.
    pub fn with_cloud(mut self, cloud: Arc<dyn Cloud>) -> Self {
        self.cloud = Some(cloud);
        self
    }
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route(
            "/v1/openapi.json",
            get(|| async { Json(openapi::document()) }),
        )
        .route("/v1/services", get(list_services))
        .route("/v1/services/{service}", get(get_service))
        .route(
            "/v1/services/{service}/config",
            get(get_config).put(put_config),
        )
        .route("/v1/services/{service}/configs", get(config_history))
        .route("/v1/services/{service}/releases", post(release))
        .route("/v1/services/{service}/rollback", post(rollback))
        .route("/v1/services/{service}/pause", post(pause))
        .route("/v1/services/{service}/resume", post(resume))
        .route("/v1/services/{service}/promote", post(promote))
        .route("/v1/services/{service}/abort", post(abort))
        .route("/v1/services/{service}/plan", get(plan))
        .route("/v1/services/{service}/events", get(events))
        .with_state(state)
}

/// A JSON body whose rejections follow the API's error format (naming what is wrong).
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// An optional JSON body: empty means `T::default()`.
pub struct BodyOrDefault<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Default> FromRequest<S> for BodyOrDefault<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::field("body", e.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(BodyOrDefault(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(BodyOrDefault)
            .map_err(|e| ApiError::field("body", format!("invalid JSON: {e}")))
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let field = match &rejection {
        JsonRejection::MissingJsonContentType(_) => "content-type",
        _ => "body",
    };
    let status = rejection.status();
    let mut e = ApiError::field(field, rejection.body_text());
    if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        e.status = status;
    }
    e
}

fn actor(headers: &HeaderMap) -> Result<String, ApiError> {
    match headers.get(ACTOR_HEADER) {
        None => Ok("anonymous".into()),
        Some(v) => {
            let text = v
                .to_str()
                .map_err(|_| ApiError::field(ACTOR_HEADER, "must be printable ASCII"))?;
            if text.is_empty() || text.len() > 200 {
                return Err(ApiError::field(ACTOR_HEADER, "must be 1 to 200 characters"));
            }
            Ok(text.to_string())
        }
    }
}

/// Folds a service's whole stream. `None` when the service has no events.
async fn load(state: &AppState, service: &str) -> Result<ServiceState, ApiError> {
    validate_service_name(service)?;
    let stream = service_stream(service)?;
    let cached = state.folds.lock().await.get(service).cloned();
    let mut folded = cached.unwrap_or_else(|| ServiceState::new(service));
    catch_up(state.store.as_ref(), &stream, &mut folded)
        .await
        .map_err(|e| match e {
            crate::shell::RollerError::Store(s) => ApiError::from(s),
            poison => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "poison_event",
                poison.to_string(),
            ),
        })?;
    if folded.revision.is_some() {
        let mut folds = state.folds.lock().await;
        let newer = folds
            .get(service)
            .is_none_or(|c| c.revision < folded.revision);
        if newer {
            folds.insert(service.to_string(), folded.clone());
        }
    }
    Ok(folded)
}

async fn load_existing(state: &AppState, service: &str) -> Result<ServiceState, ApiError> {
    let folded = load(state, service).await?;
    if folded.revision.is_none() {
        return Err(ApiError::not_found(format!(
            "no service named {service:?}; save its config first (PUT /v1/services/{service}/config)"
        )));
    }
    Ok(folded)
}

/// Reads, checks, appends at the revision read; re-reads on a concurrent change.
async fn command(
    state: &AppState,
    service: &str,
    actor: &str,
    mut decide: impl FnMut(&ServiceState) -> Result<Vec<ServiceEvent>, ApiError>,
) -> Result<ServiceState, ApiError> {
    let stream = service_stream(service)?;
    for _ in 0..COMMAND_RETRIES {
        let folded = load(state, service).await?;
        let events = decide(&folded)?;
        let first = folded.revision.map_or(0, |r| r.0 + 1);
        let correlation_id = events
            .iter()
            .find_map(|e| e.rollout_id())
            .unwrap_or_else(Uuid::new_v4);
        let occurred_at = state.clock.now();
        let batch = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let (t, d) = e.encode();
                e.to_new_event(
                    EventId(event_id(&stream, first + i as u64, &t, &d)),
                    EventMetadata {
                        actor: actor.to_string(),
                        correlation_id,
                        causation_id: None,
                        occurred_at,
                    },
                )
            })
            .collect();
        match state
            .store
            .append(&stream, ExpectedRevision::after(folded.revision), batch)
            .await
        {
            Ok(_) => return load(state, service).await,
            Err(StoreError::WrongExpectedRevision { .. } | StoreError::IdConflict { .. }) => {
                continue
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict(format!(
        "service {service} kept changing while this command was checked; retry"
    )))
}

async fn list_services(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let filter = ReadFilter {
        stream_prefix: Some(ionroller_shared::events::SERVICE_STREAM_PREFIX.into()),
        event_types: vec!["config-saved".into()],
    };
    let mut names = std::collections::BTreeSet::new();
    let mut after = None;
    loop {
        let page = state.store.read_all(after, 1000, &filter).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.position);
        names.extend(
            page.iter().filter_map(|e| {
                ionroller_shared::events::service_of(&e.stream).map(str::to_string)
            }),
        );
    }
    Ok(Json(json!({ "services": names })))
}

async fn get_service(
    State(state): State<AppState>,
    Path(service): Path<String>,
) -> Result<Json<views::ServiceStatus>, ApiError> {
    let folded = load_existing(&state, &service).await?;
    Ok(Json(views::service_status(&folded, state.clock.now())))
}

async fn get_config(
    State(state): State<AppState>,
    Path(service): Path<String>,
) -> Result<Response, ApiError> {
    let folded = load_existing(&state, &service).await?;
    let latest = folded
        .latest_config()
        .ok_or_else(|| ApiError::not_found(format!("service {service} has no config")))?;
    Ok(Json(json!({
        "config_version": latest.version,
        "saved_at": latest.saved_at,
        "saved_by": latest.saved_by,
        "config": latest.config,
    }))
    .into_response())
}

async fn config_history(
    State(state): State<AppState>,
    Path(service): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let folded = load_existing(&state, &service).await?;
    let versions: Vec<_> = folded
        .configs
        .iter()
        .rev()
        .map(|c| json!({ "config_version": c.version, "saved_at": c.saved_at, "saved_by": c.saved_by, "config": c.config }))
        .collect();
    Ok(Json(json!({ "configs": versions })))
}

async fn put_config(
    State(state): State<AppState>,
    Path(service): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    validate_service_name(&service)?;
    let actor = actor(&headers)?;
    let config = parse_service_config(&body).map_err(ApiError::invalid)?;
    if let Some(cloud) = &state.cloud {
        let problems = cloud.check_config(&config);
        if !problems.is_empty() {
            return Err(ApiError::invalid(problems));
        }
    }
    let folded = command(&state, &service, &actor, |s| {
        let version = s.latest_config().map_or(1, |c| c.version + 1);
        Ok(vec![ServiceEvent::ConfigSaved {
            config_version: version,
            config: Box::new(config.clone()),
        }])
    })
    .await?;
    let version = folded.latest_config().map_or(0, |c| c.version);
    Ok((
        StatusCode::OK,
        Json(json!({ "service": service, "config_version": version })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
    version: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    override_alarms: bool,
}

fn firing_alarms(s: &ServiceState) -> Vec<String> {
    let Some(config) = s.latest_config() else {
        return Vec::new();
    };
    config
        .config
        .rollout
        .alarms
        .iter()
        .filter(|name| {
            s.alarms
                .get(*name)
                .is_some_and(|a| a.state == AlarmState::Alarm)
        })
        .cloned()
        .collect()
}

/// The events that start a rollout of `version`, superseding one in flight.
fn start_rollout(
    s: &ServiceState,
    kind: RolloutKind,
    version: &str,
    reason: Option<String>,
    override_alarms: bool,
) -> Result<(Uuid, Vec<ServiceEvent>), ApiError> {
    let config = s.latest_config().ok_or_else(|| {
        ApiError::conflict(format!(
            "service {} has no config yet; save one first",
            s.service
        ))
    })?;
    if s.rollout.is_none() && s.stable_version() == Some(version) {
        return Err(ApiError::conflict(format!(
            "{version} is already serving all traffic of {}",
            s.service
        )));
    }
    let rollout_id = Uuid::new_v4();
    let warm = s.warm_environment(version, config.version);
    let environment = warm.map_or_else(
        || environment_name(&s.service, version, rollout_id),
        |e| e.name.clone(),
    );
    let plan = compute_plan(&config.config, &kind, environment, warm.is_some());
    let mut events = Vec::new();
    if let Some(current) = &s.rollout {
        events.push(ServiceEvent::RolloutSuperseded {
            rollout_id: current.id,
            by: rollout_id,
        });
    }
    events.push(match kind {
        RolloutKind::Release => ServiceEvent::ReleaseRequested {
            rollout_id,
            version: version.to_string(),
            reason,
            override_alarms,
        },
        RolloutKind::Rollback => ServiceEvent::RollbackRequested {
            rollout_id,
            to_version: version.to_string(),
            reason,
        },
    });
    events.push(ServiceEvent::PlanComputed { rollout_id, plan });
    Ok((rollout_id, events))
}

async fn release(
    State(state): State<AppState>,
    Path(service): Path<String>,
    headers: HeaderMap,
    Body(body): Body<ReleaseBody>,
) -> Result<Response, ApiError> {
    let actor = actor(&headers)?;
    validate_version(&body.version)?;
    if body.reason.as_ref().is_some_and(|r| r.len() > 1000) {
        return Err(ApiError::field("reason", "must be at most 1000 characters"));
    }
    load_existing(&state, &service).await?;
    let mut rollout_id = Uuid::nil();
    command(&state, &service, &actor, |s| {
        let firing = firing_alarms(s);
        if !firing.is_empty() && !body.override_alarms {
            return Err(ApiError::conflict(format!(
                "alarm(s) {} already in ALARM; fix them first or release with override_alarms: true (recorded)",
                firing.join(", ")
            )));
        }
        let (id, events) = start_rollout(s, RolloutKind::Release, &body.version, body.reason.clone(), body.override_alarms)?;
        rollout_id = id;
        Ok(events)
    })
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "rollout_id": rollout_id, "service": service, "version": body.version })),
    )
        .into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    #[serde(default)]
    to_version: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

async fn rollback(
    State(state): State<AppState>,
    Path(service): Path<String>,
    headers: HeaderMap,
    BodyOrDefault(body): BodyOrDefault<RollbackBody>,
) -> Result<Response, ApiError> {
    let actor = actor(&headers)?;
    if let Some(v) = &body.to_version {
        validate_version(v).map_err(|e| ApiError::field("to_version", e.problem))?;
    }
    load_existing(&state, &service).await?;
    let mut answer = json!({});
    command(&state, &service, &actor, |s| {
        // Mid-rollout with no explicit version: send traffic back, as an abort does.
        if let (Some(r), None) = (&s.rollout, &body.to_version) {
            not_reverting(r, "roll back")?;
            answer = json!({ "rollout_id": r.id, "action": "abort" });
            return Ok(vec![ServiceEvent::AbortRequested {
                reason: body.reason.clone().or(Some("rollback requested".into())),
            }]);
        }
        let to = match &body.to_version {
            Some(v) => v.clone(),
            None => s
                .history
                .iter()
                .rev()
                .find(|h| {
                    h.outcome == ionroller_core::state::Outcome::Completed
                        && h.from_version.is_some()
                        && h.from_version.as_deref() != s.stable_version()
                })
                .and_then(|h| h.from_version.clone())
                .ok_or_else(|| {
                    ApiError::conflict(format!("{service} has no previous version to roll back to"))
                })?,
        };
        let (id, events) =
            start_rollout(s, RolloutKind::Rollback, &to, body.reason.clone(), false)?;
        answer = json!({ "rollout_id": id, "action": "rollback", "version": to });
        Ok(events)
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    #[serde(default)]
    reason: Option<String>,
}

async fn rollout_command(
    state: AppState,
    service: String,
    headers: HeaderMap,
    what: &'static str,
    event: impl Fn(&ionroller_core::state::Rollout) -> Result<ServiceEvent, ApiError>,
) -> Result<Response, ApiError> {
    let actor = actor(&headers)?;
    load_existing(&state, &service).await?;
    let mut rollout_id = Uuid::nil();
    command(&state, &service, &actor, |s| {
        let r = s.rollout.as_ref().ok_or_else(|| {
            ApiError::conflict(format!("{service} has no rollout in progress to {what}"))
        })?;
        rollout_id = r.id;
        Ok(vec![event(r)?])
    })
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "rollout_id": rollout_id, "action": what })),
    )
        .into_response())
}

fn not_reverting(r: &ionroller_core::state::Rollout, what: &str) -> Result<(), ApiError> {
    if matches!(r.stage, Stage::Reverting { .. }) {
        return Err(ApiError::conflict(format!(
            "the rollout is already rolling back; nothing to {what}"
        )));
    }
    Ok(())
}

async fn pause(
    State(state): State<AppState>,
    Path(service): Path<String>,
    headers: HeaderMap,
    BodyOrDefault(body): BodyOrDefault<ReasonBody>,
) -> Result<Response, ApiError> {
    let reason = body.reason;
    rollout_command(state, service, headers, "pause", move |r| {
        not_reverting(r, "pause")?;
        if r.paused {
            return Err(ApiError::conflict("the rollout is already paused"));
        }
        Ok(ServiceEvent::PauseRequested {
            reason: reason.clone(),
        })
    })
    .await
}

async fn resume(
    State(state): State<AppState>,
    Path(service): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    rollout_command(state, service, headers, "resume", |r| {
        if !r.paused {
            return Err(ApiError::conflict("the rollout is not paused"));
        }
        Ok(ServiceEvent::ResumeRequested {})
    })
    .await
}

async fn promote(
    State(state): State<AppState>,
    Path(service): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    rollout_command(state, service, headers, "promote", |r| {
        not_reverting(r, "promote")?;
        Ok(ServiceEvent::PromoteRequested {})
    })
    .await
}

async fn abort(
    State(state): State<AppState>,
    Path(service): Path<String>,
    headers: HeaderMap,
    BodyOrDefault(body): BodyOrDefault<ReasonBody>,
) -> Result<Response, ApiError> {
    let reason = body.reason;
    rollout_command(state, service, headers, "abort", move |r| {
        not_reverting(r, "abort")?;
        Ok(ServiceEvent::AbortRequested {
            reason: reason.clone(),
        })
    })
    .await
}

#[derive(Deserialize)]
struct PlanQuery {
    version: Option<String>,
}

async fn plan(
    State(state): State<AppState>,
    Path(service): Path<String>,
    Query(q): Query<PlanQuery>,
) -> Result<Response, ApiError> {
    let version = q
        .version
        .ok_or_else(|| ApiError::field("version", "is required, e.g. ?version=v2"))?;
    validate_version(&version)?;
    let folded = load_existing(&state, &service).await?;
    let config = folded
        .latest_config()
        .ok_or_else(|| ApiError::conflict(format!("service {service} has no config")))?;
    let warm = folded.warm_environment(&version, config.version);
    let environment = warm.map_or_else(
        || environment_name(&service, &version, Uuid::nil()),
        |e| e.name.clone(),
    );
    let plan = compute_plan(
        &config.config,
        &RolloutKind::Release,
        environment,
        warm.is_some(),
    );
    Ok(Json(json!({ "service": service, "version": version, "config_version": config.version, "plan": plan })).into_response())
}

/// Server-sent events of one service's stream; `Last-Event-ID` (a position) resumes.
async fn events(
    State(state): State<AppState>,
    Path(service): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let stream_id = {
        validate_service_name(&service)?;
        service_stream(&service)?
    };
    let after = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|t| Position::from_token(t).ok())
                .ok_or_else(|| {
                    ApiError::field(
                        "Last-Event-ID",
                        "must be a position token from an earlier event id, e.g. 42-0",
                    )
                })?,
        ),
    };
    let filter = ReadFilter::stream_prefix(stream_id.as_str());
    let subscription = state.store.subscribe_all(after, filter);
    let events = subscription.filter_map(move |message| {
        let stream_id = stream_id.clone();
        async move {
            match message {
                Ok(SubscriptionMessage::Event(e)) if e.stream == stream_id => {
                    let body = json!({
                        "type": e.event_type,
                        "revision": e.revision,
                        "actor": e.metadata.actor,
                        "occurred_at": e.metadata.occurred_at,
                        "data": e.data,
                    });
                    Some(Ok(Event::default()
                        .id(e.position.to_token())
                        .event(e.event_type.clone())
                        .data(body.to_string())))
                }
                Ok(SubscriptionMessage::CaughtUp(_)) => {
                    Some(Ok(Event::default().event("caught-up").data("{}")))
                }
                Ok(_) => None,
                Err(e) => Some(Ok(Event::default()
                    .event("error")
                    .data(json!({ "message": e.to_string() }).to_string()))),
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let head = state.store.head().await?;
    let sequence = head.map_or(0, |p| p.commit());
    Ok((
        [("content-type", crate::metrics::CONTENT_TYPE)],
        state.metrics.render(sequence)?,
    )
        .into_response())
}
