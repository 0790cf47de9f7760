//! What each route of the roller needs, in one table: the guard (`ionroller_auth::guard`)
//! asks it for every request. A route missing here needs `admin`, so a new route is closed
//! until it is listed; `tests/tests/access_matrix.rs` checks every documented route.

use axum::http::Method;
use ionroller_auth::guard::Access;

pub fn roller_rules(method: &Method, route: &str) -> Option<Access> {
    if route == "/metrics" {
        return Some(Access::ReadFleet);
    }
    rules(method, route)
}

/// The same, with `/metrics` open to scrapers without a token (`--public-metrics`).
pub fn roller_rules_public_metrics(method: &Method, route: &str) -> Option<Access> {
    if route == "/metrics" {
        return Some(Access::Open);
    }
    rules(method, route)
}

fn rules(method: &Method, route: &str) -> Option<Access> {
    // HEAD is a GET without the body (axum answers it with the GET route).
    let read = *method == Method::GET || *method == Method::HEAD;
    Some(match route {
        // The console's page and assets hold no data (the page reads the API with a token).
        "/healthz"
        | "/v1/openapi.json"
        | "/"
        | "/console/app.js"
        | "/console/app.css"
        | "/console/icon.svg"
        | "/console/links.json"
            if read =>
        {
            Access::Open
        }
        "/v1/whoami" => Access::Authenticated,
        "/v1/services" if read => Access::ReadAll,
        "/v1/services/{service}"
        | "/v1/services/{service}/configs"
        | "/v1/services/{service}/plan"
        | "/v1/services/{service}/events"
            if read =>
        {
            Access::Read
        }
        "/v1/services/{service}/config" if read => Access::Read,
        "/v1/services/{service}/config" if *method == Method::PUT => Access::Configure,
        "/v1/services/{service}/releases"
        | "/v1/services/{service}/rollback"
        | "/v1/services/{service}/pause"
        | "/v1/services/{service}/resume"
        | "/v1/services/{service}/promote"
        | "/v1/services/{service}/abort"
            if *method == Method::POST =>
        {
            Access::Deploy
        }
        // Tokens, and the simulator's fault injection (it changes the cloud every service
        // runs on): admin.
        _ => return None,
    })
}
