//! Load-balancer ownership: each load balancer serves one service. Pure.
//!
//! Two services behind one load balancer mix their customers' traffic, and each one's drift
//! repair undoes the other's registrations. So a service *claims* the load balancer its config
//! names, on the one `load-balancers` stream, before the config is saved; a config that names a
//! load balancer another service owns is refused, naming the owner. Claims are appended at the
//! stream's folded revision, so two services claiming one balancer at once are serialised by
//! the store's expected-revision check: one wins, the other re-reads and is refused.
//!
//! A claim is released when the owner saves a config that names another load balancer. A
//! claim left by a save that stopped between its two appends (claim, then config) only ever
//! over-protects, and the owner's next save releases it.

use std::collections::BTreeMap;

use ionroller_shared::config::ServiceConfig;
use ionroller_shared::events::ServiceEvent;
use ionroller_shared::store::{RecordedEvent, Revision};

use crate::commands::Refusal;

/// Who owns which load balancer, folded from the `load-balancers` stream.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Claims {
    /// The last event folded in; claims are appended expecting exactly this.
    pub revision: Option<Revision>,
    /// Claim key ([`ionroller_shared::config::LoadBalancerConfig::claim_key`]) → service.
    owners: BTreeMap<String, String>,
}

impl Claims {
    pub fn owner(&self, key: &str) -> Option<&str> {
        self.owners.get(key).map(String::as_str)
    }

    /// Whether `service` owns any load balancer.
    pub fn holds_any(&self, service: &str) -> bool {
        self.owners.values().any(|owner| owner == service)
    }

    /// Folds one event of the claims stream; other event types only advance the revision.
    pub fn evolve(&mut self, event: &ServiceEvent, revision: Revision) {
        self.revision = Some(revision);
        match event {
            ServiceEvent::LoadBalancerClaimed {
                load_balancer,
                service,
            } => {
                self.owners.insert(load_balancer.clone(), service.clone());
            }
            // Only the owner's release counts.
            ServiceEvent::LoadBalancerReleased {
                load_balancer,
                service,
            } if self.owner(load_balancer) == Some(service) => {
                self.owners.remove(load_balancer);
            }
            _ => {}
        }
    }

    /// Folds a stored event; a type this build does not know only advances the revision.
    pub fn apply_recorded(&mut self, event: &RecordedEvent) -> Result<(), String> {
        match ServiceEvent::from_recorded(event)? {
            Some(decoded) => self.evolve(&decoded, event.revision),
            None => self.revision = Some(event.revision),
        }
        Ok(())
    }
}

/// What saving `config` for `service` needs on the claims stream: `Ok(None)` when the service
/// already owns its load balancer, `Ok(Some(claim))` to append first, or the refusal when
/// another service owns it. `legacy` lists (service, claim key) of configs saved before claims
/// existed: a load balancer one of them names counts as theirs, unless that service has
/// claimed anything since (then it saved a config after claims existed, and its claims are
/// the whole truth about it).
pub fn claim(
    claims: &Claims,
    service: &str,
    config: &ServiceConfig,
    legacy: &[(String, String)],
) -> Result<Option<ServiceEvent>, Refusal> {
    let lb = &config.endpoint.load_balancer;
    let key = lb.claim_key();
    let refuse = |owner: &str| Refusal::LoadBalancerOwned {
        load_balancer: lb.name.clone(),
        owner: owner.to_string(),
    };
    match claims.owner(&key) {
        Some(owner) if owner == service => Ok(None),
        Some(owner) => Err(refuse(owner)),
        None => match legacy.iter().find(|(other, legacy_key)| {
            other != service && *legacy_key == key && !claims.holds_any(other)
        }) {
            Some((other, _)) => Err(refuse(other)),
            None => Ok(Some(ServiceEvent::LoadBalancerClaimed {
                load_balancer: key,
                service: service.to_string(),
            })),
        },
    }
}

/// The claims `service` holds on load balancers other than the one `config` names: released
/// once that config is saved.
pub fn releases(claims: &Claims, service: &str, config: &ServiceConfig) -> Vec<ServiceEvent> {
    let keep = config.endpoint.load_balancer.claim_key();
    claims
        .owners
        .iter()
        .filter(|(key, owner)| owner.as_str() == service && **key != keep)
        .map(|(key, _)| ServiceEvent::LoadBalancerReleased {
            load_balancer: key.clone(),
            service: service.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use ionroller_shared::config::{parse_service_config, LoadBalancerKind};

    use super::*;

    fn config(lb: &str) -> ServiceConfig {
        let mut c = parse_service_config(include_str!("../../../examples/hello.json"))
            .expect("the example config is valid");
        c.endpoint.load_balancer.name = lb.to_string();
        c
    }

    fn folded(events: &[ServiceEvent]) -> Claims {
        let mut claims = Claims::default();
        for (i, e) in events.iter().enumerate() {
            claims.evolve(e, Revision(i as u64));
        }
        claims
    }

    fn claimed(lb: &str, service: &str) -> ServiceEvent {
        ServiceEvent::LoadBalancerClaimed {
            load_balancer: format!("classic/{lb}"),
            service: service.into(),
        }
    }

    fn released(lb: &str, service: &str) -> ServiceEvent {
        ServiceEvent::LoadBalancerReleased {
            load_balancer: format!("classic/{lb}"),
            service: service.into(),
        }
    }

    #[test]
    fn the_first_service_to_name_a_load_balancer_claims_it() {
        let got = claim(&Claims::default(), "hello", &config("hello-lb"), &[]);
        assert_eq!(got, Ok(Some(claimed("hello-lb", "hello"))));
    }

    #[test]
    fn the_owner_saves_again_without_a_new_claim() {
        let claims = folded(&[claimed("hello-lb", "hello")]);
        assert_eq!(claim(&claims, "hello", &config("hello-lb"), &[]), Ok(None));
    }

    #[test]
    fn another_service_naming_an_owned_load_balancer_is_refused_naming_the_owner() {
        let claims = folded(&[claimed("hello-lb", "hello")]);
        // The copy of hello's example with the same load balancer, in another spelling.
        let refusal = claim(&claims, "shop", &config("HELLO-LB"), &[]).expect_err("refused");
        assert_eq!(
            refusal,
            Refusal::LoadBalancerOwned {
                load_balancer: "HELLO-LB".into(),
                owner: "hello".into()
            }
        );
        assert!(refusal.to_string().contains("service hello"), "{refusal}");
    }

    #[test]
    fn a_load_balancer_named_by_a_config_saved_before_claims_existed_is_its_services() {
        let legacy = [("hello".to_string(), "classic/hello-lb".to_string())];
        let refusal =
            claim(&Claims::default(), "shop", &config("hello-lb"), &legacy).expect_err("refused");
        assert!(matches!(refusal, Refusal::LoadBalancerOwned { owner, .. } if owner == "hello"));
        // ... and hello itself claims it on its next save.
        let got = claim(&Claims::default(), "hello", &config("hello-lb"), &legacy);
        assert_eq!(got, Ok(Some(claimed("hello-lb", "hello"))));
        // Once hello has claimed something (it saved a config naming another balancer since),
        // its old config no longer speaks for it: the balancer is free.
        let claims = folded(&[claimed("hello-lb-2", "hello")]);
        assert_eq!(
            claim(&claims, "shop", &config("hello-lb"), &legacy),
            Ok(Some(claimed("hello-lb", "shop")))
        );
    }

    #[test]
    fn moving_away_releases_the_old_claim_and_frees_it_for_others() {
        let mut events = vec![claimed("hello-lb", "hello"), claimed("hello-lb-2", "hello")];
        let claims = folded(&events);
        let freed = releases(&claims, "hello", &config("hello-lb-2"));
        assert_eq!(freed, vec![released("hello-lb", "hello")]);
        events.extend(freed);
        let claims = folded(&events);
        assert_eq!(claims.owner("classic/hello-lb"), None);
        assert_eq!(
            claim(&claims, "shop", &config("hello-lb"), &[]),
            Ok(Some(claimed("hello-lb", "shop")))
        );
        // Nothing else to release while the config names what it owns.
        assert!(releases(&claims, "hello", &config("hello-lb-2")).is_empty());
    }

    #[test]
    fn a_release_by_a_service_that_does_not_own_the_balancer_changes_nothing() {
        let claims = folded(&[claimed("hello-lb", "hello"), released("hello-lb", "shop")]);
        assert_eq!(claims.owner("classic/hello-lb"), Some("hello"));
    }

    #[test]
    fn an_alb_listener_is_claimed_by_its_arn() {
        let mut c = config("x");
        c.endpoint.load_balancer.kind = LoadBalancerKind::Alb;
        c.endpoint.load_balancer.name =
            "arn:aws:elasticloadbalancing:eu-west-1:123:listener/app/web/1/2".into();
        let got = claim(&Claims::default(), "hello", &c, &[]).expect("accepted");
        assert!(
            matches!(got, Some(ServiceEvent::LoadBalancerClaimed { load_balancer, .. })
            if load_balancer == "alb/arn:aws:elasticloadbalancing:eu-west-1:123:listener/app/web/1/2")
        );
    }
}
