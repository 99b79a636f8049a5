//! `log`: the built-in workflow that records an event and announces it. It exists so that the
//! engine can be exercised end to end (and routes tried out) before a real workflow is wired;
//! it is not one of the seed plans.
//!
//! Steps: `log` (one structured log line with the event's source, detail-type and id) →
//! `delay` (only with the `delay` param: wait that long) → `notify` (publish a summary to the
//! success topic, if configured) → complete.
//! Params: `message` (a text for the log line; default none), `delay` (a duration such as
//! `"5s"`, to try out long steps, visibility extension and shutdown; default none).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Registration;
use crate::contract::{
    Act, Decision, Flow, Next, Published, StepContext, StepError, Topic, Typed, decode, output,
    params_or_empty,
};

pub fn registration() -> Registration {
    Registration::new("log", None, |_| {
        Box::pin(async { Ok(Arc::new(Typed(Log)) as Arc<dyn crate::contract::Workflow>) })
    })
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Log;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    summary: Summary,
    message: Option<String>,
    #[serde(default, with = "humantime_serde")]
    delay: Option<Duration>,
}

/// What the log line and the notification say of an event: its envelope's fields, as the
/// event has them (null when it has not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub source: Option<Value>,
    #[serde(rename = "detail-type")]
    pub detail_type: Option<Value>,
    pub id: Option<Value>,
    pub time: Option<Value>,
}

impl Summary {
    fn of(event: &Value) -> Summary {
        let field = |name: &str| event.get(name).cloned();
        Summary {
            source: field("source"),
            detail_type: field("detail-type"),
            id: field("id"),
            time: field("time"),
        }
    }
}

/// The workflow's output: the event's summary and what the notification came to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub event: Summary,
    pub notified: Published,
}

/// The steps: `Log` is performed by this workflow's handler (a log line), the others by the
/// engine (a sleep, a publish).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Log { message: String, fields: Summary },
    Delay,
    Notify,
}

fn notify(s: &State) -> Decision<Step> {
    Next::Run(Act::publish(
        "notify",
        Step::Notify,
        Topic::Success,
        "tugboat: event logged",
        json!({"workflow": "log", "event": s.summary}),
    ))
}

/// A route's params: a message to log instead of "event received", and a pause before the
/// notification (`"2s"`), which tests use to hold an instance mid-run.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
struct LogParams {
    message: Option<String>,
    #[serde(with = "humantime_serde")]
    delay: Option<Duration>,
}

#[async_trait]
impl Flow for Log {
    const KIND: &'static str = "log";
    type State = State;
    type Step = Step;

    fn start(&self, event: &Value, params: &Value) -> Result<(State, Decision<Step>), String> {
        let LogParams { message, delay } = decode(params_or_empty(params), "params")?;
        let summary = Summary::of(event);
        let step = Step::Log {
            message: message.clone().unwrap_or_else(|| "event received".into()),
            fields: summary.clone(),
        };
        let state = State {
            summary,
            message,
            delay,
        };
        Ok((state, Next::Run(Act::handler("log", step))))
    }

    fn advance(
        &self,
        s: &mut State,
        step: Step,
        outcome: Result<Value, StepError>,
    ) -> Decision<Step> {
        let published = match outcome {
            Err(e) => return Next::Fail(format!("step {step:?} failed: {}", e.message)),
            Ok(v) => v,
        };
        match (step, s.delay) {
            (Step::Log { .. }, Some(duration)) => {
                Next::Run(Act::sleep("delay", Step::Delay, duration, None))
            }
            (Step::Log { .. } | Step::Delay, _) => notify(s),
            (Step::Notify, _) => match output::<Published>(published) {
                Ok(notified) => Next::done(&Output {
                    event: s.summary.clone(),
                    notified,
                }),
                Err(e) => Next::Fail(e),
            },
        }
    }

    async fn perform(&self, ctx: StepContext<'_>, step: &Step) -> Result<Value, StepError> {
        match step {
            Step::Log { message, fields } => {
                let fields = serde_json::to_string(fields).unwrap_or_default();
                tracing::info!(workflow_id = ctx.workflow_id, step = ctx.step, fields = %fields, "{message}");
                Ok(json!({}))
            }
            other => Err(StepError::permanent(format!(
                "{other:?} is performed by the engine"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Call;

    fn event() -> Value {
        json!({"id": "e-1", "source": "custom.app", "detail-type": "Start ECS Task", "detail": {}})
    }

    fn run(next: Decision<Step>) -> Act<Step> {
        match next {
            Next::Run(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn logs_then_notifies_then_completes() {
        let (mut s, next) = Log.start(&event(), &json!({"message": "hello"})).unwrap();
        let a = run(next);
        assert_eq!(a.name, "log");
        assert_eq!(a.call, Call::Handler);
        assert!(matches!(&a.step, Step::Log { message, .. } if message == "hello"));
        let a = run(Log.advance(&mut s, a.step, Ok(json!({}))));
        assert!(matches!(
            a.call,
            Call::Publish {
                topic: Topic::Success,
                ..
            }
        ));
        let Next::Complete(out) = Log.advance(&mut s, a.step, Ok(json!({"message_id": "m"})))
        else {
            panic!()
        };
        assert_eq!(out["event"]["id"], "e-1");
    }

    #[test]
    fn a_delay_param_adds_a_sleep_step() {
        let (mut s, next) = Log.start(&event(), &json!({"delay": "2s"})).unwrap();
        let a = run(Log.advance(&mut s, run(next).step, Ok(json!({}))));
        assert_eq!(
            a.call,
            Call::Sleep {
                duration: Duration::from_secs(2),
                wake_on: None,
            }
        );
        let a = run(Log.advance(&mut s, a.step, Ok(json!({}))));
        assert_eq!(a.name, "notify");
    }

    #[test]
    fn a_failed_step_fails_the_workflow_and_bad_params_are_refused() {
        let (mut s, next) = Log.start(&event(), &json!({})).unwrap();
        let next = Log.advance(&mut s, run(next).step, Err(StepError::permanent("boom")));
        assert!(matches!(next, Next::Fail(ref m) if m.contains("boom")));
        assert!(Log.start(&event(), &json!({"message": 3})).is_err());
        assert!(Log.start(&event(), &json!({"delay": "soon"})).is_err());
        assert!(Log.start(&event(), &json!({"delay": 5})).is_err());
    }

    #[test]
    fn a_journaled_state_or_step_that_does_not_parse_fails_the_instance() {
        use crate::contract::{Action, Workflow};
        let w = Typed(Log);
        let done = Action {
            name: "log".into(),
            step: json!("delay").into(),
            call: Call::Handler,
            retry: Default::default(),
        };
        let t = w.advance(json!("garbage"), &done, Ok(json!({})));
        assert!(matches!(t.next, Next::Fail(ref m) if m.contains("state does not parse")));
        let t0 = w.start(&event(), &json!({})).unwrap();
        let bad = Action {
            step: json!({"no_such_step": 1}).into(),
            ..done
        };
        let t = w.advance(t0.state, &bad, Ok(json!({})));
        assert!(matches!(t.next, Next::Fail(ref m) if m.contains("step log does not parse")));
    }
}
