//! The steps of `ecs_start`, each with its request and the type of its result.

use serde::{Deserialize, Serialize};

use crate::ports::RunTaskRequest;

/// One IP target in a target group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub target_group: String,
    pub ip: String,
    pub port: u16,
}

/// What `RunTask` answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Started {
    pub task_arn: String,
}

/// A step and its request. Handler steps are performed by [`super::EcsStart`]'s `perform`
/// through the ECS and target-group ports; the others by the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// ECS `RunTask` (the handler sets the `clientToken` to the step's idempotency key).
    /// Result: [`Started`].
    RunTask(RunTaskRequest),
    /// ECS `DescribeTasks` of the task. Result: `ports::TaskStatus`.
    WaitRunning { cluster: String, task: String },
    /// The engine's sleep between two looks at the task, ended early by an "ECS Task State
    /// Change" event for it.
    SleepRunning,
    /// ELBv2 `RegisterTargets`. Result: `{}`.
    RegisterTarget(Target),
    /// ELBv2 `DescribeTargetHealth`. Result: `ports::TargetHealth`.
    WaitHealthy(Target),
    /// The engine's sleep between two looks at the target's health.
    SleepHealthy,
    /// The engine's publish of the result to the success topic.
    Notify,
    /// Compensation: ELBv2 `DeregisterTargets` (not registered is fine). Result: `{}`.
    DeregisterTarget(Target),
    /// Compensation: ECS `StopTask`. Result: `{}`.
    StopTask {
        cluster: String,
        task: String,
        reason: String,
    },
    /// Compensation: the engine's publish of the failure to the error topic.
    NotifyError,
}

impl Step {
    /// A short name for reasons and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Step::RunTask(_) => "run-task",
            Step::WaitRunning { .. } => "wait-running",
            Step::SleepRunning => "sleep-running",
            Step::RegisterTarget(_) => "register-target",
            Step::WaitHealthy(_) => "wait-healthy",
            Step::SleepHealthy => "sleep-healthy",
            Step::Notify => "notify",
            Step::DeregisterTarget(_) => "deregister-target",
            Step::StopTask { .. } => "stop-task",
            Step::NotifyError => "notify-error",
        }
    }
}
