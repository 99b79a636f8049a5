//! Visibility: every received message is leased (kept invisible) until it is settled. A task
//! of its own extends the leases at half-life, so that neither a long step nor a slow DLQ
//! handoff lets a message become visible to another consumer while tugboat still works on it.
//!
//! Extending and releasing are ordered by the lease table's lock: the settler ends a lease
//! before it releases the message, and an extension round holds the lock while it calls SQS,
//! so a release is never overtaken by a stale extension.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, watch};

use super::{Intake, bump};
use crate::engine::shutdown_begun;
use crate::ports::ReceivedMessage;

struct Lease {
    message: ReceivedMessage,
    visible_until: Instant,
    /// Handed to the settler: it is settled there, not released at shutdown.
    settling: bool,
}

/// The messages this intake holds, by message id.
#[derive(Default)]
pub(super) struct Leases {
    leases: Mutex<HashMap<String, Lease>>,
    /// How many there are, for `/metrics` (which cannot wait for the lock).
    count: Arc<std::sync::atomic::AtomicU64>,
}

impl Leases {
    /// `message` was received, invisible for `visibility`.
    /// Leases counted into `count` (the intake's `in_flight`).
    pub(super) fn counted(count: Arc<std::sync::atomic::AtomicU64>) -> Leases {
        Leases {
            leases: Mutex::default(),
            count,
        }
    }

    pub(super) async fn take(&self, message: &ReceivedMessage, visibility: Duration) {
        let mut leases = self.leases.lock().await;
        leases.insert(
            message.message_id.clone(),
            Lease {
                message: message.clone(),
                visible_until: Instant::now() + visibility,
                settling: false,
            },
        );
        self.count
            .store(leases.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// The message's work is done; the settler decides what happens to it.
    pub(super) async fn hand_over(&self, message_id: &str) {
        if let Some(l) = self.leases.lock().await.get_mut(message_id) {
            l.settling = true;
        }
    }

    /// The messages whose work did not finish (at shutdown), now handed over too.
    pub(super) async fn unsettled(&self) -> Vec<ReceivedMessage> {
        let mut leases = self.leases.lock().await;
        leases
            .values_mut()
            .filter(|l| !l.settling)
            .map(|l| {
                l.settling = true;
                l.message.clone()
            })
            .collect()
    }

    /// Stops extending the message's visibility (it is being deleted or released).
    pub(super) async fn end(&self, message_id: &str) {
        let mut leases = self.leases.lock().await;
        leases.remove(message_id);
        self.count
            .store(leases.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Extends every lease whose visibility is half gone, until `stop`.
pub(super) async fn extend(
    intake: Arc<Intake>,
    leases: Arc<Leases>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => extend_due(&intake, &leases).await,
            _ = shutdown_begun(&mut stop) => return,
        }
    }
}

async fn extend_due(intake: &Intake, leases: &Leases) {
    let vt = intake.config.visibility_timeout;
    let mut leases = leases.leases.lock().await;
    let now = Instant::now();
    let due: Vec<(String, String)> = leases
        .iter()
        .filter(|(_, l)| l.visible_until.saturating_duration_since(now) < vt / 2)
        .map(|(id, l)| (id.clone(), l.message.receipt_handle.clone()))
        .collect();
    for chunk in due.chunks(10) {
        let handles: Vec<String> = chunk.iter().map(|(_, h)| h.clone()).collect();
        match intake.queue.change_visibility_batch(&handles, vt).await {
            Ok(failures) => {
                for (i, (id, _)) in chunk.iter().enumerate() {
                    if failures.iter().any(|f| f.index == i) {
                        tracing::warn!(message_id = %id, "could not extend visibility; the message may be redelivered");
                    } else if let Some(l) = leases.get_mut(id) {
                        l.visible_until = now + vt;
                        bump(&intake.stats.visibility_extensions);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(queue = %intake.config.queue, error = %e, "visibility extension failed; retrying")
            }
        }
    }
}
