//! Bearer JWTs from configured OpenID Connect issuers (RS256 and ES256, checked by the
//! `jsonwebtoken` crate), mapped to grants by the operator's rules.
//!
//! Keys come from the issuer's discovery document (`/.well-known/openid-configuration` →
//! `jwks_uri`) or a JWKS file, and are cached: refetched after [`KEYS_MAX_AGE`], or at once
//! when a token names a key id the cache lacks (the issuer rotated its keys), at most once per
//! [`REFETCH_AT_MOST_EVERY`] so unknown ids cannot make us hammer the issuer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::identity::Identity;
use crate::policy::{Grant, Role, ServicePattern};

const KEYS_MAX_AGE: Duration = Duration::from_secs(3600);
const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(30);
/// Clock skew allowed between the issuer and us, on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 60;

/// The operator's OIDC settings (`--oidc FILE`, JSON). Strict: a misspelt key is an error at
/// start, not a rule silently ignored.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    pub issuers: Vec<IssuerConfig>,
    /// Which groups get which role on which services. No matching rule: no access.
    #[serde(default)]
    pub rules: Vec<GroupRule>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The `iss` the tokens carry, and where discovery starts.
    pub issuer: String,
    /// The `aud` the tokens must carry (ionroller's client id at the issuer).
    pub audience: String,
    /// Keys from this file instead of discovery.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// The claim that lists the caller's groups (default `groups`).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
}

fn default_groups_claim() -> String {
    "groups".into()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRule {
    pub group: String,
    pub role: Role,
    /// Service patterns; none means every service.
    #[serde(default)]
    pub services: Vec<ServicePattern>,
}

impl OidcConfig {
    /// Reads and checks the file: every issuer must be https (or loopback http, for tests and
    /// local issuers), because keys fetched in clear could be anyone's.
    pub fn load(path: &std::path::Path) -> Result<Self, OidcError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| OidcError::Config(format!("read {}: {e}", path.display())))?;
        let config: OidcConfig = serde_json::from_str(&text)
            .map_err(|e| OidcError::Config(format!("{}: {e}", path.display())))?;
        for issuer in &config.issuers {
            let url = url::Url::parse(&issuer.issuer)
                .map_err(|e| OidcError::Config(format!("issuer {:?}: {e}", issuer.issuer)))?;
            let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
            if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
                return Err(OidcError::Config(format!(
                    "issuer {:?}: must be https (http only on localhost)",
                    issuer.issuer
                )));
            }
        }
        Ok(config)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("OIDC settings: {0}")]
    Config(String),
    #[error("{0}")]
    Rejected(String),
}

struct CachedKeys {
    keys: JwkSet,
    fetched: Instant,
}

/// Verifies JWTs against the configured issuers.
pub struct Oidc {
    config: OidcConfig,
    http: reqwest::Client,
    keys: tokio::sync::Mutex<HashMap<String, CachedKeys>>,
}

#[derive(Deserialize)]
struct Discovery {
    jwks_uri: String,
}

impl Oidc {
    pub fn new(config: OidcConfig, http: reqwest::Client) -> Self {
        Oidc {
            config,
            http,
            keys: tokio::sync::Mutex::default(),
        }
    }

    /// The identity a JWT proves: its email (or subject) via its issuer, with the grants its
    /// groups earn. The `Err` text says precisely why, for the server's log only.
    pub async fn authenticate(&self, jwt: &str, _now: DateTime<Utc>) -> Result<Identity, String> {
        let header = decode_header(jwt).map_err(|e| format!("unreadable JWT header: {e}"))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(format!(
                "algorithm {:?} is not accepted (RS256, ES256)",
                header.alg
            ));
        }
        let kid = header.kid.ok_or("the JWT names no key id (kid)")?;
        for issuer in &self.config.issuers {
            let Some(key) = self.key(issuer, &kid).await? else {
                continue;
            };
            let claims = verify(jwt, &key, header.alg, issuer)?;
            return Ok(identity(&claims, issuer, &self.config.rules));
        }
        Err(format!("unknown key id {kid:?} at every configured issuer"))
    }

    /// The issuer's key named `kid`, from the cache or fetched afresh.
    async fn key(&self, issuer: &IssuerConfig, kid: &str) -> Result<Option<DecodingKey>, String> {
        let mut cache = self.keys.lock().await;
        let cached = cache.get(&issuer.issuer);
        let has_kid = cached.is_some_and(|c| c.keys.find(kid).is_some());
        let stale = cached.is_none_or(|c| c.fetched.elapsed() > KEYS_MAX_AGE);
        let may_refetch = cached.is_none_or(|c| c.fetched.elapsed() > REFETCH_AT_MOST_EVERY);
        if stale || (!has_kid && may_refetch) {
            match self.fetch(issuer).await {
                Ok(keys) => {
                    cache.insert(
                        issuer.issuer.clone(),
                        CachedKeys {
                            keys,
                            fetched: Instant::now(),
                        },
                    );
                }
                // Keep serving with the keys we have; the issuer may be briefly down.
                Err(why) if cache.contains_key(&issuer.issuer) => {
                    tracing::warn!(issuer = %issuer.issuer, %why, "could not refresh OIDC keys");
                }
                Err(why) => return Err(why),
            }
        }
        let Some(jwk) = cache.get(&issuer.issuer).and_then(|c| c.keys.find(kid)) else {
            return Ok(None);
        };
        DecodingKey::from_jwk(jwk)
            .map(Some)
            .map_err(|e| format!("key {kid:?} of {}: {e}", issuer.issuer))
    }

    async fn fetch(&self, issuer: &IssuerConfig) -> Result<JwkSet, String> {
        if let Some(path) = &issuer.jwks_file {
            let text = tokio::fs::read_to_string(path)
                .await
                .map_err(|e| format!("read {}: {e}", path.display()))?;
            return serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()));
        }
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            issuer.issuer.trim_end_matches('/')
        );
        let discovery: Discovery = self.get_json(&discovery_url).await?;
        self.get_json(&discovery.jwks_uri).await
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let response = self
            .http
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: {}", response.status()));
        }
        response.json().await.map_err(|e| format!("GET {url}: {e}"))
    }
}

/// Signature, expiry, issuer and audience, checked by `jsonwebtoken`.
fn verify(
    jwt: &str,
    key: &DecodingKey,
    alg: Algorithm,
    issuer: &IssuerConfig,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let mut validation = Validation::new(alg);
    validation.leeway = LEEWAY_SECS;
    validation.set_issuer(&[&issuer.issuer]);
    validation.set_audience(&[&issuer.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    decode::<serde_json::Map<String, serde_json::Value>>(jwt, key, &validation)
        .map(|data| data.claims)
        .map_err(|e| format!("{e}"))
}

/// Who the claims name and what their groups earn. Pure.
fn identity(
    claims: &serde_json::Map<String, serde_json::Value>,
    issuer: &IssuerConfig,
    rules: &[GroupRule],
) -> Identity {
    let text = |name: &str| claims.get(name).and_then(|v| v.as_str());
    let who = text("email").or_else(|| text("sub")).unwrap_or("unknown");
    let groups: Vec<&str> = match claims.get(&issuer.groups_claim) {
        Some(serde_json::Value::Array(items)) => items.iter().filter_map(|v| v.as_str()).collect(),
        Some(serde_json::Value::String(one)) => vec![one.as_str()],
        _ => Vec::new(),
    };
    let grants = rules
        .iter()
        .filter(|rule| groups.contains(&rule.group.as_str()))
        .map(|rule| Grant {
            role: rule.role,
            services: rule.services.clone(),
        })
        .collect();
    Identity {
        actor: format!("{who} via {}", issuer.issuer),
        grants,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_map_to_grants_and_no_rule_means_no_access() {
        let issuer = IssuerConfig {
            issuer: "https://id.example".into(),
            audience: "ionroller".into(),
            jwks_file: None,
            groups_claim: "groups".into(),
        };
        let rules: Vec<GroupRule> = serde_json::from_str(
            r#"[{"group": "payments", "role": "deployer", "services": ["payments-*"]},
                {"group": "sre", "role": "admin"}]"#,
        )
        .expect("rules");
        let claims = |v: serde_json::Value| v.as_object().cloned().expect("object");
        let team = identity(
            &claims(
                serde_json::json!({"sub": "u1", "email": "ana@example.com", "groups": ["payments"]}),
            ),
            &issuer,
            &rules,
        );
        assert_eq!(team.actor, "ana@example.com via https://id.example");
        assert!(team.can_read("payments-api"));
        assert!(!team.can_read("hello"));
        let nobody = identity(
            &claims(serde_json::json!({"sub": "u2", "groups": ["marketing"]})),
            &issuer,
            &rules,
        );
        assert_eq!(nobody.actor, "u2 via https://id.example");
        assert!(nobody.grants.is_empty());
        let single = identity(
            &claims(serde_json::json!({"sub": "u3", "groups": "sre"})),
            &issuer,
            &rules,
        );
        assert_eq!(single.grants.len(), 1);
    }
}
