//! SDK clients, configured only by AWS's standard configuration: region and credentials from
//! the default chain, endpoints from `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>`, retries
//! from `AWS_MAX_ATTEMPTS` / `AWS_RETRY_MODE` (the SDK's "standard" mode by default:
//! exponential backoff with jitter for throttling and 5xx). A service may name a region and a
//! role to assume; clients are made once per (region, role) and shared.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use ionroller_shared::config::ServiceConfig;
use tokio::sync::Mutex;

/// The clients one service's account and region need.
pub struct Clients {
    pub eb: aws_sdk_elasticbeanstalk::Client,
    pub elb: aws_sdk_elasticloadbalancing::Client,
    pub elbv2: aws_sdk_elasticloadbalancingv2::Client,
    pub asg: aws_sdk_autoscaling::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub s3: aws_sdk_s3::Client,
}

impl Clients {
    pub fn new(config: &SdkConfig) -> Self {
        // S3 through a custom endpoint (an emulator, a VPC endpoint) wants path-style URLs;
        // against AWS itself virtual-hosted style is the default and stays.
        let s3 = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(
                std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
                    || std::env::var_os("AWS_ENDPOINT_URL").is_some(),
            )
            .build();
        Clients {
            eb: aws_sdk_elasticbeanstalk::Client::new(config),
            elb: aws_sdk_elasticloadbalancing::Client::new(config),
            elbv2: aws_sdk_elasticloadbalancingv2::Client::new(config),
            asg: aws_sdk_autoscaling::Client::new(config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(config),
            s3: aws_sdk_s3::Client::from_conf(s3),
        }
    }
}

/// A service's account and region: its `aws.region` and `aws.role_arn`.
type Target = (Option<String>, Option<String>);

/// Makes and caches [`Clients`].
pub struct ClientCache {
    base: SdkConfig,
    made: Mutex<HashMap<Target, Arc<Clients>>>,
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
        let base = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .timeout_config(timeouts)
            .load()
            .await;
        ClientCache {
            base,
            made: Mutex::new(HashMap::new()),
        }
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
        let clients = Arc::new(Clients::new(&sdk));
        made.insert(key, clients.clone());
        clients
    }
}
