//! The I/O around the pure rules: the token stream caught up on every request, token commands
//! appended at the revision they were checked against, and refused requests recorded.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use ionroller_shared::events::{access_stream, tokens_stream, ServiceEvent};
use ionroller_shared::store::{
    fold_stream, EventId, EventMetadata, EventStore, ExpectedRevision, StoreError,
};
use uuid::Uuid;

use crate::identity::Identity;
use crate::oidc::Oidc;
use crate::tokens::{is_token, NewToken, TokenRefusal, TokenSummary, Tokens};

/// At most one `access-denied` event per identity in this window; the others are counted.
const DENIAL_WINDOW: Duration = Duration::seconds(60);
/// Identities remembered for rate limiting; beyond it, the oldest are forgotten.
const DENIALS_REMEMBERED: usize = 10_000;

/// Why a request carries no usable identity. The client sees only the `Display` text; the
/// precise reason (`Rejected`'s) goes to the server's log, so that a probe learns nothing
/// about which tokens exist.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials: send `Authorization: Bearer <token>`")]
    Missing,
    #[error("invalid or expired credentials")]
    Rejected(String),
    #[error("the event store is unavailable; retry shortly")]
    Unavailable(#[from] StoreError),
}

/// Why a token command failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenCommandError {
    #[error(transparent)]
    Refused(#[from] TokenRefusal),
    #[error("the tokens changed while this command was checked; retry")]
    Conflict,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why the first admin token could not be created.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError<E> {
    #[error("keep the admin token: {0}")]
    Keep(E),
    #[error(transparent)]
    Command(#[from] TokenCommandError),
}

struct Denial {
    last_recorded: DateTime<Utc>,
    unrecorded: u64,
}

/// Authenticates requests against the tokens in the log (and OIDC issuers, when configured).
pub struct Authenticator {
    store: Arc<dyn EventStore>,
    tokens: tokio::sync::Mutex<Tokens>,
    oidc: Option<Oidc>,
    denials: std::sync::Mutex<HashMap<String, Denial>>,
}

impl Authenticator {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Authenticator {
            store,
            tokens: tokio::sync::Mutex::default(),
            oidc: None,
            denials: std::sync::Mutex::default(),
        }
    }

    /// The authenticator a service starts with: tokens from the log and, with `oidc` (the
    /// operator's `--oidc` file), JWTs from the issuers it names.
    pub fn for_service(
        store: Arc<dyn EventStore>,
        oidc: Option<&std::path::Path>,
    ) -> Result<Self, crate::oidc::OidcError> {
        let auth = Authenticator::new(store);
        let Some(path) = oidc else {
            return Ok(auth);
        };
        let config = crate::oidc::OidcConfig::load(path)?;
        let http = crate::tls::http_client()
            .build()
            .map_err(|e| crate::oidc::OidcError::Config(format!("HTTP client: {e}")))?;
        Ok(auth.with_oidc(Oidc::new(config, http)))
    }

    /// Bearer JWTs from these issuers are accepted too.
    pub fn with_oidc(mut self, oidc: Oidc) -> Self {
        self.oidc = Some(oidc);
        self
    }

    /// The tokens, caught up with the log. Read on every request: one indexed read that
    /// usually returns nothing, and the price of a revocation holding at once everywhere.
    async fn tokens(&self) -> Result<tokio::sync::MutexGuard<'_, Tokens>, StoreError> {
        let mut tokens = self.tokens.lock().await;
        let after = tokens.revision;
        let stream = tokens_stream()?;
        fold_stream(self.store.as_ref(), &stream, after, |event| {
            // A token event this build cannot read grants nothing; the fold goes on.
            if let Err(why) = tokens.apply_recorded(event) {
                tracing::warn!(revision = event.revision.0, %why, "unreadable token event");
            }
            Ok::<(), StoreError>(())
        })
        .await?;
        Ok(tokens)
    }

    /// The identity the `Authorization` header's value proves at `now`.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Identity, AuthError> {
        let credential = authorization.and_then(bearer).ok_or(AuthError::Missing)?;
        if is_token(credential) {
            return self
                .tokens()
                .await?
                .authenticate(credential, now)
                .map_err(|why| AuthError::Rejected(format!("token: {why}")));
        }
        match &self.oidc {
            Some(oidc) => oidc
                .authenticate(credential, now)
                .await
                .map_err(|why| AuthError::Rejected(format!("OIDC: {why}"))),
            None => Err(AuthError::Rejected(
                "not an ionroller token, and no OIDC issuer is configured".into(),
            )),
        }
    }

    pub async fn list(&self, now: DateTime<Utc>) -> Result<Vec<TokenSummary>, StoreError> {
        Ok(self.tokens().await?.list(now))
    }

    /// Creates a token; returns what `token list` will show of it and its secret, which is
    /// not kept anywhere and cannot be shown again.
    pub async fn create(
        &self,
        request: &NewToken,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(TokenSummary, String), TokenCommandError> {
        let tokens = self.tokens().await?;
        let mut random = [0u8; 32];
        rand::fill(&mut random);
        let id = Uuid::new_v4();
        let (event, secret) = tokens.create(request, now, id, random)?;
        self.append_token_event(&tokens, event, actor, now).await?;
        drop(tokens);
        let summary = self
            .list(now)
            .await?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or(TokenCommandError::Conflict)?;
        Ok((summary, secret))
    }

    /// Revokes the active token named `name`; every request with it is refused from now on.
    pub async fn revoke(
        &self,
        name: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<TokenSummary, TokenCommandError> {
        let tokens = self.tokens().await?;
        let event = tokens.revoke(name, now)?;
        let ServiceEvent::TokenRevoked { token_id, .. } = event else {
            return Err(TokenCommandError::Conflict);
        };
        self.append_token_event(&tokens, event, actor, now).await?;
        drop(tokens);
        self.list(now)
            .await?
            .into_iter()
            .find(|t| t.id == token_id)
            .ok_or(TokenCommandError::Conflict)
    }

    /// Creates the first admin token when no token was ever created: what the first `up` on
    /// a data dir does, so that the local walkthrough needs no manual step. `keep` stores the
    /// secret (a file readable by its owner) *before* the token is appended: if keeping fails,
    /// no token exists and the next start tries again, rather than a token existing that no
    /// one holds. Returns whether a token was created.
    pub async fn bootstrap_admin<E>(
        &self,
        now: DateTime<Utc>,
        keep: impl FnOnce(&str) -> Result<(), E>,
    ) -> Result<bool, BootstrapError<E>> {
        let tokens = self.tokens().await.map_err(TokenCommandError::from)?;
        if !tokens.is_empty() {
            return Ok(false);
        }
        let request = NewToken {
            name: "admin".into(),
            grant: crate::policy::Grant {
                role: crate::policy::Role::Admin,
                services: Vec::new(),
            },
            expires_at: None,
        };
        let mut random = [0u8; 32];
        rand::fill(&mut random);
        let (event, secret) = tokens
            .create(&request, now, Uuid::new_v4(), random)
            .map_err(TokenCommandError::from)?;
        keep(&secret).map_err(BootstrapError::Keep)?;
        self.append_token_event(&tokens, event, "ionroller up", now)
            .await?;
        Ok(true)
    }

    /// Appends at the revision `tokens` was folded to: two admins creating one name at once are
    /// serialised by the store, not by luck.
    async fn append_token_event(
        &self,
        tokens: &Tokens,
        event: ServiceEvent,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(), TokenCommandError> {
        let stream = tokens_stream()?;
        let new = event.to_new_event(EventId(Uuid::new_v4()), metadata(actor, now));
        match self
            .store
            .append(&stream, ExpectedRevision::after(tokens.revision), vec![new])
            .await
        {
            Ok(_) => Ok(()),
            Err(StoreError::WrongExpectedRevision { .. }) => Err(TokenCommandError::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    /// Records that `identity` was refused `request`, at most once a minute per identity (the
    /// refusals in between are counted on the next record). A failure to record is logged: it
    /// must not turn a 403 into a 503.
    pub async fn record_denied(
        &self,
        identity: &Identity,
        request: String,
        needed: String,
        now: DateTime<Utc>,
    ) {
        let repeats = {
            let Ok(mut denials) = self.denials.lock() else {
                return;
            };
            if let Some(seen) = denials.get_mut(&identity.actor) {
                if now - seen.last_recorded < DENIAL_WINDOW {
                    seen.unrecorded += 1;
                    return;
                }
            }
            if denials.len() >= DENIALS_REMEMBERED {
                denials.retain(|_, d| now - d.last_recorded < DENIAL_WINDOW);
            }
            let previous = denials.insert(
                identity.actor.clone(),
                Denial {
                    last_recorded: now,
                    unrecorded: 0,
                },
            );
            previous.map_or(0, |d| d.unrecorded)
        };
        let event = ServiceEvent::AccessDenied {
            identity: identity.actor.clone(),
            request,
            needed,
            repeats,
        };
        let result = match access_stream() {
            Ok(stream) => {
                let new =
                    event.to_new_event(EventId(Uuid::new_v4()), metadata(&identity.actor, now));
                self.store
                    .append(&stream, ExpectedRevision::Any, vec![new])
                    .await
                    .map(|_| ())
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not record a refused request");
        }
    }
}

fn metadata(actor: &str, now: DateTime<Utc>) -> EventMetadata {
    EventMetadata {
        actor: actor.to_string(),
        correlation_id: Uuid::new_v4(),
        causation_id: None,
        occurred_at: now,
    }
}

/// The credential of an `Authorization: Bearer <credential>` value (the scheme is
/// case-insensitive, as RFC 6750 has it).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, credential) = value.trim().split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
}
