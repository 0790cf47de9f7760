//! `observe`: what changed between the state and what the cloud shows now. Pure.
//!
//! Only changes become events, so a quiet service adds nothing to the log however often it
//! is observed.

pub use ionroller_shared::cloud::CloudView;
use ionroller_shared::events::{EnvironmentStatus, RegisteredInstance, ServiceEvent};

use super::state::ServiceState;

pub fn observe(state: &ServiceState, view: &CloudView) -> Vec<ServiceEvent> {
    let mut events = Vec::new();
    if state.observation_error.is_some() {
        events.push(ServiceEvent::ObservationRecovered {});
    }
    for env in &view.environments {
        let known = state.environments.get(&env.name);
        // The cloud lists terminated environments for a while; ones the state has already
        // forgotten are history, not news.
        if known.is_none() && env.status == EnvironmentStatus::Terminated {
            continue;
        }
        if known.and_then(|k| k.observed.as_ref()) != Some(env) {
            events.push(ServiceEvent::EnvironmentObserved {
                environment: env.clone(),
            });
        }
        if env.status == EnvironmentStatus::Terminated && known.is_some_and(|k| !k.terminated) {
            events.push(ServiceEvent::EnvironmentTerminated {
                environment: env.name.clone(),
            });
        }
    }
    // Environments the cloud no longer lists at all are gone.
    for env in state.environments.values() {
        let listed = view.environments.iter().any(|v| v.name == env.name);
        if let (false, false, Some(observed)) = (listed, env.terminated, &env.observed) {
            let mut gone = observed.clone();
            gone.status = EnvironmentStatus::Terminated;
            gone.instances.clear();
            events.push(ServiceEvent::EnvironmentObserved { environment: gone });
            events.push(ServiceEvent::EnvironmentTerminated {
                environment: env.name.clone(),
            });
        }
    }
    let mut registrations = view.registrations.clone();
    registrations.sort();
    let current: Vec<RegisteredInstance> = state
        .registrations
        .iter()
        .map(|(id, in_service)| RegisteredInstance {
            id: id.clone(),
            in_service: *in_service,
        })
        .collect();
    if registrations != current {
        events.push(ServiceEvent::RegistrationsObserved {
            load_balancer: view.load_balancer.clone(),
            instances: registrations,
        });
    }
    for alarm in &view.alarms {
        let changed = state
            .alarms
            .get(&alarm.name)
            .is_none_or(|known| known.state != alarm.state);
        if changed {
            events.push(ServiceEvent::AlarmObserved {
                alarm: alarm.clone(),
            });
        }
    }
    events
}

/// The events for an observation that failed: one when failing starts or the error changes,
/// none while the same failure repeats (a long outage does not flood the log).
pub fn observation_failed(state: &ServiceState, error: &str) -> Vec<ServiceEvent> {
    if state.observation_error.as_deref() == Some(error) {
        return Vec::new();
    }
    vec![ServiceEvent::ObservationFailed {
        error: error.to_string(),
    }]
}
