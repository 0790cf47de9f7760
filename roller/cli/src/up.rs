//! `ionroller up`: one process with the event store, a cloud (simulated or AWS), the roller
//! (`ionroller_roller::serve`) and trail (`ionroller_trail::serve`), stopped together by one
//! signal. This is the only place that knows the concrete stores and clouds.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ionroller_roller::clock::{Clock, SystemClock};
use ionroller_roller::cloud::sim::SimCloud;
use ionroller_roller::{CloudDriver, RollerConfig};
use ionroller_shared::store::EventStore;
use ionroller_store_postgres::{PgOptions, PgStore};
use ionroller_store_sqlite::{SqliteOptions, SqliteStore};

use crate::args::CloudKind;

/// Where `up` keeps the event log.
pub enum StoreChoice {
    /// `events.sqlite` in the data directory.
    Embedded,
    Postgres {
        url: String,
        schema: String,
    },
}

/// Runs the roller and its API until Ctrl-C (or SIGTERM).
pub async fn up(
    data_dir: PathBuf,
    store: StoreChoice,
    cloud: CloudKind,
    listen: &str,
    trail_listen: &str,
    interval: Duration,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    let store: Arc<dyn EventStore> = match store {
        StoreChoice::Embedded => Arc::new(
            SqliteStore::open(data_dir.join("events.sqlite"), SqliteOptions::default())
                .context("open the embedded event store")?,
        ),
        StoreChoice::Postgres { url, schema } => Arc::new(
            PgStore::open(PgOptions::new(url).schema(schema))
                .await
                .context("open the PostgreSQL event store")?,
        ),
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (driver, cloud_line) = match cloud {
        CloudKind::Sim => {
            let sim = SimCloud::open(data_dir.join("sim-cloud.json"), clock.clone())
                .context("open the simulated cloud")?;
            let line = format!("simulated ({})", sim.path().display());
            (CloudDriver::Simulated(sim), line)
        }
        CloudKind::Aws => {
            let aws = ionroller_aws::AwsCloud::from_env().await;
            let region = aws.default_region().unwrap_or_else(|| "none set".into());
            let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "AWS".into());
            let line = format!("AWS (default region {region}, endpoint {endpoint})");
            (CloudDriver::Real(Arc::new(aws)), line)
        }
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listen on {listen}"))?;
    let addr = listener.local_addr().context("read the bound address")?;
    let trail_listener = tokio::net::TcpListener::bind(trail_listen)
        .await
        .with_context(|| format!("listen on {trail_listen} for trail"))?;
    let trail_addr = trail_listener
        .local_addr()
        .context("read trail's bound address")?;
    let trail_db = ionroller_trail::db::TrailDb::open(data_dir.join("trail.sqlite"))
        .context("open trail's projection")?;
    // Trail signs its chain checkpoints with a key kept in the data dir and publishes them
    // to `checkpoints/` there (ARCHITECTURE.md, "Trail").
    let trail_anchoring = ionroller_trail::checkpoints::Anchoring::beside(&data_dir)
        .context("set up trail's signed checkpoints")?;
    say(&format!(
        "ionroller is up\n\
         \x20 API:          http://{addr}/v1   (OpenAPI: http://{addr}/v1/openapi.json)\n\
         \x20 trail:        http://{trail_addr}/   (dashboard; API under /v1)\n\
         \x20 event store:  {}\n\
         \x20 cloud:        {cloud_line}\n\
         \x20 try:          {}\n",
        store.describe(),
        suggestion(cloud),
    ));

    // One signal stops both services; each finishes what it is doing first.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let trail_task = tokio::spawn(ionroller_trail::serve(
        store.clone(),
        trail_db,
        Some(trail_anchoring),
        trail_listener,
        stopped(stop_rx.clone()),
    ));
    let roller_task = tokio::spawn(ionroller_roller::serve(
        RollerConfig { interval, clock },
        store,
        driver,
        listener,
        stopped(stop_rx),
    ));
    shutdown_signal().await;
    say("ionroller: stopping\n");
    let _ = stop_tx.send(true);
    match trail_task.await {
        Ok(Err(e)) => complain(&format!("ionroller: trail stopped: {e:#}")),
        Err(e) => complain(&format!("ionroller: trail task: {e}")),
        Ok(Ok(())) => {}
    }
    roller_task
        .await
        .context("join the roller")?
        .context("serve the roller's API")?;
    Ok(())
}

/// What the banner suggests trying first. On the simulator, the demo config. On AWS, the
/// commented template (`ionroller config init`): it names a Docker solution stack, the instance
/// profile option and a deployment bucket, which the AWS driver requires and examples/hello.json
/// (written for the simulator) lacks.
fn suggestion(cloud: CloudKind) -> &'static str {
    match cloud {
        CloudKind::Sim => {
            "ionroller config set hello examples/hello.json && ionroller release hello v1"
        }
        CloudKind::Aws => {
            "ionroller config init hello > hello.jsonc, set your load balancer and bucket in it, then\n\
             \x20               ionroller config set hello hello.jsonc && ionroller release hello v1"
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Writes `text` to standard output, best effort: a server keeps serving when whoever started
/// it stops reading (`ionroller up | head -3`), so a closed pipe is not an error here.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Writes `text` and a newline to standard error, best effort (`eprintln!` panics on failure).
fn complain(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::config::TEMPLATE;

    /// The config `ionroller up --cloud aws` suggests (the template `config init` prints for the
    /// service it names) is one the AWS driver accepts: stack, instance profile and bucket.
    #[test]
    fn the_aws_banner_suggests_a_config_the_aws_driver_accepts() {
        let line = suggestion(CloudKind::Aws);
        let service = line
            .split("config init ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("the banner suggests `ionroller config init SERVICE`");
        assert!(line.contains(&format!("config set {service} ")), "{line}");
        let json = crate::jsonc::to_json(&TEMPLATE.replace("SERVICE", service))
            .unwrap_or_else(|e| panic!("the template does not parse: {e}"));
        let config = ionroller_shared::config::parse_service_config(&json)
            .unwrap_or_else(|e| panic!("the suggested config is not valid: {e:?}"));
        let problems = ionroller_aws::spec::check_config(&config);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            config.aws.solution_stack.as_deref(),
            Some(ionroller_aws::spec::DEFAULT_SOLUTION_STACK),
            "the stack the driver knows to run Docker"
        );
        // The simulator's suggestion stays the demo config, which AWS would refuse.
        assert!(suggestion(CloudKind::Sim).contains("examples/hello.json"));
    }
}
