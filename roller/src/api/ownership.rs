//! Load-balancer ownership on config saves: the I/O around the core's rule
//! ([`ionroller_core::claims`]). A config is saved only after its service owns the load
//! balancer it names; once saved, the claims it no longer needs are released.

use ionroller_core::claims::{self, Claims};
use ionroller_shared::config::{FieldError, ServiceConfig};

use super::{load, ApiError, AppState, COMMAND_RETRIES};
use crate::log::{self, Appended};

/// Makes `service` the owner of the load balancer `config` names, or refuses (409, naming the
/// field and the owner) when another service owns it.
pub(super) async fn claim(
    state: &AppState,
    service: &str,
    config: &ServiceConfig,
    actor: &str,
) -> Result<(), ApiError> {
    for _ in 0..COMMAND_RETRIES {
        let claims = folded_claims(state).await?;
        // Configs saved before claims existed: read only when the balancer is unclaimed.
        let legacy: &[(String, String)] =
            match claims.owner(&config.endpoint.load_balancer.claim_key()) {
                Some(_) => &[],
                None => legacy_claims(state).await?,
            };
        let claim = claims::claim(&claims, service, config, legacy).map_err(|refusal| {
            let mut error = ApiError::refused(&refusal);
            error.problems.push(FieldError {
                field: "endpoint.load_balancer.name".into(),
                problem: refusal.to_string(),
            });
            error
        })?;
        let Some(claim) = claim else {
            return Ok(());
        };
        let at = state.clock.now();
        match log::append_claims(state.store.as_ref(), &claims, &[claim], actor, at).await? {
            Appended::Written => return Ok(()),
            Appended::Conflict => continue,
        }
    }
    Err(ApiError::conflict(
        "load-balancer ownership kept changing while this config was checked; retry",
    ))
}

/// Releases what `service` owns besides the load balancer its saved `config` names. Best
/// effort: a claim left behind only over-protects, and the next save releases it.
pub(super) async fn release_others(
    state: &AppState,
    service: &str,
    config: &ServiceConfig,
    actor: &str,
) {
    for _ in 0..COMMAND_RETRIES {
        let claims = match folded_claims(state).await {
            Ok(claims) => claims,
            Err(e) => {
                tracing::warn!(service, error = %e.message, "releasing old load-balancer claims");
                return;
            }
        };
        let releases = claims::releases(&claims, service, config);
        let at = state.clock.now();
        match log::append_claims(state.store.as_ref(), &claims, &releases, actor, at).await {
            Ok(Appended::Written) => return,
            Ok(Appended::Conflict) => continue,
            Err(e) => {
                tracing::warn!(service, error = %e, "releasing old load-balancer claims");
                return;
            }
        }
    }
}

/// The claims stream folded up to now: from this process's last fold, so a save reads only
/// what was claimed since (not the whole stream, which grows with the number of services).
async fn folded_claims(state: &AppState) -> Result<Claims, ApiError> {
    let mut claims = state.claims.lock().await.clone();
    let before = claims.revision;
    log::catch_up_claims(state.store.as_ref(), &mut claims).await?;
    if claims.revision != before {
        let mut cached = state.claims.lock().await;
        if cached.revision < claims.revision {
            *cached = claims.clone();
        }
    }
    Ok(claims)
}

/// The load balancers of configs saved before claims existed, as (service, claim key): the
/// services that held no claim when this process first looked. Read once per process: every
/// config saved since claims exist claims its balancer, so no service joins this set later,
/// and one that saves again is known by its claims from then on (see `claims::claim`). So a
/// save costs the same with 10 services as with 10,000.
async fn legacy_claims(state: &AppState) -> Result<&[(String, String)], ApiError> {
    let legacy = state
        .legacy_claims
        .get_or_try_init(|| async {
            let claims = folded_claims(state).await?;
            let (names, _) = log::discover_services(state.store.as_ref(), None).await?;
            let mut legacy = Vec::new();
            for name in names.iter().filter(|n| !claims.holds_any(n)) {
                if let Some(latest) = load(state, name).await?.latest_config() {
                    legacy.push((
                        name.clone(),
                        latest.config.endpoint.load_balancer.claim_key(),
                    ));
                }
            }
            Ok::<_, ApiError>(legacy)
        })
        .await?;
    Ok(legacy)
}
