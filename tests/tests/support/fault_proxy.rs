//! A fault-injecting HTTP proxy to put in front of an AWS emulator: the SDK is pointed at it
//! with the standard `AWS_ENDPOINT_URL_<SERVICE>` variable, and it answers chosen calls with
//! throttling or a 5xx, or holds them, before (or instead of) passing them on.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Clone, Debug)]
pub enum Fault {
    /// 400 `Throttling`, as the query-protocol services send it.
    Throttle,
    /// 503 `ServiceUnavailable`.
    Unavailable,
    /// Passes the call on, then holds the answer this long (the change is made; the caller
    /// does not hear of it yet).
    HoldAnswer(Duration),
}

#[derive(Clone, Debug)]
struct Rule {
    action: String,
    fault: Fault,
    remaining: usize,
}

#[derive(Clone, Default)]
struct Shared {
    upstream: String,
    rules: Arc<Mutex<Vec<Rule>>>,
    injected: Arc<Mutex<Vec<String>>>,
    /// Calls seen, by operation.
    calls: Arc<Mutex<BTreeMap<String, u64>>>,
}

pub struct FaultProxy {
    pub url: String,
    shared: Shared,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` on a free loopback port.
    pub async fn start(upstream: &str) -> FaultProxy {
        let shared = Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            ..Default::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault proxy");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FaultProxy { url, shared }
    }

    /// The next `times` calls of `action` (the query protocol's `Action=`) get `fault`.
    pub fn inject(&self, action: &str, fault: Fault, times: usize) {
        if let Ok(mut rules) = self.shared.rules.lock() {
            rules.push(Rule {
                action: action.to_string(),
                fault,
                remaining: times,
            });
        }
    }

    /// Calls that reached the proxy so far, by operation (`Action=` for the query protocol,
    /// the last path segment for CloudWatch's `/operation/<Op>`).
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.shared
            .calls
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Every fault injected so far, as "Action: fault".
    pub fn injected(&self) -> Vec<String> {
        self.shared
            .injected
            .lock()
            .map(|i| i.clone())
            .unwrap_or_default()
    }
}

fn query_action(body: &[u8]) -> Option<String> {
    String::from_utf8_lossy(body)
        .split('&')
        .find_map(|kv| kv.strip_prefix("Action=").map(str::to_string))
}

fn aws_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>"
    );
    (status, [("content-type", "text/xml")], body).into_response()
}

async fn forward(State(shared): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, 64 << 20).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let action = query_action(&body).unwrap_or_else(|| {
        parts
            .uri
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string()
    });
    if let Ok(mut calls) = shared.calls.lock() {
        *calls.entry(action.clone()).or_default() += 1;
    }
    let fault = shared.rules.lock().ok().and_then(|mut rules| {
        let rule = rules
            .iter_mut()
            .find(|r| r.action == action && r.remaining > 0)?;
        rule.remaining -= 1;
        Some(rule.fault.clone())
    });
    if let Some(fault) = &fault {
        if let Ok(mut injected) = shared.injected.lock() {
            injected.push(format!("{action}: {fault:?}"));
        }
        match fault {
            Fault::Throttle => {
                return aws_error(StatusCode::BAD_REQUEST, "Throttling", "Rate exceeded")
            }
            Fault::Unavailable => {
                return aws_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "Service is unavailable, try again",
                )
            }
            Fault::HoldAnswer(_) => {}
        }
    }
    let url = format!(
        "{}{}",
        shared.upstream,
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let client = super::http();
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            headers.insert(name.clone(), value.clone());
        }
    }
    let answer = client
        .request(parts.method.clone(), url)
        .headers(headers)
        .body(body.to_vec())
        .send()
        .await;
    let Ok(answer) = answer else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    if let Some(Fault::HoldAnswer(hold)) = fault {
        tokio::time::sleep(hold).await;
    }
    let status = answer.status();
    let mut out_headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if name != "content-length" && name != "transfer-encoding" {
            out_headers.insert(name.clone(), value.clone());
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = out_headers;
    response
}
