//! What authentication and authorization cost per request: the same handler called through
//! the guard with an API token and with an OIDC JWT, as a ratio to the same handler without
//! the guard, all in one run on one machine. The token path includes catching up the
//! `tokens` stream in a real SQLite log (one indexed read that finds nothing new); the JWT
//! path includes an ES256 signature check against a cached JWKS.
//!
//! `cargo bench -p ionroller-auth --bench guard -- [--write BENCHMARKS.md]`

#[path = "../tests/support/jwt.rs"]
mod jwt;
#[path = "../../stores/tests/benches/report.rs"]
mod report;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use ionroller_auth::guard::{guard, Access, Guard};
use ionroller_auth::oidc::{Oidc, OidcConfig};
use ionroller_auth::Authenticator;
use ionroller_shared::store::EventStore;
use ionroller_store_sqlite::{SqliteOptions, SqliteStore};
use serde_json::json;
use tower::ServiceExt;

const REQUESTS: usize = 5_000;

fn rules(_: &Method, route: &str) -> Option<Access> {
    match route {
        "/v1/services/{service}" => Some(Access::Read),
        _ => None,
    }
}

fn app(auth: Option<Arc<Authenticator>>) -> Router {
    let routes = Router::new().route("/v1/services/{service}", get(|| async { "{}" }));
    match auth {
        None => routes,
        Some(auth) => routes.route_layer(axum::middleware::from_fn_with_state(
            Guard {
                auth,
                rules,
                now: Arc::new(Utc::now),
                on_refused: Arc::new(|_| {}),
            },
            guard,
        )),
    }
}

/// The median and 99th percentile of `REQUESTS` calls, after a warm-up.
async fn measure(app: &Router, authorization: Option<&str>) -> (Duration, Duration) {
    let call = || {
        let mut request = Request::get("/v1/services/hello");
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        app.clone()
            .oneshot(request.body(Body::empty()).expect("request"))
    };
    for _ in 0..200 {
        let response = call().await.expect("answer");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let mut took = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let started = Instant::now();
        let response = call().await.expect("answer");
        took.push(started.elapsed());
        assert_eq!(response.status(), StatusCode::OK);
    }
    took.sort();
    (took[REQUESTS / 2], took[REQUESTS * 99 / 100])
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let write = report::write_target();
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(
        dir.path().join("events.sqlite"),
        SqliteOptions::default(),
    )?);

    // An API token, created in the log as the first `ionroller up` does.
    let tokens = Arc::new(Authenticator::new(store.clone()));
    let mut secret = String::new();
    tokens
        .bootstrap_admin(Utc::now(), |s| {
            secret = format!("Bearer {s}");
            Ok::<(), std::convert::Infallible>(())
        })
        .await?;

    // An OIDC issuer on this machine, and a JWT it signed.
    let key = jwt::key("k1", 7);
    let base = jwt::issuer(Arc::new(Mutex::new(vec![key.jwk.clone()]))).await;
    let config_path = dir.path().join("oidc.json");
    std::fs::write(
        &config_path,
        json!({
            "issuers": [{ "issuer": base, "audience": "ionroller" }],
            "rules": [{ "group": "sre", "role": "viewer" }]
        })
        .to_string(),
    )?;
    let oidc = Oidc::new(
        OidcConfig::load(&config_path)?,
        ionroller_auth::tls::http_client().build()?,
    );
    let with_oidc = Arc::new(Authenticator::new(store.clone()).with_oidc(oidc));
    let now = Utc::now().timestamp();
    let claims = json!({ "iss": base, "aud": "ionroller", "sub": "u1", "groups": ["sre"],
        "iat": now, "exp": now + 3600 });
    let bearer_jwt = format!("Bearer {}", jwt::sign(&key, "k1", &claims));

    let (open_p50, open_p99) = measure(&app(None), None).await;
    let (token_p50, token_p99) = measure(&app(Some(tokens)), Some(&secret)).await;
    let (jwt_p50, jwt_p99) = measure(&app(Some(with_oidc)), Some(&bearer_jwt)).await;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let ratio = |d: Duration| d.as_secs_f64() / open_p50.as_secs_f64();
    let profile = std::env::var("AUTH_BENCH_PROFILE").unwrap_or_else(|_| "bench".into());
    let section = format!(
        "Measured {} on {}; `cargo bench -p ionroller-auth --bench guard` (profile: {profile}). \
         {REQUESTS} in-process requests each (after 200 to warm up) to one route whose handler \
         answers a constant.\n\n\
         | request | median | p99 | median / unguarded median |\n|---|---|---|---|\n\
         | no guard (the baseline) | {:.1} µs | {:.1} µs | 1.0 |\n\
         | API token: tokens stream caught up in SQLite, SHA-256, constant-time compare, authorize | {:.1} µs | {:.1} µs | {:.1} |\n\
         | OIDC JWT: ES256 signature against the cached JWKS, claims, group rules, authorize | {:.1} µs | {:.1} µs | {:.1} |\n",
        Utc::now().format("%Y-%m-%d"),
        report::machine(),
        us(open_p50),
        us(open_p99),
        us(token_p50),
        us(token_p99),
        ratio(token_p50),
        us(jwt_p50),
        us(jwt_p99),
        ratio(jwt_p50),
    );
    println!("{section}");
    if let Some(path) = write {
        report::replace_section(&path, "auth-guard-bench", &section)?;
    }
    Ok(())
}
