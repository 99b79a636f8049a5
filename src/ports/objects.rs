//! The object-store port (S3): small objects whole, large ones streamed through a consumer
//! that runs on a blocking thread, so that a report of gigabytes is never held in memory.

use std::io::Read;

use async_trait::async_trait;
use serde_json::Value;

use crate::contract::StepError;

/// Reads an object's bytes (on a blocking thread) and says what they hold; `Err` means the
/// object is not what it should be (a permanent failure of the object, not of S3).
pub type Consume = Box<dyn FnOnce(&mut (dyn Read + Send)) -> Result<Value, String> + Send>;

#[async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// The whole object, refused when larger than `limit` bytes (a manifest, not a report).
    async fn get(&self, bucket: &str, key: &str, limit: usize) -> Result<Vec<u8>, StepError>;

    /// Streams the object through `consume`. The outer `Err` is S3's (throttling, a connection
    /// lost mid-object: retryable; no such key: permanent); the inner one is the consumer's.
    async fn read_with(
        &self,
        bucket: &str,
        key: &str,
        consume: Consume,
    ) -> Result<Result<Value, String>, StepError>;

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), StepError>;
}
