//! Time arguments (`--since`, `at SERVICE TIME`): an RFC 3339 time, or a duration back from
//! now in humantime's forms ("30m", "7d", "1h 30m", "2weeks"). Configs keep their own, narrower
//! duration parser in `ionroller_shared::config`: a saved config must mean the same thing to
//! every reader, whereas these arguments are read once, here.

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};

/// The RFC 3339 time `text` names, as trail's API takes it. An RFC 3339 time is passed on as
/// the user wrote it; a duration is subtracted from `now`.
pub fn time_arg(text: &str, now: DateTime<Utc>) -> anyhow::Result<String> {
    if DateTime::parse_from_rfc3339(text).is_ok() {
        return Ok(text.to_string());
    }
    let ago = humantime::parse_duration(text).map_err(|why| {
        anyhow::anyhow!(
            "{text:?} is not a duration ({why}; write e.g. \"30m\", \"7d\", \"1h30m\"); \
             or give an RFC 3339 time such as 2026-11-25T12:00:00Z"
        )
    })?;
    let ago = chrono::Duration::from_std(ago).context("convert the duration")?;
    let at = now
        .checked_sub_signed(ago)
        .with_context(|| format!("{text:?} reaches back before any representable time"))?;
    Ok(at.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// When a token made now stops working: an RFC 3339 time, or a duration from `now` ("90d").
pub fn expiry_arg(text: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let after = humantime::parse_duration(text).map_err(|_| {
        anyhow::anyhow!(
            "--expires {text:?}: give a lifetime such as 90d, 12h or 1h30m, \
             or an RFC 3339 time such as 2027-03-01T00:00:00Z"
        )
    })?;
    chrono::Duration::from_std(after)
        .ok()
        .and_then(|after| now.checked_add_signed(after))
        .with_context(|| format!("--expires {text:?}: too far in the future"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-25T12:00:00Z".parse().expect("a fixed time")
    }

    fn ago(text: &str) -> String {
        time_arg(text, now()).unwrap_or_else(|e| panic!("{text}: {e:#}"))
    }

    #[test]
    fn what_the_old_parser_accepted_still_means_the_same() {
        assert_eq!(ago("30s"), "2026-11-25T11:59:30Z");
        assert_eq!(ago("10m"), "2026-11-25T11:50:00Z");
        assert_eq!(ago("2h"), "2026-11-25T10:00:00Z");
        assert_eq!(ago("1h30m"), "2026-11-25T10:30:00Z");
        assert_eq!(ago("0s"), "2026-11-25T12:00:00Z");
    }

    #[test]
    fn humantime_forms_are_accepted_including_the_readme_s_days() {
        assert_eq!(ago("7d"), "2026-11-18T12:00:00Z");
        assert_eq!(ago("1h 30m"), "2026-11-25T10:30:00Z");
        assert_eq!(ago("2weeks"), "2026-11-11T12:00:00Z");
        assert_eq!(ago("90min"), "2026-11-25T10:30:00Z");
    }

    #[test]
    fn an_rfc3339_time_is_passed_on_as_written() {
        for t in ["2026-11-25T12:00:00Z", "2026-11-25T13:00:00.250+01:00"] {
            assert_eq!(ago(t), t);
        }
    }

    #[test]
    fn anything_else_is_refused_with_both_forms_named() {
        for bad in ["", "7", "yesterday", "1x", "2026-11-25", "-5m"] {
            let e = time_arg(bad, now()).expect_err(bad).to_string();
            assert!(e.contains("RFC 3339") && e.contains("7d"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_duration_past_the_calendar_is_an_error_not_a_panic() {
        assert!(time_arg("9999999999y", now()).is_err());
    }

    #[test]
    fn an_expiry_is_a_lifetime_or_a_time_and_never_overflows() {
        assert_eq!(
            expiry_arg("90d", now()).expect("a lifetime"),
            "2027-02-23T12:00:00Z"
                .parse::<DateTime<Utc>>()
                .expect("time")
        );
        assert_eq!(
            expiry_arg("2027-03-01T00:00:00Z", now()).expect("a time"),
            "2027-03-01T00:00:00Z"
                .parse::<DateTime<Utc>>()
                .expect("time")
        );
        for bad in ["99999999d", "99999999999d", "nonsense", "90"] {
            let e = expiry_arg(bad, now()).expect_err(bad).to_string();
            assert!(e.starts_with("--expires"), "{bad}: {e}");
        }
    }
}
