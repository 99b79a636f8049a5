//! Dead letters: listing a DLQ with the reasons tugboat wrote on each copy, and moving
//! copies back to their queue (`tugboat dlq list|redrive`, the console's dead-letter page).
//!
//! A redrive is receive + send + delete (the emulator has no StartMessageMoveTask; in AWS it
//! also keeps tugboat's marker on the message, which a move task would not add). A copy is
//! deleted from the DLQ only after its queue accepted it: nothing is lost, and a copy that
//! arrives twice is acknowledged from the journal.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::intake::attributes;
use crate::ports::{OutgoingMessage, Queue};

/// One dead letter, as the DLQ copy's attributes describe it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    pub message_id: String,
    /// Every attribute of the copy (`tugboat-error`, `tugboat-workflow-id`, …).
    pub attributes: BTreeMap<String, String>,
    pub body: String,
}

impl DeadLetter {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// The instance whose failure sent it here, if tugboat dead-lettered it.
    pub fn workflow_id(&self) -> Option<&str> {
        self.get("tugboat-workflow-id")
    }

    pub fn reason(&self) -> &str {
        self.get("tugboat-error").unwrap_or("(no reason recorded)")
    }
}

/// How long a listing hides what it read, so that each message is listed once; everything
/// read is made visible again at the end.
const LISTING_HIDE: Duration = Duration::from_secs(30);

/// Up to `max` dead letters of `dlq`, each once.
pub async fn list(dlq: &dyn Queue, max: usize) -> Result<Vec<DeadLetter>, String> {
    let mut seen = BTreeSet::new();
    let mut handles = Vec::new();
    let mut out = Vec::new();
    let listed = async {
        while out.len() < max {
            let want = (max - out.len()).min(10) as u32;
            let batch = dlq
                .receive(want, Duration::from_secs(1), LISTING_HIDE)
                .await
                .map_err(|e| format!("dlq {}: {e}", dlq.name()))?;
            if batch.is_empty() {
                break;
            }
            for m in batch {
                handles.push(m.receipt_handle.clone());
                if seen.insert(m.message_id.clone()) {
                    out.push(DeadLetter {
                        message_id: m.message_id,
                        attributes: m.attributes,
                        body: m.body,
                    });
                }
            }
        }
        Ok::<_, String>(())
    }
    .await;
    release(dlq, &handles).await;
    listed.map(|()| out)
}

async fn release(dlq: &dyn Queue, handles: &[String]) {
    for chunk in handles.chunks(10) {
        if let Err(e) = dlq.change_visibility_batch(chunk, Duration::ZERO).await {
            tracing::warn!(dlq = %dlq.name(), error = %e, "could not make listed dead letters visible again; they return within 30 s");
        }
    }
}

/// What a redrive did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Redriven {
    pub moved: usize,
    /// Copies the queue refused, with why (they stay in the DLQ).
    pub not_moved: Vec<String>,
    /// Copies sent back that could not be deleted from the DLQ (a later redrive sends them
    /// again; the journal acknowledges the duplicate).
    pub not_deleted: usize,
    /// Moved copies that failed again and were back in the DLQ before the redrive ended:
    /// left there, not moved again.
    pub came_back: usize,
}

impl Redriven {
    /// What happened, in a line: moved, and those that failed again at once.
    pub fn summary(&self, dlq: &str, queue: &str) -> String {
        let mut line = format!("redrove {} message(s) from {dlq} to {queue}", self.moved);
        if self.came_back > 0 {
            line.push_str(&format!(
                "; {} failed again while the redrive ran and stay in {dlq} (see their reasons)",
                self.came_back
            ));
        }
        line
    }
}

/// Moves up to `max` dead letters of `dlq` back to `source` — only message `only` when
/// given (the others read on the way are made visible again).
/// Each copy's marker is signed with `key` (`[security] signing_key`).
pub async fn redrive(
    source: &dyn Queue,
    dlq: &dyn Queue,
    only: Option<&str>,
    max: usize,
    key: Option<&crate::signing::SigningKey>,
) -> Result<Redriven, String> {
    let key = key.ok_or_else(|| super::NO_KEY.to_owned())?;
    let mut done = Redriven::default();
    let mut passed_over = Vec::new();
    let mut seen = BTreeSet::new();
    // What this redrive moved, by the message that first carried each event: a copy that
    // failed again while the redrive went on (a running service dead-letters a bad body in
    // milliseconds) is back in the DLQ under a new id, and is left there rather than moved
    // round and round until `max`.
    let mut moved = BTreeSet::new();
    let result = async {
        while done.moved < max {
            let want = (max - done.moved).min(10) as u32;
            let batch = dlq
                .receive(want, Duration::from_secs(1), Duration::from_secs(60))
                .await
                .map_err(|e| format!("dlq {}: {e}", dlq.name()))?;
            if batch.is_empty() {
                break;
            }
            let mut chosen = Vec::new();
            let mut fresh = false;
            for m in batch {
                fresh |= seen.insert(m.message_id.clone());
                if moved.contains(attributes::origin_id(&m)) {
                    done.came_back += 1;
                    passed_over.push(m.receipt_handle);
                } else if only.is_none_or(|id| id == m.message_id) {
                    chosen.push(m);
                } else {
                    passed_over.push(m.receipt_handle);
                }
            }
            if chosen.is_empty() {
                if !fresh {
                    break; // Only messages already passed over: the one asked for is not here.
                }
                continue;
            }
            let outgoing: Vec<OutgoingMessage> = chosen
                .iter()
                .map(|m| {
                    // Marked with the run that failed, so that a duplicate of this copy
                    // cannot start the instance a second time; signed, so that the intake
                    // believes the marker.
                    let mut attributes = attributes::redriven(&m.attributes, &m.message_id);
                    attributes::sign_control(
                        &mut attributes,
                        &m.body,
                        key,
                        crate::journal::now_ms(),
                    );
                    OutgoingMessage {
                        body: m.body.clone(),
                        attributes,
                        ..Default::default()
                    }
                })
                .collect();
            let results = source
                .send_batch(&outgoing)
                .await
                .map_err(|e| format!("queue {}: {e}", source.name()))?;
            let mut sent = Vec::new();
            for ((m, r), out) in chosen.iter().zip(&results).zip(&outgoing) {
                match r {
                    Ok(_) => {
                        sent.push(m.receipt_handle.clone());
                        moved.insert(out.attributes[attributes::ORIGIN].clone());
                    }
                    Err(f) => {
                        done.not_moved
                            .push(format!("{}: {}: {}", m.message_id, f.code, f.message));
                        passed_over.push(m.receipt_handle.clone());
                    }
                }
            }
            let failed = dlq
                .delete_batch(&sent)
                .await
                .map_err(|e| format!("dlq {}: {e}", dlq.name()))?;
            done.not_deleted += failed.len();
            done.moved += sent.len();
            if sent.is_empty() || only.is_some() {
                break;
            }
        }
        Ok::<_, String>(())
    }
    .await;
    release(dlq, &passed_over).await;
    result.map(|()| done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::memory::MemoryQueue;

    /// A copy that fails again as soon as it is moved (a running service dead-letters a bad
    /// body in milliseconds) is back in the DLQ under a new id: the redrive moves each dead
    /// letter once, however fast they come back, instead of round and round until `max`.
    /// (The DLQ as its own source is that loop at its fastest: every copy lands back at once.)
    #[tokio::test]
    async fn a_redrive_moves_each_dead_letter_once_even_when_it_fails_again_at_once() {
        let key = crate::signing::SigningKey::parse(&"k".repeat(32)).unwrap();
        let dlq = MemoryQueue::new("dlq");
        for body in ["{\"a\":1}", "{\"b\":2}"] {
            let m = OutgoingMessage {
                body: body.into(),
                ..Default::default()
            };
            dlq.send(&m).await.unwrap();
        }
        let done = redrive(&dlq, &dlq, None, 1000, Some(&key)).await.unwrap();
        assert_eq!(done.moved, 2, "{done:?}");
        assert_eq!(done.came_back, 2, "{done:?}");
        assert_eq!(dlq.messages().len(), 2, "the copies stay in the DLQ");
        assert!(
            done.summary("dlq", "q").contains("2 failed again"),
            "{}",
            done.summary("dlq", "q")
        );
        // Without a key nothing is moved, and the reason names the key.
        let e = redrive(&dlq, &dlq, None, 10, None).await.unwrap_err();
        assert!(e.contains("signing_key"), "{e}");
    }
}
