//! `states`: workflows users write themselves, in the Amazon States Language (the JSONPath
//! mode of Step Functions' definitions), checked whole when they load and run over effects
//! that a caller provides.
//!
//! What a definition may use ([`definition`]): `Task`, `Pass`, `Wait` (`Seconds`,
//! `SecondsPath`, `Timestamp`, `TimestampPath`), `Choice` (every comparison, `And`, `Or`, `Not`
//! — [`choice`]), `Parallel`, `Map` (inline, `ItemsPath`, `ItemSelector`, `MaxConcurrency`),
//! `Succeed`, `Fail`; `InputPath`, `Parameters`, `ResultSelector`, `ResultPath`, `OutputPath`
//! with JSONPath ([`path`]) and the intrinsic functions ([`intrinsic`]); `Retry` (every field,
//! `JitterStrategy` included) and `Catch` with the `States.*` error names. Task resources: ECS
//! `runTask.sync`, SNS `publish`, SQS `sendMessage`, DynamoDB `putItem`/`getItem`/`updateItem`,
//! HTTP `invoke`, and `tugboat:mqtt:publish`. Anything else — a field tugboat does not run, a
//! resource it does not know, JSONata — is refused when the definition loads, naming its JSON
//! pointer: a definition never silently means less than it says.
//!
//! [`run`] is the interpreter: deterministic over its [`run::Effects`]. A route runs a
//! definition durably ([`flow`]): each effect is a journaled step — a Task's call through the
//! ports ([`tasks`]), a Wait's or a retrier's sleep — and each decision a replay over the
//! journaled answers, so that a crash resumes at the first effect without one. Definitions are
//! named in `[workflows.NAME]` ([`config`]) and routes start them with
//! `workflow = "states"`, `params = { definition = "NAME" }`. `tugboat states validate FILE`
//! checks a definition; `tugboat states run FILE --input EVENT --dry-run` runs it with fake
//! effects ([`tool`]).
//!
//! Not read: JSONata. `Parallel` branches and `Map` items run at once: the replay goes on past
//! a Task without an answer (`run::SUSPENDED`) and every Task it finds is called in one step.

pub mod choice;
pub mod config;
pub mod definition;
pub mod flow;
pub mod intrinsic;
pub mod path;
pub mod payload;
pub mod run;
pub mod tasks;
pub mod tool;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::{Registration, Setup};
use crate::contract::{Decision, Flow, Next, StepContext, StepError, Typed, run_key};
use crate::ports::clock::Clock;
use definition::{Definition, Resource};
use flow::{Definitions, Execution, Step};

pub const KIND: &str = "states";

pub fn registration() -> Registration {
    Registration::new(KIND, Some(config::SECTION), |setup| {
        Box::pin(async move { Ok(Arc::new(Typed(States::build(setup).await?)) as Arc<dyn crate::contract::Workflow>) })
    })
    .with_params_check(config::check_params)
    .with_command("states", "Workflows in the Amazon States Language: check a definition, and run one with fake effects.")
    .with_tool(tool::TOOL)
    .with_tool_under_workflows()
}

/// The configured definitions, run durably through the ports.
pub struct States {
    definitions: Definitions,
    /// `ecs_start`, for `ecs:runTask.sync` Tasks (when a definition has one).
    ecs: Option<Arc<dyn crate::contract::Workflow>>,
    reach: tasks::Reach,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for States {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("States")
            .field("definitions", &self.definitions.keys().collect::<Vec<_>>())
            .field("ecs", &self.ecs.is_some())
            .field("reach", &self.reach)
            .finish_non_exhaustive()
    }
}

impl States {
    /// One Task's call, under its visit's idempotency key. The definition's Retry decides what
    /// is tried again, not the engine: every failure is final to it (its name says whether it
    /// is worth a retry).
    async fn call_task(&self, ctx: StepContext<'_>, visit: &str, resource: &str, payload: &Value) -> Result<Value, StepError> {
        let resource = Resource::from_arn(resource)
            .ok_or_else(|| StepError::permanent(format!("Tugboat.Permanent: {resource} is not a resource of this build")))?;
        let key = run_key(ctx.workflow_id, ctx.generation, ctx.continued, visit);
        self.reach.call(resource, payload, &key).await.map_err(|e| StepError { retryable: false, retry_after: None, ..e })
    }

    /// Reads and checks every `[workflows.NAME]` definition, and opens the destinations.
    pub async fn build(setup: Setup<'_>) -> Result<States, String> {
        let sources = config::from_sections(&setup.config.sections)?;
        let brokers = super::mqtt_publish::config::from_sections(&setup.config.sections)?;
        let settings = super::http_deliver::config::from_sections(&setup.config.sections)?;
        let mut definitions = BTreeMap::new();
        for (name, source) in sources {
            let at = format!("{}.{name}", config::NAME);
            let definition = match source {
                config::Source::Inline(d) => d,
                config::Source::File(path) => {
                    let file = config::resolve(setup.config.source.as_deref(), &path);
                    let bytes = setup.ports.files.read(&file).map_err(|e| format!("{at}.definition: {}: {e}", file.display()))?;
                    let text = String::from_utf8(bytes).map_err(|_| format!("{at}.definition: {}: not UTF-8 text", file.display()))?;
                    Definition::from_file_text(&file, &text).map_err(|e| format!("{at}.definition: {}: {e}", file.display()))?
                }
            };
            runnable(&definition, &brokers, &settings).map_err(|e| format!("{at}: {e}"))?;
            definitions.insert(name, Arc::new(definition));
        }
        let mut destinations = BTreeMap::new();
        for (name, s) in &settings {
            destinations.insert(name.clone(), setup.ports.http.destination(name, s)?);
        }
        let uses_ecs = definitions.values().any(|d| uses(d, Resource::EcsRunTaskSync));
        let ecs = if uses_ecs {
            let parts = super::ecs_start::config::EcsParts::build(setup).await?;
            Some(Arc::new(Typed(super::ecs_start::EcsStart(parts))) as Arc<dyn crate::contract::Workflow>)
        } else {
            None
        };
        let p = setup.ports;
        Ok(States {
            definitions: Arc::new(definitions),
            ecs,
            reach: tasks::Reach::new(p.notifier.clone(), p.items.clone(), p.queues.clone(), p.mqtt.clone(), brokers, destinations),
            clock: p.clock.clone(),
        })
    }

    fn definition(&self, name: &str) -> Option<&Arc<Definition>> {
        self.definitions.get(name)
    }
}

/// Whether `definition` has a Task calling `resource`.
fn uses(definition: &Definition, resource: Resource) -> bool {
    let mut found = false;
    definition.walk("", &mut |_, _, state| {
        found |= matches!(&state.kind, definition::Kind::Task { resource: r, .. } if *r == resource);
    });
    found
}

/// Whether the service can run `definition`: a broker or destination written in a Task's
/// `Parameters` is configured (the field names were checked with the definition). An error names the state's JSON pointer.
pub fn runnable(
    definition: &Definition,
    brokers: &BTreeMap<String, crate::ports::BrokerSettings>,
    destinations: &BTreeMap<String, crate::ports::DestinationSettings>,
) -> Result<(), String> {
    let mut error = None;
    definition.walk("", &mut |at, _, state| {
        if error.is_some() {
            return;
        }
        if let definition::Kind::Task { parameters, .. } = &state.kind {
            error = check_task(parameters.as_ref(), brokers, destinations).err().map(|e| format!("{at}: {e}"));
        }
    });
    error.map_or(Ok(()), Err)
}

fn check_task(
    parameters: Option<&payload::Template>,
    brokers: &BTreeMap<String, crate::ports::BrokerSettings>,
    destinations: &BTreeMap<String, crate::ports::DestinationSettings>,
) -> Result<(), String> {
    // Without Parameters the payload is the state's input, checked when it runs; the field
    // names were checked with the definition.
    let Some(payload::Template::Object(fields)) = parameters else { return Ok(()) };
    let literal = |field: &str| {
        fields.iter().find_map(|(n, f)| match f {
            payload::Field::Template(payload::Template::Literal(Value::String(s))) if n == field => Some(s.as_str()),
            _ => None,
        })
    };
    if let Some(b) = literal("Broker")
        && !brokers.contains_key(b)
    {
        return Err(format!("Parameters/Broker: {b:?} is not a [brokers] name of this configuration"));
    }
    if let Some(d) = literal("Destination")
        && !destinations.contains_key(d)
    {
        return Err(format!("Parameters/Destination: {d:?} is not a [destinations] name of this configuration"));
    }
    if let Some(t) = literal("Topic") {
        tasks::check_topic(t).map_err(|e| format!("Parameters/Topic: {e}"))?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl Flow for States {
    const KIND: &'static str = KIND;
    type State = Execution;
    type Step = Step;

    fn start(&self, event: &Value, params: &Value) -> Result<(Execution, Decision<Step>), String> {
        let p: config::Params = crate::contract::decode(params, "params")?;
        let definition = self.definition(&p.definition).ok_or_else(|| format!("definition {:?} is not configured", p.definition))?;
        let mut execution = Execution { definition: p.definition.clone(), input: event.clone(), done: BTreeMap::new(), path: Vec::new(), child: None };
        let next = flow::decide(definition, &mut execution, self.ecs.as_deref());
        Ok((execution, next))
    }

    fn advance(&self, execution: &mut Execution, step: Step, outcome: Result<Value, StepError>) -> Decision<Step> {
        let Some(definition) = self.definition(&execution.definition) else {
            return Next::Fail(format!("definition {:?} is no longer configured", execution.definition));
        };
        if let Step::Child { action, .. } = &step {
            let Some(ecs) = self.ecs.as_deref() else {
                return Next::Fail(format!("{}: no ECS workflow runs the child's step", action.name));
            };
            if let Some(decision) = flow::advance_child(execution, action, outcome, ecs) {
                return decision;
            }
        } else if let Err(e) = flow::record(execution, step, outcome) {
            return Next::Fail(e);
        }
        flow::decide(definition, execution, self.ecs.as_deref())
    }

    fn compensation(&self, execution: &Execution) -> Vec<crate::contract::Act<Step>> {
        flow::compensation(execution, self.ecs.as_deref())
    }

    async fn perform(&self, ctx: StepContext<'_>, step: &Step) -> Result<Value, StepError> {
        match step {
            Step::Task { visit, resource, payload, .. } => self.call_task(ctx, visit, resource, payload).await,
            Step::Clock { until, .. } => {
                let at = choice::timestamp(until).ok_or_else(|| StepError::permanent(format!("States.Runtime: {until:?} is not an RFC 3339 timestamp")))?;
                let target_ms = (at.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
                Ok(json!({"left_ms": target_ms.saturating_sub(self.clock.now_ms())}))
            }
            Step::Batch { tasks } => {
                // Called together; each outcome is the Task's, a failure named for its Retry.
                let calls = tasks.iter().map(|t| self.call_task(ctx, &t.visit, &t.resource, &t.payload));
                let outcomes = futures::future::join_all(calls).await;
                Ok(Value::Array(
                    outcomes
                        .into_iter()
                        .map(|o| match o {
                            Ok(v) => json!({"ok": v}),
                            Err(e) => json!({"error": e.message}),
                        })
                        .collect(),
                ))
            }
            Step::Child { action, .. } => {
                let Some(ecs) = &self.ecs else {
                    return Err(StepError::permanent(format!("{}: no ECS workflow runs it", ctx.step)));
                };
                ecs.perform(ctx, &action.step).await
            }
            Step::Wait { effect } => Err(StepError::permanent(format!("the engine sleeps {effect}; the handler has nothing to do"))),
        }
    }
}
