//! Trail's query API under `/v1`, the live audit feed, metrics and the dashboard page.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use ionroller_auth::guard::{Access, Guard};
use ionroller_auth::{Authenticator, Identity};
use ionroller_projections::audit::AuditFilter;
use ionroller_projections::delivery::delivery_report;
use ionroller_projections::delivery::DeliveryReport;
use ionroller_shared::config::{validate_service_name, FieldError};
use ionroller_shared::http::ErrorBody;
use ionroller_shared::store::StoreError;
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi};

use crate::db::{DbError, CHAIN_CHECKPOINT_EVERY};
use crate::metrics::MetricsError;
use crate::runner::{Status, Trail, TrailError};
use crate::views::{
    AtTime, AuditPage, Chain, ChainPoint, ReleaseList, ServiceList, ServiceSummary, Verification,
};

pub struct ApiError(StatusCode, String, Option<String>);

impl ApiError {
    fn param(name: &str, problem: impl Into<String>) -> Self {
        ApiError(
            StatusCode::BAD_REQUEST,
            problem.into(),
            Some(name.to_string()),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = match self.0 {
            StatusCode::BAD_REQUEST => "invalid",
            _ => "unavailable",
        };
        let problems = self
            .2
            .map(|field| FieldError {
                field,
                problem: self.1.clone(),
            })
            .into_iter()
            .collect();
        let body = ErrorBody {
            error: code.to_string(),
            message: self.1,
            problems,
        };
        (self.0, Json(body)).into_response()
    }
}

impl From<TrailError> for ApiError {
    fn from(e: TrailError) -> Self {
        tracing::error!(error = %e, "trail error");
        ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), None)
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        TrailError::from(e).into()
    }
}

impl From<MetricsError> for ApiError {
    fn from(e: MetricsError) -> Self {
        tracing::error!(error = %e, "trail metrics");
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("event store: {e}"),
            None,
        )
    }
}

/// The `{service}` path parameter, checked as the roller checks it: a bad name is a 400 naming
/// `service` (axum's own rejection would answer in plain text).
struct ServicePath(String);

impl<S: Send + Sync> FromRequestParts<S> for ServicePath {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(service) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::param("service", e.body_text()))?;
        validate_service_name(&service).map_err(|e| ApiError::param("service", e.problem))?;
        Ok(ServicePath(service))
    }
}

/// Query parameters whose rejections (bad percent-encoding) answer with `ErrorBody`.
struct Params<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Params(q.0))
            .map_err(|e| ApiError::param("query", e.body_text()))
    }
}

/// What each of trail's routes needs; the guard in `ionroller_auth` asks it for every request.
/// A route missing here needs `admin`.
pub fn trail_rules(method: &axum::http::Method, route: &str) -> Option<Access> {
    if *method != axum::http::Method::GET {
        return None;
    }
    Some(match route {
        // The page itself holds no data; it asks for a token and reads the API with it.
        "/" | "/healthz" | "/v1/openapi.json" => Access::Open,
        "/v1/status" => Access::Authenticated,
        // Filtered to the services the caller may read.
        "/v1/services" => Access::ReadAll,
        // One service's rows (`?service=` or the path), or the whole fleet's.
        "/v1/audit"
        | "/v1/services/{service}/releases"
        | "/v1/services/{service}/at"
        | "/v1/reports/delivery" => Access::Read,
        "/metrics" | "/v1/verify" | "/v1/chain" | "/v1/feed" => Access::ReadFleet,
        _ => return None,
    })
}

/// What the dashboard page links to, given when trail starts (`trail serve --console-url`).
#[derive(Clone, Debug, Default)]
pub struct Page {
    /// The roller's console (the roller's URL, whose `/` serves it); no link when `None`.
    pub console_url: Option<String>,
}

impl Page {
    /// The dashboard's HTML, with the link to the roller's console when there is one.
    pub fn html(&self) -> String {
        let link = self.console_url.as_deref().map_or_else(String::new, |url| {
            format!(
                "<a id=\"console-link\" href=\"{}\">roller console</a>",
                escape_attribute(url)
            )
        });
        include_str!("dashboard.html").replace("<!--console-link-->", &link)
    }
}

/// A `--console-url` that is not an absolute http(s) URL.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an http:// or https:// URL, e.g. http://127.0.0.1:7878/")]
pub struct BadConsoleUrl(pub String);

/// Checks a `--console-url`: an absolute http(s) URL.
pub fn parse_console_url(text: &str) -> Result<String, BadConsoleUrl> {
    let ok = (text.starts_with("http://") || text.starts_with("https://"))
        && !text.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(text.to_string())
    } else {
        Err(BadConsoleUrl(text.to_string()))
    }
}

fn escape_attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Trail's API, every route behind the guard with [`trail_rules`]; `/metrics` open if
/// `public_metrics`.
pub fn app(trail: Arc<Trail>, auth: Arc<Authenticator>, public_metrics: bool) -> Router {
    app_with_page(trail, auth, public_metrics, &Page::default())
}

/// As [`app`], with the dashboard linking where `page` says.
pub fn app_with_page(
    trail: Arc<Trail>,
    auth: Arc<Authenticator>,
    public_metrics: bool,
    page: &Page,
) -> Router {
    let metrics_trail = trail.clone();
    let guard = Guard {
        auth,
        rules: if public_metrics {
            |method, route| match route {
                "/metrics" => Some(Access::Open),
                _ => trail_rules(method, route),
            }
        } else {
            trail_rules
        },
        now: Arc::new(Utc::now),
        on_refused: Arc::new(move |refused| metrics_trail.metrics.refused(refused)),
    };
    routes(trail, page.html()).route_layer(axum::middleware::from_fn_with_state(
        guard,
        ionroller_auth::guard::guard,
    ))
}

fn routes(trail: Arc<Trail>, page: String) -> Router {
    let page = axum::body::Bytes::from(page);
    Router::new()
        .route("/", get(move || async move { Html(page) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(|| async { Json(openapi()) }))
        .route("/v1/status", get(status))
        .route("/v1/audit", get(audit))
        .route("/v1/services", get(services))
        .route("/v1/services/{service}/releases", get(releases))
        .route("/v1/services/{service}/at", get(at))
        .route("/v1/reports/delivery", get(delivery))
        .route("/v1/verify", get(verify))
        .route("/v1/chain", get(chain))
        .route("/v1/feed", get(feed))
        .with_state(trail)
}

fn parse_time(name: &str, value: &Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .as_ref()
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::param(
                        name,
                        format!("{v:?} is not an RFC 3339 time, e.g. 2026-11-25T12:00:00Z"),
                    )
                })
        })
        .transpose()
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Only this service's rows.
    service: Option<String>,
    /// Only rows by this actor.
    actor: Option<String>,
    /// `true`: only rows by people (tokens and OIDC subjects), not by the roller itself.
    #[param(value_type = Option<bool>)]
    people: Option<String>,
    /// Only this event type, e.g. `release-requested`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    event_type: Option<String>,
    /// Only rows about this version.
    version: Option<String>,
    /// Rows that occurred at or after this RFC 3339 time.
    #[param(format = DateTime)]
    from: Option<String>,
    /// Rows that occurred before this RFC 3339 time.
    #[param(format = DateTime)]
    to: Option<String>,
    /// Rows per page, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// The `next_cursor` of an earlier page.
    #[param(pattern = "^[0-9]{1,19}$")]
    cursor: Option<String>,
    /// `newest` (default) or `oldest` first.
    #[param(pattern = "^(newest|oldest)$")]
    order: Option<String>,
}

/// Audit rows, filtered, a page at a time with a stable cursor.
#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "a page of rows", body = AuditPage),
        (status = 400, description = "a bad parameter, named", body = ErrorBody),
        (status = 503, description = "the projection or the log is unavailable", body = ErrorBody),
    )
)]
async fn audit(
    State(trail): State<Arc<Trail>>,
    Params(q): Params<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let people_only = match q.people.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::param(
                "people",
                format!("{other:?}: use true or false"),
            ))
        }
    };
    let filter = AuditFilter {
        service: q.service,
        actor: q.actor,
        people_only,
        event_type: q.event_type,
        version: q.version,
        from: parse_time("from", &q.from)?,
        to: parse_time("to", &q.to)?,
    };
    let limit = match q.limit.as_deref() {
        None => 100,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::param("limit", "must be a whole number from 1 to 1000"))?,
    };
    let cursor = q
        .cursor
        .map(|c| {
            c.parse::<u64>().map_err(|_| {
                ApiError::param("cursor", "must be the next_cursor of an earlier page")
            })
        })
        .transpose()?;
    let newest_first = match q.order.as_deref() {
        None | Some("newest") => true,
        Some("oldest") => false,
        Some(other) => {
            return Err(ApiError::param(
                "order",
                format!("{other:?}: use newest or oldest"),
            ))
        }
    };
    let rows = trail.db.query(&filter, cursor, newest_first, limit).await?;
    let next_cursor = (rows.len() == limit)
        .then(|| rows.last().map(|r| r.seq.to_string()))
        .flatten();
    Ok(Json(AuditPage { rows, next_cursor }))
}

/// Services with their current traffic split and last release.
#[utoipa::path(
    get,
    path = "/v1/services",
    tag = "releases",
    responses(
        (status = 200, description = "services", body = ServiceList),
        (status = 503, description = "trail is unavailable", body = ErrorBody),
    )
)]
async fn services(
    State(trail): State<Arc<Trail>>,
    axum::Extension(caller): axum::Extension<Identity>,
) -> Result<Json<ServiceList>, ApiError> {
    let folds = trail
        .folds
        .read()
        .map_err(|_| TrailError::Internal("folds lock".into()))?;
    let mut out = Vec::new();
    let mut names: Vec<&String> = folds.timeline.services.keys().collect();
    for r in &folds.releases.releases {
        if !names.contains(&&r.service) {
            names.push(&r.service);
        }
    }
    names.sort();
    // Only the services the caller may read.
    names.retain(|name| caller.can_read(name));
    for name in names {
        let current = folds.timeline.services.get(name).and_then(|iv| iv.last());
        let last = folds.releases.for_service(name).last();
        out.push(ServiceSummary {
            service: name.clone(),
            traffic: current.map(|c| c.shares.clone()),
            last_release: last.cloned(),
        });
    }
    Ok(Json(ServiceList { services: out }))
}

/// The `{service}` path parameter: what `validate_service_name` accepts.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // read by the derive only: the handlers take `ServicePath`
struct ServiceParam {
    /// 2 to 23 lowercase letters, digits and hyphens, starting with a letter and not ending
    /// with a hyphen.
    #[param(
        pattern = r"^[a-z][a-z0-9-]{0,21}[a-z0-9]$",
        min_length = 2,
        max_length = 23,
        example = "hello"
    )]
    service: String,
}

/// Every rollout of a service: who, from, to, steps, outcome with evidence, waits.
#[utoipa::path(
    get,
    path = "/v1/services/{service}/releases",
    tag = "releases",
    params(ServiceParam),
    responses(
        (status = 200, description = "releases, oldest first (empty for an unknown service)",
            body = ReleaseList),
        (status = 400, description = "a bad service name", body = ErrorBody),
        (status = 503, description = "trail is unavailable", body = ErrorBody),
    )
)]
async fn releases(
    State(trail): State<Arc<Trail>>,
    ServicePath(service): ServicePath,
) -> Result<Json<ReleaseList>, ApiError> {
    let folds = trail
        .folds
        .read()
        .map_err(|_| TrailError::Internal("folds lock".into()))?;
    let releases = folds.releases.for_service(&service).cloned().collect();
    Ok(Json(ReleaseList { service, releases }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AtQuery {
    /// The moment asked about, RFC 3339 (required).
    #[param(required = true, format = DateTime)]
    time: Option<String>,
}

/// Traffic shares per version and environment, and the rollout in progress, at a time.
#[utoipa::path(
    get,
    path = "/v1/services/{service}/at",
    tag = "releases",
    params(ServiceParam, AtQuery),
    responses(
        (status = 200, description = "what ran then", body = AtTime),
        (status = 400, description = "a bad service name or time, named", body = ErrorBody),
        (status = 503, description = "trail is unavailable", body = ErrorBody),
    )
)]
async fn at(
    State(trail): State<Arc<Trail>>,
    ServicePath(service): ServicePath,
    Params(q): Params<AtQuery>,
) -> Result<Json<AtTime>, ApiError> {
    let time = parse_time("time", &q.time)?
        .ok_or_else(|| ApiError::param("time", "is required, an RFC 3339 time"))?;
    let folds = trail
        .folds
        .read()
        .map_err(|_| TrailError::Internal("folds lock".into()))?;
    let interval = folds.timeline.at(&service, time);
    let rollout = folds
        .releases
        .for_service(&service)
        .find(|r| r.requested_at <= time && r.ended_at.is_none_or(|e| time < e))
        .cloned();
    Ok(Json(AtTime {
        service,
        time,
        traffic: interval.map(|i| i.shares.clone()),
        since: interval.map(|i| i.from),
        until: interval.and_then(|i| i.to),
        rollout_in_progress: rollout,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeliveryQuery {
    /// Releases that ended at or after this RFC 3339 time.
    #[param(format = DateTime)]
    from: Option<String>,
    /// Releases that ended before this RFC 3339 time.
    #[param(format = DateTime)]
    to: Option<String>,
    /// Only this service.
    service: Option<String>,
}

/// Deployment frequency, lead time, change-failure rate, time to restore.
#[utoipa::path(
    get,
    path = "/v1/reports/delivery",
    tag = "reports",
    params(DeliveryQuery),
    responses(
        (status = 200, description = "the report", body = DeliveryReport),
        (status = 400, description = "a bad parameter, named", body = ErrorBody),
        (status = 503, description = "trail is unavailable", body = ErrorBody),
    )
)]
async fn delivery(
    State(trail): State<Arc<Trail>>,
    Params(q): Params<DeliveryQuery>,
) -> Result<Json<DeliveryReport>, ApiError> {
    let from = parse_time("from", &q.from)?;
    let to = parse_time("to", &q.to)?;
    let folds = trail
        .folds
        .read()
        .map_err(|_| TrailError::Internal("folds lock".into()))?;
    Ok(Json(delivery_report(
        &folds.releases.releases,
        from,
        to,
        q.service.as_deref(),
    )))
}

/// Checks the projection against the log, and the log against the checkpoints this trail
/// publishes (with its own key).
pub async fn verify_chain(trail: &Trail) -> Result<crate::verify::Report, ApiError> {
    let anchors = crate::verify::anchors_of(trail);
    crate::verify::verify(trail.store.as_ref(), &*trail.db, &anchors)
        .await
        .map_err(|e| ApiError::from(TrailError::Internal(e.to_string())))
}

/// Recomputes the audit hash chain against the log; names the first mismatching row.
#[utoipa::path(
    get,
    path = "/v1/verify",
    tag = "audit",
    responses(
        (status = 200, description = "`ok`, or the first row that does not match", body = Verification),
        (status = 503, description = "the projection or the log is unavailable", body = ErrorBody),
    )
)]
async fn verify(State(trail): State<Arc<Trail>>) -> Result<Json<Verification>, ApiError> {
    let report = verify_chain(&trail).await?;
    let first = report.first().cloned();
    let message = if report.ok() {
        report.summary()
    } else {
        report
            .findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    Ok(Json(Verification {
        ok: report.ok(),
        rows: Some(report.rows),
        first_mismatch: first.as_ref().map(|f| f.seq()),
        first_mismatch_position: first
            .as_ref()
            .and_then(|f| f.position().map(str::to_string)),
        message: Some(message),
        events: report.events,
        unanchored: report.unanchored,
        anchors: report.anchors,
        findings: report.findings,
    }))
}

/// The chain's current head and its periodic checkpoints, for keeping a copy outside trail.
#[utoipa::path(
    get,
    path = "/v1/chain",
    tag = "audit",
    responses(
        (status = 200, description = "head and checkpoints", body = Chain),
        (status = 503, description = "the projection is unavailable", body = ErrorBody),
    )
)]
async fn chain(State(trail): State<Arc<Trail>>) -> Result<Json<Chain>, ApiError> {
    // Checkpoints first: a commit in between only moves the head further on, so every
    // checkpoint listed is at or before the head shown.
    let checkpoints = trail.db.chain_checkpoints().await?;
    let head = trail.db.checkpoint().await?;
    let checkpoints = checkpoints
        .into_iter()
        .map(|(seq, position, head)| ChainPoint {
            seq,
            position: Some(position),
            head,
        })
        .collect();
    Ok(Json(Chain {
        head: ChainPoint {
            seq: head.seq,
            position: head.position.map(|p| p.to_token()),
            head: ionroller_projections::chain::to_hex(&head.head),
        },
        every: CHAIN_CHECKPOINT_EVERY,
        checkpoints,
    }))
}

/// Projection status: caught up, checkpoint, rows, error.
#[utoipa::path(
    get,
    path = "/v1/status",
    tag = "operations",
    responses(
        (status = 200, description = "status", body = Status),
        (status = 503, description = "trail is unavailable", body = ErrorBody),
    )
)]
async fn status(State(trail): State<Arc<Trail>>) -> Result<Json<Status>, ApiError> {
    let status = trail
        .status
        .lock()
        .map(|s| s.clone())
        .map_err(|_| TrailError::Internal("status lock".into()))?;
    Ok(Json(status))
}

async fn metrics(State(trail): State<Arc<Trail>>) -> Result<Response, ApiError> {
    let head = trail.store.head().await?;
    let status = trail
        .status
        .lock()
        .map(|s| s.clone())
        .map_err(|_| TrailError::Internal("status lock".into()))?;
    let text = trail
        .metrics
        .render(head.map_or(0, |p| p.commit()), &status)?;
    Ok(([("content-type", crate::metrics::CONTENT_TYPE)], text).into_response())
}

/// Server-sent audit rows: stored rows after `Last-Event-ID` (a row's seq), then live ones.
#[utoipa::path(
    get,
    path = "/v1/feed",
    tag = "audit",
    params(
        ("Last-Event-ID" = Option<String>, Header, pattern = "^[0-9]{1,19}$",
            description = "resume after this row (an earlier event's id, its seq)"),
    ),
    responses(
        (status = 200, description = "an endless stream of `audit` events, each an audit row \
            as JSON with its seq as id", content_type = "text/event-stream", body = String),
        (status = 400, description = "a bad Last-Event-ID", body = ErrorBody),
    )
)]
async fn feed(
    State(trail): State<Arc<Trail>>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let after: u64 = match headers.get("last-event-id") {
        None => trail.status.lock().map(|s| s.rows).unwrap_or(0),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| {
                ApiError::param("Last-Event-ID", "must be the id (seq) of an earlier row")
            })?,
    };
    // Stored rows are the truth; the broadcast only says "something new". Each step sends
    // stored rows after the last one sent, and waits for the broadcast only when there are
    // none, so a client far behind (or a lagging broadcast) never misses a row.
    struct Feed {
        trail: Arc<Trail>,
        live: tokio::sync::broadcast::Receiver<ionroller_projections::audit::AuditRow>,
        last: u64,
        pending: std::collections::VecDeque<ionroller_projections::audit::AuditRow>,
    }
    let state = Feed {
        live: trail.feed.subscribe(),
        trail,
        last: after,
        pending: Default::default(),
    };
    let rows = futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(row) = st.pending.pop_front() {
                st.last = row.seq;
                return Some((row, st));
            }
            let last = st.last;
            match st.trail.db.rows_after(last, 500).await {
                Ok(rows) if !rows.is_empty() => {
                    st.pending.extend(rows);
                    continue;
                }
                Ok(_) => {}
                Err(_) => return None,
            }
            match st.live.recv().await {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return None,
            }
        }
    });
    let events = rows.map(|row| {
        Ok(Event::default()
            .id(row.seq.to_string())
            .event("audit")
            .data(serde_json::to_string(&row).unwrap_or_default()))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

// Routes whose handlers are closures or live elsewhere: described here, never called.

/// The dashboard page.
#[utoipa::path(get, path = "/", tag = "operations",
    responses((status = 200, description = "the dashboard", content_type = "text/html", body = String)))]
#[allow(dead_code)]
fn dashboard_doc() {}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "`ok`", content_type = "text/plain", body = String)))]
#[allow(dead_code)]
fn healthz_doc() {}

/// Prometheus metrics, including lag.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "the Prometheus text exposition format",
            content_type = "text/plain", body = String),
        (status = 503, description = "trail or the log is unavailable", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn metrics_doc() {}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json",
        body = Object)))]
#[allow(dead_code)]
fn openapi_doc() {}

/// Every route but the page, `/healthz` and this document takes a bearer token.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        ionroller_shared::http::document_bearer_auth(doc, &["/", "/healthz", "/v1/openapi.json"]);
    }
}

/// Trail's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` attributes and
/// the types they answer with.
#[derive(OpenApi)]
#[openapi(
    modifiers(&BearerAuth),
    info(
        title = "ionroller trail API",
        version = "1",
        description = "Audit, release history, what ran when, delivery metrics. Every error \
            answers with `ErrorBody`."
    ),
    paths(
        dashboard_doc,
        healthz_doc,
        metrics_doc,
        openapi_doc,
        status,
        audit,
        services,
        releases,
        at,
        delivery,
        verify,
        chain,
        feed,
    )
)]
struct TrailApi;

fn openapi() -> serde_json::Value {
    static DOCUMENT: std::sync::LazyLock<serde_json::Value> = std::sync::LazyLock::new(|| {
        serde_json::to_value(TrailApi::openapi()).unwrap_or_else(|e| {
            // Serialising a generated document cannot fail; say so if it ever does.
            serde_json::json!({ "error": format!("the OpenAPI document did not serialise: {e}") })
        })
    });
    DOCUMENT.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_links_to_the_console_only_when_given_one_and_escapes_it() {
        let plain = Page::default().html();
        assert!(!plain.contains("console-link\""), "no link without a URL");
        assert!(!plain.contains("<!--console-link-->"));
        let linked = Page {
            console_url: Some("http://roller.example:7878/?a=1&b=\"x\"".into()),
        }
        .html();
        assert!(linked.contains(
            "<a id=\"console-link\" href=\"http://roller.example:7878/?a=1&amp;b=&quot;x&quot;\">roller console</a>"
        ));
    }

    #[test]
    fn a_console_url_is_an_absolute_http_url() {
        assert!(parse_console_url("https://roller.example/").is_ok());
        assert!(parse_console_url("http://127.0.0.1:7878").is_ok());
        for bad in ["javascript:alert(1)", "roller.example", "http://a b", ""] {
            assert!(parse_console_url(bad).is_err(), "{bad}");
        }
    }
}
