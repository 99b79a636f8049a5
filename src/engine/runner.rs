//! The runner: drives one workflow instance from its journal record to a terminal state, a
//! release, or a failure.
//!
//! The order of every step is what makes crashes safe:
//! 1. journal the attempt (attempt count +1) — a restart continues the same retry sequence;
//! 2. perform the call through the ports, with the step's idempotency key;
//! 3. journal the outcome together with the workflow's next decision — only then run it.
//!
//! A crash before 3 repeats the call on resume with the same idempotency key, which AWS
//! deduplicates where it can (`RunTask` `clientToken`) and which is idempotent by nature
//! elsewhere (registration, keyed writes); notifications carry a deduplication id.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Engine, StepContext};
use crate::failpoint;
use crate::journal::{Record, Status, now_ms};
use crate::workflows::{Action, Call, Next, StepError};

/// How a run of the runner ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunResult {
    /// Finished successfully (now or earlier).
    Succeeded,
    /// Already handed to the DLQ earlier: nothing to do.
    DeadLettered,
    /// Failed for good and compensated; the caller hands the message to the DLQ.
    Failed(Failure),
    /// Backing off: release the message for this long and resume on redelivery.
    RetryLater(Duration),
    /// Stopped at a journaled point for shutdown: release the message now.
    Released,
    /// The journal failed: nothing is known to be durable, so release the message for a
    /// later retry.
    JournalError(String),
}

/// What the DLQ entry says about a failure.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub workflow_id: String,
    pub workflow: String,
    pub route: String,
    pub reason: String,
    pub step: Option<String>,
    pub attempts: u32,
    /// What compensation did, step by step.
    pub compensation: Vec<String>,
}

impl Failure {
    pub fn from_record(r: &Record, reason: &str) -> Failure {
        let last = r
            .steps
            .iter()
            .rev()
            .find(|s| !s.compensation && s.last_error.is_some());
        Failure {
            workflow_id: r.id.clone(),
            workflow: r.workflow.clone(),
            route: r.route.clone(),
            reason: reason.to_owned(),
            step: last.map(|s| s.name.clone()),
            attempts: last.map_or(0, |s| s.attempts),
            compensation: r
                .steps
                .iter()
                .filter(|s| s.compensation)
                .map(|s| match &s.last_error {
                    Some(e) if s.output.is_none() => format!("{}: failed: {e}", s.name),
                    _ => format!("{}: done", s.name),
                })
                .collect(),
        }
    }
}

/// Drives instance `id` until it is terminal, fails, backs off for long, or shutdown begins.
pub async fn drive(engine: &Engine, id: &str) -> RunResult {
    let mut record = match engine.journal.get(id) {
        Ok(Some(r)) => r,
        Ok(None) => return RunResult::JournalError(format!("no journal record for {id}")),
        Err(e) => return RunResult::JournalError(e.to_string()),
    };
    let Some(logic) = engine.registry.get(&record.workflow).cloned() else {
        let reason = format!("workflow kind {:?} is not in this build", record.workflow);
        record.status = Status::Failed {
            reason: reason.clone(),
        };
        if let Some(stop) = record_and(engine, &mut record).await {
            return stop;
        }
        return RunResult::Failed(Failure::from_record(&record, &reason));
    };
    loop {
        match &record.status {
            Status::Succeeded => return RunResult::Succeeded,
            Status::DeadLettered { .. } => return RunResult::DeadLettered,
            Status::Failed { reason } => {
                return RunResult::Failed(Failure::from_record(&record, reason));
            }
            Status::Running | Status::Waiting { .. } => {}
        }
        if engine.shutting_down() {
            return RunResult::Released;
        }
        let Some(action) = record.pending.clone() else {
            let reason = "journal record is running but has no pending action".to_owned();
            record.status = Status::Failed {
                reason: reason.clone(),
            };
            if let Some(stop) = record_and(engine, &mut record).await {
                return stop;
            }
            return RunResult::Failed(Failure::from_record(&record, &reason));
        };

        let outcome = match attempt(engine, &mut record, &action).await {
            Attempted::Outcome(o) => o,
            Attempted::Return(r) => return r,
            Attempted::TryAgain => continue,
        };

        let step = record.step_mut(&action.step);
        step.finished_ms = Some(now_ms());
        match &outcome {
            Ok(v) => {
                step.output = Some(v.clone());
                step.last_error = None;
            }
            Err(e) => step.last_error = Some(e.message.clone()),
        }
        let transition = logic.advance(record.state.clone(), &action.step, outcome);
        record.state = transition.state;
        record.status = Status::Running;
        match transition.next {
            Next::Run(next) => record.pending = Some(next),
            Next::Complete(output) => {
                record.pending = None;
                record.output = Some(output);
                record.status = Status::Succeeded;
            }
            Next::Fail(reason) => {
                record.pending = None;
                record.last_error = Some(reason.clone());
                let undo = logic.compensation(&record.state);
                compensate(engine, &mut record, undo).await;
                record.status = Status::Failed { reason };
            }
        }
        if let Some(stop) = record_and(engine, &mut record).await {
            return stop;
        }
        failpoint::hit("transition-journaled");
    }
}

enum Attempted {
    /// The step's final outcome, for the workflow to decide on.
    Outcome(Result<Value, StepError>),
    /// Stop driving with this result.
    Return(RunResult),
    /// A short back-off passed; attempt again.
    TryAgain,
}

/// One attempt at `action`, with the retry bookkeeping around it.
async fn attempt(engine: &Engine, record: &mut Record, action: &Action) -> Attempted {
    let policy = &action.retry;
    let step = record.step_mut(&action.step);
    let elapsed = Duration::from_millis(now_ms().saturating_sub(step.first_started_ms));
    if step.attempts > 0 && !policy.allows_another(step.attempts, elapsed) {
        // Attempts ran out before a restart (or a release) brought the instance back.
        let message = format!(
            "gave up after {} attempts: {}",
            step.attempts,
            step.last_error.clone().unwrap_or_default()
        );
        return Attempted::Outcome(Err(StepError::permanent(message)));
    }

    // A long sleep is a release, not a wait: the message comes back when it is due.
    if let Call::Sleep { duration, .. } = &action.call
        && *duration > engine.options.max_in_process_wait
    {
        let due = step.first_started_ms + duration.as_millis() as u64;
        let now = now_ms();
        if step.attempts > 0 && now >= due {
            return Attempted::Outcome(Ok(json!({})));
        }
        step.attempts = 1;
        record.status = Status::Waiting { until_ms: due };
        let wait = Duration::from_millis(due.saturating_sub(now));
        return match record_and(engine, record).await {
            Some(r) => Attempted::Return(r),
            None => Attempted::Return(RunResult::RetryLater(wait)),
        };
    }

    let step = record.step_mut(&action.step);
    step.attempts += 1;
    step.last_started_ms = now_ms();
    let attempts = step.attempts;
    record.status = Status::Running;
    if let Some(r) = record_and(engine, record).await {
        return Attempted::Return(r);
    }
    failpoint::hit("step-journaled");

    let ctx = StepContext {
        workflow_id: &record.id,
        step: &action.step,
        attempt: attempts,
    };
    let result = match &action.call {
        // Sleeping and waking are the engine's own: a short sleep waits here, cut short by a
        // wake for its key or by shutdown (then the step is attempted again on resume).
        Call::Sleep { duration, wake_on } => {
            let mut shutdown = engine.shutdown.clone();
            let waker = wake_on.as_deref().map(|k| engine.wakers.register(k));
            let woken = async {
                match &waker {
                    Some((_, notify)) => notify.notified().await,
                    None => std::future::pending().await,
                }
            };
            let outcome = tokio::select! {
                _ = tokio::time::sleep(*duration) => Ok(json!({"woken": false})),
                _ = woken => Ok(json!({"woken": true})),
                _ = shutdown.wait_for(|s| *s) => Err(()),
            };
            if let Some((key, notify)) = waker {
                engine.wakers.unregister(&key, &notify);
            }
            match outcome {
                Ok(v) => Ok(v),
                Err(()) => return Attempted::Return(RunResult::Released),
            }
        }
        Call::Wake { key } => Ok(json!({"woken": engine.wakers.wake(key)})),
        Call::ReadWorkflow { id } => match engine.journal.get(id) {
            Ok(Some(r)) => Ok(
                json!({"found": true, "workflow": r.workflow, "status": r.status.name(), "output": r.output}),
            ),
            Ok(None) => Ok(json!({"found": false})),
            Err(e) => Err(StepError::retryable(e.to_string())),
        },
        call => engine.effects.execute(ctx, call).await,
    };
    failpoint::hit("step-called");
    let error = match result {
        Ok(v) => return Attempted::Outcome(Ok(v)),
        Err(e) => e,
    };
    let step = record.step_mut(&action.step);
    step.last_error = Some(error.message.clone());
    let elapsed = Duration::from_millis(now_ms().saturating_sub(step.first_started_ms));
    if !error.retryable || !policy.allows_another(attempts, elapsed) {
        let message = if error.retryable {
            format!("gave up after {attempts} attempts: {}", error.message)
        } else {
            error.message
        };
        return Attempted::Outcome(Err(StepError::permanent(message)));
    }
    let delay = policy.backoff(attempts, &mut rand::rng());
    tracing::warn!(workflow_id = %record.id, step = %action.step, attempts, delay_ms = delay.as_millis() as u64,
        error = %error.message, "step failed; retrying");
    if delay > engine.options.max_in_process_wait {
        record.status = Status::Waiting {
            until_ms: now_ms() + delay.as_millis() as u64,
        };
        return match record_and(engine, record).await {
            Some(r) => Attempted::Return(r),
            None => Attempted::Return(RunResult::RetryLater(delay)),
        };
    }
    if let Some(r) = record_and(engine, record).await {
        return Attempted::Return(r);
    }
    let mut shutdown = engine.shutdown.clone();
    tokio::select! {
        _ = tokio::time::sleep(delay) => Attempted::TryAgain,
        _ = shutdown.wait_for(|s| *s) => Attempted::Return(RunResult::Released),
    }
}

/// Journals `record`; `Some(result)` if that failed and the run must stop.
async fn record_and(engine: &Engine, record: &mut Record) -> Option<RunResult> {
    record.updated_ms = now_ms();
    engine
        .journal
        .put(record)
        .await
        .err()
        .map(|e| RunResult::JournalError(e.to_string()))
}

/// Runs compensation actions best-effort, each with in-process retries only, recording each
/// as a compensation step. A compensation that fails is recorded and the next still runs.
async fn compensate(engine: &Engine, record: &mut Record, actions: Vec<Action>) {
    for action in actions {
        let name = format!("compensate:{}", action.step);
        let mut attempts = 0;
        let outcome = loop {
            attempts += 1;
            let ctx = StepContext {
                workflow_id: &record.id,
                step: &name,
                attempt: attempts,
            };
            match engine.effects.execute(ctx, &action.call).await {
                Ok(v) => break Ok(v),
                Err(e) if e.retryable && action.retry.allows_another(attempts, Duration::ZERO) => {
                    let delay = action.retry.backoff(attempts, &mut rand::rng());
                    tokio::time::sleep(delay.min(engine.options.max_in_process_wait)).await;
                }
                Err(e) => break Err(e),
            }
        };
        let step = record.step_mut(&name);
        step.compensation = true;
        step.attempts = attempts;
        step.finished_ms = Some(now_ms());
        match outcome {
            Ok(v) => step.output = Some(v),
            Err(e) => step.last_error = Some(e.message),
        }
    }
}
