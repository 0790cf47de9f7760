#![allow(dead_code)]
//! Helpers shared by trail's test suites.

pub use ionroller_store_postgres::test_server_url as pg_url;

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
