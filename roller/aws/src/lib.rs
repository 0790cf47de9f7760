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

use async_trait::async_trait;
use ionroller_shared::cloud::{Cloud, CloudError, CloudView};
use ionroller_shared::config::{FieldError, ServiceConfig};
use ionroller_shared::events::Action;
use uuid::Uuid;

use clients::ClientCache;
use state::DriverState;
use validate::ValidationCache;

/// The AWS cloud. Cheap to share; keeps only caches, never truth: what it knows about an
/// environment's Auto Scaling groups is re-read whenever the environment changes.
pub struct AwsCloud {
    clients: ClientCache,
    state: DriverState,
    /// Elastic Beanstalk's solution stacks and option descriptions, for checking configs.
    validation: ValidationCache,
}

impl AwsCloud {
    /// A driver configured from the standard AWS environment and profile.
    pub async fn from_env() -> Self {
        AwsCloud {
            clients: ClientCache::from_env().await,
            state: DriverState::default(),
            validation: ValidationCache::default(),
        }
    }

    /// AWS API calls made so far (each SDK operation counts once, however many attempts).
    pub fn calls(&self) -> u64 {
        self.state.calls()
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
        observe::observe(&self.state, &clients, service, config).await
    }

    async fn execute(
        &self,
        service: &str,
        config: &ServiceConfig,
        action_id: Uuid,
        action: &Action,
    ) -> Result<String, CloudError> {
        let clients = self.clients.for_service(config).await;
        execute::execute(&self.state, &clients, service, config, action_id, action).await
    }
}
