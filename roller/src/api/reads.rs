//! Read routes: services, status, configs, the plan a release would take, the service's
//! events as server-sent events, and metrics. Each folds the service's stream to its head.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::{Stream, StreamExt};
use ionroller_core::plan::plan_rollout;
use ionroller_core::state::RolloutKind;
use ionroller_shared::config::{validate_service_name, validate_version};
use ionroller_shared::events::service_stream;
use ionroller_shared::store::{Position, ReadFilter, SubscriptionMessage};
use serde::Deserialize;
use serde_json::json;

use super::{load_existing, views, ApiError, AppState};
use crate::log;

pub async fn list_services(
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (names, _) = log::discover_services(state.store.as_ref(), None).await?;
    Ok(Json(json!({ "services": names })))
}

pub async fn get_service(
    State(state): State<AppState>,
    Path(service): Path<String>,
) -> Result<Json<views::ServiceStatus>, ApiError> {
    let folded = load_existing(&state, &service).await?;
    Ok(Json(views::service_status(&folded, state.clock.now())))
}

pub async fn get_config(
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

pub async fn config_history(
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

#[derive(Deserialize)]
pub struct PlanQuery {
    version: Option<String>,
}

pub async fn plan(
    State(state): State<AppState>,
    Path(service): Path<String>,
    Query(q): Query<PlanQuery>,
) -> Result<Response, ApiError> {
    let version = q
        .version
        .ok_or_else(|| ApiError::field("version", "is required, e.g. ?version=v2"))?;
    validate_version(&version)?;
    let folded = load_existing(&state, &service).await?;
    let config_version = folded.latest_config().map(|c| c.version);
    let plan = plan_rollout(&folded, &RolloutKind::Release, &version, None)
        .ok_or_else(|| ApiError::conflict(format!("service {service} has no config")))?;
    Ok(Json(json!({ "service": service, "version": version, "config_version": config_version, "plan": plan })).into_response())
}

/// Server-sent events of one service's stream; `Last-Event-ID` (a position) resumes.
pub async fn events(
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

pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let head = state.store.head().await?;
    let sequence = head.map_or(0, |p| p.commit());
    Ok((
        [("content-type", crate::metrics::CONTENT_TYPE)],
        state.metrics.render(sequence)?,
    )
        .into_response())
}
