//! In-memory implementations of the ports, for unit tests and benchmarks.
//!
//! They model what the tests need to see: visibility timeouts and redelivery, receive counts,
//! stale receipt handles, and injected failures.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{BatchFailure, OutgoingMessage, Queue, QueueError, ReceivedMessage};

#[derive(Debug)]
struct Stored {
    id: String,
    message: OutgoingMessage,
    receive_count: u32,
    visible_at: Instant,
    /// The handle of the latest receive; older handles are stale, as in SQS.
    handle: Option<String>,
}

/// An SQS-like queue in memory.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    name: String,
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    /// In send order, keyed by a sequence number.
    messages: BTreeMap<u64, Stored>,
    /// The current receipt handle of each in-flight message → its sequence number.
    handles: HashMap<String, u64>,
    next_id: u64,
    /// Whole-call failures to return before behaving normally again (throttling, outages).
    failures_to_inject: u32,
    deleted: u64,
}

impl MemoryQueue {
    pub fn new(name: impl Into<String>) -> MemoryQueue {
        MemoryQueue {
            name: name.into(),
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // A test that panicked while holding the lock has already failed; keep the data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the next `n` calls fail with a retryable error.
    pub fn inject_failures(&self, n: u32) {
        self.lock().failures_to_inject = n;
    }

    /// Messages still in the queue, visible or in flight.
    pub fn len(&self) -> usize {
        self.lock().messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many messages have been deleted.
    pub fn deleted(&self) -> u64 {
        self.lock().deleted
    }

    /// Every stored message with its attributes.
    pub fn messages(&self) -> Vec<OutgoingMessage> {
        self.lock()
            .messages
            .values()
            .map(|m| m.message.clone())
            .collect()
    }

    /// Makes every in-flight message visible now, as if its visibility timeout had expired.
    pub fn expire_visibility(&self) {
        let now = Instant::now();
        for m in self.lock().messages.values_mut() {
            m.visible_at = now;
        }
    }

    fn fail_if_injected(state: &mut MemoryState) -> Result<(), QueueError> {
        if state.failures_to_inject > 0 {
            state.failures_to_inject -= 1;
            return Err(QueueError {
                message: "ThrottlingException: injected by the test".into(),
                retryable: true,
            });
        }
        Ok(())
    }

    fn handle_index(state: &MemoryState, handle: &str) -> Option<u64> {
        state.handles.get(handle).copied()
    }
}

fn invalid_handle(index: usize) -> BatchFailure {
    BatchFailure {
        index,
        code: "ReceiptHandleIsInvalid".into(),
        message: "the receipt handle is stale or unknown".into(),
        sender_fault: true,
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn receive(
        &self,
        max: u32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let deadline = Instant::now() + wait;
        loop {
            {
                let mut state = self.lock();
                Self::fail_if_injected(&mut state)?;
                let now = Instant::now();
                let mut out = Vec::new();
                let MemoryState {
                    messages,
                    next_id,
                    handles,
                    ..
                } = &mut *state;
                for (seq, m) in messages.iter_mut() {
                    if out.len() as u32 >= max.clamp(1, 10) {
                        break;
                    }
                    if m.visible_at <= now {
                        *next_id += 1;
                        let handle = format!("{}#{}", m.id, next_id);
                        if let Some(old) = m.handle.replace(handle.clone()) {
                            handles.remove(&old);
                        }
                        handles.insert(handle.clone(), *seq);
                        m.receive_count += 1;
                        m.visible_at = now + visibility;
                        out.push(ReceivedMessage {
                            message_id: m.id.clone(),
                            receipt_handle: handle,
                            body: m.message.body.clone(),
                            attributes: m.message.attributes.clone(),
                            receive_count: m.receive_count,
                            aws_trace_header: None,
                        });
                    }
                }
                if !out.is_empty() || Instant::now() >= deadline {
                    return Ok(out);
                }
            }
            tokio::time::sleep(Duration::from_millis(5).min(wait)).await;
        }
    }

    async fn send_batch(
        &self,
        messages: &[OutgoingMessage],
    ) -> Result<Vec<Result<String, BatchFailure>>, QueueError> {
        let mut state = self.lock();
        Self::fail_if_injected(&mut state)?;
        let now = Instant::now();
        let mut ids = Vec::with_capacity(messages.len());
        for m in messages {
            state.next_id += 1;
            let id = format!("{}-{:08}", self.name, state.next_id);
            let seq = state.next_id;
            state.messages.insert(
                seq,
                Stored {
                    id: id.clone(),
                    message: m.clone(),
                    receive_count: 0,
                    visible_at: now,
                    handle: None,
                },
            );
            ids.push(Ok(id));
        }
        Ok(ids)
    }

    async fn delete_batch(
        &self,
        receipt_handles: &[String],
    ) -> Result<Vec<BatchFailure>, QueueError> {
        let mut state = self.lock();
        Self::fail_if_injected(&mut state)?;
        let mut failures = Vec::new();
        for (index, handle) in receipt_handles.iter().enumerate() {
            match Self::handle_index(&state, handle) {
                Some(seq) => {
                    state.handles.remove(handle);
                    state.messages.remove(&seq);
                    state.deleted += 1;
                }
                None => failures.push(invalid_handle(index)),
            }
        }
        Ok(failures)
    }

    async fn change_visibility_batch(
        &self,
        receipt_handles: &[String],
        timeout: Duration,
    ) -> Result<Vec<BatchFailure>, QueueError> {
        let mut state = self.lock();
        Self::fail_if_injected(&mut state)?;
        let now = Instant::now();
        let mut failures = Vec::new();
        for (index, handle) in receipt_handles.iter().enumerate() {
            match Self::handle_index(&state, handle) {
                Some(seq) => {
                    if let Some(m) = state.messages.get_mut(&seq) {
                        m.visible_at = now + timeout;
                    }
                }
                None => failures.push(invalid_handle(index)),
            }
        }
        Ok(failures)
    }
}

/// A notifier that keeps what it was asked to publish.
#[derive(Debug, Default)]
pub struct MemoryNotifier {
    published: Mutex<Vec<(crate::workflows::Topic, String, serde_json::Value, String)>>,
}

impl MemoryNotifier {
    /// (topic, subject, message, deduplication id) of every publish, in order.
    pub fn published(&self) -> Vec<(crate::workflows::Topic, String, serde_json::Value, String)> {
        self.published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait]
impl super::Notifier for MemoryNotifier {
    async fn publish(
        &self,
        topic: crate::workflows::Topic,
        subject: &str,
        message: &serde_json::Value,
        deduplication_id: &str,
    ) -> Result<Option<String>, crate::workflows::StepError> {
        let mut p = self.published.lock().unwrap_or_else(|e| e.into_inner());
        p.push((
            topic,
            subject.to_owned(),
            message.clone(),
            deduplication_id.to_owned(),
        ));
        Ok(Some(format!("memory-{}", p.len())))
    }
}

/// Attributes as a map, for building test messages.
pub fn attributes<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(body: &str) -> OutgoingMessage {
        OutgoingMessage {
            body: body.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn redelivers_after_visibility_and_rejects_stale_handles() {
        let q = MemoryQueue::new("q");
        q.send(&msg("a")).await.unwrap();
        let first = q
            .receive(10, Duration::ZERO, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(first.len(), 1);
        assert!(
            q.receive(10, Duration::ZERO, Duration::from_secs(30))
                .await
                .unwrap()
                .is_empty()
        );
        q.expire_visibility();
        let second = q
            .receive(10, Duration::ZERO, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(second[0].receive_count, 2);
        let stale = q
            .delete_batch(&[first[0].receipt_handle.clone()])
            .await
            .unwrap();
        assert_eq!(stale[0].code, "ReceiptHandleIsInvalid");
        assert!(
            q.delete_batch(&[second[0].receipt_handle.clone()])
                .await
                .unwrap()
                .is_empty()
        );
        assert!(q.is_empty());
        assert_eq!(q.deleted(), 1);
    }

    #[tokio::test]
    async fn injected_failures_are_retryable_then_clear() {
        let q = MemoryQueue::new("q");
        q.inject_failures(1);
        assert!(q.send(&msg("a")).await.unwrap_err().retryable);
        assert!(q.send(&msg("a")).await.is_ok());
    }
}
