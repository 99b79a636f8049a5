//! `spot_drain` (seed plan 3, service side): a deadline-aware, coordinated drain before spot
//! capacity goes away. Triggers and how each is read: [`notice`].
//!
//! Steps, each given the time left before the deadline (the notice's end, or the event's time
//! plus `[spot].window`, less `[spot].margin`); a step that cannot start in time is recorded
//! as skipped, and a step that fails is recorded as failed and the drain goes on — a drain
//! that stops at its first error helps nobody two minutes before a termination:
//! 1. `drain` (mode `drain`, EC2 notices): the instance's ECS container instances in the
//!    configured clusters are set DRAINING (ECS reschedules their tasks), then the IPs of the
//!    awsvpc tasks on them are read for the next step.
//! 2. `deregister`: those IPs and the instance id leave the configured target groups (for a
//!    Fargate Spot task: the task's IP, at once).
//! 3. `handlers#P`: the `[[spot.handlers]]` of priority P (HTTP destinations, MQTT brokers,
//!    SNS topics, SQS queues), together, each bounded by its own
//!    timeout and by the deadline, retried within them; one per priority, lowest first.
//! 4. `wait-drained` (when `drain` set container instances DRAINING and `[spot].drain_wait`):
//!    ECS is asked every `[spot].drain_poll` how many tasks are still running or pending on
//!    them, until none are or the deadline comes (then it fails saying how many were left:
//!    standalone `RunTask` tasks are not moved by a drain). After the handlers, so that the wait
//!    delays nobody's notice; before `complete-lifecycle`, so that the instance goes only once its
//!    tasks have.
//! 5. `complete-lifecycle` (Auto Scaling terminate lifecycle actions): `CompleteLifecycleAction`
//!    with CONTINUE once the drain and the handlers are done, so the instance goes without
//!    waiting out the hook; a `heartbeat` (`RecordLifecycleActionHeartbeat`) before the drain
//!    extends the hook while the work runs. Completion is not skipped past the deadline: the
//!    hook waits for it either way.
//! 6. `report`: the outcome of every step and handler and the time left, on the success topic
//!    (attributes `type` = `spot-drain`, `instance`).
//!
//! One notice is one instance (`spot_drain:<instance>:<kind>:<minute>`, `:notify` added for a
//! notify-mode route), whichever source sent it
//! ([`Flow::identity`]). Route params: `mode = "drain"` (default) or `"notify"` (handlers and
//! report only: for rebalance recommendations, say).

pub mod config;
mod handlers;
pub mod history;
pub mod notice;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Registration;
use crate::contract::{
    Act, Decision, Flow, Next, RetryPolicy, StepContext, StepError, Topic, Typed, decode, output,
    params_or_empty, to_output,
};
use crate::ports::clock::Clock;
use crate::ports::lifecycle::{Lifecycle, LifecycleAction};
use crate::ports::{BrokerSettings, DestinationSettings, Ecs, TargetGroups};
use config::SpotSettings;
use handlers::Handlers;
use notice::Notice;

pub const KIND: &str = "spot_drain";

pub fn registration() -> Registration {
    Registration::new(KIND, Some(config::SECTION), |setup| {
        Box::pin(async move {
            let settings = match setup.config.sections.get(config::NAME) {
                Some(v) => config::parse(v).map_err(|b| b.to_string())?,
                None => config::parse(&toml::Value::Table(Default::default()))
                    .map_err(|b| b.to_string())?,
            };
            let destinations = setup
                .config
                .section::<BTreeMap<String, DestinationSettings>>("destinations")
                .map_err(|b| b.to_string())?;
            let brokers = setup
                .config
                .section::<BTreeMap<String, BrokerSettings>>("brokers")
                .map_err(|b| b.to_string())?;
            let handlers =
                Handlers::build(&settings.handlers, &destinations, &brokers, setup.ports).await?;
            Ok(Arc::new(Typed(SpotDrain {
                settings,
                handlers,
                ecs: setup.ports.ecs.clone(),
                targets: setup.ports.targets.clone(),
                clock: setup.ports.clock.clone(),
                lifecycle: setup.ports.lifecycle.clone(),
            })) as Arc<dyn crate::contract::Workflow>)
        })
    })
    .with_params_check(|params, _sections| Mode::parse(params).map(|_| ()))
    .with_command(
        "spot",
        "Spot interruptions the service has handled (`spot_drain`).",
    )
    .with_page(crate::workflows::surface::page::<history::InterruptionsPage>())
}

/// The workflow: its settings and the ports its steps call.
#[derive(Debug)]
pub struct SpotDrain {
    pub settings: SpotSettings,
    handlers: Handlers,
    ecs: Arc<dyn Ecs>,
    targets: Arc<dyn TargetGroups>,
    clock: Arc<dyn Clock>,
    lifecycle: Arc<dyn Lifecycle>,
}

/// What a route asks of a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Drain,
    Notify,
}

/// A route's params.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "an object")]
struct Params {
    mode: Mode,
}

impl Mode {
    fn parse(params: &Value) -> Result<Mode, String> {
        super::params::only_known(params, KIND, &["mode"])?;
        let Params { mode } = decode(params_or_empty(params), "params")?;
        Ok(mode)
    }
}

/// How a step or handler ended: `ok`, `failed` or `skipped` in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Failed,
    /// Not run: the deadline left no room, or there was nothing to do.
    Skipped,
}

/// How one step or handler went, for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub name: String,
    pub outcome: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub detail: Value,
    /// Time left before the deadline when it ended (negative: past it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_ms: Option<i64>,
}

/// The workflow's output: the notice's identity and what each step came to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub identity: String,
    pub steps: Vec<Outcome>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub notice: Notice,
    pub mode: Mode,
    /// The deadline, ms since the epoch (the margin already taken off).
    pub deadline_ms: u64,
    /// Targets the `deregister` step removes: task IPs and instance ids.
    pub targets: Vec<String>,
    /// Handler priorities still to run, lowest first.
    pub priorities: Vec<u32>,
    pub outcomes: Vec<Outcome>,
    /// The event, for the handlers' templates.
    pub event: Value,
    /// The container instances `drain` set DRAINING, which `wait-drained` watches. (Absent
    /// from records journaled before it existed: nothing to wait for.)
    #[serde(default)]
    pub drained: Vec<Drained>,
}

/// A container instance set DRAINING.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drained {
    pub cluster: String,
    pub container_instance: String,
}

/// The drain step's result. (A skipped step's result reads as nothing drained.)
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DrainResult {
    pub drained: Vec<DrainedInstance>,
    /// The private IPs of the tasks on the drained instances, for the deregister step.
    pub task_ips: Vec<String>,
    pub left_ms: i64,
}

/// A container instance the drain step set DRAINING, and what it was before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrainedInstance {
    pub cluster: String,
    pub container_instance: String,
    pub instance: String,
    pub was: String,
}

/// The wait-drained step's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitResult {
    pub tasks_left: u32,
    pub polls: u32,
    pub left_ms: i64,
}

/// The deregister step's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeregisterResult {
    pub deregistered: Vec<Removed>,
    pub left_ms: i64,
}

/// A target the deregister step took out of a target group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Removed {
    pub target_group: String,
    pub id: String,
    pub port: u16,
}

/// A step that did not start because the deadline had passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub skipped: String,
    pub left_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    Heartbeat {
        action: LifecycleAction,
    },
    Drain {
        instances: Vec<String>,
        deadline_ms: u64,
    },
    Deregister {
        targets: Vec<String>,
        deadline_ms: u64,
    },
    Handlers {
        priority: u32,
        deadline_ms: u64,
        notice: Box<Notice>,
        event: Value,
    },
    /// Result: `{"tasks_left": 0, "polls": n, "left_ms": …}`; an error naming the tasks left
    /// when the deadline came first.
    WaitDrained {
        drained: Vec<Drained>,
        deadline_ms: u64,
    },
    CompleteLifecycle {
        action: LifecycleAction,
        deadline_ms: u64,
    },
    /// Engine publishes.
    Report,
}

/// Steps that call AWS retry quickly and not for long: the deadline is minutes away.
fn quick_retry(window: Duration) -> RetryPolicy {
    RetryPolicy {
        initial_interval: Duration::from_millis(200),
        coefficient: 2.0,
        max_interval: Duration::from_secs(2),
        max_attempts: 6,
        deadline: Some(window),
    }
}

impl SpotDrain {
    /// The step after the current one, from what the state says is left to do.
    fn next(&self, s: &State) -> Decision<Step> {
        let done = |name: &str| s.outcomes.iter().any(|o| o.name == name);
        let retry = quick_retry(self.settings.window);
        if let Some(action) = &s.notice.lifecycle
            && !done("heartbeat")
        {
            return Next::Run(
                Act::handler(
                    "heartbeat",
                    Step::Heartbeat {
                        action: action.clone(),
                    },
                )
                .retry(retry),
            );
        }
        if s.mode == Mode::Drain && !s.notice.instances.is_empty() && !done("drain") {
            return Next::Run(
                Act::handler(
                    "drain",
                    Step::Drain {
                        instances: s.notice.instances.clone(),
                        deadline_ms: s.deadline_ms,
                    },
                )
                .retry(retry),
            );
        }
        if s.mode == Mode::Drain && !done("deregister") {
            return Next::Run(
                Act::handler(
                    "deregister",
                    Step::Deregister {
                        targets: s.targets.clone(),
                        deadline_ms: s.deadline_ms,
                    },
                )
                .retry(retry),
            );
        }
        if let Some(&priority) = s.priorities.first() {
            return Next::Run(
                Act::handler(
                    format!("handlers#{priority}"),
                    Step::Handlers {
                        priority,
                        deadline_ms: s.deadline_ms,
                        notice: Box::new(s.notice.clone()),
                        event: s.event.clone(),
                    },
                )
                .retry(RetryPolicy::never()),
            );
        }
        if s.mode == Mode::Drain
            && self.settings.drain_wait
            && !s.drained.is_empty()
            && !done("wait-drained")
        {
            return Next::Run(
                Act::handler(
                    "wait-drained",
                    Step::WaitDrained {
                        drained: s.drained.clone(),
                        deadline_ms: s.deadline_ms,
                    },
                )
                .retry(retry),
            );
        }
        if let Some(action) = &s.notice.lifecycle
            && !done("complete-lifecycle")
        {
            return Next::Run(
                Act::handler(
                    "complete-lifecycle",
                    Step::CompleteLifecycle {
                        action: action.clone(),
                        deadline_ms: s.deadline_ms,
                    },
                )
                .retry(retry),
            );
        }
        if !done("report") {
            let instance = s
                .notice
                .instances
                .first()
                .cloned()
                .or_else(|| s.notice.task.as_ref().map(|t| t.arn.clone()))
                .unwrap_or_default();
            let message = json!({
                "type": "spot-drain",
                "identity": s.notice.identity(),
                "kind": s.notice.kind.as_str(),
                "source": s.notice.source,
                "instances": s.notice.instances,
                "task": s.notice.task,
                "mode": s.mode,
                "deadline": notice::rfc3339(s.deadline_ms),
                "lifecycle_action": s.notice.lifecycle,
                "steps": s.outcomes,
                "left_ms": s.outcomes.last().and_then(|o| o.left_ms),
            });
            let subject = format!("tugboat: {} {instance}", s.notice.kind.as_str());
            return Next::Run(
                Act::publish("report", Step::Report, Topic::Success, subject, message)
                    .with_attributes([("type", "spot-drain"), ("instance", instance.as_str())]),
            );
        }
        Next::done(&Output {
            identity: s.notice.identity(),
            steps: s.outcomes.clone(),
        })
    }
}

#[async_trait]
impl Flow for SpotDrain {
    const KIND: &'static str = KIND;
    type State = State;
    type Step = Step;

    /// The notice's identity (instance, kind, minute); a `notify`-mode route's run is another
    /// instance than a draining one's, so that a notify-only run can never stand in for the
    /// drain of the same notice.
    fn identity(&self, event: &Value, params: &Value) -> Option<String> {
        let identity = Notice::read(event).ok()?.identity();
        match Mode::parse(params) {
            Ok(Mode::Notify) => Some(format!("{identity}:notify")),
            _ => Some(identity),
        }
    }

    fn start(&self, event: &Value, params: &Value) -> Result<(State, Decision<Step>), String> {
        let mode = Mode::parse(params)?;
        let notice = Notice::read(event)?;
        let margin = self.settings.margin.as_millis() as u64;
        let ends = notice
            .ends_ms
            .unwrap_or(notice.noticed_ms + self.settings.window.as_millis() as u64);
        let mut targets: Vec<String> = notice.instances.clone();
        if let Some(ip) = notice.task.as_ref().and_then(|t| t.ip.clone()) {
            targets.push(ip);
        }
        let mut priorities: Vec<u32> = self.settings.handlers.iter().map(|h| h.priority).collect();
        priorities.sort_unstable();
        priorities.dedup();
        let state = State {
            notice,
            mode,
            deadline_ms: ends.saturating_sub(margin),
            targets,
            priorities,
            outcomes: vec![],
            event: event.clone(),
            drained: vec![],
        };
        let next = self.next(&state);
        Ok((state, next))
    }

    fn advance(
        &self,
        s: &mut State,
        step: Step,
        outcome: Result<Value, StepError>,
    ) -> Decision<Step> {
        let name = match &step {
            Step::Heartbeat { .. } => "heartbeat".to_string(),
            Step::CompleteLifecycle { .. } => "complete-lifecycle".to_string(),
            Step::Drain { .. } => "drain".to_string(),
            Step::Deregister { .. } => "deregister".to_string(),
            Step::Handlers { priority, .. } => format!("handlers#{priority}"),
            Step::WaitDrained { .. } => "wait-drained".to_string(),
            Step::Report => "report".to_string(),
        };
        match (step, outcome) {
            (Step::Handlers { .. }, Ok(results)) => {
                s.priorities.remove(0);
                let results: Vec<Outcome> =
                    serde_json::from_value(results).unwrap_or_default();
                s.outcomes.extend(results);
            }
            (Step::Handlers { .. }, Err(e)) => {
                s.priorities.remove(0);
                s.outcomes.push(failed(&name, e));
            }
            (step, Ok(value)) => {
                if matches!(step, Step::Drain { .. }) {
                    let result = match output::<DrainResult>(value.clone()) {
                        Ok(r) => r,
                        Err(e) => return Next::Fail(e),
                    };
                    s.drained.extend(result.drained.into_iter().map(|d| Drained {
                        cluster: d.cluster,
                        container_instance: d.container_instance,
                    }));
                    for ip in result.task_ips {
                        if !s.targets.contains(&ip) {
                            s.targets.push(ip);
                        }
                    }
                }
                s.outcomes.push(from_value(&name, value));
            }
            (_, Err(e)) => s.outcomes.push(failed(&name, e)),
        }
        self.next(s)
    }

    async fn perform(&self, _ctx: StepContext<'_>, step: &Step) -> Result<Value, StepError> {
        match step {
            Step::Drain {
                instances,
                deadline_ms,
            } => self.drain(instances, *deadline_ms).await,
            Step::Deregister {
                targets,
                deadline_ms,
            } => self.deregister(targets, *deadline_ms).await,
            Step::WaitDrained {
                drained,
                deadline_ms,
            } => self.wait_drained(drained, *deadline_ms).await,
            Step::Handlers {
                priority,
                deadline_ms,
                notice,
                event,
            } => Ok(self
                .handlers
                .run(*priority, *deadline_ms, notice, event, self.clock.as_ref())
                .await),
            Step::Heartbeat { action } => {
                self.lifecycle.heartbeat(action).await?;
                Ok(json!({"heartbeat": action.token}))
            }
            Step::CompleteLifecycle {
                action,
                deadline_ms,
            } => {
                self.lifecycle.complete(action).await?;
                Ok(json!({"completed": "CONTINUE", "left_ms": self.left_ms(*deadline_ms)}))
            }
            Step::Report => Err(StepError::permanent("the report is published by the engine")),
        }
    }
}

/// A step's result as an outcome: `{"skipped": reason}` is skipped, anything else ok.
fn from_value(name: &str, value: Value) -> Outcome {
    let left_ms = value.get("left_ms").and_then(Value::as_i64);
    match value.get("skipped").and_then(Value::as_str) {
        Some(reason) => Outcome {
            name: name.into(),
            outcome: Verdict::Skipped,
            reason: Some(reason.into()),
            detail: Value::Null,
            left_ms,
        },
        None => Outcome {
            name: name.into(),
            outcome: Verdict::Ok,
            reason: None,
            detail: value,
            left_ms,
        },
    }
}

fn failed(name: &str, e: StepError) -> Outcome {
    Outcome {
        name: name.into(),
        outcome: Verdict::Failed,
        reason: Some(e.message),
        detail: Value::Null,
        left_ms: None,
    }
}

impl SpotDrain {
    fn left_ms(&self, deadline_ms: u64) -> i64 {
        deadline_ms as i64 - self.clock.now_ms() as i64
    }

    fn skipped(&self, deadline_ms: u64) -> Option<Result<Value, StepError>> {
        let left = self.left_ms(deadline_ms);
        (left <= 0).then(|| {
            to_output(&Skipped {
                skipped: format!("the deadline passed {} ms before it could start", -left),
                left_ms: left,
            })
        })
    }

    async fn drain(&self, instances: &[String], deadline_ms: u64) -> Result<Value, StepError> {
        if let Some(skip) = self.skipped(deadline_ms) {
            return skip;
        }
        let mut drained = Vec::new();
        let mut ips = Vec::new();
        for cluster in &self.settings.clusters {
            let mut arns = Vec::new();
            for instance in instances {
                for ci in self.ecs.container_instances(cluster, instance).await? {
                    arns.push(ci.arn.clone());
                    drained.push(DrainedInstance {
                        cluster: cluster.clone(),
                        container_instance: ci.arn,
                        instance: instance.clone(),
                        was: ci.status,
                    });
                }
            }
            if arns.is_empty() {
                continue;
            }
            self.ecs.drain(cluster, &arns).await?;
            for arn in &arns {
                ips.extend(self.ecs.task_ips(cluster, arn).await?);
            }
        }
        to_output(&DrainResult {
            drained,
            task_ips: ips,
            left_ms: self.left_ms(deadline_ms),
        })
    }

    /// Polls until no task runs or waits on the drained container instances, or the deadline.
    async fn wait_drained(
        &self,
        drained: &[Drained],
        deadline_ms: u64,
    ) -> Result<Value, StepError> {
        if let Some(skip) = self.skipped(deadline_ms) {
            return skip;
        }
        let mut by_cluster: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for d in drained {
            by_cluster
                .entry(d.cluster.as_str())
                .or_default()
                .push(d.container_instance.clone());
        }
        let mut polls = 0u32;
        loop {
            polls += 1;
            let mut left = 0;
            for (cluster, arns) in &by_cluster {
                left += self.ecs.tasks_left(cluster, arns).await?;
            }
            let time_left = self.left_ms(deadline_ms);
            if left == 0 {
                return to_output(&WaitResult {
                    tasks_left: 0,
                    polls,
                    left_ms: time_left,
                });
            }
            if time_left <= 0 {
                return Err(StepError::permanent(format!(
                    "{left} task(s) still running or pending on the drained container instances at the deadline (after {polls} polls; a drain moves service tasks, not standalone ones)"
                )));
            }
            let pause = self.settings.drain_poll.min(Duration::from_millis(time_left as u64));
            self.clock.sleep(pause).await;
        }
    }

    async fn deregister(&self, targets: &[String], deadline_ms: u64) -> Result<Value, StepError> {
        if let Some(skip) = self.skipped(deadline_ms) {
            return skip;
        }
        let mut removed = Vec::new();
        for group in &self.settings.target_groups {
            let arn = self.targets.resolve(group).await?;
            for (id, port) in self.targets.targets(&arn).await? {
                if targets.contains(&id) {
                    self.targets.deregister(&arn, &id, port).await?;
                    removed.push(Removed {
                        target_group: group.clone(),
                        id,
                        port,
                    });
                }
            }
        }
        to_output(&DeregisterResult {
            deregistered: removed,
            left_ms: self.left_ms(deadline_ms),
        })
    }
}
