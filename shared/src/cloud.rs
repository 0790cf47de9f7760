//! The roller's one door to the cloud: the `Cloud` trait and what an observation returns.
//!
//! It lives here, not in the roller, so that the AWS driver (`roller/aws`) depends only on
//! this crate: changing the roller's core does not rebuild the AWS SDK side.

use async_trait::async_trait;
use uuid::Uuid;

use crate::config::{FieldError, ServiceConfig};
use crate::events::{Action, AlarmView, EnvironmentView, RegisteredInstance};

/// One observation of a service's part of the cloud.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CloudView {
    /// The service's environments (found by their `ionroller:service` tag).
    pub environments: Vec<EnvironmentView>,
    pub load_balancer: String,
    pub registrations: Vec<RegisteredInstance>,
    pub alarms: Vec<AlarmView>,
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum CloudError {
    /// The cloud refused the call; `code` is its error code.
    #[error("{code}: {message}")]
    Rejected { code: String, message: String },
    /// The cloud could not be reached or was overloaded; retry later.
    #[error("cloud unavailable: {0}")]
    Unavailable(String),
}

/// Where a cloud driver reports the API calls it makes, for `/metrics`: every attempt of
/// every call, by API and account-region, and the attempts the cloud throttled (including
/// those the SDK's own retries then absorbed, which no error ever shows).
pub trait CallRecorder: Send + Sync + 'static {
    /// One attempt of `api` (say `DescribeEnvironments`) in `region` was sent.
    fn attempt(&self, api: &str, region: &str);
    /// The cloud answered an attempt of `api` in `region` with "slow down".
    fn throttled(&self, api: &str, region: &str);
}

#[async_trait]
pub trait Cloud: Send + Sync + 'static {
    /// What this cloud needs of a config beyond the schema (say, a deployment bucket);
    /// checked when a config is saved, so that a release cannot fail for it later.
    fn check_config(&self, _config: &ServiceConfig) -> Vec<FieldError> {
        Vec::new()
    }

    /// What the cloud itself says of a config, asked when it is saved after [`check_config`]
    /// passed: a solution stack, an instance type or an option the cloud does not offer, each
    /// problem naming its field. `Err` only when the cloud could not be asked (unreachable,
    /// throttled, or refusing the roller's own call), not for a config it refuses.
    ///
    /// [`check_config`]: Cloud::check_config
    async fn validate_config(
        &self,
        _config: &ServiceConfig,
    ) -> Result<Vec<FieldError>, CloudError> {
        Ok(Vec::new())
    }

    /// The service's environments, its load balancer's registrations and its alarms.
    async fn observe(&self, service: &str, config: &ServiceConfig)
        -> Result<CloudView, CloudError>;

    /// Performs an action. Must be idempotent: the roller repeats an action whose outcome it
    /// did not record (it was killed mid-call), and that must not, say, create a second
    /// environment. `config` is the service's current config (its account and region);
    /// `action_id` is the id the intent was recorded under (the same on every attempt), which
    /// drivers tag what they create with. Returns a short description of what was done.
    async fn execute(
        &self,
        service: &str,
        config: &ServiceConfig,
        action_id: Uuid,
        action: &Action,
    ) -> Result<String, CloudError>;
}
