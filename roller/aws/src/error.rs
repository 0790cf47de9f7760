//! AWS SDK errors as the roller's [`CloudError`]: the AWS error code is kept (it goes into the
//! `action-failed` event), and throttling, 5xx and transport failures are `Unavailable`, which
//! the roller retries with backoff; anything else is the cloud refusing the call.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use ionroller_shared::cloud::CloudError;

/// Codes AWS uses for "slow down"; the SDK's own list, plus the classic services' spellings.
pub const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Converts an SDK error from operation `op`.
pub fn classify<E>(op: &str, err: SdkError<E, HttpResponse>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().map(str::to_string);
            let message = ctx.err().message().unwrap_or("").to_string();
            match code {
                Some(code) if status < 500 && !THROTTLING.contains(&code.as_str()) => {
                    CloudError::Rejected {
                        code,
                        message: format!("{op}: {message}"),
                    }
                }
                Some(code) => {
                    CloudError::Unavailable(format!("{op}: {code} (HTTP {status}): {message}"))
                }
                // moto answers operations it lacks with a bare 500; AWS never does.
                None => CloudError::Unavailable(format!("{op}: HTTP {status} with no error code")),
            }
        }
        _ => CloudError::Unavailable(format!("{op}: {}", DisplayErrorContext(&err))),
    }
}

/// The AWS error code of a refusal, if it is one.
pub fn code(err: &CloudError) -> Option<&str> {
    match err {
        CloudError::Rejected { code, .. } => Some(code),
        CloudError::Unavailable(_) => None,
    }
}
