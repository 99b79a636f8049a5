//! Performs a workflow's [`Call`]s through the ports.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::ports::{Ecs, Notifier, TargetGroups};
use crate::workflows::{Call, StepError};

/// Which step a call belongs to; the source of idempotency keys.
#[derive(Debug, Clone, Copy)]
pub struct StepContext<'a> {
    pub workflow_id: &'a str,
    pub step: &'a str,
    /// 1 for the first attempt.
    pub attempt: u32,
}

impl StepContext<'_> {
    /// The same for every attempt of this step of this instance, and nothing else: the
    /// ECS `clientToken`, the SNS deduplication id. 32 hex characters.
    pub fn idempotency_key(&self) -> String {
        let digest = Sha256::digest(format!("{}\n{}", self.workflow_id, self.step));
        hex::encode(&digest[..16])
    }
}

/// Performs calls. Implemented over the ports by [`PortEffects`]; tests may wrap it.
#[async_trait]
pub trait Effects: Send + Sync {
    async fn execute(&self, ctx: StepContext<'_>, call: &Call) -> Result<Value, StepError>;
}

/// A port registered by name, for [`Call::Custom`].
#[async_trait]
pub trait CustomPort: Send + Sync {
    async fn call(&self, ctx: StepContext<'_>, input: &Value) -> Result<Value, StepError>;
}

/// The effects executor over the real ports.
#[derive(Default)]
pub struct PortEffects {
    pub notifier: Option<Arc<dyn Notifier>>,
    pub ecs: Option<Arc<dyn Ecs>>,
    pub targets: Option<Arc<dyn TargetGroups>>,
    pub custom: HashMap<String, Arc<dyn CustomPort>>,
}

impl PortEffects {
    fn ecs(&self) -> Result<&Arc<dyn Ecs>, StepError> {
        self.ecs
            .as_ref()
            .ok_or_else(|| StepError::permanent("no ECS port is configured"))
    }

    fn targets(&self) -> Result<&Arc<dyn TargetGroups>, StepError> {
        self.targets
            .as_ref()
            .ok_or_else(|| StepError::permanent("no target-group port is configured"))
    }
}

#[async_trait]
impl Effects for PortEffects {
    async fn execute(&self, ctx: StepContext<'_>, call: &Call) -> Result<Value, StepError> {
        match call {
            Call::Log { message, fields } => {
                tracing::info!(workflow_id = ctx.workflow_id, step = ctx.step, fields = %fields, "{message}");
                Ok(json!({}))
            }
            Call::Publish {
                topic,
                subject,
                message,
            } => {
                let Some(notifier) = &self.notifier else {
                    return Ok(json!({"skipped": "no notifier configured"}));
                };
                match notifier
                    .publish(*topic, subject, message, &ctx.idempotency_key())
                    .await?
                {
                    Some(id) => Ok(json!({"message_id": id})),
                    None => Ok(json!({"skipped": "topic not configured"})),
                }
            }
            Call::Sleep { .. } | Call::Wake { .. } | Call::ReadWorkflow { .. } => {
                Err(StepError::permanent(
                    "sleep, wake and workflow reads are performed by the runner, not by a port",
                ))
            }
            Call::EcsRunTask { request } => {
                let mut request = request.as_ref().clone();
                request.client_token = ctx.idempotency_key();
                let arn = self.ecs()?.run_task(&request).await?;
                Ok(json!({"task_arn": arn}))
            }
            Call::EcsDescribeTask { cluster, task } => {
                let status = self.ecs()?.describe_task(cluster, task).await?;
                Ok(serde_json::to_value(status).unwrap_or_default())
            }
            Call::EcsStopTask {
                cluster,
                task,
                reason,
            } => {
                self.ecs()?.stop_task(cluster, task, reason).await?;
                Ok(json!({}))
            }
            Call::TargetRegister {
                target_group,
                ip,
                port,
            } => {
                self.targets()?.register(target_group, ip, *port).await?;
                Ok(json!({}))
            }
            Call::TargetDeregister {
                target_group,
                ip,
                port,
            } => {
                self.targets()?.deregister(target_group, ip, *port).await?;
                Ok(json!({}))
            }
            Call::TargetHealth {
                target_group,
                ip,
                port,
            } => {
                let health = self.targets()?.health(target_group, ip, *port).await?;
                Ok(serde_json::to_value(health).unwrap_or_default())
            }
            Call::Custom { port, input } => match self.custom.get(port) {
                Some(p) => p.call(ctx, input).await,
                None => Err(StepError::permanent(format!(
                    "no port named {port:?} is registered"
                ))),
            },
        }
    }
}
