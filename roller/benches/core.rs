//! Roller core figures: fold rate over a long stream, one decision pass over 10,000 services,
//! and the memory those services' folded states take.
//!
//! `cargo bench -p ionroller-roller --bench core -- [--write BENCHMARKS.md]`

#[path = "../../stores/tests/benches/report.rs"]
mod report;

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use ionroller_core::plan::{compute_plan, environment_name};
use ionroller_core::state::{apply_recorded, RolloutKind};
use ionroller_core::{decide, observe, CloudView, ServiceState};
use ionroller_shared::config::parse_service_config;
use ionroller_shared::events::{
    Action, EnvironmentStatus, EnvironmentView, Health, InstanceView, RegisteredInstance,
    ServiceEvent,
};
use ionroller_shared::store::{
    EventId, EventMetadata, Position, RecordedEvent, Revision, StreamId,
};
use uuid::Uuid;

const CONFIG: &str = include_str!("../../examples/hello.json");

fn t0() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("valid")
}

/// One completed rollout's worth of events (about 20), as a release produces them.
fn rollout_events(service: &str, n: usize) -> Vec<ServiceEvent> {
    let config = parse_service_config(CONFIG).expect("example config");
    let id = Uuid::from_u128(n as u128 + 1);
    let version = format!("v{n}");
    let env = environment_name(service, &version, id);
    let plan = compute_plan(&config, &RolloutKind::Release, env.clone(), false);
    let view = |status, health: Health| EnvironmentView {
        name: env.clone(),
        version: version.clone(),
        config_version: 1,
        status,
        health,
        instances: (0..2)
            .map(|i| InstanceView {
                id: format!("i-{env}-{i}"),
                healthy: health == Health::Green,
            })
            .collect(),
        url: None,
    };
    let registered = |ids: &[String]| ServiceEvent::RegistrationsObserved {
        load_balancer: "hello-lb".into(),
        instances: ids
            .iter()
            .map(|i| RegisteredInstance {
                id: i.clone(),
                in_service: true,
            })
            .collect(),
    };
    let action = |k: u128, action: Action| {
        [
            ServiceEvent::ActionIntended {
                action_id: Uuid::from_u128(k),
                attempt: 1,
                action,
                lease: None,
            },
            ServiceEvent::ActionSucceeded {
                action_id: Uuid::from_u128(k),
                attempt: 1,
                detail: "ok".into(),
            },
        ]
    };
    let new_ids: Vec<String> = (0..2).map(|i| format!("i-{env}-{i}")).collect();
    let mut events = vec![
        ServiceEvent::ReleaseRequested {
            rollout_id: id,
            version: version.clone(),
            reason: None,
            override_alarms: false,
        },
        ServiceEvent::PlanComputed {
            rollout_id: id,
            plan,
        },
    ];
    events.extend(action(
        n as u128 * 10,
        Action::CreateEnvironment {
            environment: env.clone(),
            version: version.clone(),
            config_version: 1,
            config: Box::new(config.clone()),
        },
    ));
    events.push(ServiceEvent::EnvironmentObserved {
        environment: view(EnvironmentStatus::Launching, Health::Grey),
    });
    events.push(ServiceEvent::EnvironmentObserved {
        environment: view(EnvironmentStatus::Ready, Health::Green),
    });
    for step in 0..4 {
        events.push(ServiceEvent::StepStarted {
            rollout_id: id,
            step,
            percent: [10, 25, 50, 100][step],
        });
        if step == 0 || step == 3 {
            events.extend(action(
                n as u128 * 10 + step as u128 + 1,
                Action::RegisterInstances {
                    load_balancer: "hello-lb".into(),
                    instances: new_ids[..step.min(1) + 1].to_vec(),
                },
            ));
            events.push(registered(&new_ids[..step.min(1) + 1]));
        }
        events.push(ServiceEvent::StepCompleted {
            rollout_id: id,
            step,
        });
    }
    events.push(ServiceEvent::RolloutCompleted { rollout_id: id });
    events
}

fn record(stream: &StreamId, events: Vec<ServiceEvent>, first: u64) -> Vec<RecordedEvent> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let revision = first + i as u64;
            let at = t0() + Duration::seconds(revision as i64);
            let new = e.to_new_event(
                EventId(Uuid::from_u128(revision as u128)),
                EventMetadata {
                    actor: "roller".into(),
                    correlation_id: Uuid::nil(),
                    causation_id: None,
                    occurred_at: at,
                },
            );
            RecordedEvent {
                stream: stream.clone(),
                revision: Revision(revision),
                position: Position::new(revision + 1, 0),
                recorded_at: at,
                id: new.id,
                event_type: new.event_type,
                schema_version: new.schema_version,
                data: new.data,
                metadata: new.metadata,
            }
        })
        .collect()
}

fn config_saved(stream: &StreamId) -> Vec<RecordedEvent> {
    let config = parse_service_config(CONFIG).expect("example config");
    record(
        stream,
        vec![ServiceEvent::ConfigSaved {
            config_version: 1,
            config: Box::new(config),
        }],
        0,
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let write = report::write_target();

    // 1. 10,000 services, each serving a version with the next release mid-shift.
    let before = report::rss_kib();
    let mut states = Vec::with_capacity(10_000);
    for s in 0..10_000 {
        let name = format!("svc-{s}");
        let stream = StreamId::new(format!("service:{name}"))?;
        let mut events = config_saved(&stream);
        let next = events.len() as u64;
        events.extend(record(&stream, rollout_events(&name, 0), next));
        let mut half = rollout_events(&name, 1);
        half.truncate(10);
        let next = events.len() as u64;
        events.extend(record(&stream, half, next));
        let mut state = ServiceState::new(&name);
        for e in &events {
            apply_recorded(&mut state, e)?;
        }
        states.push(state);
    }
    let rss_mib = (report::rss_kib() - before).max(0.0) / 1024.0;
    let now = t0() + Duration::seconds(100);
    let views: Vec<CloudView> = states
        .iter()
        .map(|s| CloudView {
            environments: s
                .environments
                .values()
                .filter_map(|e| e.observed.clone())
                .collect(),
            load_balancer: "hello-lb".into(),
            registrations: s
                .registrations
                .iter()
                .map(|(id, in_service)| RegisteredInstance {
                    id: id.clone(),
                    in_service: *in_service,
                })
                .collect(),
            alarms: s.alarms.values().cloned().collect(),
        })
        .collect();
    let start = Instant::now();
    let mut decided = 0;
    for (state, view) in states.iter().zip(&views) {
        decided += observe(state, view).len();
        decided += decide(state, now).len();
    }
    let pass_ms = start.elapsed().as_secs_f64() * 1000.0;
    eprintln!("decision pass: 10,000 services in {pass_ms:.1} ms ({decided} events decided); states take {rss_mib:.0} MiB");

    // 2. Fold rate: one long-lived service, 1M events of completed rollouts.
    let stream = StreamId::new("service:hello")?;
    let mut log = config_saved(&stream);
    let mut n = 0;
    while log.len() < 1_000_000 {
        let next = log.len() as u64;
        log.extend(record(&stream, rollout_events("hello", n), next));
        n += 1;
    }
    let start = Instant::now();
    let mut state = ServiceState::new("hello");
    for e in &log {
        apply_recorded(&mut state, e)?;
    }
    let fold_secs = start.elapsed().as_secs_f64();
    let fold_rate = log.len() as f64 / fold_secs;
    eprintln!(
        "fold: {} events in {fold_secs:.2}s = {fold_rate:.0}/s ({n} rollouts)",
        log.len()
    );
    // A restart with snapshots: decode the latest snapshot, fold what came after it (at most
    // SNAPSHOT_EVERY events).
    let snapshot = serde_json::to_value(&state)?;
    let tail = ionroller_roller::snapshot::SNAPSHOT_EVERY as usize;
    let start = Instant::now();
    let mut restored: ServiceState = serde_json::from_value(snapshot)?;
    restored.revision = Some(log[log.len() - tail - 1].revision);
    for e in &log[log.len() - tail..] {
        apply_recorded(&mut restored, e)?;
    }
    let restart_ms = start.elapsed().as_secs_f64() * 1000.0;
    eprintln!("restart from a snapshot: {restart_ms:.1} ms");
    drop(log);

    let section = format!(
        "Measured {} on {}; `cargo bench -p ionroller-roller --bench core`.\n\n\
         | figure | measured | target |\n|---|---|---|\n\
         | fold rate, one service's 1,000,000-event stream ({n} rollouts), decode + evolve | {fold_rate:.0} events/s ({fold_secs:.2} s) | ≥ 2,000,000 events/s |\n\
         | rebuild of that stream from its latest snapshot (decode + fold the last {tail} events) | {restart_ms:.1} ms | < 1 s |\n\
         | one decision pass (observe + decide) over 10,000 services, pure core | {pass_ms:.1} ms | < 100 ms |\n\
         | memory of 10,000 folded service states (RSS growth) | {rss_mib:.0} MiB | < 1 GB |\n",
        Utc::now().format("%Y-%m-%d"),
        report::machine(),
    );
    println!("{section}");
    if let Some(path) = write {
        report::replace_section(&path, "roller-bench", &section)?;
    }
    Ok(())
}
