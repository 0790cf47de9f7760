//! Trail one version behind the roller: the log holds a config with fields trail does not
//! know, events with added fields, and a type it has never heard of. Trail must project all of
//! it (a poison event stops projecting at its position) and keep each event's data as written.

use ionroller_shared::config::parse_service_config;
use ionroller_shared::events::ServiceEvent as E;
use serde_json::json;
use uuid::Uuid;

use crate::audit::{verify, AuditChain};
use crate::releases::ReleaseHistory;
use crate::testing::{recorded, t, Script};

fn newer_log() -> Script {
    let config = parse_service_config(include_str!("../../examples/hello.json"))
        .expect("the example config is valid");
    let rollout = Uuid::from_u128(9);
    let mut s = Script::default();
    s.at(
        0,
        "alice",
        E::ConfigSaved {
            config_version: 1,
            config: Box::new(config),
        },
    )
    .at(
        5,
        "alice",
        E::ReleaseRequested {
            rollout_id: rollout,
            version: "v2".into(),
            reason: None,
            override_alarms: false,
        },
    )
    .at(
        6,
        "roller",
        E::StepStarted {
            rollout_id: rollout,
            step: 0,
            percent: 25,
        },
    );
    // What the newer roller wrote that this build's types lack.
    let data = &mut s.events[0].data;
    data["config"]["future_setting"] = json!(3);
    data["config"]["rollout"]["future_setting"] = json!(3);
    s.events[1].data["ticket"] = json!({ "id": "CHG-12" });
    let mut unknown = recorded(3, "approval-granted", json!({ "by": "bob" }));
    unknown.metadata.occurred_at = t(7);
    s.events.push(unknown);
    s
}

#[test]
fn the_audit_projection_folds_a_log_from_a_newer_version() {
    let log = newer_log().events;
    for event in &log {
        // What trail's runner treats as poison: a known type whose data does not decode.
        assert!(
            E::from_recorded(event).is_ok(),
            "{} is poison",
            event.event_type
        );
    }
    let mut chain = AuditChain::default();
    let rows: Vec<_> = log.iter().map(|e| chain.row(e)).collect();
    let seen: Vec<(&str, Option<&str>)> = rows
        .iter()
        .map(|r| (r.summary.as_str(), r.version.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            ("config version 1 saved", None),
            ("release of v2 requested", Some("v2")),
            // Rows of the rollout name its version, of a type trail does not know too.
            ("step 1 started: 25%", Some("v2")),
            ("approval-granted (not known to this trail)", Some("v2")),
        ]
    );
    // Kept as written, unknown fields too, so the chain verifies against the log.
    assert_eq!(rows[0].data["config"]["rollout"]["future_setting"], 3);
    assert_eq!(rows[1].data["ticket"]["id"], "CHG-12");
    assert_eq!(verify(rows.iter().zip(&log)), Ok(4));

    let mut history = ReleaseHistory::default();
    for event in &log {
        history.apply(event).expect("no event is poison");
    }
    let release = history.for_service("hello").next().expect("the release");
    assert_eq!(
        (release.to_version.as_str(), release.requested_by.as_str()),
        ("v2", "alice")
    );
    assert_eq!(release.steps.len(), 1);
}

/// Rows already stored keep their sentence: `trail verify` re-derives each row's summary from
/// its event, so a command event written before promote and resume took a reason (an empty
/// object), and a pause with a reason, must read exactly as they always have.
#[test]
fn stored_command_events_keep_their_sentences() {
    let mut chain = AuditChain::default();
    let cases = [
        ("promote-requested", json!({}), "promote requested"),
        ("resume-requested", json!({}), "resume requested"),
        (
            "pause-requested",
            json!({ "reason": "lunch" }),
            "pause requested",
        ),
        (
            "abort-requested",
            json!({ "reason": "bad" }),
            "abort requested: bad",
        ),
    ];
    for (i, (event_type, data, sentence)) in cases.into_iter().enumerate() {
        let event = recorded(i as u64, event_type, data);
        assert_eq!(chain.row(&event).summary, sentence, "{event_type}");
    }
}
