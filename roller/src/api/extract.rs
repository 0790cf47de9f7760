//! Extractors that make bad input follow the API's error format: a JSON body whose rejection
//! names what is wrong, an optional body, path and query parameters, and the actor header.
//! axum's own rejections answer in `text/plain`; every one here answers with `ErrorBody`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;

use super::{ApiError, ACTOR_HEADER};

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

/// The `{service}` path parameter, checked: a bad name is a 400 naming `service`.
pub struct ServicePath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ServicePath {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(service) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::field("service", e.body_text()))?;
        ionroller_shared::config::validate_service_name(&service)?;
        Ok(ServicePath(service))
    }
}

/// Query parameters whose rejections (bad percent-encoding, a wrong type) name the query.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Params(q.0))
            .map_err(|e| ApiError::field("query", e.body_text()))
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

pub fn actor(headers: &HeaderMap) -> Result<String, ApiError> {
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
