//! The REST API under `/v1`. Handlers read by folding the service's stream and write by
//! appending at the exact revision they read; a concurrent writer makes them re-read and
//! re-check (a few times) before answering 409.
//!
//! - [`commands`]: the command routes, thin: input checks, then the core's rules;
//! - [`reads`]: status, configs, plan, events (SSE), metrics;
//! - [`extract`]: bodies and headers whose rejections name the field;
//! - [`ownership`]: load-balancer claims around config saves;
//! - [`access`]: which permission each route needs (the guard in `ionroller_auth` asks it);
//! - [`tokens`]: token commands and `whoami`;
//! - [`sim`]: the simulator's routes, merged only on the simulated cloud;
//! - [`views`]: the JSON shapes of what the reads return.

mod access;
mod commands;
mod console;
mod error;
mod extract;
mod openapi;
mod ownership;
mod reads;
pub mod sim;
mod tokens;
pub mod views;

use std::sync::Arc;

use axum::routing::{delete, get, post};
use axum::{Json, Router};
use ionroller_auth::guard::{Guard, Refused};
use ionroller_auth::Authenticator;
use ionroller_core::commands::Accepted;
use ionroller_core::{Command, ServiceState};
use ionroller_shared::config::validate_service_name;
use ionroller_shared::store::EventStore;
use uuid::Uuid;

pub use error::ApiError;
pub use extract::{Body, BodyOrDefault, MAX_BODY_BYTES};

use crate::clock::Clock;
use crate::cloud::Cloud;
use crate::log::{self, Appended};
use crate::metrics::Metrics;

pub(crate) const COMMAND_RETRIES: usize = 5;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn EventStore>,
    pub clock: Arc<dyn Clock>,
    /// Folded states by service, caught up from the log on every use: a request folds only
    /// what is new, not the service's whole history.
    /// Shared, not copied: a request that finds nothing new copies nothing.
    pub folds: Arc<tokio::sync::Mutex<std::collections::HashMap<String, Arc<ServiceState>>>>,
    /// Load balancers of configs saved before claims existed, read once (`ownership`).
    legacy_claims: Arc<tokio::sync::OnceCell<Vec<(String, String)>>>,
    /// The claims stream as last folded (`ownership`).
    claims: Arc<tokio::sync::Mutex<ionroller_core::claims::Claims>>,
    /// The roller's counters, when it runs in this process.
    pub metrics: Arc<Metrics>,
    /// The cloud the roller drives, for its own config requirements (`Cloud::check_config`,
    /// then `Cloud::validate_config`).
    pub cloud: Option<Arc<dyn Cloud>>,
    /// Who is asking: tokens from the log (and OIDC issuers, when configured).
    pub auth: Arc<Authenticator>,
    /// `/metrics` without credentials (for a scraper that cannot send a token).
    pub public_metrics: bool,
    /// Trail's URL, linked from the console when known.
    pub trail_url: Option<String>,
    /// Notified after every recorded command, so the roller in this process reconciles at
    /// once rather than at its next interval.
    pub wake: Arc<tokio::sync::Notify>,
    /// The notification endpoints a config may name in `notify` (of `--notifications`).
    pub notifications: Arc<Vec<crate::notify::Endpoint>>,
    /// Which of them are failing now, for the status of the services they notify.
    pub notify_health: Arc<crate::notify::Health>,
}

impl AppState {
    pub fn new(store: Arc<dyn EventStore>, clock: Arc<dyn Clock>) -> Self {
        AppState {
            auth: Arc::new(Authenticator::new(store.clone())),
            public_metrics: false,
            trail_url: None,
            wake: Arc::default(),
            store,
            clock,
            folds: Arc::default(),
            legacy_claims: Arc::default(),
            claims: Arc::default(),
            metrics: Arc::default(),
            cloud: None,
            notifications: Arc::default(),
            notify_health: Arc::default(),
        }
    }

    /// The endpoints a config's `notify` may name.
    pub fn with_notifications(
        mut self,
        endpoints: Vec<crate::notify::Endpoint>,
        health: Arc<crate::notify::Health>,
    ) -> Self {
        self.notifications = Arc::new(endpoints);
        self.notify_health = health;
        self
    }

    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Authenticates with `auth` (e.g. one that also accepts OIDC tokens).
    pub fn with_auth(mut self, auth: Arc<Authenticator>) -> Self {
        self.auth = auth;
        self
    }

    /// Wakes the roller's loop through `wake` after each recorded command.
    pub fn with_wake(mut self, wake: Arc<tokio::sync::Notify>) -> Self {
        self.wake = wake;
        self
    }

    /// Links the console to trail's dashboard at `url`.
    pub fn with_trail_url(mut self, url: Option<String>) -> Self {
        self.trail_url = url;
        self
    }

    pub fn with_public_metrics(mut self, public: bool) -> Self {
        self.public_metrics = public;
        self
    }

    /// Configs are also checked against this cloud's requirements when saved.
    pub fn with_cloud(mut self, cloud: Arc<dyn Cloud>) -> Self {
        self.cloud = Some(cloud);
        self
    }
}

/// The API with `extra` routes (the simulator's), every route behind the guard: see
/// [`access::roller_rules`] for what each needs.
pub fn app(state: AppState, extra: Router) -> Router {
    let metrics = state.metrics.clone();
    let clock = state.clock.clone();
    let guard = Guard {
        auth: state.auth.clone(),
        rules: if state.public_metrics {
            access::roller_rules_public_metrics
        } else {
            access::roller_rules
        },
        now: Arc::new(move || clock.now()),
        on_refused: Arc::new(move |refused| {
            match refused {
                Refused::Unauthenticated => metrics.unauthenticated.inc(),
                Refused::Forbidden => metrics.forbidden.inc(),
            };
        }),
    };
    routes(state)
        .merge(extra)
        .route_layer(axum::middleware::from_fn_with_state(
            guard,
            ionroller_auth::guard::guard,
        ))
}

fn routes(state: AppState) -> Router {
    console::routes(state.trail_url.clone())
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(reads::metrics))
        .route(
            "/v1/openapi.json",
            get(|| async { Json(openapi::document()) }),
        )
        .route("/v1/services", get(reads::list_services))
        .route("/v1/services/{service}", get(reads::get_service))
        .route(
            "/v1/services/{service}/config",
            get(reads::get_config).put(commands::put_config),
        )
        .route("/v1/services/{service}/configs", get(reads::config_history))
        .route("/v1/services/{service}/releases", post(commands::release))
        .route("/v1/services/{service}/rollback", post(commands::rollback))
        .route("/v1/services/{service}/pause", post(commands::pause))
        .route("/v1/services/{service}/resume", post(commands::resume))
        .route("/v1/services/{service}/promote", post(commands::promote))
        .route("/v1/services/{service}/abort", post(commands::abort))
        .route("/v1/services/{service}/plan", get(reads::plan))
        .route("/v1/services/{service}/events", get(reads::events))
        .route("/v1/whoami", get(tokens::whoami))
        .route(
            "/v1/tokens",
            get(tokens::list_tokens).post(tokens::create_token),
        )
        .route("/v1/tokens/{name}", delete(tokens::revoke_token))
        // Bodies are read up to this limit; over it, the extractors answer 413 in the API's
        // error format.
        .layer(axum::extract::DefaultBodyLimit::max(
            extract::MAX_BODY_BYTES,
        ))
        .with_state(state)
}

/// Folds a service's whole stream (from the cached fold, so only what is new).
async fn load(state: &AppState, service: &str) -> Result<Arc<ServiceState>, ApiError> {
    validate_service_name(service)?;
    let cached = state.folds.lock().await.get(service).cloned();
    let mut folded = cached.unwrap_or_else(|| Arc::new(ServiceState::new(service)));
    let before = folded.revision;
    log::catch_up_shared(state.store.as_ref(), &mut folded).await?;
    if folded.revision.is_some() && folded.revision != before {
        let mut folds = state.folds.lock().await;
        let newer = folds
            .get(service)
            .is_none_or(|c| c.revision < folded.revision);
        if newer {
            folds.insert(service.to_string(), folded.clone());
        }
    }
    Ok(folded)
}

pub(crate) async fn load_existing(
    state: &AppState,
    service: &str,
) -> Result<Arc<ServiceState>, ApiError> {
    let folded = load(state, service).await?;
    if folded.revision.is_none() {
        return Err(ApiError::not_found(format!(
            "no service named {service:?}; save its config first (PUT /v1/services/{service}/config)"
        )));
    }
    Ok(folded)
}

/// Checks `command` against the service's folded state with the core's rules, recording
/// nothing: what a dry run answers.
async fn check(state: &AppState, service: &str, command: &Command) -> Result<Accepted, ApiError> {
    let folded = load_existing(state, service).await?;
    ionroller_core::handle(&folded, command, Uuid::new_v4())
        .map_err(|refusal| ApiError::refused(&refusal))
}

/// Checks `command` against the service's folded state with the core's rules and appends what
/// they decide at the revision folded; on a concurrent change, folds again and re-checks.
/// Returns what was accepted and the state after it.
async fn submit(
    state: &AppState,
    service: &str,
    actor: &str,
    command: &Command,
) -> Result<(Accepted, Arc<ServiceState>), ApiError> {
    // Drawn once, so that every re-check names the same rollout.
    let new_rollout_id = Uuid::new_v4();
    for _ in 0..COMMAND_RETRIES {
        let folded = load(state, service).await?;
        let accepted = ionroller_core::handle(&folded, command, new_rollout_id)
            .map_err(|refusal| ApiError::refused(&refusal))?;
        let at = state.clock.now();
        match log::append(state.store.as_ref(), &folded, &accepted.events, actor, at).await? {
            Appended::Written => {
                state.wake.notify_one();
                return Ok((accepted, load(state, service).await?));
            }
            Appended::Conflict => continue,
        }
    }
    Err(ApiError::conflict(format!(
        "service {service} kept changing while this command was checked; retry"
    )))
}
