//! Token commands (admin) and `whoami` (anyone signed in). The rules are
//! `ionroller_auth::tokens`'; these handlers check the input's form and append.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use ionroller_auth::authenticator::TokenCommandError;
use ionroller_auth::{Grant, Identity, NewToken, Role, ServicePattern, TokenRefusal, TokenSummary};
use ionroller_shared::http::ErrorBody;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{Body, Params};
use super::{ApiError, AppState};
use ionroller_shared::config::validate_service_name;

/// Who the credentials sent prove the caller to be, and what they may do.
#[derive(Serialize, ToSchema)]
pub struct WhoAmI {
    /// What events record as the actor: `NAME via token ID` or `EMAIL via ISSUER`.
    pub actor: String,
    /// Each grant: a role on the services its patterns match (all when none).
    pub grants: Vec<GrantView>,
    /// With `?service=NAME`: what the caller may do to it (`read`, `deploy`, `configure`,
    /// `administer`), by the rule the server applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WhoAmIQuery {
    /// A service to list the caller's permissions on.
    #[param(pattern = r"^[a-z][a-z0-9-]{0,21}[a-z0-9]$")]
    service: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct GrantView {
    pub role: String,
    pub services: Vec<String>,
}

/// A token as `token list` shows it: never its secret.
#[derive(Serialize, ToSchema)]
pub struct TokenView {
    pub id: uuid::Uuid,
    pub name: String,
    pub role: String,
    pub services: Vec<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// `active`, `expired` or `revoked`.
    pub state: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}

/// A new token and its secret: shown this once, never stored.
#[derive(Serialize, ToSchema)]
pub struct TokenCreated {
    pub token: TokenView,
    pub secret: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenBody {
    /// 1 to 64 lowercase letters, digits, `-`, `_` or `.`; unique among active tokens.
    #[schema(pattern = r"^[a-z0-9._-]{1,64}$")]
    name: String,
    /// `viewer`, `deployer`, `maintainer` or `admin`.
    role: String,
    /// Service patterns (`payments-*`, `hello`, `*`); none means every service.
    #[serde(default)]
    services: Vec<String>,
    /// When the token stops working; none means it never expires.
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

fn view(t: TokenSummary) -> TokenView {
    TokenView {
        id: t.id,
        name: t.name,
        role: t.role,
        services: t.services,
        created_by: t.created_by,
        created_at: t.created_at,
        expires_at: t.expires_at,
        revoked_at: t.revoked_at,
        state: t.state.to_string(),
    }
}

impl From<TokenCommandError> for ApiError {
    fn from(e: TokenCommandError) -> Self {
        match e {
            TokenCommandError::Refused(refusal) => {
                let field = match refusal {
                    TokenRefusal::ExpiresInPast => "expires_at",
                    _ => "name",
                };
                match refusal {
                    TokenRefusal::NameTaken(_) => ApiError::conflict(refusal.to_string()),
                    TokenRefusal::NoSuchToken(_) => ApiError::not_found(refusal.to_string()),
                    _ => ApiError::field(field, refusal.to_string()),
                }
            }
            TokenCommandError::Conflict => ApiError::conflict(e.to_string()),
            TokenCommandError::Store(s) => ApiError::from(s),
        }
    }
}

/// Who the caller is.
#[utoipa::path(get, path = "/v1/whoami", tag = "tokens",
    params(WhoAmIQuery),
    responses(
        (status = 200, description = "the verified identity", body = WhoAmI),
        (status = 400, description = "a bad service name", body = ErrorBody),
        (status = 401, description = "no valid credentials", body = ErrorBody),
    ))]
pub async fn whoami(
    Extension(caller): Extension<Identity>,
    Params(q): Params<WhoAmIQuery>,
) -> Result<Json<WhoAmI>, ApiError> {
    let permissions = match &q.service {
        Some(service) => {
            validate_service_name(service).map_err(|e| ApiError::field("service", e.problem))?;
            Some(
                caller
                    .permissions_on(service)
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
            )
        }
        None => None,
    };
    Ok(Json(WhoAmI {
        permissions,
        actor: caller.actor,
        grants: caller
            .grants
            .iter()
            .map(|g| GrantView {
                role: g.role.name().into(),
                services: g.services.iter().map(|p| p.as_str().to_string()).collect(),
            })
            .collect(),
    }))
}

/// Every token, active or not (admin).
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens",
    responses(
        (status = 200, description = "oldest first; secrets are never shown", body = TokenList),
        (status = 503, description = "the event store is unavailable", body = ErrorBody),
    ))]
pub async fn list_tokens(State(state): State<AppState>) -> Result<Json<TokenList>, ApiError> {
    let tokens = state.auth.list(state.clock.now()).await?;
    Ok(Json(TokenList {
        tokens: tokens.into_iter().map(view).collect(),
    }))
}

/// Creates a token (admin); its secret is in this answer only.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens",
    request_body(content = CreateTokenBody, content_type = "application/json"),
    responses(
        (status = 201, description = "created; keep the secret, it is not shown again", body = TokenCreated),
        (status = 400, description = "invalid input: the error names the field", body = ErrorBody),
        (status = 409, description = "an active token has this name", body = ErrorBody),
        (status = 415, description = "the body is not `application/json`", body = ErrorBody),
        (status = 503, description = "the event store is unavailable", body = ErrorBody),
    ))]
pub async fn create_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Identity>,
    Body(body): Body<CreateTokenBody>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    let role = Role::from_name(&body.role).ok_or_else(|| {
        ApiError::field("role", "must be one of viewer, deployer, maintainer, admin")
    })?;
    let services = body
        .services
        .iter()
        .map(|s| ServicePattern::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|why| ApiError::field("services", why))?;
    let request = NewToken {
        name: body.name,
        grant: Grant { role, services },
        expires_at: body.expires_at,
    };
    let (token, secret) = state
        .auth
        .create(&request, &caller.actor, state.clock.now())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            token: view(token),
            secret,
        }),
    ))
}

/// Revokes the active token named `name` (admin): refused from the next request on, by every
/// replica.
#[utoipa::path(delete, path = "/v1/tokens/{name}", tag = "tokens",
    params(("name" = String, Path, description = "the token's name",
        pattern = r"^[a-z0-9._-]{1,64}$", example = "payments-ci")),
    responses(
        (status = 200, description = "revoked", body = TokenView),
        (status = 404, description = "no active token has this name", body = ErrorBody),
        (status = 503, description = "the event store is unavailable", body = ErrorBody),
    ))]
pub async fn revoke_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Identity>,
    Path(name): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    let token = state
        .auth
        .revoke(&name, &caller.actor, state.clock.now())
        .await?;
    Ok(Json(view(token)))
}
