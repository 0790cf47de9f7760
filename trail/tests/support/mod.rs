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
