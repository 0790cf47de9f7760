//! The roller's one door to the cloud. [`sim::SimCloud`] is the embedded default; the AWS
//! driver implements the same trait.

pub mod sim;

use async_trait::async_trait;
use ionroller_shared::config::ServiceConfig;
use ionroller_shared::events::Action;

use crate::core::CloudView;

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// The cloud refused the call; `code` is its error code.
    #[error("{code}: {message}")]
    Rejected { code: String, message: String },
    /// The cloud could not be reached or was overloaded; retry later.
    #[error("cloud unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Cloud: Send + Sync + 'static {
    /// The service's environments, its load balancer's registrations and its alarms.
    async fn observe(&self, service: &str, config: &ServiceConfig)
        -> Result<CloudView, CloudError>;

    /// Performs an action. Must be idempotent: the roller repeats an action whose outcome it
    /// did not record (it was killed mid-call), and that must not, say, create a second
    /// environment. Returns a short description of what was done.
    async fn execute(&self, service: &str, action: &Action) -> Result<String, CloudError>;
}
