//! `ecs_task_event`: an "ECS Task State Change" event wakes the `ecs_start` instance waiting
//! for that task, so it looks at the task at once instead of at its next poll. Polling stays
//! the fallback: without these events (or when the waiting instance runs in another process),
//! the wait ends on its own schedule.
//!
//! Route: `{"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"]}`.
//! Steps: `wake` (performed by the engine) → complete with `{"task_arn", "last_status",
//! "woken"}`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Registration;
use super::ecs_start::wake_key;
use crate::contract::{Act, Call, Decision, Flow, Next, StepError, Typed};

pub fn registration() -> Registration {
    Registration::ready(Arc::new(Typed(EcsTaskEvent)))
}

#[derive(Debug, Clone, Copy, Default)]
pub struct EcsTaskEvent;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    task_arn: String,
    last_status: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The engine wakes the sleeps on the task's key.
    Wake,
}

impl Flow for EcsTaskEvent {
    const KIND: &'static str = "ecs_task_event";
    type State = State;
    type Step = Step;

    fn start(&self, event: &Value, _params: &Value) -> Result<(State, Decision<Step>), String> {
        let detail = event.get("detail").cloned().unwrap_or(Value::Null);
        let task_arn = detail
            .get("taskArn")
            .and_then(Value::as_str)
            .ok_or("detail.taskArn (a string) is missing: not an ECS Task State Change event")?;
        let state = State {
            task_arn: task_arn.to_owned(),
            last_status: detail.get("lastStatus").cloned().unwrap_or(Value::Null),
        };
        let wake = Call::Wake {
            key: wake_key(task_arn),
        };
        Ok((state, Next::Run(Act::engine("wake", Step::Wake, wake))))
    }

    fn advance(
        &self,
        s: &mut State,
        _step: Step,
        outcome: Result<Value, StepError>,
    ) -> Decision<Step> {
        match outcome {
            Ok(out) => Next::Complete(json!({
                "task_arn": s.task_arn,
                "last_status": s.last_status,
                "woken": out.get("woken").cloned().unwrap_or(json!(false)),
            })),
            Err(e) => Next::Fail(e.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_the_task_key_from_the_documented_event() {
        let event: Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/events/eventbridge/ecs-task-state-change-running-fargate.awsdocs.json"
        ))
        .unwrap();
        let (mut s, next) = EcsTaskEvent.start(&event, &json!({})).unwrap();
        let Next::Run(a) = next else { panic!() };
        let arn = event["detail"]["taskArn"].as_str().unwrap();
        assert_eq!(
            a.call,
            Call::Wake {
                key: format!("ecs-task:{arn}")
            }
        );
        let end = EcsTaskEvent.advance(&mut s, a.step, Ok(json!({"woken": true})));
        assert!(
            matches!(end, Next::Complete(ref r) if r["woken"] == true && r["last_status"] == "RUNNING")
        );
        assert!(
            EcsTaskEvent
                .start(&json!({"detail": {}}), &json!({}))
                .is_err()
        );
    }
}
