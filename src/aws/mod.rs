//! AWS adapters: the only place that names AWS SDK types.
//!
//! [`Clients`] builds every service client from one [`AwsSettings`]. Whether an AWS failure is
//! worth retrying is decided here and nowhere else: [`classify`] for SDK errors, [`reported`]
//! for failures AWS reports inside a successful response (a batch entry, a `RunTask`
//! `failures[]` item), [`not_found`] for a name that resolves to nothing. The one conversion
//! of an [`AwsError`] into the engine's [`StepError`] or the queue's [`QueueError`] is here
//! too. The submodules implement the ports over the SDK clients.

pub mod accounts;
pub mod autoscaling;
pub mod call_spans;
pub mod cloudwatch;
pub mod dynamodb;
pub mod ec2;
pub mod ecs;
pub mod journal;
pub mod migrate;
pub mod permissions;
pub mod rds;
pub mod regional;
pub mod s3;
pub mod sns;
pub mod sqs;

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use secrecy::ExposeSecret;

use crate::config::AwsSettings;
use crate::contract::StepError;
use crate::ports::QueueError;

/// One set of service clients sharing one SDK configuration.
#[derive(Debug, Clone)]
pub struct Clients {
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub elbv2: aws_sdk_elasticloadbalancingv2::Client,
    pub s3: aws_sdk_s3::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    /// The configuration they share, for clients made per region (EC2's inventory).
    pub sdk: SdkConfig,
}

impl Clients {
    /// Builds the clients. With static credentials and an endpoint this touches no network;
    /// without them the SDK's default chain is used (the ECS task role on Fargate).
    pub async fn new(settings: &AwsSettings) -> Clients {
        let sdk = sdk_config(settings).await;
        // S3 on a localhost endpoint needs path-style addressing (no bucket subdomains).
        let s3 = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(settings.endpoint_url.is_some())
            .interceptor(CallSpans)
            .build();
        // Every call made inside a traced piece of work is a span of its own.
        use call_spans::CallSpans;
        macro_rules! traced {
            ($service:ident) => {
                $service::Client::from_conf(
                    $service::config::Builder::from(&sdk)
                        .interceptor(CallSpans)
                        .build(),
                )
            };
        }
        Clients {
            sqs: traced!(aws_sdk_sqs),
            sns: traced!(aws_sdk_sns),
            dynamodb: traced!(aws_sdk_dynamodb),
            ecs: traced!(aws_sdk_ecs),
            elbv2: traced!(aws_sdk_elasticloadbalancingv2),
            s3: aws_sdk_s3::Client::from_conf(s3),
            autoscaling: traced!(aws_sdk_autoscaling),
            sdk,
        }
    }
}

async fn sdk_config(settings: &AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(settings.region.clone()));
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    // Without these an endpoint that accepts a connection and never answers holds the call
    // forever (the SDK sets only a connect timeout by default, 3.1 s, kept here so that this
    // one config states every bound); a timed-out call is classified `Timeout`, retryable,
    // like any other transient failure.
    loader = loader.timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_millis(3100))
            .operation_attempt_timeout(settings.attempt_timeout)
            .operation_timeout(settings.call_timeout)
            .build(),
    );
    if let Some(creds) = &settings.credentials {
        loader = loader.credentials_provider(Credentials::from_keys(
            creds.access_key_id.clone(),
            creds.secret_access_key.expose_secret().to_owned(),
            None,
        ));
    }
    loader.load().await
}

/// Whether an AWS failure may succeed if tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Throttling, 5xx, timeouts, connection failures.
    Retryable,
    /// Validation, not found, access denied: trying again cannot help.
    Permanent,
}

/// A classified AWS failure: the operation, the service's error code and message, and the
/// decision. The whole cause chain is kept in `message` for logs and DLQ attributes.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation}: {code}: {message}")]
pub struct AwsError {
    pub operation: &'static str,
    pub code: String,
    pub message: String,
    pub retry: Retry,
}

impl AwsError {
    pub fn retryable(&self) -> bool {
        self.retry == Retry::Retryable
    }
}

/// Error codes that mean "slow down" and are always worth retrying, whatever the HTTP status.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalError",
    "ServerException",
    "KMSThrottlingException",
];

/// Whether a DynamoDB write was refused by its condition expression (not a failure: the
/// answer to "only if …").
pub(crate) fn condition_failed<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    err.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException")
}

/// Classifies any SDK error: the one place where retryable and permanent are decided.
pub fn classify<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (code, message, retry) = match &err {
        SdkError::TimeoutError(_) => ("Timeout".into(), chain(&err), Retry::Retryable),
        SdkError::DispatchFailure(_) => ("DispatchFailure".into(), chain(&err), Retry::Retryable),
        SdkError::ResponseError(_) => ("ResponseError".into(), chain(&err), Retry::Retryable),
        SdkError::ConstructionFailure(_) => {
            ("ConstructionFailure".into(), chain(&err), Retry::Permanent)
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let inner = service.err();
            let code = inner.code().unwrap_or("Unknown").to_owned();
            let message = inner
                .message()
                .map(str::to_owned)
                .unwrap_or_else(|| chain(&err));
            let retry =
                if THROTTLING_CODES.contains(&code.as_str()) || status >= 500 || status == 429 {
                    Retry::Retryable
                } else {
                    Retry::Permanent
                };
            (code, message, retry)
        }
        _ => ("Unknown".into(), chain(&err), Retry::Retryable),
    };
    AwsError {
        operation,
        code,
        message,
        retry,
    }
}

/// Codes that AWS reports inside a successful response and that clear up by themselves:
/// capacity (ECS `RunTask` `RESOURCE:*`, Fargate's "Capacity is unavailable"), SQS batch
/// entries failed on AWS's side.
fn reported_is_transient(code: &str, message: &str) -> bool {
    code.starts_with("RESOURCE")
        || message.contains("Capacity is unavailable")
        || THROTTLING_CODES.contains(&code)
        || code == "InternalError"
}

/// What AWS reported as failed inside a successful response. `sender_fault` is SQS's flag on
/// a batch entry (true: the request was wrong, retrying cannot help); other services pass
/// `None` and the code decides.
pub fn reported(
    operation: &'static str,
    code: &str,
    message: impl Into<String>,
    sender_fault: Option<bool>,
) -> AwsError {
    let message = message.into();
    let retryable = match sender_fault {
        Some(fault) => !fault,
        None => reported_is_transient(code, &message),
    };
    AwsError {
        operation,
        code: code.to_owned(),
        retry: if retryable {
            Retry::Retryable
        } else {
            Retry::Permanent
        },
        message,
    }
}

/// A name (queue, topic, target group, task) that AWS does not know: permanent.
pub fn not_found(operation: &'static str, message: impl Into<String>) -> AwsError {
    AwsError {
        operation,
        code: "NotFound".into(),
        message: message.into(),
        retry: Retry::Permanent,
    }
}

/// An answer that says neither success nor failure (an empty `RunTask` result): AWS documents
/// no such answer, so it is taken as a transient fault and retried.
pub fn incomplete(operation: &'static str, message: impl Into<String>) -> AwsError {
    AwsError {
        operation,
        code: "IncompleteResponse".into(),
        message: message.into(),
        retry: Retry::Retryable,
    }
}

impl From<AwsError> for StepError {
    fn from(e: AwsError) -> StepError {
        StepError {
            retryable: e.retryable(),
            message: e.to_string(),
            retry_after: None,
        }
    }
}

impl From<AwsError> for QueueError {
    fn from(e: AwsError) -> QueueError {
        QueueError {
            retryable: e.retryable(),
            message: e.to_string(),
        }
    }
}

/// The error and all its sources, joined with ": ".
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::config::StaticCredentials;

    /// An endpoint that accepts connections and never answers: counts them, holds them open.
    async fn silent_endpoint() -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        (url, accepted)
    }

    pub(crate) fn settings(endpoint: String, attempt: Duration, call: Duration) -> AwsSettings {
        AwsSettings {
            region: "us-east-1".into(),
            endpoint_url: Some(endpoint),
            credentials: Some(StaticCredentials {
                access_key_id: "test".into(),
                secret_access_key: "test".to_owned().into(),
            }),
            attempt_timeout: attempt,
            call_timeout: call,
        }
    }

    async fn get_queue_url(settings: &AwsSettings) -> AwsError {
        let clients = Clients::new(settings).await;
        let call = clients.sqs.get_queue_url().queue_name("q").send();
        // A regression would hang here: fail instead.
        match tokio::time::timeout(Duration::from_secs(60), call).await {
            Err(_) => panic!("the call outlived its timeouts"),
            Ok(Ok(answer)) => panic!("a silent endpoint answered: {answer:?}"),
            Ok(Err(e)) => classify("GetQueueUrl", e),
        }
    }

    #[tokio::test]
    async fn a_call_to_an_endpoint_that_never_answers_is_retried_then_fails_retryable() {
        let (endpoint, accepted) = silent_endpoint().await;
        let s = settings(
            endpoint,
            Duration::from_millis(200),
            Duration::from_secs(30),
        );
        let e = get_queue_url(&s).await;
        assert_eq!(e.code, "Timeout", "{e}");
        assert!(e.retryable(), "{e}");
        // Each attempt timed out on its own connection; the standard retry makes three.
        assert_eq!(accepted.load(Ordering::SeqCst), 3, "{e}");
    }

    #[tokio::test]
    async fn the_call_timeout_bounds_the_call_retries_included() {
        let (endpoint, accepted) = silent_endpoint().await;
        let s = settings(
            endpoint,
            Duration::from_secs(20),
            Duration::from_millis(500),
        );
        let e = get_queue_url(&s).await;
        assert_eq!(e.code, "Timeout", "{e}");
        assert!(e.retryable(), "{e}");
        // Cut inside the first attempt: no retry.
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "{e}");
    }
}
