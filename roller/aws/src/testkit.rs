//! For tests against AWS emulators (moto, ministack and the EB stand-in that
//! `scripts/test.sh` starts): set-up and inspection through the same SDK and the same
//! standard configuration the driver uses. Not used by the driver itself.

use aws_sdk_cloudwatch::types::{ComparisonOperator, MetricDatum, StateValue, Statistic};
use aws_sdk_elasticloadbalancing::types::Listener;

use ionroller_shared::config::{OptionSetting, ServiceConfig};

use crate::clients::{ClientCache, Clients};

/// Whether the emulators are running. In CI their absence fails the test; elsewhere the
/// test is skipped with a loud message.
pub fn emulators_or_skip(test: &str) -> bool {
    if std::env::var_os("IONROLLER_AWS_EMULATORS").is_some() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: the AWS emulators are not running; run the suite with ./scripts/test.sh");
    }
    eprintln!(
        "\n*** SKIPPED {test}: the AWS emulators are not running (./scripts/test.sh starts them) ***\n"
    );
    false
}

/// A test's own corner of the emulators: names carry a random suffix, so tests run in
/// parallel against one moto without resetting it.
pub struct Fixture {
    pub id: String,
    pub clients: Clients,
    pub load_balancer: String,
    pub bucket: String,
}

impl Fixture {
    /// Creates a classic load balancer (HTTP 80) and a deployment bucket.
    pub async fn new() -> Result<Fixture, String> {
        let id = random_id();
        let cache = ClientCache::from_env().await;
        let clients = Clients::new(cache.base());
        let load_balancer = format!("lb-{id}");
        let listener = Listener::builder()
            .protocol("HTTP")
            .load_balancer_port(80)
            .instance_protocol("HTTP")
            .instance_port(80)
            .build()
            .map_err(|e| e.to_string())?;
        clients
            .elb
            .create_load_balancer()
            .load_balancer_name(&load_balancer)
            .listeners(listener)
            .availability_zones("us-east-1a")
            .send()
            .await
            .map_err(|e| format!("CreateLoadBalancer: {e:?}"))?;
        let bucket = format!("ionroller-bundles-{id}");
        clients
            .s3
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .map_err(|e| format!("CreateBucket: {e:?}"))?;
        Ok(Fixture {
            id,
            clients,
            load_balancer,
            bucket,
        })
    }

    /// Points a service config at this fixture: its classic load balancer, its bucket, and
    /// an instance profile (which the driver requires, as AWS does).
    pub fn configure(&self, config: &mut ServiceConfig) {
        config.endpoint.load_balancer.name = self.load_balancer.clone();
        config.aws.deployment_bucket = Some(self.bucket.clone());
        config.aws.option_settings.push(OptionSetting {
            namespace: crate::spec::INSTANCE_PROFILE.0.into(),
            option_name: crate::spec::INSTANCE_PROFILE.1.into(),
            value: "aws-elasticbeanstalk-ec2-role".into(),
        });
    }

    /// `labels` as application versions of `application` (made if missing), each with its
    /// own bundle in the fixture's bucket, as earlier releases would have left them.
    pub async fn create_versions(
        &self,
        application: &str,
        labels: &[String],
    ) -> Result<(), String> {
        use aws_sdk_elasticbeanstalk::types::S3Location;
        let _ = self
            .clients
            .eb
            .create_application()
            .application_name(application)
            .send()
            .await;
        for label in labels {
            let key = crate::spec::bundle_key(application, label);
            self.clients
                .s3
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .body(aws_sdk_s3::primitives::ByteStream::from_static(b"{}"))
                .send()
                .await
                .map_err(|e| format!("PutObject: {e:?}"))?;
            self.clients
                .eb
                .create_application_version()
                .application_name(application)
                .version_label(label)
                .source_bundle(
                    S3Location::builder()
                        .s3_bucket(&self.bucket)
                        .s3_key(key)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| format!("CreateApplicationVersion: {e:?}"))?;
        }
        Ok(())
    }

    /// The application's version labels, as EB lists them.
    pub async fn versions(&self, application: &str) -> Result<Vec<String>, String> {
        let out = self
            .clients
            .eb
            .describe_application_versions()
            .application_name(application)
            .send()
            .await
            .map_err(|e| format!("DescribeApplicationVersions: {e:?}"))?;
        Ok(out
            .application_versions()
            .iter()
            .filter_map(|v| v.version_label().map(str::to_string))
            .collect())
    }

    /// Whether the fixture's bucket holds `key`.
    pub async fn has_object(&self, key: &str) -> bool {
        self.clients
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .is_ok()
    }

    /// A CloudWatch alarm on the sum of a metric over 60 s, above `threshold`.
    pub async fn create_alarm(
        &self,
        name: &str,
        metric: &str,
        threshold: f64,
    ) -> Result<(), String> {
        self.clients
            .cloudwatch
            .put_metric_alarm()
            .alarm_name(name)
            .namespace(format!("ionroller-test/{}", self.id))
            .metric_name(metric)
            .statistic(Statistic::Sum)
            .period(60)
            .evaluation_periods(1)
            .threshold(threshold)
            .comparison_operator(ComparisonOperator::GreaterThanThreshold)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("PutMetricAlarm: {e:?}"))
    }

    /// A composite alarm: ALARM when `rule` (CloudWatch's alarm rule syntax) holds.
    pub async fn create_composite_alarm(&self, name: &str, rule: &str) -> Result<(), String> {
        self.clients
            .cloudwatch
            .put_composite_alarm()
            .alarm_name(name)
            .alarm_rule(rule)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("PutCompositeAlarm: {e:?}"))
    }

    pub async fn set_alarm_state(
        &self,
        name: &str,
        state: StateValue,
        reason: &str,
    ) -> Result<(), String> {
        self.clients
            .cloudwatch
            .set_alarm_state()
            .alarm_name(name)
            .state_value(state)
            .state_reason(reason)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("SetAlarmState: {e:?}"))
    }

    /// One datapoint of the fixture's metric; CloudWatch evaluates the alarms on it.
    pub async fn put_metric(&self, metric: &str, value: f64) -> Result<(), String> {
        self.clients
            .cloudwatch
            .put_metric_data()
            .namespace(format!("ionroller-test/{}", self.id))
            .metric_data(
                MetricDatum::builder()
                    .metric_name(metric)
                    .value(value)
                    .build(),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("PutMetricData: {e:?}"))
    }

    /// The load balancer as it reports itself: (instance, state) pairs.
    pub async fn instance_health(&self) -> Result<Vec<(String, String)>, String> {
        let out = self
            .clients
            .elb
            .describe_instance_health()
            .load_balancer_name(&self.load_balancer)
            .send()
            .await
            .map_err(|e| format!("DescribeInstanceHealth: {e:?}"))?;
        let mut states: Vec<(String, String)> = out
            .instance_states()
            .iter()
            .map(|s| {
                (
                    s.instance_id().unwrap_or_default().to_string(),
                    s.state().unwrap_or_default().to_string(),
                )
            })
            .collect();
        states.sort();
        Ok(states)
    }

    /// The application's environments as EB lists them (live ones), with their tags.
    pub async fn environments(
        &self,
        application: &str,
    ) -> Result<Vec<(String, String, Vec<(String, String)>)>, String> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .clients
                .eb
                .describe_environments()
                .application_name(application)
                .include_deleted(false)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| format!("DescribeEnvironments: {e:?}"))?;
            for env in page.environments() {
                let arn = env.environment_arn().unwrap_or_default().to_string();
                let tags = self
                    .clients
                    .eb
                    .list_tags_for_resource()
                    .resource_arn(&arn)
                    .send()
                    .await
                    .map_err(|e| format!("ListTagsForResource: {e:?}"))?;
                out.push((
                    env.environment_name().unwrap_or_default().to_string(),
                    env.status()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    tags.resource_tags()
                        .iter()
                        .map(|t| {
                            (
                                t.key().unwrap_or_default().to_string(),
                                t.value().unwrap_or_default().to_string(),
                            )
                        })
                        .collect(),
                ));
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }
}

impl Fixture {
    /// An environment's instances, as EB's DescribeEnvironmentResources names them.
    pub async fn environment_instances(&self, environment: &str) -> Result<Vec<String>, String> {
        let out = self
            .clients
            .eb
            .describe_environment_resources()
            .environment_name(environment)
            .send()
            .await
            .map_err(|e| format!("DescribeEnvironmentResources: {e:?}"))?;
        Ok(out
            .environment_resources()
            .map(|r| {
                r.instances()
                    .iter()
                    .filter_map(|i| i.id().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The percentage of the load balancer's InService instances that belong to
    /// `environment`, read from the load balancer and EB themselves.
    pub async fn share_of(&self, environment: &str) -> Result<u32, String> {
        let mine = self.environment_instances(environment).await?;
        let in_service: Vec<String> = self
            .instance_health()
            .await?
            .into_iter()
            .filter(|(_, state)| state == "InService")
            .map(|(id, _)| id)
            .collect();
        if in_service.is_empty() {
            return Ok(0);
        }
        let new = in_service.iter().filter(|id| mine.contains(id)).count();
        Ok((100.0 * new as f64 / in_service.len() as f64).round() as u32)
    }
}

/// An Application Load Balancer in moto's default VPC with an HTTP listener whose default
/// action forwards to an empty placeholder target group.
pub struct Alb {
    pub listener: String,
    pub placeholder: String,
}

impl Fixture {
    pub async fn create_alb(&self) -> Result<Alb, String> {
        use aws_sdk_elasticloadbalancingv2::types::{
            Action, ActionTypeEnum, AuthenticateOidcActionConfig, ForwardActionConfig,
            ProtocolEnum, TargetGroupStickinessConfig, TargetGroupTuple, TargetTypeEnum,
        };
        let subnets = default_subnets().await?;
        let lb = self
            .clients
            .elbv2
            .create_load_balancer()
            .name(format!("alb-{}", self.id))
            .set_subnets(Some(subnets.into_iter().take(2).collect()))
            .send()
            .await
            .map_err(|e| format!("CreateLoadBalancer (v2): {e:?}"))?;
        let lb = lb.load_balancers().first().ok_or("no load balancer")?;
        let lb_arn = lb.load_balancer_arn().unwrap_or_default().to_string();
        let vpc = lb.vpc_id().unwrap_or_default().to_string();
        let tg = self
            .clients
            .elbv2
            .create_target_group()
            .name(format!("placeholder-{}", self.id))
            .protocol(ProtocolEnum::Http)
            .port(80)
            .vpc_id(vpc)
            .target_type(TargetTypeEnum::Instance)
            .send()
            .await
            .map_err(|e| format!("CreateTargetGroup: {e:?}"))?;
        let placeholder = tg
            .target_groups()
            .first()
            .and_then(|t| t.target_group_arn())
            .unwrap_or_default()
            .to_string();
        let listener = self
            .clients
            .elbv2
            .create_listener()
            .load_balancer_arn(lb_arn)
            .protocol(ProtocolEnum::Http)
            .port(80)
            // As a team's listener may be: users sign in first, and sessions stick to a
            // target group. Moving traffic must keep both.
            .default_actions(
                Action::builder()
                    .r#type(ActionTypeEnum::AuthenticateOidc)
                    .order(1)
                    .authenticate_oidc_config(
                        AuthenticateOidcActionConfig::builder()
                            .issuer("https://idp.example")
                            .authorization_endpoint("https://idp.example/authorize")
                            .token_endpoint("https://idp.example/token")
                            .user_info_endpoint("https://idp.example/userinfo")
                            .client_id("ionroller-test")
                            .client_secret("secret")
                            .build(),
                    )
                    .build(),
            )
            .default_actions(
                Action::builder()
                    .r#type(ActionTypeEnum::Forward)
                    .order(2)
                    .forward_config(
                        ForwardActionConfig::builder()
                            .target_groups(
                                TargetGroupTuple::builder()
                                    .target_group_arn(&placeholder)
                                    .weight(1)
                                    .build(),
                            )
                            .target_group_stickiness_config(
                                TargetGroupStickinessConfig::builder()
                                    .enabled(true)
                                    .duration_seconds(300)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .map_err(|e| format!("CreateListener: {e:?}"))?;
        let listener = listener
            .listeners()
            .first()
            .and_then(|l| l.listener_arn())
            .unwrap_or_default()
            .to_string();
        Ok(Alb {
            listener,
            placeholder,
        })
    }

    /// The listener's default actions as ELBv2 reports them.
    pub async fn listener_actions(
        &self,
        listener: &str,
    ) -> Result<Vec<aws_sdk_elasticloadbalancingv2::types::Action>, String> {
        let out = self
            .clients
            .elbv2
            .describe_listeners()
            .listener_arns(listener)
            .send()
            .await
            .map_err(|e| format!("DescribeListeners: {e:?}"))?;
        Ok(out
            .listeners()
            .first()
            .map(|l| l.default_actions().to_vec())
            .unwrap_or_default())
    }

    /// Sets the listener's forward weights by hand (keeping its other actions), as someone
    /// editing the listener would.
    pub async fn set_listener_weights(
        &self,
        listener: &str,
        weights: &[(String, i32)],
    ) -> Result<(), String> {
        let actions = self.listener_actions(listener).await?;
        self.clients
            .elbv2
            .modify_listener()
            .listener_arn(listener)
            .set_default_actions(Some(crate::alb::with_forward(&actions, weights)))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("ModifyListener: {e:?}"))
    }

    /// The ARN of the target group ionroller made for an environment's Auto Scaling group.
    pub async fn target_group_of(&self, environment: &str) -> Result<String, String> {
        let groups = crate::observe::environment_groups(
            &self.clients,
            crate::observe::EnvironmentRef::Name(environment),
        )
        .await
        .map_err(|e| e.to_string())?;
        let group = groups.first().ok_or("the environment has no group")?;
        crate::alb::find_target_group(&self.clients, group)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no target group for {environment}"))
    }

    /// The listener's forward weights, by target group ARN.
    pub async fn listener_weights(&self, listener: &str) -> Result<Vec<(String, i32)>, String> {
        let out = self
            .clients
            .elbv2
            .describe_listeners()
            .listener_arns(listener)
            .send()
            .await
            .map_err(|e| format!("DescribeListeners: {e:?}"))?;
        let mut weights = Vec::new();
        for l in out.listeners() {
            let forwards = l.default_actions().iter().filter(|a| {
                a.r#type() == Some(&aws_sdk_elasticloadbalancingv2::types::ActionTypeEnum::Forward)
            });
            for a in forwards {
                match a.forward_config() {
                    Some(f) => {
                        for tg in f.target_groups() {
                            weights.push((
                                tg.target_group_arn().unwrap_or_default().to_string(),
                                tg.weight().unwrap_or(1),
                            ));
                        }
                    }
                    None => weights.push((a.target_group_arn().unwrap_or_default().to_string(), 1)),
                }
            }
        }
        Ok(weights)
    }

    /// The percentage of the listener's weight on `environment`'s target group, and that
    /// group's healthy targets, read from ELBv2 itself.
    pub async fn alb_share_of(
        &self,
        listener: &str,
        environment: &str,
    ) -> Result<(u32, usize), String> {
        let groups = crate::observe::environment_groups(
            &self.clients,
            crate::observe::EnvironmentRef::Name(environment),
        )
        .await
        .map_err(|e| e.to_string())?;
        let names: Vec<String> = groups
            .iter()
            .map(|g| crate::alb::target_group_name(g))
            .collect();
        let weights = self.listener_weights(listener).await?;
        let total: i32 = weights.iter().map(|(_, w)| *w).sum();
        let mut mine = 0;
        let mut healthy = 0;
        for (tg, w) in &weights {
            let described = self
                .clients
                .elbv2
                .describe_target_groups()
                .target_group_arns(tg)
                .send()
                .await
                .map_err(|e| format!("DescribeTargetGroups: {e:?}"))?;
            let name = described
                .target_groups()
                .first()
                .and_then(|t| t.target_group_name())
                .unwrap_or_default()
                .to_string();
            if names.contains(&name) {
                mine += w;
                let health = self
                    .clients
                    .elbv2
                    .describe_target_health()
                    .target_group_arn(tg)
                    .send()
                    .await
                    .map_err(|e| format!("DescribeTargetHealth: {e:?}"))?;
                healthy += health
                    .target_health_descriptions()
                    .iter()
                    .filter(|d| {
                        d.target_health().and_then(|h| h.state())
                            == Some(&aws_sdk_elasticloadbalancingv2::types::TargetHealthStateEnum::Healthy)
                    })
                    .count();
            }
        }
        if total == 0 {
            return Ok((0, healthy));
        }
        Ok(((100.0 * mine as f64 / total as f64).round() as u32, healthy))
    }
}

/// Sets an environment's health in the EB stand-in (its test-only control endpoint), as a
/// failing application would turn it Red.
pub async fn set_environment_health(environment: &str, health: &str) -> Result<(), String> {
    standin_control(&format!("health?environment={environment}&health={health}")).await
}

/// Keeps an environment Launching in the EB stand-in (or, with `false`, lets it be Ready).
pub async fn hold_launching(environment: &str, launching: bool) -> Result<(), String> {
    standin_control(&format!(
        "hold?environment={environment}&launching={launching}"
    ))
    .await
}

/// Rebuilds an environment in the EB stand-in as EB's RebuildEnvironment does: the same
/// environment id, a new Auto Scaling group with new instances.
pub async fn rebuild_environment(environment: &str) -> Result<(), String> {
    standin_control(&format!("rebuild?environment={environment}")).await
}

/// The environment secrets (variable name → ARN) that the EB stand-in recorded for an
/// environment at CreateEnvironment (its test-only state endpoint).
pub async fn environment_secrets(
    environment: &str,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL_ELASTIC_BEANSTALK")
        .map_err(|_| "AWS_ENDPOINT_URL_ELASTIC_BEANSTALK is not set")?;
    let state: serde_json::Value = http()?
        .get(format!("{endpoint}/standin/state"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("stand-in state: {e}"))?
        .json()
        .await
        .map_err(|e| format!("stand-in state: {e}"))?;
    let env = state
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == environment)
        .ok_or_else(|| format!("the stand-in has no environment {environment}"))?;
    serde_json::from_value(env["secrets"].clone())
        .map_err(|e| format!("stand-in secrets of {environment}: {e}"))
}

async fn standin_control(what: &str) -> Result<(), String> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL_ELASTIC_BEANSTALK")
        .map_err(|_| "AWS_ENDPOINT_URL_ELASTIC_BEANSTALK is not set")?;
    let response = http()?
        .post(format!("{endpoint}/standin/{what}"))
        .send()
        .await
        .map_err(|e| format!("stand-in {what}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("stand-in {what}: HTTP {}", response.status()));
    }
    Ok(())
}

/// The default VPC's subnets in moto. EC2 is asked directly over HTTP (moto does not check
/// signatures; the credential scope routes the call) rather than through aws-sdk-ec2, which
/// alone would more than double the build.
async fn default_subnets() -> Result<Vec<String>, String> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").map_err(|_| "AWS_ENDPOINT_URL is not set")?;
    let body = http()?
        .post(endpoint)
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0",
        )
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("Action=DescribeSubnets&Version=2016-11-15&Filter.1.Name=default-for-az&Filter.1.Value.1=true")
        .send()
        .await
        .map_err(|e| format!("DescribeSubnets: {e}"))?
        .text()
        .await
        .map_err(|e| format!("DescribeSubnets: {e}"))?;
    let subnets: Vec<String> = body
        .split("<subnetId>")
        .skip(1)
        .filter_map(|s| s.split("</subnetId>").next())
        .map(str::to_string)
        .collect();
    if subnets.len() < 2 {
        return Err(format!(
            "moto listed fewer than two default subnets: {body}"
        ));
    }
    Ok(subnets)
}

/// Six random lowercase hex digits.
pub fn random_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..6].to_string()
}

/// A plain HTTP client for the emulators' own endpoints. reqwest is built without a rustls
/// provider of its own (no aws-lc), so ring is installed first, as the binaries do.
fn http() -> Result<reqwest::Client, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .build()
        .map_err(|e| format!("HTTP client: {e}"))
}

/// An Elastic Beanstalk stand-in of the test's own, over the shared moto: a test that counts
/// region-wide calls then sees only its own environments, whatever other tests run beside it.
/// Stopped when dropped.
pub struct PrivateBeanstalk {
    child: std::process::Child,
    pub url: String,
}

impl PrivateBeanstalk {
    /// Starts tests/aws/eb_standin.py with the moto venv's python (where
    /// scripts/lib/aws_emulators.sh installs it), answering up to `page_size` environments
    /// per DescribeEnvironments page.
    pub async fn start(page_size: u32) -> Result<PrivateBeanstalk, String> {
        let venv = std::env::var_os("IONROLLER_AWS_VENV")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(|h| std::path::PathBuf::from(h).join(".cache/ionroller/aws-emulators"))
            })
            .ok_or("neither IONROLLER_AWS_VENV nor HOME is set")?;
        let moto = std::env::var("AWS_ENDPOINT_URL").map_err(|_| "AWS_ENDPOINT_URL is not set")?;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/aws/eb_standin.py");
        let port_file = std::env::temp_dir().join(format!("eb-standin-{}.port", random_id()));
        let child = std::process::Command::new(venv.join("moto/bin/python"))
            .arg(script)
            .arg("--port-file")
            .arg(&port_file)
            .arg("--moto")
            .arg(&moto)
            .env("EB_STANDIN_PAGE_SIZE", page_size.to_string())
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("start the EB stand-in: {e}"))?;
        let mut standin = PrivateBeanstalk {
            child,
            url: String::new(),
        };
        for _ in 0..200 {
            if let Ok(port) = std::fs::read_to_string(&port_file) {
                let _ = std::fs::remove_file(&port_file);
                standin.url = format!("http://127.0.0.1:{}", port.trim());
                return Ok(standin);
            }
            if let Ok(Some(status)) = standin.child.try_wait() {
                return Err(format!("the EB stand-in exited: {status}"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Err("the EB stand-in did not start within 10 s".into())
    }
}

impl Drop for PrivateBeanstalk {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
