//! Workflows: one folder each, holding its input and state types and its pure transition
//! function. This file is the contract between a workflow and the engine, and the registry of
//! workflow kinds that routes can name.
//!
//! **A workflow does no I/O.** It says which [`Action`] to run next; the engine journals that
//! decision, runs the action through the ports, retries it by the action's policy, and hands
//! the final outcome back to [`Workflow::advance`]. State is JSON so that the journal can hold
//! any workflow's state and a person can read it.

pub mod ecs_start;
pub mod ecs_stop;
pub mod ecs_task_event;
pub mod log;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::KnownWorkflows;
use crate::retry::RetryPolicy;

/// A side effect for the engine to perform: a named step and the port call it makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// The step's name, unique within the workflow run (`register-target`, `wait-running#3`).
    pub step: String,
    pub call: Call,
    /// How failures of this step are retried. Default: [`RetryPolicy::default`].
    #[serde(default)]
    pub retry: RetryPolicy,
}

impl Action {
    pub fn new(step: impl Into<String>, call: Call) -> Action {
        Action {
            step: step.into(),
            call,
            retry: RetryPolicy::default(),
        }
    }
}

/// Which configured notification topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    Success,
    Error,
    Anomaly,
}

/// A port call. Every variant is performed by exactly one port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    /// Writes one structured log line; returns `{}`.
    Log { message: String, fields: Value },
    /// Publishes to a configured topic (skipped, returning `{"skipped": true}`, when the topic
    /// is not configured); returns `{"message_id": …}`. Carries a deduplication id derived
    /// from the workflow and step, because a resumed step may publish twice.
    Publish {
        topic: Topic,
        subject: String,
        message: Value,
    },
    /// Waits, without holding anything but the message's visibility; returns `{}`.
    Sleep {
        #[serde(with = "humantime_serde")]
        duration: std::time::Duration,
        /// A key that [`Call::Wake`] can use to end the sleep early (an in-process sleep only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wake_on: Option<String>,
    },
    /// Ends the in-process sleeps waiting on `key` (performed by the engine, not a port);
    /// returns `{"woken": true|false}`.
    Wake { key: String },
    /// Reads another workflow instance's journal record (performed by the engine); returns
    /// `{"found", "workflow", "status", "output"}`.
    ReadWorkflow { id: String },
    /// ECS `RunTask`; its `client_token` is set by the engine from the step's idempotency key.
    /// Returns `{"task_arn": …}`.
    EcsRunTask {
        request: Box<crate::ports::RunTaskRequest>,
    },
    /// ECS `DescribeTasks` of one task; returns a `TaskStatus`.
    EcsDescribeTask { cluster: String, task: String },
    /// ECS `StopTask`; returns `{}`.
    EcsStopTask {
        cluster: String,
        task: String,
        reason: String,
    },
    /// ELBv2 `RegisterTargets` of one IP target; returns `{}`.
    TargetRegister {
        target_group: String,
        ip: String,
        port: u16,
    },
    /// ELBv2 `DeregisterTargets` of one IP target (not registered is fine); returns `{}`.
    TargetDeregister {
        target_group: String,
        ip: String,
        port: u16,
    },
    /// ELBv2 `DescribeTargetHealth` of one target; returns a `TargetHealth`.
    TargetHealth {
        target_group: String,
        ip: String,
        port: u16,
    },
    /// A call to a port registered by name at start (tests and benchmarks register theirs).
    Custom { port: String, input: Value },
}

/// Why a step failed, as the engine reports it to the workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub message: String,
    /// Worth trying again (throttling, 5xx, timeouts); false for validation, not found, access
    /// denied. Decided by the adapters, in one place (`src/aws/mod.rs`).
    pub retryable: bool,
}

impl StepError {
    pub fn permanent(message: impl Into<String>) -> StepError {
        StepError {
            message: message.into(),
            retryable: false,
        }
    }

    pub fn retryable(message: impl Into<String>) -> StepError {
        StepError {
            message: message.into(),
            retryable: true,
        }
    }
}

/// What the workflow wants next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Run(Action),
    /// Finished with this output.
    Complete(Value),
    /// Failed for good: the engine runs [`Workflow::compensation`] and dead-letters the event.
    Fail(String),
}

/// A new state and what to do next.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub state: Value,
    pub next: Next,
}

/// The next transition of a workflow whose state is the serde type `S`: parses the journaled
/// state, lets `step` change it and decide, and stores it back. A state that does not parse
/// (a record written by an incompatible build) fails the instance with the reason.
pub fn advance_typed<S>(state: Value, step: impl FnOnce(&mut S) -> Next) -> Transition
where
    S: serde::Serialize + serde::de::DeserializeOwned,
{
    let mut typed: S = match serde_json::from_value(state.clone()) {
        Ok(s) => s,
        Err(e) => {
            return Transition {
                state,
                next: Next::Fail(format!("journaled state does not parse: {e}")),
            };
        }
    };
    let next = step(&mut typed);
    Transition {
        state: serde_json::to_value(&typed).unwrap_or(state),
        next,
    }
}

/// A duration parameter such as `"5s"`, or `default` when it is absent.
pub fn duration_param(
    params: &Value,
    name: &str,
    default: std::time::Duration,
) -> Result<std::time::Duration, String> {
    match params.get(name) {
        None => Ok(default),
        Some(Value::String(s)) => {
            humantime::parse_duration(s).map_err(|e| format!("params.{name} {s:?}: {e}"))
        }
        Some(other) => Err(format!(
            "params.{name} must be a duration such as \"5s\", got {other}"
        )),
    }
}

/// How many polls `interval` apart fit in `timeout` (at least one): waits are bounded by poll
/// counts so that workflow logic needs no clock.
pub fn poll_count(timeout: std::time::Duration, interval: std::time::Duration) -> u32 {
    if interval.is_zero() {
        return 1;
    }
    (timeout.as_secs_f64() / interval.as_secs_f64())
        .ceil()
        .max(1.0) as u32
}

/// The pure logic of one workflow kind.
pub trait Workflow: Send + Sync {
    /// The name routes use.
    fn kind(&self) -> &'static str;

    /// The first transition for an event and the route's params; an error is permanent (the
    /// event can never start this workflow) and dead-letters the event with the reason.
    fn start(&self, event: &Value, params: &Value) -> Result<Transition, String>;

    /// The next transition after `step` finished with `outcome` (after the engine's retries).
    fn advance(&self, state: Value, step: &str, outcome: Result<Value, StepError>) -> Transition;

    /// Actions that undo what a failed run left behind, run best-effort before dead-lettering.
    fn compensation(&self, _state: &Value) -> Vec<Action> {
        Vec::new()
    }
}

/// The workflow kinds this build can run, by name.
#[derive(Clone)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn Workflow>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.kinds.keys()).finish()
    }
}

impl Default for Registry {
    /// The built-in workflows.
    fn default() -> Self {
        let mut r = Registry::empty();
        r.register(Arc::new(log::Log));
        r.register(Arc::new(ecs_start::EcsStart::default()));
        r.register(Arc::new(ecs_stop::EcsStop::default()));
        r.register(Arc::new(ecs_task_event::EcsTaskEvent));
        r
    }
}

impl Registry {
    /// The built-in workflows with the data they take from the configuration (the ECS service
    /// mappings, with target groups already resolved to ARNs).
    pub fn with_services(services: BTreeMap<String, crate::config::ServiceMapping>) -> Registry {
        let mut r = Registry::default();
        r.register(Arc::new(ecs_stop::EcsStop {
            services: services.clone(),
        }));
        r.register(Arc::new(ecs_start::EcsStart { services }));
        r
    }

    pub fn empty() -> Registry {
        Registry {
            kinds: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) a workflow kind.
    pub fn register(&mut self, workflow: Arc<dyn Workflow>) {
        self.kinds.insert(workflow.kind(), workflow);
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Workflow>> {
        self.kinds.get(kind)
    }
}

impl KnownWorkflows for Registry {
    fn is_known(&self, kind: &str) -> bool {
        self.kinds.contains_key(kind)
    }

    fn names(&self) -> Vec<&'static str> {
        self.kinds.keys().copied().collect()
    }
}
