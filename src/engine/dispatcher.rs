//! The dispatcher: turns (route, event) into a workflow instance and waits for its result.
//!
//! The instance id is the route name plus the event's identity, so a second delivery of the
//! same event finds its instance: finished → answered at once; running in this process →
//! attached to; unfinished in the journal → resumed from its pending action. An instance runs
//! in a supervised [`WorkflowActor`]; the dispatcher holds the actor's address while the
//! instance runs, which is what makes the supervisor restart it after a panic, and drops the
//! address when the instance ends.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use actix::{Addr, Supervisor};
use futures::FutureExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use super::Engine;
use super::runner::{self, Failure, RunResult};
use crate::actors::workflow::WorkflowActor;
use crate::events::Event;
use crate::journal::{Record, SCHEMA_VERSION, Status, now_ms};
use crate::workflows::Next;

/// Everything needed to start (or find) one workflow instance.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub route: String,
    pub workflow: String,
    pub params: Value,
    pub event: Event,
    pub queue: String,
    pub message_id: String,
    /// W3C traceparent of the message, if the producer sent one.
    pub trace: Option<String>,
    /// The message was brought back from the DLQ by `tugboat dlq redrive`: a dead-lettered
    /// instance starts again instead of being acknowledged.
    pub redrive: bool,
}

/// The instance id for an event on a route: `route:identity`, or `route:h-<sha256>` when the
/// identity is long or has characters that do not belong in an id.
pub fn workflow_id(route: &str, identity: &str) -> String {
    let plain = identity.len() <= 96
        && identity
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c));
    if plain {
        format!("{route}:{identity}")
    } else {
        let digest = Sha256::digest(identity.as_bytes());
        format!("{route}:h-{}", hex::encode(&digest[..16]))
    }
}

struct Running {
    addr: Option<Addr<WorkflowActor>>,
    waiters: Vec<oneshot::Sender<RunResult>>,
}

/// What one supervised run of an instance came to.
pub enum Supervised {
    Done(RunResult),
    /// It panicked and may run again: the supervisor restarts the actor.
    Restart,
}

pub struct Dispatcher {
    engine: Arc<Engine>,
    running: Mutex<HashMap<String, Running>>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher").finish_non_exhaustive()
    }
}

impl Dispatcher {
    pub fn new(engine: Arc<Engine>) -> Arc<Dispatcher> {
        Arc::new(Dispatcher {
            engine,
            running: Mutex::new(HashMap::new()),
        })
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many instances run in this process now.
    pub fn running_count(&self) -> usize {
        self.running().len()
    }

    /// Starts, resumes or attaches to the instance for `req`, and waits for its result. Must
    /// be called on an actix arbiter (the instance runs in an actor there).
    pub async fn start(self: &Arc<Self>, req: StartRequest) -> RunResult {
        let id = workflow_id(&req.route, &req.event.identity);
        let (tx, rx) = oneshot::channel();
        // Claimed before any await, so that concurrent deliveries of one event attach.
        let attached = {
            let mut running = self.running();
            match running.get_mut(&id) {
                Some(r) => {
                    r.waiters.push(tx);
                    true
                }
                None => {
                    let entry = Running {
                        addr: None,
                        waiters: vec![tx],
                    };
                    running.insert(id.clone(), entry);
                    false
                }
            }
        };
        if attached {
            return rx.await.unwrap_or(RunResult::Released);
        }
        match self.prepare(&id, &req).await {
            Some(result) => self.finish(&id, result),
            None => {
                let actor = WorkflowActor::new(self.clone(), id.clone(), req.workflow.clone());
                let addr = Supervisor::start(move |_| actor);
                if let Some(r) = self.running().get_mut(&id) {
                    r.addr = Some(addr);
                }
            }
        }
        rx.await.unwrap_or(RunResult::Released)
    }

    /// Finds or creates the journal record; `Some(result)` when there is nothing to run.
    async fn prepare(&self, id: &str, req: &StartRequest) -> Option<RunResult> {
        let existing = match self.engine.journal.get(id) {
            Ok(r) => r,
            Err(e) => return Some(RunResult::JournalError(e.to_string())),
        };
        let mut redrives = 0;
        if let Some(r) = existing {
            match &r.status {
                Status::Succeeded => return Some(RunResult::Succeeded),
                Status::Failed { reason } => {
                    return Some(RunResult::Failed(Failure::from_record(&r, reason)));
                }
                Status::DeadLettered { .. } if !req.redrive => {
                    return Some(RunResult::DeadLettered);
                }
                Status::DeadLettered { .. } => redrives = r.redrives + 1,
                Status::Running | Status::Waiting { .. } => return None,
            }
        }
        let Some(logic) = self.engine.registry.get(&req.workflow) else {
            return Some(RunResult::Failed(Failure {
                workflow_id: id.to_owned(),
                workflow: req.workflow.clone(),
                route: req.route.clone(),
                reason: format!("workflow kind {:?} is not in this build", req.workflow),
                step: None,
                attempts: 0,
                compensation: vec![],
            }));
        };
        let now = now_ms();
        let mut record = Record {
            schema: SCHEMA_VERSION,
            id: id.to_owned(),
            workflow: req.workflow.clone(),
            route: req.route.clone(),
            queue: req.queue.clone(),
            message_id: req.message_id.clone(),
            status: Status::Running,
            input: req.event.body.clone(),
            params: req.params.clone(),
            state: Value::Null,
            pending: None,
            steps: vec![],
            output: None,
            last_error: None,
            panics: 0,
            redrives,
            trace: req.trace.clone(),
            created_ms: now,
            updated_ms: now,
        };
        match logic.start(&req.event.body, &req.params) {
            Err(reason) => {
                record.status = Status::Failed {
                    reason: format!("cannot start: {reason}"),
                };
                record.last_error = Some(reason);
            }
            Ok(t) => {
                record.state = t.state;
                match t.next {
                    Next::Run(action) => record.pending = Some(action),
                    Next::Complete(output) => {
                        record.output = Some(output);
                        record.status = Status::Succeeded;
                    }
                    Next::Fail(reason) => {
                        record.last_error = Some(reason.clone());
                        record.status = Status::Failed { reason };
                    }
                }
            }
        }
        if let Err(e) = self.engine.journal.put(&record).await {
            return Some(RunResult::JournalError(e.to_string()));
        }
        match &record.status {
            Status::Running => None,
            Status::Succeeded => Some(RunResult::Succeeded),
            Status::Failed { reason } => {
                Some(RunResult::Failed(Failure::from_record(&record, reason)))
            }
            _ => None,
        }
    }

    /// Ends instance `id`: every waiter gets `result`, and the actor's address is dropped so
    /// that its supervisor lets it stop for good.
    pub fn finish(&self, id: &str, result: RunResult) {
        let entry = self.running().remove(id);
        if let Some(entry) = entry {
            for w in entry.waiters {
                let _ = w.send(result.clone());
            }
        }
    }

    /// One supervised run of instance `id`: within its kind's concurrency limit, catching a
    /// panic, counting it in the journal, and giving up after too many.
    pub async fn run_supervised(&self, id: &str, kind: &str) -> Supervised {
        let _permit = match self.engine.limit(kind) {
            Some(limit) => limit.acquire_owned().await.ok(),
            None => None,
        };
        let panic = match AssertUnwindSafe(runner::drive(&self.engine, id))
            .catch_unwind()
            .await
        {
            Ok(result) => return Supervised::Done(result),
            Err(panic) => panic_message(panic.as_ref()),
        };
        let mut record = match self.engine.journal.get(id) {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Supervised::Done(RunResult::JournalError(format!("no record for {id}")));
            }
            Err(e) => return Supervised::Done(RunResult::JournalError(e.to_string())),
        };
        record.panics += 1;
        record.last_error = Some(format!("panicked: {panic}"));
        record.updated_ms = now_ms();
        let give_up = record.panics >= self.engine.options.max_panics;
        tracing::error!(
            workflow_id = id,
            panics = record.panics,
            give_up,
            "workflow panicked: {panic}"
        );
        if give_up {
            let reason = format!("panicked {} times; last: {panic}", record.panics);
            record.status = Status::Failed {
                reason: reason.clone(),
            };
            record.pending = None;
            if let Err(e) = self.engine.journal.put(&record).await {
                return Supervised::Done(RunResult::JournalError(e.to_string()));
            }
            return Supervised::Done(RunResult::Failed(Failure::from_record(&record, &reason)));
        }
        if let Err(e) = self.engine.journal.put(&record).await {
            return Supervised::Done(RunResult::JournalError(e.to_string()));
        }
        Supervised::Restart
    }

    /// Marks instance `id` as handed to the DLQ (after the copy was sent).
    pub async fn mark_dead_lettered(&self, id: &str, reason: &str) -> Result<(), String> {
        let Some(mut record) = self.engine.journal.get(id).map_err(|e| e.to_string())? else {
            return Ok(());
        };
        record.status = Status::DeadLettered {
            reason: reason.to_owned(),
        };
        record.updated_ms = now_ms();
        self.engine
            .journal
            .put(&record)
            .await
            .map_err(|e| e.to_string())
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::workflow_id;

    #[test]
    fn ids_are_readable_when_safe_and_hashed_otherwise() {
        assert_eq!(
            workflow_id("r", "7bf73129-1428-4cd3-a780-95db273d1602"),
            "r:7bf73129-1428-4cd3-a780-95db273d1602"
        );
        let long = workflow_id("r", &"k".repeat(200));
        assert!(long.starts_with("r:h-") && long.len() == 4 + 32, "{long}");
        assert_ne!(workflow_id("r", "a b"), workflow_id("r", "a  b"));
        assert_ne!(workflow_id("r1", "x"), workflow_id("r2", "x"));
    }
}
