//! The contract between a workflow and the engine: the [`Workflow`] trait, the [`Action`]s a
//! workflow decides on, the [`Call`]s the engine knows how to perform, [`StepError`],
//! [`Topic`], [`Transition`] and [`Next`], the [`RetryPolicy`], and the typed layer
//! ([`Flow`]) that workflow folders implement.
//!
//! **This module imports nothing else of the crate**: the engine, the journal, the ports and
//! every workflow depend on it, and it depends on none of them.
//!
//! A workflow is a pure state machine plus the handlers that perform its own steps. It says
//! which [`Action`] to run next; the engine journals that decision, performs the action (a
//! [`Call::Handler`] through the workflow's own handler, or one of the engine's generic calls:
//! sleep, wake, read another instance, publish), retries it by the action's policy, and hands
//! the final outcome back to [`Workflow::advance`]. State is JSON so that the journal can hold
//! any workflow's state and a person can read it.

pub mod retry;
mod typed;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use retry::RetryPolicy;
pub use typed::{Act, Decision, Flow, Typed, output, to_output};

/// A side effect for the engine to perform, as the journal holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// The step's name, unique within one run of the instance (`register-target`,
    /// `wait-running#3`). Step records, idempotency keys and logs use it.
    pub name: String,
    /// The workflow's own typed step, as JSON (`{"run_task": {…}}`, `"sleep_running"`): what
    /// the workflow gets back in [`Workflow::advance`], and what [`Workflow::perform`]
    /// performs for a [`Call::Handler`]. Shared, not copied, between the journal record,
    /// its step record and the attempt (it may carry the whole event: a delivery's body).
    pub step: std::sync::Arc<Value>,
    /// Who performs it.
    pub call: Call,
    /// How failures of this step are retried. Default: [`RetryPolicy::default`].
    #[serde(default)]
    pub retry: RetryPolicy,
}

/// Which configured notification topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    Success,
    Error,
    Anomaly,
}

/// How an action is performed: by the workflow's own handler, or generically by the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    /// The workflow's handler performs the action's `step` ([`Workflow::perform`]).
    Handler,
    /// Waits, without holding anything but the message's visibility; returns
    /// `{"woken": bool}`. Long sleeps release the message and resume when it comes back.
    Sleep {
        #[serde(with = "humantime_serde")]
        duration: Duration,
        /// A key that [`Call::Wake`] can use to end the sleep early (an in-process sleep only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wake_on: Option<String>,
    },
    /// Ends the in-process sleeps waiting on `key`; returns `{"woken": true|false}`.
    Wake { key: String },
    /// Reads another workflow instance's journal record; returns `{"found", "workflow",
    /// "status", "output"}`.
    ReadWorkflow { id: String },
    /// Publishes to a configured topic (skipped, returning `{"skipped": …}`, when the topic
    /// is not configured); returns `{"message_id": …}`. Carries the step's idempotency key as
    /// a deduplication id, because a resumed step may publish twice.
    Publish {
        topic: Topic,
        subject: String,
        message: Value,
        /// SNS message attributes, so that a subscriber can filter (`account`, `type`).
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        attributes: std::collections::BTreeMap<String, String>,
    },
}

/// What a [`Call::Sleep`] or a [`Call::Wake`] returns: whether a wake ended the sleep (a
/// sleep), or found a sleeper in this process (a wake).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Woken {
    pub woken: bool,
    /// A wake on a shared journal also left a signal for sleepers in other processes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub signalled: bool,
}

/// What a [`Call::ReadWorkflow`] returns: the other instance as its journal holds it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRead {
    pub found: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// `running`, `succeeded`, `failed`, … ([`crate::journal::Status::name`]) when found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
}

/// What a [`Call::Publish`] returns: the topic's message id, or why nothing was published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Published {
    MessageId(String),
    /// The topic is not configured.
    Skipped(String),
}

/// Why a step failed, as the engine reports it to the workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub message: String,
    /// Worth trying again (throttling, 5xx, timeouts); false for validation, not found, access
    /// denied. For AWS errors decided in one place (`aws::classify`).
    pub retryable: bool,
    /// The earliest the next attempt may start, when the other side said so (an HTTP
    /// `Retry-After`): the engine waits at least this long, however short its own back-off.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry_after: Option<Duration>,
}

impl StepError {
    pub fn permanent(message: impl Into<String>) -> StepError {
        StepError {
            message: message.into(),
            retryable: false,
            retry_after: None,
        }
    }

    pub fn retryable(message: impl Into<String>) -> StepError {
        StepError {
            message: message.into(),
            retryable: true,
            retry_after: None,
        }
    }

    /// This error, asking that the next attempt start no sooner than `delay` from now.
    pub fn after(self, delay: Option<Duration>) -> StepError {
        StepError {
            retry_after: delay,
            ..self
        }
    }
}

/// The output key that marks a completion as "ignored": the event reached the workflow but
/// was not for it (an S3 key that is neither a report nor a manifest). Counted apart in the
/// metrics; build it with [`Next::ignored`].
pub const IGNORED: &str = "ignored";

/// What the workflow wants next. `A` is [`Action`] at the engine's side and [`Act`] in a
/// typed workflow.
#[derive(Debug, Clone, PartialEq)]
pub enum Next<A = Action> {
    Run(A),
    /// Finished with this output.
    Complete(Value),
    /// Failed for good: the engine journals the decision, runs [`Workflow::compensation`] as
    /// ordinary steps, and dead-letters the event.
    Fail(String),
    /// Continue as new: this run's step history is done with; the instance goes on from its
    /// current state with this action, in a fresh history (new idempotency keys, no record
    /// of the steps before but their count). A workflow that never ends (a schedule, a
    /// poller) continues as new every so often, so that its journal record stays small.
    Continue(A),
}

impl<A> Next<A> {
    /// Completes with a workflow's typed output (each workflow declares its `Output`); an
    /// output that cannot be written as JSON fails the run with the reason instead.
    pub fn done<T: Serialize>(output: &T) -> Next<A> {
        match serde_json::to_value(output) {
            Ok(v) => Next::Complete(v),
            Err(e) => Next::Fail(format!("the output cannot be journaled: {e}")),
        }
    }

    /// Completes at once without work: `what` was not for this workflow, for `reason`.
    pub fn ignored(what: &str, reason: &str) -> Next<A> {
        Next::Complete(serde_json::json!({IGNORED: what, "reason": reason}))
    }
}

/// A new state and what to do next.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub state: Value,
    pub next: Next,
}

/// Which step of which run a call belongs to; the source of idempotency keys.
#[derive(Debug, Clone, Copy)]
pub struct StepContext<'a> {
    pub workflow_id: &'a str,
    pub step: &'a str,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The run of the instance: 0 for the first, one more for each redrive.
    pub generation: u32,
    /// How many times this run has continued as new ([`Next::Continue`]): 0 until then.
    pub continued: u32,
    /// The event that started the instance (its journal record's input), for a step that
    /// sends it as it is rather than carrying a copy in its request.
    pub event: &'a Value,
}

impl StepContext<'_> {
    /// The same for every attempt of this step in this run of this instance, and nothing
    /// else: the ECS `clientToken`, the SNS deduplication id. 32 hex characters. A redriven
    /// instance (generation 1 and later) gets new keys, so that a step it runs again is a new
    /// request (a new task, not the one its earlier compensation stopped).
    pub fn idempotency_key(&self) -> String {
        run_key(self.workflow_id, self.generation, self.continued, self.step)
    }
}

/// See [`StepContext::idempotency_key`]. Generation 0 keeps the key of builds that had no
/// generations: `sha256(id \n step)`.
pub fn idempotency_key(workflow_id: &str, generation: u32, step: &str) -> String {
    let text = if generation == 0 {
        format!("{workflow_id}\n{step}")
    } else {
        format!("{workflow_id}\ng{generation}\n{step}")
    };
    hex::encode(&Sha256::digest(text)[..16])
}

/// The key of `step` in a run that has continued as new `continued` times: the plain
/// [`idempotency_key`] until it has, so that the keys of every record written before
/// continuations existed stay what they were.
pub fn run_key(workflow_id: &str, generation: u32, continued: u32, step: &str) -> String {
    if continued == 0 {
        return idempotency_key(workflow_id, generation, step);
    }
    let text = format!("{workflow_id}\ng{generation}\nc{continued}\n{step}");
    hex::encode(&Sha256::digest(text)[..16])
}

/// The states a run went through, where its workflow keeps them in its state as `path` (a
/// list of names: a States Language definition's run); empty for the others. The console and
/// `tugboat workflows show` list them.
pub fn state_path(state: &Value) -> Vec<&str> {
    state
        .get("path")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// Where an instance's progress is kept, as its workflow declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every decision and attempt is journaled before it is acted on (the default): what a
    /// workflow of several steps, or of steps that must not run twice, needs.
    #[default]
    Journal,
    /// **The message is the record**, for a workflow whose run is one idempotent step (a
    /// delivery: an MQTT publish, an HTTP POST) as EventBridge Pipes and Vector forward: its
    /// first run writes nothing, and the message is deleted only once the step succeeded,
    /// so a crash before then brings the message back and the step runs again (at least
    /// once, as with a journal). The first time anything but success happens — a failed
    /// attempt, a back-off, a failure, a cancel — the instance is journaled there and runs
    /// on as any other (its retries, compensation, DLQ reason and console page as usual). A
    /// redriven or retried instance is journaled from its start.
    Message,
}

/// A workflow kind as the engine sees it. Workflow folders implement [`Flow`] instead and are
/// wrapped in [`Typed`], which does the JSON at this boundary.
#[async_trait]
pub trait Workflow: Send + Sync {
    /// The name routes use.
    fn kind(&self) -> &'static str;

    /// The first transition for an event and the route's params; an error is permanent (the
    /// event can never start this workflow) and dead-letters the event with the reason.
    fn start(&self, event: &Value, params: &Value) -> Result<Transition, String>;

    /// What makes two events one instance, when it is not the event's own id: `spot_drain`
    /// says "this instance, this notice", so that the notice EventBridge sends and the one the
    /// instance's agent sends run one drain. The instance id is then `<kind>:<identity>`,
    /// whatever the route or source. `None` (the default): the event's id, per route. The
    /// route's params are given so that runs that do different things stay apart.
    fn identity(&self, event: &Value, params: &Value) -> Option<String> {
        let _ = (event, params);
        None
    }

    /// Where an instance's progress is kept while it goes well (see [`Durability`]).
    fn durability(&self) -> Durability {
        Durability::Journal
    }

    /// The next transition after `done` finished with `outcome` (after the engine's retries).
    fn advance(&self, state: Value, done: &Action, outcome: Result<Value, StepError>)
    -> Transition;

    /// Actions that undo what a failed run left behind. The engine journals them with the
    /// failure decision and runs each as an ordinary step before dead-lettering.
    fn compensation(&self, state: &Value) -> Vec<Action>;

    /// Performs the step of a [`Call::Handler`] action through the workflow's ports.
    async fn perform(&self, ctx: StepContext<'_>, step: &Value) -> Result<Value, StepError>;

    /// A [`Durability::Message`] workflow's run while it goes well, with nothing made for a
    /// journal: the start, its first step performed (attempt 1 of generation 0) and the
    /// advance after it, in the workflow's own types. [`Direct::Done`] when that was the
    /// whole run and it succeeded; otherwise [`Direct::Journal`], and the engine runs the
    /// instance from its start as any other, its first attempt's outcome the one given. The
    /// default makes no direct run.
    async fn run_direct(&self, event: &Value, params: &Value, workflow_id: &str) -> Direct {
        let _ = (event, params, workflow_id);
        Direct::Journal(None)
    }
}

/// What [`Workflow::run_direct`] came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Direct {
    /// The run succeeded in its one step: the step's name and its result (what the engine
    /// would have journaled as the step's output).
    Done { step: String, result: Value },
    /// Not a run that ended well in one step: the start failed or ended at once, the step
    /// failed, or more follows. The attempt that was made, if one was: its step's name and
    /// outcome.
    Journal(Option<(String, Result<Value, StepError>)>),
}

/// How many polls `interval` apart fit in `timeout` (at least one): waits are bounded by poll
/// counts so that workflow logic needs no clock.
pub fn poll_count(timeout: Duration, interval: Duration) -> u32 {
    if interval.is_zero() {
        return 1;
    }
    (timeout.as_secs_f64() / interval.as_secs_f64())
        .ceil()
        .max(1.0) as u32
}

/// Reads `value` (an event's `detail`, a route's `params`) as `T`: one `deserialize` at the
/// edge, its error naming the field in JSON's words, `what` first: `detail.command must be a
/// list, got string "serve"`, `detail.service is required`.
pub fn decode<T: serde::de::DeserializeOwned>(value: &Value, what: &str) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            what.to_owned()
        } else {
            format!("{what}.{path}")
        };
        describe(&field, &e.inner().to_string())
    })
}

/// A route's params as `decode` takes them: a route without params has `null`, read as `{}`.
pub fn params_or_empty(params: &Value) -> &Value {
    static EMPTY: std::sync::LazyLock<Value> =
        std::sync::LazyLock::new(|| Value::Object(Default::default()));
    if params.is_null() { &EMPTY } else { params }
}

/// serde's message about `field`, said as a person reading JSON would.
fn describe(field: &str, message: &str) -> String {
    let json_words = |s: &str| {
        s.replace("a sequence", "a list")
            .replace("a map", "an object")
            .replace("a borrowed string", "a string")
            .replace("u64", "a whole number")
            .replace("u32", "a whole number")
            .replace("u16", "a whole number")
            .replace("u8", "a whole number")
    };
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        return format!("{field}.{name} is required");
    }
    for prefix in ["invalid type: ", "invalid value: ", "unknown variant "] {
        if let Some((got, expected)) = message
            .strip_prefix(prefix)
            .and_then(|r| r.split_once(", expected "))
        {
            return format!("{field} must be {}, got {got}", json_words(expected));
        }
    }
    if let Some((_, known)) = message
        .strip_prefix("unknown field `")
        .and_then(|r| r.split_once("`, "))
    {
        return format!("{field} is not known here ({known})");
    }
    format!("{field}: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, expecting = "an object")]
    #[allow(dead_code, reason = "read by the decoder only")]
    struct Sample {
        service: String,
        count: Option<u32>,
        #[serde(default)]
        command: Vec<String>,
        #[serde(default)]
        environment: std::collections::BTreeMap<String, String>,
    }

    #[test]
    fn decode_errors_name_the_field_in_json_words() {
        let err = |v: Value| decode::<Sample>(&v, "detail").unwrap_err();
        assert_eq!(err(serde_json::json!({})), "detail.service is required");
        assert_eq!(
            err(serde_json::json!(null)),
            "detail must be an object, got null"
        );
        assert_eq!(
            err(serde_json::json!({"service": 5})),
            "detail.service must be a string, got integer `5`"
        );
        assert_eq!(
            err(serde_json::json!({"service": "a", "command": "serve"})),
            "detail.command must be a list, got string \"serve\""
        );
        assert_eq!(
            err(serde_json::json!({"service": "a", "command": ["x", 1]})),
            "detail.command[1] must be a string, got integer `1`"
        );
        assert_eq!(
            err(serde_json::json!({"service": "a", "environment": {"A": true}})),
            "detail.environment.A must be a string, got boolean `true`"
        );
        assert_eq!(
            err(serde_json::json!({"service": "a", "count": -1})),
            "detail.count must be a whole number, got integer `-1`"
        );
        assert_eq!(
            err(serde_json::json!({"service": "a", "cuont": 1})),
            "detail.cuont is not known here (expected one of `service`, `count`, `command`, `environment`)"
        );
        #[derive(Debug, Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Mode {
            Drain,
            Notify,
        }
        assert_eq!(
            decode::<Mode>(&serde_json::json!("sleep"), "params.mode").unwrap_err(),
            "params.mode must be `drain` or `notify`, got `sleep`"
        );
        assert!(matches!(
            decode::<Mode>(&serde_json::json!("notify"), "params.mode"),
            Ok(Mode::Notify)
        ));
        let _ = Mode::Drain;
        let ok: Sample = decode(&serde_json::json!({"service": "a"}), "detail").unwrap();
        assert_eq!((ok.service.as_str(), ok.count), ("a", None));
    }

    #[test]
    fn keys_are_stable_per_step_and_new_per_generation() {
        let first = idempotency_key("r:e-1", 0, "run-task");
        assert_eq!(first.len(), 32);
        assert_eq!(first, idempotency_key("r:e-1", 0, "run-task"));
        // The formula of builds before generations: instances journaled by them keep their keys.
        assert_eq!(first, hex::encode(&Sha256::digest("r:e-1\nrun-task")[..16]));
        assert_ne!(first, idempotency_key("r:e-1", 1, "run-task"));
        assert_ne!(first, idempotency_key("r:e-1", 0, "stop-task"));
        assert_ne!(first, idempotency_key("r:e-2", 0, "run-task"));
        // A continued run: new keys, the plain ones until the first continuation.
        assert_eq!(run_key("r:e-1", 0, 0, "run-task"), first);
        assert_ne!(run_key("r:e-1", 0, 1, "run-task"), first);
        assert_ne!(
            run_key("r:e-1", 0, 1, "run-task"),
            run_key("r:e-1", 0, 2, "run-task")
        );
        assert_ne!(
            run_key("r:e-1", 1, 1, "run-task"),
            run_key("r:e-1", 0, 1, "run-task")
        );
    }

    #[test]
    fn publish_attributes_are_optional_in_the_journal() {
        // A publish journaled by a build without attributes still reads.
        let old: Call = serde_json::from_value(serde_json::json!(
            {"call": "publish", "topic": "success", "subject": "s", "message": {}}
        ))
        .unwrap();
        assert!(matches!(old, Call::Publish { ref attributes, .. } if attributes.is_empty()));
        let act = Act::publish("n", (), Topic::Anomaly, "s", serde_json::json!({}))
            .with_attributes([("account", "111"), ("type", "anomaly")]);
        let Call::Publish { attributes, .. } = &act.call else {
            panic!()
        };
        assert_eq!(attributes.len(), 2);
        let v = serde_json::to_value(&act.call).unwrap();
        assert_eq!(v["attributes"]["account"], "111");
        assert_eq!(serde_json::from_value::<Call>(v).unwrap(), act.call);
        // Not a publish: unchanged.
        let sleep = Act::sleep("z", (), Duration::from_secs(1), None).with_attributes([("a", "b")]);
        assert!(matches!(sleep.call, Call::Sleep { .. }));
    }

    #[test]
    fn durations_and_poll_counts() {
        #[derive(Debug, Deserialize)]
        struct Durations {
            #[serde(default, with = "humantime_serde")]
            a: Option<Duration>,
        }
        let read = |v| decode::<Durations>(&v, "params").map(|d| d.a);
        assert_eq!(
            read(serde_json::json!({"a": "5s"})),
            Ok(Some(Duration::from_secs(5)))
        );
        assert_eq!(read(serde_json::json!({})), Ok(None));
        let five = read(serde_json::json!({"a": 5})).unwrap_err();
        assert!(five.starts_with("params.a must be "), "{five}");
        let soon = read(serde_json::json!({"a": "soon"})).unwrap_err();
        assert!(soon.starts_with("params.a"), "{soon}");
        assert_eq!(
            poll_count(Duration::from_secs(300), Duration::from_secs(5)),
            60
        );
        assert_eq!(poll_count(Duration::from_secs(1), Duration::ZERO), 1);
        assert_eq!(
            poll_count(Duration::from_secs(7), Duration::from_secs(5)),
            2
        );
    }
}
