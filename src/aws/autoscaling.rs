//! The `Lifecycle` port over EC2 Auto Scaling.

use async_trait::async_trait;

use super::classify;
use crate::contract::StepError;
use crate::ports::lifecycle::{Lifecycle, LifecycleAction};

#[derive(Debug, Clone)]
pub struct AutoScalingLifecycle {
    client: aws_sdk_autoscaling::Client,
}

impl AutoScalingLifecycle {
    pub fn new(client: aws_sdk_autoscaling::Client) -> AutoScalingLifecycle {
        AutoScalingLifecycle { client }
    }
}

/// Auto Scaling says `ValidationError` "No active Lifecycle Action found …" for an action
/// that was completed, abandoned or timed out.
fn no_longer_pending(code: &str, message: &str) -> bool {
    code == "ValidationError" && message.contains("No active Lifecycle Action")
}

#[async_trait]
impl Lifecycle for AutoScalingLifecycle {
    async fn heartbeat(&self, a: &LifecycleAction) -> Result<(), StepError> {
        match self
            .client
            .record_lifecycle_action_heartbeat()
            .auto_scaling_group_name(&a.group)
            .lifecycle_hook_name(&a.hook)
            .lifecycle_action_token(&a.token)
            .instance_id(&a.instance)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => Err(classify("RecordLifecycleActionHeartbeat", e).into()),
        }
    }

    async fn complete(&self, a: &LifecycleAction) -> Result<(), StepError> {
        match self
            .client
            .complete_lifecycle_action()
            .auto_scaling_group_name(&a.group)
            .lifecycle_hook_name(&a.hook)
            .lifecycle_action_token(&a.token)
            .instance_id(&a.instance)
            .lifecycle_action_result("CONTINUE")
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = classify("CompleteLifecycleAction", e);
                if no_longer_pending(&e.code, &e.message) {
                    Ok(())
                } else {
                    Err(e.into())
                }
            }
        }
    }
}
