//! The `Notifier` port: publishing workflow results to the configured topics.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::Value;

use crate::contract::{StepError, Topic};

#[async_trait]
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// Publishes `message` as JSON to `topic`; `None` when that topic is not configured.
    /// `deduplication_id` is the same for every attempt of one step, so that a consumer can
    /// drop the duplicate a resumed step may publish. `attributes` become string message
    /// attributes (subscription filter policies match on them).
    async fn publish(
        &self,
        topic: Topic,
        subject: &str,
        message: &Value,
        deduplication_id: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<Option<String>, StepError>;

    /// Publishes `message` to the topic with this ARN (a workflow's own topic, not one of the
    /// three configured): a string as it is, anything else as JSON; an empty `subject` is
    /// none. Returns the message id.
    async fn publish_to(
        &self,
        topic_arn: &str,
        subject: &str,
        message: &Value,
        deduplication_id: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<String, StepError>;
}
