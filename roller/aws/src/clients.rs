//! SDK clients, configured only by AWS's standard configuration: region and credentials from
//! the default chain, endpoints from `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>`, retries
//! from `AWS_MAX_ATTEMPTS` / `AWS_RETRY_MODE`. Without `AWS_RETRY_MODE` the SDK's "adaptive"
//! mode is used: exponential backoff with jitter for throttling and 5xx, and a client-side
//! token bucket that slows every call down once AWS starts throttling, so that one busy
//! account-region is not hammered by retries. A service may name a region and a role to
//! assume; clients are made once per (region, role) and shared.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use ionroller_shared::cloud::CallRecorder;
use ionroller_shared::config::ServiceConfig;
use tokio::sync::Mutex;

use crate::error::THROTTLING;

/// The clients one service's account and region need.
pub struct Clients {
    /// The account-region they call: what rate limits and observation batches are kept by.
    pub target: Target,
    pub eb: aws_sdk_elasticbeanstalk::Client,
    pub elb: aws_sdk_elasticloadbalancing::Client,
    pub elbv2: aws_sdk_elasticloadbalancingv2::Client,
    pub asg: aws_sdk_autoscaling::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub s3: aws_sdk_s3::Client,
}

impl Clients {
    pub fn new(config: &SdkConfig) -> Self {
        Clients::recorded(config, None, None, None)
    }

    /// Clients whose every attempt is reported to `recorder`; Elastic Beanstalk's at
    /// `eb_endpoint` when given (only tests give one: a private EB stand-in).
    fn recorded(
        config: &SdkConfig,
        role: Option<String>,
        recorder: Option<Arc<dyn CallRecorder>>,
        eb_endpoint: Option<&str>,
    ) -> Self {
        let region = config.region().map(|r| r.to_string()).unwrap_or_default();
        let counter = AttemptCounter {
            region: region.clone(),
            recorder,
        };
        macro_rules! client {
            ($sdk:ident) => {
                $sdk::Client::from_conf(
                    $sdk::config::Builder::from(config)
                        .interceptor(counter.clone())
                        .build(),
                )
            };
        }
        // S3 through a custom endpoint (an emulator, a VPC endpoint) wants path-style URLs;
        // against AWS itself virtual-hosted style is the default and stays.
        let s3 = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(
                std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
                    || std::env::var_os("AWS_ENDPOINT_URL").is_some(),
            )
            .interceptor(counter.clone())
            .build();
        Clients {
            target: Target { region, role },
            eb: {
                let mut eb = aws_sdk_elasticbeanstalk::config::Builder::from(config)
                    .interceptor(counter.clone());
                // Only when given: the builder already has AWS_ENDPOINT_URL_ELASTIC_BEANSTALK.
                if let Some(url) = eb_endpoint {
                    eb.set_endpoint_url(Some(url.to_string()));
                }
                aws_sdk_elasticbeanstalk::Client::from_conf(eb.build())
            },
            elb: client!(aws_sdk_elasticloadbalancing),
            elbv2: client!(aws_sdk_elasticloadbalancingv2),
            asg: client!(aws_sdk_autoscaling),
            cloudwatch: client!(aws_sdk_cloudwatch),
            s3: aws_sdk_s3::Client::from_conf(s3),
        }
    }
}

/// An account-region as ionroller reaches it: the region called and the role assumed (none:
/// the default credentials' account).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    pub region: String,
    pub role: Option<String>,
}

/// Reports every attempt, and every attempt AWS throttled, to the recorder. An interceptor
/// rather than a count at the call site, because the SDK's retries are invisible there.
#[derive(Clone)]
struct AttemptCounter {
    region: String,
    recorder: Option<Arc<dyn CallRecorder>>,
}

impl std::fmt::Debug for AttemptCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptCounter")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl Intercept for AttemptCounter {
    fn name(&self) -> &'static str {
        "ionroller attempt counter"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(recorder) = &self.recorder else {
            return Ok(());
        };
        let api = cfg.load::<Metadata>().map_or("unknown", |m| m.name());
        recorder.attempt(api, &self.region);
        if context.response().is_some_and(throttled) {
            recorder.throttled(api, &self.region);
        }
        Ok(())
    }
}

/// Whether AWS said "slow down": HTTP 429, or an error whose body names a throttling code
/// (the query protocols' `<Code>Throttling</Code>`, JSON's `__type`, CBOR's text strings all
/// carry the code as plain bytes). The body of a non-streaming answer is in memory by now.
fn throttled(response: &aws_smithy_runtime_api::client::orchestrator::HttpResponse) -> bool {
    let status = response.status().as_u16();
    if status == 429 {
        return true;
    }
    if status < 400 {
        return false;
    }
    let body = response.body().bytes().unwrap_or_default();
    THROTTLING
        .iter()
        .any(|code| body.windows(code.len()).any(|w| w == code.as_bytes()))
}

/// A service's `aws.region` and `aws.role_arn`, as its config gives them.
type ConfiguredTarget = (Option<String>, Option<String>);

/// Makes and caches [`Clients`].
pub struct ClientCache {
    base: SdkConfig,
    /// By the service's `aws.region` and `aws.role_arn` as configured.
    made: Mutex<HashMap<ConfiguredTarget, Arc<Clients>>>,
    recorder: Option<Arc<dyn CallRecorder>>,
    eb_endpoint: Option<String>,
}

impl ClientCache {
    /// Loads the standard configuration (environment, profile, instance metadata).
    pub async fn from_env() -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        // Every call is bounded: a hung connection must not stall the roller's loop.
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_secs(20))
            .operation_timeout(Duration::from_secs(60))
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .timeout_config(timeouts);
        if std::env::var_os("AWS_RETRY_MODE").is_none() {
            // Adaptive unless the operator chose otherwise; AWS_MAX_ATTEMPTS still counts.
            let attempts = std::env::var("AWS_MAX_ATTEMPTS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(3);
            loader = loader.retry_config(RetryConfig::adaptive().with_max_attempts(attempts));
        }
        ClientCache {
            base: loader.load().await,
            made: Mutex::new(HashMap::new()),
            recorder: None,
            eb_endpoint: None,
        }
    }

    /// Elastic Beanstalk at `url` whatever the environment says (tests: a private stand-in).
    #[cfg(feature = "testkit")]
    pub fn with_beanstalk_endpoint(mut self, url: &str) -> Self {
        self.eb_endpoint = Some(url.to_string());
        self
    }

    /// Reports every attempt the clients make to `recorder`.
    pub fn with_recorder(mut self, recorder: Arc<dyn CallRecorder>) -> Self {
        self.recorder = Some(recorder);
        self
    }

    pub fn base(&self) -> &SdkConfig {
        &self.base
    }

    /// The clients for a service: its `aws.region` and `aws.role_arn` if it names them.
    pub async fn for_service(&self, config: &ServiceConfig) -> Arc<Clients> {
        let key = (config.aws.region.clone(), config.aws.role_arn.clone());
        let mut made = self.made.lock().await;
        if let Some(clients) = made.get(&key) {
            return clients.clone();
        }
        let mut sdk = self.base.clone();
        if let Some(region) = &key.0 {
            sdk = sdk.to_builder().region(Region::new(region.clone())).build();
        }
        if let Some(role) = &key.1 {
            // Credentials are fetched (and refreshed) lazily, on the first call that needs them.
            let provider = AssumeRoleProvider::builder(role.clone())
                .session_name("ionroller")
                .configure(&sdk)
                .build()
                .await;
            sdk = sdk
                .to_builder()
                .credentials_provider(SharedCredentialsProvider::new(provider))
                .build();
        }
        let clients = Arc::new(Clients::recorded(
            &sdk,
            key.1.clone(),
            self.recorder.clone(),
            self.eb_endpoint.as_deref(),
        ));
        made.insert(key, clients.clone());
        clients
    }
}
