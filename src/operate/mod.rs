//! What operators do to a running service, one code path for the console, its JSON API and
//! the CLI: read and redrive dead letters ([`dead_letters`]), retry a dead-lettered or
//! cancelled instance ([`retry`]). Cancelling is the dispatcher's
//! (`Dispatcher::cancel`), pausing the engine's (`Paused::set`): both act on the running
//! process's state.

pub mod dead_letters;

use crate::intake::attributes;
use crate::journal::{Record, Status};
use crate::ports::{OutgoingMessage, Queue};
use crate::signing::SigningKey;

/// Why a retry or a redrive cannot be sent without a key.
pub const NO_KEY: &str = "retries and redrives carry tugboat's signature, and [security] signing_key is not set (TUGBOAT__SECURITY__SIGNING_KEY)";

/// Why a retry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryError {
    #[error("cannot retry: {0}")]
    NotNow(String),
    #[error("{0}")]
    Failed(String),
}

/// Retries the instance `record` holds, which was dead-lettered or cancelled: sends its
/// journaled event to its queue as a retry message (`tugboat-retry-of`), which starts its next
/// generation (new idempotency keys, the earlier run kept) wherever it is received, as a
/// redrive does. The work is then held by a message like any other: nothing is lost if this
/// process stops. `queue` is the instance's queue (`Record::queue`). The retry's attributes
/// are signed with `key` (`[security] signing_key`): the intake believes nothing else.
/// Returns the message id.
pub async fn retry(
    record: &Record,
    queue: &dyn Queue,
    key: Option<&SigningKey>,
) -> Result<String, RetryError> {
    let key = key.ok_or_else(|| RetryError::NotNow(NO_KEY.into()))?;
    match &record.status {
        Status::DeadLettered { .. } | Status::Cancelled { .. } => {}
        Status::Failed { .. } => {
            return Err(RetryError::NotNow(
                "it failed and is being handed to the DLQ; retry it once it is dead_lettered"
                    .into(),
            ));
        }
        other => {
            return Err(RetryError::NotNow(format!(
                "it is {} (only a dead-lettered or cancelled instance can be retried)",
                other.name()
            )));
        }
    }
    let body = record.input.to_string();
    let mut attributes = attributes::retry(&record.id, record.generation, &record.message_id);
    attributes::sign_control(&mut attributes, &body, key, crate::journal::now_ms());
    let message = OutgoingMessage {
        body,
        attributes,
        ..Default::default()
    };
    queue
        .send(&message)
        .await
        .map_err(|e| RetryError::Failed(format!("queue {}: {e}", queue.name())))
}
