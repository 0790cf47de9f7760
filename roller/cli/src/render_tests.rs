//! What `render` makes of the API's answers, line by line.

use super::*;
use serde_json::json;

/// hello during v2's 25% step: one new instance beside two old ones, an old warm environment
/// that serves nothing, and one this log did not create.
fn rolling() -> ServiceStatus {
    serde_json::from_value(json!({
        "service": "hello",
        "config_version": 3,
        "stable_version": "v1",
        "environments": [
            { "name": "hello-v1-a", "version": "v1", "config_version": 3, "status": "ready",
              "health": "Green", "instances": 2, "healthy_instances": 2, "url": null,
              "unused_since": null, "terminated": false },
            { "name": "hello-v2-b", "version": "v2", "config_version": 3, "status": "ready",
              "health": "Green", "instances": 2, "healthy_instances": 1, "url": null,
              "unused_since": null, "terminated": false },
            { "name": "hello-v0", "version": "v0", "config_version": 1, "status": null,
              "health": null, "instances": 0, "healthy_instances": 0, "url": null,
              "unused_since": "2026-11-25T09:08:07Z", "terminated": false },
            { "name": "legacy", "version": "old", "config_version": 1, "status": "ready",
              "health": "Red", "instances": 1, "healthy_instances": 0, "url": null,
              "unused_since": null, "terminated": false, "foreign": true },
            { "name": "hello-gone", "version": "v-1", "config_version": 1,
              "status": "terminated", "health": null, "instances": 0, "healthy_instances": 0,
              "url": null, "unused_since": null, "terminated": true }
        ],
        "traffic": [
            { "environment": "hello-v1-a", "version": "v1", "share": 0.6666666 },
            { "environment": "hello-v2-b", "version": "v2", "share": 0.3333333 }
        ],
        "rollout": {
            "id": "6f1c2b3a-0000-4000-8000-000000000001", "kind": "release", "version": "v2",
            "from_version": "v1", "requested_by": "ana@example.com",
            "requested_at": "2026-11-25T12:00:00Z", "stage": "step_done", "step": 2,
            "step_count": 4, "step_percent": 25, "paused": false, "waiting_for": "pause (3s)",
            "plan": { "environment": "hello-v2-b", "reuses_warm_environment": false,
                      "test_endpoint": false, "steps": [], "worst_case_secs": null,
                      "progress_deadline": "10m" }
        },
        "alarms": [
            { "name": "hello-5xx", "state": "OK", "reason": "fine", "value": null,
              "updated_at": "2026-11-25T12:00:00Z" }
        ],
        "history": [
            { "id": "6f1c2b3a-0000-4000-8000-000000000000", "version": "v1",
              "from_version": null, "requested_by": "ana@example.com",
              "started_at": "2026-11-25T11:00:00Z", "ended_at": "2026-11-25T11:01:00Z",
              "outcome": "completed", "detail": null }
        ]
    }))
    .expect("a status the API could answer")
}

#[test]
fn bars_round_to_whole_cells_and_stay_in_width() {
    assert_eq!(bar(0.0, 4), "░░░░");
    assert_eq!(bar(0.33, 4), "█░░░");
    assert_eq!(bar(1.0, 4), "████");
    assert_eq!(bar(1.7, 4), "████");
    assert_eq!(bar(-0.5, 4), "░░░░");
}

#[test]
fn the_progress_line_shows_step_bar_environment_and_wait() {
    let bar = format!("{}{}", "█".repeat(7), "░".repeat(13));
    assert_eq!(
        progress_line(&rolling()),
        format!("step 2/4 (25%)     {bar}  33% v2 | hello-v2-b Green 1/2 · waiting for pause (3s)")
    );
}

#[test]
fn without_a_rollout_the_progress_line_says_the_request_is_pending() {
    let mut s = rolling();
    s.rollout = None;
    assert_eq!(
        progress_line(&s),
        "waiting for the roller to pick up the request"
    );
}

#[test]
fn before_a_step_the_progress_line_names_the_stage() {
    let mut s = rolling();
    if let Some(r) = s.rollout.as_mut() {
        r.step = None;
        r.stage = "launching_environment".into();
        r.plan = None;
    }
    let line = progress_line(&s);
    assert!(line.starts_with("launching environment "), "{line}");
    assert!(line.contains("| environment pending ·"), "{line}");
}

#[test]
fn status_renders_every_section() {
    let full = |share: usize| format!("{}{}", "█".repeat(share), "░".repeat(20 - share));
    let expected = [
        "hello  config v3  stable v1".to_string(),
        "traffic:".into(),
        format!("  {}  67% v1 (hello-v1-a)", full(13)),
        format!("  {}  33% v2 (hello-v2-b)", full(7)),
        "environments:".into(),
        format!(
            "  {:<32} {:<10} Ready/Green 2/2 healthy",
            "hello-v1-a", "v1"
        ),
        format!(
            "  {:<32} {:<10} Ready/Green 1/2 healthy",
            "hello-v2-b", "v2"
        ),
        format!(
            "  {:<32} {:<10} unseen/- 0/0 healthy, unused since 09:08:07",
            "hello-v0", "v0"
        ),
        format!(
            "  {:<32} {:<10} Ready/Red 0/1 healthy, not created by this log: left alone",
            "legacy", "old"
        ),
        format!(
            "rollout 6f1c2b3a-0000-4000-8000-000000000001 of v2: {} · waiting for pause (3s)",
            progress_line(&rolling())
        ),
        "alarm hello-5xx: Ok (fine)".into(),
        "last rollout: v1 completed ".into(),
    ];
    assert_eq!(status(&rolling()), expected.join("\n") + "\n");
}

#[test]
fn status_shows_instances_when_a_warm_environment_goes_and_who_paused_and_why() {
    let mut s = rolling();
    s.environments[0].instance_ids = vec!["i-0a".into(), "i-0b".into()];
    s.environments[2].terminate_after = Some("2026-11-25T10:08:07Z".parse().expect("a time"));
    let rollout = s.rollout.as_mut().expect("a rollout");
    rollout.paused = true;
    rollout.paused_by = Some("ana via token 1234abcd".into());
    rollout.pause_reason = Some("checking the dashboards".into());
    let text = status(&s);
    assert!(text.contains("\n    instances: i-0a i-0b\n"), "{text}");
    assert!(
        text.contains(", unused since 09:08:07, kept warm until 10:08:07\n"),
        "{text}"
    );
    assert!(
        text.contains("\n  paused by ana via token 1234abcd: checking the dashboards\n"),
        "{text}"
    );
}

#[test]
fn status_of_a_new_service_says_nothing_is_registered() {
    let s: ServiceStatus = serde_json::from_value(json!({
        "service": "new", "config_version": null, "stable_version": null,
        "environments": [], "traffic": [], "rollout": null, "alarms": [], "history": []
    }))
    .expect("a status");
    assert_eq!(
        status(&s),
        "new  config v-  stable none\ntraffic:\n  (nothing registered)\nenvironments:\n"
    );
}

#[test]
fn a_followed_rollout_ends_with_its_outcome_and_exit_code() {
    let mut done = rolling().history[0].clone();
    assert_eq!(
        rollout_end("hello", &done),
        ("completed: hello v1 serves all traffic".into(), 0)
    );
    done.outcome = "rolled_back".into();
    done.cause = Some("alarm".into());
    done.detail = Some("alarm hello-5xx is Alarm: 5xx rate 12% > 5%".into());
    assert_eq!(
        rollout_end("hello", &done),
        (
            "rolled back: alarm hello-5xx is Alarm: 5xx rate 12% > 5%".into(),
            1
        )
    );
    // The exit codes a pipeline branches on (README, "Exit codes").
    for (outcome, cause, code) in [
        ("rolled_back", Some("deadline_exceeded"), 1),
        ("rolled_back", Some("environment_failed"), 1),
        ("rolled_back", Some("action_refused"), 1),
        ("rolled_back", Some("aborted"), 4),
        ("superseded", None, 4),
        // A cause this build does not know is still a rollback.
        ("rolled_back", Some("something_new"), 1),
        ("rolled_back", None, 1),
    ] {
        done.outcome = outcome.into();
        done.cause = cause.map(str::to_string);
        assert_eq!(rollout_end("hello", &done).1, code, "{outcome} {cause:?}");
    }
}

#[test]
fn a_plan_lists_steps_pauses_and_the_worst_case() {
    let answer = json!({
        "service": "hello", "version": "v2", "config_version": 3,
        "plan": {
            "environment": "hello-v2-b", "reuses_warm_environment": true, "test_endpoint": true,
            "steps": [
                { "label": "canary", "percent": 10, "pause": "until_promoted" },
                { "label": "step", "percent": 50, "pause": "3s" },
                { "label": "step", "percent": 100, "pause": null }
            ],
            "worst_case_secs": 1230, "progress_deadline": "10m"
        }
    });
    assert_eq!(
        plan(&answer),
        "Releasing hello v2 (config v3) into hello-v2-b (warm: no launch)\n\
         \x20 test endpoint: waits for a promote before any customer traffic\n\
         \x20 1. canary 10%, then pause until_promoted\n\
         \x20 2. step 50%, then pause 3s\n\
         \x20 3. step 100%\n\
         \x20 worst case: 1230s (each stage up to the 10m progress deadline)\n"
    );
    let open = json!({ "service": "hello", "version": "v2", "config_version": 3,
                       "plan": { "environment": "e", "steps": [], "worst_case_secs": null } });
    assert!(plan(&open).ends_with("  worst case: open-ended (waits for a person to promote)\n"));
}

#[test]
fn an_event_reads_as_the_audit_sentence_or_its_type_and_data() {
    let event = json!({
        "type": "rolled-back", "revision": 41, "actor": "roller",
        "occurred_at": "2026-11-25T12:00:00Z",
        "summary": "rolled back v2 (alarm hello-5xx is Alarm)",
        "data": { "alarm": { "name": "hello-5xx", "value": 12.0 } }
    });
    assert_eq!(
        event_sentence(&event),
        "2026-11-25T12:00:00Z #41 rolled back v2 (alarm hello-5xx is Alarm) (roller)"
    );
    // An event the roller had no sentence for shows its type and data, compact.
    let mut unknown = event.clone();
    unknown["summary"] = Value::Null;
    assert_eq!(
        event_sentence(&unknown),
        r#"2026-11-25T12:00:00Z #41 rolled-back {"alarm":{"name":"hello-5xx","value":12.0}} (roller)"#
    );
    // A malformed event still prints a line rather than stopping the listing.
    assert_eq!(event_sentence(&Value::Null), "? #null ? null (?)");
}

#[test]
fn the_service_list_puts_what_needs_attention_first() {
    let steady: ServiceStatus = serde_json::from_value(json!({
        "service": "a-steady", "config_version": 1, "stable_version": "v1",
        "environments": [], "traffic": [], "rollout": null, "alarms": [], "history": []
    }))
    .expect("a status");
    let mut rolling = rolling();
    rolling.attention.rank = 2;
    rolling.attention.reason = "waits for a person to promote".into();
    let table = services_table(&[steady.clone(), rolling.clone()]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("SERVICE"), "{table}");
    assert!(lines[1].starts_with("hello"), "rolling first: {table}");
    assert!(
        lines[1].contains("v2 step_done 2/4")
            && lines[1].ends_with("waits for a person to promote"),
        "{table}"
    );
    assert!(
        lines[2].starts_with("a-steady") && lines[2].ends_with(" -"),
        "{table}"
    );
    let row = service_row(&rolling);
    assert_eq!(row["rollout"]["version"], "v2");
    assert_eq!(row["stable_version"], "v1");
}

#[test]
fn a_config_version_line_names_when_and_who() {
    let c = json!({ "config_version": 2, "saved_at": "2026-11-25T12:00:00Z", "saved_by": "ana" });
    assert_eq!(
        config_version_line(&c),
        "version 2  saved 2026-11-25T12:00:00Z by ana"
    );
}

#[test]
fn warnings_come_first_and_loud() {
    let mut s = rolling();
    s.warnings =
        vec!["NOTHING IN SERVICE: no instance of hello takes traffic behind hello-lb".into()];
    let text = status(&s);
    assert!(
        text.lines()
            .nth(1)
            .is_some_and(|l| l
                == "!! NOTHING IN SERVICE: no instance of hello takes traffic behind hello-lb"),
        "{text}"
    );
    assert!(!status(&rolling()).contains("!!"), "no warnings, no noise");
}

#[test]
fn plan_shows_the_real_share_of_each_step_and_marks_steps_that_change_nothing() {
    let answer = json!({
        "service": "hello", "version": "v2", "config_version": 1,
        "plan": {
            "environment": "(a new environment, named when the release starts)",
            "reuses_warm_environment": false, "test_endpoint": false,
            "steps": [
                { "label": "canary", "percent": 10, "pause": "until_promoted",
                  "instances": { "new": 1, "old": 2 } },
                { "label": "step", "percent": 25, "pause": "3s",
                  "instances": { "new": 1, "old": 2 } },
                { "label": "step", "percent": 100, "pause": null,
                  "instances": { "new": 2, "old": 0 } }
            ],
            "worst_case_secs": null, "progress_deadline": "2m"
        }
    });
    let text = plan(&answer);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[1],
        "  1. canary 10% → 1 new + 2 old instance(s) = 33%, then pause until_promoted"
    );
    assert_eq!(
        lines[2],
        "  2. step 25% → 1 new + 2 old instance(s) = 33% (changes nothing at this size), then pause 3s"
    );
    assert_eq!(
        lines[3],
        "  3. step 100% → 2 new + 0 old instance(s) = 100%"
    );
}
