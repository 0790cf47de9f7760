//! Trail's answers as text: audit rows, release history, what served at a time, the delivery
//! report, the chain check. Pure functions of trail's JSON, tested without a server.

use serde_json::Value;

/// The first 19 characters of an RFC 3339 time (to the second, no zone), or "?".
fn to_the_second(time: &Value) -> &str {
    time.as_str().unwrap_or("?").get(..19).unwrap_or("?")
}

/// `ionroller audit`: one row, oldest first on screen.
pub fn audit_line(row: &Value) -> String {
    format!(
        "#{:<6} {} {:<12} {:<24} {:<24} {}",
        row["seq"],
        to_the_second(&row["occurred_at"]),
        row["service"].as_str().unwrap_or("-"),
        row["actor"].as_str().unwrap_or("?"),
        row["event_type"].as_str().unwrap_or("?"),
        row["summary"].as_str().unwrap_or("")
    )
}

/// `ionroller history`: one rollout, from and to, who asked, and how it ended.
pub fn release_line(r: &Value) -> String {
    format!(
        "{}  {:<8} {} -> {:<10} by {:<24} {:<12} {}",
        to_the_second(&r["requested_at"]),
        r["kind"].as_str().unwrap_or("?"),
        r["from_version"].as_str().unwrap_or("-"),
        r["to_version"].as_str().unwrap_or("?"),
        r["requested_by"].as_str().unwrap_or("?"),
        r["outcome"]["outcome"].as_str().unwrap_or("in progress"),
        r["outcome"]["cause"]["kind"].as_str().unwrap_or("")
    )
}

/// `ionroller at`: the traffic shares at `at`, and a rollout then in progress.
pub fn at(service: &str, at: &str, answer: &Value) -> String {
    let mut out = format!("{service} at {at}:\n");
    match answer["traffic"].as_array() {
        None => out.push_str("  nothing was serving\n"),
        Some(shares) => {
            for s in shares {
                out.push_str(&format!(
                    "  {:>3.0}% {} (environment {}, config v{})\n",
                    s["share"].as_f64().unwrap_or(0.0) * 100.0,
                    s["version"].as_str().unwrap_or("?"),
                    s["environment"].as_str().unwrap_or("?"),
                    s["config_version"]
                ));
            }
        }
    }
    if let Some(r) = answer["rollout_in_progress"].as_object() {
        out.push_str(&format!(
            "  rollout in progress: {} requested by {}\n",
            r["to_version"].as_str().unwrap_or("?"),
            r["requested_by"].as_str().unwrap_or("?")
        ));
    }
    out
}

/// `ionroller report`: the overall figures, then deployments and failures per day.
pub fn report(r: &Value) -> String {
    let o = &r["overall"];
    let num = |v: &Value, scale: f64, unit: &str| {
        v.as_f64()
            .map_or("-".to_string(), |x| format!("{:.1}{unit}", x * scale))
    };
    let mut out = format!(
        "deployments:          {}\n\
         failures:             {}\n\
         change-failure rate:  {}\n\
         lead time (mean):     {}\n\
         lead time (median):   {}\n\
         time to restore:      {}\n",
        o["deployments"],
        o["failures"],
        num(&o["change_failure_rate"], 100.0, "%"),
        num(&o["lead_time_mean_secs"], 1.0, "s"),
        num(&o["lead_time_median_secs"], 1.0, "s"),
        num(&o["time_to_restore_mean_secs"], 1.0, "s"),
    );
    for (day, f) in r["per_day"].as_object().into_iter().flatten() {
        out.push_str(&format!(
            "  {day}: {} deployed, {} failed\n",
            f["deployments"], f["failures"]
        ));
    }
    out
}

/// `ionroller verify`: the line, and the exit code (1 when the chain does not match, or when
/// there was nothing to check: "ok" over an empty projection would vouch for nothing).
pub fn verify(answer: &Value) -> (String, i32) {
    if answer["ok"].as_bool() == Some(true) && answer["rows"].as_u64() == Some(0) {
        (
            "NOTHING CHECKED: trail's projection holds no audit rows (is trail caught up, or \
             pointed at the right log?)"
                .into(),
            1,
        )
    } else if answer["ok"].as_bool() == Some(true) {
        // Trail's own sentence says what the log was checked against (published checkpoints,
        // and what is not anchored yet); an older trail sends none.
        match answer["message"].as_str() {
            Some(summary) => (format!("ok: {summary}"), 0),
            None => (
                format!("ok: {} audit rows match the log", answer["rows"]),
                0,
            ),
        }
    } else {
        // One line per finding (trail sends them a line each), each naming the log position
        // that differs.
        let message = answer["message"].as_str().unwrap_or("?");
        (
            message
                .lines()
                .map(|line| format!("MISMATCH: {line}"))
                .collect::<Vec<_>>()
                .join("\n"),
            1,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_audit_row_is_one_line_to_the_second() {
        let row = json!({
            "seq": 7, "occurred_at": "2026-11-25T12:00:00.123456Z", "service": "hello",
            "actor": "ana@example.com", "event_type": "release-requested",
            "summary": "ana requested v2"
        });
        // `seq` is a JSON value, whose Display ignores the width: no padding after it.
        assert_eq!(
            audit_line(&row),
            format!(
                "#7 2026-11-25T12:00:00 {:<12} {:<24} {:<24} ana requested v2",
                "hello", "ana@example.com", "release-requested"
            )
        );
        assert_eq!(
            audit_line(&Value::Null),
            format!("#null ? {:<12} {:<24} {:<24} ", "-", "?", "?")
        );
    }

    #[test]
    fn a_release_shows_from_to_who_and_outcome() {
        let r = json!({
            "requested_at": "2026-11-25T12:00:00Z", "kind": "release", "from_version": "v1",
            "to_version": "v2", "requested_by": "ana",
            "outcome": { "outcome": "rolled_back", "cause": { "kind": "alarm" } }
        });
        assert_eq!(
            release_line(&r),
            format!(
                "2026-11-25T12:00:00  {:<8} v1 -> {:<10} by {:<24} {:<12} alarm",
                "release", "v2", "ana", "rolled_back"
            )
        );
        let first = json!({ "requested_at": "2026-11-25T12:00:00Z", "kind": "release",
                            "to_version": "v1", "requested_by": "ana" });
        assert!(release_line(&first).contains(" - -> v1 "));
        assert!(release_line(&first).contains("in progress"));
    }

    #[test]
    fn at_lists_shares_or_says_nothing_served() {
        let answer = json!({
            "traffic": [{ "share": 0.5, "version": "v2", "environment": "e2", "config_version": 3 }],
            "rollout_in_progress": { "to_version": "v3", "requested_by": "ana" }
        });
        assert_eq!(
            at("hello", "2026-11-25T12:00:00Z", &answer),
            [
                "hello at 2026-11-25T12:00:00Z:",
                "   50% v2 (environment e2, config v3)",
                "  rollout in progress: v3 requested by ana\n",
            ]
            .join("\n")
        );
        assert_eq!(
            at("hello", "t", &json!({ "traffic": null })),
            "hello at t:\n  nothing was serving\n"
        );
    }

    #[test]
    fn the_report_shows_rates_as_percent_and_missing_figures_as_dashes() {
        let r = json!({
            "overall": { "deployments": 2, "failures": 1, "change_failure_rate": 0.5,
                         "lead_time_mean_secs": 12.34, "lead_time_median_secs": null,
                         "time_to_restore_mean_secs": 3.0 },
            "per_day": { "2026-11-25": { "deployments": 2, "failures": 1 } }
        });
        assert_eq!(
            report(&r),
            "deployments:          2\n\
             failures:             1\n\
             change-failure rate:  50.0%\n\
             lead time (mean):     12.3s\n\
             lead time (median):   -\n\
             time to restore:      3.0s\n\
             \x20 2026-11-25: 2 deployed, 1 failed\n"
        );
    }

    #[test]
    fn verify_exits_1_on_a_mismatch() {
        assert_eq!(
            verify(&json!({ "ok": true, "rows": 12 })),
            ("ok: 12 audit rows match the log".into(), 0)
        );
        assert_eq!(
            verify(&json!({ "ok": false, "message": "audit row 7 does not match" })),
            ("MISMATCH: audit row 7 does not match".into(), 1)
        );
        // Each finding on a line of its own, and trail's account of what an ok covered.
        assert_eq!(
            verify(&json!({ "ok": false, "message": "row 3 differs\nlog ends before row 9" })),
            (
                "MISMATCH: row 3 differs\nMISMATCH: log ends before row 9".into(),
                1
            )
        );
        assert_eq!(
            verify(&json!({ "ok": true, "rows": 5, "message": "5 audit rows match the log; ..." })),
            ("ok: 5 audit rows match the log; ...".into(), 0)
        );
        let (text, code) = verify(&json!({ "ok": true, "rows": 0 }));
        assert_eq!(code, 1, "an empty projection vouches for nothing");
        assert!(text.starts_with("NOTHING CHECKED"), "{text}");
    }
}
