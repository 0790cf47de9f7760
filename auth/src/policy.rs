//! Roles, service scopes and the permission check.
//!
//! Roles are ordered: each may do everything the one before it may.
//! - `viewer`: read (status, events, plan, trail's audit, history, reports, dashboards);
//! - `deployer`: + release, promote, pause, resume, abort, rollback;
//! - `maintainer`: + save a service's config;
//! - `admin`: + tokens and policy.
//!
//! A grant is a role on the services its patterns match (`payments-*`); with no pattern it
//! reaches every service. An identity with no grant that matches has no access: the default
//! is to refuse.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Deployer,
    Maintainer,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Deployer, Role::Maintainer, Role::Admin];

    /// The role a stored or typed name means; `None` for a name this build does not know.
    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Deployer => "deployer",
            Role::Maintainer => "maintainer",
            Role::Admin => "admin",
        }
    }
}

/// What a route needs. Service-scoped permissions name the service they act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission<'a> {
    /// Read one service (status, events, plan, configs, its audit and history).
    Read { service: &'a str },
    /// Read across services (lists, the whole audit, delivery reports, dashboards): every
    /// row is still filtered to the services the identity may read.
    ReadAll,
    /// Read across services where rows cannot be filtered one by one (trail's fleet-wide
    /// audit, reports and dashboard, `/metrics`): needs a read grant on every service.
    ReadFleet,
    /// Release, promote, pause, resume, abort, rollback.
    Deploy { service: &'a str },
    /// Save a config.
    Configure { service: &'a str },
    /// Tokens and policy.
    Administer,
}

impl Permission<'_> {
    /// The least role that holds this permission.
    pub fn role(&self) -> Role {
        match self {
            Permission::Read { .. } | Permission::ReadAll | Permission::ReadFleet => Role::Viewer,
            Permission::Deploy { .. } => Role::Deployer,
            Permission::Configure { .. } => Role::Maintainer,
            Permission::Administer => Role::Admin,
        }
    }

    fn service(&self) -> Option<&str> {
        match self {
            Permission::Read { service }
            | Permission::Deploy { service }
            | Permission::Configure { service } => Some(service),
            Permission::ReadAll | Permission::ReadFleet | Permission::Administer => None,
        }
    }

    /// In words, for a 403's body: what was needed.
    pub fn describe(&self) -> String {
        match self.service() {
            Some(service) => format!("{} on service {service}", self.role().name()),
            None => format!("{} on every service", self.role().name()),
        }
    }
}

/// A service name pattern: a name, or a prefix ending in `*` (`payments-*`), or `*`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServicePattern(String);

impl ServicePattern {
    /// Refuses a pattern that could not match a service name, or that puts `*` anywhere but
    /// at the end (a rule that reads as narrower than it is would be a trap).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (body, _) = match text.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (text, false),
        };
        let ok = !text.is_empty()
            && text.len() <= 64
            && body
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(ServicePattern(text.to_string()))
        } else {
            Err(format!(
                "{text:?} is not a service pattern: a service name, or a prefix of lowercase letters, digits and hyphens ending in * (payments-*), or *"
            ))
        }
    }

    pub fn matches(&self, service: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => service.starts_with(prefix),
            None => self.0 == service,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ServicePattern {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        ServicePattern::parse(&text)
    }
}

impl From<ServicePattern> for String {
    fn from(p: ServicePattern) -> String {
        p.0
    }
}

/// A role on some services (all of them when `services` is empty).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub role: Role,
    #[serde(default)]
    pub services: Vec<ServicePattern>,
}

impl Grant {
    fn reaches(&self, service: Option<&str>) -> bool {
        match service {
            _ if self.services.is_empty() => true,
            Some(service) => self.services.iter().any(|p| p.matches(service)),
            // Across services: only a grant on every service holds a permission that is
            // not about one service (admin, or an unscoped read).
            None => false,
        }
    }

    /// Whether this grant lets its holder read `service` (for filtering cross-service reads).
    pub fn can_read(&self, service: &str) -> bool {
        self.reaches(Some(service))
    }
}

/// Why a request was refused: the permission it needed, in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    pub needed: String,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "this needs the role {}", self.needed)
    }
}

impl std::error::Error for Denied {}

/// Whether an identity holding `grants` may do what `permission` describes.
pub fn authorize(grants: &[Grant], permission: &Permission<'_>) -> Result<(), Denied> {
    let service = permission.service();
    let allowed = grants
        .iter()
        .any(|g| g.role >= permission.role() && g.reaches(service));
    // A cross-service read is allowed to anyone who may read something: rows are filtered.
    let read_some = matches!(permission, Permission::ReadAll) && !grants.is_empty();
    if allowed || read_some {
        Ok(())
    } else {
        Err(Denied {
            needed: permission.describe(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(role: Role, patterns: &[&str]) -> Grant {
        Grant {
            role,
            services: patterns
                .iter()
                .map(|p| ServicePattern::parse(p).expect("valid pattern"))
                .collect(),
        }
    }

    #[test]
    fn each_role_holds_what_the_ones_below_it_hold() {
        let service = "payments-api";
        let permissions = [
            Permission::Read { service },
            Permission::Deploy { service },
            Permission::Configure { service },
            Permission::Administer,
        ];
        for (i, role) in Role::ALL.into_iter().enumerate() {
            for (j, permission) in permissions.iter().enumerate() {
                let got = authorize(&[grant(role, &[])], permission).is_ok();
                assert_eq!(got, j <= i, "{role:?} {permission:?}");
            }
        }
    }

    #[test]
    fn a_team_grant_reaches_only_its_services() {
        let team = [grant(Role::Maintainer, &["payments-*", "ledger"])];
        let table = [
            (
                Permission::Deploy {
                    service: "payments-api",
                },
                true,
            ),
            (
                Permission::Configure {
                    service: "payments-web",
                },
                true,
            ),
            (Permission::Deploy { service: "ledger" }, true),
            (
                Permission::Deploy {
                    service: "ledger-2",
                },
                false,
            ),
            (Permission::Deploy { service: "hello" }, false),
            (Permission::Read { service: "hello" }, false),
            (Permission::Administer, false),
            (Permission::ReadAll, true),
            (Permission::ReadFleet, false),
        ];
        for (permission, allowed) in table {
            assert_eq!(
                authorize(&team, &permission).is_ok(),
                allowed,
                "{permission:?}"
            );
        }
    }

    #[test]
    fn no_grant_means_no_access_and_the_refusal_says_what_was_needed() {
        let denied = authorize(&[], &Permission::Deploy { service: "hello" }).expect_err("refused");
        assert_eq!(
            denied.to_string(),
            "this needs the role deployer on service hello"
        );
        assert!(authorize(&[], &Permission::ReadAll).is_err());
        let viewer = [grant(Role::Viewer, &["hello"])];
        let denied = authorize(&viewer, &Permission::Administer).expect_err("refused");
        assert_eq!(
            denied.to_string(),
            "this needs the role admin on every service"
        );
    }

    #[test]
    fn patterns_are_a_name_or_a_prefix_ending_in_a_star() {
        for good in ["hello", "payments-*", "*", "a1-*"] {
            assert!(ServicePattern::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "pay*ments", "Payments", "pay ments", "*-api", "**"] {
            assert!(ServicePattern::parse(bad).is_err(), "{bad}");
        }
        let p = ServicePattern::parse("payments-*").expect("valid");
        assert!(p.matches("payments-api") && p.matches("payments-"));
        assert!(!p.matches("payment") && !p.matches("xpayments-api"));
    }
}
