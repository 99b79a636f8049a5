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

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::poll_count;
use super::{
    Action, Call, Next, StepError, Topic, Transition, Workflow, advance_typed, duration_param,
};
use crate::config::ServiceMapping;
use crate::ports::{TargetHealth, TaskStatus};

#[derive(Debug, Clone, Default)]
pub struct EcsStop {
    pub services: BTreeMap<String, ServiceMapping>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct State {
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
}

impl EcsStop {
    fn result(s: &State) -> Value {
        json!({
            "service": s.service,
            "task": s.task,
            "ip": s.ip,
            "target_group": s.target_group,
            "deregistered": s.deregistered,
            "already_stopped": s.already_stopped,
            "polls": s.polls,
        })
    }

    fn stop(s: &State) -> Next {
        Next::Run(Action::new(
            "stop-task",
            Call::EcsStopTask {
                cluster: s.cluster.clone(),
                task: s.task.clone(),
                reason: "tugboat: Stop ECS Task event".into(),
            },
        ))
    }

    fn notify(s: &State) -> Next {
        Next::Run(Action::new(
            "notify",
            Call::Publish {
                topic: Topic::Success,
                subject: format!("tugboat: {} task stopped", s.service),
                message: json!({"workflow": "ecs_stop", "result": Self::result(s)}),
            },
        ))
    }

    fn poll(s: &mut State) -> Next {
        s.polls += 1;
        Next::Run(Action::new(
            format!("wait-deregistered#{}", s.polls),
            Call::TargetHealth {
                target_group: s.target_group.clone(),
                ip: s.ip.clone().unwrap_or_default(),
                port: s.port,
            },
        ))
    }

    fn step(&self, s: &mut State, step: &str, outcome: Result<Value, StepError>) -> Next {
        let (kind, _) = step.split_once('#').unwrap_or((step, ""));
        let value = match outcome {
            Ok(v) => v,
            Err(e) if kind == "notify" => {
                let mut out = Self::result(s);
                out["notify_error"] = json!(e.message);
                return Next::Complete(out);
            }
            Err(e) => return Next::Fail(format!("{step}: {}", e.message)),
        };
        match kind {
            "find-workflow" => {
                if value.get("found") != Some(&Value::Bool(true)) {
                    return Next::Fail(format!("no workflow {} in the journal", s.task));
                }
                if value.get("workflow").and_then(Value::as_str) != Some("ecs_start") {
                    return Next::Fail(format!("workflow {} is not an ecs_start instance", s.task));
                }
                let out = value.get("output").cloned().unwrap_or(Value::Null);
                let (Some(service), Some(task)) = (
                    out.get("service").and_then(Value::as_str),
                    out.get("task_arn").and_then(Value::as_str),
                ) else {
                    return Next::Fail(format!(
                        "workflow {} has no started task to stop (status {})",
                        s.task, value["status"]
                    ));
                };
                let Some(mapping) = self.services.get(service) else {
                    return Next::Fail(format!("unknown service {service:?}"));
                };
                s.service = service.to_owned();
                s.cluster = mapping.cluster.clone();
                s.target_group = mapping.target_group.clone();
                s.port = mapping.container_port;
                s.task = task.to_owned();
                Next::Run(Action::new(
                    "describe-task",
                    Call::EcsDescribeTask {
                        cluster: s.cluster.clone(),
                        task: s.task.clone(),
                    },
                ))
            }
            "describe-task" => {
                let status: TaskStatus = match serde_json::from_value(value) {
                    Ok(t) => t,
                    Err(e) => return Next::Fail(format!("unreadable task status: {e}")),
                };
                s.task = status.task_arn;
                if status.last_status == "STOPPED" {
                    s.already_stopped = true;
                }
                match status.private_ip {
                    Some(ip) => {
                        s.ip = Some(ip.clone());
                        Next::Run(Action::new(
                            "deregister-target",
                            Call::TargetDeregister {
                                target_group: s.target_group.clone(),
                                ip,
                                port: s.port,
                            },
                        ))
                    }
                    None if s.already_stopped => Self::notify(s),
                    None => Self::stop(s),
                }
            }
            "deregister-target" => Self::poll(s),
            "wait-deregistered" => {
                let h: TargetHealth = serde_json::from_value(value).unwrap_or(TargetHealth {
                    state: "unknown".into(),
                    reason: None,
                    description: None,
                });
                match h.state.as_str() {
                    "unused" | "unregistered" => {
                        s.deregistered = true;
                        if s.already_stopped {
                            Self::notify(s)
                        } else {
                            Self::stop(s)
                        }
                    }
                    _ if s.polls >= s.max_polls => {
                        if s.already_stopped {
                            Self::notify(s)
                        } else {
                            Self::stop(s)
                        }
                    }
                    _ => Next::Run(Action::new(
                        format!("sleep-deregistered#{}", s.polls),
                        Call::Sleep {
                            duration: s.poll_interval,
                            wake_on: None,
                        },
                    )),
                }
            }
            "sleep-deregistered" => Self::poll(s),
            "stop-task" => Self::notify(s),
            "notify" => Next::Complete(Self::result(s)),
            other => Next::Fail(format!("unknown step {other:?}")),
        }
    }
}

impl Workflow for EcsStop {
    fn kind(&self) -> &'static str {
        "ecs_stop"
    }

    fn start(&self, event: &Value, params: &Value) -> Result<Transition, String> {
        let detail = event.get("detail").cloned().unwrap_or(Value::Null);
        let text = |name: &str| detail.get(name).and_then(Value::as_str).map(str::to_owned);
        let poll_interval = duration_param(params, "poll_interval", Duration::from_secs(5))?;
        let timeout = duration_param(params, "deregistration_timeout", Duration::from_secs(300))?;
        let max_polls = poll_count(timeout, poll_interval);
        let mut state = State {
            service: String::new(),
            cluster: String::new(),
            target_group: String::new(),
            port: 0,
            task: String::new(),
            poll_interval,
            max_polls,
            polls: 0,
            ip: None,
            deregistered: false,
            already_stopped: false,
        };
        let action = match (text("service"), text("task"), text("workflow_id")) {
            (Some(service), Some(task), _) => {
                let mapping = self
                    .services
                    .get(&service)
                    .ok_or_else(|| format!("unknown service {service:?}"))?;
                state.cluster = mapping.cluster.clone();
                state.target_group = mapping.target_group.clone();
                state.port = mapping.container_port;
                state.service = service;
                state.task = task.clone();
                Action::new(
                    "describe-task",
                    Call::EcsDescribeTask {
                        cluster: state.cluster.clone(),
                        task,
                    },
                )
            }
            (_, _, Some(id)) => {
                // `task` holds the workflow id until the journal names the task.
                state.task = id.clone();
                Action::new("find-workflow", Call::ReadWorkflow { id })
            }
            _ => return Err("detail needs service and task (strings), or workflow_id".into()),
        };
        Ok(Transition {
            state: serde_json::to_value(&state).map_err(|e| e.to_string())?,
            next: Next::Run(action),
        })
    }

    fn advance(&self, state: Value, step: &str, outcome: Result<Value, StepError>) -> Transition {
        advance_typed(state, |s: &mut State| self.step(s, step, outcome))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        };
        EcsStop {
            services: BTreeMap::from([("auth".to_owned(), m)]),
        }
    }

    fn drive(
        w: &EcsStop,
        mut t: Transition,
        mut answer: impl FnMut(&Call) -> Value,
    ) -> (Vec<String>, Next) {
        let mut steps = Vec::new();
        while let Next::Run(a) = t.next.clone() {
            steps.push(a.step.clone());
            let out = match &a.call {
                Call::Sleep { .. } => json!({}),
                c => answer(c),
            };
            t = w.advance(t.state, &a.step, Ok(out));
        }
        (steps, t.next)
    }

    fn status(last: &str, ip: Option<&str>) -> Value {
        json!({"task_arn": "arn:task/apps/t1", "last_status": last, "stopped_reason": null, "stop_code": null, "container_reasons": [], "private_ip": ip})
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
            Call::EcsDescribeTask { .. } => status("RUNNING", Some("10.0.0.9")),
            Call::TargetDeregister { ip, .. } => {
                assert_eq!(ip, "10.0.0.9");
                json!({})
            }
            Call::TargetHealth { .. } => {
                json!({"state": states.next().unwrap(), "reason": null, "description": null})
            }
            Call::EcsStopTask { task, .. } => {
                assert_eq!(task, "arn:task/apps/t1");
                stopped = true;
                json!({})
            }
            Call::Publish { .. } => json!({}),
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
            Call::EcsDescribeTask { .. } => status("STOPPED", None),
            Call::Publish { .. } => json!({}),
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
}
