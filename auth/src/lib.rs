//! Identity and authorization for ionroller, shared by the roller and trail (trail must not
//! depend on the roller, so the rules live here, once).
//!
//! - [`policy`]: roles, service patterns and [`authorize`] (pure);
//! - [`tokens`]: API tokens folded from the `tokens` stream, and the secret check (pure);
//! - [`identity`]: what a request proved;
//! - [`oidc`]: bearer JWTs from configured issuers, their keys fetched and cached;
//! - [`authenticator`]: the I/O around them: catching up the token stream on every request (so
//!   a revocation holds at once on every replica), token commands, recording refusals;
//! - [`tls`]: TLS on the listeners, and the rule that off loopback plain HTTP must be
//!   acknowledged;
//! - [`guard`]: the axum middleware each service puts in front of its routes, with the
//!   service's own table of which permission each route needs.

pub mod authenticator;
pub mod guard;
pub mod identity;
pub mod oidc;
pub mod policy;
pub mod tls;
pub mod tokens;

pub use authenticator::{AuthError, Authenticator};
pub use identity::Identity;
pub use policy::{authorize, Denied, Grant, Permission, Role, ServicePattern};
pub use tokens::{NewToken, TokenRefusal, TokenSummary, Tokens};
