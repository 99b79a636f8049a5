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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::aws::Clients;
    use crate::aws::tests::settings;

    /// An S3 endpoint that answers every request with the headers of a 1 000-byte object and
    /// its first 10 bytes, then sends nothing more and keeps the connection open.
    async fn stalling_s3() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n";
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&[b'x'; 10]).await;
                held.push(socket);
            }
        });
        url
    }

    async fn objects() -> S3Objects {
        // The call itself is answered at once: only the body stalls.
        let s = settings(
            stalling_s3().await,
            Duration::from_secs(20),
            Duration::from_secs(20),
        );
        S3Objects::new(Clients::new(&s).await.s3)
    }

    fn retryable_stall(e: &StepError) {
        assert!(e.retryable, "{e:?}");
        assert!(e.message.contains("s3://b/k: body:"), "{e:?}");
    }

    /// The SDK bounds a call until its response headers (`[aws] attempt_timeout`); a body that
    /// stops after them is cut by the SDK's stalled-stream protection (on by default: under
    /// 1 B/s after a 5 s grace period). This keeps that true: a stalled report download is a
    /// retryable incomplete read, never a step held forever.
    #[tokio::test]
    async fn a_body_that_stops_sending_is_given_up_as_a_retryable_incomplete_read() {
        let objects = objects().await;
        let got = tokio::time::timeout(Duration::from_secs(30), objects.get("b", "k", 1 << 20))
            .await
            .expect("the stalled body held the read");
        retryable_stall(&got.unwrap_err());

        let consumed = tokio::time::timeout(
            Duration::from_secs(30),
            objects.read_with(
                "b",
                "k",
                Box::new(|input| {
                    let mut all = Vec::new();
                    input.read_to_end(&mut all).map_err(|e| e.to_string())?;
                    Ok(Value::from(all.len()))
                }),
            ),
        )
        .await
        .expect("the stalled stream held the read");
        retryable_stall(&consumed.unwrap_err());
    }
}
