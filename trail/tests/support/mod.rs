#![allow(dead_code)]
//! Helpers shared by trail's test suites.

/// The PostgreSQL server the test command started, if any. In CI its absence fails the test;
/// elsewhere the test is skipped, loudly.
pub fn pg_url() -> Option<String> {
    match std::env::var("IONROLLER_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("IONROLLER_TEST_PG_URL is not set in CI: run scripts/test.sh");
            }
            eprintln!("\n*** SKIPPING the PostgreSQL projection test: IONROLLER_TEST_PG_URL is not set ***\n");
            None
        }
    }
}

/// A schema name no other test uses.
pub fn fresh_schema() -> String {
    format!("trail_{}", uuid::Uuid::new_v4().simple())
}

/// Trail's API over `store`, and an admin token for it (created in the log as the first
/// `ionroller up` would).
pub async fn app_with_token(
    trail: std::sync::Arc<ionroller_trail::runner::Trail>,
    store: std::sync::Arc<dyn ionroller_shared::store::EventStore>,
) -> (axum::Router, String) {
    let auth = ionroller_auth::Authenticator::new(store);
    let mut token = String::new();
    auth.bootstrap_admin(chrono::Utc::now(), |secret| {
        token = secret.to_string();
        Ok::<(), std::convert::Infallible>(())
    })
    .await
    .expect("create the admin token");
    let app = ionroller_trail::api::app(trail, std::sync::Arc::new(auth), false);
    (app, format!("Bearer {token}"))
}
