//! The roller's commands about one service: release and rollback (followed until they end),
//! pause, resume, promote, abort, status, plan, the service list and its event log.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use ionroller_roller::api::views::ServiceStatus;
use serde_json::{json, Value};

use crate::args::FollowArgs;
use crate::client::Client;
use crate::exit::{self, Failure};
use crate::output::{self, line, print};
use crate::render;

/// Whether and how long a command follows the rollout it started.
pub struct Follow {
    pub follow: bool,
    pub timeout: Option<Duration>,
}

impl From<FollowArgs> for Follow {
    fn from(args: FollowArgs) -> Self {
        Follow {
            follow: !args.no_follow,
            timeout: args.timeout,
        }
    }
}

/// What the person asked of the rollout being followed, which decides the exit code.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// That it complete (a release, a rollback to a version, a watch).
    Completion,
    /// That it stop (a rollback of the rollout in progress): going back is success, and a
    /// completion or a newer release means it did not stop.
    Stop,
}

/// How progress is shown: one line per change, or the whole status redrawn in place (a
/// terminal, for `watch`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Show {
    Lines,
    Redraw,
}

pub struct ReleaseRequest {
    pub version: String,
    pub reason: Option<String>,
    pub override_alarms: bool,
}

pub async fn release(
    client: &Client,
    service: &str,
    request: ReleaseRequest,
    follow: Follow,
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
    let id = rollout_id(&accepted)?;
    if accepted["action"].as_str() == Some("attach") {
        output::say(format!(
            "{service} {version} is already rolling out (rollout {id}); following it"
        ))?;
    } else {
        output::say(format!("Releasing {service} {version} (rollout {id})"))?;
    }
    if !follow.follow {
        output::answer(&accepted, String::new)?;
        return Ok(exit::OK);
    }
    let show = Show::Lines;
    follow_rollout(client, service, id, follow.timeout, show, Asked::Completion).await
}

fn rollout_id(accepted: &Value) -> anyhow::Result<&str> {
    accepted["rollout_id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| anyhow::anyhow!("the roller's answer names no rollout_id: {accepted}"))
}

pub async fn rollback(
    client: &Client,
    service: &str,
    to_version: Option<String>,
    reason: Option<String>,
    follow: Follow,
) -> anyhow::Result<i32> {
    let accepted = client
        .post(
            &format!("/v1/services/{service}/rollback"),
            &json!({ "to_version": to_version, "reason": reason }),
        )
        .await?;
    let id = rollout_id(&accepted)?;
    let aborting = accepted["action"].as_str() == Some("abort");
    if aborting {
        output::say(format!(
            "Rolling back the rollout in progress of {service}: traffic returns to the previous version"
        ))?;
    } else {
        output::say(format!(
            "Rolling {service} back to {} (rollout {id})",
            accepted["version"].as_str().unwrap_or("?")
        ))?;
    }
    if !follow.follow {
        output::answer(&accepted, String::new)?;
        return Ok(exit::OK);
    }
    let asked = if aborting {
        Asked::Stop
    } else {
        Asked::Completion
    };
    follow_rollout(client, service, id, follow.timeout, Show::Lines, asked).await
}

/// `ionroller watch` (and `status -w`): follows the rollout in progress, if any.
pub async fn watch(
    client: &Client,
    service: &str,
    timeout: Option<Duration>,
) -> anyhow::Result<i32> {
    let answer = client.get(&format!("/v1/services/{service}")).await?;
    let status: ServiceStatus = serde_json::from_value(answer.clone())
        .context("read the roller's status of the service")?;
    let Some(rollout) = &status.rollout else {
        output::answer(&answer, || {
            format!(
                "{}Nothing in progress for {service}.\n",
                render::status(&status)
            )
        })?;
        return Ok(exit::OK);
    };
    let show = if std::io::IsTerminal::is_terminal(&std::io::stdout()) && !output::json() {
        Show::Redraw
    } else {
        output::say(format!(
            "Watching {service} {} (rollout {})",
            rollout.version, rollout.id
        ))?;
        Show::Lines
    };
    let id = rollout.id.to_string();
    follow_rollout(client, service, &id, timeout, show, Asked::Completion).await
}

/// Polls the service until the rollout ends, showing each change (with `-o json`, only the
/// rollout's record at the end); exits with the outcome judged against what was `asked`.
/// `timeout` ends the following (never the rollout) with [`exit::TIMED_OUT`], Ctrl-C with
/// [`exit::INTERRUPTED`], each saying how to attach again. A roller that cannot be reached
/// (a restart, a failover between replicas) is waited for, not taken for an outcome.
async fn follow_rollout(
    client: &Client,
    service: &str,
    rollout_id: &str,
    timeout: Option<Duration>,
    show: Show,
    asked: Asked,
) -> anyhow::Result<i32> {
    let started = Instant::now();
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let until_deadline = async move {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(until_deadline);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let again = format!("the rollout goes on; follow it again with `ionroller watch {service}`");
    let mut last = String::new();
    let mut unreachable_since: Option<Instant> = None;
    loop {
        let fetched = tokio::select! {
            status = fetch_status(client, service) => status,
            _ = &mut until_deadline => {
                return Err(timed_out(timeout, &again));
            }
            _ = &mut interrupted => return stopped_following(service, &again),
        };
        let status = match fetched {
            Ok(status) => {
                if unreachable_since.take().is_some() {
                    warn("the roller answers again; following");
                }
                status
            }
            Err(e) if exit::code_of(&e) == exit::UNREACHABLE => {
                if unreachable_since.is_none() {
                    warn(&format!(
                        "{e:#}; still following (Ctrl-C or --timeout to stop)"
                    ));
                    unreachable_since = Some(Instant::now());
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = &mut until_deadline => return Err(timed_out(timeout, &again)),
                    _ = &mut interrupted => return stopped_following(service, &again),
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        let elapsed = started.elapsed().as_secs();
        if let Some(done) = status
            .history
            .iter()
            .find(|h| h.id.to_string() == rollout_id)
        {
            let (text, code) = render::rollout_end(service, done);
            if show == Show::Redraw {
                print(&format!("{CLEAR}{}", render::status(&status)))?;
            }
            let record = serde_json::to_value(done).unwrap_or_default();
            output::answer(&record, || format!("[{elapsed:>4}s] {text}\n"))?;
            return Ok(match asked {
                Asked::Completion => code,
                Asked::Stop if done.outcome == "rolled_back" => exit::OK,
                Asked::Stop => exit::STOPPED,
            });
        }
        let progress = render::progress_line(&status);
        let picture = match show {
            Show::Lines => progress.clone(),
            Show::Redraw => render::status(&status),
        };
        if picture != last && !output::json() {
            match show {
                Show::Lines => line(format!("[{elapsed:>4}s] {progress}"))?,
                Show::Redraw => print(&format!(
                    "{CLEAR}{picture}\n[{elapsed:>4}s] {progress}\n(Ctrl-C stops watching, not the rollout)\n"
                ))?,
            }
            last = picture;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            _ = &mut until_deadline => return Err(timed_out(timeout, &again)),
            _ = &mut interrupted => return stopped_following(service, &again),
        }
    }
}

/// Moves the cursor home and clears the screen (ANSI), for a redraw in place.
const CLEAR: &str = "\x1b[H\x1b[2J";

fn timed_out(timeout: Option<Duration>, again: &str) -> anyhow::Error {
    let after = timeout.map_or_else(String::new, |t| {
        format!(" after {}", humantime::format_duration(t))
    });
    Failure::new(exit::TIMED_OUT, format!("timed out{after}: {again}")).into()
}

fn stopped_following(service: &str, again: &str) -> anyhow::Result<i32> {
    warn(&format!("\nstopped following {service}: {again}"));
    Ok(exit::INTERRUPTED)
}

/// A line on stderr: standard output may be a pipe that only wants the progress or JSON.
fn warn(text: &str) {
    let _ = std::io::Write::write_all(
        &mut std::io::stderr().lock(),
        format!("{text}\n").as_bytes(),
    );
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
    let answer = client
        .post(&format!("/v1/services/{service}/{what}"), &body)
        .await?;
    output::answer(&answer, || format!("{what}: accepted for {service}\n"))?;
    Ok(0)
}

pub async fn status(client: &Client, service: &str) -> anyhow::Result<i32> {
    let answer = client.get(&format!("/v1/services/{service}")).await?;
    let status: ServiceStatus = serde_json::from_value(answer.clone())
        .context("read the roller's status of the service")?;
    output::answer(&answer, || render::status(&status))?;
    Ok(exit::OK)
}

/// Every service the caller may read, with its stable version, its rollout's stage and step
/// and what needs attention (the console's fleet view, from the same reads).
pub async fn services(client: &Client) -> anyhow::Result<i32> {
    let list = client.get("/v1/services").await?;
    let names: Vec<String> = list["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    // A few at a time: one slow service does not hold up the list, nor do hundreds of
    // requests at once weigh on the roller.
    let statuses: Vec<ServiceStatus> = futures::stream::iter(names.iter())
        .map(|name| fetch_status(client, name))
        .buffered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let rows: Vec<Value> = statuses.iter().map(render::service_row).collect();
    output::answer(&json!({ "services": rows }), || {
        render::services_table(&statuses)
    })?;
    Ok(exit::OK)
}

pub async fn plan(client: &Client, service: &str, version: &str) -> anyhow::Result<i32> {
    let plan = client
        .get_query(
            &format!("/v1/services/{service}/plan"),
            &[("version", version.to_string())],
        )
        .await?;
    output::answer(&plan, || render::plan(&plan))?;
    Ok(exit::OK)
}

/// The service's log from the start, one sentence per event (the audit's wording), or with
/// `raw` (or `-o json`) each event as the API sends it; without `follow`, up to where it was
/// when asked.
pub async fn events(
    client: &Client,
    service: &str,
    follow: bool,
    raw: bool,
) -> anyhow::Result<i32> {
    let mut events = client
        .events(&format!("/v1/services/{service}/events"), None)
        .await?;
    let cut = |why: String| -> anyhow::Error { Failure::new(exit::UNREACHABLE, why).into() };
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| cut(format!("the event stream broke off: {e}")))?;
        match event.event.as_deref() {
            Some("caught-up") if !follow => return Ok(exit::OK),
            Some("caught-up") => continue,
            Some("error") => {
                return Err(cut(format!(
                    "the roller could not read the log further: {}",
                    event.data.as_deref().unwrap_or_default()
                )))
            }
            _ => {}
        }
        let data = event.data.as_deref().unwrap_or_default();
        let v: Value = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
        if raw {
            line(serde_json::to_string(&v)?)?;
        } else {
            output::record(&v, || render::event_sentence(&v))?;
        }
    }
    // The stream ended before it caught up, or while it was followed: the output is short.
    Err(cut(
        "the roller ended the event stream (did it stop?)".into()
    ))
}
