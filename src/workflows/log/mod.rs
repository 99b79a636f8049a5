//! `log`: the built-in workflow that records an event and announces it. It exists so that the
//! engine can be exercised end to end (and routes tried out) before a real workflow is wired;
//! it is not one of the seed plans.
//!
//! Steps: `log` (one structured log line with the event's source, detail-type and id) →
//! `delay` (only with the `delay` param: wait that long) → `notify` (publish a summary to the
//! success topic, if configured) → complete.
//! Params: `message` (a text for the log line; default none), `delay` (a duration such as
//! `"5s"`, to try out long steps, visibility extension and shutdown; default none).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Action, Call, Next, StepError, Topic, Transition, Workflow};

#[derive(Debug, Clone, Copy)]
pub struct Log;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct State {
    summary: Value,
    message: Option<String>,
    #[serde(default, with = "humantime_serde")]
    delay: Option<std::time::Duration>,
}

impl Workflow for Log {
    fn kind(&self) -> &'static str {
        "log"
    }

    fn start(&self, event: &Value, params: &Value) -> Result<Transition, String> {
        let message = match params.get("message") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => return Err(format!("params.message must be a string, got {other}")),
        };
        let delay = match params.get("delay") {
            None => None,
            Some(Value::String(s)) => {
                Some(humantime::parse_duration(s).map_err(|e| format!("params.delay {s:?}: {e}"))?)
            }
            Some(other) => {
                return Err(format!(
                    "params.delay must be a duration such as \"5s\", got {other}"
                ));
            }
        };
        let summary = json!({
            "source": event.get("source"),
            "detail-type": event.get("detail-type"),
            "id": event.get("id"),
            "time": event.get("time"),
        });
        let state = State {
            summary,
            message,
            delay,
        };
        let action = Action::new(
            "log",
            Call::Log {
                message: state
                    .message
                    .clone()
                    .unwrap_or_else(|| "event received".into()),
                fields: state.summary.clone(),
            },
        );
        Ok(Transition {
            state: serde_json::to_value(&state).map_err(|e| e.to_string())?,
            next: Next::Run(action),
        })
    }

    fn advance(&self, state: Value, step: &str, outcome: Result<Value, StepError>) -> Transition {
        let parsed: Result<State, _> = serde_json::from_value(state.clone());
        let next = match (parsed, step, outcome) {
            (Err(e), _, _) => Next::Fail(format!("journaled state does not parse: {e}")),
            (_, _, Err(e)) => Next::Fail(format!("step {step} failed: {}", e.message)),
            (
                Ok(State {
                    delay: Some(duration),
                    ..
                }),
                "log",
                Ok(_),
            ) => Next::Run(Action::new(
                "delay",
                Call::Sleep {
                    duration,
                    wake_on: None,
                },
            )),
            (Ok(s), "log" | "delay", Ok(_)) => Next::Run(Action::new(
                "notify",
                Call::Publish {
                    topic: Topic::Success,
                    subject: "tugboat: event logged".into(),
                    message: json!({"workflow": "log", "event": s.summary}),
                },
            )),
            (Ok(s), "notify", Ok(published)) => {
                Next::Complete(json!({"event": s.summary, "notified": published}))
            }
            (Ok(_), other, Ok(_)) => Next::Fail(format!("unknown step {other:?}")),
        };
        Transition { state, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Value {
        json!({"id": "e-1", "source": "custom.app", "detail-type": "Start ECS Task", "detail": {}})
    }

    #[test]
    fn logs_then_notifies_then_completes() {
        let t = Log.start(&event(), &json!({"message": "hello"})).unwrap();
        let Next::Run(a) = &t.next else {
            panic!("{t:?}")
        };
        assert_eq!(a.step, "log");
        assert!(matches!(&a.call, Call::Log { message, .. } if message == "hello"));
        let t = Log.advance(t.state, "log", Ok(json!({})));
        let Next::Run(a) = &t.next else {
            panic!("{t:?}")
        };
        assert!(matches!(
            a.call,
            Call::Publish {
                topic: Topic::Success,
                ..
            }
        ));
        let t = Log.advance(t.state, "notify", Ok(json!({"message_id": "m"})));
        let Next::Complete(out) = t.next else {
            panic!()
        };
        assert_eq!(out["event"]["id"], "e-1");
    }

    #[test]
    fn a_delay_param_adds_a_sleep_step() {
        let t = Log.start(&event(), &json!({"delay": "2s"})).unwrap();
        let t = Log.advance(t.state, "log", Ok(json!({})));
        let Next::Run(a) = &t.next else {
            panic!("{t:?}")
        };
        assert_eq!(
            a.call,
            Call::Sleep {
                duration: std::time::Duration::from_secs(2),
                wake_on: None,
            }
        );
        let t = Log.advance(t.state, "delay", Ok(json!({})));
        assert!(matches!(&t.next, Next::Run(a) if a.step == "notify"));
    }

    #[test]
    fn a_failed_step_fails_the_workflow_and_bad_params_are_refused() {
        let t = Log.start(&event(), &json!({})).unwrap();
        let t = Log.advance(t.state, "log", Err(StepError::permanent("boom")));
        assert!(matches!(t.next, Next::Fail(ref m) if m.contains("boom")));
        assert!(Log.start(&event(), &json!({"message": 3})).is_err());
        assert!(Log.start(&event(), &json!({"delay": "soon"})).is_err());
        assert!(Log.start(&event(), &json!({"delay": 5})).is_err());
        let t = Log.advance(json!("garbage"), "log", Ok(json!({})));
        assert!(matches!(t.next, Next::Fail(_)));
    }
}
