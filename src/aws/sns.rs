//! The `Notifier` port over Amazon SNS.

use async_trait::async_trait;
use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;
use serde_json::Value;

use super::{AwsError, classify, not_found, reported};
use crate::contract::{StepError, Topic};
use crate::ports::Notifier;

/// The configured topics, resolved to ARNs at start.
#[derive(Debug, Clone)]
pub struct SnsNotifier {
    client: Client,
    success: Option<String>,
    error: Option<String>,
    anomaly: Option<String>,
}

impl SnsNotifier {
    /// Resolves each configured topic (a name or an ARN) to its ARN; an unknown name is an
    /// error, so that a typo is found at start and not at the first notification.
    pub async fn resolve(
        client: Client,
        success: Option<&str>,
        error: Option<&str>,
        anomaly: Option<&str>,
    ) -> Result<SnsNotifier, AwsError> {
        let mut arns = Vec::new();
        let mut token = None;
        let needs_listing = [success, error, anomaly]
            .iter()
            .flatten()
            .any(|t| !t.starts_with("arn:"));
        if needs_listing {
            loop {
                let out = client
                    .list_topics()
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| classify("ListTopics", e))?;
                arns.extend(
                    out.topics
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|t| t.topic_arn),
                );
                token = out.next_token;
                if token.is_none() {
                    break;
                }
            }
        }
        let find = |name: Option<&str>| -> Result<Option<String>, AwsError> {
            let Some(name) = name else { return Ok(None) };
            if name.starts_with("arn:") {
                return Ok(Some(name.to_owned()));
            }
            arns.iter()
                .find(|arn| arn.rsplit(':').next() == Some(name))
                .cloned()
                .map(Some)
                .ok_or_else(|| {
                    not_found(
                        "ListTopics",
                        format!("no SNS topic named {name:?} (run `tugboat migrate`?)"),
                    )
                })
        };
        Ok(SnsNotifier {
            success: find(success)?,
            error: find(error)?,
            anomaly: find(anomaly)?,
            client,
        })
    }
}

#[async_trait]
impl Notifier for SnsNotifier {
    async fn publish(
        &self,
        topic: Topic,
        subject: &str,
        message: &Value,
        deduplication_id: &str,
        attributes: &std::collections::BTreeMap<String, String>,
    ) -> Result<Option<String>, StepError> {
        let arn = match topic {
            Topic::Success => &self.success,
            Topic::Error => &self.error,
            Topic::Anomaly => &self.anomaly,
        };
        let Some(arn) = arn else { return Ok(None) };
        self.publish_to(arn, subject, message, deduplication_id, attributes)
            .await
            .map(Some)
    }

    async fn publish_to(
        &self,
        arn: &str,
        subject: &str,
        message: &Value,
        deduplication_id: &str,
        attributes: &std::collections::BTreeMap<String, String>,
    ) -> Result<String, StepError> {
        // SNS subjects: at most 100 printable ASCII characters.
        let subject: String = subject
            .chars()
            .filter(|c| c.is_ascii() && !c.is_ascii_control())
            .take(100)
            .collect();
        let string = |value: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| reported("Publish", "InvalidParameter", e.to_string(), None))
        };
        // A string is the message as it is (a definition's `Message`), anything else JSON.
        let text = match message {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut request = self
            .client
            .publish()
            .topic_arn(arn)
            .message(text)
            .message_attributes("tugboat-dedup-id", string(deduplication_id)?);
        // SNS refuses an empty subject; none is sent instead.
        if !subject.is_empty() {
            request = request.subject(subject);
        }
        for (name, value) in attributes {
            // SNS refuses empty string values; an attribute without a value is left out.
            if !value.is_empty() {
                request = request.message_attributes(name, string(value)?);
            }
        }
        // The subscriber's work continues this trace (W3C trace context).
        // (SNS takes at most 10 attributes a message; the dedup id is one.)
        if !attributes.contains_key("traceparent")
            && attributes.len() < 9
            && let Some(tp) = crate::telemetry::propagation::current()
        {
            request = request.message_attributes("traceparent", string(&tp)?);
        }
        let out = request.send().await.map_err(|e| classify("Publish", e))?;
        Ok(out.message_id.unwrap_or_default())
    }
}
