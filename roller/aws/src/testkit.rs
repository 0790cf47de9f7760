//! For tests against AWS emulators (moto, ministack and the EB stand-in that
//! `scripts/test.sh` starts): set-up and inspection through the same SDK and the same
//! standard configuration the driver uses. Not used by the driver itself.

use aws_sdk_cloudwatch::types::{ComparisonOperator, MetricDatum, StateValue, Statistic};
use aws_sdk_elasticloadbalancing::types::Listener;

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

/// Six random lowercase hex digits.
pub fn random_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..6].to_string()
}
