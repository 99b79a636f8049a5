//! The runner: drives one workflow instance from its journal record to a terminal state, a
//! release, or a failure.
//!
//! The order of every step is what makes crashes safe:
//! 1. journal the attempt (attempt count +1) — a restart continues the same retry sequence;
//! 2. perform the call, with the step's idempotency key;
//! 3. journal the outcome together with the workflow's next decision — only then run it.
//!
//! A crash before 3 repeats the call on resume with the same idempotency key, which AWS
//! deduplicates where it can (`RunTask` `clientToken`) and which is idempotent by nature
//! elsewhere (registration, keyed writes); notifications carry a deduplication id.
//!
//! A failure is a decision like any other: when the workflow fails for good, the failure and
//! the whole list of compensating actions are journaled (status `compensating`) before the
//! first of them runs, and each runs as an ordinary step (attempts, retries, idempotency key,
//! failpoints, sleeps that end at shutdown). A process killed while compensating resumes the
//! compensation where it stopped. A compensating step that fails for good is recorded and the
//! next one still runs; the DLQ entry lists what was cleaned up and what was not.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Engine, EngineOptions};
use crate::contract::{Action, Call, Next, StepContext, StepError, Workflow};
use crate::failpoint;
use crate::journal::{Record, Status, now_ms};

/// How a run of the runner ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunResult {
    /// Finished successfully (now or earlier).
    Succeeded,
    /// Already handed to the DLQ earlier: nothing to do.
    DeadLettered,
    /// Cancelled by an operator and compensated (now or earlier): the message is done with.
    Cancelled,
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
    /// The run that failed (a redrive of this entry starts the next).
    pub generation: u32,
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
            generation: r.generation,
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

/// The prefix of a compensating step's name: `compensate:stop-task`.
pub const COMPENSATE: &str = "compensate:";

/// Drives instance `id` until it is terminal, fails, backs off for long, or shutdown begins.
/// `fresh` is the record the dispatcher has just written with its first attempt journaled
/// ([`begin_attempt`]); without it the record is read from the journal.
pub async fn drive(engine: &Engine, id: &str, fresh: Option<Record>) -> RunResult {
    // The step whose attempt the last write in this process journaled and nobody has
    // performed yet: the call follows at once, with no write of its own.
    let mut journaled: Option<String> = None;
    let mut record = match fresh {
        Some(r) => {
            journaled = r.pending.as_ref().map(|a| a.name.clone());
            r
        }
        None => match engine.journal.get(id).await {
            Ok(Some(r)) => r,
            Ok(None) => return RunResult::JournalError(format!("no journal record for {id}")),
            Err(e) => return RunResult::JournalError(e.to_string()),
        },
    };
    // The run's span (when traced): the next write keeps it, for a later run to link to.
    if let Some(tp) = crate::telemetry::propagation::current() {
        record.run_span = Some(tp);
    }
    let Some(logic) = engine.registry.get(&record.workflow).cloned() else {
        let reason = format!("workflow kind {:?} is not in this build", record.workflow);
        return fail_now(engine, &mut record, reason).await;
    };
    let mut first = true;
    loop {
        match &record.status {
            Status::Succeeded => return RunResult::Succeeded,
            Status::DeadLettered { .. } => return RunResult::DeadLettered,
            Status::Cancelled { .. } => return RunResult::Cancelled,
            Status::Failed { reason } => {
                return RunResult::Failed(Failure::from_record(&record, reason));
            }
            Status::Running | Status::Waiting { .. } => {
                // A shared journal's cancel signal is read once a run (and by sleeps).
                let ask_journal = std::mem::take(&mut first);
                match cancel_if_asked(engine, logic.as_ref(), &mut record, ask_journal).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(stop) => return stop,
                }
                // Back again before its back-off ended (a refreshed copy's delay is at most
                // 15 minutes): wait for the rest.
                if let Status::Waiting { until_ms } = record.status
                    && until_ms > now_ms()
                {
                    return RunResult::RetryLater(Duration::from_millis(until_ms - now_ms()));
                }
            }
            Status::Compensating { .. } => {}
        }
        if engine.shutting_down() {
            return RunResult::Released;
        }
        let undoing = matches!(record.status, Status::Compensating { .. });
        let Some(action) = record.pending.clone() else {
            if let Status::Compensating { reason } = &record.status {
                // Every compensating step has run: the failure can be handed over.
                let reason = reason.clone();
                record.end_compensated(reason);
                if let Some(stop) = record_and(engine, &mut record).await {
                    return stop;
                }
                continue;
            }
            let reason = "journal record is running but has no pending action".to_owned();
            return fail_now(engine, &mut record, reason).await;
        };

        let prejournaled = journaled.take().is_some_and(|name| name == action.name);
        let outcome =
            match attempt(engine, &logic, &mut record, &action, undoing, prejournaled).await {
                Attempted::Outcome(o) => o,
                Attempted::Return(r) => return r,
                Attempted::TryAgain => continue,
            };

        let step = record.step_mut(&action.name);
        let now = now_ms();
        step.finished_ms = Some(now);
        match &outcome {
            Ok(v) => {
                step.output = Some(v.clone());
                step.last_error = None;
                step.try_ended(now, None);
            }
            Err(e) => {
                step.last_error = Some(e.message.clone());
                step.try_ended(now, Some(&e.message));
            }
        }
        if undoing {
            if let Err(e) = &outcome {
                tracing::error!(workflow_id = %record.id, step = %action.name, error = %e.message,
                    "a compensating step failed for good; going on with the next");
            }
            next_undo(&mut record);
            if let Some(stop) = record_and(engine, &mut record).await {
                return stop;
            }
            failpoint::hit("undo-recorded");
            continue;
        }
        let transition = logic.advance(record.state.clone(), &action, outcome);
        record.state = transition.state;
        record.status = Status::Running;
        let failed = match transition.next {
            Next::Run(next) => {
                // The next step's first attempt is journaled with this decision.
                if begin_attempt(&mut record, &next, &engine.options) {
                    journaled = Some(next.name.clone());
                }
                record.pending = Some(next);
                false
            }
            Next::Complete(output) => {
                record.pending = None;
                record.output = Some(output);
                record.status = Status::Succeeded;
                false
            }
            Next::Fail(reason) => {
                begin_compensation(logic.as_ref(), &mut record, reason);
                true
            }
        };
        if let Some(stop) = record_and(engine, &mut record).await {
            return stop;
        }
        failpoint::hit(if failed {
            "fail-journaled"
        } else {
            "transition-journaled"
        });
    }
}

/// Marks the first attempt of `action` as started, so that the write that journals the
/// decision to run it also journals the attempt (one durable write per step instead of two);
/// the caller then performs it without another write. False, and nothing changed, for a step
/// already attempted (its retries journal each attempt on their own) and for a sleep long
/// enough to be a release (which has its own bookkeeping). A crash between the write and the
/// call counts an attempt that never ran: the retry policy sees one attempt more, never fewer.
pub(crate) fn begin_attempt(record: &mut Record, action: &Action, options: &EngineOptions) -> bool {
    if let Call::Sleep { duration, .. } = &action.call
        && *duration > options.max_in_process_wait
    {
        return false;
    }
    let step = record.step_mut(&action.name);
    if step.attempts > 0 {
        return false;
    }
    step.attempts = 1;
    step.last_started_ms = now_ms();
    step.sleep = matches!(action.call, Call::Sleep { .. });
    step.input = Some(step_input(action));
    step.try_started(step.last_started_ms);
    true
}

/// What a step record keeps of the action it ran.
fn step_input(action: &Action) -> Value {
    match &action.call {
        Call::Handler => action.step.clone(),
        other => serde_json::to_value(other).unwrap_or(Value::Null),
    }
}

/// The workflow failed for good: journal the reason and every compensating action to run.
pub(crate) fn begin_compensation(logic: &dyn Workflow, record: &mut Record, reason: String) {
    record.last_error = Some(reason.clone());
    let mut undo: Vec<Action> = logic
        .compensation(&record.state)
        .into_iter()
        .map(|mut a| {
            a.name = format!("{COMPENSATE}{}", a.name);
            a
        })
        .collect();
    record.pending = None;
    record.undo.clear();
    if undo.is_empty() {
        record.end_compensated(reason);
        return;
    }
    record.pending = Some(undo.remove(0));
    record.undo = undo;
    record.status = Status::Compensating { reason };
}

/// The current compensating step is over: take the next, or end the compensation.
pub(crate) fn next_undo(record: &mut Record) {
    record.pending = if record.undo.is_empty() {
        None
    } else {
        Some(record.undo.remove(0))
    };
    if record.pending.is_none()
        && let Status::Compensating { reason } = &record.status
    {
        let reason = reason.clone();
        record.end_compensated(reason);
    }
}

/// The key a sleep of instance `id` also listens on: a cancel ends it at once.
pub fn cancel_key(id: &str) -> String {
    format!("cancel:{id}")
}

/// The journal signal that asks whichever process runs generation `generation` of `id` to
/// cancel it (a shared journal).
pub fn cancel_signal(id: &str, generation: u32) -> String {
    format!("cancel:{id}:g{generation}")
}

/// An operator asked to cancel this run (in this process, in the record, or through the
/// shared journal, when `ask_journal`): journal the request with the decision to
/// compensate, as a failure's is. `Ok(true)` when the run is now cancelling.
async fn cancel_if_asked(
    engine: &Engine,
    logic: &dyn Workflow,
    record: &mut Record,
    ask_journal: bool,
) -> Result<bool, RunResult> {
    if record.cancel.is_none() {
        record.cancel = engine.cancels.take(&record.id);
    }
    if record.cancel.is_none()
        && ask_journal
        && engine.journal.is_shared()
        && engine
            .journal
            .signals(&cancel_signal(&record.id, record.generation))
            .await
            .is_ok_and(|n| n > 0)
    {
        record.cancel = Some(crate::journal::Cancel {
            by: "an operator (through the shared journal)".into(),
            at_ms: now_ms(),
        });
    }
    let Some(cancel) = record.cancel.clone() else {
        return Ok(false);
    };
    let reason = format!("cancelled by {}", cancel.by);
    tracing::info!(workflow_id = %record.id, by = %cancel.by, "cancelling: compensating, then ending as cancelled");
    if let Some(p) = record.pending.clone() {
        let step = record.step_mut(&p.name);
        step.try_ended(now_ms(), Some("cut short by a cancel"));
        if step.finished_ms.is_none() && step.output.is_none() {
            step.last_error = Some("cut short by a cancel".into());
        }
    }
    begin_compensation(logic, record, reason);
    match record_and(engine, record).await {
        Some(stop) => Err(stop),
        None => Ok(true),
    }
}

/// Fails the instance without compensation (it cannot be run at all) and journals that.
async fn fail_now(engine: &Engine, record: &mut Record, reason: String) -> RunResult {
    record.status = Status::Failed {
        reason: reason.clone(),
    };
    record.pending = None;
    if let Some(stop) = record_and(engine, record).await {
        return stop;
    }
    RunResult::Failed(Failure::from_record(record, &reason))
}

enum Attempted {
    /// The step's final outcome, for the workflow to decide on.
    Outcome(Result<Value, StepError>),
    /// Stop driving with this result.
    Return(RunResult),
    /// A short back-off passed; attempt again.
    TryAgain,
}

/// Journals the start of one attempt at `action` (or decides there is none to make: attempts
/// used up, or a long sleep that is a release); `Ok(attempt number)` when the call is next.
async fn journal_attempt(
    engine: &Engine,
    record: &mut Record,
    action: &Action,
    undoing: bool,
) -> Result<u32, Attempted> {
    let policy = &action.retry;
    let step = record.step_mut(&action.name);
    step.compensation = undoing;
    let elapsed = Duration::from_millis(now_ms().saturating_sub(step.first_started_ms));
    if step.attempts > 0 && !policy.allows_another(step.attempts, elapsed) {
        // Attempts ran out before a restart (or a release) brought the instance back.
        let message = format!(
            "gave up after {} attempts: {}",
            step.attempts,
            step.last_error.clone().unwrap_or_default()
        );
        return Err(Attempted::Outcome(Err(StepError::permanent(message))));
    }

    // A long sleep is a release, not a wait: the message comes back when it is due.
    if let Call::Sleep { duration, .. } = &action.call
        && *duration > engine.options.max_in_process_wait
    {
        let due = step.first_started_ms + duration.as_millis() as u64;
        let now = now_ms();
        if step.attempts > 0 && now >= due {
            return Err(Attempted::Outcome(Ok(json!({"woken": false}))));
        }
        if step.attempts == 0 {
            step.sleep = true;
            step.input = Some(step_input(action));
            step.try_started(now);
        }
        step.attempts = 1;
        if !undoing {
            record.status = Status::Waiting { until_ms: due };
        }
        let wait = Duration::from_millis(due.saturating_sub(now));
        return Err(match record_and(engine, record).await {
            Some(r) => Attempted::Return(r),
            None => Attempted::Return(RunResult::RetryLater(wait)),
        });
    }

    let step = record.step_mut(&action.name);
    step.attempts += 1;
    step.last_started_ms = now_ms();
    step.sleep = matches!(action.call, Call::Sleep { .. });
    if step.input.is_none() {
        step.input = Some(step_input(action));
    }
    step.try_started(step.last_started_ms);
    let attempts = step.attempts;
    if !undoing {
        record.status = Status::Running;
    }
    if let Some(r) = record_and(engine, record).await {
        return Err(Attempted::Return(r));
    }
    Ok(attempts)
}

/// One attempt at `action`, with the retry bookkeeping around it.
async fn attempt(
    engine: &Engine,
    logic: &Arc<dyn Workflow>,
    record: &mut Record,
    action: &Action,
    undoing: bool,
    prejournaled: bool,
) -> Attempted {
    let policy = &action.retry;
    let attempts = if prejournaled {
        record.step_mut(&action.name).attempts
    } else {
        match journal_attempt(engine, record, action, undoing).await {
            Ok(attempts) => attempts,
            Err(a) => return a,
        }
    };
    failpoint::hit(if undoing {
        "undo-journaled"
    } else {
        "step-journaled"
    });

    let ctx = StepContext {
        workflow_id: &record.id,
        step: &action.name,
        attempt: attempts,
        generation: record.generation,
    };
    let span = tracing::info_span!(
        "step",
        otel.name = format!("{} {}", record.workflow, action.name),
        otel.status_code = tracing::field::Empty,
        workflow.id = %record.id,
        workflow.route = %record.route,
        step.name = %action.name,
        step.attempt = attempts,
        step.compensation = undoing,
        outcome = tracing::field::Empty,
        error.message = tracing::field::Empty,
    );
    use tracing::Instrument;
    let called = std::time::Instant::now();
    failpoint::record_step("start", &record.id, &action.name);
    let result = match perform(engine, logic, ctx, action)
        .instrument(span.clone())
        .await
    {
        Performed::Done(result) => result,
        Performed::ShuttingDown => {
            span.record("outcome", "shutting_down");
            return Attempted::Return(RunResult::Released);
        }
        Performed::Cancelled => {
            span.record("outcome", "cancelled");
            // The next turn of the loop finds the cancel and journals it.
            return Attempted::TryAgain;
        }
    };
    failpoint::record_step("end", &record.id, &action.name);
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) if e.retryable => "retryable",
        Err(_) => "failed",
    };
    engine
        .metrics
        .step(&record.workflow, &action.name, called.elapsed(), outcome);
    match &result {
        Ok(_) => span.record("outcome", "ok"),
        Err(e) => {
            span.record("otel.status_code", "ERROR");
            span.record("error.message", e.message.as_str());
            span.record("outcome", if e.retryable { "retryable" } else { "failed" })
        }
    };
    drop(span);
    failpoint::hit(if undoing {
        "undo-called"
    } else {
        "step-called"
    });
    let error = match result {
        Ok(v) => return Attempted::Outcome(Ok(v)),
        Err(e) => e,
    };
    let step = record.step_mut(&action.name);
    step.last_error = Some(error.message.clone());
    step.try_ended(now_ms(), Some(&error.message));
    let elapsed = Duration::from_millis(now_ms().saturating_sub(step.first_started_ms));
    if !error.retryable || !policy.allows_another(attempts, elapsed) {
        let message = if error.retryable {
            format!("gave up after {attempts} attempts: {}", error.message)
        } else {
            error.message
        };
        return Attempted::Outcome(Err(StepError::permanent(message)));
    }
    // The other side's `Retry-After` is a floor under the back-off, never a ceiling.
    let delay = policy
        .backoff(attempts, &mut rand::rng())
        .max(error.retry_after.unwrap_or_default());
    tracing::warn!(workflow_id = %record.id, step = %action.name, attempts, delay_ms = delay.as_millis() as u64,
        error = %error.message, "step failed; retrying");
    engine.metrics.retry(&record.workflow, &action.name);
    if delay > engine.options.max_in_process_wait {
        // Long back-offs do not pin the process: the message comes back when it is due.
        let until_ms = now_ms() + delay.as_millis() as u64;
        if !undoing {
            record.status = Status::Waiting { until_ms };
        }
        return match record_and(engine, record).await {
            Some(r) => Attempted::Return(r),
            None => Attempted::Return(RunResult::RetryLater(delay)),
        };
    }
    if let Some(r) = record_and(engine, record).await {
        return Attempted::Return(r);
    }
    let mut shutdown = engine.shutdown.clone();
    let (key, cancel) = engine.wakers.register(&cancel_key(&record.id));
    let waited = tokio::select! {
        _ = tokio::time::sleep(delay) => Attempted::TryAgain,
        // A cancel ends the back-off: the next turn of the loop journals it.
        _ = cancel.notified() => Attempted::TryAgain,
        _ = super::shutdown_begun(&mut shutdown) => Attempted::Return(RunResult::Released),
    };
    engine.wakers.unregister(&key, &cancel);
    waited
}

enum Performed {
    Done(Result<Value, StepError>),
    /// An in-process sleep was cut short by shutdown; the step runs again on resume.
    ShuttingDown,
    /// An in-process sleep was cut short by an operator's cancel.
    Cancelled,
}

enum Slept {
    Done(Value),
    Cancelled,
    ShuttingDown,
}

/// Performs one call: the workflow's handler, or one of the engine's generic calls.
async fn perform(
    engine: &Engine,
    logic: &Arc<dyn Workflow>,
    ctx: StepContext<'_>,
    action: &Action,
) -> Performed {
    let result = match &action.call {
        Call::Handler => logic.perform(ctx, &action.step).await,
        // A short sleep waits here, cut short by a wake for its key or by shutdown.
        Call::Sleep { duration, wake_on } => {
            let mut shutdown = engine.shutdown.clone();
            let waker = wake_on.as_deref().map(|k| engine.wakers.register(k));
            // A shared journal: the wake may come from another process; it counts a signal
            // in the journal, looked at twice a second.
            let remote = async {
                match wake_on.as_deref() {
                    Some(key) if engine.journal.is_shared() => {
                        let before = engine.journal.signals(key).await.unwrap_or(u64::MAX);
                        loop {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            if engine
                                .journal
                                .signals(key)
                                .await
                                .is_ok_and(|now| now > before)
                            {
                                break;
                            }
                        }
                    }
                    _ => std::future::pending().await,
                }
            };
            let woken = async {
                match &waker {
                    Some((_, notify)) => tokio::select! {
                        _ = notify.notified() => {}
                        _ = remote => {}
                    },
                    None => std::future::pending().await,
                }
            };
            let (cancel_key, cancel) = engine.wakers.register(&cancel_key(ctx.workflow_id));
            let cancelled = async {
                let signal = cancel_signal(ctx.workflow_id, ctx.generation);
                let remote = async {
                    if !engine.journal.is_shared() {
                        return std::future::pending().await;
                    }
                    loop {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        if engine.journal.signals(&signal).await.is_ok_and(|n| n > 0) {
                            break;
                        }
                    }
                };
                tokio::select! {
                    _ = cancel.notified() => {}
                    _ = remote => {}
                }
            };
            let outcome = tokio::select! {
                _ = tokio::time::sleep(*duration) => Slept::Done(json!({"woken": false})),
                _ = woken => Slept::Done(json!({"woken": true})),
                _ = cancelled => Slept::Cancelled,
                _ = super::shutdown_begun(&mut shutdown) => Slept::ShuttingDown,
            };
            if let Some((key, notify)) = waker {
                engine.wakers.unregister(&key, &notify);
            }
            engine.wakers.unregister(&cancel_key, &cancel);
            match outcome {
                Slept::Done(v) => Ok(v),
                Slept::Cancelled => return Performed::Cancelled,
                Slept::ShuttingDown => return Performed::ShuttingDown,
            }
        }
        Call::Wake { key } => {
            let here = engine.wakers.wake(key);
            // The sleeper may be in another process of a shared journal: leave it a signal.
            if engine.journal.is_shared() {
                if let Err(e) = engine.journal.signal(key).await {
                    return Performed::Done(Err(StepError::retryable(e.to_string())));
                }
                Ok(json!({"woken": here, "signalled": true}))
            } else {
                Ok(json!({"woken": here}))
            }
        }
        Call::ReadWorkflow { id } => match engine.journal.get(id).await {
            Ok(Some(r)) => Ok(
                json!({"found": true, "workflow": r.workflow, "status": r.status.name(), "output": r.output}),
            ),
            Ok(None) => Ok(json!({"found": false})),
            Err(e) => Err(StepError::retryable(e.to_string())),
        },
        Call::Publish {
            topic,
            subject,
            message,
            attributes,
        } => match engine
            .notifier
            .publish(*topic, subject, message, &ctx.idempotency_key(), attributes)
            .await
        {
            Ok(Some(id)) => Ok(json!({"message_id": id})),
            Ok(None) => Ok(json!({"skipped": "topic not configured"})),
            Err(e) => Err(e),
        },
    };
    Performed::Done(result)
}

/// Journals `record`; `Some(result)` if that failed and the run must stop.
async fn record_and(engine: &Engine, record: &mut Record) -> Option<RunResult> {
    record.updated_ms = now_ms();
    // Only this write can end the instance (a later run finds it ended and writes nothing),
    // so an ended instance is counted once.
    if let Err(e) = engine.commit(record).await {
        return Some(RunResult::JournalError(e.to_string()));
    }
    None
}
