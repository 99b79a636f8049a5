//! The instance lifecycle as one pure state machine: every status change of a journal
//! record is decided here, and nowhere else.
//!
//! [`Lifecycle::apply`] takes the record, an [`Input`] (a run takes the record, an attempt's
//! outcome) and the time, changes the record, and returns the [`Effect`]s to carry out in
//! order: journal the record, perform an action, back off, come back for another turn, stop
//! with a [`RunResult`]. It does no I/O, reads no clock and spawns nothing; the runner and the
//! dispatcher are its interpreters (the journal writes, the calls, the spans, the metrics and
//! the failpoints). This split is what makes the order of a step checkable:
//! 1. the attempt is journaled (attempt count +1) — a restart continues the same retry
//!    sequence;
//! 2. the call is performed, with the step's idempotency key;
//! 3. the outcome is journaled together with the workflow's next decision — only then run.
//!
//! The machine never emits [`Effect::Perform`] for an attempt that no [`Effect::Journal`]
//! before it has recorded; a failure (or a cancel) journals the whole list of compensating
//! actions before the first runs; and a run ends in exactly one terminal status. The property
//! tests at the end of this file drive it with random outcomes, crashes, cancels, shutdowns,
//! panics and redrives and check all three.

use std::time::Duration;

use rand::SeedableRng;
use serde_json::Value;

use super::EngineOptions;
use crate::contract::{Action, Call, Next, StepError, Transition, Woken, Workflow, to_output};
use crate::journal::{Cancel, Record, Status};

/// How a run of an instance ended.
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

impl RunResult {
    /// The result's name in spans and logs.
    pub fn name(&self) -> &'static str {
        match self {
            RunResult::Succeeded => "succeeded",
            RunResult::DeadLettered => "dead_lettered",
            RunResult::Cancelled => "cancelled",
            RunResult::Failed(_) => "failed",
            RunResult::RetryLater(_) => "retry_later",
            RunResult::Released => "released",
            RunResult::JournalError(_) => "journal_error",
        }
    }
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

    /// A failure before the instance has a readable record (an unknown kind, a record this
    /// build cannot read).
    pub fn bare(id: &str, workflow: &str, route: &str, reason: String, generation: u32) -> Self {
        Failure {
            workflow_id: id.to_owned(),
            workflow: workflow.to_owned(),
            route: route.to_owned(),
            reason,
            step: None,
            attempts: 0,
            generation,
            compensation: vec![],
        }
    }
}

/// The prefix of a compensating step's name: `compensate:stop-task`.
pub const COMPENSATE: &str = "compensate:";

/// What happens to an instance next, as its interpreter learns it.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A run takes the record (first, or again after a journal write or a back-off).
    /// `cancel`: an operator's request waiting for this run; `shutting_down`: the process
    /// is stopping.
    Turn {
        cancel: Option<Cancel>,
        shutting_down: bool,
    },
    /// The pending action's attempt ended with this result.
    Outcome(Result<Value, StepError>),
}

impl Input {
    /// A turn with nothing asked of the run.
    pub const TURN: Input = Input::Turn {
        cancel: None,
        shutting_down: false,
    };
}

/// What the interpreter does, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Write the record durably (it failing stops the run with
    /// [`RunResult::JournalError`]); `Checkpoint` names what the write made durable.
    Journal(Checkpoint),
    /// Perform attempt `attempt` of `action` (the record's pending action), then come back
    /// with [`Input::Outcome`] (or a [`Input::Turn`] if a sleep was cut short).
    Perform {
        action: Action,
        attempt: u32,
        undoing: bool,
    },
    /// Wait in process this long (a cancel or shutdown may end it early), then come back
    /// with a [`Input::Turn`].
    BackOff(Duration),
    /// Come back with a [`Input::Turn`].
    Turn,
    /// The run ends here.
    Stop(RunResult),
    /// Something worth a log line and a metric.
    Note(Note),
}

/// What a journal write made durable (for the interpreter's failpoints and traces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    /// The start of an attempt (its count +1).
    Attempt,
    /// A step's outcome with the workflow's next decision.
    Transition,
    /// A failure, with every compensating action to run.
    Failure,
    /// An operator's cancel, with every compensating action to run.
    Cancel,
    /// A compensating step's outcome.
    Undone,
    /// A failed attempt that will be tried again, or a long wait.
    Waiting,
    /// A run that could not go on (its kind unknown, its record broken).
    Ended,
}

/// What a run tells its observers.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    /// A step failed and is tried again after `delay`.
    Retrying {
        step: String,
        attempts: u32,
        delay: Duration,
        error: String,
    },
    /// A compensating step failed for good; the next one still runs.
    UndoFailed { step: String, error: String },
    /// An operator's cancel is taken: the run compensates, then ends cancelled.
    Cancelling { by: String },
}

/// The record of a run that went well in its one attempt with nothing journaled (a delivery
/// whose message was its record, run directly: [`crate::contract::Workflow::run_direct`]):
/// what the lifecycle makes of it, taken from its start at `started_ms` through that
/// attempt's `result` at `ended_ms`, so that the console shows it as any record.
pub fn delivered(
    logic: Option<&dyn Workflow>,
    options: &EngineOptions,
    record: &mut Record,
    result: Value,
    (started_ms, ended_ms): (u64, u64),
) {
    let mut lifecycle = Lifecycle::new(logic, options);
    if lifecycle.start(record, started_ms) != (Started::Run { fresh: true }) {
        return;
    }
    lifecycle.resume_fresh(record);
    let turn = || Input::Turn {
        cancel: None,
        shutting_down: false,
    };
    let (mut input, mut now, mut result) = (turn(), started_ms, Some(result));
    // A start, its attempt, the outcome, the end: a few turns (bounded all the same).
    for _ in 0..8 {
        let next = (lifecycle.apply(record, input, now).into_iter()).find_map(|e| match e {
            Effect::Perform { .. } => result.take().map(|r| Input::Outcome(Ok(r))),
            Effect::Turn => Some(turn()),
            _ => None,
        });
        match next {
            Some(next) => input = next,
            None => return,
        }
        now = ended_ms;
    }
}

/// The lifecycle of one run of one instance: the workflow it is of, the engine's options and
/// what the run remembers between inputs (nothing of which needs to survive a crash).
pub struct Lifecycle<'a> {
    logic: Option<&'a dyn Workflow>,
    options: &'a EngineOptions,
    /// The step whose attempt the last journal write recorded and nobody performed yet:
    /// the call follows at once, with no write of its own.
    journaled: Option<String>,
    /// For the back-offs' jitter: seeded when a test asks, else made at the first back-off
    /// (most runs never back off; seeding one from the OS per run is not free).
    rng: Option<rand::rngs::StdRng>,
}

impl<'a> Lifecycle<'a> {
    /// A run of an instance of `logic` (`None`: a kind this build does not have).
    pub fn new(logic: Option<&'a dyn Workflow>, options: &'a EngineOptions) -> Lifecycle<'a> {
        Lifecycle {
            logic,
            options,
            journaled: None,
            rng: None,
        }
    }

    /// The same, with back-offs jittered from `seed` (tests).
    pub fn seeded(logic: Option<&'a dyn Workflow>, options: &'a EngineOptions, seed: u64) -> Self {
        Lifecycle {
            rng: Some(rand::rngs::StdRng::seed_from_u64(seed)),
            ..Lifecycle::new(logic, options)
        }
    }

    /// Resumes from `record` as the dispatcher just wrote it: its first attempt journaled
    /// (see [`Lifecycle::start`]), so that the call needs no write of its own.
    pub fn resume_fresh(&mut self, record: &Record) {
        self.journaled = record.pending.as_ref().map(|a| a.name.clone());
    }

    /// A new instance (or a redriven one's new generation) starts: the workflow's first
    /// decision is taken into `record`, with the first attempt of its first step, so that
    /// one write journals both. The caller journals the record, then stops with the result
    /// if there is one, or runs the instance ([`Lifecycle::resume_fresh`] when `fresh`).
    pub fn start(&mut self, record: &mut Record, now: u64) -> Started {
        let Some(logic) = self.logic else {
            let reason = format!("workflow kind {:?} is not in this build", record.workflow);
            return Started::Ended(RunResult::Failed(Failure::bare(
                &record.id,
                &record.workflow,
                &record.route,
                reason,
                record.generation,
            )));
        };
        record.updated_ms = now;
        match logic.start(&record.input, &record.params) {
            Err(reason) => {
                record.status = Status::Failed {
                    reason: format!("cannot start: {reason}"),
                };
                record.last_error = Some(reason);
            }
            Ok(Transition { state, next }) => {
                record.state = state;
                match next {
                    // A first decision has no history to leave behind: a continuation runs.
                    Next::Run(action) | Next::Continue(action) => {
                        let fresh = begin_attempt(record, &action, self.options, now);
                        record.pending = Some(action);
                        return Started::Run { fresh };
                    }
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
        match ended(record) {
            Some(result) => Started::Journal(result),
            None => Started::Run { fresh: false },
        }
    }

    /// Takes `input` into `record` at `now` and says what to do next.
    pub fn apply(&mut self, record: &mut Record, input: Input, now: u64) -> Vec<Effect> {
        let mut fx = Vec::with_capacity(3);
        match input {
            Input::Turn {
                cancel,
                shutting_down,
            } => self.turn(record, cancel, shutting_down, now, &mut fx),
            Input::Outcome(result) => self.outcome(record, result, now, &mut fx),
        }
        fx
    }

    /// The top of a run: stop if it has ended, take a cancel, wait out a back-off, stop for
    /// shutdown, else attempt the pending action.
    fn turn(
        &mut self,
        r: &mut Record,
        cancel: Option<Cancel>,
        shutting_down: bool,
        now: u64,
        fx: &mut Vec<Effect>,
    ) {
        if let Some(result) = ended(r) {
            fx.push(Effect::Stop(result));
            return;
        }
        let Some(logic) = self.logic else {
            let reason = format!("workflow kind {:?} is not in this build", r.workflow);
            return fail_bare(r, reason, now, fx);
        };
        if matches!(r.status, Status::Running | Status::Waiting { .. }) {
            if r.cancel.is_none() {
                r.cancel = cancel;
            }
            if let Some(cancel) = r.cancel.clone() {
                fx.push(Effect::Note(Note::Cancelling {
                    by: cancel.by.clone(),
                }));
                if let Some(p) = r.pending.clone() {
                    let step = r.step_at(&p.name, now);
                    step.try_ended(now, Some("cut short by a cancel"));
                    if step.finished_ms.is_none() && step.output.is_none() {
                        step.last_error = Some("cut short by a cancel".into());
                    }
                }
                begin_compensation(logic, r, format!("cancelled by {}", cancel.by));
                return journal_then(r, Checkpoint::Cancel, Effect::Turn, now, fx);
            }
            // Back again before its back-off ended (a refreshed copy's delay is at most
            // 15 minutes): wait for the rest.
            if let Status::Waiting { until_ms } = r.status
                && until_ms > now
            {
                let rest = Duration::from_millis(until_ms - now);
                fx.push(Effect::Stop(RunResult::RetryLater(rest)));
                return;
            }
        }
        if shutting_down {
            fx.push(Effect::Stop(RunResult::Released));
            return;
        }
        let undoing = matches!(r.status, Status::Compensating { .. });
        let Some(action) = r.pending.clone() else {
            if let Status::Compensating { reason } = &r.status {
                // Every compensating step has run: the failure can be handed over.
                let reason = reason.clone();
                r.end_compensated(reason);
                return journal_then(r, Checkpoint::Ended, Effect::Turn, now, fx);
            }
            let reason = "journal record is running but has no pending action".to_owned();
            return fail_bare(r, reason, now, fx);
        };
        if self.journaled.take().as_deref() == Some(action.name.as_str()) {
            let attempt = r.step_at(&action.name, now).attempts;
            fx.push(Effect::Perform {
                action,
                attempt,
                undoing,
            });
            return;
        }
        self.attempt(r, action, undoing, now, fx);
    }

    /// Journals the start of one attempt at `action`, or decides there is none to make:
    /// attempts used up (the outcome is a failure), or a long sleep (a release).
    fn attempt(
        &mut self,
        r: &mut Record,
        action: Action,
        undoing: bool,
        now: u64,
        fx: &mut Vec<Effect>,
    ) {
        let policy = &action.retry;
        let step = r.step_at(&action.name, now);
        step.compensation = undoing;
        let elapsed = Duration::from_millis(now.saturating_sub(step.first_started_ms));
        if step.attempts > 0 && !policy.allows_another(step.attempts, elapsed) {
            // Attempts ran out before a restart (or a release) brought the instance back.
            let error = gave_up(step.attempts, step.last_error.clone().unwrap_or_default());
            return self.settle(r, &action, undoing, Err(error), now, fx);
        }
        // A long sleep is a release, not a wait: the message comes back when it is due.
        if let Call::Sleep { duration, .. } = &action.call
            && *duration > self.options.max_in_process_wait
        {
            let due = step.first_started_ms + duration.as_millis() as u64;
            if step.attempts > 0 && now >= due {
                return self.settle(r, &action, undoing, to_output(&Woken::default()), now, fx);
            }
            if step.attempts == 0 {
                step.sleep = true;
                step.input = Some(step_input(&action));
                step.try_started(now);
            }
            step.attempts = 1;
            if !undoing {
                r.status = Status::Waiting { until_ms: due };
            }
            let wait = Duration::from_millis(due.saturating_sub(now));
            return journal_then(
                r,
                Checkpoint::Waiting,
                Effect::Stop(RunResult::RetryLater(wait)),
                now,
                fx,
            );
        }
        step.attempts += 1;
        step.last_started_ms = now;
        step.sleep = matches!(action.call, Call::Sleep { .. });
        if step.input.is_none() {
            step.input = Some(step_input(&action));
        }
        step.try_started(now);
        let attempt = step.attempts;
        if !undoing {
            r.status = Status::Running;
        }
        journal_then(
            r,
            Checkpoint::Attempt,
            Effect::Perform {
                action,
                attempt,
                undoing,
            },
            now,
            fx,
        );
    }

    /// An attempt at the pending action ended: retry it, or settle its outcome.
    fn outcome(
        &mut self,
        r: &mut Record,
        result: Result<Value, StepError>,
        now: u64,
        fx: &mut Vec<Effect>,
    ) {
        let Some(action) = r.pending.clone() else {
            // Nothing was pending (a caller's mistake): look again.
            fx.push(Effect::Turn);
            return;
        };
        let undoing = matches!(r.status, Status::Compensating { .. });
        let error = match result {
            Ok(v) => return self.settle(r, &action, undoing, Ok(v), now, fx),
            Err(e) => e,
        };
        let policy = &action.retry;
        let step = r.step_at(&action.name, now);
        step.last_error = Some(error.message.clone());
        step.try_ended(now, Some(&error.message));
        let attempts = step.attempts;
        let elapsed = Duration::from_millis(now.saturating_sub(step.first_started_ms));
        if !error.retryable || !policy.allows_another(attempts, elapsed) {
            let error = if error.retryable {
                gave_up(attempts, error.message)
            } else {
                error
            };
            return self.settle(r, &action, undoing, Err(error), now, fx);
        }
        // The other side's `Retry-After` is a floor under the back-off, never a ceiling.
        let rng = self
            .rng
            .get_or_insert_with(|| rand::rngs::StdRng::from_rng(&mut rand::rng()));
        let delay = policy
            .backoff(attempts, rng)
            .max(error.retry_after.unwrap_or_default());
        fx.push(Effect::Note(Note::Retrying {
            step: action.name.clone(),
            attempts,
            delay,
            error: error.message,
        }));
        if delay > self.options.max_in_process_wait {
            // Long back-offs do not pin the process: the message comes back when it is due.
            if !undoing {
                r.status = Status::Waiting {
                    until_ms: now + delay.as_millis() as u64,
                };
            }
            let then = Effect::Stop(RunResult::RetryLater(delay));
            return journal_then(r, Checkpoint::Waiting, then, now, fx);
        }
        journal_then(r, Checkpoint::Waiting, Effect::BackOff(delay), now, fx);
    }

    /// The step's final outcome: record it, then take the workflow's next decision (or,
    /// while compensating, the next compensating step), and journal it before it runs.
    fn settle(
        &mut self,
        r: &mut Record,
        action: &Action,
        undoing: bool,
        outcome: Result<Value, StepError>,
        now: u64,
        fx: &mut Vec<Effect>,
    ) {
        let step = r.step_at(&action.name, now);
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
                fx.push(Effect::Note(Note::UndoFailed {
                    step: action.name.clone(),
                    error: e.message.clone(),
                }));
            }
            next_undo(r);
            return journal_then(r, Checkpoint::Undone, Effect::Turn, now, fx);
        }
        let Some(logic) = self.logic else {
            let reason = format!("workflow kind {:?} is not in this build", r.workflow);
            return fail_bare(r, reason, now, fx);
        };
        let transition = logic.advance(r.state.clone(), action, outcome);
        r.state = transition.state;
        r.status = Status::Running;
        let checkpoint = match transition.next {
            Next::Run(next) => {
                // The next step's first attempt is journaled with this decision.
                if begin_attempt(r, &next, self.options, now) {
                    self.journaled = Some(next.name.clone());
                }
                r.pending = Some(next);
                Checkpoint::Transition
            }
            Next::Continue(next) => {
                // Continue as new: the history so far is dropped in the same write that
                // journals the next step (new keys from here on), so that the record of an
                // instance that never ends stays bounded.
                r.continued += 1;
                r.steps.clear();
                if begin_attempt(r, &next, self.options, now) {
                    self.journaled = Some(next.name.clone());
                }
                r.pending = Some(next);
                Checkpoint::Transition
            }
            Next::Complete(output) => {
                r.pending = None;
                r.output = Some(output);
                r.status = Status::Succeeded;
                Checkpoint::Transition
            }
            Next::Fail(reason) => {
                begin_compensation(logic, r, reason);
                Checkpoint::Failure
            }
        };
        journal_then(r, checkpoint, Effect::Turn, now, fx);
    }

    /// A run of the instance panicked (`message`), and `record` is what the journal holds.
    /// Counts the panic; after [`EngineOptions::max_panics`] the instance fails: it still
    /// compensates (a panic in a compensating step skips that step), so that a panicking
    /// workflow does not leave a started task behind. The caller journals the record, then
    /// stops with the result if there is one, or runs the instance again.
    pub fn panicked(&self, r: &mut Record, message: &str, now: u64) -> Option<RunResult> {
        r.panics += 1;
        r.last_error = Some(format!("panicked: {message}"));
        // The attempt the panic cut short is journaled; it says why it has no outcome.
        if let Some(p) = r.pending.clone() {
            r.step_at(&p.name, now).last_error = Some(format!("panicked: {message}"));
        }
        r.updated_ms = now;
        if r.panics < self.options.max_panics {
            return None;
        }
        let reason = format!("panicked {} times; last: {message}", r.panics);
        r.panics = 0;
        match (&r.status, self.logic) {
            (Status::Compensating { .. }, _) => {
                if let Some(p) = r.pending.clone() {
                    let step = r.step_at(&p.name, now);
                    step.compensation = true;
                    step.finished_ms = Some(now);
                    step.last_error = Some(reason);
                }
                next_undo(r);
            }
            (_, Some(logic)) => {
                // The workflow's own compensation list may panic too: then it fails bare.
                let mut attempt = r.clone();
                let listed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    begin_compensation(logic, &mut attempt, reason.clone())
                }));
                match listed {
                    Ok(()) => *r = attempt,
                    Err(_) => {
                        r.status = Status::Failed { reason };
                        r.pending = None;
                    }
                }
            }
            (_, None) => {
                r.status = Status::Failed { reason };
                r.pending = None;
            }
        }
        match &r.status {
            Status::Failed { reason } => Some(RunResult::Failed(Failure::from_record(r, reason))),
            _ => None,
        }
    }
}

/// What [`Lifecycle::start`] decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Started {
    /// Journal the record, then run the instance; `fresh`: from this very record, whose first
    /// attempt the write records ([`Lifecycle::resume_fresh`]).
    Run { fresh: bool },
    /// Journal the record; the run has ended with this result.
    Journal(RunResult),
    /// Nothing to journal (the kind is unknown): the run ends with this result.
    Ended(RunResult),
}

/// What a delivery of an instance's message finds in the journal.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// The instance has ended, or its record cannot be read: this is the result.
    Ended(RunResult),
    /// The instance is unfinished: run it from its record.
    Resume,
    /// Start the instance, from this record (a new one, or a redriven one's next
    /// generation), with [`Lifecycle::start`].
    Start(Box<Record>),
}

/// Which dead-lettered run a redriven message brings back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redrive {
    /// The run of this generation (`g<N>`, from the DLQ copy's attributes): a duplicate of an
    /// older redrive does not start the instance again.
    Of(u32),
    /// Whichever run was dead-lettered last (a copy SQS's own redrive moved, without
    /// tugboat's attributes).
    Any,
}

impl Redrive {
    /// Reads the redrive attribute's value: `g<N>`, anything else is [`Redrive::Any`].
    pub fn parse(value: &str) -> Redrive {
        value
            .strip_prefix('g')
            .and_then(|n| n.parse().ok())
            .map_or(Redrive::Any, Redrive::Of)
    }

    /// The attribute's value for a run of `generation`.
    pub fn value(generation: u32) -> String {
        format!("g{generation}")
    }

    pub(crate) fn brings_back(self, generation: u32) -> bool {
        match self {
            Redrive::Of(g) => g == generation,
            Redrive::Any => true,
        }
    }
}

/// What the message that carried the event (again) brings to the instance's record.
#[derive(Debug, Clone)]
pub struct Arrival<'a> {
    pub message_id: &'a str,
    pub input: &'a Value,
    pub params: &'a Value,
    pub trace: Option<&'a String>,
    pub redrive: Option<Redrive>,
}

/// A message for instance `found` arrived: answer it from an ended record, resume an
/// unfinished one, or start the next generation of one that a redrive brings back. `fresh`
/// makes the record of a new instance.
pub fn arrive(
    found: Result<Option<Record>, crate::journal::JournalError>,
    arrival: Arrival<'_>,
    fresh: impl FnOnce() -> Record,
    now: u64,
) -> Delivery {
    use crate::journal::JournalError;
    let redriven = |generation| arrival.redrive.is_some_and(|d| d.brings_back(generation));
    match found {
        Ok(None) => Delivery::Start(Box::new(fresh())),
        Ok(Some(mut r)) => {
            let redrivable = matches!(
                r.status,
                Status::DeadLettered { .. } | Status::Cancelled { .. }
            );
            if redrivable && redriven(r.generation) {
                // A new run: new idempotency keys, the earlier run kept in the record.
                r.next_generation(now);
                r.message_id = arrival.message_id.to_owned();
                r.input = arrival.input.clone();
                r.params = arrival.params.clone();
                r.trace = arrival.trace.cloned();
                return Delivery::Start(Box::new(r));
            }
            match ended(&r) {
                Some(result) => Delivery::Ended(result),
                None => Delivery::Resume,
            }
        }
        // A record this build cannot read (another schema version, damage): it is not
        // misread. The event goes to the DLQ with the reason; a redrive starts afresh, as
        // generation 1 so that its keys differ from the first run's.
        Err(JournalError::Corrupt { .. }) if arrival.redrive.is_some() => {
            let mut r = fresh();
            r.generation = 1;
            Delivery::Start(Box::new(r))
        }
        Err(e @ JournalError::Corrupt { .. }) => {
            let r = fresh();
            let reason = format!("{e}; `tugboat dlq redrive` starts the instance afresh");
            Delivery::Ended(RunResult::Failed(Failure::bare(
                &r.id,
                &r.workflow,
                &r.route,
                reason,
                0,
            )))
        }
        Err(e) => Delivery::Ended(RunResult::JournalError(e.to_string())),
    }
}

/// An operator asked to cancel the instance and no run of it is under way: the request is
/// journaled, for the run that follows to take.
pub fn cancel_requested(r: &mut Record, cancel: Cancel, now: u64) {
    r.cancel = Some(cancel);
    r.updated_ms = now;
}

/// The failed instance's event was copied to the DLQ.
pub fn dead_lettered(r: &mut Record, reason: &str, now: u64) {
    r.status = Status::DeadLettered {
        reason: reason.to_owned(),
    };
    r.updated_ms = now;
}

/// The result of a run that finds the record ended.
fn ended(r: &Record) -> Option<RunResult> {
    Some(match &r.status {
        Status::Succeeded => RunResult::Succeeded,
        Status::DeadLettered { .. } => RunResult::DeadLettered,
        Status::Cancelled { .. } => RunResult::Cancelled,
        Status::Failed { reason } => RunResult::Failed(Failure::from_record(r, reason)),
        Status::Running | Status::Waiting { .. } | Status::Compensating { .. } => return None,
    })
}

/// The permanent failure of a step whose attempts (or time) ran out.
fn gave_up(attempts: u32, last: String) -> StepError {
    StepError::permanent(format!("gave up after {attempts} attempts: {last}"))
}

/// Journals the record (now), then `then`.
fn journal_then(
    r: &mut Record,
    checkpoint: Checkpoint,
    then: Effect,
    now: u64,
    fx: &mut Vec<Effect>,
) {
    r.updated_ms = now;
    fx.push(Effect::Journal(checkpoint));
    fx.push(then);
}

/// Fails the instance without compensation (it cannot be run at all).
fn fail_bare(r: &mut Record, reason: String, now: u64, fx: &mut Vec<Effect>) {
    r.status = Status::Failed {
        reason: reason.clone(),
    };
    r.pending = None;
    let result = RunResult::Failed(Failure::from_record(r, &reason));
    journal_then(r, Checkpoint::Ended, Effect::Stop(result), now, fx);
}

/// Marks the first attempt of `action` as started, so that the write that journals the
/// decision to run it also journals the attempt (one durable write per step instead of two);
/// the run then performs it without another write. False, and nothing changed, for a step
/// already attempted (its retries journal each attempt on their own) and for a sleep long
/// enough to be a release (which has its own bookkeeping). A crash between the write and the
/// call counts an attempt that never ran: the retry policy sees one attempt more, never fewer.
fn begin_attempt(r: &mut Record, action: &Action, options: &EngineOptions, now: u64) -> bool {
    if let Call::Sleep { duration, .. } = &action.call
        && *duration > options.max_in_process_wait
    {
        return false;
    }
    let step = r.step_at(&action.name, now);
    if step.attempts > 0 {
        return false;
    }
    step.attempts = 1;
    step.last_started_ms = now;
    step.sleep = matches!(action.call, Call::Sleep { .. });
    step.input = Some(step_input(action));
    step.try_started(now);
    true
}

/// What a step record keeps of the action it ran.
fn step_input(action: &Action) -> std::sync::Arc<Value> {
    match &action.call {
        Call::Handler => action.step.clone(),
        other => serde_json::to_value(other).unwrap_or(Value::Null).into(),
    }
}

/// The workflow failed for good: journal the reason and every compensating action to run.
fn begin_compensation(logic: &dyn Workflow, r: &mut Record, reason: String) {
    r.last_error = Some(reason.clone());
    let mut undo: Vec<Action> = logic
        .compensation(&r.state)
        .into_iter()
        .map(|mut a| {
            a.name = format!("{COMPENSATE}{}", a.name);
            a
        })
        .collect();
    r.pending = None;
    r.undo.clear();
    if undo.is_empty() {
        r.end_compensated(reason);
        return;
    }
    r.pending = Some(undo.remove(0));
    r.undo = undo;
    r.status = Status::Compensating { reason };
}

/// The current compensating step is over: take the next, or end the compensation.
fn next_undo(r: &mut Record) {
    r.pending = if r.undo.is_empty() {
        None
    } else {
        Some(r.undo.remove(0))
    };
    if r.pending.is_none()
        && let Status::Compensating { reason } = &r.status
    {
        let reason = reason.clone();
        r.end_compensated(reason);
    }
}

#[cfg(test)]
mod tests;
