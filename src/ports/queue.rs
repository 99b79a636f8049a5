//! The `Queue` port: what tugboat needs of SQS.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

/// SQS's largest message (256 KiB): what `tugboat send` refuses to send and the decoder refuses
/// to read.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// A message as received, with what the engine needs to acknowledge or release it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// String-valued message attributes (binary ones are left out).
    pub attributes: BTreeMap<String, String>,
    /// How many times SQS has handed this message out, this time included.
    pub receive_count: u32,
    /// The `AWSTraceHeader` system attribute (X-Ray), set by AWS producers that trace.
    pub trace_header: Option<String>,
    /// When SQS accepted the message (`SentTimestamp`), ms since the epoch.
    pub sent_ms: Option<u64>,
    /// Who sent it, as SQS tells (`SenderId`: an IAM user id, or `role-id:session-name` for
    /// assumed-role credentials such as an instance profile's, whose session is the instance).
    pub sender_id: Option<String>,
}

/// A message to send.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutgoingMessage {
    pub body: String,
    pub attributes: BTreeMap<String, String>,
    /// FIFO queues only.
    pub group_id: Option<String>,
    /// FIFO queues only; without it the queue must have content-based deduplication.
    pub deduplication_id: Option<String>,
    /// Hidden from receivers for this long after sending (SQS `DelaySeconds`, at most 15
    /// minutes; standard queues only). Default: none.
    pub delay: Option<Duration>,
}

/// SQS's longest message delay.
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);

/// One entry of a batch call that failed.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchFailure {
    /// The index of the entry in the batch that was passed in.
    pub index: usize,
    pub code: String,
    pub message: String,
    /// Whether trying the entry again may succeed (decided by the adapter's classification:
    /// SQS's `SenderFault` entries are not).
    pub retryable: bool,
}

/// A queue operation that failed as a whole.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct QueueError {
    pub message: String,
    pub retryable: bool,
}

#[async_trait]
pub trait Queue: Send + Sync + std::fmt::Debug {
    /// A name for logs and metrics.
    fn name(&self) -> &str;

    /// Long-polls for up to `max` (1..=10) messages, hiding them for `visibility`.
    async fn receive(
        &self,
        max: u32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError>;

    /// Sends up to 10 messages; returns the message ids in order, or the failed entries.
    async fn send_batch(
        &self,
        messages: &[OutgoingMessage],
    ) -> Result<Vec<Result<String, BatchFailure>>, QueueError>;

    /// Deletes up to 10 messages by receipt handle; returns the entries that failed.
    async fn delete_batch(
        &self,
        receipt_handles: &[String],
    ) -> Result<Vec<BatchFailure>, QueueError>;

    /// Sets the visibility timeout of up to 10 in-flight messages; returns the failed entries.
    async fn change_visibility_batch(
        &self,
        receipt_handles: &[String],
        timeout: Duration,
    ) -> Result<Vec<BatchFailure>, QueueError>;

    /// The queue's `maxReceiveCount` (its redrive policy): SQS moves a message to the queue's
    /// own DLQ when a receive would exceed it. `None` without a redrive policy.
    async fn max_receive_count(&self) -> Result<Option<u32>, QueueError>;

    /// Sends one message and returns its id.
    async fn send(&self, message: &OutgoingMessage) -> Result<String, QueueError> {
        let mut results = self.send_batch(std::slice::from_ref(message)).await?;
        match results.pop() {
            Some(Ok(id)) => Ok(id),
            Some(Err(f)) => Err(QueueError {
                message: format!("{}: {}", f.code, f.message),
                retryable: f.retryable,
            }),
            None => Err(QueueError {
                message: "SendMessageBatch returned no result for the message".into(),
                retryable: true,
            }),
        }
    }
}

/// Opens the queues the configuration names: SQS in production, in-memory queues in tests.
#[async_trait]
pub trait QueueSource: Send + Sync {
    /// The queue with this name or URL; an unknown queue is an error naming it.
    async fn open(&self, name_or_url: &str) -> Result<std::sync::Arc<dyn Queue>, QueueError>;
}
