//! The API's one error type: a status, a machine-readable code, a message that names the
//! field at fault and what is allowed.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ionroller_shared::config::FieldError;
use ionroller_shared::http::ErrorBody;
use ionroller_shared::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub problems: Vec<FieldError>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    pub fn invalid(problems: Vec<FieldError>) -> Self {
        let message = problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid",
            message,
            problems,
        }
    }

    pub fn field(field: &str, problem: impl Into<String>) -> Self {
        Self::invalid(vec![FieldError {
            field: field.to_string(),
            problem: problem.into(),
        }])
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// A command the core's rules refused: 409, its `error` the refusal's stable code
    /// (`alarms_firing`, `no_rollout`, ...), so clients branch on it and not on the wording.
    pub fn refused(refusal: &ionroller_core::commands::Refusal) -> Self {
        Self::new(StatusCode::CONFLICT, refusal.code(), refusal.to_string())
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::invalid(vec![e])
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::WrongExpectedRevision { .. } => ApiError::conflict(format!(
                "another command changed the service at the same time; retry ({e})"
            )),
            StoreError::InvalidStreamId { .. } | StoreError::InvalidPosition { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.to_string())
            }
            StoreError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
            }
            other => {
                tracing::error!(error = %other, "event store error");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the event store is unavailable; retry shortly",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code.to_string(),
            message: self.message,
            problems: self.problems,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<crate::log::RollerError> for ApiError {
    fn from(e: crate::log::RollerError) -> Self {
        match e {
            crate::log::RollerError::Store(s) => ApiError::from(s),
            poison => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "poison_event",
                poison.to_string(),
            ),
        }
    }
}

impl From<crate::metrics::MetricsError> for ApiError {
    fn from(e: crate::metrics::MetricsError) -> Self {
        tracing::error!(error = %e, "metrics");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }
}
