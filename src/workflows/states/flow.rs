//! A definition run durably by the engine: every effect the interpreter asks for (a Task's
//! call, a Wait, a retrier's delay) is one journaled step, and every decision is a replay.
//!
//! The instance's state is the execution's input and what each effect answered, by key
//! (`Forward/1/ToWebhook`, `Notify@2` for a second attempt). After each step, [`decide`] runs
//! the interpreter from the start over those answers ([`Replay`]): an answered effect returns
//! at once, and the first unanswered one is the next step. The interpreter being
//! deterministic, a replay takes the path the run took, so a crash anywhere resumes at the
//! first effect whose outcome is not journaled — an effect journaled once is never asked
//! for again. Choice, Pass, Succeed and Fail states cost no step: they are recomputed.
//!
//! A Task step makes one attempt: its handler reports every failure as permanent to the
//! engine, and the definition's `Retry` is the retry policy, as in Step Functions, its delays
//! being journaled sleeps. The engine's policy of the step ([`effect_policy`]) only lets a
//! crashed attempt — journaled, never answered — be made again when the instance resumes. A Task's side
//! effect carries an idempotency key of the state's visit, the same for every attempt
//! (`ports`' deduplication ids).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::definition::{Definition, Resource};
use super::run::{Effects, SUSPENDED, StateError, run, seeded_draw};
use crate::contract::{Act, Action, Decision, Next, RetryPolicy, StepError, Workflow};

/// How many effects one execution may journal: its record holds every answer (Step
/// Functions' own limit is 25 000 history events).
pub const MAX_EFFECTS: usize = 10_000;

/// An execution: the definition it runs, its input, and every effect's answer so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    pub definition: String,
    pub input: Value,
    /// Each effect's answer, by its key.
    #[serde(default)]
    pub done: BTreeMap<String, Done>,
    /// The states entered, in order, as of the last decision (the console's state path).
    #[serde(default)]
    pub path: Vec<String>,
    /// A Task whose call is a workflow of its own (`ecs:runTask.sync` runs `ecs_start`'s
    /// steps), while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<Child>,
}

/// A built-in workflow run as one Task: its state, and, once it failed, its compensation
/// left to run and the failure to report when that is done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Child {
    pub effect: String,
    pub state: Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undo: Vec<Action>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// An effect's answer as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Done {
    /// A Task's result.
    Ok(Value),
    /// A Task's error, as the States Language names it.
    Failed { error: String, cause: String },
    /// A wait that passed.
    Waited,
    /// How long a wait until a timestamp has left, read from the clock (milliseconds).
    Left(u64),
}

/// The steps of an execution: a Task's call (the workflow's handler, through the ports), a
/// sleep (the engine's), and a look at the clock before a wait until a timestamp.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Task {
        /// The key its answer is kept under (`Notify@2` for the second attempt).
        effect: String,
        /// The state's visit (`Notify`): the idempotency key's source, one for all attempts.
        visit: String,
        resource: String,
        payload: Value,
    },
    Wait {
        effect: String,
    },
    Clock {
        effect: String,
        until: String,
    },
    /// Tasks that may run at once (`Parallel` branches, `Map` items), called together.
    Batch { tasks: Vec<BatchTask> },
    /// A step of a Task's child workflow (its own step, as it decided it).
    Child {
        effect: String,
        action: Action,
    },
}

/// One Task of a [`Step::Batch`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchTask {
    pub effect: String,
    pub visit: String,
    pub resource: String,
    pub payload: Value,
}

/// What the replay found: the execution's end, or the effects that may be performed now.
enum Replayed {
    Finished(Result<Value, StateError>),
    Next(Vec<Pending>),
}

enum Pending {
    Task {
        effect: String,
        visit: String,
        resource: Resource,
        payload: Value,
    },
    Sleep {
        effect: String,
        duration: Duration,
    },
    Clock {
        effect: String,
        until: String,
    },
}

/// The engine's policy for a Task's or a clock reading's step: the handler fails for good at
/// once, so the attempts left are for a process that died during one (each such crash counts
/// an attempt that never answered); no deadline, as a resumed instance may come back late.
pub fn effect_policy() -> RetryPolicy {
    RetryPolicy { max_attempts: 5, deadline: None, ..RetryPolicy::default() }
}

/// The context object (`$$`) of an execution of `name` on `event`: the same at every replay.
pub fn context(name: &str, event: &Value) -> Value {
    let id = event.get("id").and_then(Value::as_str).unwrap_or_default();
    json!({
        "Execution": {"Id": id, "Input": event, "Name": id, "StartTime": event.get("time").cloned().unwrap_or(Value::Null)},
        "StateMachine": {"Id": name, "Name": name},
    })
}

/// The key of an effect's clock reading, beside the wait it measures.
fn clock_key(effect: &str) -> String {
    format!("{effect}:clock")
}

/// Effects answered from the journal; the first one without an answer is recorded as pending
/// and never completes, which stops the replay there.
struct Replay<'a> {
    done: &'a BTreeMap<String, Done>,
    seed: String,
    path: Vec<String>,
    pending: Vec<Pending>,
}

impl Replay<'_> {
    /// A wait without an answer: the replay stops here.
    fn stop<'f, T: Send + 'f>(&mut self, pending: Pending) -> BoxFuture<'f, T> {
        self.pending.push(pending);
        Box::pin(futures::future::pending())
    }
}

impl Effects for Replay<'_> {
    fn task<'a>(&'a mut self, key: &'a str, resource: Resource, payload: &'a Value, attempt: u32) -> BoxFuture<'a, Result<Value, StateError>> {
        let effect = if attempt == 1 { key.to_string() } else { format!("{key}@{attempt}") };
        match self.done.get(&effect) {
            Some(Done::Ok(v)) => Box::pin(futures::future::ready(Ok(v.clone()))),
            Some(Done::Failed { error, cause }) => Box::pin(futures::future::ready(Err(StateError::new(error.clone(), cause.clone())))),
            Some(other) => Box::pin(futures::future::ready(Err(StateError::new(
                "States.Runtime",
                format!("the journal's answer for {effect} is {other:?}, not a task's: the definition changed under a running execution"),
            )))),
            // A Task without an answer: noted, and the run goes on to the Parallel's other
            // branches or the Map's other items, which may have Tasks of their own to run now.
            None => {
                self.pending.push(Pending::Task { effect, visit: key.to_string(), resource, payload: payload.clone() });
                Box::pin(futures::future::ready(Err(StateError::new(SUSPENDED, key))))
            }
        }
    }

    fn wait<'a>(&'a mut self, key: &'a str, seconds: f64) -> BoxFuture<'a, ()> {
        if self.done.contains_key(key) || seconds <= 0.0 || !seconds.is_finite() {
            return Box::pin(futures::future::ready(()));
        }
        let duration = Duration::from_secs_f64(seconds.min(u32::MAX as f64));
        self.stop(Pending::Sleep { effect: key.to_string(), duration })
    }

    fn wait_until<'a>(&'a mut self, key: &'a str, timestamp: &'a str) -> BoxFuture<'a, ()> {
        if self.done.contains_key(key) {
            return Box::pin(futures::future::ready(()));
        }
        match self.done.get(&clock_key(key)) {
            Some(Done::Left(0)) => Box::pin(futures::future::ready(())),
            Some(Done::Left(ms)) => {
                let duration = Duration::from_millis(*ms);
                self.stop(Pending::Sleep { effect: key.to_string(), duration })
            }
            _ => self.stop(Pending::Clock { effect: key.to_string(), until: timestamp.to_string() }),
        }
    }

    fn entered(&mut self, path: &str, _input: &Value) -> Result<(), StateError> {
        self.path.push(path.to_string());
        if self.path.len() > super::run::MAX_TRANSITIONS {
            return Err(StateError::new(
                "States.Runtime",
                format!("more than {} state transitions: a loop that never ends?", super::run::MAX_TRANSITIONS),
            ));
        }
        Ok(())
    }

    fn draw(&mut self, key: &str, n: u32) -> u64 {
        seeded_draw(&self.seed, key, n)
    }
}

/// Runs the interpreter over the journaled answers until it ends or asks for an effect that
/// has none. Every answered effect resolves at once, so one poll goes as far as it can.
fn replay(definition: &Definition, execution: &Execution) -> (Replayed, Vec<String>) {
    let context = context(&execution.definition, &execution.input);
    let seed = format!("{}\n{}", execution.definition, context["Execution"]["Id"].as_str().unwrap_or_default());
    let mut effects = Replay { done: &execution.done, seed, path: Vec::new(), pending: Vec::new() };
    let outcome = {
        let future = run(definition, execution.input.clone(), &context, &mut effects);
        let mut future = std::pin::pin!(future);
        let waker = futures::task::noop_waker();
        match future.as_mut().poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(result) => Some(result),
            Poll::Pending => None,
        }
    };
    let replayed = match outcome {
        Some(Err(e)) if e.error == SUSPENDED && !effects.pending.is_empty() => Replayed::Next(effects.pending),
        Some(result) => Replayed::Finished(result),
        None if !effects.pending.is_empty() => Replayed::Next(effects.pending),
        None => Replayed::Finished(Err(StateError::new("States.Runtime", "the interpreter stopped without asking for an effect"))),
    };
    (replayed, effects.path)
}

/// The next decision for `execution` of `definition`; `ecs` runs `ecs:runTask.sync` Tasks.
pub fn decide(definition: &Definition, execution: &mut Execution, ecs: Option<&dyn Workflow>) -> Decision<Step> {
    loop {
        if execution.done.len() > MAX_EFFECTS {
            return Next::Fail(format!(
                "States.Runtime: the execution has journaled more than {MAX_EFFECTS} effects; split the work (a Map over fewer items per event)"
            ));
        }
        let (replayed, path) = replay(definition, execution);
        execution.path = path;
        let first = match replayed {
            Replayed::Finished(Ok(output)) => return Next::Complete(output),
            Replayed::Finished(Err(e)) => return Next::Fail(format!("{}: {}", e.error, e.cause)),
            Replayed::Next(pending) if batchable(&pending) => return Next::Run(batch(pending)),
            Replayed::Next(mut pending) => pending.remove(0),
        };
        return match first {
            Pending::Task { effect, resource: Resource::EcsRunTaskSync, payload, .. } => match start_child(execution, effect, &payload, ecs) {
                Some(decision) => decision,
                // Ended at once (refused, or done without a step): the replay goes on.
                None => continue,
            },
            Pending::Task { effect, visit, resource, payload } => {
                let step = Step::Task { effect: effect.clone(), visit, resource: resource.arn().to_string(), payload };
                Next::Run(Act::handler(effect, step).retry(effect_policy()))
            }
            Pending::Sleep { effect, duration } => Next::Run(Act::sleep(effect.clone(), Step::Wait { effect }, duration, None)),
            Pending::Clock { effect, until } => {
                Next::Run(Act::handler(clock_key(&effect), Step::Clock { effect, until }).retry(effect_policy()))
            }
        };
    }
}

/// Starts an `ecs:runTask.sync` Task's child workflow: its first step, or `None` when the
/// Task's answer is already recorded (a refusal, or a child that ended without a step).
fn start_child(execution: &mut Execution, effect: String, payload: &Value, ecs: Option<&dyn Workflow>) -> Option<Decision<Step>> {
    let Some(ecs) = ecs else {
        execution.done.insert(effect, failed("Tugboat.Permanent", "this service runs no ecs:runTask.sync (no [services])"));
        return None;
    };
    match child_event(&effect, &execution.input, payload).and_then(|(event, params)| ecs.start(&event, &params)) {
        Err(reason) => {
            execution.done.insert(effect, failed("Tugboat.Permanent", reason));
            None
        }
        Ok(t) => {
            execution.child = Some(Child { effect, state: t.state, undo: Vec::new(), failure: None });
            child_next(execution, t.next, ecs)
        }
    }
}

/// Whether the effects found may be performed together: two or more Tasks the handler calls
/// (a child workflow or a wait runs alone, first).
fn batchable(pending: &[Pending]) -> bool {
    pending.len() > 1 && pending.iter().all(|p| matches!(p, Pending::Task { resource, .. } if *resource != Resource::EcsRunTaskSync))
}

/// One step calling every Task found (`Forward/0/ToMqtt+1`: the first and how many more).
fn batch(pending: Vec<Pending>) -> Act<Step> {
    let tasks: Vec<BatchTask> = pending
        .into_iter()
        .filter_map(|p| match p {
            Pending::Task { effect, visit, resource, payload } => Some(BatchTask { effect, visit, resource: resource.arn().to_string(), payload }),
            _ => None,
        })
        .collect();
    let name = format!("{}+{}", tasks[0].effect, tasks.len() - 1);
    Act::handler(name, Step::Batch { tasks }).retry(effect_policy())
}

fn failed(error: &str, cause: impl Into<String>) -> Done {
    Done::Failed { error: error.to_string(), cause: cause.into() }
}

/// The event and params an `ecs:runTask.sync` Task gives `ecs_start`: `Service` names a
/// `[services]` mapping; `Environment`, `Command`, `Revision`, `Tags` and `Count` are the
/// event's overrides (each refused unless the mapping allows it); `PollInterval`,
/// `RunningTimeout` and `HealthyTimeout` the route params.
fn child_event(effect: &str, input: &Value, payload: &Value) -> Result<(Value, Value), String> {
    let Value::Object(p) = payload else {
        return Err(format!("the Parameters of {} must be an object, got {payload}", Resource::EcsRunTaskSync.arn()));
    };
    let mut detail = serde_json::Map::new();
    let mut params = serde_json::Map::new();
    for (k, v) in p {
        let (to, name) = match k.as_str() {
            "Service" => (&mut detail, "service"),
            "Environment" => (&mut detail, "environment"),
            "Command" => (&mut detail, "command"),
            "Revision" => (&mut detail, "revision"),
            "Tags" => (&mut detail, "tags"),
            "Count" => (&mut detail, "count"),
            "PollInterval" => (&mut params, "poll_interval"),
            "RunningTimeout" => (&mut params, "running_timeout"),
            "HealthyTimeout" => (&mut params, "healthy_timeout"),
            other => return Err(format!("Parameters.{other} is not a parameter of {}", Resource::EcsRunTaskSync.arn())),
        };
        to.insert(name.to_string(), v.clone());
    }
    let id = format!("{}/{effect}", input.get("id").and_then(Value::as_str).unwrap_or_default());
    let event = json!({"id": id, "source": "tugboat.states", "detail-type": "Start ECS Task", "detail": detail});
    Ok((event, Value::Object(params)))
}

/// The child's decision as the execution's: its step wrapped, its end recorded (`None`: the
/// replay goes on), its failure first undone by its compensation.
fn child_next(execution: &mut Execution, next: Next, ecs: &dyn Workflow) -> Option<Decision<Step>> {
    let child = execution.child.as_mut()?;
    let effect = child.effect.clone();
    let wrap = |action: Action| {
        let act = Act { name: format!("{effect}/{}", action.name), step: Step::Child { effect: effect.clone(), action: action.clone() }, call: action.call.clone(), retry: action.retry.clone() };
        Some(Next::Run(act))
    };
    match next {
        Next::Run(action) | Next::Continue(action) => wrap(action),
        Next::Complete(output) => {
            execution.child = None;
            execution.done.insert(effect, Done::Ok(output));
            None
        }
        Next::Fail(reason) => {
            child.undo = ecs.compensation(&child.state);
            child.failure = Some(reason);
            child_undo(execution)
        }
    }
}

/// The child's next undo step, or, when none is left, its failure recorded.
fn child_undo(execution: &mut Execution) -> Option<Decision<Step>> {
    let child = execution.child.as_mut()?;
    let effect = child.effect.clone();
    if child.undo.is_empty() {
        let reason = child.failure.take().unwrap_or_default();
        execution.child = None;
        execution.done.insert(effect, failed("States.TaskFailed", reason));
        return None;
    }
    let action = child.undo[0].clone();
    let act = Act { name: format!("{effect}/undo/{}", action.name), step: Step::Child { effect, action: action.clone() }, call: action.call, retry: action.retry };
    Some(Next::Run(act))
}

/// What undoes a running child (an instance cancelled while its task starts).
pub fn compensation(execution: &Execution, ecs: Option<&dyn Workflow>) -> Vec<Act<Step>> {
    let (Some(child), Some(ecs)) = (&execution.child, ecs) else { return Vec::new() };
    if child.failure.is_some() {
        return Vec::new();
    }
    ecs.compensation(&child.state)
        .into_iter()
        .map(|action| Act {
            name: format!("{}/undo/{}", child.effect, action.name),
            step: Step::Child { effect: child.effect.clone(), action: action.clone() },
            call: action.call,
            retry: action.retry,
        })
        .collect()
}

/// After a child's step: its own decision, or its next undo.
pub fn advance_child(execution: &mut Execution, action: &Action, outcome: Result<Value, StepError>, ecs: &dyn Workflow) -> Option<Decision<Step>> {
    let child = execution.child.as_mut()?;
    if child.failure.is_some() {
        // An undo step ran (its failure does not stop the others; the reason says so).
        if let Err(e) = outcome
            && let Some(f) = child.failure.as_mut()
        {
            f.push_str(&format!("; undoing {} failed: {}", action.name, e.message));
        }
        if !child.undo.is_empty() {
            child.undo.remove(0);
        }
        return child_undo(execution);
    }
    let t = ecs.advance(std::mem::take(&mut child.state), action, outcome);
    child.state = t.state;
    child_next(execution, t.next, ecs)
}

/// Keeps `step`'s outcome among the execution's answers (a child's step is the child's: see
/// [`advance_child`]).
pub fn record(execution: &mut Execution, step: Step, outcome: Result<Value, StepError>) -> Result<(), String> {
    match step {
        Step::Task { effect, .. } => {
            let done = match outcome {
                Ok(v) => Done::Ok(v),
                Err(e) => {
                    let (error, cause) = split_error(&e.message);
                    Done::Failed { error, cause }
                }
            };
            execution.done.insert(effect, done);
        }
        Step::Wait { effect } => {
            outcome.map_err(|e| format!("the wait {effect} failed: {}", e.message))?;
            execution.done.insert(effect, Done::Waited);
        }
        Step::Clock { effect, .. } => {
            let v = outcome.map_err(|e| format!("the clock before {effect} failed: {}", e.message))?;
            let ms = v.get("left_ms").and_then(Value::as_u64).ok_or_else(|| format!("the clock before {effect} answered {v}"))?;
            execution.done.insert(clock_key(&effect), Done::Left(ms));
        }
        Step::Batch { tasks } => {
            // The handler answers one outcome per Task, in order; a failure of the step itself
            // (a crash it never recovered from) is every Task's.
            let outcomes: Vec<Value> = match &outcome {
                Ok(Value::Array(a)) if a.len() == tasks.len() => a.clone(),
                Ok(other) => return Err(format!("a batch of {} tasks answered {other}", tasks.len())),
                Err(e) => vec![json!({"error": e.message}); tasks.len()],
            };
            for (t, o) in tasks.into_iter().zip(outcomes) {
                let done = match (o.get("ok"), o.get("error").and_then(Value::as_str)) {
                    (Some(v), _) => Done::Ok(v.clone()),
                    (None, Some(message)) => {
                        let (error, cause) = split_error(message);
                        Done::Failed { error, cause }
                    }
                    _ => return Err(format!("{}: the batch's answer {o} is neither ok nor error", t.effect)),
                };
                execution.done.insert(t.effect, done);
            }
        }
        Step::Child { effect, .. } => return Err(format!("{effect}: a child's step recorded without its workflow")),
    }
    Ok(())
}

/// A task's failure as the handler reports it, `Error.Name: cause`, back to its parts; a
/// failure that names no error (the engine's own) is a `States.TaskFailed`.
pub fn split_error(message: &str) -> (String, String) {
    match message.split_once(": ") {
        Some((name, cause)) if is_error_name(name) => (name.to_string(), cause.to_string()),
        _ => ("States.TaskFailed".to_string(), message.to_string()),
    }
}

fn is_error_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 256 && name.contains('.') && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
}

/// A task's failure as the handler reports it to the engine: the name a `Retry` or `Catch`
/// matches, then the cause.
pub fn task_error(error: &str, cause: impl std::fmt::Display, retryable: bool) -> StepError {
    let message = format!("{error}: {cause}");
    if retryable { StepError::retryable(message) } else { StepError::permanent(message) }
}

/// The definitions an engine runs, by name.
pub type Definitions = Arc<BTreeMap<String, Arc<Definition>>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn definition(text: &str) -> Definition {
        Definition::from_json(text).unwrap()
    }

    fn start(def: &Definition, input: Value) -> (Execution, Decision<Step>) {
        let mut e = Execution { definition: "d".into(), input, done: BTreeMap::new(), path: Vec::new(), child: None };
        let next = decide(def, &mut e, None);
        (e, next)
    }

    fn act(next: Decision<Step>) -> Act<Step> {
        match next {
            Next::Run(a) => a,
            other => panic!("expected a step, got {other:?}"),
        }
    }

    const TWO_TASKS: &str = r#"{"StartAt": "Check", "States": {
        "Check": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericGreaterThan": 0, "Next": "Send"}], "Default": "Skip"},
        "Send": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage", "Parameters": {"QueueUrl": "q", "MessageBody.$": "$.n"},
                 "ResultPath": "$.sent", "Retry": [{"ErrorEquals": ["Tugboat.Retryable"], "IntervalSeconds": 2, "MaxAttempts": 2}], "Next": "Pause"},
        "Pause": {"Type": "Wait", "Seconds": 5, "Next": "Notify"},
        "Notify": {"Type": "Task", "Resource": "arn:aws:states:::sns:publish", "Parameters": {"TopicArn": "t", "Message.$": "$.sent.MessageId"}, "End": true},
        "Skip": {"Type": "Succeed"}}}"#;

    #[test]
    fn each_effect_is_a_step_and_the_rest_is_recomputed() {
        let def = definition(TWO_TASKS);
        let (mut e, next) = start(&def, json!({"n": 3}));
        let a = act(next);
        assert_eq!(a.name, "Send");
        assert_eq!(a.retry, effect_policy());
        assert_eq!(a.step, Step::Task { effect: "Send".into(), visit: "Send".into(), resource: "arn:aws:states:::sqs:sendMessage".into(), payload: json!({"QueueUrl": "q", "MessageBody": 3}) });
        assert_eq!(e.path, ["Check", "Send"]);

        record(&mut e, a.step, Ok(json!({"MessageId": "m1"}))).unwrap();
        let a = act(decide(&def, &mut e, None));
        assert_eq!(a.name, "Pause");
        assert!(matches!(a.call, crate::contract::Call::Sleep { duration, .. } if duration == Duration::from_secs(5)));

        record(&mut e, a.step, Ok(json!({"woken": false}))).unwrap();
        let a = act(decide(&def, &mut e, None));
        assert_eq!(a.name, "Notify");
        assert!(matches!(&a.step, Step::Task { payload, .. } if *payload == json!({"TopicArn": "t", "Message": "m1"})));

        record(&mut e, a.step, Ok(json!({"MessageId": "n1"}))).unwrap();
        assert_eq!(decide(&def, &mut e, None), Next::Complete(json!({"MessageId": "n1"})));
        assert_eq!(e.path, ["Check", "Send", "Pause", "Notify"]);
    }

    #[test]
    fn a_replay_never_asks_again_for_an_answered_effect() {
        // What a process that crashed after journaling Send's answer finds: the next step is
        // the wait, whatever the number of replays.
        let def = definition(TWO_TASKS);
        let (mut e, next) = start(&def, json!({"n": 1}));
        record(&mut e, act(next).step, Ok(json!({"MessageId": "m"}))).unwrap();
        let first = decide(&def, &mut e, None);
        for _ in 0..3 {
            let mut again = e.clone();
            assert_eq!(decide(&def, &mut again, None), first);
        }
    }

    #[test]
    fn the_definitions_retry_is_journaled_sleeps_and_new_attempts() {
        let def = definition(TWO_TASKS);
        let (mut e, next) = start(&def, json!({"n": 1}));
        let a = act(next);
        record(&mut e, a.step, Err(task_error("Tugboat.Retryable", "Throttling: slow down", true))).unwrap();
        assert_eq!(e.done["Send"], Done::Failed { error: "Tugboat.Retryable".into(), cause: "Throttling: slow down".into() });
        let a = act(decide(&def, &mut e, None));
        assert_eq!(a.name, "Send@retry1");
        assert!(matches!(a.call, crate::contract::Call::Sleep { duration, .. } if duration == Duration::from_secs(2)));
        record(&mut e, a.step, Ok(json!({"woken": false}))).unwrap();
        let a = act(decide(&def, &mut e, None));
        assert_eq!(a.name, "Send@2");
        assert!(matches!(&a.step, Step::Task { visit, .. } if visit == "Send"), "the second attempt keeps the visit's idempotency key");
        record(&mut e, a.step, Err(task_error("Tugboat.Permanent", "AccessDenied", false))).unwrap();
        // Not a retrier's error: the execution fails with it.
        assert_eq!(decide(&def, &mut e, None), Next::Fail("Tugboat.Permanent: AccessDenied".into()));
    }

    #[test]
    fn a_default_choice_ends_without_a_step() {
        let def = definition(TWO_TASKS);
        let (e, next) = start(&def, json!({"n": 0}));
        assert_eq!(next, Next::Complete(json!({"n": 0})));
        assert_eq!(e.path, ["Check", "Skip"]);
    }

    #[test]
    fn a_wait_until_reads_the_clock_once_then_sleeps_what_is_left() {
        let def = definition(r#"{"StartAt": "W", "States": {"W": {"Type": "Wait", "TimestampPath": "$.at", "End": true}}}"#);
        let (mut e, next) = start(&def, json!({"at": "2030-01-01T00:00:00Z"}));
        let a = act(next);
        assert_eq!(a.name, "W:clock");
        assert_eq!(a.step, Step::Clock { effect: "W".into(), until: "2030-01-01T00:00:00Z".into() });
        record(&mut e, a.step, Ok(json!({"left_ms": 1500}))).unwrap();
        let a = act(decide(&def, &mut e, None));
        assert_eq!(a.name, "W");
        assert!(matches!(a.call, crate::contract::Call::Sleep { duration, .. } if duration == Duration::from_millis(1500)));
        record(&mut e, a.step, Ok(json!({"woken": false}))).unwrap();
        assert_eq!(decide(&def, &mut e, None), Next::Complete(json!({"at": "2030-01-01T00:00:00Z"})));

        // A timestamp already past: no sleep.
        let (mut e, next) = start(&def, json!({"at": "2020-01-01T00:00:00Z"}));
        record(&mut e, act(next).step, Ok(json!({"left_ms": 0}))).unwrap();
        assert!(matches!(decide(&def, &mut e, None), Next::Complete(_)));
    }

    fn sqs(body: &str) -> Value {
        json!({"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage", "Parameters": {"QueueUrl": "q", "MessageBody.$": body}, "End": true})
    }

    #[test]
    fn parallel_branches_call_their_tasks_together_in_one_step() {
        let def = Definition::parse(&json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
            {"StartAt": "A", "States": {"A": sqs("$.a")}},
            {"StartAt": "B", "States": {"B": sqs("$.b")}}]}}}))
        .unwrap();
        let (mut e, next) = start(&def, json!({"a": "1", "b": "2"}));
        let a = act(next);
        assert_eq!(a.name, "P/0/A+1");
        let Step::Batch { tasks } = &a.step else { panic!("{:?}", a.step) };
        let effects: Vec<&str> = tasks.iter().map(|t| t.effect.as_str()).collect();
        assert_eq!(effects, ["P/0/A", "P/1/B"]);
        // One answers, the other fails: the Parallel fails with the branch's error.
        record(&mut e, a.step.clone(), Ok(json!([{"ok": {"MessageId": "m1"}}, {"ok": {"MessageId": "m2"}}]))).unwrap();
        assert_eq!(decide(&def, &mut e, None), Next::Complete(json!([{"MessageId": "m1"}, {"MessageId": "m2"}])));
        let (mut e, _) = start(&def, json!({"a": "1", "b": "2"}));
        record(&mut e, a.step, Ok(json!([{"ok": {}}, {"error": "Tugboat.Permanent: AccessDenied"}]))).unwrap();
        assert_eq!(decide(&def, &mut e, None), Next::Fail("Tugboat.Permanent: AccessDenied".into()));
    }

    #[test]
    fn a_map_runs_at_most_max_concurrency_items_at_once() {
        let def = Definition::parse(&json!({"StartAt": "M", "States": {"M": {"Type": "Map", "MaxConcurrency": 2, "End": true,
            "ItemProcessor": {"StartAt": "S", "States": {"S": sqs("$")}}}}}))
        .unwrap();
        let (mut e, next) = start(&def, json!(["x", "y", "z"]));
        let a = act(next);
        let Step::Batch { tasks } = &a.step else { panic!("{:?}", a.step) };
        assert_eq!(tasks.len(), 2, "MaxConcurrency 2");
        record(&mut e, a.step.clone(), Ok(json!([{"ok": 1}, {"ok": 2}]))).unwrap();
        // The third item alone: one Task, a plain step.
        let a = act(decide(&def, &mut e, None));
        assert_eq!(a.name, "M[2]/S");
        record(&mut e, a.step, Ok(json!(3))).unwrap();
        assert_eq!(decide(&def, &mut e, None), Next::Complete(json!([1, 2, 3])));
        // Without a limit, all three at once.
        let def = Definition::parse(&json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true,
            "ItemProcessor": {"StartAt": "S", "States": {"S": sqs("$")}}}}}))
        .unwrap();
        let (_, next) = start(&def, json!(["x", "y", "z"]));
        assert!(matches!(&act(next).step, Step::Batch { tasks } if tasks.len() == 3));
    }

    #[test]
    fn a_suspended_effect_is_never_caught_or_retried() {
        // A Catch of States.ALL and a Retry of States.ALL around a Task without an answer: the
        // replay still asks for the Task, it does not take the catcher's path.
        let def = Definition::parse(&json!({"StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage", "Parameters": {"QueueUrl": "q", "MessageBody": "b"},
                  "Retry": [{"ErrorEquals": ["States.ALL"]}], "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "C"}], "End": true},
            "C": {"Type": "Succeed"}}}))
        .unwrap();
        let (e, next) = start(&def, json!({}));
        assert_eq!(act(next).name, "T");
        assert_eq!(e.path, ["T"]);
    }

    #[test]
    fn a_loop_without_effects_is_stopped_not_spun_forever() {
        let def = definition(r#"{"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "Next": "A"}}}"#);
        let (_, next) = start(&def, json!({}));
        match next {
            Next::Fail(reason) => assert!(reason.starts_with("States.Runtime: more than"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_task_failure_keeps_its_name_and_cause() {
        assert_eq!(split_error("States.Http.StatusCode.503: busy: try later"), ("States.Http.StatusCode.503".into(), "busy: try later".into()));
        assert_eq!(split_error("engine: cancelled"), ("States.TaskFailed".into(), "engine: cancelled".into()));
        assert_eq!(split_error("no separator"), ("States.TaskFailed".into(), "no separator".into()));
        assert_eq!(split_error("with space.x: y"), ("States.TaskFailed".into(), "with space.x: y".into()));
    }

    #[test]
    fn a_journaled_answer_of_another_kind_fails_the_execution_with_the_reason() {
        let def = definition(TWO_TASKS);
        let (mut e, _) = start(&def, json!({"n": 1}));
        e.done.insert("Send".into(), Done::Waited);
        match decide(&def, &mut e, None) {
            Next::Fail(reason) => assert!(reason.contains("definition changed"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
}
