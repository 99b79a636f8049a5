//! The dispatcher: turns (route, event) into a workflow instance and waits for its result.
//!
//! The instance id is the route name plus the event's identity, so a second delivery of the
//! same event finds its instance: finished → answered at once; running in this process →
//! attached to; unfinished in the journal → resumed from its pending action. A redrive of a
//! dead-lettered instance starts its next generation. An instance's run gets its lifecycle
//! from a [`Spawn`] hook (supervised actors in the service, tokio tasks in engine tests); the
//! dispatcher holds the hook's handle while the instance runs and drops it when it ends.

use std::any::Any;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tracing::Instrument;

use super::Engine;
pub use super::lifecycle::Redrive;
use super::lifecycle::{self, Arrival, Delivery, Failure, Lifecycle, Started};
use super::runner::{self, RunResult};
use crate::contract::{Direct, Durability, StepError};
use crate::events::Event;
use crate::journal::{Origin, Record, Status};

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
    /// The message was brought back from the DLQ by `tugboat dlq redrive`, or sent by a
    /// retry.
    pub redrive: Option<Redrive>,
    /// The instance to run, when the message names it (a retry); else the id comes from
    /// the route and the event.
    pub instance: Option<String>,
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

/// Gives one instance's run its lifecycle: call [`Dispatcher::run_supervised`] until it is
/// done (again after a panic, which it reports as `None`), then [`Dispatcher::finish`]. The handle returned is held while the instance runs.
pub trait Spawn: Send + Sync {
    fn spawn(&self, dispatcher: Arc<Dispatcher>, id: String, kind: String) -> Box<dyn Any + Send>;
}

/// Runs instances as plain tokio tasks: the engine without an actor system, for its tests and
/// benchmarks. The service uses supervised actors (`actors::ActorSpawn`).
#[derive(Debug, Clone, Copy, Default)]
pub struct TaskSpawn;

impl Spawn for TaskSpawn {
    fn spawn(&self, dispatcher: Arc<Dispatcher>, id: String, kind: String) -> Box<dyn Any + Send> {
        Box::new(tokio::spawn(async move {
            loop {
                match dispatcher.run_supervised(&id, &kind).await {
                    Some(result) => break dispatcher.finish(&id, result),
                    None => {
                        tracing::warn!(workflow_id = %id, "restarting the instance from the journal")
                    }
                }
            }
        }))
    }
}

struct Running {
    handle: Option<Box<dyn Any + Send>>,
    /// The run's span (a child of the message's that started it): each supervised run goes
    /// in it; it ends when the instance does.
    span: tracing::Span,
    waiters: Vec<oneshot::Sender<RunResult>>,
    /// The record `prepare` just made, for the first run to start from (no read, no second
    /// write), and whether its first attempt is already in it; a restart after a panic
    /// reads the journal.
    fresh: Option<(Box<Record>, bool)>,
    /// The outcome of the first attempt, when a direct run made it (see
    /// [`Dispatcher::run_direct`]): the run from the record takes it as that attempt's.
    first: Option<Result<Value, StepError>>,
    /// The route that started it, for a failure that has no record to name it.
    route: String,
}

pub struct Dispatcher {
    engine: Arc<Engine>,
    spawner: Arc<dyn Spawn>,
    running: Mutex<HashMap<String, Running>>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher").finish_non_exhaustive()
    }
}

impl Dispatcher {
    pub fn new(engine: Arc<Engine>, spawner: Arc<dyn Spawn>) -> Arc<Dispatcher> {
        Arc::new(Dispatcher {
            engine,
            spawner,
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

    /// Starts, resumes or attaches to the instance for `req`, and waits for its result.
    pub async fn start(self: &Arc<Self>, req: StartRequest) -> RunResult {
        let own = (self.engine.registry.get(&req.workflow))
            .and_then(|w| w.identity(&req.event.body, &req.params));
        let id = match (&req.instance, own) {
            (Some(id), _) => id.clone(),
            (None, Some(identity)) => workflow_id(&req.workflow, &identity),
            (None, None) => workflow_id(&req.route, &req.event.identity),
        };
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
                        handle: None,
                        span: tracing::Span::none(),
                        waiters: vec![tx],
                        fresh: None,
                        first: None,
                        route: req.route.clone(),
                    };
                    running.insert(id.clone(), entry);
                    false
                }
            }
        };
        if attached {
            return rx.await.unwrap_or(RunResult::Released);
        }
        // A workflow whose message is its record runs unclaimed and unwritten while nothing
        // is journaled of it: the journal is read (a redelivery after a failure finds its
        // record and runs as any other), not written.
        let by_message = req.redrive.is_none()
            && req.instance.is_none()
            && (self.engine.registry.get(&req.workflow))
                .is_some_and(|w| w.durability() == Durability::Message);
        // (Measured: running a delivery on the runtime's worker threads instead, beside the
        // receiver's and the client's I/O, was slower on two cores than here, beside the
        // intake: 21–26k against 28–41k HTTP deliveries/s.)
        self.begin(id, req, by_message).await;
        rx.await.unwrap_or(RunResult::Released)
    }

    /// The rest of [`Dispatcher::start`] for a new run of `id` (no other delivery attached):
    /// the claim, the record, the run; whatever happens, [`Dispatcher::finish`] answers the
    /// waiters (now, or when the spawned run ends).
    async fn begin(self: &Arc<Self>, id: String, mut req: StartRequest, by_message: bool) {
        let found = match by_message {
            true => Some(self.engine.journal.get(&id).await),
            false => None,
        };
        let unjournaled = matches!(found, Some(Ok(None)));
        // A shared journal: run only what this process owns (another process may be running
        // this instance; its lease says until when).
        let claim = match unjournaled {
            true => Ok(crate::journal::Claim::Granted),
            false => self.engine.journal.claim(&id).await,
        };
        match claim {
            Ok(crate::journal::Claim::Granted) => {}
            Ok(crate::journal::Claim::HeldBy { owner, until_ms }) => {
                tracing::info!(workflow_id = %id, %owner, "running in another process; released until its lease ends");
                let now = self.engine.clock.now_ms();
                let wait =
                    Duration::from_millis(until_ms.saturating_sub(now)).max(Duration::from_secs(1));
                self.finish_unclaimed(&id, RunResult::RetryLater(wait));
                return;
            }
            Err(e) => {
                self.finish_unclaimed(&id, RunResult::JournalError(e.to_string()));
                return;
            }
        }
        let span = tracing::info_span!(
            "workflow",
            otel.name = format!("{} run", req.workflow),
            otel.status_code = tracing::field::Empty,
            workflow.id = %id,
            workflow.kind = %req.workflow,
            workflow.route = %req.route,
            workflow_id = %id,
            outcome = tracing::field::Empty,
        );
        if let Some(r) = self.running().get_mut(&id) {
            r.span = span.clone();
        }
        if unjournaled && !self.engine.shutting_down() {
            match self
                .run_direct(&id, &mut req)
                .instrument(span.clone())
                .await
            {
                Ok(result) => return self.finish_unclaimed(&id, result),
                Err(first) => {
                    if let Some(r) = self.running().get_mut(&id) {
                        r.first = first;
                    }
                }
            }
        }
        match self
            .prepare(&id, &mut req, found, unjournaled)
            .instrument(span)
            .await
        {
            Err(result) => self.finish(&id, result),
            Ok(fresh) => {
                if let Some(r) = self.running().get_mut(&id) {
                    r.fresh = fresh;
                }
                // An instance whose message is its record runs here, in the delivery's own
                // task: no actor of its own unless it panics once journaled (a restart).
                let ran_here = match unjournaled {
                    true => self.run_supervised(&id, &req.workflow).await,
                    false => None,
                };
                match ran_here {
                    Some(result) => self.finish(&id, result),
                    None => {
                        let handle =
                            self.spawner
                                .spawn(self.clone(), id.clone(), req.workflow.clone());
                        if let Some(r) = self.running().get_mut(&id) {
                            r.handle = Some(handle);
                        }
                    }
                }
            }
        }
    }

    /// The run of a new instance whose message is its record, while it goes well: no
    /// record is made, the workflow takes the event in its own types
    /// ([`crate::contract::Workflow::run_direct`]), and a success is counted and kept among
    /// the [`super::Recent`] (the record shown for it is made only when someone looks).
    /// `Err(first)`: it was not a run that ended well in one step; the instance runs from a
    /// record as any other, `first` its first attempt's outcome if one was made. In the
    /// kind's concurrency limit, and a panic is caught: with nothing journaled, it fails the
    /// delivery with the reason (as a panic of an unjournaled run does).
    async fn run_direct(
        &self,
        id: &str,
        req: &mut StartRequest,
    ) -> Result<RunResult, Option<Result<Value, StepError>>> {
        let Some(logic) = self.engine.registry.get(&req.workflow).cloned() else {
            return Err(None);
        };
        let _permit = match self.engine.limit(&req.workflow) {
            Some(limit) => limit.acquire_owned().await.ok(),
            None => None,
        };
        let started_ms = self.engine.clock.now_ms();
        let span = tracing::info_span!(
            "step",
            otel.name = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            workflow.id = %id,
            workflow.route = %req.route,
            step.name = tracing::field::Empty,
            step.attempt = 1,
            step.compensation = false,
            outcome = tracing::field::Empty,
            error.message = tracing::field::Empty,
        );
        crate::failpoint::hit("step-journaled");
        let called = std::time::Instant::now();
        let direct = AssertUnwindSafe(logic.run_direct(&req.event.body, &req.params, id))
            .catch_unwind()
            .instrument(span.clone())
            .await;
        let direct = match direct {
            Ok(direct) => direct,
            Err(panic) => {
                self.engine.metrics.started(&req.route, &req.workflow);
                let panic = panic_message(panic.as_ref());
                return Ok(unjournaled_panic(id, &req.workflow, &req.route, &panic));
            }
        };
        crate::failpoint::hit("step-called");
        let took = called.elapsed();
        match direct {
            Direct::Done { step, result } => {
                span.record("otel.name", format!("{} {step}", req.workflow));
                span.record("step.name", step.as_str());
                span.record("outcome", "ok");
                let ended_ms = self.engine.clock.now_ms();
                let whole = ended_ms.saturating_sub(started_ms);
                (self.engine.metrics).delivered(&req.route, &req.workflow, &step, took, whole);
                let origin = Origin {
                    route: std::mem::take(&mut req.route),
                    queue: std::mem::take(&mut req.queue),
                    message_id: std::mem::take(&mut req.message_id),
                    trace: req.trace.take(),
                };
                self.engine.delivered(super::Delivered {
                    id: id.to_owned(),
                    workflow: std::mem::take(&mut req.workflow),
                    origin,
                    input: std::mem::take(&mut req.event.body),
                    params: std::mem::take(&mut req.params),
                    result,
                    started_ms,
                    ended_ms,
                });
                Ok(RunResult::Succeeded)
            }
            Direct::Journal(first) => {
                // Timed and counted as the run's attempt would have been; the run from the
                // record takes its outcome (and counts nothing more for it).
                let Some((step, outcome)) = first else {
                    return Err(None);
                };
                span.record("otel.name", format!("{} {step}", req.workflow));
                span.record("step.name", step.as_str());
                let name = runner::attempted(&span, &outcome);
                self.engine.metrics.step(&req.workflow, &step, took, name);
                Err(Some(outcome))
            }
        }
    }

    /// Finds or creates the journal record, and says whether there is anything to run:
    /// `Ok((record, fresh))` to run from this record (its first attempt in it when `fresh`),
    /// `Ok(None)` to run from the journal, `Err(result)` when the delivery is answered
    /// without a run. `found` is the journal's answer when the caller read it already;
    /// `unjournaled`: nothing is written while the run goes well (the message is the record).
    async fn prepare(
        &self,
        id: &str,
        req: &mut StartRequest,
        found: Option<Result<Option<Record>, crate::journal::JournalError>>,
        unjournaled: bool,
    ) -> Result<Option<(Box<Record>, bool)>, RunResult> {
        let origin = Origin {
            route: req.route.clone(),
            queue: req.queue.clone(),
            message_id: req.message_id.clone(),
            trace: req.trace.clone(),
        };
        let found = match found {
            Some(found) => found,
            None => self.engine.journal.get(id).await,
        };
        // This run continues one that an earlier process (or delivery) began: link to it.
        if let Ok(Some(r)) = &found
            && let Some(earlier) = r
                .run_span
                .as_deref()
                .and_then(crate::telemetry::propagation::span_context)
        {
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            tracing::Span::current().add_link(earlier);
        }
        let now = self.engine.clock.now_ms();
        let mut record = match found {
            // A new instance (what `arrive` makes of no record), its event moved in, not
            // copied: a delivery's event is its largest part.
            Ok(None) => {
                let input = std::mem::take(&mut req.event.body);
                let params = req.params.clone();
                Box::new(Record::new(id, &req.workflow, origin, input, params))
            }
            found => {
                let arrival = Arrival {
                    message_id: &req.message_id,
                    input: &req.event.body,
                    params: &req.params,
                    trace: req.trace.as_ref(),
                    redrive: req.redrive,
                };
                let fresh = || {
                    Record::new(
                        id,
                        &req.workflow,
                        origin,
                        req.event.body.clone(),
                        req.params.clone(),
                    )
                };
                match lifecycle::arrive(found, arrival, fresh, now) {
                    Delivery::Ended(result) => return Err(result),
                    Delivery::Resume => return Ok(None),
                    Delivery::Start(record) => record,
                }
            }
        };
        // Its steps' keys are made only if it is journaled (see `Record::keys_deferred`).
        record.keys_deferred = unjournaled;
        let logic = self.engine.registry.get(&req.workflow);
        let mut lifecycle = Lifecycle::new(logic.map(|l| l.as_ref()), &self.engine.options);
        let started = lifecycle.start(&mut record, now);
        if let Started::Ended(result) = started {
            return Err(result);
        }
        record.run_span = crate::telemetry::propagation::current().or(record.run_span);
        // Only a new instance, or a new generation of a redriven one, gets this far.
        match (unjournaled, started) {
            (true, Started::Run { fresh }) => {
                self.engine.metrics.started(&req.route, &req.workflow);
                self.engine.begin_unjournaled(id);
                Ok(Some((record, fresh)))
            }
            // Completed at once (an event that was not for it): nothing to keep.
            (true, Started::Journal(RunResult::Succeeded)) => {
                self.engine.metrics.started(&req.route, &req.workflow);
                self.engine.begin_unjournaled(id);
                self.engine.ended_unjournaled(*record);
                Err(RunResult::Succeeded)
            }
            (unjournaled, started) => {
                let written = match unjournaled {
                    true => self.engine.journal_from_now(&mut record).await,
                    false => (self.engine.commit(&record).await)
                        .map_err(|e| RunResult::JournalError(e.to_string())),
                };
                written?;
                self.engine.metrics.started(&req.route, &req.workflow);
                match started {
                    Started::Run { fresh } => Ok(fresh.then_some((record, true))),
                    Started::Journal(result) | Started::Ended(result) => Err(result),
                }
            }
        }
    }

    /// Ends instance `id`: every waiter gets `result`, the spawn hook's handle is dropped (a
    /// supervised actor then stops for good), and the journal's claim is given back.
    pub fn finish(&self, id: &str, result: RunResult) {
        // An instance that ended with its message as its record holds no claim.
        let claimed = !self.engine.is_unjournaled(id, true);
        if claimed && self.engine.journal.is_shared() {
            let journal = self.engine.journal.clone();
            let owned = id.to_owned();
            tokio::spawn(async move { journal.release(&owned).await });
        }
        self.finish_unclaimed(id, result);
    }

    /// [`Dispatcher::finish`] for an instance this process did not claim.
    fn finish_unclaimed(&self, id: &str, result: RunResult) {
        let entry = self.running().remove(id);
        if let Some(entry) = entry {
            let outcome = result.name();
            entry.span.record("outcome", outcome);
            if matches!(result, RunResult::Failed(_) | RunResult::JournalError(_)) {
                entry.span.record("otel.status_code", "ERROR");
            }
            for w in entry.waiters {
                let _ = w.send(result.clone());
            }
        }
    }

    /// One supervised run of instance `id`: within its kind's concurrency limit, catching a
    /// panic and counting it in the journal (the lifecycle decides when panics are too
    /// many). `None`: it panicked and may run again, from the journal.
    pub async fn run_supervised(&self, id: &str, kind: &str) -> Option<RunResult> {
        let _permit = match self.engine.limit(kind) {
            Some(limit) => limit.acquire_owned().await.ok(),
            None => None,
        };
        let (fresh, first) = match self.running().get_mut(id) {
            Some(r) => (r.fresh.take().map(|(r, fresh)| (*r, fresh)), r.first.take()),
            None => (None, None),
        };
        let span = self
            .running()
            .get(id)
            .map_or_else(tracing::Span::none, |r| r.span.clone());
        let panic = match AssertUnwindSafe(runner::drive(&self.engine, id, fresh, first))
            .catch_unwind()
            .instrument(span)
            .await
        {
            Ok(result) => return Some(result),
            Err(panic) => panic_message(panic.as_ref()),
        };
        if self.engine.is_unjournaled(id, false) {
            let route = (self.running().get(id)).map_or_else(String::new, |r| r.route.clone());
            return Some(unjournaled_panic(id, kind, &route, &panic));
        }
        let mut record = match self.engine.journal.get(id).await {
            Ok(Some(r)) => r,
            Ok(None) => return Some(RunResult::JournalError(format!("no record for {id}"))),
            Err(e) => return Some(RunResult::JournalError(e.to_string())),
        };
        let logic = self.engine.registry.get(kind);
        let lifecycle = Lifecycle::new(logic.map(|l| l.as_ref()), &self.engine.options);
        let panics = record.panics + 1;
        let result = lifecycle.panicked(&mut record, &panic, self.engine.clock.now_ms());
        tracing::error!(
            workflow_id = id,
            panics,
            give_up = result.is_some(),
            "workflow panicked: {panic}"
        );
        if let Err(e) = self.engine.commit(&record).await {
            return Some(RunResult::JournalError(e.to_string()));
        }
        result
    }

    /// An operator cancels instance `id`: its compensation runs, then it ends `cancelled`
    /// and its message is deleted. A run in this process takes the request at its next
    /// step (a sleep ends at once); an instance nobody runs (backing off, its message
    /// released) has the request journaled and is run here now, to compensate; one that
    /// another process of a shared journal runs is signalled through the journal.
    pub async fn cancel(self: &Arc<Self>, id: &str, by: &str) -> Result<Cancelled, CancelError> {
        let request = crate::journal::Cancel {
            by: by.to_owned(),
            at_ms: self.engine.clock.now_ms(),
        };
        let record = self.cancellable(id).await?;
        // Claimed before any await, as `start` does, so that a delivery of its message now
        // attaches to this run.
        {
            let mut running = self.running();
            if running.contains_key(id) {
                self.engine.cancels.request(id, request);
                self.engine.wakers.wake(&runner::cancel_key(id));
                return Ok(Cancelled::Requested);
            }
            running.insert(
                id.to_owned(),
                Running {
                    handle: None,
                    span: tracing::Span::none(),
                    waiters: Vec::new(),
                    fresh: None,
                    first: None,
                    route: String::new(),
                },
            );
        }
        match self.engine.journal.claim(id).await {
            Ok(crate::journal::Claim::Granted) => {}
            Ok(crate::journal::Claim::HeldBy { owner, .. }) => {
                self.finish_unclaimed(id, RunResult::Released);
                let signal = runner::cancel_signal(id, record.generation);
                self.engine
                    .journal
                    .signal(&signal)
                    .await
                    .map_err(|e| CancelError::Journal(e.to_string()))?;
                return Ok(Cancelled::Signalled { owner });
            }
            Err(e) => {
                self.finish_unclaimed(id, RunResult::JournalError(e.to_string()));
                return Err(CancelError::Journal(e.to_string()));
            }
        }
        // Read again under the claim: it may have moved on since.
        let journaled = async {
            let mut record = self.cancellable(id).await?;
            lifecycle::cancel_requested(&mut record, request, self.engine.clock.now_ms());
            self.engine
                .commit(&record)
                .await
                .map_err(|e| CancelError::Journal(e.to_string()))?;
            Ok(record.workflow)
        }
        .await;
        match journaled {
            Ok(kind) => {
                // A run of its own (no message waits on it): a plain task, restarted after
                // a panic like any supervised run.
                let handle = TaskSpawn.spawn(self.clone(), id.to_owned(), kind);
                if let Some(r) = self.running().get_mut(id) {
                    r.handle = Some(handle);
                }
                Ok(Cancelled::Running)
            }
            Err(e) => {
                self.finish(id, RunResult::Released);
                Err(e)
            }
        }
    }

    /// The record of `id`, if it is one a cancel can stop.
    async fn cancellable(&self, id: &str) -> Result<Record, CancelError> {
        let record = match self.engine.journal.get(id).await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(CancelError::NotFound),
            Err(e) => return Err(CancelError::Journal(e.to_string())),
        };
        match &record.status {
            Status::Running | Status::Waiting { .. } => Ok(record),
            Status::Compensating { .. } if record.cancel.is_some() => {
                Err(CancelError::NotNow("it is already being cancelled".into()))
            }
            other => Err(CancelError::NotNow(format!(
                "it is {} (only a running or waiting instance can be cancelled)",
                other.name()
            ))),
        }
    }

    /// Marks instance `id` as handed to the DLQ (after the copy was sent).
    pub async fn mark_dead_lettered(&self, id: &str, reason: &str) -> Result<(), String> {
        let journal = &self.engine.journal;
        // The run has ended and given its claim back: this write takes it again (a shared
        // journal accepts writes from the owner only).
        match journal.claim(id).await.map_err(|e| e.to_string())? {
            crate::journal::Claim::Granted => {}
            crate::journal::Claim::HeldBy { owner, .. } => {
                return Err(format!("{owner} runs it now"));
            }
        }
        let written = async {
            let Some(mut record) = journal.get(id).await.map_err(|e| e.to_string())? else {
                return Ok(());
            };
            lifecycle::dead_lettered(&mut record, reason, self.engine.clock.now_ms());
            self.engine.commit(&record).await.map_err(|e| e.to_string())
        }
        .await;
        journal.release(id).await;
        written
    }
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    /// Its run in this process takes the cancel at its next step.
    Requested,
    /// Nobody ran it: the cancel is journaled and a run here compensates it now.
    Running,
    /// Another process runs it (a shared journal): it was signalled.
    Signalled { owner: String },
}

impl Cancelled {
    pub fn describe(&self) -> String {
        match self {
            Cancelled::Requested => "cancelling: the run compensates at its next step".into(),
            Cancelled::Running => "cancelling: compensating now".into(),
            Cancelled::Signalled { owner } => {
                format!("cancel signalled to {owner}, which runs the instance")
            }
        }
    }
}

/// Why a cancel was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CancelError {
    #[error("no such instance")]
    NotFound,
    #[error("cannot cancel: {0}")]
    NotNow(String),
    #[error("journal: {0}")]
    Journal(String),
}

/// A run that panicked before anything of it was journaled: there is no record to count
/// panics in, so the message goes to the DLQ with the reason (a redrive runs it journaled
/// from its start, where panics are counted and retried).
fn unjournaled_panic(id: &str, kind: &str, route: &str, panic: &str) -> RunResult {
    tracing::error!(
        workflow_id = id,
        "workflow panicked before it was journaled: {panic}"
    );
    let reason = format!("panicked: {panic}");
    RunResult::Failed(Failure::bare(id, kind, route, reason, 0))
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
    use super::{Redrive, workflow_id};

    #[test]
    fn redrive_markers_name_the_run_they_bring_back() {
        assert_eq!(Redrive::parse(&Redrive::value(3)), Redrive::Of(3));
        assert_eq!(Redrive::parse("1"), Redrive::Any);
        assert_eq!(Redrive::parse("gx"), Redrive::Any);
        assert!(Redrive::Of(1).brings_back(1));
        assert!(
            !Redrive::Of(0).brings_back(1),
            "a duplicate of an older redrive"
        );
        assert!(Redrive::Any.brings_back(7));
    }

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
