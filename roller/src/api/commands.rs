//! Command routes: save a config, release, roll back, pause, resume, promote, abort. Each
//! handler checks the input's form (naming the field), then hands the command to the core's
//! rules (`ionroller_core::handle`) through [`submit`], which appends what they decide.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ionroller_core::Command;
use ionroller_shared::config::{parse_service_config, validate_service_name, validate_version};
use serde::Deserialize;
use serde_json::json;

use super::extract::{actor, Body, BodyOrDefault};
use super::{load_existing, submit, ApiError, AppState};

pub async fn put_config(
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
    let (_, folded) = submit(
        &state,
        &service,
        &actor,
        &Command::SaveConfig(Box::new(config)),
    )
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
pub struct ReleaseBody {
    version: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    override_alarms: bool,
}

pub async fn release(
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
    let command = Command::Release {
        version: body.version.clone(),
        reason: body.reason,
        override_alarms: body.override_alarms,
    };
    let (accepted, _) = submit(&state, &service, &actor, &command).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "rollout_id": accepted.rollout_id, "service": service, "version": body.version })),
    )
        .into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    #[serde(default)]
    to_version: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

pub async fn rollback(
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
    let command = Command::Rollback {
        to_version: body.to_version,
        reason: body.reason,
    };
    let (accepted, _) = submit(&state, &service, &actor, &command).await?;
    let mut answer = json!({ "rollout_id": accepted.rollout_id, "action": accepted.action });
    if let Some(version) = accepted.version {
        answer["version"] = json!(version);
    }
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    #[serde(default)]
    reason: Option<String>,
}

/// A command on the rollout in progress; answers with the rollout it acted on.
async fn on_rollout(
    state: AppState,
    service: String,
    headers: HeaderMap,
    command: Command,
) -> Result<Response, ApiError> {
    let actor = actor(&headers)?;
    load_existing(&state, &service).await?;
    let (accepted, _) = submit(&state, &service, &actor, &command).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "rollout_id": accepted.rollout_id, "action": accepted.action })),
    )
        .into_response())
}

pub async fn pause(
    State(state): State<AppState>,
    Path(service): Path<String>,
    headers: HeaderMap,
    BodyOrDefault(body): BodyOrDefault<ReasonBody>,
) -> Result<Response, ApiError> {
    let command = Command::Pause {
        reason: body.reason,
    };
    on_rollout(state, service, headers, command).await
}

pub async fn resume(
    State(state): State<AppState>,
    Path(service): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    on_rollout(state, service, headers, Command::Resume).await
}

pub async fn promote(
    State(state): State<AppState>,
    Path(service): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    on_rollout(state, service, headers, Command::Promote).await
}

pub async fn abort(
    State(state): State<AppState>,
    Path(service): Path<String>,
    headers: HeaderMap,
    BodyOrDefault(body): BodyOrDefault<ReasonBody>,
) -> Result<Response, ApiError> {
    let command = Command::Abort {
        reason: body.reason,
    };
    on_rollout(state, service, headers, command).await
}
