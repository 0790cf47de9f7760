//! Extractors that make bad input follow the API's error format: a JSON body whose rejection
//! names what is wrong, an optional body, path and query parameters, and the actor header.
//! axum's own rejections answer in `text/plain`; every one here answers with `ErrorBody`.
//!
//! Bodies: at most [`MAX_BODY_BYTES`] (413), UTF-8 (else 400 naming where), JSON whose syntax
//! errors name the line and column and whose type errors name the field
//! (`serde_path_to_error`), sent as `application/json` (else 415 naming `content-type`).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use ionroller_shared::config::FieldError;

use super::ApiError;

/// The largest request body the API reads: 256 KiB, far above any real config (the example
/// is under 1 KiB; Elastic Beanstalk takes 4 KiB of environment variables) and far below the
/// event store's 4 MiB append limit. Set on the router with `DefaultBodyLimit`.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// A JSON body whose rejections follow the API's error format (naming what is wrong).
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        json_content_type(req.headers(), ContentType::Required)?;
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(Body)
    }
}

/// An optional JSON body: empty means `T::default()`. A body, or a Content-Type, must be JSON:
/// a command never runs on a `text/plain` form post, which a browser sends cross-site
/// without asking (with bearer credentials required this is a second wall, not the first).
pub struct BodyOrDefault<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Default> FromRequest<S> for BodyOrDefault<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        json_content_type(req.headers(), ContentType::Optional)?;
        let has_content_type = req.headers().contains_key(header::CONTENT_TYPE);
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(BodyOrDefault(T::default()));
        }
        if !has_content_type {
            return Err(unsupported("no Content-Type"));
        }
        parse_json(&bytes).map(BodyOrDefault)
    }
}

/// A JSON document as text, for a parser of its own (the config's, which names every
/// problem): checked for size, Content-Type (required, JSON) and UTF-8 like [`Body`].
pub struct JsonText(pub String);

impl<S: Send + Sync> FromRequest<S> for JsonText {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        json_content_type(req.headers(), ContentType::Required)?;
        let bytes = read_body(req, state).await?;
        utf8(&bytes).map(|text| JsonText(text.to_string()))
    }
}

enum ContentType {
    Required,
    Optional,
}

/// `application/json` or `application/<something>+json`, with any parameters (`charset`).
fn json_content_type(headers: &HeaderMap, rule: ContentType) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return match rule {
            ContentType::Optional => Ok(()),
            ContentType::Required => Err(unsupported("no Content-Type")),
        };
    };
    let essence = value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    let json = essence.as_deref().is_some_and(|t| {
        t == "application/json" || (t.starts_with("application/") && t.ends_with("+json"))
    });
    if json {
        Ok(())
    } else {
        let shown = value.to_str().unwrap_or("(not text)");
        Err(unsupported(&format!("{shown:?}")))
    }
}

fn unsupported(what: &str) -> ApiError {
    let mut e = ApiError::field(
        "content-type",
        format!("is {what}; send the body as application/json"),
    );
    e.status = StatusCode::UNSUPPORTED_MEDIA_TYPE;
    e.code = "unsupported_media_type";
    e
}

/// The whole body, within the router's `DefaultBodyLimit`; over it, a 413 in the API's format.
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            let problem = format!(
                "is over {} KiB, the most this API reads",
                MAX_BODY_BYTES / 1024
            );
            ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "too_large",
                message: format!("body: {problem}"),
                problems: vec![FieldError {
                    field: "body".into(),
                    problem,
                }],
            }
        } else {
            ApiError::field("body", rejection.body_text())
        }
    })
}

/// The body as text; if it is not UTF-8, the error says where (line, column and byte).
fn utf8(bytes: &[u8]) -> Result<&str, ApiError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let valid = &bytes[..e.valid_up_to()];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = valid
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |at| at + 1);
        let column = valid.len() - line_start + 1;
        ApiError::field(
            "body",
            format!(
                "is not UTF-8: byte {} (line {line} column {column}) starts an invalid sequence; send JSON as UTF-8",
                e.valid_up_to()
            ),
        )
    })
}

/// Parses a JSON body: a syntax error names its line and column, a type error the field
/// (`version`, `reason`), found with `serde_path_to_error`.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text = utf8(bytes)?;
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::field(
                "body",
                ionroller_shared::config::json_syntax_problem(&inner),
            )
        } else if path == "." || path.contains('?') {
            ApiError::field("body", inner.to_string())
        } else {
            ApiError::field(&path, inner.to_string())
        }
    })?;
    de.end()
        .map_err(|e| ApiError::field("body", ionroller_shared::config::json_syntax_problem(&e)))?;
    Ok(value)
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
