//! Trail figures over a 1,000,000-event log: catch-up rate from an empty checkpoint, audit
//! query latency with filters, and `at` query latency through the HTTP handler.
//!
//! `cargo bench -p ionroller-trail --bench trail -- [--write BENCHMARKS.md]`

#[path = "../../stores/tests/benches/report.rs"]
mod report;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use chrono::Utc;
use ionroller_projections::audit::AuditFilter;
use ionroller_shared::events::{
    AlarmState, AlarmView, EnvironmentStatus, EnvironmentView, Health, InstanceView,
    RegisteredInstance, ServiceEvent,
};
use ionroller_shared::store::{EventId, EventMetadata, EventStore, ExpectedRevision, StreamId};
use ionroller_store_sqlite::{SqliteOptions, SqliteStore};
use ionroller_trail::db::TrailDb;
use ionroller_trail::runner::Trail;
use tower::ServiceExt;
use uuid::Uuid;

const SERVICES: usize = 1_000;
const BATCH: usize = 100;

fn sample(i: usize, service: &str) -> ServiceEvent {
    let env = format!("{service}-v{}", i / 20);
    match i % 5 {
        0 => ServiceEvent::EnvironmentObserved {
            environment: EnvironmentView {
                name: env.clone(),
                version: format!("v{}", i / 20),
                config_version: 1,
                status: EnvironmentStatus::Ready,
                health: Health::Green,
                instances: (0..2)
                    .map(|k| InstanceView {
                        id: format!("i-{env}-{k}"),
                        healthy: true,
                    })
                    .collect(),
                url: None,
            },
        },
        1 => ServiceEvent::RegistrationsObserved {
            load_balancer: "lb".into(),
            instances: (0..2)
                .map(|k| RegisteredInstance {
                    id: format!("i-{env}-{k}"),
                    in_service: true,
                })
                .collect(),
        },
        2 => ServiceEvent::StepStarted {
            rollout_id: Uuid::from_u128(i as u128),
            step: 1,
            percent: 50,
        },
        3 => ServiceEvent::StepCompleted {
            rollout_id: Uuid::from_u128(i as u128),
            step: 1,
        },
        _ => ServiceEvent::AlarmObserved {
            alarm: AlarmView {
                name: format!("{service}-5xx"),
                state: AlarmState::Ok,
                reason: "Threshold not crossed".into(),
                value: Some(0.5),
                updated_at: Utc::now(),
            },
        },
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let write = report::write_target();
    // 1,000,000 by default; fewer for a quick profile.
    let events: usize = std::env::var("TRAIL_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("trail-bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let store = Arc::new(SqliteStore::open(
        dir.join("events.sqlite"),
        SqliteOptions::default(),
    )?);
    let started = Instant::now();
    let actors = ["alice", "bob", "roller", "carol"];
    for b in 0..events / BATCH {
        let service = format!("svc-{}", b % SERVICES);
        let stream = StreamId::new(format!("service:{service}"))?;
        let batch = (0..BATCH)
            .map(|i| {
                sample(b * BATCH + i, &service).to_new_event(
                    EventId::random(),
                    EventMetadata {
                        actor: actors[(b + i) % actors.len()].into(),
                        correlation_id: Uuid::nil(),
                        causation_id: None,
                        occurred_at: Utc::now(),
                    },
                )
            })
            .collect();
        store.append(&stream, ExpectedRevision::Any, batch).await?;
    }
    eprintln!(
        "wrote {events} events in {:.0}s",
        started.elapsed().as_secs_f64()
    );

    // Catch-up from an empty checkpoint.
    let trail = Trail::new(store.clone(), TrailDb::open(dir.join("trail.sqlite"))?);
    let started = Instant::now();
    let runner = tokio::spawn(trail.clone().run(std::future::pending()));
    while trail.status.lock().map(|s| s.rows).unwrap_or(0) < events as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let catch_up = started.elapsed().as_secs_f64();
    let rate = events as f64 / catch_up;
    eprintln!("catch-up: {rate:.0} events/s");

    // Audit queries with filters, 100 rows a page.
    let mut latencies = Vec::new();
    for q in 0..400usize {
        let filter = match q % 4 {
            0 => AuditFilter {
                service: Some(format!("svc-{}", q % SERVICES)),
                ..Default::default()
            },
            1 => AuditFilter {
                actor: Some(actors[q % 4].into()),
                ..Default::default()
            },
            2 => AuditFilter {
                event_type: Some("step-started".into()),
                service: Some(format!("svc-{}", q % SERVICES)),
                ..Default::default()
            },
            _ => AuditFilter {
                version: Some(format!("v{}", q * 7 % 1000)),
                ..Default::default()
            },
        };
        let t = Instant::now();
        let rows = trail.db.query(&filter, None, true, 100).await?;
        latencies.push(t.elapsed());
        assert!(!rows.is_empty() || q % 4 == 3);
    }
    latencies.sort();
    let (audit_p50, audit_p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));

    // `at` through the HTTP handler.
    // Through the guard, with a token, as every real request is.
    let auth = ionroller_auth::Authenticator::new(store.clone());
    let mut token = String::new();
    auth.bootstrap_admin(Utc::now(), |secret| {
        token = format!("Bearer {secret}");
        Ok::<(), std::convert::Infallible>(())
    })
    .await?;
    let router = ionroller_trail::api::app(trail.clone(), std::sync::Arc::new(auth), false);
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut latencies = Vec::new();
    for q in 0..1000usize {
        let request = Request::builder()
            .uri(format!("/v1/services/svc-{}/at?time={now}", q % SERVICES))
            .header("authorization", &token)
            .body(Body::empty())?;
        let t = Instant::now();
        let response = router.clone().oneshot(request).await?;
        latencies.push(t.elapsed());
        assert!(response.status().is_success());
    }
    latencies.sort();
    let (at_p50, at_p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    runner.abort();

    let section = format!(
        "Measured {} on {}; `cargo bench -p ionroller-trail --bench trail`. The log: {events} events \
         in {SERVICES} service streams (observations, steps, alarms).\n\n\
         | figure | measured | target |\n|---|---|---|\n\
         | catch-up from an empty checkpoint (audit rows + chain + folds, committed in batches) | {rate:.0} events/s ({catch_up:.1} s) | ≥ 100,000 events/s |\n\
         | audit query with filters, 100 rows (service / actor / type+service / version) | p50 {audit_p50:.2} ms, p99 {audit_p99:.2} ms | p99 < 20 ms |\n\
         | `at` query through the HTTP handler | p50 {at_p50:.3} ms, p99 {at_p99:.3} ms | p99 < 5 ms |\n",
        Utc::now().format("%Y-%m-%d"),
        report::machine(),
    );
    println!("{section}");
    if let Some(path) = write {
        report::replace_section(&path, "trail-bench", &section)?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
