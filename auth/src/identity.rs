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

    /// What this caller may do to `service`, by the same rule the guard applies: any of
    /// `read`, `deploy`, `configure`, `administer`. A console shows only these actions.
    pub fn permissions_on(&self, service: &str) -> Vec<&'static str> {
        [
            ("read", Permission::Read { service }),
            ("deploy", Permission::Deploy { service }),
            ("configure", Permission::Configure { service }),
            ("administer", Permission::Administer),
        ]
        .into_iter()
        .filter(|(_, permission)| self.may(permission).is_ok())
        .map(|(name, _)| name)
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Role, ServicePattern};

    fn identity(role: Role, services: &[&str]) -> Identity {
        Identity {
            actor: "t".into(),
            grants: vec![Grant {
                role,
                services: services
                    .iter()
                    .map(|s| ServicePattern::parse(s).expect("a pattern"))
                    .collect(),
            }],
        }
    }

    #[test]
    fn permissions_on_a_service_follow_the_role_and_its_scope() {
        let cases: &[(Role, &[&str], &str, &[&str])] = &[
            (Role::Viewer, &[], "hello", &["read"]),
            (
                Role::Deployer,
                &["payments-*"],
                "payments-api",
                &["read", "deploy"],
            ),
            (Role::Deployer, &["payments-*"], "hello", &[]),
            (
                Role::Maintainer,
                &["hello"],
                "hello",
                &["read", "deploy", "configure"],
            ),
            (
                Role::Admin,
                &[],
                "hello",
                &["read", "deploy", "configure", "administer"],
            ),
        ];
        for (role, services, service, expected) in cases {
            assert_eq!(
                identity(*role, services).permissions_on(service),
                *expected,
                "{role:?} on {services:?}, asking about {service}"
            );
        }
    }
}
