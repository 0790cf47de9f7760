//! Trail's query API under `/v1`, the live audit feed, metrics and the dashboard page.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use ionroller_projections::audit::{AuditFilter, Verifier};
use ionroller_projections::delivery::delivery_report;
use ionroller_shared::config::FieldError;
use ionroller_shared::http::ErrorBody;
use ionroller_shared::store::{ReadFilter, StoreError};
use serde::Deserialize;
use serde_json::json;

use crate::db::{DbError, CHAIN_CHECKPOINT_EVERY};
use crate::metrics::MetricsError;
use crate::runner::{Trail, TrailError};

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

pub fn app(trail: Arc<Trail>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(include_str!("dashboard.html")) }))
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

#[derive(Deserialize)]
struct AuditQuery {
    service: Option<String>,
    actor: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    version: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    order: Option<String>,
}

async fn audit(
    State(trail): State<Arc<Trail>>,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let filter = AuditFilter {
        service: q.service,
        actor: q.actor,
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
    Ok(Json(json!({ "rows": rows, "next_cursor": next_cursor })).into_response())
}

async fn services(State(trail): State<Arc<Trail>>) -> Result<Response, ApiError> {
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
    for name in names {
        let current = folds.timeline.services.get(name).and_then(|iv| iv.last());
        let last = folds.releases.for_service(name).last();
        out.push(
            json!({ "service": name, "traffic": current.map(|c| &c.shares), "last_release": last }),
        );
    }
    Ok(Json(json!({ "services": out })).into_response())
}

async fn releases(
    State(trail): State<Arc<Trail>>,
    Path(service): Path<String>,
) -> Result<Response, ApiError> {
    let folds = trail
        .folds
        .read()
        .map_err(|_| TrailError::Internal("folds lock".into()))?;
    let list: Vec<_> = folds.releases.for_service(&service).collect();
    Ok(Json(json!({ "service": service, "releases": list })).into_response())
}

#[derive(Deserialize)]
struct AtQuery {
    time: Option<String>,
}

async fn at(
    State(trail): State<Arc<Trail>>,
    Path(service): Path<String>,
    Query(q): Query<AtQuery>,
) -> Result<Response, ApiError> {
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
        .find(|r| r.requested_at <= time && r.ended_at.is_none_or(|e| time < e));
    Ok(Json(json!({
        "service": service,
        "time": time,
        "traffic": interval.map(|i| &i.shares),
        "since": interval.map(|i| i.from),
        "until": interval.and_then(|i| i.to),
        "rollout_in_progress": rollout,
    }))
    .into_response())
}

#[derive(Deserialize)]
struct DeliveryQuery {
    from: Option<String>,
    to: Option<String>,
    service: Option<String>,
}

async fn delivery(
    State(trail): State<Arc<Trail>>,
    Query(q): Query<DeliveryQuery>,
) -> Result<Response, ApiError> {
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
    ))
    .into_response())
}

/// Recomputes the hash chain against the log; names the first row that does not match.
pub async fn verify_chain(trail: &Trail) -> Result<Result<u64, u64>, ApiError> {
    let mut verifier = Verifier::default();
    let mut after_seq = 0;
    let mut after_position = None;
    loop {
        let rows = trail.db.rows_after(after_seq, 1000).await?;
        if rows.is_empty() {
            return Ok(Ok(verifier.rows_checked()));
        }
        let events = trail
            .store
            .read_all(after_position, rows.len(), &ReadFilter::all())
            .await?;
        for (i, row) in rows.iter().enumerate() {
            match events.get(i) {
                Some(event) if verifier.check(row, event) => {}
                _ => return Ok(Err(row.seq)),
            }
        }
        after_seq = rows.last().map_or(after_seq, |r| r.seq);
        after_position = events.get(rows.len() - 1).map(|e| e.position);
    }
}

async fn verify(State(trail): State<Arc<Trail>>) -> Result<Response, ApiError> {
    Ok(match verify_chain(&trail).await? {
        Ok(rows) => Json(json!({ "ok": true, "rows": rows })).into_response(),
        Err(seq) => (
            StatusCode::OK,
            Json(json!({ "ok": false, "first_mismatch": seq, "message": format!("audit row {seq} does not match the log (edited, removed or reordered)") })),
        )
            .into_response(),
    })
}

/// The chain's current head and its periodic checkpoints, for keeping a copy outside trail.
async fn chain(State(trail): State<Arc<Trail>>) -> Result<Response, ApiError> {
    // Checkpoints first: a commit in between only moves the head further on, so every
    // checkpoint listed is at or before the head shown.
    let checkpoints = trail.db.chain_checkpoints().await?;
    let head = trail.db.checkpoint().await?;
    let checkpoints: Vec<_> = checkpoints
        .into_iter()
        .map(|(seq, position, head)| json!({ "seq": seq, "position": position, "head": head }))
        .collect();
    Ok(Json(json!({
        "head": {
            "seq": head.seq,
            "position": head.position.map(|p| p.to_token()),
            "head": ionroller_projections::chain::to_hex(&head.head),
        },
        "every": CHAIN_CHECKPOINT_EVERY,
        "checkpoints": checkpoints,
    }))
    .into_response())
}

async fn status(State(trail): State<Arc<Trail>>) -> Result<Response, ApiError> {
    let status = trail
        .status
        .lock()
        .map(|s| s.clone())
        .map_err(|_| TrailError::Internal("status lock".into()))?;
    Ok(Json(status).into_response())
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

fn openapi() -> serde_json::Value {
    let get = |summary: &str| json!({ "get": { "summary": summary, "responses": { "200": { "description": "ok" }, "400": { "description": "a bad parameter, named" } } } });
    json!({
        "openapi": "3.1.0",
        "info": { "title": "ionroller trail API", "version": "1" },
        "paths": {
            "/v1/audit": get("audit rows; filters service, actor, type, version, from, to (RFC 3339); limit 1-1000; cursor = next_cursor; order newest|oldest"),
            "/v1/services": get("services with their current traffic split and last release"),
            "/v1/services/{service}/releases": get("every rollout: who, from, to, steps, outcome with evidence, waits"),
            "/v1/services/{service}/at": get("traffic shares per version and environment, and the rollout in progress, at ?time=RFC3339"),
            "/v1/reports/delivery": get("deployment frequency, lead time, change-failure rate, time to restore; ?from&to&service"),
            "/v1/verify": get("recompute the audit hash chain against the log; names the first mismatching row"),
            "/v1/chain": get("the chain's head (seq, position, hash) and a checkpoint every 1000 rows, for export"),
            "/v1/feed": get("server-sent events of new audit rows; resumable with Last-Event-ID"),
            "/v1/status": get("projection status: caught up, checkpoint, rows, error"),
            "/metrics": get("Prometheus metrics, including lag"),
            "/healthz": get("liveness")
        }
    })
}
