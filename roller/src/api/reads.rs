//! Read routes: services, status, configs, the plan a release would take, the service's
//! events as server-sent events, and metrics. Each folds the service's stream to its head.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::{Stream, StreamExt};
use ionroller_core::plan::plan_rollout;
use ionroller_core::state::RolloutKind;
use ionroller_shared::config::validate_version;
use ionroller_shared::events::service_stream;
use ionroller_shared::http::ErrorBody;
use ionroller_shared::store::{Position, ReadFilter, SubscriptionMessage};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use super::extract::{Params, ServicePath};
use super::{load_existing, views, ApiError, AppState};
use crate::log;

/// Services with a saved config.
#[utoipa::path(
    get,
    path = "/v1/services",
    tag = "services",
    responses(
        (status = 200, description = "service names", body = views::ServiceList),
        (status = 503, description = "the event store is unavailable", body = ErrorBody),
    )
)]
pub async fn list_services(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<ionroller_auth::Identity>,
) -> Result<Json<views::ServiceList>, ApiError> {
    let (services, _) = log::discover_services(state.store.as_ref(), None).await?;
    // Only the services the caller may read: a team's token does not even learn the names of
    // other teams' services.
    Ok(Json(views::ServiceList {
        services: services
            .into_iter()
            .filter(|s| caller.can_read(s))
            .collect(),
    }))
}

/// Desired and live state: environments, traffic per version, current step and what it waits for.
#[utoipa::path(
    get,
    path = "/v1/services/{service}",
    tag = "services",
    params(super::openapi::ServiceParam),
    responses(
        (status = 200, description = "status", body = views::ServiceStatus),
        (status = 400, description = "a bad service name", body = ErrorBody),
        (status = 404, description = "unknown service", body = ErrorBody),
        (status = 503, description = "the event store is unavailable", body = ErrorBody),
    )
)]
pub async fn get_service(
    State(state): State<AppState>,
    ServicePath(service): ServicePath,
) -> Result<Json<views::ServiceStatus>, ApiError> {
    let folded = load_existing(&state, &service).await?;
    let mut status = views::service_status(&folded, state.clock.now());
    // The notifier's failures, for the services the failing endpoints notify.
    let named = folded.latest_config().map(|c| &c.config.notify);
    for endpoint in state.notifications.iter() {
        let hears = endpoint.open_to(&service)
            && (!endpoint.when_named || named.is_some_and(|n| n.contains(&endpoint.name)));
        if let Some((since, error)) = hears
            .then(|| state.notify_health.failing(&endpoint.name))
            .flatten()
        {
            status.warnings.push(format!(
                "notifications to {} are failing since {} ({error}); they are retried",
                endpoint.name,
                since.format("%H:%M:%S UTC")
            ));
        }
    }
    Ok(Json(status))
}

fn config_view(c: &ionroller_core::state::ConfigVersion) -> views::ConfigView {
    views::ConfigView {
        config_version: c.version,
        saved_at: c.saved_at,
        saved_by: c.saved_by.clone(),
        config: c.config.clone(),
    }
}

/// The latest config, with its version.
#[utoipa::path(
    get,
    path = "/v1/services/{service}/config",
    tag = "configs",
    params(super::openapi::ServiceParam),
    responses(
        (status = 200, description = "the latest config", body = views::ConfigView),
        (status = 400, description = "a bad service name", body = ErrorBody),
        (status = 404, description = "unknown service", body = ErrorBody),
        (status = 503, description = "the event store is unavailable", body = ErrorBody),
    )
)]
pub async fn get_config(
    State(state): State<AppState>,
    ServicePath(service): ServicePath,
) -> Result<Json<views::ConfigView>, ApiError> {
    let folded = load_existing(&state, &service).await?;
    let latest = folded
        .latest_config()
        .ok_or_else(|| ApiError::not_found(format!("service {service} has no config")))?;
    Ok(Json(config_view(latest)))
}

/// Every config version, newest first.
#[utoipa::path(
    get,
    path = "/v1/services/{service}/configs",
    tag = "configs",
    params(super::openapi::ServiceParam),
    responses(
        (status = 200, description = "config history", body = views::ConfigHistory),
        (status = 400, description = "a bad service name", body = ErrorBody),
        (status = 404, description = "unknown service", body = ErrorBody),
        (status = 503, description = "the event store is unavailable", body = ErrorBody),
    )
)]
pub async fn config_history(
    State(state): State<AppState>,
    ServicePath(service): ServicePath,
) -> Result<Json<views::ConfigHistory>, ApiError> {
    let folded = load_existing(&state, &service).await?;
    let configs = folded
        .configs
        .iter()
        .rev()
        .map(|c| config_view(c))
        .collect();
    Ok(Json(views::ConfigHistory { configs }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PlanQuery {
    /// The version a release would run (required).
    #[param(required = true, pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")]
    version: Option<String>,
}

/// Steps, pauses and worst-case duration a release of `version` would take.
#[utoipa::path(
    get,
    path = "/v1/services/{service}/plan",
    tag = "services",
    params(super::openapi::ServiceParam, PlanQuery),
    responses(
        (status = 200, description = "the plan", body = views::PlanView),
        (status = 400, description = "a bad service name or version", body = ErrorBody),
        (status = 404, description = "unknown service", body = ErrorBody),
        (status = 409, description = "the service has no config", body = ErrorBody),
        (status = 503, description = "the event store is unavailable", body = ErrorBody),
    )
)]
pub async fn plan(
    State(state): State<AppState>,
    ServicePath(service): ServicePath,
    Params(q): Params<PlanQuery>,
) -> Result<Json<views::PlanView>, ApiError> {
    let version = q
        .version
        .ok_or_else(|| ApiError::field("version", "is required, e.g. ?version=v2"))?;
    validate_version(&version)?;
    let folded = load_existing(&state, &service).await?;
    let config_version = folded.latest_config().map(|c| c.version);
    let plan = plan_rollout(&folded, &RolloutKind::Release, &version, None)
        .ok_or_else(|| ApiError::conflict(format!("service {service} has no config")))?;
    Ok(Json(views::PlanView {
        service,
        version,
        config_version,
        plan,
    }))
}

/// Server-sent events of one service's stream; `Last-Event-ID` (a position) resumes.
#[utoipa::path(
    get,
    path = "/v1/services/{service}/events",
    tag = "services",
    params(
        super::openapi::ServiceParam,
        ("Last-Event-ID" = Option<String>, Header, pattern = r"^[0-9]+-[0-9]+$",
            description = "resume after this position (an earlier event's id, e.g. `42-0`)"),
    ),
    responses(
        (status = 200, description = "an endless stream: each event's id is its position, its \
            name its type, its data `{type, summary, revision, actor, occurred_at, data}` (`summary`: the audit's sentence); `caught-up` \
            once history is sent", content_type = "text/event-stream", body = String),
        (status = 400, description = "a bad service name or Last-Event-ID", body = ErrorBody),
    )
)]
pub async fn events(
    State(state): State<AppState>,
    ServicePath(service): ServicePath,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let stream_id = service_stream(&service)?;
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
                    // In the audit's words, for people (the console); none for an event
                    // this version cannot decode (stored data evolves).
                    let summary = ionroller_shared::events::ServiceEvent::from_recorded(&e)
                        .ok()
                        .flatten()
                        .map(|event| ionroller_projections::audit::summary(&event));
                    let body = json!({
                        "type": e.event_type,
                        "summary": summary,
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

pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let head = state.store.head().await?;
    let sequence = head.map_or(0, |p| p.commit());
    Ok((
        [("content-type", crate::metrics::CONTENT_TYPE)],
        state.metrics.render(sequence)?,
    )
        .into_response())
}
