//! `ecs_stop`: take a task started by `ecs_start` out of service: deregister its target, wait
//! until the load balancer has let it go, then stop the task.
//!
//! Trigger: `{"source": "custom.app", "detail-type": "Stop ECS Task", "detail": {"service":
//! "auth", "task": "<task id or ARN>"}}`, or `{"detail": {"workflow_id": "<ecs_start id>"}}` to
//! stop the task an `ecs_start` instance started (its journal record gives service and task). Params: `poll_interval` (default `"5s"`),
//! `deregistration_timeout` (default `"5m"`, the ALB's default deregistration delay); when it
//! runs out the task is stopped anyway and the result says so.
//!
//! Steps: (`find-workflow`, with a workflow id) → `describe-task` → `deregister-target` → (`wait-deregistered#n` →
//! `sleep-deregistered#n`)… → `stop-task` → `notify` → complete. A task that has already
//! stopped skips to `notify`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Registration;
use super::ecs_start::config::{self, EcsParts};
use super::ecs_start::steps::Target;
use crate::contract::{
    Act, Call, Decision, Flow, Next, StepContext, StepError, Topic, Typed, WorkflowRead, decode, params_or_empty, output,
    poll_count, to_output,
};
use crate::ports::{TargetHealth, TaskStatus};

pub fn registration() -> Registration {
    Registration::new("ecs_stop", Some(config::SECTION), |setup| {
        Box::pin(async move {
            let parts = EcsParts::build(setup).await?;
            Ok(Arc::new(Typed(EcsStop(parts))) as Arc<dyn crate::contract::Workflow>)
        })
    })
}

/// The workflow: the configured services (shared with `ecs_start`) and the ports its
/// handlers call.
#[derive(Debug, Clone)]
pub struct EcsStop(pub EcsParts);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    service: String,
    cluster: String,
    target_group: String,
    port: u16,
    task: String,
    #[serde(with = "humantime_serde")]
    poll_interval: Duration,
    max_polls: u32,
    polls: u32,
    ip: Option<String>,
    deregistered: bool,
    already_stopped: bool,
    /// The service's `stop_any_task` (journaled with the decision, so a resume decides alike).
    #[serde(default)]
    stop_any_task: bool,
}

/// The steps and their requests; results as in `ecs_start`'s steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The engine reads the `ecs_start` instance's journal record (by workflow id).
    FindWorkflow,
    /// ECS `DescribeTasks`. Result: `ports::TaskStatus`.
    DescribeTask { cluster: String, task: String },
    /// ELBv2 `DeregisterTargets`. Result: `{}`.
    DeregisterTarget(Target),
    /// ELBv2 `DescribeTargetHealth`, until the load balancer has let the target go. Result:
    /// `ports::TargetHealth`.
    WaitDeregistered(Target),
    /// The engine's sleep between two looks.
    SleepDeregistered,
    /// ECS `StopTask`. Result: `{}`.
    StopTask {
        cluster: String,
        task: String,
        reason: String,
    },
    /// The engine's publish of the result to the success topic.
    Notify,
}

impl Step {
    /// A short name for reasons and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Step::FindWorkflow => "find-workflow",
            Step::DescribeTask { .. } => "describe-task",
            Step::DeregisterTarget(_) => "deregister-target",
            Step::WaitDeregistered(_) => "wait-deregistered",
            Step::SleepDeregistered => "sleep-deregistered",
            Step::StopTask { .. } => "stop-task",
            Step::Notify => "notify",
        }
    }
}

impl State {
    fn target(&self) -> Target {
        Target {
            target_group: self.target_group.clone(),
            ip: self.ip.clone().unwrap_or_default(),
            port: self.port,
        }
    }

    fn result(&self) -> Output {
        Output {
            service: self.service.clone(),
            task: self.task.clone(),
            ip: self.ip.clone(),
            target_group: self.target_group.clone(),
            deregistered: self.deregistered,
            already_stopped: self.already_stopped,
            polls: self.polls,
            notify_error: None,
        }
    }

    fn describe(&self) -> Decision<Step> {
        Next::Run(Act::handler(
            "describe-task",
            Step::DescribeTask {
                cluster: self.cluster.clone(),
                task: self.task.clone(),
            },
        ))
    }

    /// Stops the task, or (already stopped) goes straight to the notification.
    fn stop(&self) -> Decision<Step> {
        if self.already_stopped {
            return self.notify();
        }
        Next::Run(Act::handler(
            "stop-task",
            Step::StopTask {
                cluster: self.cluster.clone(),
                task: self.task.clone(),
                reason: "tugboat: Stop ECS Task event".into(),
            },
        ))
    }

    fn notify(&self) -> Decision<Step> {
        Next::Run(Act::publish(
            "notify",
            Step::Notify,
            Topic::Success,
            format!("tugboat: {} task stopped", self.service),
            json!({"workflow": "ecs_stop", "result": self.result()}),
        ))
    }

    fn poll(&mut self) -> Decision<Step> {
        self.polls += 1;
        Next::Run(Act::handler(
            format!("wait-deregistered#{}", self.polls),
            Step::WaitDeregistered(self.target()),
        ))
    }
}

/// The workflow's output (also the success notification's `result`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub service: String,
    pub task: String,
    pub ip: Option<String>,
    pub target_group: String,
    pub deregistered: bool,
    pub already_stopped: bool,
    pub polls: u32,
    /// Why the success notification could not be published (the stop itself succeeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_error: Option<String>,
}

/// What this workflow needs of an `ecs_start` instance's output: the task it started.
#[derive(Debug, Deserialize)]
struct Started {
    service: String,
    task_arn: String,
}

impl EcsStop {
    /// The `ecs_start` record was read: stop the task it started.
    fn on_found(&self, s: &mut State, value: Value) -> Decision<Step> {
        let read = match output::<WorkflowRead>(value) {
            Ok(r) => r,
            Err(e) => return Next::Fail(e),
        };
        if !read.found {
            return Next::Fail(format!("no workflow {} in the journal", s.task));
        }
        if read.workflow.as_deref() != Some("ecs_start") {
            return Next::Fail(format!("workflow {} is not an ecs_start instance", s.task));
        }
        let started = read
            .output
            .and_then(|o| serde_json::from_value::<Started>(o).ok());
        let Some(Started {
            service,
            task_arn: task,
        }) = started
        else {
            return Next::Fail(format!(
                "workflow {} has no started task to stop (status {:?})",
                s.task,
                read.status.unwrap_or_default()
            ));
        };
        let (service, task) = (service.as_str(), task.as_str());
        let Some(mapping) = self.0.services.get(service) else {
            return Next::Fail(format!("unknown service {service:?}"));
        };
        s.service = service.to_owned();
        s.cluster = mapping.cluster.clone();
        s.target_group = mapping.target_group.clone();
        s.port = mapping.container_port;
        s.stop_any_task = mapping.stop_any_task;
        s.task = task.to_owned();
        s.describe()
    }
}

/// The task as ECS describes it: refused unless tugboat started it for this service (or the
/// mapping says any task may be stopped); then deregistered and stopped.
fn on_described(s: &mut State, value: Value) -> Decision<Step> {
    let status: TaskStatus = match output(value) {
        Ok(t) => t,
        Err(e) => return Next::Fail(e),
    };
    let ours = format!("tugboat/{}/", s.service);
    if !s.stop_any_task
        && !status
            .started_by
            .as_deref()
            .is_some_and(|by| by.starts_with(&ours))
    {
        return Next::Fail(format!(
            "refused: task {} was not started by tugboat for service {} (its startedBy is {:?}); \
             set services.{}.stop_any_task = true to stop tasks tugboat did not start",
            status.task_arn, s.service, status.started_by, s.service
        ));
    }
    s.task = status.task_arn;
    s.already_stopped = status.last_status == "STOPPED";
    match status.private_ip {
        Some(ip) => {
            s.ip = Some(ip);
            Next::Run(Act::handler(
                "deregister-target",
                Step::DeregisterTarget(s.target()),
            ))
        }
        None => s.stop(),
    }
}

/// A look at the target: gone → stop the task; still draining → look again, until the polls
/// run out (then the task is stopped anyway and the result says it was not deregistered).
fn on_target(s: &mut State, value: Value) -> Decision<Step> {
    let state = output::<TargetHealth>(value)
        .map(|h| h.state)
        .unwrap_or_else(|_| "unknown".into());
    match state.as_str() {
        "unused" | "unregistered" => {
            s.deregistered = true;
            s.stop()
        }
        _ if s.polls >= s.max_polls => s.stop(),
        _ => Next::Run(Act::sleep(
            format!("sleep-deregistered#{}", s.polls),
            Step::SleepDeregistered,
            s.poll_interval,
            None,
        )),
    }
}

/// What an event asks of `ecs_stop`: a service's task, or the task an `ecs_start` instance
/// started (its workflow id).
#[derive(Debug, Deserialize)]
#[serde(expecting = "an object")]
struct StopDetail {
    service: Option<String>,
    task: Option<String>,
    workflow_id: Option<String>,
}

/// A route's params.
#[derive(Debug, Deserialize)]
#[serde(expecting = "an object")]
struct StopParams {
    #[serde(default = "super::params::default_poll_interval", with = "humantime_serde")]
    poll_interval: Duration,
    #[serde(default = "super::params::default_wait_timeout", with = "humantime_serde")]
    deregistration_timeout: Duration,
}


#[async_trait]
impl Flow for EcsStop {
    const KIND: &'static str = "ecs_stop";
    type State = State;
    type Step = Step;

    fn start(&self, event: &Value, params: &Value) -> Result<(State, Decision<Step>), String> {
        let detail: StopDetail = decode(event.get("detail").unwrap_or(&Value::Null), "detail")?;
        let StopParams {
            poll_interval,
            deregistration_timeout: timeout,
        } = decode(params_or_empty(params), "params")?;
        let mut state = State {
            service: String::new(),
            cluster: String::new(),
            target_group: String::new(),
            port: 0,
            task: String::new(),
            poll_interval,
            max_polls: poll_count(timeout, poll_interval),
            polls: 0,
            ip: None,
            deregistered: false,
            already_stopped: false,
            stop_any_task: false,
        };
        let next = match (detail.service, detail.task, detail.workflow_id) {
            (Some(service), Some(task), _) => {
                let mapping = self
                    .0
                    .services
                    .get(&service)
                    .ok_or_else(|| format!("unknown service {service:?}"))?;
                state.cluster = mapping.cluster.clone();
                state.target_group = mapping.target_group.clone();
                state.port = mapping.container_port;
                state.stop_any_task = mapping.stop_any_task;
                state.service = service;
                state.task = task;
                state.describe()
            }
            (_, _, Some(id)) => {
                // `task` holds the workflow id until the journal names the task.
                state.task = id.clone();
                Next::Run(Act::engine(
                    "find-workflow",
                    Step::FindWorkflow,
                    Call::ReadWorkflow { id },
                ))
            }
            _ => return Err("detail needs service and task (strings), or workflow_id".into()),
        };
        Ok((state, next))
    }

    fn advance(
        &self,
        s: &mut State,
        step: Step,
        outcome: Result<Value, StepError>,
    ) -> Decision<Step> {
        let value = match outcome {
            Ok(v) => v,
            Err(e) if step == Step::Notify => {
                return Next::done(&Output {
                    notify_error: Some(e.message),
                    ..s.result()
                });
            }
            Err(e) => return Next::Fail(format!("{}: {}", step.label(), e.message)),
        };
        match step {
            Step::FindWorkflow => self.on_found(s, value),
            Step::DescribeTask { .. } => on_described(s, value),
            Step::DeregisterTarget(_) | Step::SleepDeregistered => s.poll(),
            Step::WaitDeregistered(_) => on_target(s, value),
            Step::StopTask { .. } => s.notify(),
            Step::Notify => Next::done(&s.result()),
        }
    }

    async fn perform(&self, _ctx: StepContext<'_>, step: &Step) -> Result<Value, StepError> {
        match step {
            Step::DescribeTask { cluster, task } => {
                to_output(&self.0.ecs.describe_task(cluster, task).await?)
            }
            Step::DeregisterTarget(t) => {
                self.0.targets
                    .deregister(&t.target_group, &t.ip, t.port)
                    .await?;
                Ok(json!({}))
            }
            Step::WaitDeregistered(t) => {
                to_output(&self.0.targets.health(&t.target_group, &t.ip, t.port).await?)
            }
            Step::StopTask {
                cluster,
                task,
                reason,
            } => {
                self.0.ecs.stop_task(cluster, task, reason).await?;
                Ok(json!({}))
            }
            Step::FindWorkflow | Step::SleepDeregistered | Step::Notify => Err(
                StepError::permanent(format!("{} is performed by the engine", step.label())),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::ports::Ports;
    use crate::workflows::ecs_start::config::ServiceMapping;

    fn workflow() -> EcsStop {
        let m = ServiceMapping {
            cluster: "apps".into(),
            task_definition: "auth:1".into(),
            target_group: "tg-arn".into(),
            container_name: "auth".into(),
            container_port: 8080,
            subnets: vec!["s".into()],
            security_groups: vec![],
            assign_public_ip: false,
            allow_environment: vec![],
            allow_command: false,
            allow_revisions: vec![],
            allow_tags: vec![],
            max_count: 1,
            stop_any_task: false,
        };
        let ports = Ports::memory();
        EcsStop(EcsParts {
            services: BTreeMap::from([("auth".to_owned(), m)]),
            ecs: ports.ecs,
            targets: ports.targets,
        })
    }

    fn drive(
        w: &EcsStop,
        (mut state, mut next): (State, Decision<Step>),
        mut answer: impl FnMut(&Step) -> Value,
    ) -> (Vec<String>, Decision<Step>) {
        let mut steps = Vec::new();
        while let Next::Run(a) = next {
            steps.push(a.name.clone());
            let out = match &a.call {
                Call::Sleep { .. } => json!({}),
                _ => answer(&a.step),
            };
            next = w.advance(&mut state, a.step, Ok(out));
        }
        (steps, next)
    }

    fn status(last: &str, ip: Option<&str>) -> Value {
        json!({"task_arn": "arn:task/apps/t1", "last_status": last, "stopped_reason": null, "stop_code": null, "container_reasons": [], "private_ip": ip, "started_by": "tugboat/auth/ev-1"})
    }

    #[test]
    fn deregisters_waits_for_draining_then_stops() {
        let w = workflow();
        let start = w
            .start(
                &json!({"detail": {"service": "auth", "task": "t1"}}),
                &json!({"poll_interval": "1s"}),
            )
            .unwrap();
        let mut states = ["draining", "draining", "unused"].into_iter();
        let mut stopped = false;
        let (steps, end) = drive(&w, start, |c| match c {
            Step::DescribeTask { .. } => status("RUNNING", Some("10.0.0.9")),
            Step::DeregisterTarget(t) => {
                assert_eq!(t.ip, "10.0.0.9");
                json!({})
            }
            Step::WaitDeregistered(_) => {
                json!({"state": states.next().unwrap(), "reason": null, "description": null})
            }
            Step::StopTask { task, .. } => {
                assert_eq!(task, "arn:task/apps/t1");
                stopped = true;
                json!({})
            }
            Step::Notify => json!({}),
            other => panic!("{other:?}"),
        });
        assert!(stopped);
        assert_eq!(
            steps
                .iter()
                .filter(|s| s.starts_with("wait-deregistered"))
                .count(),
            3
        );
        assert!(matches!(end, Next::Complete(ref r) if r["deregistered"] == true));
    }

    #[test]
    fn an_already_stopped_task_is_not_stopped_again_and_bad_input_is_refused() {
        let w = workflow();
        let start = w
            .start(
                &json!({"detail": {"service": "auth", "task": "t1"}}),
                &json!({}),
            )
            .unwrap();
        let (steps, end) = drive(&w, start, |c| match c {
            Step::DescribeTask { .. } => status("STOPPED", None),
            Step::Notify => json!({}),
            other => panic!("{other:?}"),
        });
        assert_eq!(steps, ["describe-task", "notify"]);
        assert!(matches!(end, Next::Complete(ref r) if r["already_stopped"] == true));
        assert!(
            w.start(&json!({"detail": {"service": "auth"}}), &json!({}))
                .unwrap_err()
                .contains("workflow_id")
        );
        assert!(
            w.start(
                &json!({"detail": {"service": "x", "task": "t"}}),
                &json!({})
            )
            .unwrap_err()
            .contains("unknown service")
        );
    }

    #[test]
    fn a_task_tugboat_did_not_start_is_not_stopped() {
        // The attack: a Stop event naming any task id in the service's cluster.
        let w = workflow();
        let start = w
            .start(&json!({"detail": {"service": "auth", "task": "t9"}}), &json!({}))
            .unwrap();
        for started_by in [json!(null), json!("ecs-svc/1234"), json!("tugboat/billing/ev-2")] {
            let mut answer = status("RUNNING", Some("10.0.0.9"));
            answer["started_by"] = started_by.clone();
            let (steps, end) = drive(&w, start.clone(), |_| answer.clone());
            assert_eq!(steps, ["describe-task"], "{started_by}");
            let Next::Fail(reason) = end else {
                panic!("{started_by}: {end:?}")
            };
            assert!(
                reason.contains("was not started by tugboat for service auth")
                    && reason.contains("services.auth.stop_any_task"),
                "{reason}"
            );
        }
        // Unless the mapping says so.
        let mut w = w;
        w.0.services.get_mut("auth").unwrap().stop_any_task = true;
        let start = w
            .start(&json!({"detail": {"service": "auth", "task": "t9"}}), &json!({}))
            .unwrap();
        let mut answer = status("STOPPED", None);
        answer["started_by"] = json!(null);
        let (steps, _) = drive(&w, start, |_| answer.clone());
        assert!(steps.contains(&"notify".to_owned()), "{steps:?}");
    }
}
