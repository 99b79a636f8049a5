//! The `ObjectStore` port over Amazon S3. A streamed object's chunks go from the SDK's body
//! (on the async side) through a small bounded channel to the consumer on a blocking thread:
//! memory stays at a few chunks whatever the object's size.

use std::io::Read;

use async_trait::async_trait;
use serde_json::Value;

use super::{classify, incomplete, reported};
use crate::contract::StepError;
use crate::ports::objects::{Consume, ObjectStore};

/// Chunks in flight between the body and the consumer.
const CHANNEL: usize = 8;

#[derive(Debug, Clone)]
pub struct S3Objects {
    client: aws_sdk_s3::Client,
}

impl S3Objects {
    pub fn new(client: aws_sdk_s3::Client) -> S3Objects {
        S3Objects { client }
    }

    async fn object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, StepError> {
        Ok(self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| classify("GetObject", e))?)
    }
}

#[async_trait]
impl ObjectStore for S3Objects {
    async fn get(&self, bucket: &str, key: &str, limit: usize) -> Result<Vec<u8>, StepError> {
        let object = self.object(bucket, key).await?;
        if object.content_length().unwrap_or(0) > limit as i64 {
            return Err(reported(
                "GetObject",
                "TooLarge",
                format!("s3://{bucket}/{key} is larger than {limit} bytes"),
                Some(true),
            )
            .into());
        }
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| incomplete("GetObject", format!("s3://{bucket}/{key}: body: {e}")))?;
        Ok(bytes.into_bytes().to_vec())
    }

    async fn read_with(
        &self,
        bucket: &str,
        key: &str,
        consume: Consume,
    ) -> Result<Result<Value, String>, StepError> {
        let object = self.object(bucket, key).await?;
        let mut body = object.body;
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(CHANNEL);
        let consumer = tokio::task::spawn_blocking(move || {
            let mut reader = ChannelReader {
                chunks: rx,
                current: std::io::Cursor::new(Vec::new()),
            };
            consume(&mut reader)
        });
        let mut broken = None;
        loop {
            match body.try_next().await {
                Ok(Some(chunk)) => {
                    if tx.send(chunk.to_vec()).await.is_err() {
                        break; // the consumer has stopped (it found a fault)
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    broken = Some(e.to_string());
                    break;
                }
            }
        }
        drop(tx);
        let verdict = consumer
            .await
            .map_err(|e| incomplete("GetObject", format!("s3://{bucket}/{key}: consumer: {e}")))?;
        if let Some(e) = broken {
            // The connection failed mid-object: whatever the consumer concluded, try again.
            return Err(incomplete("GetObject", format!("s3://{bucket}/{key}: body: {e}")).into());
        }
        Ok(verdict)
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), StepError> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(body.into())
            .send()
            .await
            .map_err(|e| classify("PutObject", e))?;
        Ok(())
    }
}

/// The consumer's side: chunks read in order; the end when the body side is done.
struct ChannelReader {
    chunks: tokio::sync::mpsc::Receiver<Vec<u8>>,
    current: std::io::Cursor<Vec<u8>>,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = std::io::Cursor::new(chunk),
                None => return Ok(0),
            }
        }
    }
}
