//! End to end on AWS emulators: `ionroller up --cloud aws` (the real binary, the real AWS
//! driver) against moto, ministack and the EB stand-in that scripts/test.sh starts. The test
//! reads the load balancer and CloudWatch itself, through the SDK, to check what the roller
//! did.

mod support;

use std::time::Duration;

use aws_sdk_cloudwatch::types::StateValue;
use ionroller_aws::testkit::{emulators_or_skip, Fixture, PrivateBeanstalk};
use serde_json::{json, Value};
use support::fault_proxy::{Fault, FaultProxy};
use support::{environment_of, example_config, metrics_text, share, Server};

fn config_for(f: &Fixture, alarms: &[&str]) -> Value {
    let mut config = serde_json::from_str(&example_config()).expect("example config");
    f.configure(&mut config);
    let mut config = serde_json::to_value(config).expect("config as JSON");
    config["instances"]["min"] = json!(2);
    config["instances"]["max"] = json!(2);
    config["rollout"]["alarms"] = json!(alarms);
    config
}

fn save_config(server: &Server, dir: &std::path::Path, service: &str, config: &Value) {
    let path = dir.join(format!("{service}.json"));
    std::fs::write(&path, config.to_string()).expect("write config");
    let out = server.cli_ok(&["config", "set", service, path.to_str().expect("utf-8")]);
    assert!(out.contains("Saved config version"), "{out}");
}

fn finish(mut child: std::process::Child) -> (i32, String) {
    let status = child.wait().expect("CLI finishes");
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        use std::io::Read;
        let _ = stdout.read_to_string(&mut out);
    }
    (status.code().unwrap_or(-1), out)
}

async fn wait_step_done(server: &Server, service: &str, step: u64) -> Value {
    server
        .wait_for(service, 60, &format!("step {step} to complete"), |s| {
            s["rollout"]["step"] == step && s["rollout"]["stage"] == "step_done"
                || s["rollout"].is_null()
        })
        .await
}

/// v1 (a first release: one step), then v2 through its canary (held until promoted) and steps
/// 25%, 50%, 100% of the new environment's capacity: 1 new beside 2 old (as the canary, so no
/// pause), 1 beside 1, 2 alone. `lb_share` reads a
/// version's share off the load balancer itself; it must match at every stage. Returns v2's
/// environment.
async fn release_v1_then_v2_by_steps<F, Fut>(server: &Server, service: &str, lb_share: F) -> String
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = u32>,
{
    // A first release: all traffic once healthy, no canary.
    let release = server.cli_spawn(&["release", service, "v1"]);
    let (code, out) = finish(release);
    assert_eq!(code, 0, "{out}");
    let status = server.get(&format!("/v1/services/{service}")).await;
    assert_eq!(lb_share(environment_of(&status, "v1")).await, 100);

    let release = server.cli_spawn(&["release", service, "v2"]);
    let canary = server.wait_for_promote_of(service, "v2 canary").await;
    let v2 = environment_of(&canary, "v2");
    assert_eq!(lb_share(v2.clone()).await, 33);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let still = server.get(&format!("/v1/services/{service}")).await;
    assert_eq!(
        still["rollout"]["step"], 1,
        "the canary holds until promoted"
    );
    assert_eq!(lb_share(v2.clone()).await, 33);
    server.cli_ok(&["promote", service]);
    let mut seen = Vec::new();
    // 25% of two instances is the canary's one: that step changes nothing and does not pause.
    for step in 3..=4u64 {
        let s = wait_step_done(server, service, step).await;
        let on_lb = lb_share(v2.clone()).await;
        assert_eq!(
            on_lb,
            share(&s, "v2"),
            "the roller's view matches the load balancer"
        );
        seen.push(on_lb);
        // The last step's completion and the rollout's are one pass: then the rollout is done.
        if s["rollout"].is_null() {
            break;
        }
    }
    let (code, out) = finish(release);
    assert_eq!(code, 0, "{out}");
    assert_eq!(seen, vec![50, 100], "load balancer shares at 50%, 100%");
    assert_eq!(lb_share(v2.clone()).await, 100);
    v2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_release_on_an_alb_moves_listener_weights_by_steps() {
    if !emulators_or_skip("aws_release_on_an_alb_moves_listener_weights_by_steps") {
        return;
    }
    let f = Fixture::new().await.expect("fixture");
    let alb = f.create_alb().await.expect("alb");
    let service = format!("alb{}", f.id);
    // This service lives in "another account": the roller assumes its role (STS in moto,
    // behind a counting proxy), and every call uses the role's credentials.
    let sts = FaultProxy::start(&std::env::var("AWS_ENDPOINT_URL").expect("moto")).await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start_with(
        dir.path(),
        &["--cloud", "aws", "--interval-ms", "300"],
        &[("AWS_ENDPOINT_URL_STS", sts.url.as_str())],
    );
    let mut config = config_for(&f, &[]);
    config["endpoint"]["load_balancer"] = json!({ "kind": "alb", "name": alb.listener });
    config["aws"]["role_arn"] = json!("arn:aws:iam::123456789012:role/ionroller-deployer");
    // A secret goes to Elastic Beanstalk as a reference in its own namespace (the stand-in
    // checks the ARN's form, as EB does); its value is never in the log.
    let secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:alb/db-AbCd12";
    config["secrets"] = json!({ "DB_PASSWORD": secret });
    save_config(&server, dir.path(), &service, &config);
    let listener = alb.listener.clone();
    let f = &f;
    let v2 = release_v1_then_v2_by_steps(&server, &service, |env| {
        let listener = listener.clone();
        async move { f.alb_share_of(&listener, &env).await.expect("share").0 }
    })
    .await;
    let (_, healthy) = f.alb_share_of(&alb.listener, &v2).await.expect("share");
    assert_eq!(healthy, 2, "v2's target group has both instances, healthy");
    let secrets = ionroller_aws::testkit::environment_secrets(&v2)
        .await
        .expect("the stand-in's record of v2");
    assert_eq!(
        secrets.get("DB_PASSWORD").map(String::as_str),
        Some(secret),
        "{secrets:?}"
    );
    let calls = sts.calls();
    assert!(
        calls.get("AssumeRole").copied().unwrap_or(0) >= 1,
        "the service's role was assumed: {calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_release_moves_traffic_by_steps_and_alarms_roll_back() {
    if !emulators_or_skip("aws_release_moves_traffic_by_steps_and_alarms_roll_back") {
        return;
    }
    let f = Fixture::new().await.expect("fixture");
    let service = format!("aws{}", f.id);
    let set_alarm = format!("{}-errors", f.id);
    let metric_alarm = format!("{}-5xx", f.id);
    f.create_alarm(&set_alarm, "errors", 1000.0)
        .await
        .expect("alarm");
    f.create_alarm(&metric_alarm, "5xx", 5.0)
        .await
        .expect("alarm");
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start_with(dir.path(), &["--cloud", "aws", "--interval-ms", "300"], &[]);

    // What the AWS driver needs is checked when the config is saved, naming the field.
    let mut incomplete = config_for(&f, &[]);
    incomplete["aws"]
        .as_object_mut()
        .expect("aws section")
        .remove("deployment_bucket");
    let path = dir.path().join("incomplete.json");
    std::fs::write(&path, incomplete.to_string()).expect("write config");
    let out = server.cli(&["config", "set", &service, path.to_str().expect("utf-8")]);
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("aws.deployment_bucket"), "{text}");

    save_config(
        &server,
        dir.path(),
        &service,
        &config_for(&f, &[&set_alarm, &metric_alarm]),
    );

    let fixture = &f;
    let v2 = release_v1_then_v2_by_steps(&server, &service, |env| async move {
        fixture.share_of(&env).await.expect("share")
    })
    .await;
    assert_eq!(f.instance_health().await.expect("health").len(), 2);
    assert_eq!(f.share_of(&v2).await.expect("share"), 100);

    // v3: an alarm set to ALARM mid-rollout sends all traffic back to v2.
    let release = server.cli_spawn(&["release", &service, "v3"]);
    server.wait_for_promote_of(&service, "v3 canary").await;
    server.cli_ok(&["promote", &service]);
    wait_step_done(&server, &service, 3).await;
    f.set_alarm_state(&set_alarm, StateValue::Alarm, "error rate 12% > 5%")
        .await
        .expect("set alarm");
    let (code, out) = finish(release);
    assert_eq!(code, 1, "rolled back: {out}");
    assert!(out.contains("error rate 12% > 5%"), "{out}");
    assert_eq!(f.share_of(&v2).await.expect("share"), 100);
    let events = server.cli_ok(&["events", &service, "--raw"]);
    let rolled_back = events
        .lines()
        .find(|l| l.contains(r#""type":"rolled-back""#))
        .expect("a rolled-back event");
    assert!(
        rolled_back.contains(&set_alarm) && rolled_back.contains("error rate 12% > 5%"),
        "the rollback records the alarm's evidence: {rolled_back}"
    );
    f.set_alarm_state(&set_alarm, StateValue::Ok, "recovered")
        .await
        .expect("reset alarm");
    server
        .wait_for(&service, 20, "the alarm to clear", |s| {
            s["alarms"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|a| a["state"] != "ALARM")
        })
        .await;

    // v4: this time CloudWatch evaluates the alarm itself from a breaching datapoint.
    let release = server.cli_spawn(&["release", &service, "v4"]);
    server.wait_for_promote_of(&service, "v4 canary").await;
    server.cli_ok(&["promote", &service]);
    wait_step_done(&server, &service, 3).await;
    f.put_metric("5xx", 100.0).await.expect("metric");
    let (code, out) = finish(release);
    assert_eq!(code, 1, "rolled back: {out}");
    assert!(out.contains("Threshold Crossed"), "{out}");
    assert_eq!(f.share_of(&v2).await.expect("share"), 100);
    let events = server.cli_ok(&["events", &service, "--raw"]);
    let evidence = events
        .lines()
        .rfind(|l| l.contains(r#""type":"rolled-back""#))
        .expect("a second rolled-back event");
    assert!(
        evidence.contains(&metric_alarm) && evidence.contains("\"value\":100.0"),
        "the evidence quotes the datapoint: {evidence}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_kill_between_intent_and_outcome_and_injected_faults_converge() {
    if !emulators_or_skip("aws_kill_between_intent_and_outcome_and_injected_faults_converge") {
        return;
    }
    let f = Fixture::new().await.expect("fixture");
    let service = format!("kil{}", f.id);
    let eb = std::env::var("AWS_ENDPOINT_URL_ELASTIC_BEANSTALK").expect("EB stand-in");
    let moto = std::env::var("AWS_ENDPOINT_URL").expect("moto");
    let eb_proxy = FaultProxy::start(&eb).await;
    let elb_proxy = FaultProxy::start(&moto).await;
    // The environment gets created, but the roller does not hear so before it is killed.
    eb_proxy.inject(
        "CreateEnvironment",
        Fault::HoldAnswer(Duration::from_secs(30)),
        1,
    );
    // Throttling and 5xx on the load balancer, for both actions and observations.
    elb_proxy.inject("RegisterInstancesWithLoadBalancer", Fault::Throttle, 2);
    elb_proxy.inject("DescribeInstanceHealth", Fault::Unavailable, 2);
    let env = [
        ("AWS_ENDPOINT_URL_ELASTIC_BEANSTALK", eb_proxy.url.as_str()),
        (
            "AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING",
            elb_proxy.url.as_str(),
        ),
    ];
    // On PostgreSQL when the suite has one (scripts/test.sh starts it): the kill and restart
    // then also go through that backend.
    let mut args = vec!["--cloud", "aws", "--interval-ms", "300"];
    let pg = std::env::var("IONROLLER_TEST_PG_URL").ok();
    let schema = format!("aws_kill_{}", f.id);
    if let Some(url) = &pg {
        args.extend(["--postgres", url, "--postgres-schema", &schema]);
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start_with(dir.path(), &args, &env);
    let mut config = config_for(&f, &[]);
    config["rollout"]["canary"] = Value::Null;
    config["rollout"]["pause"] = json!("1s");
    save_config(&server, dir.path(), &service, &config);
    server.cli_ok(&["release", &service, "v1", "--no-follow"]);

    // Wait until the create was recorded as intended and EB has the environment, while the
    // answer is still held: then SIGKILL.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let envs = f.environments(&service).await.expect("list");
        if !envs.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "EB never got the create"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = server.cli_ok(&["events", &service, "--raw"]);
    assert!(events.contains("action-intended"), "{events}");
    assert!(!events.contains("action-succeeded"), "{events}");
    server.kill();

    // Restarted, the roller repeats the create, finds the environment and finishes.
    let server = Server::start_with(dir.path(), &args, &env);
    server
        .wait_for(&service, 90, "v1 to serve everything", |s| {
            s["rollout"].is_null() && s["stable_version"] == "v1"
        })
        .await;
    let envs = f.environments(&service).await.expect("list");
    assert_eq!(envs.len(), 1, "one environment, not two: {envs:?}");
    let status = server.get(&format!("/v1/services/{service}")).await;
    assert_eq!(
        f.share_of(&environment_of(&status, "v1"))
            .await
            .expect("share"),
        100
    );

    // Every fault was injected, recorded with its AWS error code, and retried.
    let injected = elb_proxy.injected();
    assert_eq!(injected.len(), 4, "{injected:?}");
    let events = server.cli_ok(&["events", &service, "--raw"]);
    assert!(
        events.contains("already exists"),
        "the repeated create found the environment: {events}"
    );
    let failed = events
        .lines()
        .filter(|l| l.contains(r#""type":"action-failed""#) && l.contains("Throttling"))
        .count();
    assert_eq!(failed, 2, "{events}");
    assert!(
        events
            .lines()
            .any(|l| l.contains(r#""type":"observation-failed""#)
                && l.contains("ServiceUnavailable")),
        "{events}"
    );
    assert!(
        events.contains(r#""type":"observation-recovered""#),
        "{events}"
    );
    // The throttled attempts are in /metrics, by API and region.
    let metrics = metrics_text(&server).await;
    assert!(
        metrics.lines().any(|l| l
            == "ionroller_cloud_api_throttled_total{api=\"RegisterInstancesWithLoadBalancer\",region=\"us-east-1\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l
                .starts_with("ionroller_cloud_api_attempts_total{api=\"DescribeEnvironments\"")),
        "{metrics}"
    );

    // The event store is replaced: a roller on a fresh log over the same service sees the
    // environment as not its own and leaves it alone, even with a warm window of a second.
    server.kill();
    let fresh = tempfile::tempdir().expect("temporary directory");
    let second = Server::start_with(
        fresh.path(),
        &["--cloud", "aws", "--interval-ms", "300"],
        &[],
    );
    config["rollout"]["keep_old_for"] = json!("1s");
    save_config(&second, fresh.path(), &service, &config);
    second
        .wait_for(&service, 30, "the environment to be seen", |s| {
            s["environments"].as_array().is_some_and(|envs| {
                envs.iter()
                    .any(|e| e["foreign"] == true && e["status"] == "ready")
            })
        })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await; // ten passes, well past the window
    let envs = f.environments(&service).await.expect("list");
    assert_eq!(envs.len(), 1, "{envs:?}");
    assert_eq!(envs[0].1, "Ready", "{envs:?}");
    let events = second.cli_ok(&["events", &service, "--raw"]);
    assert!(!events.contains("action-intended"), "{events}");
    let status = second.cli_ok(&["status", &service]);
    assert!(status.contains("not created by this log"), "{status}");
}

/// A quiet pass over several services in one account-region reads the region once (each API
/// in batches, DescribeEnvironments page by page) and each service's load balancer once,
/// counted on the wire by pass-through proxies in front of the emulators: the real binary, the
/// real driver, calls that grow with endpoints and pages, not with services × calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_quiet_pass_reads_the_region_once_for_all_its_services() {
    if !emulators_or_skip("aws_a_quiet_pass_reads_the_region_once_for_all_its_services") {
        return;
    }
    const SERVICES: usize = 6;
    // Four environments a page: the six services' environments take two pages.
    const PAGE: u32 = 4;
    const PASSES: u64 = 4;
    // Each service with its own load balancer (an endpoint is one service's) and alarm.
    let mut fixtures = Vec::new();
    for _ in 0..SERVICES {
        fixtures.push(Fixture::new().await.expect("fixture"));
    }
    // Its own EB stand-in: a region-wide listing sees this test's environments only.
    let eb = PrivateBeanstalk::start(PAGE).await.expect("EB stand-in");
    let eb_proxy = FaultProxy::start(&eb.url).await;
    let moto_proxy = FaultProxy::start(&std::env::var("AWS_ENDPOINT_URL").expect("moto")).await;
    let cloudwatch_proxy =
        FaultProxy::start(&std::env::var("AWS_ENDPOINT_URL_CLOUDWATCH").expect("CloudWatch")).await;
    let calls = || {
        let mut all = std::collections::BTreeMap::new();
        for p in [&eb_proxy, &moto_proxy, &cloudwatch_proxy] {
            for (op, n) in p.calls() {
                *all.entry(op).or_insert(0u64) += n;
            }
        }
        all
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start_with(
        dir.path(),
        &["--cloud", "aws", "--interval-ms", "1000"],
        &[
            ("AWS_ENDPOINT_URL", moto_proxy.url.as_str()),
            ("AWS_ENDPOINT_URL_CLOUDWATCH", cloudwatch_proxy.url.as_str()),
            ("AWS_ENDPOINT_URL_ELASTIC_BEANSTALK", eb_proxy.url.as_str()),
        ],
    );
    let mut services = Vec::new();
    for f in &fixtures {
        let service = format!("quiet{}", f.id);
        let alarm = format!("{service}-errors");
        f.create_alarm(&alarm, &format!("errors{}", f.id), 5.0)
            .await
            .expect("alarm");
        let mut config = config_for(f, &[&alarm]);
        config["instances"]["min"] = json!(1);
        config["instances"]["max"] = json!(1);
        save_config(&server, dir.path(), &service, &config);
        server.cli_ok(&["release", &service, "v1", "--no-follow"]);
        services.push(service);
    }
    for service in &services {
        server
            .wait_for(service, 120, "v1 serving", |s| {
                s["rollout"].is_null() && share(s, "v1") == 100
            })
            .await;
    }

    // Counted from just after a pass ends to just after the PASSES-th pass from then ends: the
    // interval (1 s) between passes leaves the counts settled at both ends.
    let server = &server;
    let pass_ended = |after: f64| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let passes = support::metric(server, "ionroller_reconcile_passes_total").await;
            if passes > after {
                return passes;
            }
            assert!(std::time::Instant::now() < deadline, "no pass ended");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let now = support::metric(server, "ionroller_reconcile_passes_total").await;
    let first = pass_ended(now).await;
    let before = calls();
    let last = pass_ended(first + PASSES as f64 - 1.0).await;
    let after = calls();
    let passes = (last - first) as u64;
    assert_eq!(passes, PASSES, "passes counted");
    let made: std::collections::BTreeMap<String, u64> = after
        .iter()
        .map(|(op, n)| (op.clone(), n - before.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let pages = SERVICES.div_ceil(PAGE as usize) as u64;
    assert_eq!(
        made,
        [
            ("DescribeAlarms".to_string(), passes),
            ("DescribeAutoScalingGroups".to_string(), passes),
            ("DescribeEnvironments".to_string(), passes * pages),
            (
                "DescribeInstanceHealth".to_string(),
                passes * SERVICES as u64
            ),
        ]
        .into_iter()
        .collect(),
        "calls in {passes} quiet passes over {SERVICES} services"
    );
    // Against what observing each service on its own costs: four calls a service.
    let per_pass = made.values().sum::<u64>() / passes;
    assert!(per_pass < 4 * SERVICES as u64, "{per_pass} calls a pass");
}
