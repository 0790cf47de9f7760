//! The AWS driver against real emulators: moto (S3, classic ELB, Auto Scaling, EC2),
//! ministack (CloudWatch) and the EB stand-in, all reached through the SDK's standard
//! `AWS_ENDPOINT_URL*` variables that scripts/test.sh sets.

use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::types::StateValue;
use ionroller_aws::testkit::{
    emulators_or_skip, hold_launching, rebuild_environment, set_environment_health, Fixture,
    PrivateBeanstalk,
};
use ionroller_aws::AwsCloud;
use ionroller_shared::cloud::{Cloud, CloudError, CloudView};
use ionroller_shared::config::{OptionSetting, ServiceConfig};
use ionroller_shared::events::{Action, AlarmState, EnvironmentStatus, Health};
use uuid::Uuid;

fn config(f: &Fixture, alarms: &[String]) -> ServiceConfig {
    let mut config: ServiceConfig =
        serde_json::from_str(include_str!("../../../examples/hello.json")).expect("example");
    f.configure(&mut config);
    config.instances.min = 2;
    config.rollout.alarms = alarms.to_vec();
    config
}

fn create(environment: &str, version: &str, config: &ServiceConfig) -> Action {
    Action::CreateEnvironment {
        environment: environment.to_string(),
        version: version.to_string(),
        config_version: 1,
        config: Box::new(config.clone()),
    }
}

/// A driver whose every observation reads AWS afresh: these tests change the emulators
/// behind its back and look at once (sharing reads is tested on its own, below).
async fn fresh_reads() -> AwsCloud {
    AwsCloud::from_env()
        .await
        .with_observation_window(Duration::ZERO)
}

async fn observe_until(
    cloud: &AwsCloud,
    service: &str,
    config: &ServiceConfig,
    what: &str,
    done: impl Fn(&CloudView) -> bool,
) -> CloudView {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let view = cloud.observe(service, config).await.expect("observe");
        if done(&view) {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {view:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn environments_are_created_once_observed_registered_and_terminated() {
    if !emulators_or_skip("environments_are_created_once_observed_registered_and_terminated") {
        return;
    }
    let f = Fixture::new().await.expect("fixture");
    let service = format!("drv{}", f.id);
    let config = config(&f, &[]);
    let cloud = fresh_reads().await;
    let env = format!("{service}-v1-aaaaaa");
    let action_id = Uuid::new_v4();

    // Created once, however often the action is repeated (as after a crash).
    let first = cloud
        .execute(&service, &config, action_id, &create(&env, "v1", &config))
        .await
        .expect("create");
    assert!(first.starts_with("created"), "{first}");
    let again = cloud
        .execute(&service, &config, action_id, &create(&env, "v1", &config))
        .await
        .expect("create again");
    assert!(again.contains("already exists"), "{again}");
    let listed = f.environments(&service).await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let tags = &listed[0].2;
    for (key, value) in [
        ("ionroller:service", service.clone()),
        ("ionroller:version", "v1".to_string()),
        ("ionroller:config-version", "1".to_string()),
        ("ionroller:action-id", action_id.to_string()),
    ] {
        assert!(
            tags.contains(&(key.to_string(), value.clone())),
            "tag {key}={value} missing: {tags:?}"
        );
    }

    // Launching, then Ready and Green with the Auto Scaling group's two instances.
    hold_launching(&env, true).await.expect("hold");
    let view = cloud.observe(&service, &config).await.expect("observe");
    assert_eq!(view.environments.len(), 1);
    assert_eq!(view.environments[0].version, "v1");
    assert_eq!(view.environments[0].config_version, 1);
    assert_eq!(view.environments[0].status, EnvironmentStatus::Launching);
    // EB terminates only Ready environments: until then the driver asks to be retried.
    let terminate = Action::TerminateEnvironment {
        environment: env.clone(),
    };
    match cloud
        .execute(&service, &config, Uuid::new_v4(), &terminate)
        .await
    {
        Err(CloudError::Unavailable(why)) => assert!(why.contains("Launching"), "{why}"),
        other => panic!("a launching environment is not terminated yet: {other:?}"),
    }
    hold_launching(&env, false).await.expect("release");
    let view = observe_until(&cloud, &service, &config, "green", |v| {
        v.environments[0].health == Health::Green
    })
    .await;
    let env_view = &view.environments[0];
    assert_eq!(env_view.status, EnvironmentStatus::Ready);
    assert_eq!(env_view.instances.len(), 2, "{env_view:?}");
    assert!(env_view.instances.iter().all(|i| i.healthy));
    assert!(env_view.url.as_deref().is_some_and(|u| u.contains(&env)));
    assert!(view.registrations.is_empty());

    // Traffic: register both, deregister one; the load balancer reports InService.
    let ids: Vec<String> = env_view.instances.iter().map(|i| i.id.clone()).collect();
    let register = Action::RegisterInstances {
        load_balancer: f.load_balancer.clone(),
        instances: ids.clone(),
    };
    cloud
        .execute(&service, &config, Uuid::new_v4(), &register)
        .await
        .expect("register");
    let view = cloud.observe(&service, &config).await.expect("observe");
    assert_eq!(view.registrations.len(), 2);
    assert!(view.registrations.iter().all(|r| r.in_service));
    let deregister = Action::DeregisterInstances {
        load_balancer: f.load_balancer.clone(),
        instances: ids[..1].to_vec(),
    };
    for _ in 0..2 {
        cloud
            .execute(&service, &config, Uuid::new_v4(), &deregister)
            .await
            .expect("deregister (twice: idempotent)");
    }
    let health = f.instance_health().await.expect("health");
    assert_eq!(health, vec![(ids[1].clone(), "InService".to_string())]);

    // EB's health is the environment's: Red shows as Red.
    set_environment_health(&env, "Red").await.expect("health");
    let view = cloud.observe(&service, &config).await.expect("observe");
    assert_eq!(view.environments[0].health, Health::Red);
    set_environment_health(&env, "Green").await.expect("health");

    // EB's RebuildEnvironment keeps the environment id but replaces its Auto Scaling group
    // and instances: the driver drops the group it had cached and finds the new instances.
    rebuild_environment(&env).await.expect("rebuild");
    observe_until(&cloud, &service, &config, "the rebuilt instances", |v| {
        let e = &v.environments[0];
        e.status == EnvironmentStatus::Ready
            && e.instances.len() == 2
            && e.instances.iter().all(|i| !ids.contains(&i.id))
    })
    .await;

    // A quiet pass costs a fixed number of calls, whatever happened before.
    let before = cloud.calls();
    cloud.observe(&service, &config).await.expect("observe");
    let idle = cloud.calls() - before;
    assert_eq!(
        idle, 3,
        "DescribeEnvironments, DescribeAutoScalingGroups, DescribeInstanceHealth"
    );

    // Terminated once; the environment then leaves the listing and its group goes.
    let done = cloud
        .execute(&service, &config, Uuid::new_v4(), &terminate)
        .await
        .expect("terminate");
    assert!(done.starts_with("terminating"), "{done}");
    let again = cloud
        .execute(&service, &config, Uuid::new_v4(), &terminate)
        .await
        .expect("terminate again");
    assert!(again.contains("already terminated"), "{again}");
    observe_until(&cloud, &service, &config, "the environment to go", |v| {
        v.environments.is_empty()
    })
    .await;
    let before = cloud.calls();
    cloud.observe(&service, &config).await.expect("observe");
    assert_eq!(
        cloud.calls() - before,
        2,
        "no live environments: no Auto Scaling call"
    );
}

#[tokio::test]
async fn alarms_report_state_reason_and_the_quoted_datapoint() {
    if !emulators_or_skip("alarms_report_state_reason_and_the_quoted_datapoint") {
        return;
    }
    let f = Fixture::new().await.expect("fixture");
    let service = format!("alm{}", f.id);
    let set = format!("{}-set", f.id);
    let metric = format!("{}-5xx", f.id);
    let missing = format!("{}-missing", f.id);
    let composite = format!("{}-any", f.id);
    f.create_alarm(&set, "Latency", 1000.0)
        .await
        .expect("alarm");
    f.create_alarm(&metric, "5xx", 5.0).await.expect("alarm");
    f.create_composite_alarm(&composite, &format!("ALARM(\"{set}\")"))
        .await
        .expect("composite alarm");
    let config = config(
        &f,
        &[
            set.clone(),
            metric.clone(),
            missing.clone(),
            composite.clone(),
        ],
    );
    let cloud = fresh_reads().await;

    let view = cloud.observe(&service, &config).await.expect("observe");
    let names: Vec<&str> = view.alarms.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        [
            set.as_str(),
            metric.as_str(),
            missing.as_str(),
            composite.as_str()
        ]
    );
    assert!(view.alarms.iter().all(|a| a.state != AlarmState::Alarm));
    assert_eq!(view.alarms[2].state, AlarmState::InsufficientData);
    assert!(
        view.alarms[2].reason.contains("does not exist"),
        "{:?}",
        view.alarms[2]
    );

    f.set_alarm_state(&set, StateValue::Alarm, "set by the test")
        .await
        .expect("set state");
    f.put_metric("5xx", 100.0).await.expect("metric");
    let view = observe_until(&cloud, &service, &config, "both alarms", |v| {
        v.alarms[..2].iter().all(|a| a.state == AlarmState::Alarm)
    })
    .await;
    assert_eq!(view.alarms[0].reason, "set by the test");
    // A composite alarm is read too (DescribeAlarms answers only metric alarms unless asked).
    let view = observe_until(&cloud, &service, &config, "the composite alarm", |v| {
        v.alarms[3].state == AlarmState::Alarm
    })
    .await;
    assert!(view.alarms[3].reason.contains(&set), "{:?}", view.alarms[3]);
    // CloudWatch itself evaluated this one, and says which datapoint crossed.
    let evaluated = &view.alarms[1];
    assert!(
        evaluated.reason.contains("Threshold Crossed"),
        "{evaluated:?}"
    );
    assert_eq!(evaluated.value, Some(100.0), "{evaluated:?}");
    assert!(evaluated.updated_at.timestamp() > 0);
}

#[tokio::test]
async fn refusals_keep_the_aws_error_code() {
    if !emulators_or_skip("refusals_keep_the_aws_error_code") {
        return;
    }
    let f = Fixture::new().await.expect("fixture");
    let service = format!("err{}", f.id);
    let mut config = config(&f, &[]);
    let cloud = fresh_reads().await;
    let mut elsewhere = config.clone();
    elsewhere.endpoint.load_balancer.name = format!("no-such-lb-{}", f.id);
    let observed = cloud.observe(&service, &elsewhere).await.map(|_| ());
    assert_refused(observed, "LoadBalancerNotFound");
    // The EB stand-in checks parameters as AWS does: a bad instance type is refused.
    config.instances.instance_type = "enormous".into();
    let env = format!("{service}-v1-bbbbbb");
    let create_with = |config: &ServiceConfig| {
        let action = create(&env, "v1", config);
        let (cloud, service, config) = (&cloud, &service, config.clone());
        async move {
            cloud
                .execute(service, &config, Uuid::new_v4(), &action)
                .await
                .map(|_| ())
        }
    };
    assert_refused(
        create_with(&config).await,
        "ConfigurationValidationException",
    );
    // So are environment variables beyond EB's 4096 bytes (the config's own rules, checked
    // on every cloud, catch them first).
    config.instances.instance_type = "t3.small".into();
    config.env.insert("BIG".into(), "x".repeat(4096));
    assert!(
        config.validate().iter().any(|p| p.field == "env"),
        "{:?}",
        config.validate()
    );
    assert_refused(
        create_with(&config).await,
        "ConfigurationValidationException",
    );
    config.aws.deployment_bucket = None;
    assert_refused(create_with(&config).await, "MissingDeploymentBucket");
}

#[tokio::test]
async fn old_application_versions_are_pruned_with_their_bundles() {
    if !emulators_or_skip("old_application_versions_are_pruned_with_their_bundles") {
        return;
    }
    let f = Fixture::new().await.expect("fixture");
    let service = format!("ver{}", f.id);
    let config = config(&f, &[]);
    let cloud = fresh_reads().await;
    // Earlier releases left KEEP_VERSIONS + 3 versions no environment runs, and one that is
    // another tool's.
    let keep = ionroller_aws::spec::KEEP_VERSIONS;
    let idle: Vec<String> = (0..keep + 3)
        .map(|i| format!("old{i:02}.config-1"))
        .collect();
    f.create_versions(&service, &idle).await.expect("versions");
    f.create_versions(&service, &["by hand".to_string()])
        .await
        .expect("a foreign version");
    let env = format!("{service}-v9-eeeeee");
    let done = cloud
        .execute(
            &service,
            &config,
            Uuid::new_v4(),
            &create(&env, "v9", &config),
        )
        .await
        .expect("create");
    assert!(done.contains("deleted 3 old application version"), "{done}");
    let left = f.versions(&service).await.expect("versions");
    for gone in &idle[..3] {
        assert!(!left.contains(gone), "{gone} is the oldest: {left:?}");
        let key = ionroller_aws::spec::bundle_key(&service, gone);
        assert!(!f.has_object(&key).await, "its bundle {key} went too");
    }
    for kept in idle[3..]
        .iter()
        .chain([&"v9.config-1".to_string(), &"by hand".to_string()])
    {
        assert!(left.contains(kept), "{kept} stays: {left:?}");
    }
}

fn assert_refused(result: Result<(), CloudError>, expected: &str) {
    match result {
        Err(CloudError::Rejected { code, message }) => assert_eq!(code, expected, "{message}"),
        other => panic!("expected a {expected} refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn on_an_alb_traffic_follows_target_group_weights() {
    if !emulators_or_skip("on_an_alb_traffic_follows_target_group_weights") {
        return;
    }
    let f = Fixture::new().await.expect("fixture");
    let alb = f.create_alb().await.expect("alb");
    let service = format!("alb{}", f.id);
    let mut config = config(&f, &[]);
    config.endpoint.load_balancer.kind = ionroller_shared::config::LoadBalancerKind::Alb;
    config.endpoint.load_balancer.name = alb.listener.clone();
    assert!(ionroller_aws::spec::check_config(&config).is_empty());
    let cloud = fresh_reads().await;
    let (v1, v2) = (
        format!("{service}-v1-cccccc"),
        format!("{service}-v2-dddddd"),
    );
    for (env, version) in [(&v1, "v1"), (&v2, "v2")] {
        cloud
            .execute(
                &service,
                &config,
                Uuid::new_v4(),
                &create(env, version, &config),
            )
            .await
            .expect("create");
    }
    let view = observe_until(&cloud, &service, &config, "both green", |v| {
        v.environments.len() == 2 && v.environments.iter().all(|e| e.health == Health::Green)
    })
    .await;
    let ids = |env: &str| -> Vec<String> {
        view.environments
            .iter()
            .find(|e| e.name == env)
            .map(|e| e.instances.iter().map(|i| i.id.clone()).collect())
            .unwrap_or_default()
    };
    let (old, new) = (ids(&v1), ids(&v2));
    assert_eq!((old.len(), new.len()), (2, 2));
    let change = |register: bool, instances: Vec<String>| {
        let listener = alb.listener.clone();
        let (cloud, service, config) = (&cloud, &service, &config);
        async move {
            let action = if register {
                Action::RegisterInstances {
                    load_balancer: listener,
                    instances,
                }
            } else {
                Action::DeregisterInstances {
                    load_balancer: listener,
                    instances,
                }
            };
            cloud
                .execute(service, config, Uuid::new_v4(), &action)
                .await
                .expect("traffic change")
        }
    };
    let shares = || async {
        let (a, healthy_a) = f.alb_share_of(&alb.listener, &v1).await.expect("share");
        let (b, healthy_b) = f.alb_share_of(&alb.listener, &v2).await.expect("share");
        (a, b, healthy_a, healthy_b)
    };

    // v1 alone: the placeholder group drops out and v1's group carries all the weight.
    change(true, old.clone()).await;
    assert_eq!(shares().await, (100, 0, 2, 0));
    let weights = f.listener_weights(&alb.listener).await.expect("weights");
    assert!(
        weights.iter().all(|(tg, _)| tg != &alb.placeholder),
        "{weights:?}"
    );
    // Register new before deregistering old, as the roller does: 2:1, then 1:1, then v2 alone.
    let detail = change(true, new[..1].to_vec()).await;
    assert!(detail.contains("weights"), "{detail}");
    assert_eq!(shares().await, (67, 33, 2, 1));
    change(false, old[..1].to_vec()).await;
    assert_eq!(shares().await, (50, 50, 1, 1));

    // Someone sets the new group's weight to 0 by hand: its healthy instance takes no
    // traffic, so it no longer reads as registered, and registering it again weighs it in.
    let (old_tg, new_tg) = (
        f.target_group_of(&v1).await.expect("v1's target group"),
        f.target_group_of(&v2).await.expect("v2's target group"),
    );
    f.set_listener_weights(&alb.listener, &[(old_tg.clone(), 1), (new_tg.clone(), 0)])
        .await
        .expect("weights by hand");
    let view = cloud.observe(&service, &config).await.expect("observe");
    let registered: Vec<&str> = view.registrations.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(registered, [old[1].as_str()], "{:?}", view.registrations);
    change(true, new[..1].to_vec()).await;
    assert_eq!(shares().await, (50, 50, 1, 1));
    change(true, new[1..].to_vec()).await;
    change(false, old[1..].to_vec()).await;
    change(false, old[1..].to_vec()).await; // repeated: harmless
    assert_eq!(shares().await, (0, 100, 0, 2));
    // The roller sees what the listener does: registered = targets of weighted groups.
    // The listener's sign-in action and its stickiness survived every change.
    let actions = f.listener_actions(&alb.listener).await.expect("actions");
    assert!(
        actions
            .iter()
            .any(|a| a.authenticate_oidc_config().is_some()),
        "{actions:?}"
    );
    let sticky = actions
        .iter()
        .find_map(|a| a.forward_config())
        .and_then(|f| f.target_group_stickiness_config())
        .and_then(|s| s.enabled());
    assert_eq!(sticky, Some(true), "{actions:?}");
    let view = cloud.observe(&service, &config).await.expect("observe");
    let mut registered: Vec<String> = view.registrations.iter().map(|r| r.id.clone()).collect();
    registered.sort();
    let mut expected = new.clone();
    expected.sort();
    assert_eq!(registered, expected);
    assert!(view.registrations.iter().all(|r| r.in_service));

    // Terminating v1 removes its (now empty) target group too.
    cloud
        .execute(
            &service,
            &config,
            Uuid::new_v4(),
            &Action::TerminateEnvironment {
                environment: v1.clone(),
            },
        )
        .await
        .expect("terminate");
    let (share, healthy) = f.alb_share_of(&alb.listener, &v2).await.expect("share");
    assert_eq!((share, healthy), (100, 2));
}

#[tokio::test]
async fn configs_are_checked_against_elastic_beanstalk_naming_the_field() {
    if !emulators_or_skip("configs_are_checked_against_elastic_beanstalk_naming_the_field") {
        return;
    }
    let f = Fixture::new().await.expect("fixture");
    let service = format!("val{}", f.id);
    let good = config(&f, &[]);
    let cloud = fresh_reads().await;
    let problems = cloud.validate_config(&good).await.expect("validate");
    assert!(problems.is_empty(), "{problems:#?}");
    let calls = cloud.calls();

    let unknown_namespace = OptionSetting {
        namespace: "aws:nosuch:namespace".into(),
        option_name: "Anything".into(),
        value: "1".into(),
    };
    let mut bad = Vec::new();
    let mut c = good.clone();
    c.instances.instance_type = "t3 small".into();
    bad.push((c, "instances.type", "did you mean \"t3.small\""));
    c = good.clone();
    c.aws.option_settings.push(unknown_namespace);
    bad.push((
        c,
        "aws.option_settings[1]",
        "no option namespace \"aws:nosuch:namespace\"",
    ));
    c = good.clone();
    c.aws.solution_stack = Some("64bit Windows".into());
    bad.push((
        c,
        "aws.solution_stack",
        // The newest Docker stack of those EB (here moto's copy of AWS's list) offers.
        "use \"64bit Amazon Linux 2023 v4.6.0 running Docker\"",
    ));
    for (config, field, says) in &bad {
        let problems = cloud.validate_config(config).await.expect("validate");
        assert_eq!(
            problems
                .iter()
                .map(|p| p.field.as_str())
                .collect::<Vec<_>>(),
            [*field],
            "{problems:#?}"
        );
        assert!(problems[0].problem.contains(says), "{problems:#?}");
    }
    // Each answer came from the cache: one region, one stack described.
    assert_eq!(cloud.calls(), calls, "EB's answers are reused");

    // Elastic Beanstalk itself (the stand-in's CreateEnvironment) refuses each of them too: the
    // save-time check and the launch agree.
    for (i, (config, field, _)) in bad.iter().enumerate() {
        let env = format!("{service}-v{i}-ffffff");
        let action = create(&env, &format!("v{i}"), config);
        match cloud
            .execute(&service, config, Uuid::new_v4(), &action)
            .await
        {
            Err(CloudError::Rejected { code, .. }) => assert!(
                code == "ConfigurationValidationException" || code == "InvalidParameterValue",
                "{field}: {code}"
            ),
            other => panic!("{field}: CreateEnvironment should refuse it: {other:?}"),
        }
    }
}

#[tokio::test]
async fn observations_in_one_account_region_share_their_reads() {
    if !emulators_or_skip("observations_in_one_account_region_share_their_reads") {
        return;
    }
    const SERVICES: usize = 10;
    const WINDOW: Duration = Duration::from_secs(2);
    let f = Fixture::new().await.expect("fixture");
    // Its own EB stand-in: a region-wide listing sees this test's environments only.
    let eb = PrivateBeanstalk::start(100).await.expect("EB stand-in");
    let cloud = AwsCloud::from_env()
        .await
        .with_beanstalk_endpoint(&eb.url)
        .with_observation_window(WINDOW);
    let mut services = Vec::new();
    for i in 0..SERVICES {
        let service = format!("bat{i}{}", f.id);
        let alarm = format!("{service}-errors");
        f.create_alarm(&alarm, &format!("errors{i}"), 5.0)
            .await
            .expect("alarm");
        let mut config = config(&f, &[alarm]);
        config.instances.min = 1;
        let env = format!("{service}-v1-aaaaaa");
        cloud
            .execute(
                &service,
                &config,
                Uuid::new_v4(),
                &create(&env, "v1", &config),
            )
            .await
            .expect("create");
        services.push((service, config));
    }
    // Launched and Ready, as a driver that reads afresh every time sees it.
    let fresh = fresh_reads().await.with_beanstalk_endpoint(&eb.url);
    let deadline = Instant::now() + Duration::from_secs(30);
    for (service, config) in &services {
        loop {
            let view = fresh.observe(service, config).await.expect("observe");
            if view.environments.len() == 1
                && view.environments[0].status == EnvironmentStatus::Ready
                && view.environments[0].instances.len() == 1
            {
                break;
            }
            assert!(Instant::now() < deadline, "not Ready: {view:#?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let pass = || {
        futures::future::join_all(
            services
                .iter()
                .map(|(service, config)| cloud.observe(service, config)),
        )
    };
    // The roller's first pass makes the driver know which services this region has; from
    // the next pass on (the window has passed by then) one read serves them all.
    pass().await;
    tokio::time::sleep(WINDOW + Duration::from_millis(100)).await;

    // A pass observes every service at once: one read of the region for all of them, and
    // each service's own load-balancer read.
    let before = cloud.calls_by_api();
    let views = pass().await;
    let calls = since(&before, &cloud.calls_by_api());
    assert_eq!(
        calls,
        [
            ("DescribeAlarms", 1),
            ("DescribeAutoScalingGroups", 1),
            ("DescribeEnvironments", 1),
            ("DescribeInstanceHealth", SERVICES as u64),
        ]
        .into_iter()
        .collect(),
        "calls for {SERVICES} services in one pass"
    );
    // Each service sees its own environment and its own alarm, nothing of the others'.
    for ((service, config), view) in services.iter().zip(&views) {
        let view = view.as_ref().expect("observed");
        assert_eq!(view.environments.len(), 1);
        assert!(view.environments[0].name.starts_with(service.as_str()));
        assert_eq!(view.alarms.len(), 1);
        assert_eq!(view.alarms[0].name, config.rollout.alarms[0]);
        assert_eq!(view.alarms[0].state, AlarmState::InsufficientData);
    }

    // Within the window, the read is shared; a service that acted since reads afresh, so
    // the roller always sees its own actions.
    let before = cloud.calls_by_api();
    let (quiet, quiet_config) = &services[1];
    cloud.observe(quiet, quiet_config).await.expect("observe");
    assert_eq!(
        since(&before, &cloud.calls_by_api()),
        [("DescribeInstanceHealth", 1)].into_iter().collect(),
        "a recent read is shared"
    );
    let (acting, acting_config) = &services[0];
    let deregister = Action::DeregisterInstances {
        load_balancer: f.load_balancer.clone(),
        instances: views[0].as_ref().expect("observed").environments[0]
            .instances
            .iter()
            .map(|i| i.id.clone())
            .collect(),
    };
    // Whether ELB accepts it (the instance was never registered) does not matter: an action
    // was attempted.
    let _ = cloud
        .execute(acting, acting_config, Uuid::new_v4(), &deregister)
        .await;
    let before = cloud.calls_by_api();
    cloud.observe(acting, acting_config).await.expect("observe");
    let after_acting = since(&before, &cloud.calls_by_api());
    assert_eq!(
        after_acting.get("DescribeEnvironments"),
        Some(&1),
        "{after_acting:?}"
    );

    // A service whose config names a new alarm is not answered from a read without it.
    let mut more = quiet_config.clone();
    more.rollout.alarms.push(format!("{quiet}-latency"));
    let before = cloud.calls_by_api();
    let view = cloud.observe(quiet, &more).await.expect("observe");
    assert_eq!(
        since(&before, &cloud.calls_by_api()).get("DescribeAlarms"),
        Some(&1)
    );
    assert_eq!(view.alarms[1].state, AlarmState::InsufficientData);
    assert!(
        view.alarms[1].reason.contains("does not exist"),
        "{:?}",
        view.alarms[1]
    );
}

fn since(
    before: &std::collections::BTreeMap<&'static str, u64>,
    after: &std::collections::BTreeMap<&'static str, u64>,
) -> std::collections::BTreeMap<&'static str, u64> {
    after
        .iter()
        .map(|(api, n)| (*api, n - before.get(api).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}
