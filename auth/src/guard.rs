//! The axum middleware in front of every route of the roller and trail: who is asking
//! (401 without valid credentials), may they (403 naming the permission needed), and the
//! verified identity handed to the handler as a request extension. Each service supplies its
//! own table of what each route needs; a route missing from the table needs `admin`, so a new
//! route is closed until someone decides otherwise.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use ionroller_shared::http::ErrorBody;

use crate::authenticator::{AuthError, Authenticator};
use crate::policy::Permission;

/// What a route needs, before the service it names is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No credentials (`/healthz`, the OpenAPI document).
    Open,
    /// Any valid identity (`whoami`).
    Authenticated,
    /// Read the service in the `{service}` path parameter, or else the `service` query
    /// parameter; with neither, read the whole fleet.
    Read,
    /// A cross-service list the handler filters row by row.
    ReadAll,
    /// Read across services where rows are not filtered one by one.
    ReadFleet,
    Deploy,
    Configure,
    Administer,
}

/// A refusal the guard answered, for the service's counters and log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    Unauthenticated,
    Forbidden,
}

/// What the middleware needs: the authenticator, the service's route table, its clock, and
/// where to count refusals.
#[derive(Clone)]
pub struct Guard {
    pub auth: Arc<Authenticator>,
    pub rules: fn(&Method, &str) -> Option<Access>,
    pub now: Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>,
    pub on_refused: Arc<dyn Fn(Refused) + Send + Sync>,
}

pub async fn guard(State(guard): State<Guard>, mut request: Request, next: Next) -> Response {
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let access = (guard.rules)(request.method(), &matched).unwrap_or(Access::Administer);
    if access == Access::Open {
        return next.run(request).await;
    }
    let what = format!("{} {}", request.method(), request.uri().path());
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let identity = match guard.auth.authenticate(authorization, (guard.now)()).await {
        Ok(identity) => identity,
        Err(AuthError::Unavailable(e)) => {
            tracing::error!(error = %e, "authentication: the event store is unavailable");
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                AuthError::Unavailable(e).to_string(),
            );
        }
        Err(e) => {
            let why = match &e {
                AuthError::Rejected(why) => why.as_str(),
                _ => "no credentials",
            };
            tracing::warn!(request = %what, reason = why, "unauthenticated request refused");
            (guard.on_refused)(Refused::Unauthenticated);
            let mut response = refusal(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                format!(
                    "{e}; the CLI sends --token, else IONROLLER_TOKEN, else the token in ~/.config/ionroller/config.json, else (for a server on this machine) .ionroller/admin.token, which `ionroller up` writes (IONROLLER_DATA_DIR names another data dir)"
                ),
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    };
    // Decoded as the handler's `Path` extractor decodes it, so the service authorized is the
    // service acted on.
    let path_service = service_in_path(&matched, request.uri().path());
    let query_service = request.uri().query().and_then(service_in_query);
    let permission = match (access, path_service.as_deref().or(query_service.as_deref())) {
        (Access::Read, Some(service)) => Some(Permission::Read { service }),
        (Access::Read | Access::ReadFleet, None) => Some(Permission::ReadFleet),
        (Access::ReadFleet, Some(_)) => Some(Permission::ReadFleet),
        (Access::ReadAll, _) => Some(Permission::ReadAll),
        (Access::Deploy, Some(service)) => Some(Permission::Deploy { service }),
        (Access::Configure, Some(service)) => Some(Permission::Configure { service }),
        // A service-scoped route without a service in its path is a table mistake: the
        // strictest permission holds.
        (Access::Deploy | Access::Configure | Access::Administer, _) => {
            Some(Permission::Administer)
        }
        (Access::Authenticated | Access::Open, _) => None,
    };
    if let Some(permission) = permission {
        if let Err(denied) = identity.may(&permission) {
            (guard.on_refused)(Refused::Forbidden);
            tracing::warn!(request = %what, actor = %identity.actor, %denied, "forbidden");
            guard
                .auth
                .record_denied(&identity, what, permission.describe(), (guard.now)())
                .await;
            return refusal(StatusCode::FORBIDDEN, "forbidden", denied.to_string());
        }
    }
    request.extensions_mut().insert(identity);
    next.run(request).await
}

fn refusal(status: StatusCode, code: &str, message: String) -> Response {
    let body = ErrorBody {
        error: code.to_string(),
        message,
        problems: Vec::new(),
    };
    (status, Json(body)).into_response()
}

/// The segment of `path` where the route template has `{service}`, percent-decoded as the
/// handler's `Path` extractor decodes it, so that the service authorized is the service acted
/// on. A segment that does not decode to UTF-8 is kept as it is (the handler refuses it).
fn service_in_path(template: &str, path: &str) -> Option<String> {
    let index = template.split('/').position(|s| s == "{service}")?;
    let raw = path.split('/').nth(index).filter(|s| !s.is_empty())?;
    Some(
        percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map_or_else(|_| raw.to_string(), |s| s.into_owned()),
    )
}

fn service_in_query(query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_is_read_from_the_path_then_the_query() {
        let t = "/v1/services/{service}/releases";
        assert_eq!(
            service_in_path(t, "/v1/services/hello/releases").as_deref(),
            Some("hello")
        );
        assert_eq!(
            service_in_path(t, "/v1/services/%70ayments-api/releases").as_deref(),
            Some("payments-api")
        );
        assert_eq!(service_in_path("/v1/services", "/v1/services"), None);
        assert_eq!(
            service_in_query("since=1d&service=pay%2Dapi"),
            Some("pay-api".into())
        );
        assert_eq!(service_in_query("service="), None);
    }
}
