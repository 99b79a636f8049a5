//! `ecs_task_event`: an "ECS Task State Change" event wakes the `ecs_start` instance waiting
//! for that task, so it looks at the task at once instead of at its next poll. Polling stays
//! the fallback: without these events (or when the waiting instance runs in another process),
//! the wait ends on its own schedule.
//!
//! Route: `{"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"]}`.
//! Steps: `wake` → complete with `{"task_arn", "last_status", "woken"}`.

use serde_json::{Value, json};

use super::ecs_start::wake_key;
use super::{Action, Call, Next, StepError, Transition, Workflow};

#[derive(Debug, Clone, Copy, Default)]
pub struct EcsTaskEvent;

impl Workflow for EcsTaskEvent {
    fn kind(&self) -> &'static str {
        "ecs_task_event"
    }

    fn start(&self, event: &Value, _params: &Value) -> Result<Transition, String> {
        let detail = event.get("detail").cloned().unwrap_or(Value::Null);
        let task_arn = detail
            .get("taskArn")
            .and_then(Value::as_str)
            .ok_or("detail.taskArn (a string) is missing: not an ECS Task State Change event")?;
        let state = json!({"task_arn": task_arn, "last_status": detail.get("lastStatus")});
        Ok(Transition {
            state,
            next: Next::Run(Action::new(
                "wake",
                Call::Wake {
                    key: wake_key(task_arn),
                },
            )),
        })
    }

    fn advance(
        &self,
        mut state: Value,
        _step: &str,
        outcome: Result<Value, StepError>,
    ) -> Transition {
        let next = match outcome {
            Ok(out) => {
                state["woken"] = out.get("woken").cloned().unwrap_or(json!(false));
                Next::Complete(state.clone())
            }
            Err(e) => Next::Fail(e.message),
        };
        Transition { state, next }
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
        let t = EcsTaskEvent.start(&event, &json!({})).unwrap();
        let Next::Run(a) = t.next else { panic!() };
        let arn = event["detail"]["taskArn"].as_str().unwrap();
        assert_eq!(
            a.call,
            Call::Wake {
                key: format!("ecs-task:{arn}")
            }
        );
        let t = EcsTaskEvent.advance(t.state, "wake", Ok(json!({"woken": true})));
        assert!(matches!(t.next, Next::Complete(ref r) if r["woken"] == true));
        assert!(
            EcsTaskEvent
                .start(&json!({"detail": {}}), &json!({}))
                .is_err()
        );
    }
}
