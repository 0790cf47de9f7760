//! Against the AWS emulators (start them as scripts/test.sh does; scripts/bench.sh does it):
//! how long from an alarm entering ALARM to all traffic back on the previous version, with a
//! 5-second observation interval, and how many AWS calls one reconcile pass of a quiet service
//! makes, early and after more history.
//!
//! Then, through the driver itself against a private EB stand-in (so that the region holds only
//! the bench's environments): AWS calls per quiet pass of 1, 10 and 100 services in one
//! account-region, each service with one environment and one alarm, read shared (as `up` does)
//! and each service on its own (the driver before shared reads).
//!
//! `cargo bench -p ionroller-e2e --bench aws -- [--trials N] [--write BENCHMARKS.md]`
//! (needs the `ionroller` binary built in the same profile: `cargo build --bin ionroller`).

#[path = "../../stores/tests/benches/report.rs"]
mod report;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::types::StateValue;
use chrono::Utc;
use ionroller_aws::testkit::{Fixture, PrivateBeanstalk};
use ionroller_aws::AwsCloud;
use ionroller_shared::cloud::Cloud;
use ionroller_shared::config::ServiceConfig;
use ionroller_shared::events::{Action, EnvironmentStatus};
use serde_json::json;
use support::fault_proxy::FaultProxy;
use support::{environment_of, Server};

const INTERVAL_MS: u64 = 5000;

struct Proxies {
    moto: FaultProxy,
    cloudwatch: FaultProxy,
    eb: FaultProxy,
}

impl Proxies {
    fn calls(&self) -> BTreeMap<String, u64> {
        let mut all = BTreeMap::new();
        for p in [&self.moto, &self.cloudwatch, &self.eb] {
            for (op, n) in p.calls() {
                *all.entry(op).or_insert(0) += n;
            }
        }
        all
    }
}

fn diff(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(op, n)| (op.clone(), n - before.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Calls per pass over `passes` quiet passes (a pass is one DescribeEnvironments).
async fn idle_calls(proxies: &Proxies, passes: u64) -> (f64, BTreeMap<String, u64>) {
    let before = proxies.calls();
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS * passes + 500)).await;
    let d = diff(&proxies.calls(), &before);
    let observed = d.get("DescribeEnvironments").copied().unwrap_or(1).max(1);
    let total: u64 = d.values().sum();
    (total as f64 / observed as f64, d)
}

async fn release_to_canary(server: &Server, service: &str, version: &str) {
    server.cli_ok(&["release", service, version, "--no-follow"]);
    server
        .wait_for(service, 120, "the canary", |s| {
            s["rollout"]["version"] == version
                && s["rollout"]["waiting_for"]
                    .as_str()
                    .is_some_and(|w| w.starts_with("promote"))
        })
        .await;
}

/// One pass: every service observed at once; the driver's calls made, by API.
async fn pass_calls(
    cloud: &AwsCloud,
    services: &[(String, ServiceConfig)],
) -> Result<BTreeMap<String, u64>, String> {
    let before = cloud.calls_by_api();
    let views = futures::future::join_all(services.iter().map(|(s, c)| cloud.observe(s, c))).await;
    for v in views {
        v.map_err(|e| e.to_string())?;
    }
    Ok(cloud
        .calls_by_api()
        .into_iter()
        .map(|(api, n)| (api.to_string(), n - before.get(api).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect())
}

/// Calls per quiet pass at 1, 10 and 100 services, shared and not: the section's table.
async fn calls_per_pass(f: &Fixture) -> Result<String, String> {
    let eb = PrivateBeanstalk::start(100).await?;
    let window = ionroller_aws::DEFAULT_OBSERVATION_WINDOW;
    let shared = AwsCloud::from_env()
        .await
        .with_beanstalk_endpoint(&eb.url)
        .with_calls_per_second(std::num::NonZeroU32::new(1000).ok_or("1000")?);
    let alone = AwsCloud::from_env()
        .await
        .with_beanstalk_endpoint(&eb.url)
        .with_observation_window(Duration::ZERO)
        .with_calls_per_second(std::num::NonZeroU32::new(1000).ok_or("1000")?);
    let mut services: Vec<(String, ServiceConfig)> = Vec::new();
    let mut rows = String::new();
    for target in [1usize, 10, 100] {
        while services.len() < target {
            let i = services.len();
            let service = format!("calls{i}{}", f.id);
            let alarm = format!("{service}-errors");
            f.create_alarm(&alarm, &format!("errors{i}"), 1000.0)
                .await?;
            let mut config: ServiceConfig =
                serde_json::from_str(&support::example_config()).map_err(|e| e.to_string())?;
            f.configure(&mut config);
            config.instances.min = 1;
            config.rollout.alarms = vec![alarm];
            let create = Action::CreateEnvironment {
                environment: format!("{service}-v1-aaaaaa"),
                version: "v1".into(),
                config_version: 1,
                config: Box::new(config.clone()),
            };
            alone
                .execute(&service, &config, uuid::Uuid::new_v4(), &create)
                .await
                .map_err(|e| e.to_string())?;
            services.push((service, config));
        }
        // Wait until every environment is Ready with its instance.
        let deadline = Instant::now() + Duration::from_secs(300);
        for (service, config) in &services {
            loop {
                let view = alone
                    .observe(service, config)
                    .await
                    .map_err(|e| e.to_string())?;
                if view
                    .environments
                    .first()
                    .is_some_and(|e| e.status == EnvironmentStatus::Ready && e.instances.len() == 1)
                {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("{service} never became Ready"));
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        // Shared: a first pass tells the driver which services the region has; the next,
        // once the window has passed, is what every later pass costs.
        pass_calls(&shared, &services).await?;
        tokio::time::sleep(window + Duration::from_millis(100)).await;
        let with = pass_calls(&shared, &services).await?;
        let without = pass_calls(&alone, &services).await?;
        let total = |m: &BTreeMap<String, u64>| m.values().sum::<u64>();
        let ops = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(op, n)| format!("{op} ×{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "{target} services: {} calls shared ({}), {} each on its own",
            total(&with),
            ops(&with),
            total(&without)
        );
        rows.push_str(&format!(
            "| {target} | {} | {} | {:.2} | {} |\n",
            total(&with),
            total(&without),
            total(&with) as f64 / total(&without).max(1) as f64,
            ops(&with)
        ));
    }
    Ok(format!(
        "Measured {} on {}; `cargo bench -p ionroller-e2e --bench aws` (this table first), the \
         driver's own count of SDK operations against moto, ministack and a private EB stand-in \
         (pages of 100), one account-region, each service with one Ready environment of one \
         instance and one alarm, every service observed at once as a pass does.\n\n\
         | services | calls per pass, shared reads | each service on its own (before) | ratio | shared, by API |\n\
         |---:|---:|---:|---:|---|\n{rows}",
        Utc::now().format("%Y-%m-%d"),
        report::machine(),
    ))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut write: Option<PathBuf> = None;
    let mut trials = 5usize;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--write" => write = args.next().map(PathBuf::from),
            "--trials" => trials = args.next().and_then(|t| t.parse().ok()).unwrap_or(trials),
            _ => {}
        }
    }
    if std::env::var_os("IONROLLER_AWS_EMULATORS").is_none() {
        println!("skipped: the AWS emulators are not running (scripts/bench.sh starts them)");
        return Ok(());
    }
    let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
    let proxies = Proxies {
        moto: FaultProxy::start(&var("AWS_ENDPOINT_URL")?).await,
        cloudwatch: FaultProxy::start(&var("AWS_ENDPOINT_URL_CLOUDWATCH")?).await,
        eb: FaultProxy::start(&var("AWS_ENDPOINT_URL_ELASTIC_BEANSTALK")?).await,
    };
    let f = Fixture::new().await?;
    let calls = calls_per_pass(&f).await?;
    println!("{calls}");
    if let Some(path) = &write {
        report::replace_section(path, "aws-calls", &calls).map_err(|e| e.to_string())?;
    }
    if std::env::args().any(|a| a == "--calls-only") {
        return Ok(());
    }
    let service = format!("bench{}", f.id);
    let alarm = format!("{}-errors", f.id);
    f.create_alarm(&alarm, "errors", 1000.0).await?;
    f.set_alarm_state(&alarm, StateValue::Ok, "quiet").await?;

    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let interval = INTERVAL_MS.to_string();
    let env = [
        ("AWS_ENDPOINT_URL", proxies.moto.url.as_str()),
        (
            "AWS_ENDPOINT_URL_CLOUDWATCH",
            proxies.cloudwatch.url.as_str(),
        ),
        (
            "AWS_ENDPOINT_URL_ELASTIC_BEANSTALK",
            proxies.eb.url.as_str(),
        ),
    ];
    let server = Server::start_with(
        dir.path(),
        &["--cloud", "aws", "--interval-ms", &interval],
        &env,
    );
    let mut config = serde_json::from_str(&support::example_config()).map_err(|e| e.to_string())?;
    f.configure(&mut config);
    let mut config = serde_json::to_value(config).map_err(|e| e.to_string())?;
    config["instances"]["min"] = json!(2);
    config["instances"]["max"] = json!(2);
    config["rollout"]["alarms"] = json!([alarm]);
    config["rollout"]["keep_old_for"] = json!("10s");
    let path = dir.path().join("config.json");
    std::fs::write(&path, config.to_string()).map_err(|e| e.to_string())?;
    server.cli_ok(&["config", "set", &service, path.to_str().unwrap_or_default()]);

    // v1 serves everything.
    release_to_canary(&server, &service, "v1").await;
    server.cli_ok(&["promote", &service]);
    server
        .wait_for(&service, 120, "v1 to finish", |s| s["rollout"].is_null())
        .await;
    let (early, early_ops) = idle_calls(&proxies, 4).await;

    // Each trial: a release to its canary, then the alarm; time until the load balancer
    // (read directly) has only v1's instances in service.
    let mut times = Vec::new();
    for trial in 0..trials {
        let version = format!("v{}", trial + 2);
        release_to_canary(&server, &service, &version).await;
        let status = server.get(&format!("/v1/services/{service}")).await;
        let (old, new) = (
            environment_of(&status, "v1"),
            environment_of(&status, &version),
        );
        f.set_alarm_state(
            &alarm,
            StateValue::Alarm,
            "bench: error rate over threshold",
        )
        .await?;
        let start = Instant::now();
        loop {
            if f.share_of(&old).await? == 100 && f.share_of(&new).await? == 0 {
                break;
            }
            if start.elapsed() > Duration::from_secs(120) {
                return Err(format!("trial {trial}: traffic never went back"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let took = start.elapsed().as_secs_f64();
        println!("trial {trial}: alarm → all traffic on v1 in {took:.2} s");
        times.push(took);
        f.set_alarm_state(&alarm, StateValue::Ok, "quiet").await?;
        server
            .wait_for(
                &service,
                60,
                "the rollback to settle and the alarm to clear",
                |s| {
                    s["rollout"].is_null()
                        && s["alarms"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .all(|a| a["state"] == "OK")
                },
            )
            .await;
    }
    // Rolled-back environments are terminated after keep_old_for; once only v1's is left
    // (and EB no longer lists the others), measure again.
    server
        .wait_for(&service, 180, "only v1's environment to be left", |s| {
            s["environments"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["terminated"] == false)
                .count()
                == 1
        })
        .await;
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS)).await;
    let (late, late_ops) = idle_calls(&proxies, 4).await;
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    let worst = times.last().copied().unwrap_or(f64::NAN);
    let best = times.first().copied().unwrap_or(f64::NAN);
    let ops = |m: &BTreeMap<String, u64>| {
        m.iter()
            .map(|(op, n)| format!("{op} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let section = format!(
        "Measured {} on {}; `cargo bench -p ionroller-e2e --bench aws` against moto 5.2.5, \
         ministack 1.5.33 and the EB stand-in, `ionroller up --cloud aws --interval-ms {INTERVAL_MS}`, \
         calls counted by a pass-through proxy in front of each emulator.\n\n\
         | figure | measured | target |\n|---|---|---|\n\
         | alarm set to ALARM → all traffic back on the previous version (load balancer read directly), {trials} trials | median {median:.1} s, best {best:.1} s, worst {worst:.1} s | ≤ 15 s |\n\
         | AWS calls per reconcile pass, quiet service, after 1 release | {early:.1} | small, bounded |\n\
         | the same after {} more releases, each rolled back and its environment terminated | {late:.1} | does not grow with history |\n\n\
         Quiet passes, 4 intervals, early: {}; late: {}.\n",
        Utc::now().format("%Y-%m-%d"),
        report::machine(),
        trials,
        ops(&early_ops),
        ops(&late_ops),
    );
    println!("{section}");
    if let Some(path) = write {
        report::replace_section(&path, "aws-bench", &section).map_err(|e| e.to_string())?;
    }
    Ok(())
}
