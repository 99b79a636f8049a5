//! The journal: one durable record per workflow instance.
//!
//! The SQS message stays the durable record of the work to do; the journal makes resumption
//! exact. A record is written *before* the action it names runs, and [`Journal::put`] returns
//! only once the write is durable (group-committed: many concurrent writers share one flush).
//! The store is a trait so that a shared store (DynamoDB with conditional writes) can replace
//! the embedded one when several tugboat tasks consume one queue.

pub mod memory;
pub mod sled;

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::contract::Action;

/// The version of [`Record`]'s layout; a record of another version is refused, not misread.
/// Version 2: actions carry the workflow's typed step, compensation is journaled step by step
/// (`Compensating`, `undo`), and redrives start generations (`generation`, `earlier`).
pub const SCHEMA_VERSION: u32 = 2;

/// Where a workflow instance is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// Started or resumed; `pending` holds the next action, if any.
    Running,
    /// Backing off until `until_ms` (Unix ms); the message was released until then.
    Waiting { until_ms: u64 },
    /// Finished; `output` holds the result. Terminal.
    Succeeded,
    /// Failed for good; the decision is journaled and its compensation runs step by step
    /// (`pending`, then `undo`). Resumed after a crash like any running instance.
    Compensating { reason: String },
    /// Failed for good and compensated; the DLQ handoff is still due.
    Failed { reason: String },
    /// Failed and copied to the DLQ. Terminal (until a redrive brings the event back).
    DeadLettered { reason: String },
    /// Cancelled by an operator (`cancel` says who and when) and compensated; its message
    /// is deleted. Terminal (until a retry starts the next generation).
    Cancelled { reason: String },
}

impl Status {
    pub fn name(&self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Waiting { .. } => "waiting",
            Status::Compensating { .. } => "compensating",
            Status::Succeeded => "succeeded",
            Status::Failed { .. } => "failed",
            Status::DeadLettered { .. } => "dead_lettered",
            Status::Cancelled { .. } => "cancelled",
        }
    }

    /// Every status name, in the order a lifecycle goes through them.
    pub const NAMES: [&'static str; 7] = [
        "running",
        "waiting",
        "compensating",
        "succeeded",
        "failed",
        "dead_lettered",
        "cancelled",
    ];

    /// Whether the instance has ended (nothing runs it until a redrive or retry).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Status::Succeeded | Status::DeadLettered { .. } | Status::Cancelled { .. }
        )
    }
}

/// One step's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    /// The step's idempotency key in this run (the ECS `clientToken`, the SNS deduplication
    /// id), kept so that an operator can find what the step did.
    pub key: String,
    /// Attempts started so far; persisted, so a restart continues the same retry sequence.
    pub attempts: u32,
    pub first_started_ms: u64,
    pub last_started_ms: u64,
    pub finished_ms: Option<u64>,
    pub output: Option<Value>,
    pub last_error: Option<String>,
    /// A compensation step, run after the workflow failed.
    #[serde(default)]
    pub compensation: bool,
    /// An engine sleep (a wait between polls, a back-off the workflow chose), not a call.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sleep: bool,
    /// What the step was asked to do: the workflow's step (its request) for a handler's
    /// call, the engine's call (sleep, publish, …) otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<std::sync::Arc<Value>>,
    /// The latest attempts, oldest first, at most [`StepRecord::TRIES_KEPT`]: when each
    /// started and ended and its error, for the console's timeline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tries: Vec<Try>,
}

/// One attempt at a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Try {
    pub started_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
    /// Why it failed (the first 200 characters), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl StepRecord {
    /// Attempts kept in `tries` (a step retried for hours keeps only its latest).
    pub const TRIES_KEPT: usize = 20;

    /// An attempt starts now.
    pub fn try_started(&mut self, now: u64) {
        if self.tries.len() >= Self::TRIES_KEPT {
            self.tries.remove(0);
        }
        self.tries.push(Try {
            started_ms: now,
            ended_ms: None,
            error: None,
        });
    }

    /// The latest attempt ended, with `error` if it failed.
    pub fn try_ended(&mut self, now: u64, error: Option<&str>) {
        if let Some(t) = self.tries.last_mut()
            && t.ended_ms.is_none()
        {
            t.ended_ms = Some(now);
            t.error = error.map(|e| e.chars().take(200).collect());
        }
    }
}

/// An operator's request to cancel an instance, journaled before the cancellation runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cancel {
    /// Who asked (`console`, `cli`, …), for the record.
    pub by: String,
    pub at_ms: u64,
}

/// Everything known about one workflow instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub schema: u32,
    /// Route name + event identity: the same event on the same route has the same id.
    pub id: String,
    pub workflow: String,
    pub route: String,
    pub queue: String,
    /// The SQS message that (last) carried the event.
    pub message_id: String,
    #[serde(flatten)]
    pub status: Status,
    /// The decoded event.
    pub input: Value,
    pub params: Value,
    /// The workflow's own state.
    pub state: Value,
    /// The action decided and journaled but not yet known to have finished.
    pub pending: Option<Action>,
    /// An operator asked to cancel this run: it compensates and ends `cancelled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<Cancel>,
    /// While compensating: the undo actions still to run after `pending`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undo: Vec<Action>,
    /// This run's steps.
    pub steps: Vec<StepRecord>,
    pub output: Option<Value>,
    pub last_error: Option<String>,
    /// Panics while running; after too many the instance is dead-lettered.
    pub panics: u32,
    /// Which run this is: 0 for the first; a redrive after dead-lettering starts the next,
    /// with new idempotency keys.
    pub generation: u32,
    /// How many times this run has continued as new (its step history cleared, its keys
    /// new): a long-lived instance's record stays small.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub continued: u32,
    /// The runs before this one, oldest first, with their steps and keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<EarlierRun>,
    /// W3C `traceparent` of the message's trace, carried across restarts.
    pub trace: Option<String>,
    /// W3C `traceparent` of the span of the run that last drove the instance: a run resumed
    /// after a crash or a back-off links to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_span: Option<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Its steps' idempotency keys are not written in: an instance whose message is its
    /// record makes them only if it is journaled ([`Record::fill_keys`]), as a SHA-256 each
    /// is a measurable part of a delivery. (The keys a step sends are made from the run
    /// itself: [`crate::contract::StepContext::idempotency_key`].)
    #[serde(skip)]
    pub keys_deferred: bool,
}

/// What a list of instances shows of each (the console, `tugboat workflows list`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub id: String,
    pub workflow: String,
    pub route: String,
    pub status: String,
    /// Why it failed, was dead-lettered or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The event's own id (`id` of an EventBridge event), for a search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    pub steps: usize,
    /// The step running or next, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub generation: u32,
    pub created_ms: u64,
    pub updated_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// False for an instance that ended with its message as its record (a delivery that went
    /// well): the console keeps the last of them, the journal has none.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub journaled: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Record {
    pub fn summary(&self) -> Summary {
        let reason = match &self.status {
            Status::Compensating { reason }
            | Status::Failed { reason }
            | Status::DeadLettered { reason }
            | Status::Cancelled { reason } => Some(reason.clone()),
            _ => None,
        };
        Summary {
            id: self.id.clone(),
            workflow: self.workflow.clone(),
            route: self.route.clone(),
            status: self.status.name().to_owned(),
            reason,
            event_id: self
                .input
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            steps: self.steps.len(),
            step: self.pending.as_ref().map(|a| a.name.clone()),
            generation: self.generation,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
            last_error: self.last_error.clone(),
            journaled: true,
        }
    }
}

/// A finished run of an instance that a redrive started again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlierRun {
    pub generation: u32,
    /// How it ended (`dead_lettered: …`).
    pub ended: String,
    pub steps: Vec<StepRecord>,
    pub output: Option<Value>,
    pub ended_ms: u64,
}

/// Where an event came from, for a new [`Record`].
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub route: String,
    pub queue: String,
    pub message_id: String,
    /// W3C `traceparent` of the message, if the producer sent one.
    pub trace: Option<String>,
}

impl Record {
    /// A new running record of generation 0, with no state and no steps yet.
    pub fn new(id: &str, workflow: &str, origin: Origin, input: Value, params: Value) -> Record {
        let now = now_ms();
        Record {
            schema: SCHEMA_VERSION,
            id: id.to_owned(),
            workflow: workflow.to_owned(),
            route: origin.route,
            queue: origin.queue,
            message_id: origin.message_id,
            status: Status::Running,
            input,
            params,
            state: Value::Null,
            pending: None,
            cancel: None,
            undo: Vec::new(),
            steps: Vec::new(),
            output: None,
            last_error: None,
            panics: 0,
            generation: 0,
            continued: 0,
            earlier: Vec::new(),
            trace: origin.trace,
            run_span: None,
            created_ms: now,
            updated_ms: now,
            keys_deferred: false,
        }
    }

    /// Writes in the keys of steps made while they were deferred ([`Record::keys_deferred`]).
    pub fn fill_keys(&mut self) {
        if !std::mem::take(&mut self.keys_deferred) {
            return;
        }
        for s in self.steps.iter_mut().filter(|s| s.key.is_empty()) {
            s.key = crate::contract::run_key(&self.id, self.generation, self.continued, &s.name);
        }
    }

    /// The record of step `name`, created on first use (now, by the system clock).
    pub fn step_mut(&mut self, name: &str) -> &mut StepRecord {
        self.step_at(name, now_ms())
    }

    /// The record of step `name`, created on first use at `now` (Unix ms).
    pub fn step_at(&mut self, name: &str, now: u64) -> &mut StepRecord {
        if let Some(i) = self.steps.iter().position(|s| s.name == name) {
            return &mut self.steps[i];
        }
        let key = match self.keys_deferred {
            true => String::new(),
            false => crate::contract::run_key(&self.id, self.generation, self.continued, name),
        };
        self.steps.push(StepRecord {
            name: name.to_owned(),
            key,
            attempts: 0,
            first_started_ms: now,
            last_started_ms: now,
            finished_ms: None,
            output: None,
            last_error: None,
            compensation: false,
            sleep: false,
            input: None,
            tries: Vec::new(),
        });
        self.steps.last_mut().expect("just pushed")
    }

    /// The run failed for good and its compensation is over (or there was none): `failed`,
    /// or `cancelled` when an operator's cancel was the cause.
    pub fn end_compensated(&mut self, reason: String) {
        self.status = if self.cancel.is_some() {
            Status::Cancelled { reason }
        } else {
            Status::Failed { reason }
        };
    }

    pub fn step(&self, name: &str) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Ends this run and makes the record the start of the next generation: the steps, keys
    /// and outcome of this run move to `earlier`.
    /// `now`: when this run ended (Unix ms).
    pub fn next_generation(&mut self, now: u64) {
        let ended = match &self.status {
            Status::DeadLettered { reason }
            | Status::Failed { reason }
            | Status::Cancelled { reason } => {
                format!("{}: {reason}", self.status.name())
            }
            other => other.name().to_owned(),
        };
        self.earlier.push(EarlierRun {
            generation: self.generation,
            ended,
            steps: std::mem::take(&mut self.steps),
            output: self.output.take(),
            ended_ms: now,
        });
        self.generation += 1;
        self.continued = 0;
        self.status = Status::Running;
        self.pending = None;
        self.cancel = None;
        self.undo.clear();
        self.last_error = None;
        self.panics = 0;
        self.state = Value::Null;
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal storage: {0}")]
    Storage(String),
    #[error("journal record {id}: {message}")]
    Corrupt { id: String, message: String },
    /// A shared journal refused a write: another process owns the instance now (this one's
    /// lease ran out, or it never had it). The instance must stop here at once.
    #[error("journal record {id}: fenced off: {message}")]
    Fenced { id: String, message: String },
    /// The record is bigger than the store takes (DynamoDB: 400 KB an item).
    #[error("journal record {id}: {message}")]
    TooLarge { id: String, message: String },
}

/// Whether this process may run an instance ([`Journal::claim`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Yes, until the lease ends (renewed while the process holds it).
    Granted,
    /// Another process runs it; its lease ends at `until_ms` unless renewed.
    HeldBy { owner: String, until_ms: u64 },
}

/// Filters for [`Journal::list`].
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<String>,
    pub route: Option<String>,
    pub limit: Option<usize>,
}

impl ListFilter {
    pub fn accepts(&self, r: &Record) -> bool {
        self.status.as_deref().is_none_or(|s| s == r.status.name())
            && self.route.as_deref().is_none_or(|x| x == r.route)
    }
}

#[async_trait]
pub trait Journal: Send + Sync + std::fmt::Debug {
    /// The record of instance `id`, if there is one. (Async: a shared journal asks a
    /// database.)
    async fn get(&self, id: &str) -> Result<Option<Record>, JournalError>;

    /// Stores `record`; returns once it is durable.
    async fn put(&self, record: &Record) -> Result<(), JournalError>;

    /// Records matching `filter`, newest first.
    async fn list(&self, filter: &ListFilter) -> Result<Vec<Record>, JournalError>;

    /// Every instance's summary (the console's index): what `list` gives, less. A journal
    /// that stores encoded records reads only the summary's fields ([`decode_summary`]).
    async fn summaries(&self) -> Result<Vec<Summary>, JournalError> {
        let records = self.list(&ListFilter::default()).await?;
        Ok(records.iter().map(Record::summary).collect())
    }

    /// Makes everything written so far durable (at shutdown).
    fn flush(&self) -> Result<(), JournalError>;

    /// Takes the right to run instance `id` in this process before its record is read for a
    /// run. A journal of one process grants it always; a shared one grants it when nobody
    /// else holds an unexpired lease, and from then on accepts this process's writes of the
    /// record only while the lease lasts (fencing).
    async fn claim(&self, _id: &str) -> Result<Claim, JournalError> {
        Ok(Claim::Granted)
    }

    /// Gives the right back (the run ended or was released), so that another process may
    /// take the instance at once.
    async fn release(&self, _id: &str) {}

    /// Tells every process sharing the journal that `key` happened (a `Wake` whose sleeper
    /// may run elsewhere). Nothing to do for a journal of one process.
    async fn signal(&self, _key: &str) -> Result<(), JournalError> {
        Ok(())
    }

    /// How many times `key` has been signalled, by any process (a counter: no clocks are
    /// compared across machines).
    async fn signals(&self, _key: &str) -> Result<u64, JournalError> {
        Ok(0)
    }

    /// Whether several processes share it (then claims and releases matter).
    fn is_shared(&self) -> bool {
        false
    }

    /// A small named value kept beside the records and shared like them (the paused routes:
    /// every process of a shared journal reads the same ones).
    async fn setting(&self, key: &str) -> Result<Option<Value>, JournalError>;

    /// Stores a setting durably.
    async fn put_setting(&self, key: &str, value: &Value) -> Result<(), JournalError>;
}

/// Bytes of a record, as stored.
pub(crate) fn encode(record: &Record) -> Result<Vec<u8>, JournalError> {
    serde_json::to_vec(record).map_err(|e| JournalError::Corrupt {
        id: record.id.clone(),
        message: e.to_string(),
    })
}

/// A stored record, refusing other schema versions.
pub(crate) fn decode(id: &str, bytes: &[u8]) -> Result<Record, JournalError> {
    let corrupt = |message: String| JournalError::Corrupt {
        id: id.to_owned(),
        message,
    };
    let value: Value = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    match value.get("schema").and_then(Value::as_u64) {
        Some(v) if v == SCHEMA_VERSION as u64 => {}
        other => {
            return Err(corrupt(format!(
                "schema version {other:?}, this build reads {SCHEMA_VERSION}"
            )));
        }
    }
    serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))
}

/// The summary of a stored record, reading only its fields: the event, the state and the
/// steps' contents are skipped unparsed into values (several times faster than [`decode`]
/// over records of a few KiB). Other schema versions are refused as `decode` refuses them.
pub(crate) fn decode_summary(id: &str, bytes: &[u8]) -> Result<Summary, JournalError> {
    use serde::de::IgnoredAny;
    #[derive(Deserialize)]
    struct EventId {
        id: Option<Value>,
    }
    #[derive(Deserialize)]
    struct Pending {
        name: String,
    }
    #[derive(Deserialize)]
    struct Light {
        schema: u32,
        id: String,
        workflow: String,
        route: String,
        #[serde(flatten)]
        status: Status,
        input: Option<EventId>,
        pending: Option<Pending>,
        #[serde(default)]
        steps: Vec<IgnoredAny>,
        last_error: Option<String>,
        #[serde(default)]
        generation: u32,
        created_ms: u64,
        updated_ms: u64,
    }
    let corrupt = |message: String| JournalError::Corrupt {
        id: id.to_owned(),
        message,
    };
    let light: Light = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if light.schema != SCHEMA_VERSION {
        return Err(corrupt(format!(
            "schema version {}, this build reads {SCHEMA_VERSION}",
            light.schema
        )));
    }
    let reason = match &light.status {
        Status::Compensating { reason }
        | Status::Failed { reason }
        | Status::DeadLettered { reason }
        | Status::Cancelled { reason } => Some(reason.clone()),
        _ => None,
    };
    Ok(Summary {
        id: light.id,
        workflow: light.workflow,
        route: light.route,
        status: light.status.name().to_owned(),
        reason,
        event_id: light
            .input
            .and_then(|i| i.id)
            .and_then(|v| v.as_str().map(str::to_owned)),
        steps: light.steps.len(),
        step: light.pending.map(|p| p.name),
        generation: light.generation,
        created_ms: light.created_ms,
        updated_ms: light.updated_ms,
        last_error: light.last_error,
        journaled: true,
    })
}

/// Newest first, then cut to the filter's limit.
pub(crate) fn sort_and_limit(mut records: Vec<Record>, filter: &ListFilter) -> Vec<Record> {
    records.sort_by(|a, b| {
        b.updated_ms
            .cmp(&a.updated_ms)
            .then_with(|| a.id.cmp(&b.id))
    });
    if let Some(limit) = filter.limit {
        records.truncate(limit);
    }
    records
}
