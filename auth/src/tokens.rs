//! API tokens, folded from the `tokens` stream. Pure: the caller supplies `now` and the
//! randomness.
//!
//! A token's secret reads `ionr_<token id>_<64 hex digits>`. The id part lets the server find
//! the one record to compare against, so the comparison of the secret's SHA-256 with the stored
//! one is a single constant-time comparison (`subtle`), and a guess learns nothing from timing.
//! Only the hash is stored: a copy of the log does not hold a usable token.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ionroller_shared::events::ServiceEvent;
use ionroller_shared::store::{RecordedEvent, Revision};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::identity::Identity;
use crate::policy::{Grant, Role, ServicePattern};

const PREFIX: &str = "ionr_";

/// One token as the stream describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenRecord {
    pub id: Uuid,
    pub name: String,
    /// `None` when the stored role is one this build does not know: such a token grants nothing.
    pub role: Option<Role>,
    /// The stored patterns; one this build cannot parse makes the token grant nothing.
    pub services: Option<Vec<ServicePattern>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    secret_sha256: [u8; 32],
}

impl TokenRecord {
    /// The grant this token carries, if its stored role and patterns are understood.
    pub fn grant(&self) -> Option<Grant> {
        Some(Grant {
            role: self.role?,
            services: self.services.clone()?,
        })
    }

    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| now < at)
    }

    /// How the recorded actor names the holder: the token's name and the start of its id.
    pub fn actor(&self) -> String {
        format!("{} via token {}", self.name, short(&self.id))
    }
}

/// What `token list` shows: never the secret or its hash.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TokenSummary {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub services: Vec<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// `active`, `expired` or `revoked`.
    pub state: &'static str,
}

/// Why a presented bearer credential was not accepted. The client is told only "invalid or
/// expired token"; the server logs which of these it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejected {
    #[error("not an ionroller token")]
    Malformed,
    #[error("no such token")]
    Unknown,
    #[error("the secret does not match")]
    WrongSecret,
    #[error("the token was revoked")]
    Revoked,
    #[error("the token expired")]
    Expired,
    #[error("the token's stored role or services are not understood by this build")]
    NotUnderstood,
}

/// Why a token command is refused (answered as 400 or 409 naming the field).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("{0:?} is not a token name: 1 to 64 lowercase letters, digits, '-', '_' or '.'")]
    BadName(String),
    #[error("a token named {0:?} is already active; revoke it first or choose another name")]
    NameTaken(String),
    #[error("no active token is named {0:?} (`ionroller token list` shows every token)")]
    NoSuchToken(String),
    #[error("must be in the future")]
    ExpiresInPast,
}

/// Every token, folded from the `tokens` stream.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    /// The last event folded in; token commands append expecting exactly this.
    pub revision: Option<Revision>,
    by_id: BTreeMap<Uuid, TokenRecord>,
}

impl Tokens {
    /// Folds a stored event; types this build does not know (and other streams' types) only
    /// advance the revision.
    pub fn apply_recorded(&mut self, event: &RecordedEvent) -> Result<(), String> {
        self.revision = Some(event.revision);
        let Some(decoded) = ServiceEvent::from_recorded(event)? else {
            return Ok(());
        };
        match decoded {
            ServiceEvent::TokenCreated {
                token_id,
                name,
                role,
                services,
                expires_at,
                secret_sha256,
            } => {
                let Some(hash) = decode_hash(&secret_sha256) else {
                    return Err(format!("token {name}: secret_sha256 is not 64 hex digits"));
                };
                let services = services
                    .iter()
                    .map(|s| ServicePattern::parse(s))
                    .collect::<Result<Vec<_>, _>>()
                    .ok();
                self.by_id.insert(
                    token_id,
                    TokenRecord {
                        id: token_id,
                        name,
                        role: Role::from_name(&role),
                        services,
                        created_by: event.metadata.actor.clone(),
                        created_at: event.metadata.occurred_at,
                        expires_at,
                        revoked_at: None,
                        secret_sha256: hash,
                    },
                );
            }
            ServiceEvent::TokenRevoked { token_id, .. } => {
                if let Some(token) = self.by_id.get_mut(&token_id) {
                    token.revoked_at.get_or_insert(event.metadata.occurred_at);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The identity a presented secret proves at `now`.
    pub fn authenticate(
        &self,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<Identity, TokenRejected> {
        let (id, _) = split(secret).ok_or(TokenRejected::Malformed)?;
        let token = self.by_id.get(&id).ok_or(TokenRejected::Unknown)?;
        let presented: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        if !bool::from(presented.ct_eq(&token.secret_sha256)) {
            return Err(TokenRejected::WrongSecret);
        }
        if token.revoked_at.is_some() {
            return Err(TokenRejected::Revoked);
        }
        if !token.is_active(now) {
            return Err(TokenRejected::Expired);
        }
        let grant = token.grant().ok_or(TokenRejected::NotUnderstood)?;
        Ok(Identity {
            actor: token.actor(),
            grants: vec![grant],
        })
    }

    /// The active token named `name`, if any.
    pub fn active(&self, name: &str, now: DateTime<Utc>) -> Option<&TokenRecord> {
        self.by_id
            .values()
            .find(|t| t.name == name && t.is_active(now))
    }

    /// Whether any token was ever created (the first `up` creates the admin token only then).
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// What `token list` shows, oldest first.
    pub fn list(&self, now: DateTime<Utc>) -> Vec<TokenSummary> {
        let mut tokens: Vec<_> = self
            .by_id
            .values()
            .map(|t| TokenSummary {
                id: t.id,
                name: t.name.clone(),
                role: t.role.map_or_else(|| "unknown".into(), |r| r.name().into()),
                services: t
                    .services
                    .as_ref()
                    .map(|s| s.iter().map(|p| p.as_str().to_string()).collect())
                    .unwrap_or_default(),
                created_by: t.created_by.clone(),
                created_at: t.created_at,
                expires_at: t.expires_at,
                revoked_at: t.revoked_at,
                state: if t.revoked_at.is_some() {
                    "revoked"
                } else if t.is_active(now) {
                    "active"
                } else {
                    "expired"
                },
            })
            .collect();
        tokens.sort_by_key(|t| t.created_at);
        tokens
    }

    /// The event that creates a token, and the secret to show its creator once. `id` and
    /// `random` come from the caller (a UUID v4 and 32 random bytes) so this stays pure.
    pub fn create(
        &self,
        request: &NewToken,
        now: DateTime<Utc>,
        id: Uuid,
        random: [u8; 32],
    ) -> Result<(ServiceEvent, String), TokenRefusal> {
        validate_name(&request.name)?;
        if self.active(&request.name, now).is_some() {
            return Err(TokenRefusal::NameTaken(request.name.clone()));
        }
        if request.expires_at.is_some_and(|at| at <= now) {
            return Err(TokenRefusal::ExpiresInPast);
        }
        let secret = format!("{PREFIX}{}_{}", id.simple(), hex(&random));
        let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let event = ServiceEvent::TokenCreated {
            token_id: id,
            name: request.name.clone(),
            role: request.grant.role.name().into(),
            services: request
                .grant
                .services
                .iter()
                .map(|p| p.as_str().to_string())
                .collect(),
            expires_at: request.expires_at,
            secret_sha256: hex(&hash),
        };
        Ok((event, secret))
    }

    /// The event that revokes the active token named `name`.
    pub fn revoke(&self, name: &str, now: DateTime<Utc>) -> Result<ServiceEvent, TokenRefusal> {
        let token = self
            .active(name, now)
            .ok_or_else(|| TokenRefusal::NoSuchToken(name.to_string()))?;
        Ok(ServiceEvent::TokenRevoked {
            token_id: token.id,
            name: token.name.clone(),
        })
    }
}

/// A token to create.
#[derive(Clone, Debug, PartialEq)]
pub struct NewToken {
    pub name: String,
    pub grant: Grant,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Whether `text` looks like an ionroller token (so a bearer credential is not tried as a JWT).
pub fn is_token(text: &str) -> bool {
    text.starts_with(PREFIX)
}

fn split(secret: &str) -> Option<(Uuid, &str)> {
    let rest = secret.strip_prefix(PREFIX)?;
    let (id, random) = rest.split_once('_')?;
    if id.len() != 32 || random.len() != 64 {
        return None;
    }
    Some((Uuid::try_parse(id).ok()?, random))
}

fn validate_name(name: &str) -> Result<(), TokenRefusal> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(TokenRefusal::BadName(name.to_string()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hash(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn short(id: &Uuid) -> String {
    id.simple().to_string()[..8].to_string()
}

#[cfg(test)]
mod tests {
    use ionroller_shared::store::{EventMetadata, Position, StreamId};

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("valid time")
    }

    /// Folds `event` as the store would record it at revision `revision`.
    fn fold(tokens: &mut Tokens, event: ServiceEvent, revision: u64, when: DateTime<Utc>) {
        let new = event.to_new_event(
            ionroller_shared::store::EventId(Uuid::new_v4()),
            EventMetadata {
                actor: "admin via token 00000000".into(),
                correlation_id: Uuid::nil(),
                causation_id: None,
                occurred_at: when,
            },
        );
        let recorded = RecordedEvent {
            stream: StreamId::new("tokens").expect("stream"),
            revision: Revision(revision),
            position: Position::new(revision + 1, revision + 1),
            recorded_at: when,
            id: new.id,
            event_type: new.event_type,
            schema_version: new.schema_version,
            data: new.data,
            metadata: new.metadata,
        };
        tokens.apply_recorded(&recorded).expect("fold");
    }

    fn request(name: &str, role: Role, services: &[&str], expires: Option<i64>) -> NewToken {
        NewToken {
            name: name.into(),
            grant: Grant {
                role,
                services: services
                    .iter()
                    .map(|s| ServicePattern::parse(s).expect("pattern"))
                    .collect(),
            },
            expires_at: expires.map(at),
        }
    }

    #[test]
    fn a_created_token_authenticates_until_revoked_or_expired() {
        let mut tokens = Tokens::default();
        let (event, secret) = tokens
            .create(
                &request("ci", Role::Deployer, &["payments-*"], Some(100)),
                at(0),
                Uuid::new_v4(),
                [7; 32],
            )
            .expect("created");
        fold(&mut tokens, event, 0, at(0));
        let identity = tokens.authenticate(&secret, at(1)).expect("valid");
        assert!(identity.actor.starts_with("ci via token "));
        assert!(identity.can_read("payments-api") && !identity.can_read("hello"));
        assert_eq!(
            tokens.authenticate(&secret, at(100)),
            Err(TokenRejected::Expired)
        );

        let mut wrong = secret.clone();
        wrong.pop();
        wrong.push(if secret.ends_with('0') { '1' } else { '0' });
        let table = [
            (wrong.as_str(), TokenRejected::WrongSecret),
            ("ionr_nope", TokenRejected::Malformed),
            ("hello", TokenRejected::Malformed),
        ];
        for (presented, why) in table {
            assert_eq!(
                tokens.authenticate(presented, at(1)),
                Err(why),
                "{presented}"
            );
        }
        let other = format!("ionr_{}_{}", Uuid::new_v4().simple(), "a".repeat(64));
        assert_eq!(
            tokens.authenticate(&other, at(1)),
            Err(TokenRejected::Unknown)
        );

        let revoke = tokens.revoke("ci", at(2)).expect("revocable");
        fold(&mut tokens, revoke, 1, at(2));
        assert_eq!(
            tokens.authenticate(&secret, at(3)),
            Err(TokenRejected::Revoked)
        );
        assert_eq!(tokens.list(at(3))[0].state, "revoked");
    }

    #[test]
    fn names_are_checked_and_unique_among_active_tokens() {
        let mut tokens = Tokens::default();
        let (event, _) = tokens
            .create(
                &request("ci", Role::Viewer, &[], None),
                at(0),
                Uuid::new_v4(),
                [1; 32],
            )
            .expect("created");
        fold(&mut tokens, event, 0, at(0));
        let table = [
            (
                request("ci", Role::Viewer, &[], None),
                TokenRefusal::NameTaken("ci".into()),
            ),
            (
                request("CI!", Role::Viewer, &[], None),
                TokenRefusal::BadName("CI!".into()),
            ),
            (
                request("", Role::Viewer, &[], None),
                TokenRefusal::BadName(String::new()),
            ),
            (
                request("old", Role::Viewer, &[], Some(-1)),
                TokenRefusal::ExpiresInPast,
            ),
        ];
        for (req, refusal) in table {
            assert_eq!(
                tokens
                    .create(&req, at(0), Uuid::new_v4(), [2; 32])
                    .map(|_| ()),
                Err(refusal)
            );
        }
        assert_eq!(
            tokens.revoke("nobody", at(0)),
            Err(TokenRefusal::NoSuchToken("nobody".into()))
        );
        // Revoked, the name may be used again.
        let revoke = tokens.revoke("ci", at(1)).expect("revocable");
        fold(&mut tokens, revoke, 1, at(1));
        assert!(tokens
            .create(
                &request("ci", Role::Viewer, &[], None),
                at(2),
                Uuid::new_v4(),
                [3; 32]
            )
            .is_ok());
    }

    #[test]
    fn a_role_this_build_does_not_know_grants_nothing() {
        let mut tokens = Tokens::default();
        let id = Uuid::new_v4();
        let (_, secret) = tokens
            .create(&request("x", Role::Viewer, &[], None), at(0), id, [9; 32])
            .expect("created");
        let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let event = ServiceEvent::TokenCreated {
            token_id: id,
            name: "x".into(),
            role: "superuser".into(),
            services: vec![],
            expires_at: None,
            secret_sha256: hex(&hash),
        };
        fold(&mut tokens, event, 0, at(0));
        assert_eq!(
            tokens.authenticate(&secret, at(1)),
            Err(TokenRejected::NotUnderstood)
        );
    }
}
