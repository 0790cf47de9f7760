//! `/v1/sim/*`: drive the simulated cloud by hand (alarms, failing versions, changes behind the
//! roller's back) to try failures and drift. These routes exist only when the roller runs on
//! the simulator: `serve` merges them then, and a roller on a real cloud has none.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use ionroller_shared::config::{validate_service_name, validate_version};
use ionroller_shared::events::AlarmState;
use ionroller_shared::http::ErrorBody;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, Body};
use crate::cloud::sim::SimCloud;

/// The simulator's routes, with the simulator as their state.
pub fn routes(sim: SimCloud) -> Router {
    Router::new()
        .route("/v1/sim/alarms/{name}", post(sim_alarm))
        .route("/v1/sim/fail-env", post(sim_fail_env))
        .route("/v1/sim/terminate-env", post(sim_terminate_env))
        .route("/v1/sim/deregister", post(sim_deregister))
        .with_state(sim)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlarmBody {
    /// `ALARM`, `OK` or `INSUFFICIENT_DATA`.
    state: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    value: Option<f64>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct AlarmSet {
    pub alarm: String,
    pub state: String,
}

/// Simulated cloud: sets an alarm's state.
#[utoipa::path(
    post,
    path = "/v1/sim/alarms/{name}",
    tag = "simulator",
    params(("name" = String, Path, min_length = 1, max_length = 255, description = "the alarm")),
    request_body(content = AlarmBody, content_type = "application/json"),
    responses(
        (status = 200, description = "set", body = AlarmSet),
        (status = 400, description = "a bad state or name, named", body = ErrorBody),
        (status = 415, description = "the body is not `application/json`", body = ErrorBody),
        (status = 503, description = "the simulator could not save its state", body = ErrorBody),
    )
)]
pub async fn sim_alarm(
    State(sim): State<SimCloud>,
    Path(name): Path<String>,
    Body(body): Body<AlarmBody>,
) -> Result<Json<AlarmSet>, ApiError> {
    let alarm_state = match body.state.as_str() {
        "ALARM" => AlarmState::Alarm,
        "OK" => AlarmState::Ok,
        "INSUFFICIENT_DATA" => AlarmState::InsufficientData,
        other => {
            return Err(ApiError::field(
                "state",
                format!("{other:?} is not an alarm state; use ALARM, OK or INSUFFICIENT_DATA"),
            ))
        }
    };
    if name.is_empty() || name.len() > 255 {
        return Err(ApiError::field("name", "must be 1 to 255 characters"));
    }
    sim.set_alarm(&name, alarm_state, body.reason, body.value)
        .map_err(sim_error)?;
    Ok(Json(AlarmSet {
        alarm: name,
        state: body.state,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailBody {
    #[schema(pattern = r"^[a-z][a-z0-9-]{0,21}[a-z0-9]$")]
    service: String,
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")]
    version: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Failing {
    /// `service/version`.
    pub failing: String,
}

/// Simulated cloud: environments of a version turn Red.
#[utoipa::path(
    post,
    path = "/v1/sim/fail-env",
    tag = "simulator",
    request_body(content = FailBody, content_type = "application/json"),
    responses(
        (status = 200, description = "set", body = Failing),
        (status = 400, description = "a bad field, named", body = ErrorBody),
        (status = 415, description = "the body is not `application/json`", body = ErrorBody),
        (status = 503, description = "the simulator could not save its state", body = ErrorBody),
    )
)]
pub async fn sim_fail_env(
    State(sim): State<SimCloud>,
    Body(body): Body<FailBody>,
) -> Result<Json<Failing>, ApiError> {
    validate_service_name(&body.service)?;
    validate_version(&body.version)?;
    sim.fail_version(&body.service, &body.version)
        .map_err(sim_error)?;
    Ok(Json(Failing {
        failing: format!("{}/{}", body.service, body.version),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvBody {
    environment: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Terminated {
    pub terminated: String,
}

/// Simulated cloud: terminates an environment behind the roller's back.
#[utoipa::path(
    post,
    path = "/v1/sim/terminate-env",
    tag = "simulator",
    request_body(content = EnvBody, content_type = "application/json"),
    responses(
        (status = 200, description = "done", body = Terminated),
        (status = 400, description = "unknown environment or bad body", body = ErrorBody),
        (status = 415, description = "the body is not `application/json`", body = ErrorBody),
        (status = 503, description = "the simulator could not save its state", body = ErrorBody),
    )
)]
pub async fn sim_terminate_env(
    State(sim): State<SimCloud>,
    Body(body): Body<EnvBody>,
) -> Result<Json<Terminated>, ApiError> {
    sim.terminate_outside(&body.environment)
        .map_err(sim_error)?;
    Ok(Json(Terminated {
        terminated: body.environment,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceBody {
    instance: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Deregistered {
    pub deregistered: String,
}

/// Simulated cloud: deregisters an instance behind the roller's back.
#[utoipa::path(
    post,
    path = "/v1/sim/deregister",
    tag = "simulator",
    request_body(content = InstanceBody, content_type = "application/json"),
    responses(
        (status = 200, description = "done", body = Deregistered),
        (status = 400, description = "unknown instance or bad body", body = ErrorBody),
        (status = 415, description = "the body is not `application/json`", body = ErrorBody),
        (status = 503, description = "the simulator could not save its state", body = ErrorBody),
    )
)]
pub async fn sim_deregister(
    State(sim): State<SimCloud>,
    Body(body): Body<InstanceBody>,
) -> Result<Json<Deregistered>, ApiError> {
    sim.deregister_outside(&body.instance).map_err(sim_error)?;
    Ok(Json(Deregistered {
        deregistered: body.instance,
    }))
}

fn sim_error(e: crate::cloud::CloudError) -> ApiError {
    match e {
        crate::cloud::CloudError::Rejected { message, .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, "rejected", message)
        }
        other => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            other.to_string(),
        ),
    }
}
