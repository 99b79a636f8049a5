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
use serde_json::Value;

use super::Registration;
use super::ecs_start::wake_key;
use crate::contract::{Act, Call, Decision, Flow, Next, StepError, Typed, Woken, decode, output};

pub fn registration() -> Registration {
    Registration::ready(Arc::new(Typed(EcsTaskEvent)))
        .with_params_check(|params, _| super::params::only_known(params, "ecs_task_event", &[]))
}

#[derive(Debug, Clone, Copy, Default)]
pub struct EcsTaskEvent;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    task_arn: String,
    last_status: Value,
}

/// What this workflow reads of the event: `detail.taskArn`, and `detail.lastStatus` if any.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Detail {
    task_arn: String,
    #[serde(default)]
    last_status: Value,
}

#[derive(Debug, Deserialize)]
struct TaskEvent {
    detail: Detail,
}

/// The workflow's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub task_arn: String,
    pub last_status: Value,
    /// Whether a sleeping `ecs_start` wait was found in this process.
    pub woken: bool,
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

    fn start(&self, event: &Value, params: &Value) -> Result<(State, Decision<Step>), String> {
        super::params::only_known(params, Self::KIND, &[])?;
        let TaskEvent { detail } = decode(event, "event")
            .map_err(|e| format!("{e} (not an ECS Task State Change event)"))?;
        let wake = Call::Wake {
            key: wake_key(&detail.task_arn),
        };
        let state = State {
            task_arn: detail.task_arn,
            last_status: detail.last_status,
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
            Ok(out) => match output::<Woken>(out) {
                Ok(Woken { woken, .. }) => Next::done(&Output {
                    task_arn: s.task_arn.clone(),
                    last_status: s.last_status.clone(),
                    woken,
                }),
                Err(e) => Next::Fail(e),
            },
            Err(e) => Next::Fail(e.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let e = EcsTaskEvent
            .start(&json!({"detail": {}}), &json!({}))
            .unwrap_err();
        assert!(e.contains("event.detail") && e.contains("taskArn"), "{e}");
        let e = EcsTaskEvent
            .start(&json!({"detail": {"taskArn": 7}}), &json!({}))
            .unwrap_err();
        assert!(e.contains("event.detail.taskArn"), "{e}");
    }
}
