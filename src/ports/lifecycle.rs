//! The `Lifecycle` port: what `spot_drain` needs of EC2 Auto Scaling's lifecycle hooks.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::contract::StepError;

/// One pending lifecycle action, as the "EC2 Instance-terminate Lifecycle Action" event names
/// it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecycleAction {
    pub group: String,
    pub hook: String,
    pub token: String,
    pub instance: String,
}

#[async_trait]
pub trait Lifecycle: Send + Sync + std::fmt::Debug {
    /// Extends the hook's timeout (`RecordLifecycleActionHeartbeat`) while work goes on.
    async fn heartbeat(&self, action: &LifecycleAction) -> Result<(), StepError>;
    /// Ends the action with `CONTINUE` (the instance terminates now). An action that is no
    /// longer pending (completed before, or timed out) is fine: what was asked is done.
    async fn complete(&self, action: &LifecycleAction) -> Result<(), StepError>;
}
