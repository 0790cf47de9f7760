//! Property test: random interleavings of commands, cloud events and time, run through the real
//! shell, API, SQLite log and simulated cloud, never break the roller's safety rules:
//! - no instance is registered unless it was healthy, in a Ready environment that was Green or
//!   Yellow, when decided;
//! - no deregistration takes in-service capacity below the minimum (or below what was there)
//!   while a previous version exists to serve;
//! - no release ever creates two environments, and the cloud never creates an environment
//!   without a recorded intent;
//! - with a second service beside it (its own load balancer, its own releases), neither ever
//!   registers or deregisters the other's instances, and a third that copies hello's config
//!   (and so its load balancer) is refused and never saved.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use ionroller_core::state::{apply_recorded, Stage};
use ionroller_core::ServiceState;
use ionroller_shared::events::{service_stream, Action, AlarmState, ServiceEvent};
use ionroller_shared::store::{Revision, StreamRead};
use proptest::prelude::*;
use support::*;

#[derive(Clone, Debug)]
enum Op {
    Tick(i64),
    Release(u8),
    Rollback,
    Promote,
    Pause,
    Resume,
    Abort,
    Alarm(bool),
    FailVersion(u8),
    DeregisterOutside(u8),
    TerminateOutside(u8),
    ReleaseShop(u8),
    CopyHellosConfig,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1i64..5).prop_map(Op::Tick),
        3 => (1u8..4).prop_map(Op::Release),
        1 => Just(Op::Rollback),
        3 => Just(Op::Promote),
        1 => Just(Op::Pause),
        1 => Just(Op::Resume),
        1 => Just(Op::Abort),
        1 => any::<bool>().prop_map(Op::Alarm),
        1 => (1u8..4).prop_map(Op::FailVersion),
        1 => (0u8..4).prop_map(Op::DeregisterOutside),
        1 => (0u8..4).prop_map(Op::TerminateOutside),
        2 => (1u8..4).prop_map(Op::ReleaseShop),
        1 => Just(Op::CopyHellosConfig),
    ]
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Runtime::new().expect("runtime"))
}

async fn run(ops: Vec<Op>, ramp: bool) -> Result<(), TestCaseError> {
    let mut w = World::create();
    let mode = if ramp { "\"ramp\"" } else { "\"immediate\"" };
    w.save_config(&HELLO.replace("\"immediate\"", mode)).await;
    // A second service sharing nothing: its own load balancer (shop-lb) and alarm.
    let (status, body) = w
        .call(
            "PUT",
            "/v1/services/shop/config",
            &HELLO.replace("hello", "shop"),
        )
        .await;
    prop_assert_eq!(status.as_u16(), 200, "{}", body);
    for op in ops {
        match op {
            Op::Tick(s) => w.tick(s).await,
            Op::Release(v) => {
                w.call(
                    "POST",
                    "/v1/services/hello/releases",
                    &format!(r#"{{"version":"v{v}"}}"#),
                )
                .await;
            }
            Op::Rollback => {
                w.call("POST", "/v1/services/hello/rollback", "").await;
            }
            Op::Promote => {
                w.call("POST", "/v1/services/hello/promote", "").await;
            }
            Op::Pause => {
                w.call("POST", "/v1/services/hello/pause", "").await;
            }
            Op::Resume => {
                w.call("POST", "/v1/services/hello/resume", "").await;
            }
            Op::Abort => {
                w.call("POST", "/v1/services/hello/abort", "").await;
            }
            Op::Alarm(on) => {
                let state = if on {
                    AlarmState::Alarm
                } else {
                    AlarmState::Ok
                };
                w.sim
                    .set_alarm("hello-5xx", state, None, None)
                    .expect("set alarm");
            }
            Op::FailVersion(v) => w.sim.fail_version("hello", &format!("v{v}")).expect("fail"),
            Op::DeregisterOutside(k) => {
                let envs = w.sim.live_environments("hello");
                if let Some(env) = envs.get(k as usize % envs.len().max(1)) {
                    w.sim
                        .deregister_outside(&format!("i-{env}-0"))
                        .expect("deregister");
                }
            }
            Op::TerminateOutside(k) => {
                let envs = w.sim.live_environments("hello");
                if let Some(env) = envs.get(k as usize % envs.len().max(1)) {
                    w.sim.terminate_outside(env).expect("terminate");
                }
            }
            Op::ReleaseShop(v) => {
                w.call(
                    "POST",
                    "/v1/services/shop/releases",
                    &format!(r#"{{"version":"v{v}"}}"#),
                )
                .await;
                w.call("POST", "/v1/services/shop/promote", "").await;
            }
            Op::CopyHellosConfig => {
                let (status, body) = w.call("PUT", "/v1/services/copy/config", HELLO).await;
                prop_assert_eq!(status.as_u16(), 409, "{}", body);
            }
        }
    }
    for _ in 0..5 {
        w.tick(3).await;
    }
    let (status, _) = w.call("GET", "/v1/services/copy", "").await;
    prop_assert_eq!(status.as_u16(), 404, "the copy was never saved");
    let create_intents = check_log(&w, "hello").await? + check_log(&w, "shop").await?;
    prop_assert!(
        w.sim.creations() <= create_intents,
        "the cloud created {} environments for {} recorded intents",
        w.sim.creations(),
        create_intents
    );
    Ok(())
}

/// Replays `service`'s log and checks every decided action against the state it was decided
/// in; returns how many environment creations it intended.
async fn check_log(w: &World, service: &str) -> Result<u64, TestCaseError> {
    let stream = service_stream(service).expect("stream");
    // The simulator names instances after their environment, and environments after their
    // service: `i-hello-v2-1a2b3c-0`.
    let own = format!("i-{service}-");
    let events = w
        .store
        .read_stream(&stream, StreamRead::forward(usize::MAX).from(Revision(0)))
        .await
        .expect("read log");
    let mut state = ServiceState::new(service);
    let mut created: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut create_intents = 0u64;
    for recorded in &events {
        let event = ServiceEvent::from_recorded(recorded)
            .expect("decodes")
            .expect("known type");
        if let ServiceEvent::ActionIntended {
            action, attempt, ..
        } = &event
        {
            let min = state
                .latest_config()
                .map_or(1, |c| c.config.instances.min as usize);
            if let Action::RegisterInstances { instances, .. }
            | Action::DeregisterInstances { instances, .. } = action
            {
                prop_assert!(
                    instances.iter().all(|i| i.starts_with(&own)),
                    "{} touched another service's instances {:?} at revision {}",
                    service,
                    instances,
                    recorded.revision
                );
            }
            match action {
                Action::RegisterInstances { instances, .. } => {
                    for i in instances {
                        let healthy = state
                            .environments
                            .values()
                            .any(|e| e.healthy_instances().contains(i));
                        prop_assert!(
                            healthy,
                            "registered {} from an unhealthy environment at revision {}",
                            i,
                            recorded.revision
                        );
                    }
                }
                Action::DeregisterInstances { instances, .. } => {
                    let before = state.registrations.values().filter(|s| **s).count();
                    let removed = instances
                        .iter()
                        .filter(|i| state.registrations.get(*i) == Some(&true))
                        .count();
                    let nothing_to_fall_back_to = state.rollout.as_ref().is_some_and(|r| {
                        matches!(r.stage, Stage::Reverting { .. })
                            && r.from
                                .as_ref()
                                .and_then(|f| state.environments.get(f))
                                .is_none_or(|f| f.terminated)
                    });
                    if !nothing_to_fall_back_to {
                        prop_assert!(
                            before - removed >= min.min(before),
                            "deregistering {:?} at revision {} drops in-service capacity from {} to {} (min {})",
                            instances, recorded.revision, before, before - removed, min
                        );
                    }
                }
                Action::CreateEnvironment { environment, .. } => {
                    let rollout = state
                        .rollout
                        .as_ref()
                        .map(|r| r.id.to_string())
                        .unwrap_or_default();
                    created
                        .entry(rollout)
                        .or_default()
                        .insert(environment.clone());
                    create_intents += 1;
                    let _ = attempt;
                }
                Action::TerminateEnvironment { .. } => {}
            }
        }
        apply_recorded(&mut state, recorded).map_err(TestCaseError::fail)?;
    }
    for (rollout, envs) in &created {
        prop_assert!(envs.len() <= 1, "rollout {} created {:?}", rollout, envs);
    }
    Ok(create_intents)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn random_interleavings_keep_the_safety_rules(
        ops in proptest::collection::vec(op(), 1..60),
        ramp in any::<bool>(),
    ) {
        runtime().block_on(run(ops, ramp))?;
    }
}
