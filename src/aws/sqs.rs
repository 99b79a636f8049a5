//! The `Queue` port over Amazon SQS.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};

use super::{AwsError, classify, not_found, reported};
use crate::ports::{
    BatchFailure, OutgoingMessage, Queue, QueueError, QueueSource, ReceivedMessage,
};

pub use crate::ports::queue::MAX_MESSAGE_BYTES;

/// One SQS queue, addressed by URL.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    name: String,
    url: String,
}

impl SqsQueue {
    pub fn new(client: Client, name: impl Into<String>, url: impl Into<String>) -> SqsQueue {
        SqsQueue {
            client,
            name: name.into(),
            url: url.into(),
        }
    }

    /// Resolves `name_or_url` (a URL is taken as it is) and returns the queue.
    pub async fn resolve(client: &Client, name_or_url: &str) -> Result<SqsQueue, AwsError> {
        let url = resolve_url(client, name_or_url).await?;
        let name = url.rsplit('/').next().unwrap_or(name_or_url).to_owned();
        Ok(SqsQueue::new(client.clone(), name, url))
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// A queue URL for a queue name; a value that already is a URL is returned unchanged.
pub async fn resolve_url(client: &Client, name_or_url: &str) -> Result<String, AwsError> {
    if name_or_url.starts_with("https://") || name_or_url.starts_with("http://") {
        return Ok(name_or_url.to_owned());
    }
    let out = client
        .get_queue_url()
        .queue_name(name_or_url)
        .send()
        .await
        .map_err(|e| classify("GetQueueUrl", e))?;
    out.queue_url.ok_or_else(|| {
        not_found(
            "GetQueueUrl",
            format!("no URL returned for queue {name_or_url:?}"),
        )
    })
}

/// Opens configured queues over SQS.
#[derive(Debug, Clone)]
pub struct SqsQueues {
    client: Client,
}

impl SqsQueues {
    pub fn new(client: Client) -> SqsQueues {
        SqsQueues { client }
    }
}

#[async_trait]
impl QueueSource for SqsQueues {
    async fn open(&self, name_or_url: &str) -> Result<std::sync::Arc<dyn Queue>, QueueError> {
        Ok(std::sync::Arc::new(
            SqsQueue::resolve(&self.client, name_or_url).await?,
        ))
    }
}

fn batch_failures(
    operation: &'static str,
    failed: Vec<aws_sdk_sqs::types::BatchResultErrorEntry>,
    ids: &[String],
) -> Vec<BatchFailure> {
    failed
        .into_iter()
        .map(|f| {
            let message = f.message.unwrap_or_default();
            let e = reported(operation, &f.code, message.clone(), Some(f.sender_fault));
            BatchFailure {
                index: ids.iter().position(|id| *id == f.id).unwrap_or(usize::MAX),
                retryable: e.retryable(),
                code: f.code,
                message,
            }
        })
        .collect()
}

fn entry_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

fn string_attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("data_type is set")
}

#[async_trait]
impl Queue for SqsQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn receive(
        &self,
        max: u32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .visibility_timeout(visibility.as_secs().max(1) as i32)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::AwsTraceHeader)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_system_attribute_names(MessageSystemAttributeName::SenderId)
            .send()
            .await
            .map_err(|e| classify("ReceiveMessage", e))?;
        let messages = out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let system = m.attributes.unwrap_or_default();
                let attributes: BTreeMap<String, String> = m
                    .message_attributes
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(k, v)| v.string_value.map(|s| (k, s)))
                    .collect();
                Some(ReceivedMessage {
                    message_id: m.message_id?,
                    receipt_handle: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                    attributes,
                    receive_count: system
                        .get(&MessageSystemAttributeName::ApproximateReceiveCount)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(1),
                    trace_header: system
                        .get(&MessageSystemAttributeName::AwsTraceHeader)
                        .cloned(),
                    sent_ms: system
                        .get(&MessageSystemAttributeName::SentTimestamp)
                        .and_then(|v| v.parse().ok()),
                    sender_id: system.get(&MessageSystemAttributeName::SenderId).cloned(),
                })
            })
            .collect();
        Ok(messages)
    }

    async fn send_batch(
        &self,
        messages: &[OutgoingMessage],
    ) -> Result<Vec<Result<String, BatchFailure>>, QueueError> {
        let ids = entry_ids(messages.len());
        let mut request = self.client.send_message_batch().queue_url(&self.url);
        for (id, m) in ids.iter().zip(messages) {
            let mut entry = SendMessageBatchRequestEntry::builder()
                .id(id)
                .message_body(&m.body)
                .set_message_group_id(m.group_id.clone())
                .set_message_deduplication_id(m.deduplication_id.clone())
                .set_delay_seconds(m.delay.map(|d| d.as_secs().min(900) as i32));
            for (k, v) in &m.attributes {
                entry = entry.message_attributes(k, string_attribute(v));
            }
            // A consumer of what tugboat sends continues this trace; a copy of a received
            // message (a DLQ entry, a refresh) keeps its producer's.
            // (SQS takes at most 10 attributes a message.)
            if !m.attributes.contains_key("traceparent")
                && m.attributes.len() < 10
                && let Some(tp) = crate::telemetry::propagation::current()
            {
                entry = entry.message_attributes("traceparent", string_attribute(&tp));
            }
            request = request.entries(entry.build().expect("id and body are set"));
        }
        let out = request
            .send()
            .await
            .map_err(|e| classify("SendMessageBatch", e))?;
        let mut results: Vec<Option<Result<String, BatchFailure>>> = vec![None; messages.len()];
        for ok in out.successful {
            if let Some(i) = ids.iter().position(|id| *id == ok.id) {
                results[i] = Some(Ok(ok.message_id));
            }
        }
        for f in batch_failures("SendMessageBatch", out.failed, &ids) {
            if let Some(slot) = results.get_mut(f.index) {
                *slot = Some(Err(f));
            }
        }
        Ok(results
            .into_iter()
            .enumerate()
            .map(|(index, r)| {
                r.unwrap_or_else(|| {
                    let e = super::incomplete(
                        "SendMessageBatch",
                        "SQS reported neither success nor failure for this entry",
                    );
                    Err(BatchFailure {
                        index,
                        retryable: e.retryable(),
                        code: e.code,
                        message: e.message,
                    })
                })
            })
            .collect())
    }

    async fn delete_batch(
        &self,
        receipt_handles: &[String],
    ) -> Result<Vec<BatchFailure>, QueueError> {
        let ids = entry_ids(receipt_handles.len());
        let mut request = self.client.delete_message_batch().queue_url(&self.url);
        for (id, handle) in ids.iter().zip(receipt_handles) {
            request = request.entries(
                DeleteMessageBatchRequestEntry::builder()
                    .id(id)
                    .receipt_handle(handle)
                    .build()
                    .expect("id and handle are set"),
            );
        }
        let out = request
            .send()
            .await
            .map_err(|e| classify("DeleteMessageBatch", e))?;
        Ok(batch_failures("DeleteMessageBatch", out.failed, &ids))
    }

    async fn change_visibility_batch(
        &self,
        receipt_handles: &[String],
        timeout: Duration,
    ) -> Result<Vec<BatchFailure>, QueueError> {
        let ids = entry_ids(receipt_handles.len());
        // Rounded up: releasing for 1.5 s must not make the message visible after 1 s.
        let seconds = timeout.as_secs_f64().ceil().min(12.0 * 3600.0) as i32;
        let mut request = self
            .client
            .change_message_visibility_batch()
            .queue_url(&self.url);
        for (id, handle) in ids.iter().zip(receipt_handles) {
            request = request.entries(
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(id)
                    .receipt_handle(handle)
                    .visibility_timeout(seconds)
                    .build()
                    .expect("id and handle are set"),
            );
        }
        let out = request
            .send()
            .await
            .map_err(|e| classify("ChangeMessageVisibilityBatch", e))?;
        Ok(batch_failures(
            "ChangeMessageVisibilityBatch",
            out.failed,
            &ids,
        ))
    }

    async fn max_receive_count(&self) -> Result<Option<u32>, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| classify("GetQueueAttributes", e))?;
        let policy = out
            .attributes
            .unwrap_or_default()
            .remove(&QueueAttributeName::RedrivePolicy);
        Ok(policy.as_deref().and_then(max_receive_count))
    }
}

/// `maxReceiveCount` of a redrive policy (`{"deadLetterTargetArn": …, "maxReceiveCount": 3}`;
/// AWS has written the count both as a number and as a string).
fn max_receive_count(policy: &str) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_str(policy).ok()?;
    match v.get("maxReceiveCount")? {
        serde_json::Value::Number(n) => n.as_u64().map(|n| n as u32),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::max_receive_count;

    #[test]
    fn redrive_policies_in_both_spellings() {
        assert_eq!(
            max_receive_count(r#"{"deadLetterTargetArn":"arn:q","maxReceiveCount":3}"#),
            Some(3)
        );
        assert_eq!(
            max_receive_count(r#"{"deadLetterTargetArn":"arn:q","maxReceiveCount":"5"}"#),
            Some(5)
        );
        assert_eq!(
            max_receive_count(r#"{"deadLetterTargetArn":"arn:q"}"#),
            None
        );
        assert_eq!(max_receive_count("not json"), None);
    }
}
