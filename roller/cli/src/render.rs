//! The roller's answers as text for people: status, the one-line progress of a rollout, a
//! release plan, a log event. Pure functions of what the API returned, so that what the
//! commands print is tested without a server (the end-to-end tests read these lines).

use ionroller_roller::api::views::{RolloutRecordView, ServiceStatus};
use ionroller_shared::events::Health;
use serde_json::Value;

/// `share` (0 to 1) as `width` cells, filled from the left.
pub fn bar(share: f64, width: usize) -> String {
    let filled = ((share * width as f64).round() as usize).min(width);
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

/// One line: stage and step, the traffic split as a bar, the new environment's health, and
/// what the rollout waits for.
pub fn progress_line(status: &ServiceStatus) -> String {
    let Some(r) = &status.rollout else {
        return "waiting for the roller to pick up the request".into();
    };
    let new_share = status
        .traffic
        .iter()
        .filter(|t| t.version.as_deref() == Some(r.version.as_str()))
        .fold(0.0, |sum, t| sum + t.share);
    let step = match (r.step, r.step_percent) {
        (Some(s), Some(p)) => format!("step {s}/{} ({p}%)", r.step_count),
        _ => r.stage.replace('_', " "),
    };
    let env = r
        .plan
        .as_ref()
        .and_then(|p| status.environments.iter().find(|e| e.name == p.environment))
        .map(|e| {
            format!(
                "{} {:?} {}/{}",
                e.name,
                e.health.unwrap_or(Health::Grey),
                e.healthy_instances,
                e.instances
            )
        })
        .unwrap_or_else(|| "environment pending".into());
    format!(
        "{step:<18} {} {:>3.0}% {} | {} · waiting for {}",
        bar(new_share, 20),
        new_share * 100.0,
        r.version,
        env,
        r.waiting_for
    )
}

/// How a followed rollout ended, and the exit code (`exit.rs`): completed 0, rolled back 1,
/// superseded or aborted by a person 4.
pub fn rollout_end(service: &str, done: &RolloutRecordView) -> (String, i32) {
    let code = match (done.outcome.as_str(), done.cause.as_deref()) {
        ("completed", _) => crate::exit::OK,
        ("superseded", _) | ("rolled_back", Some("aborted")) => crate::exit::STOPPED,
        _ => crate::exit::ROLLED_BACK,
    };
    let text = match done.outcome.as_str() {
        "completed" => format!("completed: {service} {} serves all traffic", done.version),
        other => format!(
            "{}: {}",
            other.replace('_', " "),
            done.detail.clone().unwrap_or_default()
        ),
    };
    (text, code)
}

/// `ionroller status`: versions, traffic, live environments, the rollout, alarms, last rollout.
pub fn status(s: &ServiceStatus) -> String {
    let mut out = format!(
        "{}  config v{}  stable {}\n",
        s.service,
        s.config_version.map_or("-".into(), |v| v.to_string()),
        s.stable_version.clone().unwrap_or_else(|| "none".into())
    );
    for warning in &s.warnings {
        out.push_str(&format!("!! {warning}\n"));
    }
    out.push_str("traffic:\n");
    if s.traffic.is_empty() {
        out.push_str("  (nothing registered)\n");
    }
    for t in &s.traffic {
        out.push_str(&format!(
            "  {} {:>3.0}% {} ({})\n",
            bar(t.share, 20),
            t.share * 100.0,
            t.version.clone().unwrap_or_default(),
            t.environment
        ));
    }
    out.push_str("environments:\n");
    for e in s.environments.iter().filter(|e| !e.terminated) {
        out.push_str(&format!(
            "  {:<32} {:<10} {}/{} {}/{} healthy{}\n",
            e.name,
            e.version,
            e.status.map_or("unseen".into(), |s| format!("{s:?}")),
            e.health.map_or("-".into(), |h| format!("{h:?}")),
            e.healthy_instances,
            e.instances,
            if e.foreign {
                ", not created by this log: left alone".to_string()
            } else {
                match (e.unused_since, e.terminate_after) {
                    (Some(since), Some(after)) => format!(
                        ", unused since {}, kept warm until {}",
                        since.format("%H:%M:%S"),
                        after.format("%H:%M:%S")
                    ),
                    (Some(since), None) => format!(", unused since {}", since.format("%H:%M:%S")),
                    _ => String::new(),
                }
            }
        ));
        if !e.instance_ids.is_empty() {
            out.push_str(&format!("    instances: {}\n", e.instance_ids.join(" ")));
        }
    }
    if let Some(r) = &s.rollout {
        out.push_str(&format!(
            "rollout {} of {}: {} · waiting for {}\n",
            r.id,
            r.version,
            progress_line(s),
            r.waiting_for
        ));
        if let Some(by) = &r.paused_by {
            out.push_str(&format!(
                "  paused by {by}{}\n",
                r.pause_reason
                    .as_deref()
                    .map(|why| format!(": {why}"))
                    .unwrap_or_default()
            ));
        }
    }
    for a in &s.alarms {
        out.push_str(&format!("alarm {}: {:?} ({})\n", a.name, a.state, a.reason));
    }
    if let Some(h) = s.history.first() {
        out.push_str(&format!(
            "last rollout: {} {} {}\n",
            h.version,
            h.outcome,
            h.detail.clone().unwrap_or_default()
        ));
    }
    out
}

/// `ionroller plan`: the environment, each step and pause, and the worst case.
pub fn plan(answer: &Value) -> String {
    let plan = &answer["plan"];
    let mut out = format!(
        "Releasing {} {} (config v{}) into {}{}\n",
        answer["service"].as_str().unwrap_or("?"),
        answer["version"].as_str().unwrap_or("?"),
        answer["config_version"],
        plan["environment"].as_str().unwrap_or("?"),
        if plan["reuses_warm_environment"].as_bool() == Some(true) {
            " (warm: no launch)"
        } else {
            ""
        }
    );
    if plan["test_endpoint"].as_bool() == Some(true) {
        out.push_str("  test endpoint: waits for a promote before any customer traffic\n");
    }
    let mut before: Option<&Value> = None;
    for (i, s) in plan["steps"].as_array().into_iter().flatten().enumerate() {
        out.push_str(&format!(
            "  {}. {} {}%{}{}\n",
            i + 1,
            s["label"].as_str().unwrap_or("step"),
            s["percent"],
            step_instances(&s["instances"], before),
            match &s["pause"] {
                Value::Null => String::new(),
                p => format!(", then pause {}", p.as_str().unwrap_or("?")),
            }
        ));
        before = Some(&s["instances"]);
    }
    out.push_str(&match plan["worst_case_secs"].as_u64() {
        Some(s) => format!(
            "  worst case: {s}s (each stage up to the {} progress deadline)\n",
            plan["progress_deadline"].as_str().unwrap_or("?")
        ),
        None => "  worst case: open-ended (waits for a person to promote)\n".into(),
    });
    out
}

/// What a step's percent means in instances: "→ 1 new + 2 old = 33%", and whether it moves
/// anything after the step `before`.
fn step_instances(instances: &Value, before: Option<&Value>) -> String {
    let (Some(new), Some(old)) = (instances["new"].as_u64(), instances["old"].as_u64()) else {
        return String::new();
    };
    let share = new as f64 * 100.0 / (new + old).max(1) as f64;
    let same = before.is_some_and(|b| b == instances);
    format!(
        " → {new} new + {old} old instance(s) = {share:.0}%{}",
        if same {
            " (changes nothing at this size)"
        } else {
            ""
        }
    )
}

/// `ionroller events`: one event of the service's log (its data as compact JSON).
/// `ionroller events`: one event as a sentence in the audit's wording (`summary`, which the
/// roller adds to each event it streams); an event without one shows its type and data.
pub fn event_sentence(v: &Value) -> String {
    let what = match v["summary"].as_str() {
        Some(summary) if !summary.is_empty() => summary.to_string(),
        _ => format!("{} {}", v["type"].as_str().unwrap_or("?"), v["data"]),
    };
    format!(
        "{} #{:<4} {what} ({})",
        v["occurred_at"].as_str().unwrap_or("?"),
        v["revision"],
        v["actor"].as_str().unwrap_or("?"),
    )
}

/// `ionroller services -o json`: one service's row, in the API's field names.
pub fn service_row(s: &ServiceStatus) -> Value {
    serde_json::json!({
        "service": s.service,
        "stable_version": s.stable_version,
        "rollout": s.rollout.as_ref().map(|r| serde_json::json!({
            "id": r.id,
            "version": r.version,
            "stage": r.stage,
            "step": r.step,
            "step_count": r.step_count,
        })),
        "attention": s.attention,
    })
}

/// `ionroller services`: a table, most in need of attention first (as the console sorts).
pub fn services_table(statuses: &[ServiceStatus]) -> String {
    let mut sorted: Vec<&ServiceStatus> = statuses.iter().collect();
    sorted.sort_by(|a, b| {
        b.attention
            .rank
            .cmp(&a.attention.rank)
            .then_with(|| a.service.cmp(&b.service))
    });
    let mut out = format!(
        "{:<24} {:<14} {:<34} {}\n",
        "SERVICE", "STABLE", "ROLLOUT", "ATTENTION"
    );
    for s in sorted {
        let rollout = s.rollout.as_ref().map_or_else(
            || "-".to_string(),
            |r| match r.step {
                Some(step) => format!("{} {} {step}/{}", r.version, r.stage, r.step_count),
                None => format!("{} {}", r.version, r.stage),
            },
        );
        let attention = if s.attention.rank == 0 {
            "-".to_string()
        } else {
            s.attention.reason.clone()
        };
        out.push_str(&format!(
            "{:<24} {:<14} {:<34} {attention}\n",
            s.service,
            s.stable_version.as_deref().unwrap_or("none"),
            rollout,
        ));
    }
    out
}

/// `ionroller config history`: one saved version.
pub fn config_version_line(c: &Value) -> String {
    format!(
        "version {}  saved {} by {}",
        c["config_version"],
        c["saved_at"].as_str().unwrap_or("?"),
        c["saved_by"].as_str().unwrap_or("?")
    )
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
