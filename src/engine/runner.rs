//! The runner: the interpreter of one run of an instance. It reads the record, feeds the
//! [`Lifecycle`] what happens (a turn, an attempt's outcome) and carries out the effects it
//! returns: the journal writes, the calls (the workflow's handler, or the engine's sleep,
//! wake, read and publish), the back-offs, and around them the spans, metrics, logs and
//! failpoints. What to do, and in what order, is the lifecycle's (`lifecycle.rs`); this file
//! only does it.
//!
//! A crash before an outcome is journaled repeats the call on resume with the same
//! idempotency key, which AWS deduplicates where it can (`RunTask` `clientToken`) and which is
//! idempotent by nature elsewhere (registration, keyed writes); notifications carry a
//! deduplication id.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tracing::Instrument;

use super::Engine;
pub use super::lifecycle::{COMPENSATE, Failure, RunResult};
use super::lifecycle::{Checkpoint, Effect, Input, Lifecycle, Note};
use crate::contract::{
    Action, Call, Published, StepContext, StepError, Woken, Workflow, WorkflowRead, to_output,
};
use crate::failpoint;
use crate::journal::{Record, Status};

/// Drives instance `id` until it is terminal, fails, backs off for long, or shutdown begins.
/// `start` is the record the dispatcher has just made, and whether its first attempt is in
/// it ([`Lifecycle::start`]); without it the record is read from the journal.
///
/// An instance whose message is its record ([`crate::contract::Durability::Message`]) runs
/// without writes while it goes well: the attempt, transition and success checkpoints are
/// passed by, not written. Anything else (a failed attempt's back-off, a failure, a cancel,
/// a wait) journals the record there, claimed first, and the run goes on journaled.
/// `first`: the outcome of its first attempt, made already by its direct run
/// ([`crate::contract::Workflow::run_direct`]), taken as that attempt's rather than made again.
pub async fn drive(
    engine: &Engine,
    id: &str,
    start: Option<(Record, bool)>,
    mut first: Option<Result<Value, StepError>>,
) -> RunResult {
    let is_fresh = start.as_ref().is_some_and(|(_, fresh)| *fresh);
    let mut record = match start {
        Some((r, _)) => r,
        None => match engine.journal.get(id).await {
            Ok(Some(r)) => r,
            Ok(None) => return RunResult::JournalError(format!("no journal record for {id}")),
            Err(e) => return RunResult::JournalError(e.to_string()),
        },
    };
    let mut unjournaled = engine.is_unjournaled(id, false);
    let logic = engine.registry.get(&record.workflow).cloned();
    let mut lifecycle = Lifecycle::new(logic.as_deref(), &engine.options);
    if is_fresh {
        lifecycle.resume_fresh(&record);
    }
    // The run's span (when traced): the next write keeps it, for a later run to link to.
    if let Some(tp) = crate::telemetry::propagation::current() {
        record.run_span = Some(tp);
    }
    // A shared journal's cancel signal is read once a run (and by sleeps).
    let mut input = turn(engine, &record, true).await;
    loop {
        let now = engine.clock.now_ms();
        let mut next = None;
        for effect in lifecycle.apply(&mut record, input, now) {
            match effect {
                Effect::Journal(checkpoint) if unjournaled && goes_well(checkpoint, &record) => {
                    passed(checkpoint);
                }
                Effect::Journal(checkpoint) => {
                    if unjournaled {
                        unjournaled = false;
                        if let Err(result) = engine.journal_from_now(&mut record).await {
                            return result;
                        }
                    } else if let Err(e) = engine.commit(&record).await {
                        return RunResult::JournalError(e.to_string());
                    }
                    passed(checkpoint);
                }
                Effect::Note(note) => observe(engine, &record, note),
                Effect::Stop(RunResult::Succeeded) if unjournaled => {
                    engine.ended_unjournaled(record);
                    return RunResult::Succeeded;
                }
                // Released (shutdown) with nothing journaled: the message is the record.
                Effect::Stop(result) => return result,
                Effect::Turn => next = Some(turn(engine, &record, false).await),
                Effect::BackOff(delay) => {
                    // A failed attempt: from here on the instance is journaled, so that its
                    // attempts are counted across restarts as any instance's are.
                    if unjournaled {
                        unjournaled = false;
                        if let Err(result) = engine.journal_from_now(&mut record).await {
                            return result;
                        }
                    }
                    next = Some(back_off(engine, &record, delay).await);
                }
                Effect::Perform {
                    attempt: 1,
                    undoing: false,
                    ..
                } if first.is_some() => {
                    next = first.take().map(Input::Outcome);
                }
                Effect::Perform {
                    action,
                    attempt,
                    undoing,
                } => {
                    let performed =
                        attempt_call(engine, &logic, &record, &action, attempt, undoing);
                    next = Some(match performed.await {
                        Some(input) => input,
                        None => turn(engine, &record, false).await,
                    });
                }
            }
        }
        match next {
            Some(i) => input = i,
            // Every list of effects ends in one that says what comes next.
            None => {
                return RunResult::JournalError("the lifecycle stopped without a result".into());
            }
        }
    }
}

/// What a turn of the run finds: an operator's cancel (in this process, or, once a run,
/// through the shared journal), and whether shutdown has begun.
async fn turn(engine: &Engine, record: &Record, ask_journal: bool) -> Input {
    let mut cancel = None;
    if matches!(record.status, Status::Running | Status::Waiting { .. }) && record.cancel.is_none()
    {
        cancel = engine.cancels.take(&record.id);
        if cancel.is_none()
            && ask_journal
            && engine.journal.is_shared()
            && engine
                .journal
                .signals(&cancel_signal(&record.id, record.generation))
                .await
                .is_ok_and(|n| n > 0)
        {
            cancel = Some(crate::journal::Cancel {
                by: "an operator (through the shared journal)".into(),
                at_ms: engine.clock.now_ms(),
            });
        }
    }
    Input::Turn {
        cancel,
        shutting_down: engine.shutting_down(),
    }
}

/// Whether an unjournaled instance may pass `checkpoint` without a write: an attempt, a
/// transition, or its successful end.
fn goes_well(checkpoint: Checkpoint, record: &Record) -> bool {
    match checkpoint {
        Checkpoint::Attempt | Checkpoint::Transition => true,
        Checkpoint::Ended => record.status == Status::Succeeded,
        Checkpoint::Failure | Checkpoint::Cancel | Checkpoint::Undone | Checkpoint::Waiting => {
            false
        }
    }
}

/// The failpoints after each kind of journal write (crash tests stop the process there).
fn passed(checkpoint: Checkpoint) {
    match checkpoint {
        Checkpoint::Transition => failpoint::hit("transition-journaled"),
        Checkpoint::Failure => failpoint::hit("fail-journaled"),
        Checkpoint::Undone => failpoint::hit("undo-recorded"),
        Checkpoint::Attempt | Checkpoint::Cancel | Checkpoint::Waiting | Checkpoint::Ended => {}
    }
}

fn observe(engine: &Engine, record: &Record, note: Note) {
    match note {
        Note::Retrying {
            step,
            attempts,
            delay,
            error,
        } => {
            tracing::warn!(workflow_id = %record.id, step = %step, attempts,
                delay_ms = delay.as_millis() as u64, error = %error, "step failed; retrying");
            engine.metrics.retry(&record.workflow, &step);
        }
        Note::UndoFailed { step, error } => {
            tracing::error!(workflow_id = %record.id, step = %step, error = %error,
                "a compensating step failed for good; going on with the next");
        }
        Note::Cancelling { by } => {
            tracing::info!(workflow_id = %record.id, by = %by,
                "cancelling: compensating, then ending as cancelled");
        }
    }
}

/// Waits out a short back-off; a cancel ends it at once, as shutdown does.
async fn back_off(engine: &Engine, record: &Record, delay: Duration) -> Input {
    let mut shutdown = engine.shutdown.clone();
    let (key, cancel) = engine.wakers.register(&cancel_key(&record.id));
    tokio::select! {
        _ = engine.clock.sleep(delay) => {}
        _ = cancel.notified() => {}
        _ = super::shutdown_begun(&mut shutdown) => {}
    }
    engine.wakers.unregister(&key, &cancel);
    turn(engine, record, false).await
}

/// One attempt at `action`, in a span, timed and counted; `None` when a sleep was cut
/// short (by a cancel or shutdown: the next turn takes it).
async fn attempt_call(
    engine: &Engine,
    logic: &Option<Arc<dyn Workflow>>,
    record: &Record,
    action: &Action,
    attempt: u32,
    undoing: bool,
) -> Option<Input> {
    failpoint::hit(if undoing {
        "undo-journaled"
    } else {
        "step-journaled"
    });
    let ctx = StepContext {
        event: &record.input,
        workflow_id: &record.id,
        step: &action.name,
        attempt,
        generation: record.generation,
        continued: record.continued,
    };
    let span = tracing::info_span!(
        "step",
        otel.name = format!("{} {}", record.workflow, action.name),
        otel.status_code = tracing::field::Empty,
        workflow.id = %record.id,
        workflow.route = %record.route,
        step.name = %action.name,
        step.attempt = attempt,
        step.compensation = undoing,
        outcome = tracing::field::Empty,
        error.message = tracing::field::Empty,
    );
    let called = std::time::Instant::now();
    failpoint::record_step("start", &record.id, &action.name);
    let Some(result) = perform(engine, logic, ctx, action)
        .instrument(span.clone())
        .await
    else {
        let why = if engine.shutting_down() {
            "shutting_down"
        } else {
            "cancelled"
        };
        span.record("outcome", why);
        return None;
    };
    failpoint::record_step("end", &record.id, &action.name);
    let outcome = attempted(&span, &result);
    engine
        .metrics
        .step(&record.workflow, &action.name, called.elapsed(), outcome);
    drop(span);
    failpoint::hit(if undoing {
        "undo-called"
    } else {
        "step-called"
    });
    Some(Input::Outcome(result))
}

/// How an attempt came out, as the step metrics and spans name it (`ok`, `retryable`,
/// `failed`), recorded on its step span with the error if there is one.
pub(super) fn attempted(span: &tracing::Span, result: &Result<Value, StepError>) -> &'static str {
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) if e.retryable => "retryable",
        Err(_) => "failed",
    };
    span.record("outcome", outcome);
    if let Err(e) = result {
        span.record("otel.status_code", "ERROR");
        span.record("error.message", e.message.as_str());
    }
    outcome
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

/// Performs one call: the workflow's handler, or one of the engine's generic calls. `None`:
/// an in-process sleep was cut short by a cancel or by shutdown (the step runs again on
/// resume).
async fn perform(
    engine: &Engine,
    logic: &Option<Arc<dyn Workflow>>,
    ctx: StepContext<'_>,
    action: &Action,
) -> Option<Result<Value, StepError>> {
    Some(match &action.call {
        Call::Handler => match logic {
            Some(logic) => logic.perform(ctx, &action.step).await,
            None => Err(StepError::permanent(
                "the workflow kind is not in this build",
            )),
        },
        Call::Sleep { duration, wake_on } => {
            return sleep(engine, ctx, *duration, wake_on.as_deref()).await;
        }
        Call::Wake { key } => {
            let here = engine.wakers.wake(key);
            // The sleeper may be in another process of a shared journal: leave it a signal.
            if engine.journal.is_shared() {
                match engine.journal.signal(key).await {
                    Ok(()) => to_output(&Woken {
                        woken: here,
                        signalled: true,
                    }),
                    Err(e) => Err(StepError::retryable(e.to_string())),
                }
            } else {
                to_output(&Woken {
                    woken: here,
                    signalled: false,
                })
            }
        }
        Call::ReadWorkflow { id } => match engine.journal.get(id).await {
            Ok(Some(r)) => to_output(&WorkflowRead {
                found: true,
                workflow: Some(r.workflow),
                status: Some(r.status.name().to_owned()),
                output: r.output,
            }),
            Ok(None) => to_output(&WorkflowRead::default()),
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
            Ok(Some(id)) => to_output(&Published::MessageId(id)),
            Ok(None) => to_output(&Published::Skipped("topic not configured".into())),
            Err(e) => Err(e),
        },
    })
}

/// A short sleep waits here, cut short by a wake for its key, by a cancel or by shutdown.
async fn sleep(
    engine: &Engine,
    ctx: StepContext<'_>,
    duration: Duration,
    wake_on: Option<&str>,
) -> Option<Result<Value, StepError>> {
    let mut shutdown = engine.shutdown.clone();
    let waker = wake_on.map(|k| engine.wakers.register(k));
    // A shared journal: the wake may come from another process; it counts a signal in the
    // journal, looked at twice a second.
    let remote_wake = async {
        match wake_on {
            Some(key) if engine.journal.is_shared() => {
                let before = engine.journal.signals(key).await.unwrap_or(u64::MAX);
                polled(engine, key, |n| n > before).await
            }
            _ => std::future::pending().await,
        }
    };
    let woken = async {
        match &waker {
            Some((_, notify)) => tokio::select! {
                _ = notify.notified() => {}
                _ = remote_wake => {}
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
            polled(engine, &signal, |n| n > 0).await
        };
        tokio::select! {
            _ = cancel.notified() => {}
            _ = remote => {}
        }
    };
    let outcome = tokio::select! {
        _ = engine.clock.sleep(duration) => Some(to_output(&Woken::default())),
        _ = woken => Some(to_output(&Woken { woken: true, signalled: false })),
        _ = cancelled => None,
        _ = super::shutdown_begun(&mut shutdown) => None,
    };
    if let Some((key, notify)) = waker {
        engine.wakers.unregister(&key, &notify);
    }
    engine.wakers.unregister(&cancel_key, &cancel);
    outcome
}

/// Resolves once the journal's count of signal `key` passes `done` (looked at twice a
/// second).
async fn polled(engine: &Engine, key: &str, done: impl Fn(u64) -> bool) {
    loop {
        engine.clock.sleep(Duration::from_millis(500)).await;
        if engine.journal.signals(key).await.is_ok_and(&done) {
            return;
        }
    }
}
