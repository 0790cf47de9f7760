//! Command routes: save a config, release, roll back, pause, resume, promote, abort. Each
//! handler checks the input's form (naming the field), then hands the command to the core's
//! rules (`ionroller_core::handle`) through [`submit`], which appends what they decide.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use ionroller_auth::Identity;
use ionroller_core::commands::Accepted;
use ionroller_core::Command;
use ionroller_shared::config::{
    parse_service_config, validate_reason, validate_version, FieldError, ServiceConfig,
};
use ionroller_shared::events::ServiceEvent;
use ionroller_shared::http::ErrorBody;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::extract::{Body, BodyOrDefault, JsonText, Params, ServicePath};
use super::views::{CommandAccepted, ConfigSaved, ReleaseAccepted};
use super::{check, load_existing, submit, ApiError, AppState};

/// A command's answer: `202` and what was accepted (`200` and what would be, for a dry run).
type Accepted202<T> = Result<(StatusCode, Json<T>), ApiError>;

/// `?dry_run=true` on a command: check it against the service's state and answer with what it
/// would record, recording nothing (as `kubectl --dry-run=server`). The console shows this
/// before a person confirms.
#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DryRun {
    /// `true`: record nothing; answer 200 with `would_record`.
    #[serde(default)]
    dry_run: bool,
}

fn command_accepted(accepted: Accepted, dry_run: bool) -> (StatusCode, Json<CommandAccepted>) {
    (
        if dry_run {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        },
        Json(CommandAccepted {
            would_record: dry_run.then(|| would_record(&accepted)),
            rollout_id: accepted.rollout_id,
            action: accepted.action.to_string(),
            version: accepted.version,
        }),
    )
}

/// The events a command would record, in the audit's words. A new environment is named after
/// the rollout, whose id is drawn when the command is recorded, so a preview does not name it.
fn would_record(accepted: &Accepted) -> Vec<String> {
    accepted
        .events
        .iter()
        .map(|event| match event {
            ServiceEvent::PlanComputed { plan, .. } if !plan.reuses_warm_environment => format!(
                "plan: {} step(s) into a new environment (named when the release starts)",
                plan.steps.len()
            ),
            event => ionroller_projections::audit::summary(event),
        })
        .collect()
}

/// Saves a new config version.
#[utoipa::path(
    put,
    path = "/v1/services/{service}/config",
    tag = "configs",
    params(super::openapi::ServiceParam),
    request_body(content = ServiceConfig, content_type = "application/json",
        description = "the whole config; see examples/hello.json and `ionroller config init`"),
    responses(
        (status = 200, description = "saved as a new config version", body = ConfigSaved),
        (status = 400, description = "every problem, each naming its field", body = ErrorBody),
        (status = 409, description = "the service kept changing; retry", body = ErrorBody),
        (status = 413, description = "the config is over 256 KiB", body = ErrorBody),
        (status = 415, description = "the body is sent as something other than `application/json`", body = ErrorBody),
        (status = 503, description = "the event store is unavailable, or the cloud could not check the config", body = ErrorBody),
    )
)]
pub async fn put_config(
    State(state): State<AppState>,
    ServicePath(service): ServicePath,
    Extension(caller): Extension<Identity>,
    JsonText(body): JsonText,
) -> Result<Json<ConfigSaved>, ApiError> {
    let actor = caller.actor;
    let config = parse_service_config(&body).map_err(ApiError::invalid)?;
    let unknown: Vec<_> = config
        .notify
        .iter()
        .enumerate()
        .filter(|(_, name)| {
            !state
                .notifications
                .iter()
                .any(|e| &e.name == *name && e.open_to(&service))
        })
        .map(|(i, name)| FieldError {
            field: format!("notify[{i}]"),
            problem: format!(
                "no notification endpoint {name:?} is open to {service}; this server's are: {}",
                open_endpoints(&state, &service)
            ),
        })
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::invalid(unknown));
    }
    if let Some(cloud) = &state.cloud {
        let problems = cloud.check_config(&config);
        if !problems.is_empty() {
            return Err(ApiError::invalid(problems));
        }
        // Then the cloud's own word (say, Elastic Beanstalk's stacks and options). A cloud
        // that cannot be asked, or refuses the roller's call, leaves the config unsaved.
        let problems = cloud.validate_config(&config).await.map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("the config could not be checked against Elastic Beanstalk; retry shortly ({e})"),
            )
        })?;
        if !problems.is_empty() {
            return Err(ApiError::invalid(problems));
        }
    }
    super::ownership::claim(&state, &service, &config, &actor).await?;
    let (_, folded) = submit(
        &state,
        &service,
        &actor,
        &Command::SaveConfig(Box::new(config.clone())),
    )
    .await?;
    super::ownership::release_others(&state, &service, &config, &actor).await;
    let config_version = folded.latest_config().map_or(0, |c| c.version);
    Ok(Json(ConfigSaved {
        service,
        config_version,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseBody {
    /// The image tag to run.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")]
    version: String,
    #[serde(default)]
    #[schema(max_length = 1000)]
    reason: Option<String>,
    /// Start even while one of the config's alarms is in ALARM.
    #[serde(default)]
    override_alarms: bool,
}

/// Releases a version: a new rollout, `202` with its id.
#[utoipa::path(
    post,
    path = "/v1/services/{service}/releases",
    tag = "commands",
    params(super::openapi::ServiceParam, DryRun),
    request_body(content = ReleaseBody, content_type = "application/json"),
    responses(
        (status = 202, description = "accepted: the rollout started", body = ReleaseAccepted),
        (status = 200, description = "a dry run: what it would record, nothing recorded", body = ReleaseAccepted),
        (status = 400, description = "invalid input: the error names the field", body = ErrorBody),
        (status = 404, description = "unknown service", body = ErrorBody),
        (status = 409, description = "refused in the service's current state", body = ErrorBody),
        (status = 413, description = "the body is over 256 KiB", body = ErrorBody),
        (status = 415, description = "the body is not `application/json`", body = ErrorBody),
        (status = 503, description = "the event store is unavailable", body = ErrorBody),
    )
)]
pub async fn release(
    State(state): State<AppState>,
    ServicePath(service): ServicePath,
    Extension(caller): Extension<Identity>,
    Params(dry): Params<DryRun>,
    Body(body): Body<ReleaseBody>,
) -> Accepted202<ReleaseAccepted> {
    let actor = caller.actor;
    validate_version(&body.version)?;
    if let Some(reason) = &body.reason {
        validate_reason(reason)?;
    }
    load_existing(&state, &service).await?;
    let command = Command::Release {
        version: body.version.clone(),
        reason: body.reason,
        override_alarms: body.override_alarms,
    };
    let (accepted, status) = if dry.dry_run {
        (check(&state, &service, &command).await?, StatusCode::OK)
    } else {
        let (accepted, _) = submit(&state, &service, &actor, &command).await?;
        (accepted, StatusCode::ACCEPTED)
    };
    Ok((
        status,
        Json(ReleaseAccepted {
            rollout_id: accepted.rollout_id,
            service,
            version: body.version,
            action: accepted.action.to_string(),
            would_record: dry.dry_run.then(|| would_record(&accepted)),
        }),
    ))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// The version to go back to; by default the one before the current.
    #[serde(default)]
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")]
    to_version: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// Releases the previous version (or aborts the rollout in progress).
#[utoipa::path(
    post,
    path = "/v1/services/{service}/rollback",
    tag = "commands",
    params(super::openapi::ServiceParam, DryRun),
    request_body(content = Option<RollbackBody>, content_type = "application/json",
        description = "optional: an empty body means the defaults"),
    responses(
        (status = 202, description = "accepted", body = CommandAccepted),
        (status = 200, description = "a dry run: what it would record, nothing recorded", body = CommandAccepted),
        (status = 400, description = "invalid input: the error names the field", body = ErrorBody),
        (status = 404, description = "unknown service", body = ErrorBody),
        (status = 409, description = "refused in the service's current state", body = ErrorBody),
        (status = 503, description = "the event store is unavailable", body = ErrorBody),
    )
)]
pub async fn rollback(
    State(state): State<AppState>,
    ServicePath(service): ServicePath,
    Extension(caller): Extension<Identity>,
    Params(dry): Params<DryRun>,
    BodyOrDefault(body): BodyOrDefault<RollbackBody>,
) -> Accepted202<CommandAccepted> {
    let actor = caller.actor;
    if let Some(v) = &body.to_version {
        validate_version(v).map_err(|e| ApiError::field("to_version", e.problem))?;
    }
    if let Some(reason) = &body.reason {
        validate_reason(reason)?;
    }
    load_existing(&state, &service).await?;
    let command = Command::Rollback {
        to_version: body.to_version,
        reason: body.reason,
    };
    if dry.dry_run {
        return Ok(command_accepted(
            check(&state, &service, &command).await?,
            true,
        ));
    }
    let (accepted, _) = submit(&state, &service, &actor, &command).await?;
    Ok(command_accepted(accepted, false))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    #[serde(default)]
    reason: Option<String>,
}

/// A command on the rollout in progress; answers with the rollout it acted on.
async fn on_rollout(
    state: AppState,
    service: String,
    caller: Identity,
    dry: DryRun,
    command: Command,
) -> Accepted202<CommandAccepted> {
    let actor = caller.actor;
    load_existing(&state, &service).await?;
    let accepted = if dry.dry_run {
        check(&state, &service, &command).await?
    } else {
        submit(&state, &service, &actor, &command).await?.0
    };
    // Only a rollback names a version; these commands answer without one, as they always have.
    let mut answer = command_accepted(accepted, dry.dry_run);
    answer.1.version = None;
    Ok(answer)
}

/// Pauses the rollout in progress.
#[utoipa::path(
    post,
    path = "/v1/services/{service}/pause",
    tag = "commands",
    params(super::openapi::ServiceParam, DryRun),
    request_body(content = Option<ReasonBody>, content_type = "application/json",
        description = "optional: an empty body means no reason"),
    responses(
        (status = 202, description = "accepted", body = CommandAccepted),
        (status = 200, description = "a dry run: what it would record, nothing recorded", body = CommandAccepted),
        (status = 400, description = "invalid input: the error names the field", body = ErrorBody),
        (status = 404, description = "unknown service", body = ErrorBody),
        (status = 409, description = "no rollout to act on, or refused in its state", body = ErrorBody),
        (status = 503, description = "the event store is unavailable", body = ErrorBody),
    )
)]
pub async fn pause(
    State(state): State<AppState>,
    ServicePath(service): ServicePath,
    Extension(caller): Extension<Identity>,
    Params(dry): Params<DryRun>,
    BodyOrDefault(body): BodyOrDefault<ReasonBody>,
) -> Accepted202<CommandAccepted> {
    if let Some(reason) = &body.reason {
        validate_reason(reason)?;
    }
    let command = Command::Pause {
        reason: body.reason,
    };
    on_rollout(state, service, caller, dry, command).await
}

/// Resumes a paused rollout.
#[utoipa::path(
    post,
    path = "/v1/services/{service}/resume",
    tag = "commands",
    params(super::openapi::ServiceParam, DryRun),
    request_body(content = Option<ReasonBody>, content_type = "application/json",
        description = "optional: an empty body means no reason"),
    responses(
        (status = 202, description = "accepted", body = CommandAccepted),
        (status = 200, description = "a dry run: what it would record, nothing recorded", body = CommandAccepted),
        (status = 400, description = "invalid input: the error names the field", body = ErrorBody),
        (status = 404, description = "unknown service", body = ErrorBody),
        (status = 409, description = "no rollout to act on, or refused in its state", body = ErrorBody),
        (status = 503, description = "the event store is unavailable", body = ErrorBody),
    )
)]
pub async fn resume(
    State(state): State<AppState>,
    ServicePath(service): ServicePath,
    Extension(caller): Extension<Identity>,
    Params(dry): Params<DryRun>,
    BodyOrDefault(body): BodyOrDefault<ReasonBody>,
) -> Accepted202<CommandAccepted> {
    if let Some(reason) = &body.reason {
        validate_reason(reason)?;
    }
    let command = Command::Resume {
        reason: body.reason,
    };
    on_rollout(state, service, caller, dry, command).await
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteBody {
    /// Skip every step left: the next shift goes to 100% (alarms still roll back).
    #[serde(default)]
    full: bool,
    #[serde(default)]
    #[schema(max_length = 1000)]
    reason: Option<String>,
}

/// Ends the current wait (canary, test endpoint); with `full`, also every step left.
#[utoipa::path(
    post,
    path = "/v1/services/{service}/promote",
    tag = "commands",
    params(super::openapi::ServiceParam, DryRun),
    request_body(content = Option<PromoteBody>, content_type = "application/json",
        description = "optional: an empty body means one step, no reason"),
    responses(
        (status = 202, description = "accepted", body = CommandAccepted),
        (status = 200, description = "a dry run: what it would record, nothing recorded", body = CommandAccepted),
        (status = 400, description = "invalid input: the error names the field", body = ErrorBody),
        (status = 404, description = "unknown service", body = ErrorBody),
        (status = 409, description = "no rollout to act on, or refused in its state", body = ErrorBody),
        (status = 503, description = "the event store is unavailable", body = ErrorBody),
    )
)]
pub async fn promote(
    State(state): State<AppState>,
    ServicePath(service): ServicePath,
    Extension(caller): Extension<Identity>,
    Params(dry): Params<DryRun>,
    BodyOrDefault(body): BodyOrDefault<PromoteBody>,
) -> Accepted202<CommandAccepted> {
    if let Some(reason) = &body.reason {
        validate_reason(reason)?;
    }
    let command = Command::Promote {
        full: body.full,
        reason: body.reason,
    };
    on_rollout(state, service, caller, dry, command).await
}

/// Moves traffic back to the previous version.
#[utoipa::path(
    post,
    path = "/v1/services/{service}/abort",
    tag = "commands",
    params(super::openapi::ServiceParam, DryRun),
    request_body(content = Option<ReasonBody>, content_type = "application/json",
        description = "optional: an empty body means no reason"),
    responses(
        (status = 202, description = "accepted", body = CommandAccepted),
        (status = 200, description = "a dry run: what it would record, nothing recorded", body = CommandAccepted),
        (status = 400, description = "invalid input: the error names the field", body = ErrorBody),
        (status = 404, description = "unknown service", body = ErrorBody),
        (status = 409, description = "no rollout to act on, or refused in its state", body = ErrorBody),
        (status = 503, description = "the event store is unavailable", body = ErrorBody),
    )
)]
pub async fn abort(
    State(state): State<AppState>,
    ServicePath(service): ServicePath,
    Extension(caller): Extension<Identity>,
    Params(dry): Params<DryRun>,
    BodyOrDefault(body): BodyOrDefault<ReasonBody>,
) -> Accepted202<CommandAccepted> {
    if let Some(reason) = &body.reason {
        validate_reason(reason)?;
    }
    let command = Command::Abort {
        reason: body.reason,
    };
    on_rollout(state, service, caller, dry, command).await
}

/// The notification endpoints `service`'s config may name, for a refusal's message.
fn open_endpoints(state: &AppState, service: &str) -> String {
    let names: Vec<&str> = state
        .notifications
        .iter()
        .filter(|e| e.open_to(service))
        .map(|e| e.name.as_str())
        .collect();
    if names.is_empty() {
        "none (the operator lists them in `ionroller up --notifications FILE`)".into()
    } else {
        names.join(", ")
    }
}
