//! One scripted history (a canary release, an alarm rollback, an abort, a superseded release)
//! folded into every projection, checked to the second.

use ionroller_shared::config::{HumanDuration, Pause};
use ionroller_shared::events::{
    AlarmState, AlarmView, EnvironmentStatus, EnvironmentView, Health, InstanceView, Plan,
    PlanStep, RegisteredInstance, RollbackCause, ServiceEvent as E,
};
use uuid::Uuid;

use crate::audit::{verify, AuditChain, AuditFilter, AuditRow};
use crate::delivery::delivery_report;
use crate::releases::ReleaseHistory;
use crate::testing::{t, Script};
use crate::timeline::TrafficTimeline;

fn plan(env: &str, steps: &[(u8, Option<Pause>)]) -> Plan {
    Plan {
        environment: env.into(),
        reuses_warm_environment: false,
        test_endpoint: false,
        steps: steps
            .iter()
            .map(|(percent, pause)| PlanStep {
                label: "step".into(),
                percent: *percent,
                pause: *pause,
                instances: None,
            })
            .collect(),
        worst_case_secs: None,
        progress_deadline: HumanDuration(std::time::Duration::from_secs(120)),
    }
}

fn env(name: &str, version: &str) -> E {
    E::EnvironmentObserved {
        environment: EnvironmentView {
            name: name.into(),
            version: version.into(),
            config_version: 1,
            status: EnvironmentStatus::Ready,
            health: Health::Green,
            instances: (0..2)
                .map(|i| InstanceView {
                    id: format!("{name}-{i}"),
                    healthy: true,
                })
                .collect(),
            url: None,
        },
    }
}

fn registered(ids: &[&str]) -> E {
    E::RegistrationsObserved {
        load_balancer: "lb".into(),
        instances: ids
            .iter()
            .map(|i| RegisteredInstance {
                id: i.to_string(),
                in_service: true,
            })
            .collect(),
    }
}

fn release(id: u128, version: &str) -> E {
    E::ReleaseRequested {
        rollout_id: Uuid::from_u128(id),
        version: version.into(),
        reason: None,
        override_alarms: false,
    }
}

fn script() -> Script {
    let (a, b, c, d, e) = (1u128, 2u128, 3u128, 4u128, 5u128);
    let id = Uuid::from_u128;
    let three = Some(Pause::For(HumanDuration(std::time::Duration::from_secs(3))));
    let mut s = Script::default();
    s.at(
        0,
        "alice",
        E::ConfigSaved {
            config_version: 1,
            config: Box::new(
                ionroller_shared::config::parse_service_config(include_str!(
                    "../../examples/hello.json"
                ))
                .unwrap(),
            ),
        },
    );
    // A: v1 with a canary that waits 30 s for alice's promote.
    s.at(10, "alice", release(a, "v1"))
        .at(
            10,
            "alice",
            E::PlanComputed {
                rollout_id: id(a),
                plan: plan("a", &[(10, Some(Pause::UntilPromoted)), (100, None)]),
            },
        )
        .at(15, "roller", env("a", "v1"))
        .at(
            16,
            "roller",
            E::StepStarted {
                rollout_id: id(a),
                step: 0,
                percent: 10,
            },
        )
        .at(17, "roller", registered(&["a-0"]))
        .at(
            17,
            "roller",
            E::StepCompleted {
                rollout_id: id(a),
                step: 0,
            },
        )
        .at(
            47,
            "alice",
            E::PromoteRequested {
                full: false,
                reason: None,
            },
        )
        .at(
            47,
            "roller",
            E::StepStarted {
                rollout_id: id(a),
                step: 1,
                percent: 100,
            },
        )
        .at(60, "roller", registered(&["a-0", "a-1"]))
        .at(
            60,
            "roller",
            E::StepCompleted {
                rollout_id: id(a),
                step: 1,
            },
        )
        .at(61, "roller", E::RolloutCompleted { rollout_id: id(a) });
    // B: v2, rolled back by an alarm that went off at 110.
    let alarm = AlarmView {
        name: "hello-5xx".into(),
        state: AlarmState::Alarm,
        reason: "Threshold Crossed: 12 > 5".into(),
        value: Some(12.0),
        updated_at: t(110),
    };
    s.at(100, "bob", release(b, "v2"))
        .at(
            100,
            "bob",
            E::PlanComputed {
                rollout_id: id(b),
                plan: plan("b", &[(50, three), (100, None)]),
            },
        )
        .at(105, "roller", env("b", "v2"))
        .at(
            106,
            "roller",
            E::StepStarted {
                rollout_id: id(b),
                step: 0,
                percent: 50,
            },
        )
        .at(107, "roller", registered(&["a-0", "a-1", "b-0"]))
        .at(
            107,
            "roller",
            E::StepCompleted {
                rollout_id: id(b),
                step: 0,
            },
        )
        .at(
            110,
            "roller",
            E::AlarmObserved {
                alarm: alarm.clone(),
            },
        )
        .at(
            110,
            "roller",
            E::RollbackStarted {
                rollout_id: id(b),
                cause: RollbackCause::Alarm {
                    alarm: alarm.clone(),
                },
            },
        )
        .at(112, "roller", registered(&["a-0", "a-1"]))
        .at(
            112,
            "roller",
            E::RolledBack {
                rollout_id: id(b),
                cause: RollbackCause::Alarm { alarm },
            },
        );
    // C: v3, aborted by carol after pausing it for 20 s.
    let aborted = RollbackCause::Aborted {
        by: "carol".into(),
        reason: Some("wrong build".into()),
    };
    s.at(200, "carol", release(c, "v3"))
        .at(
            200,
            "carol",
            E::PlanComputed {
                rollout_id: id(c),
                plan: plan("c", &[(100, None)]),
            },
        )
        .at(201, "carol", E::PauseRequested { reason: None })
        .at(221, "carol", E::ResumeRequested { reason: None })
        .at(
            225,
            "carol",
            E::AbortRequested {
                reason: Some("wrong build".into()),
            },
        )
        .at(
            226,
            "roller",
            E::RolledBack {
                rollout_id: id(c),
                cause: aborted,
            },
        );
    // D superseded by E, which completes.
    s.at(300, "alice", release(d, "v4"))
        .at(
            300,
            "alice",
            E::PlanComputed {
                rollout_id: id(d),
                plan: plan("d", &[(100, None)]),
            },
        )
        .at(
            310,
            "alice",
            E::RolloutSuperseded {
                rollout_id: id(d),
                by: id(e),
            },
        )
        .at(310, "alice", release(e, "v5"))
        .at(
            310,
            "alice",
            E::PlanComputed {
                rollout_id: id(e),
                plan: plan("e", &[(100, None)]),
            },
        )
        .at(320, "roller", env("e", "v5"))
        .at(
            321,
            "roller",
            E::StepStarted {
                rollout_id: id(e),
                step: 0,
                percent: 100,
            },
        )
        .at(329, "roller", registered(&["e-0", "e-1"]))
        .at(
            329,
            "roller",
            E::StepCompleted {
                rollout_id: id(e),
                step: 0,
            },
        )
        .at(330, "roller", E::RolloutCompleted { rollout_id: id(e) });
    s
}

#[test]
fn release_history_matches_what_happened() {
    let s = script();
    let mut history = ReleaseHistory::default();
    for e in &s.events {
        history.apply(e).unwrap();
    }
    /// version, requested by, from version, outcome, duration, waiting for people.
    type Row<'a> = (String, String, Option<String>, &'a str, Option<f64>, f64);
    let rows: Vec<Row> = history
        .for_service("hello")
        .map(|r| {
            (
                r.to_version.clone(),
                r.requested_by.clone(),
                r.from_version.clone(),
                r.outcome.as_ref().map_or("open", |o| o.name()),
                r.duration_secs(),
                r.waiting_for_people_secs,
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                "v1".into(),
                "alice".into(),
                None,
                "completed",
                Some(51.0),
                30.0
            ),
            (
                "v2".into(),
                "bob".into(),
                Some("v1".into()),
                "rolled_back",
                Some(12.0),
                0.0
            ),
            (
                "v3".into(),
                "carol".into(),
                Some("v1".into()),
                "aborted",
                Some(26.0),
                20.0
            ),
            (
                "v4".into(),
                "alice".into(),
                Some("v1".into()),
                "superseded",
                Some(10.0),
                0.0
            ),
            (
                "v5".into(),
                "alice".into(),
                Some("v1".into()),
                "completed",
                Some(20.0),
                0.0
            ),
        ]
    );
    let v1 = &history.releases[0];
    let steps: Vec<(u8, i64, Option<i64>)> = v1
        .steps
        .iter()
        .map(|s| {
            (
                s.percent,
                (s.started_at - t(0)).num_seconds(),
                s.completed_at.map(|c| (c - t(0)).num_seconds()),
            )
        })
        .collect();
    assert_eq!(steps, vec![(10, 16, Some(17)), (100, 47, Some(60))]);
    match &history.releases[1].outcome {
        Some(crate::releases::ReleaseOutcome::RolledBack {
            cause: RollbackCause::Alarm { alarm },
        }) => {
            assert_eq!(
                (alarm.name.as_str(), alarm.value),
                ("hello-5xx", Some(12.0))
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn delivery_report_counts_deployments_failures_lead_time_and_restore() {
    let s = script();
    let mut history = ReleaseHistory::default();
    for e in &s.events {
        history.apply(e).unwrap();
    }
    let report = delivery_report(&history.releases, None, None, None);
    let o = &report.overall;
    assert_eq!((o.deployments, o.failures), (2, 2));
    assert_eq!(o.change_failure_rate, Some(0.5));
    assert_eq!(o.lead_time_mean_secs, Some((51.0 + 20.0) / 2.0));
    assert_eq!(o.lead_time_median_secs, Some(35.5));
    assert_eq!(
        o.time_to_restore_mean_secs,
        Some(2.0),
        "alarm at 110, traffic back at 112"
    );
    assert_eq!(report.per_day.len(), 1);
    assert_eq!(report.per_service["hello"].deployments, 2);
    let window = delivery_report(&history.releases, Some(t(100)), Some(t(300)), Some("hello"));
    assert_eq!(
        (window.overall.deployments, window.overall.failures),
        (0, 2)
    );
    let other = delivery_report(&history.releases, None, None, Some("other"));
    assert_eq!(other.overall.change_failure_rate, None);
}

#[test]
fn the_timeline_answers_what_ran_at_any_moment() {
    let s = script();
    let mut timeline = TrafficTimeline::default();
    for e in &s.events {
        timeline.apply(e).unwrap();
    }
    let at = |secs| {
        timeline.at("hello", t(secs)).map(|iv| {
            iv.shares
                .iter()
                .map(|s| (s.version.clone(), (s.share * 100.0).round() as u32))
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(at(5), None, "nothing served before the first registration");
    assert_eq!(at(30), Some(vec![("v1".into(), 100)]));
    assert_eq!(at(108), Some(vec![("v1".into(), 67), ("v2".into(), 33)]));
    assert_eq!(at(150), Some(vec![("v1".into(), 100)]));
    assert_eq!(at(1_000), Some(vec![("v5".into(), 100)]));
    assert!(timeline.at("nobody", t(30)).is_none());
}

#[test]
fn audit_rows_filter_and_the_chain_names_the_first_tampered_row() {
    let s = script();
    let mut chain = AuditChain::default();
    let rows: Vec<AuditRow> = s.events.iter().map(|e| chain.row(e)).collect();
    assert_eq!(rows.len(), s.events.len());
    assert!(rows.iter().enumerate().all(|(i, r)| r.seq == i as u64 + 1));
    let by = |f: AuditFilter| {
        rows.iter()
            .filter(|r| f.matches(r))
            .map(|r| r.summary.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        by(AuditFilter {
            actor: Some("bob".into()),
            ..Default::default()
        }),
        vec!["release of v2 requested", "plan: 2 step(s) into b"]
    );
    assert_eq!(
        by(AuditFilter {
            version: Some("v2".into()),
            ..Default::default()
        }),
        // Every row of v2's rollout, from its request to its rollback.
        vec![
            "release of v2 requested",
            "plan: 2 step(s) into b",
            "environment b is Ready/Green with 2 instance(s)",
            "step 1 started: 50%",
            "lb has 3 instance(s) registered, 3 in service",
            "step 1 completed",
            "alarm hello-5xx is Alarm: Threshold Crossed: 12 > 5",
            "rollback started: alarm hello-5xx is Alarm: Threshold Crossed: 12 > 5",
            "lb has 2 instance(s) registered, 2 in service",
            "rolled back: alarm hello-5xx is Alarm: Threshold Crossed: 12 > 5"
        ]
    );
    let window = AuditFilter {
        event_type: Some("rolled-back".into()),
        from: Some(t(200)),
        ..Default::default()
    };
    assert_eq!(
        by(window),
        vec!["rolled back: aborted by carol: wrong build"]
    );

    assert_eq!(verify(rows.iter().zip(&s.events)), Ok(rows.len() as u64));
    let mut tampered = rows.clone();
    tampered[7].actor = "mallory".into();
    assert_eq!(verify(tampered.iter().zip(&s.events)), Err(8));
    let mut rehashed = rows.clone();
    rehashed[3].data = serde_json::json!({ "forged": true });
    assert_eq!(verify(rehashed.iter().zip(&s.events)), Err(4));
}

#[test]
fn waiting_for_people_counts_each_wait_once_and_ends_at_an_abort() {
    let id = Uuid::from_u128(9);
    let mut s = Script::default();
    s.at(0, "alice", release(9, "v1"))
        .at(
            0,
            "alice",
            E::PlanComputed {
                rollout_id: id,
                plan: plan("a", &[(10, Some(Pause::UntilPromoted)), (100, None)]),
            },
        )
        .at(
            5,
            "roller",
            E::StepStarted {
                rollout_id: id,
                step: 0,
                percent: 10,
            },
        )
        .at(
            10,
            "roller",
            E::StepCompleted {
                rollout_id: id,
                step: 0,
            },
        )
        // Paused while already waiting for a promote: still one wait.
        .at(20, "alice", E::PauseRequested { reason: None })
        .at(40, "alice", E::AbortRequested { reason: None })
        .at(
            100,
            "roller",
            E::RolledBack {
                rollout_id: id,
                cause: RollbackCause::Aborted {
                    by: "alice".into(),
                    reason: None,
                },
            },
        );
    let mut history = ReleaseHistory::default();
    for e in &s.events {
        history.apply(e).unwrap();
    }
    assert_eq!(
        history.releases[0].waiting_for_people_secs, 30.0,
        "from 10 to the abort at 40"
    );
}

#[test]
fn every_row_of_a_rollout_carries_its_version_also_after_a_resume_and_old_rows_still_verify() {
    let s = script();
    let mut chain = AuditChain::default();
    let rows: Vec<AuditRow> = s.events.iter().map(|e| chain.row(e)).collect();
    // Rollout A (v1): from its request to its completion, every row names v1, the roller's
    // steps and alice's promote included.
    let of_a: Vec<(&str, Option<&str>)> = rows[1..12]
        .iter()
        .map(|r| (r.summary.as_str(), r.version.as_deref()))
        .collect();
    assert!(of_a.iter().all(|(_, v)| *v == Some("v1")), "{of_a:#?}");
    assert!(of_a.iter().any(|(s, _)| *s == "promote requested"));
    assert_eq!(of_a.last().map(|(s, _)| *s), Some("rollout completed"));
    // The config saved before any rollout names none.
    assert_eq!(rows[0].version, None);

    // A chain resumed in the middle of rollout A, told it is open, fills the rest alike.
    let mut resumed =
        AuditChain::resume(rows[4].seq, crate::chain::from_hex(&rows[4].hash).unwrap())
            .with_rollout("hello", Uuid::from_u128(1), "v1");
    let again: Vec<AuditRow> = s.events[5..].iter().map(|e| resumed.row(e)).collect();
    assert_eq!(again, rows[5..].to_vec());

    // Rows projected before versions were filled (only the version an event names) verify;
    // any other version does not.
    let legacy: Vec<AuditRow> = rows
        .iter()
        .zip(&s.events)
        .map(|(r, e)| AuditRow {
            version: if crate::audit::version_matches(r, e, None) {
                None
            } else {
                r.version.clone()
            },
            ..r.clone()
        })
        .collect();
    assert!(legacy.iter().filter(|r| r.version.is_none()).count() > 5);
    assert_eq!(verify(legacy.iter().zip(&s.events)), Ok(rows.len() as u64));
    let mut forged = rows.clone();
    forged[3].version = Some("v9".into());
    assert_eq!(verify(forged.iter().zip(&s.events)), Err(4));
}
