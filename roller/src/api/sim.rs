//! `/v1/sim/*`: drive the simulated cloud by hand (alarms, failing versions, changes behind the
//! roller's back) to try failures and drift. These routes exist only when the roller runs on
//! the simulator: `serve` merges them then, and a roller on a real cloud has none.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use ionroller_shared::config::{validate_service_name, validate_version};
use ionroller_shared::events::AlarmState;
use serde::Deserialize;
use serde_json::json;

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlarmBody {
    state: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    value: Option<f64>,
}

async fn sim_alarm(
    State(sim): State<SimCloud>,
    Path(name): Path<String>,
    Body(body): Body<AlarmBody>,
) -> Result<Response, ApiError> {
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
    Ok(Json(json!({ "alarm": name, "state": body.state })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailBody {
    service: String,
    version: String,
}

async fn sim_fail_env(
    State(sim): State<SimCloud>,
    Body(body): Body<FailBody>,
) -> Result<Response, ApiError> {
    validate_service_name(&body.service)?;
    validate_version(&body.version)?;
    sim.fail_version(&body.service, &body.version)
        .map_err(sim_error)?;
    Ok(Json(json!({ "failing": format!("{}/{}", body.service, body.version) })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvBody {
    environment: String,
}

async fn sim_terminate_env(
    State(sim): State<SimCloud>,
    Body(body): Body<EnvBody>,
) -> Result<Response, ApiError> {
    sim.terminate_outside(&body.environment)
        .map_err(sim_error)?;
    Ok(Json(json!({ "terminated": body.environment })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InstanceBody {
    instance: String,
}

async fn sim_deregister(
    State(sim): State<SimCloud>,
    Body(body): Body<InstanceBody>,
) -> Result<Response, ApiError> {
    sim.deregister_outside(&body.instance).map_err(sim_error)?;
    Ok(Json(json!({ "deregistered": body.instance })).into_response())
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
