//! Who a request proved to be, and what it may therefore do.

use crate::policy::{authorize, Denied, Grant, Permission};

/// A verified caller: a token or an OIDC subject. Handlers record `actor` on every event the
/// request causes; nothing the client sends can change it.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    /// `ci-payments via token 1a2b3c4d`, or `alice@example.com via https://issuer.example`.
    pub actor: String,
    pub grants: Vec<Grant>,
}

impl Identity {
    pub fn may(&self, permission: &Permission<'_>) -> Result<(), Denied> {
        authorize(&self.grants, permission)
    }

    /// Whether a cross-service read (the services list) shows `service` to this caller.
    pub fn can_read(&self, service: &str) -> bool {
        self.may(&Permission::Read { service }).is_ok()
    }
}
