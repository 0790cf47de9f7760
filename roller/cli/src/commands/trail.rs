//! Trail's commands: the audit log (and its live feed), release history, what served at a
//! time, the delivery report, and the hash-chain check.

use futures::StreamExt;
use serde_json::Value;

use crate::client::Client;
use crate::output;
use crate::render_trail;
use crate::time_args::time_arg;

pub struct AuditFilter {
    pub service: Option<String>,
    pub actor: Option<String>,
    pub people: bool,
    pub event_type: Option<String>,
    pub since: Option<String>,
    pub limit: usize,
}

/// The newest `limit` rows, printed oldest first; with `follow`, then every new one.
pub async fn audit(trail: &Client, filter: AuditFilter, follow: bool) -> anyhow::Result<i32> {
    let mut query = vec![("limit", filter.limit.to_string())];
    for (k, v) in [
        ("service", filter.service.clone()),
        ("actor", filter.actor.clone()),
        ("type", filter.event_type.clone()),
    ] {
        if let Some(v) = v {
            query.push((k, v));
        }
    }
    if filter.people {
        query.push(("people", "true".into()));
    }
    if let Some(since) = &filter.since {
        query.push(("from", time_arg(since, chrono::Utc::now())?));
    }
    let page = trail.get_query("/v1/audit", &query).await?;
    let mut rows: Vec<Value> = page["rows"].as_array().cloned().unwrap_or_default();
    rows.reverse();
    for row in &rows {
        output::record(row, || render_trail::audit_line(row))?;
    }
    if follow {
        let last_seq = rows.last().and_then(|r| r["seq"].as_u64());
        // The feed carries every row: the page's filter, by trail's own rule, picks them.
        let wanted = ionroller_projections::audit::AuditFilter {
            service: filter.service,
            actor: filter.actor,
            people_only: filter.people,
            event_type: filter.event_type,
            ..Default::default()
        };
        follow_feed(trail, last_seq, &wanted).await?;
    }
    Ok(0)
}

/// Prints trail's live audit feed from after row `seq` (its SSE id), so that no row is
/// missed or shown twice between the page above and the feed.
async fn follow_feed(
    trail: &Client,
    seq: Option<u64>,
    wanted: &ionroller_projections::audit::AuditFilter,
) -> anyhow::Result<()> {
    let mut feed = trail.events("/v1/feed", seq.map(|s| s.to_string())).await?;
    let cut = |why: String| -> anyhow::Error {
        crate::exit::Failure::new(crate::exit::UNREACHABLE, why).into()
    };
    while let Some(event) = feed.next().await {
        let event = event.map_err(|e| cut(format!("trail's feed broke off: {e}")))?;
        let data = event.data.as_deref().unwrap_or_default();
        let row: Value = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
        // A row this version cannot read as a row is shown rather than hidden.
        let matches = serde_json::from_value::<ionroller_projections::audit::AuditRow>(row.clone())
            .map_or(true, |r| wanted.matches(&r));
        if matches {
            output::record(&row, || render_trail::audit_line(&row))?;
        }
    }
    Err(cut("trail ended its feed (did it stop?)".into()))
}

pub async fn history(trail: &Client, service: &str) -> anyhow::Result<i32> {
    let answer = trail
        .get(&format!("/v1/services/{service}/releases"))
        .await?;
    output::answer(&answer, || {
        answer["releases"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| render_trail::release_line(r) + "\n")
            .collect()
    })?;
    Ok(0)
}

pub async fn at(trail: &Client, service: &str, time: &str) -> anyhow::Result<i32> {
    let at = time_arg(time, chrono::Utc::now())?;
    let answer = trail
        .get_query(
            &format!("/v1/services/{service}/at"),
            &[("time", at.clone())],
        )
        .await?;
    output::answer(&answer, || render_trail::at(service, &at, &answer))?;
    Ok(0)
}

pub async fn report(
    trail: &Client,
    since: Option<String>,
    service: Option<String>,
) -> anyhow::Result<i32> {
    let mut query = Vec::new();
    if let Some(since) = since {
        query.push(("from", time_arg(&since, chrono::Utc::now())?));
    }
    if let Some(s) = service {
        query.push(("service", s));
    }
    let r = trail.get_query("/v1/reports/delivery", &query).await?;
    output::answer(&r, || render_trail::report(&r))?;
    Ok(0)
}

pub async fn verify(trail: &Client) -> anyhow::Result<i32> {
    let answer = trail.get("/v1/verify").await?;
    let (text, code) = render_trail::verify(&answer);
    output::answer(&answer, || text + "\n")?;
    Ok(code)
}
