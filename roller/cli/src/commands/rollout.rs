//! The roller's commands about one service: release and rollback (followed until they end),
//! pause, resume, promote, abort, status, plan, the service list and its event log.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use ionroller_roller::api::views::ServiceStatus;
use serde_json::{json, Value};

use crate::client::Client;
use crate::output::{line, print};
use crate::render;

pub struct ReleaseRequest {
    pub version: String,
    pub reason: Option<String>,
    pub override_alarms: bool,
}

pub async fn release(
    client: &Client,
    service: &str,
    request: ReleaseRequest,
    follow: bool,
) -> anyhow::Result<i32> {
    let ReleaseRequest {
        version,
        reason,
        override_alarms,
    } = request;
    let accepted = client
        .post(
            &format!("/v1/services/{service}/releases"),
            &json!({ "version": version, "reason": reason, "override_alarms": override_alarms }),
        )
        .await?;
    let id = accepted["rollout_id"].as_str().unwrap_or_default();
    if accepted["action"].as_str() == Some("attach") {
        line(format!(
            "{service} {version} is already rolling out (rollout {id}); following it"
        ))?;
    } else {
        line(format!("Releasing {service} {version} (rollout {id})"))?;
    }
    if !follow {
        return Ok(0);
    }
    follow_rollout(client, service, id).await
}

pub async fn rollback(
    client: &Client,
    service: &str,
    to_version: Option<String>,
    reason: Option<String>,
    follow: bool,
) -> anyhow::Result<i32> {
    let accepted = client
        .post(
            &format!("/v1/services/{service}/rollback"),
            &json!({ "to_version": to_version, "reason": reason }),
        )
        .await?;
    let id = accepted["rollout_id"].as_str().unwrap_or_default();
    match accepted["action"].as_str() {
        Some("abort") => line(format!(
            "Rolling back the rollout in progress of {service}: traffic returns to the previous version"
        ))?,
        _ => line(format!(
            "Rolling {service} back to {} (rollout {id})",
            accepted["version"].as_str().unwrap_or("?")
        ))?,
    }
    if !follow {
        return Ok(0);
    }
    follow_rollout(client, service, id).await
}

/// Polls the service until the rollout ends; prints a line whenever the picture changes.
/// Exits 0 when the rollout completed, 1 when it was rolled back or superseded.
async fn follow_rollout(client: &Client, service: &str, rollout_id: &str) -> anyhow::Result<i32> {
    let started = Instant::now();
    let mut last_line = String::new();
    loop {
        let status = fetch_status(client, service).await?;
        let elapsed = started.elapsed().as_secs();
        if let Some(done) = status
            .history
            .iter()
            .find(|h| h.id.to_string() == rollout_id)
        {
            let (text, code) = render::rollout_end(service, done);
            line(format!("[{elapsed:>4}s] {text}"))?;
            return Ok(code);
        }
        let progress = render::progress_line(&status);
        if progress != last_line {
            line(format!("[{elapsed:>4}s] {progress}"))?;
            last_line = progress;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn fetch_status(client: &Client, service: &str) -> anyhow::Result<ServiceStatus> {
    serde_json::from_value(client.get(&format!("/v1/services/{service}")).await?)
        .context("read the roller's status of the service")
}

/// pause, resume, promote and abort: one request, one line.
pub async fn simple(
    client: &Client,
    service: &str,
    what: &str,
    body: Value,
) -> anyhow::Result<i32> {
    client
        .post(&format!("/v1/services/{service}/{what}"), &body)
        .await?;
    line(format!("{what}: accepted for {service}"))?;
    Ok(0)
}

pub async fn status(client: &Client, service: &str) -> anyhow::Result<i32> {
    print(&render::status(&fetch_status(client, service).await?))?;
    Ok(0)
}

pub async fn services(client: &Client) -> anyhow::Result<i32> {
    let list = client.get("/v1/services").await?;
    for name in list["services"].as_array().into_iter().flatten() {
        line(name.as_str().unwrap_or_default())?;
    }
    Ok(0)
}

pub async fn plan(client: &Client, service: &str, version: &str) -> anyhow::Result<i32> {
    let plan = client
        .get_query(
            &format!("/v1/services/{service}/plan"),
            &[("version", version.to_string())],
        )
        .await?;
    print(&render::plan(&plan))?;
    Ok(0)
}

/// The service's log from the start; without `follow`, up to where it was when asked.
pub async fn events(client: &Client, service: &str, follow: bool) -> anyhow::Result<i32> {
    let mut events = client
        .events(&format!("/v1/services/{service}/events"), None)
        .await?;
    while let Some(event) = events.next().await {
        let event = event.context("read the event stream")?;
        if event.event.as_deref() == Some("caught-up") {
            if !follow {
                return Ok(0);
            }
            continue;
        }
        let data = event.data.as_deref().unwrap_or_default();
        let v: Value = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
        line(render::event_line(&v))?;
    }
    Ok(0)
}
