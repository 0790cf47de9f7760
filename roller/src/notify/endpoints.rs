//! Where notifications go: the endpoints file `up --notifications FILE` reads. The operator
//! owns it, secrets included (a webhook's signing secret, a Slack hook's URL, which is a
//! secret itself), so nothing secret enters the event log, which many teams read.
//!
//! ```json
//! { "endpoints": {
//!     "ops":      { "kind": "webhook", "url": "https://hooks.example.com/ionroller",
//!                   "secret_file": "/run/secrets/ionroller-hook" },
//!     "payments": { "kind": "slack", "url_file": "/run/secrets/payments-slack",
//!                   "services": ["payments-*"], "kinds": ["rolled_back", "waiting_for_person"] } } }
//! ```
//!
//! `services` (default every service) makes an endpoint global or a team's; `kinds` (default
//! all but `step_completed`) what it hears. Parsed strictly: an unknown field or a bad value
//! stops `up` with the field named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ionroller_auth::ServicePattern;
use ionroller_projections::notifications::{Kind, Notification};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct EndpointsError {
    path: String,
    message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointKind {
    /// The generic JSON body, signed with HMAC-SHA256 when a secret is given.
    Webhook,
    /// A Slack-compatible incoming webhook (`{"text": ...}`).
    Slack,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    endpoints: BTreeMap<String, Spec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    kind: EndpointKind,
    #[serde(default)]
    url: Option<String>,
    /// The URL in a file of its own (a Slack hook's URL is a secret).
    #[serde(default)]
    url_file: Option<PathBuf>,
    /// The HMAC-SHA256 key, in a file (webhooks only).
    #[serde(default)]
    secret_file: Option<PathBuf>,
    #[serde(default)]
    services: Option<Vec<String>>,
    #[serde(default)]
    kinds: Option<Vec<Kind>>,
    /// How long one attempt may take before it counts as failed and is retried.
    #[serde(default)]
    timeout_ms: Option<u64>,
    /// Only services (of `services`) whose config names this endpoint in `notify` hear it.
    #[serde(default)]
    when_named: bool,
}

/// One endpoint, resolved: its URL and secret read, its patterns parsed.
#[derive(Clone)]
pub struct Endpoint {
    pub name: String,
    pub kind: EndpointKind,
    pub url: String,
    pub secret: Option<Vec<u8>>,
    pub services: Vec<ServicePattern>,
    pub kinds: BTreeSet<Kind>,
    pub timeout: Duration,
    /// Heard only by the services whose config names it (`notify`), within `services`.
    pub when_named: bool,
}

impl std::fmt::Debug for Endpoint {
    // The URL and secret are left out: a Slack hook's URL is a credential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Whether this endpoint hears `n`, its service's config naming the endpoint or not.
    /// `services` bounds it either way: a team cannot route its notifications to an
    /// endpoint the operator did not open to it.
    pub fn wants(&self, n: &Notification, named: bool) -> bool {
        self.kinds.contains(&n.kind)
            && self.services.iter().any(|p| p.matches(&n.service))
            && (named || !self.when_named)
    }

    /// Whether `service`'s config may name this endpoint.
    pub fn open_to(&self, service: &str) -> bool {
        self.services.iter().any(|p| p.matches(service))
    }
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads and checks the endpoints file.
pub fn load(path: &Path) -> Result<Vec<Endpoint>, EndpointsError> {
    let err = |field: &str, message: String| EndpointsError {
        path: format!("{}: {field}", path.display()),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err("(file)", e.to_string()))?;
    parse(&text, path.parent().unwrap_or(Path::new(".")))
        .map_err(|(field, message)| err(&field, message))
}

/// Parses the file's `text`; relative file names are read from `dir`. Errors name the field.
fn parse(text: &str, dir: &Path) -> Result<Vec<Endpoint>, (String, String)> {
    let file: File = serde_json::from_str(text).map_err(|e| ("(json)".into(), e.to_string()))?;
    let read = |field: String, file: &Path| {
        let full = dir.join(file);
        std::fs::read_to_string(&full)
            .map(|t| t.trim().to_string())
            .map_err(|e| (field, format!("cannot read {}: {e}", full.display())))
    };
    let mut endpoints = Vec::new();
    for (name, spec) in file.endpoints {
        let at = |field: &str| format!("endpoints.{name}.{field}");
        if !ionroller_shared::config::valid_endpoint_name(&name) {
            return Err((
                format!("endpoints.{name}"),
                "a name takes 1 to 64 lowercase letters, digits, '-', '_' or '.'".into(),
            ));
        }
        let url = match (&spec.url, &spec.url_file) {
            (Some(url), None) => url.clone(),
            (None, Some(file)) => read(at("url_file"), file)?,
            _ => return Err((at("url"), "give exactly one of url and url_file".into())),
        };
        let parsed = url::Url::parse(&url).map_err(|e| (at("url"), e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err((at("url"), "must be an http:// or https:// URL".into()));
        }
        let secret = match (&spec.secret_file, spec.kind) {
            (Some(_), EndpointKind::Slack) => {
                return Err((
                    at("secret_file"),
                    "Slack hooks are not signed: the URL is the secret".into(),
                ))
            }
            (Some(file), EndpointKind::Webhook) => {
                let secret = read(at("secret_file"), file)?;
                if secret.len() < 16 {
                    return Err((at("secret_file"), "holds fewer than 16 characters".into()));
                }
                Some(secret.into_bytes())
            }
            (None, _) => None,
        };
        let services = spec
            .services
            .unwrap_or_else(|| vec!["*".into()])
            .iter()
            .enumerate()
            .map(|(i, p)| {
                ServicePattern::parse(p).map_err(|e| (format!("{}[{i}]", at("services")), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let kinds: BTreeSet<Kind> = spec
            .kinds
            .unwrap_or_else(Kind::default_set)
            .into_iter()
            .collect();
        if kinds.is_empty() {
            return Err((
                at("kinds"),
                "lists no kind: the endpoint would hear nothing".into(),
            ));
        }
        let timeout = match spec.timeout_ms {
            None => DEFAULT_TIMEOUT,
            Some(ms @ 100..=60_000) => Duration::from_millis(ms),
            Some(_) => return Err((at("timeout_ms"), "must be 100 to 60000".into())),
        };
        endpoints.push(Endpoint {
            name,
            kind: spec.kind,
            url,
            secret,
            services,
            kinds,
            timeout,
            when_named: spec.when_named,
        });
    }
    Ok(endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in(dir: &Path, text: &str) -> Result<Vec<Endpoint>, (String, String)> {
        parse(text, dir)
    }

    #[test]
    fn endpoints_read_their_secrets_from_files_and_default_to_everything_but_steps() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("hook"), "0123456789abcdef-secret\n").expect("write");
        std::fs::write(
            dir.path().join("slack"),
            "https://hooks.slack.com/services/T/B/x\n",
        )
        .expect("write");
        let endpoints = parse_in(
            dir.path(),
            r#"{ "endpoints": {
                "ops": { "kind": "webhook", "url": "http://127.0.0.1:9/hook", "secret_file": "hook" },
                "payments": { "kind": "slack", "url_file": "slack", "services": ["payments-*"],
                              "kinds": ["rolled_back"], "timeout_ms": 500 } } }"#,
        )
        .expect("valid");
        let ops = &endpoints[0];
        assert_eq!(ops.name, "ops");
        assert_eq!(ops.secret.as_deref(), Some(&b"0123456789abcdef-secret"[..]));
        assert_eq!(ops.kinds.len(), Kind::ALL.len() - 1);
        assert!(!ops.kinds.contains(&Kind::StepCompleted));
        assert!(ops.services.iter().any(|p| p.matches("anything")));
        let payments = &endpoints[1];
        assert_eq!(payments.url, "https://hooks.slack.com/services/T/B/x");
        assert!(payments.services[0].matches("payments-api"));
        assert!(!payments.services[0].matches("search"));
        assert_eq!(payments.timeout, Duration::from_millis(500));
        assert!(
            !format!("{payments:?}").contains("hooks.slack.com"),
            "no URL in logs"
        );
    }

    #[test]
    fn an_endpoint_marked_when_named_hears_only_the_services_that_name_it_within_its_patterns() {
        let dir = tempfile::tempdir().expect("dir");
        let endpoints = parse_in(
            dir.path(),
            r#"{ "endpoints": { "payments": { "kind": "webhook", "url": "http://127.0.0.1:9/h",
                 "services": ["payments-*"], "when_named": true } } }"#,
        )
        .expect("valid");
        let payments = &endpoints[0];
        let mut fold = ionroller_projections::notifications::Notifications::default();
        let told =
            |service: &str, fold: &mut ionroller_projections::notifications::Notifications| {
                fold.on(
                    &ionroller_projections::notifications::Meta {
                        service,
                        event_id: uuid::Uuid::nil(),
                        occurred_at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
                        actor: "roller",
                    },
                    &ionroller_shared::events::ServiceEvent::DriftDetected {
                        description: "x".into(),
                    },
                )
                .remove(0)
            };
        let api = told("payments-api", &mut fold);
        assert!(payments.wants(&api, true));
        assert!(!payments.wants(&api, false), "not named: not heard");
        let search = told("search", &mut fold);
        assert!(
            !payments.wants(&search, true),
            "named, but outside its services"
        );
        assert!(payments.open_to("payments-api") && !payments.open_to("search"));
    }

    #[test]
    fn every_mistake_names_its_field() {
        let dir = tempfile::tempdir().expect("dir");
        for (text, field) in [
            (
                r#"{"endpoints": {"Ops": {"kind": "webhook", "url": "http://x"}}}"#,
                "endpoints.Ops",
            ),
            (
                r#"{"endpoints": {"a": {"kind": "webhook"}}}"#,
                "endpoints.a.url",
            ),
            (
                r#"{"endpoints": {"a": {"kind": "webhook", "url": "ftp://x"}}}"#,
                "endpoints.a.url",
            ),
            (
                r#"{"endpoints": {"a": {"kind": "slack", "url": "http://x", "secret_file": "s"}}}"#,
                "endpoints.a.secret_file",
            ),
            (
                r#"{"endpoints": {"a": {"kind": "webhook", "url": "http://x", "secret_file": "missing"}}}"#,
                "endpoints.a.secret_file",
            ),
            (
                r#"{"endpoints": {"a": {"kind": "webhook", "url": "http://x", "services": ["Bad*x"]}}}"#,
                "endpoints.a.services[0]",
            ),
            (
                r#"{"endpoints": {"a": {"kind": "webhook", "url": "http://x", "kinds": []}}}"#,
                "endpoints.a.kinds",
            ),
            (
                r#"{"endpoints": {"a": {"kind": "webhook", "url": "http://x", "timeout_ms": 5}}}"#,
                "endpoints.a.timeout_ms",
            ),
            (
                r#"{"endpoints": {"a": {"kind": "email", "url": "http://x"}}}"#,
                "(json)",
            ),
            (r#"{"endpoints": {}, "extra": 1}"#, "(json)"),
        ] {
            let (got, message) = parse_in(dir.path(), text).expect_err(text);
            assert_eq!(got, field, "{text}: {message}");
        }
    }
}
