//! Authorization for ionroller: which roles exist, what each may do, and on which services.
//! Pure: no I/O, no clock. Both the roller and trail ask [`authorize`] with the identity a
//! request proved (a token or an OIDC subject, resolved elsewhere) and the permission its
//! route needs.
//!
//! Work in progress for issue 11 (identity): the policy rules first; tokens, OIDC and the
//! routes' wiring follow.

pub mod policy;

pub use policy::{authorize, Denied, Grant, Permission, Role, ServicePattern};
