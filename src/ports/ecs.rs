//! The `Ecs` and `TargetGroups` ports: what the ECS workflows need of ECS and ELBv2.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::contract::StepError;

/// A `RunTask` request: one Fargate task in awsvpc mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunTaskRequest {
    pub cluster: String,
    pub task_definition: String,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
    pub container_name: String,
    /// Container environment overrides.
    #[serde(default)]
    pub environment: Vec<(String, String)>,
    /// Container command override.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Who started it (shown by ECS): identifies the workflow.
    pub started_by: String,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    /// Same for every attempt of one step, so ECS starts one task however often it is asked.
    pub client_token: String,
}

/// What `DescribeTasks` says of one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub task_arn: String,
    /// PROVISIONING, PENDING, ACTIVATING, RUNNING, DEACTIVATING, STOPPING, DEPROVISIONING,
    /// STOPPED.
    pub last_status: String,
    pub stopped_reason: Option<String>,
    pub stop_code: Option<String>,
    /// "name: reason (exit N)" of each container that says why it stopped.
    pub container_reasons: Vec<String>,
    /// From the task's `ElasticNetworkInterface` attachment.
    pub private_ip: Option<String>,
    /// Who started it (`startedBy`): `tugboat/<service>/…` for the tasks `ecs_start` started.
    #[serde(default)]
    pub started_by: Option<String>,
}

#[async_trait]
pub trait Ecs: Send + Sync + std::fmt::Debug {
    /// Starts the task; returns its ARN. ECS's `failures[]` are a permanent error with their
    /// reasons.
    async fn run_task(&self, request: &RunTaskRequest) -> Result<String, StepError>;
    /// The task's status; a task ECS does not know is a permanent error.
    async fn describe_task(&self, cluster: &str, task: &str) -> Result<TaskStatus, StepError>;
    /// Stops the task (a task already stopped is fine).
    async fn stop_task(&self, cluster: &str, task: &str, reason: &str) -> Result<(), StepError>;
    /// The container instances of `cluster` that run on EC2 instance `ec2_instance` (none
    /// when it is not in the cluster; an unknown cluster is a permanent error).
    async fn container_instances(
        &self,
        cluster: &str,
        ec2_instance: &str,
    ) -> Result<Vec<ContainerInstance>, StepError>;
    /// Sets the container instances DRAINING, so that ECS moves their tasks elsewhere.
    async fn drain(&self, cluster: &str, container_instances: &[String]) -> Result<(), StepError>;
    /// How many tasks are running or pending on these container instances of `cluster` (a
    /// container instance ECS no longer knows has none).
    async fn tasks_left(
        &self,
        cluster: &str,
        container_instances: &[String],
    ) -> Result<u32, StepError>;
    /// The private IPs of the awsvpc tasks running on a container instance.
    async fn task_ips(
        &self,
        cluster: &str,
        container_instance: &str,
    ) -> Result<Vec<String>, StepError>;
}

/// An ECS container instance: the ECS agent's registration of one EC2 instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerInstance {
    pub arn: String,
    pub ec2_instance: String,
    /// ACTIVE, DRAINING, REGISTERING, …
    pub status: String,
}

/// A target's health as ELBv2 reports it: `initial`, `healthy`, `unhealthy`, `unused`,
/// `draining`, `unavailable`, or `unregistered` when the group does not list it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetHealth {
    pub state: String,
    pub reason: Option<String>,
    pub description: Option<String>,
}

#[async_trait]
pub trait TargetGroups: Send + Sync + std::fmt::Debug {
    /// The ARN of a target group given by name or ARN (an ARN is returned as it is); an
    /// unknown name is a permanent error.
    async fn resolve(&self, name_or_arn: &str) -> Result<String, StepError>;
    async fn register(&self, target_group: &str, ip: &str, port: u16) -> Result<(), StepError>;
    /// Deregisters; a target that is not registered is fine.
    async fn deregister(&self, target_group: &str, ip: &str, port: u16) -> Result<(), StepError>;
    /// Every target of the group: (id — an IP or an instance id —, port).
    async fn targets(&self, target_group: &str) -> Result<Vec<(String, u16)>, StepError>;
    async fn health(
        &self,
        target_group: &str,
        ip: &str,
        port: u16,
    ) -> Result<TargetHealth, StepError>;
}
