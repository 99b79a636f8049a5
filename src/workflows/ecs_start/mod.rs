//! `ecs_start`: start a Fargate task for a named service, wait until it is RUNNING, register
//! its private IP in the service's target group, wait until the target is healthy, and publish
//! the result.
//!
//! Trigger: `{"source": "custom.app", "detail-type": "Start ECS Task", "detail": {"service":
//! "auth"}}`, with optional `detail` overrides: `environment` (object of strings), `command`
//! (list of strings), `revision` (task definition revision), `tags` (object of strings),
//! `count` (1 to 10 tasks, default 1: each gets its own `RunTask` step, and so its own
//! `clientToken`, and is taken through the steps below in turn; steps of the second and later
//! tasks carry `@N` in their names, such as `wait-running@2#1`). Each override is refused
//! (the event dead-lettered with the reason) unless the service's mapping allows it by name
//! (`allow_environment`, `allow_command`, `allow_revisions`, `allow_tags`, `max_count`):
//! whoever may put events on the bus must not choose the code that runs with the task's role.
//!
//! Params: `poll_interval` (default `"5s"`), `running_timeout` and `healthy_timeout` (default
//! `"5m"` each; the seed plan's figures). Waits are bounded by a number of polls, so the logic
//! needs no clock: timeout ÷ interval polls, each followed by a sleep of the interval.
//!
//! Steps: `run-task` → (`wait-running#n` → `sleep-running#n`)… → `register-target` →
//! (`wait-healthy#n` → `sleep-healthy#n`)… → `notify` → complete.
//!
//! Compensation (anything after `run-task` failing for good): deregister the target if it was
//! registered, stop the task, publish the failure to the error topic — so nothing is left
//! running and billed, and the DLQ entry says what was cleaned up.

pub mod config;
pub mod steps;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use self::config::EcsParts;
use self::steps::{Started, Step, Target};
use super::Registration;
use crate::contract::{
    Act, Decision, Flow, Next, StepContext, StepError, Topic, Typed, decode, output, params_or_empty, poll_count,
    to_output,
};
use crate::ports::{RunTaskRequest, TargetHealth, TaskStatus};

pub fn registration() -> Registration {
    Registration::new("ecs_start", Some(config::SECTION), |setup| {
        Box::pin(async move {
            let parts = EcsParts::build(setup).await?;
            Ok(Arc::new(Typed(EcsStart(parts))) as Arc<dyn crate::contract::Workflow>)
        })
    })
}

/// The workflow: the configured service mappings (target groups resolved to ARNs) and the
/// ports its handlers call.
#[derive(Debug, Clone)]
pub struct EcsStart(pub EcsParts);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    service: String,
    cluster: String,
    target_group: String,
    port: u16,
    request: RunTaskRequest,
    #[serde(with = "humantime_serde")]
    poll_interval: Duration,
    max_running_polls: u32,
    max_healthy_polls: u32,
    task_arn: Option<String>,
    ip: Option<String>,
    registered: bool,
    last_status: Option<String>,
    health: Option<TargetHealth>,
    running_polls: u32,
    healthy_polls: u32,
    failure: Option<String>,
    /// How many tasks the event asked for, and which one the fields above describe (1-based).
    #[serde(default = "one")]
    count: u32,
    #[serde(default = "one")]
    index: u32,
    /// The tasks before the current one: running, registered and healthy.
    #[serde(default)]
    done: Vec<Finished>,
}

fn one() -> u32 {
    1
}

/// The workflow's output (also the notifications' `result`): the first task, and every task
/// the run started (`count` > 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub service: String,
    pub task_arn: Option<String>,
    /// The last part of the task's ARN.
    pub task_id: Option<String>,
    pub ip: Option<String>,
    pub port: u16,
    pub target_group: String,
    /// The target's last health state (`healthy`, …).
    pub health: Option<String>,
    pub tasks: Vec<TaskOutput>,
    pub polls_until_running: u32,
    pub polls_until_healthy: u32,
    /// As configured, such as `5s`.
    pub poll_interval: String,
    /// Why the success notification could not be published (the task is up all the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_error: Option<String>,
}

/// One task of a run, as the output reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskOutput {
    pub task_arn: Option<String>,
    pub task_id: Option<String>,
    pub ip: Option<String>,
    pub health: Option<String>,
}

/// A task that reached health, kept while the next ones start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Finished {
    task_arn: String,
    ip: String,
    health: String,
}

/// The name of a step of the current task: `base` for the first, `base@N` for the N-th.
fn name(s: &State, base: &str) -> String {
    if s.index <= 1 {
        base.to_owned()
    } else {
        format!("{base}@{}", s.index)
    }
}

/// What an event asks of `ecs_start`: its `detail`, each override then checked against the
/// service's mapping. Fields it does not know are left alone (an event may carry more).
#[derive(Debug, Deserialize)]
#[serde(expecting = "an object")]
struct Detail {
    service: String,
    count: Option<u64>,
    command: Option<Vec<String>>,
    revision: Option<u64>,
    #[serde(default)]
    environment: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    tags: std::collections::BTreeMap<String, String>,
}

/// A route's params.
#[derive(Debug, Deserialize)]
#[serde(expecting = "an object")]
struct Params {
    #[serde(default = "super::params::default_poll_interval", with = "humantime_serde")]
    poll_interval: Duration,
    #[serde(default = "super::params::default_wait_timeout", with = "humantime_serde")]
    running_timeout: Duration,
    #[serde(default = "super::params::default_wait_timeout", with = "humantime_serde")]
    healthy_timeout: Duration,
}


/// `family:7` or `arn:…:task-definition/family:7` with the revision replaced.
fn with_revision(task_definition: &str, revision: u64) -> String {
    let base = match task_definition.rfind(':') {
        Some(i) if task_definition[i + 1..].chars().all(|c| c.is_ascii_digit()) => {
            &task_definition[..i]
        }
        _ => task_definition,
    };
    format!("{base}:{revision}")
}

impl EcsStart {
    fn first(&self, event: &Value, params: &Value) -> Result<State, String> {
        let detail: Detail = decode(event.get("detail").unwrap_or(&Value::Null), "detail")?;
        let params: Params = decode(params_or_empty(params), "params")?;
        let service = detail.service;
        let mapping = self.0.services.get(&service).ok_or_else(|| {
            let known: Vec<&str> = self.0.services.keys().map(String::as_str).collect();
            format!(
                "unknown service {service:?}; configured services: {}",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )
        })?;
        let allowed = |what: &str| format!("services.{service}.{what}");
        let count = match detail.count {
            None => 1,
            Some(n @ 1..=10) if n as u32 <= mapping.max_count => n as u32,
            Some(n @ 1..=10) => {
                return Err(format!(
                    "detail.count {n}: more tasks than one event may start ({} = {})",
                    allowed("max_count"),
                    mapping.max_count
                ));
            }
            Some(n) => {
                return Err(format!(
                    "detail.count must be 1 to 10 (RunTask's limit), got {n}"
                ));
            }
        };
        let command = detail.command;
        if command.is_some() && !mapping.allow_command {
            return Err(format!(
                "detail.command: an event may not replace the container's command ({} is false)",
                allowed("allow_command")
            ));
        }
        let task_definition = match detail.revision {
            None => mapping.task_definition.clone(),
            Some(n) if n > 0 && !mapping.allow_revisions.contains(&n) => {
                return Err(format!(
                    "detail.revision {n}: revision not allowed ({} lists the revisions an event may ask for)",
                    allowed("allow_revisions")
                ));
            }
            Some(n) if n > 0 => with_revision(&mapping.task_definition, n),
            Some(n) => {
                return Err(format!(
                    "detail.revision must be a positive integer, got {n}"
                ));
            }
        };
        let environment: Vec<(String, String)> = detail.environment.into_iter().collect();
        if let Some((k, _)) = environment
            .iter()
            .find(|(k, _)| !mapping.allow_environment.contains(k))
        {
            return Err(format!(
                "detail.environment.{k}: environment key not allowed ({} lists the keys an event may set)",
                allowed("allow_environment")
            ));
        }
        let asked_tags: Vec<(String, String)> = detail.tags.into_iter().collect();
        if let Some((k, _)) = asked_tags
            .iter()
            .find(|(k, _)| k.starts_with("tugboat:") || !mapping.allow_tags.contains(k))
        {
            return Err(format!(
                "detail.tags.{k}: tag key not allowed ({} lists the keys an event may set; tugboat: keys are tugboat's own)",
                allowed("allow_tags")
            ));
        }
        let mut tags = vec![("tugboat:service".to_owned(), service.clone())];
        tags.extend(asked_tags);
        let Params {
            poll_interval,
            running_timeout: running,
            healthy_timeout: healthy,
        } = params;
        let event_id = event.get("id").and_then(Value::as_str).unwrap_or("");
        Ok(State {
            cluster: mapping.cluster.clone(),
            target_group: mapping.target_group.clone(),
            port: mapping.container_port,
            request: RunTaskRequest {
                cluster: mapping.cluster.clone(),
                task_definition,
                subnets: mapping.subnets.clone(),
                security_groups: mapping.security_groups.clone(),
                assign_public_ip: mapping.assign_public_ip,
                container_name: mapping.container_name.clone(),
                environment,
                command,
                // ECS shows startedBy (at most 128 characters); the event id ties it to the run.
                started_by: format!("tugboat/{service}/{event_id}")
                    .chars()
                    .take(128)
                    .collect(),
                tags,
                client_token: String::new(),
            },
            poll_interval,
            max_running_polls: poll_count(running, poll_interval),
            max_healthy_polls: poll_count(healthy, poll_interval),
            service,
            task_arn: None,
            ip: None,
            registered: false,
            last_status: None,
            health: None,
            running_polls: 0,
            healthy_polls: 0,
            failure: None,
            count,
            index: 1,
            done: Vec::new(),
        })
    }

    fn result(s: &State) -> Output {
        let id = |arn: &str| arn.rsplit('/').next().map(str::to_owned);
        let mut tasks: Vec<TaskOutput> = s
            .done
            .iter()
            .map(|t| TaskOutput {
                task_arn: Some(t.task_arn.clone()),
                task_id: id(&t.task_arn),
                ip: Some(t.ip.clone()),
                health: Some(t.health.clone()),
            })
            .collect();
        if s.task_arn.is_some() {
            tasks.push(TaskOutput {
                task_arn: s.task_arn.clone(),
                task_id: s.task_arn.as_deref().and_then(id),
                ip: s.ip.clone(),
                health: s.health.as_ref().map(|h| h.state.clone()),
            });
        }
        let first = tasks.first().cloned().unwrap_or_default();
        Output {
            service: s.service.clone(),
            task_arn: first.task_arn,
            task_id: first.task_id,
            ip: first.ip,
            port: s.port,
            target_group: s.target_group.clone(),
            health: first.health,
            tasks,
            polls_until_running: s.running_polls,
            polls_until_healthy: s.healthy_polls,
            poll_interval: humantime::format_duration(s.poll_interval).to_string(),
            notify_error: None,
        }
    }
}

/// The step that runs the current task: `run-task` (`run-task@N` for the N-th).
fn run_task(s: &State) -> Decision<Step> {
    Next::Run(Act::handler(
        name(s, "run-task"),
        Step::RunTask(s.request.clone()),
    ))
}

/// `run-task` answered: look at the task.
fn on_started(s: &mut State, value: Value) -> Decision<Step> {
    match output::<Started>(value) {
        Ok(started) => {
            s.task_arn = Some(started.task_arn);
            describe(s)
        }
        Err(e) => fail(s, format!("run-task: {e}")),
    }
}

/// `wait-running#n` answered: RUNNING → register its IP; stopping → fail fast with the
/// reasons; else sleep and look again, until the polls run out.
fn on_task_status(s: &mut State, value: Value) -> Decision<Step> {
    let status: TaskStatus = match output(value) {
        Ok(t) => t,
        Err(e) => return fail(s, e),
    };
    s.last_status = Some(status.last_status.clone());
    match status.last_status.as_str() {
        "RUNNING" => match status.private_ip {
            Some(ip) => {
                s.ip = Some(ip);
                Next::Run(Act::handler(
                    name(s, "register-target"),
                    Step::RegisterTarget(target(s)),
                ))
            }
            None => fail(
                s,
                "the task is RUNNING but its ENI attachment has no privateIPv4Address".into(),
            ),
        },
        "DEACTIVATING" | "STOPPING" | "DEPROVISIONING" | "STOPPED" => {
            let why = stopped_reason(&status);
            fail(s, why)
        }
        other if s.running_polls >= s.max_running_polls => fail(
            s,
            format!(
                "the task did not reach RUNNING within {} (last status {other})",
                humantime::format_duration(s.poll_interval * s.max_running_polls)
            ),
        ),
        _ => Next::Run(Act::sleep(
            format!("{}#{}", name(s, "sleep-running"), s.running_polls),
            Step::SleepRunning,
            s.poll_interval,
            // An "ECS Task State Change" event for this task ends the wait early.
            s.task_arn.as_deref().map(wake_key),
        )),
    }
}

/// Why a task stopped before it ran, with its stop code and its containers' reasons.
fn stopped_reason(status: &TaskStatus) -> String {
    let mut why = format!(
        "the task stopped before it was RUNNING ({}): {}",
        status.last_status,
        status
            .stopped_reason
            .as_deref()
            .unwrap_or("no reason given")
    );
    if let Some(code) = &status.stop_code {
        why.push_str(&format!(" [{code}]"));
    }
    if !status.container_reasons.is_empty() {
        why.push_str(&format!(
            "; containers: {}",
            status.container_reasons.join("; ")
        ));
    }
    why
}

/// `wait-healthy#n` answered: healthy → the next task or the notification; deregistered →
/// fail; else sleep and look again, until the polls run out.
fn on_health(s: &mut State, value: Value) -> Decision<Step> {
    let h: TargetHealth = match output(value) {
        Ok(h) => h,
        Err(e) => return fail(s, e),
    };
    let state = h.state.clone();
    let reason = h.reason.clone().unwrap_or_default();
    s.health = Some(h);
    match state.as_str() {
        "healthy" if s.index < s.count => next_task(s),
        "healthy" => Next::Run(Act::publish(
            "notify",
            Step::Notify,
            Topic::Success,
            format!("tugboat: {} task healthy", s.service),
            json!({"workflow": "ecs_start", "result": EcsStart::result(s)}),
        )),
        "unregistered" | "draining" => fail(
            s,
            format!("the target was deregistered while waiting for health ({state})"),
        ),
        _ if s.healthy_polls >= s.max_healthy_polls => fail(
            s,
            format!(
                "the target did not become healthy within {} (last state {state}{})",
                humantime::format_duration(s.poll_interval * s.max_healthy_polls),
                if reason.is_empty() {
                    String::new()
                } else {
                    format!(": {reason}")
                }
            ),
        ),
        _ => Next::Run(Act::sleep(
            format!("{}#{}", name(s, "sleep-healthy"), s.healthy_polls),
            Step::SleepHealthy,
            s.poll_interval,
            None,
        )),
    }
}

/// The current task is healthy: keep it and start the next one.
fn next_task(s: &mut State) -> Decision<Step> {
    s.done.push(Finished {
        task_arn: s.task_arn.take().unwrap_or_default(),
        ip: s.ip.take().unwrap_or_default(),
        health: s.health.take().map(|h| h.state).unwrap_or_default(),
    });
    s.registered = false;
    s.last_status = None;
    s.running_polls = 0;
    s.healthy_polls = 0;
    s.index += 1;
    run_task(s)
}

/// The key under which a wait for a task's state sleeps; `ecs_task_event` wakes it.
pub fn wake_key(task_arn: &str) -> String {
    format!("ecs-task:{task_arn}")
}

fn target(s: &State) -> Target {
    Target {
        target_group: s.target_group.clone(),
        ip: s.ip.clone().unwrap_or_default(),
        port: s.port,
    }
}

fn describe(s: &mut State) -> Decision<Step> {
    s.running_polls += 1;
    Next::Run(Act::handler(
        format!("{}#{}", name(s, "wait-running"), s.running_polls),
        Step::WaitRunning {
            cluster: s.cluster.clone(),
            task: s.task_arn.clone().unwrap_or_default(),
        },
    ))
}

fn health(s: &mut State) -> Decision<Step> {
    s.healthy_polls += 1;
    Next::Run(Act::handler(
        format!("{}#{}", name(s, "wait-healthy"), s.healthy_polls),
        Step::WaitHealthy(target(s)),
    ))
}

fn fail(s: &mut State, reason: String) -> Decision<Step> {
    s.failure = Some(reason.clone());
    Next::Fail(reason)
}

#[async_trait]
impl Flow for EcsStart {
    const KIND: &'static str = "ecs_start";
    type State = State;
    type Step = Step;

    fn start(&self, event: &Value, params: &Value) -> Result<(State, Decision<Step>), String> {
        let state = self.first(event, params)?;
        let next = run_task(&state);
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
                // The task is up and healthy; a notification that cannot be sent must not
                // stop it. The result records the failure.
                return Next::done(&Output {
                    notify_error: Some(e.message),
                    ..Self::result(s)
                });
            }
            Err(e) => return fail(s, format!("{}: {}", step.label(), e.message)),
        };
        match step {
            Step::RunTask(_) => on_started(s, value),
            Step::WaitRunning { .. } => on_task_status(s, value),
            Step::SleepRunning => describe(s),
            Step::RegisterTarget(_) => {
                s.registered = true;
                health(s)
            }
            Step::WaitHealthy(_) => on_health(s, value),
            Step::SleepHealthy => health(s),
            Step::Notify => Next::done(&Self::result(s)),
            undo @ (Step::DeregisterTarget(_) | Step::StopTask { .. } | Step::NotifyError) => {
                fail(s, format!("{} is a compensation step", undo.label()))
            }
        }
    }

    fn compensation(&self, s: &State) -> Vec<Act<Step>> {
        let reason = s
            .failure
            .clone()
            .unwrap_or_else(|| "the workflow failed".into());
        let stop = |task: &str| Step::StopTask {
            cluster: s.cluster.clone(),
            task: task.to_owned(),
            reason: format!("tugboat: ecs_start failed: {reason}"),
        };
        let deregister = |ip: &str| {
            Step::DeregisterTarget(Target {
                target_group: s.target_group.clone(),
                ip: ip.to_owned(),
                port: s.port,
            })
        };
        let mut undo = Vec::new();
        // The tasks that were already up, then the current one: nothing is left running.
        for (n, t) in s.done.iter().enumerate() {
            let n = n + 1;
            undo.push(Act::handler(
                format!("deregister-target@{n}"),
                deregister(&t.ip),
            ));
            undo.push(Act::handler(format!("stop-task@{n}"), stop(&t.task_arn)));
        }
        if s.registered
            && let Some(ip) = &s.ip
        {
            undo.push(Act::handler("deregister-target", deregister(ip)));
        }
        if let Some(task) = &s.task_arn {
            undo.push(Act::handler("stop-task", stop(task)));
        }
        undo.push(Act::publish(
            "notify-error",
            Step::NotifyError,
            Topic::Error,
            format!("tugboat: starting {} failed", s.service),
            json!({"workflow": "ecs_start", "error": reason, "result": EcsStart::result(s)}),
        ));
        undo
    }

    async fn perform(&self, ctx: StepContext<'_>, step: &Step) -> Result<Value, StepError> {
        match step {
            Step::RunTask(request) => {
                let mut request = request.clone();
                request.client_token = ctx.idempotency_key();
                let task_arn = self.0.ecs.run_task(&request).await?;
                to_output(&Started { task_arn })
            }
            Step::WaitRunning { cluster, task } => {
                to_output(&self.0.ecs.describe_task(cluster, task).await?)
            }
            Step::RegisterTarget(t) => {
                self.0.targets
                    .register(&t.target_group, &t.ip, t.port)
                    .await?;
                Ok(json!({}))
            }
            Step::WaitHealthy(t) => {
                to_output(&self.0.targets.health(&t.target_group, &t.ip, t.port).await?)
            }
            Step::DeregisterTarget(t) => {
                self.0.targets
                    .deregister(&t.target_group, &t.ip, t.port)
                    .await?;
                Ok(json!({}))
            }
            Step::StopTask {
                cluster,
                task,
                reason,
            } => {
                self.0.ecs.stop_task(cluster, task, reason).await?;
                Ok(json!({}))
            }
            Step::SleepRunning | Step::SleepHealthy | Step::Notify | Step::NotifyError => Err(
                StepError::permanent(format!("{} is performed by the engine", step.label())),
            ),
        }
    }
}

#[cfg(test)]
mod tests;
