//! Polling: receive while there is room. The poller asks SQS for no more messages than free
//! permits, so that the intake never holds more than its concurrency; a permit travels with
//! its message until the message is settled.
//!
//! A receive in flight is never abandoned at shutdown: SQS still delivers to an abandoned long
//! poll, and what it delivers stays invisible for the visibility timeout and counts a receive
//! towards the queue's `maxReceiveCount` (aws-sdk-java-v2#1395, aws-sdk-go-v2#2068). The
//! poller lets it finish and stops; the intake releases what it returned at once. Only the
//! shutdown deadline cuts it short.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use super::Intake;
use crate::engine::shutdown_begun;
use crate::ports::ReceivedMessage;

/// A received message and the permit it holds.
pub(super) type Received = (ReceivedMessage, OwnedSemaphorePermit);

/// Polls until shutdown or until nobody takes what it receives.
pub(super) async fn poll(
    intake: Arc<Intake>,
    permits: Arc<Semaphore>,
    tx: mpsc::Sender<Received>,
    mut shutdown: watch::Receiver<bool>,
) {
    use backon::BackoffBuilder;
    let cfg = &intake.config;
    // While the queue is unreachable: 100 ms doubling up to 10 s, with jitter, for as long as
    // it takes (SQS outages end; the service must not give up polling).
    let backoff = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times();
    let mut delays = backoff.build();
    intake.stats.polling.store(true, Ordering::Relaxed);
    loop {
        let first = tokio::select! {
            // Shutdown first: no receive starts once it has begun.
            biased;
            _ = shutdown_begun(&mut shutdown) => break,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let mut held = vec![first];
        while held.len() < 10 {
            match permits.clone().try_acquire_owned() {
                Ok(p) => held.push(p),
                Err(_) => break,
            }
        }
        let received = intake
            .queue
            .receive(held.len() as u32, cfg.wait, cfg.visibility_timeout)
            .await;
        match received {
            Ok(messages) => {
                delays = backoff.build();
                intake.stats.unreachable.store(false, Ordering::Relaxed);
                let now = crate::journal::now_ms();
                intake.dispatcher.engine().metrics.received(
                    &cfg.queue,
                    messages
                        .iter()
                        .filter_map(|m| m.sent_ms)
                        .map(|sent| Duration::from_millis(now.saturating_sub(sent))),
                );
                for m in messages {
                    let Some(permit) = held.pop() else { break };
                    if tx.send((m, permit)).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                intake.stats.unreachable.store(true, Ordering::Relaxed);
                let delay = delays.next().unwrap_or(Duration::from_secs(10));
                tracing::warn!(queue = %cfg.queue, error = %e, retry_in_ms = delay.as_millis() as u64, "receive failed");
                drop(held);
                tokio::time::sleep(delay).await;
            }
        }
    }
    intake.stats.polling.store(false, Ordering::Relaxed);
}
