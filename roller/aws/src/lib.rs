//! ionroller's AWS driver: the roller's [`Cloud`] on Elastic Beanstalk, a classic ELB and
//! CloudWatch, through the official AWS SDK for Rust.
//!
//! - An environment per release, named by the roller (deterministically, so a repeated
//!   create finds it), in the EB application named after the service, running a source
//!   bundle ([`bundle`]) uploaded to the service's deployment bucket.
//! - Traffic moves by registering and deregistering the environments' instances on the
//!   endpoint's classic load balancer (ION-Roller's way), or on an ALB listener's weighted
//!   target groups ([`alb`]).
//! - Alarms are read with `DescribeAlarms`; the state reason and the datapoint it quotes are
//!   the evidence a rollback records.
//!
//! - A config is checked against Elastic Beanstalk when it is saved ([`validate`]): its
//!   solution stack, instance type and option settings, each problem naming its field.
//!
//! Everything is configured the standard AWS way (see [`clients`]); nothing here knows
//! whether it talks to AWS or to an emulator.

pub mod alb;
mod batch;
pub mod bundle;
pub mod clients;
pub mod error;
mod execute;
mod observe;
pub mod spec;
mod state;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod validate;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ionroller_shared::cloud::{CallRecorder, Cloud, CloudError, CloudView};
use ionroller_shared::config::{FieldError, ServiceConfig};
use ionroller_shared::events::Action;
use uuid::Uuid;

use batch::Batches;
use clients::ClientCache;
use state::DriverState;

pub use batch::DEFAULT_WINDOW as DEFAULT_OBSERVATION_WINDOW;
pub use state::DEFAULT_CALLS_PER_SECOND;
use validate::ValidationCache;

/// The AWS cloud. Cheap to share; keeps only caches, never truth: what it knows about an
/// environment's Auto Scaling groups is re-read whenever the environment changes.
pub struct AwsCloud {
    clients: ClientCache,
    state: DriverState,
    /// Observations shared between the services of an account-region.
    batches: Batches,
    /// Elastic Beanstalk's solution stacks and option descriptions, for checking configs.
    validation: ValidationCache,
}

impl AwsCloud {
    /// A driver configured from the standard AWS environment and profile.
    pub async fn from_env() -> Self {
        AwsCloud {
            clients: ClientCache::from_env().await,
            state: DriverState::default(),
            batches: Batches::new(DEFAULT_OBSERVATION_WINDOW),
            validation: ValidationCache::default(),
        }
    }

    /// At most `per_second` calls of one API in one account-region (default
    /// [`DEFAULT_CALLS_PER_SECOND`]).
    pub fn with_calls_per_second(mut self, per_second: NonZeroU32) -> Self {
        self.state = DriverState::new(per_second);
        self
    }

    /// Services of one account-region share reads at most `window` old (default
    /// [`DEFAULT_OBSERVATION_WINDOW`]; zero: every observation reads for itself).
    pub fn with_observation_window(mut self, window: Duration) -> Self {
        self.batches = Batches::new(window);
        self
    }

    /// Reports every attempt and every throttled attempt to `recorder` (for `/metrics`).
    pub fn with_recorder(mut self, recorder: Arc<dyn CallRecorder>) -> Self {
        self.clients = self.clients.with_recorder(recorder);
        self
    }

    /// Elastic Beanstalk at `url` (tests: a private stand-in; see `testkit::PrivateBeanstalk`).
    #[cfg(feature = "testkit")]
    pub fn with_beanstalk_endpoint(mut self, url: &str) -> Self {
        self.clients = self.clients.with_beanstalk_endpoint(url);
        self
    }

    /// AWS API calls made so far (each SDK operation counts once, however many attempts).
    pub fn calls(&self) -> u64 {
        self.state.calls()
    }

    /// The same, by API name.
    pub fn calls_by_api(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.state.calls_by_api()
    }

    /// The region calls go to when a service names none.
    pub fn default_region(&self) -> Option<String> {
        self.clients.base().region().map(|r| r.to_string())
    }
}

#[async_trait]
impl Cloud for AwsCloud {
    fn check_config(&self, config: &ServiceConfig) -> Vec<FieldError> {
        spec::check_config(config)
    }

    async fn validate_config(&self, config: &ServiceConfig) -> Result<Vec<FieldError>, CloudError> {
        let clients = self.clients.for_service(config).await;
        validate::validate(&self.state, &self.validation, &clients, config).await
    }

    async fn observe(
        &self,
        service: &str,
        config: &ServiceConfig,
    ) -> Result<CloudView, CloudError> {
        let clients = self.clients.for_service(config).await;
        self.batches
            .observe(&self.state, &clients, service, config)
            .await
    }

    async fn execute(
        &self,
        service: &str,
        config: &ServiceConfig,
        action_id: Uuid,
        action: &Action,
    ) -> Result<String, CloudError> {
        let clients = self.clients.for_service(config).await;
        let done =
            execute::execute(&self.state, &clients, service, config, action_id, action).await;
        // Done or not, the action may have changed what the service looks like.
        self.batches.acted(&clients.target, service);
        done
    }
}
