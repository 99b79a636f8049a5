//! Settling: what happens to a message once its work is done. **The only place in the service
//! that deletes or releases messages.**
//!
//! - Delete: batched (up to 10 per call; a smaller batch as soon as no more jobs wait).
//! - Release: `ChangeMessageVisibility` to when the work is due again (0 at shutdown). When
//!   the message's next receive would reach the queue's `maxReceiveCount`, SQS would move it to
//!   its DLQ on that receive although its workflow is alive and retrying; such a message is
//!   released as a fresh copy instead (same body and attributes, `DelaySeconds` up to 15
//!   minutes, the first message's id kept in an attribute) and the original is deleted.
//! - Dead-letter: copy to the DLQ with the reason, then delete.
//!
//! Releases and DLQ copies run as tasks of their own: a slow DLQ send delays only its own
//! message, never the deletes of others, and the message's lease is extended meanwhile.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::visibility::Leases;
use super::{Disposition, Intake, attributes, bump};
use crate::ports::{OutgoingMessage, ReceivedMessage, queue::MAX_DELAY};

/// A message whose work is done, what to do with it, and the permit it holds until then.
pub(super) struct Settle {
    pub message: ReceivedMessage,
    pub disposition: Disposition,
    #[expect(
        dead_code,
        reason = "held for its drop: the poller may receive again once the message is settled"
    )]
    pub permit: Option<OwnedSemaphorePermit>,
}

/// Settles every message it is given, until the sender is gone and all is done.
pub(super) async fn run(
    intake: Arc<Intake>,
    leases: Arc<Leases>,
    mut jobs: mpsc::UnboundedReceiver<Settle>,
) {
    let mut deletes: Vec<Settle> = Vec::new();
    let mut handoffs = FuturesUnordered::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut open = true;
    loop {
        tokio::select! {
            job = jobs.recv(), if open => match job {
                Some(job) if matches!(job.disposition, Disposition::Delete) => deletes.push(job),
                Some(job) => {
                    handoffs.push(tokio::spawn(hand_off(intake.clone(), leases.clone(), job)));
                }
                None => open = false,
            },
            Some(done) = handoffs.next(), if !handoffs.is_empty() => {
                if let Ok(Some(job)) = done {
                    deletes.push(job);
                }
            }
            _ = tick.tick() => flush(&intake, &leases, &mut deletes).await,
        }
        // Flush a full batch, or whatever is there once nothing more is waiting: a message
        // keeps its place among the intake's in-flight messages until its delete, so waiting
        // for the tick would cap a queue at `concurrency` messages per 100 ms. Under load the
        // jobs that arrive while a flush runs make the next batch.
        if deletes.len() >= 10 || (!deletes.is_empty() && jobs.is_empty()) {
            flush(&intake, &leases, &mut deletes).await;
        }
        if !open && handoffs.is_empty() {
            flush(&intake, &leases, &mut deletes).await;
            return;
        }
    }
}

/// Releases or dead-letters one message; `Some` when the original is then to be deleted.
async fn hand_off(intake: Arc<Intake>, leases: Arc<Leases>, job: Settle) -> Option<Settle> {
    tracing::debug!(message_id = %job.message.message_id, disposition = ?job.disposition, "settling");
    match &job.disposition {
        Disposition::Delete => Some(job),
        Disposition::Release(after) => {
            let after = *after;
            release(&intake, &leases, job, after).await
        }
        Disposition::Park(after) => {
            let (after, handle) = (*after, job.message.receipt_handle.clone());
            let refreshed = release(&intake, &leases, job, after).await;
            if refreshed.is_none() {
                // A fresh copy is delayed by SQS and cannot come back early; a released
                // original can.
                intake.parked.keep(handle, after);
            }
            refreshed
        }
        Disposition::DeadLetter { .. } => dead_letter(&intake, &leases, job).await,
    }
}

/// A route was resumed (or paused): the messages put back for paused routes come back now,
/// to be routed again.
pub(super) async fn expedite(intake: Arc<Intake>) {
    let handles = intake.parked.take();
    for chunk in handles.chunks(10) {
        if let Err(e) = intake
            .queue
            .change_visibility_batch(chunk, Duration::ZERO)
            .await
        {
            tracing::warn!(queue = %intake.config.queue, error = %e, "could not bring back messages held for a paused route; they return at their recheck");
        }
    }
    if !handles.is_empty() {
        tracing::info!(queue = %intake.config.queue, messages = handles.len(), "paused routes changed: held messages brought back");
    }
}

async fn release(intake: &Intake, leases: &Leases, job: Settle, after: Duration) -> Option<Settle> {
    let m = &job.message;
    leases.end(&m.message_id).await;
    bump(&intake.stats.released);
    if needs_refresh(intake, m) {
        match refresh(intake, m, after).await {
            Ok(copy) => {
                bump(&intake.stats.refreshed);
                tracing::info!(queue = %intake.config.queue, message_id = %m.message_id, copy = %copy,
                    receive_count = m.receive_count, "released as a fresh copy, clear of the queue's maxReceiveCount");
                return Some(job);
            }
            Err(e) => {
                tracing::warn!(queue = %intake.config.queue, message_id = %m.message_id, error = %e,
                    "could not send a fresh copy; releasing the message (SQS may move it to its DLQ on its next receive)");
            }
        }
    }
    if let Err(e) = intake
        .queue
        .change_visibility_batch(std::slice::from_ref(&m.receipt_handle), after)
        .await
    {
        tracing::warn!(message_id = %m.message_id, error = %e, "could not release message; it returns when its visibility lapses");
    }
    None
}

/// Whether the message's next receive would reach the queue's `maxReceiveCount` (SQS moves a
/// message to its DLQ on the receive that would exceed it). FIFO queues are left alone: a copy
/// would need the message's group and lose its place in it.
fn needs_refresh(intake: &Intake, m: &ReceivedMessage) -> bool {
    intake
        .config
        .max_receive_count
        .is_some_and(|max| m.receive_count + 1 >= max)
        && !intake.config.queue.ends_with(".fifo")
}

/// Sends a fresh copy of `m`, visible after `after` (at most SQS's 15 minutes; the journal
/// makes an earlier return wait for the rest); returns its message id.
async fn refresh(intake: &Intake, m: &ReceivedMessage, after: Duration) -> Result<String, String> {
    let mut attributes = m.attributes.clone();
    attributes
        .entry(attributes::ORIGIN.to_owned())
        .or_insert_with(|| m.message_id.clone());
    if attributes.len() > attributes::MAX_ATTRIBUTES {
        return Err("the message already has 10 attributes; a copy cannot name its origin".into());
    }
    let copy = OutgoingMessage {
        body: m.body.clone(),
        attributes,
        delay: (!after.is_zero()).then(|| after.min(MAX_DELAY)),
        ..Default::default()
    };
    intake.queue.send(&copy).await.map_err(|e| e.to_string())
}

async fn dead_letter(intake: &Intake, leases: &Leases, job: Settle) -> Option<Settle> {
    let Disposition::DeadLetter { reason, failures } = &job.disposition else {
        return Some(job);
    };
    let m = &job.message;
    let Some(dlq) = &intake.dlq else {
        // Without a DLQ, SQS's own redrive policy is the only way out: leave the message to
        // become visible again and count towards maxReceiveCount.
        tracing::error!(queue = %intake.config.queue, message_id = %m.message_id, %reason,
            "work failed for good and no dlq is configured; leaving the message to the queue's redrive policy");
        leases.end(&m.message_id).await;
        return None;
    };
    let copy = OutgoingMessage {
        body: m.body.clone(),
        attributes: attributes::dead_letter(m, reason, failures.first()),
        ..Default::default()
    };
    match dlq.send(&copy).await {
        Ok(_) => {
            for f in failures {
                if let Err(e) = intake
                    .dispatcher
                    .mark_dead_lettered(&f.workflow_id, &f.reason)
                    .await
                {
                    tracing::warn!(workflow_id = %f.workflow_id, error = %e, "could not journal the dead-lettering; a redelivery will hand it over again");
                }
            }
            bump(&intake.stats.dead_lettered);
            tracing::warn!(queue = %intake.config.queue, message_id = %m.message_id, %reason, "message handed to the DLQ");
            Some(job)
        }
        Err(e) => {
            tracing::error!(message_id = %m.message_id, error = %e, "could not copy the message to the DLQ; retrying later");
            leases.end(&m.message_id).await;
            let _ = intake
                .queue
                .change_visibility_batch(
                    std::slice::from_ref(&m.receipt_handle),
                    Duration::from_secs(30),
                )
                .await;
            None
        }
    }
}

/// Deletes everything waiting, ten at a time; each message's permit goes back afterwards.
async fn flush(intake: &Intake, leases: &Leases, deletes: &mut Vec<Settle>) {
    while !deletes.is_empty() {
        let chunk: Vec<Settle> = deletes.drain(..deletes.len().min(10)).collect();
        for job in &chunk {
            leases.end(&job.message.message_id).await;
        }
        let handles: Vec<String> = chunk
            .iter()
            .map(|j| j.message.receipt_handle.clone())
            .collect();
        match intake.queue.delete_batch(&handles).await {
            Ok(failures) => {
                intake.stats.deleted.fetch_add(
                    (chunk.len() - failures.len()) as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                for f in failures {
                    // A stale handle means the message was received again meanwhile; the
                    // journal says it is done, so that delivery is acknowledged at once.
                    tracing::warn!(queue = %intake.config.queue, code = %f.code, "delete failed: {}", f.message);
                }
            }
            Err(e) => {
                tracing::warn!(queue = %intake.config.queue, error = %e, "delete batch failed; the messages will be redelivered and acknowledged from the journal");
            }
        }
    }
}
