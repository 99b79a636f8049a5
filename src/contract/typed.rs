//! The typed side of the contract: what a workflow folder implements ([`Flow`]), with its own
//! state and step types, and the adapter ([`Typed`]) that turns it into a [`Workflow`] by doing
//! the JSON at the boundary. A step kind is a type: the engine hands back the very step that
//! ran, so no workflow parses a step's name to learn what it was.

use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    Action, Call, Direct, Durability, Next, RetryPolicy, StepContext, StepError, Topic, Transition,
    Workflow,
};

/// What a typed workflow decides after each step: run a step, complete, or fail.
pub type Decision<S> = Next<Act<S>>;

/// A step of a typed workflow: its unique name, the typed step, and who performs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Act<S> {
    pub name: String,
    pub step: S,
    pub call: Call,
    pub retry: RetryPolicy,
}

impl<S> Act<S> {
    /// A step the workflow's own handler performs ([`Flow::perform`]).
    pub fn handler(name: impl Into<String>, step: S) -> Act<S> {
        Act {
            name: name.into(),
            step,
            call: Call::Handler,
            retry: RetryPolicy::default(),
        }
    }

    /// A sleep, ended early by a [`Call::Wake`] for `wake_on` if given.
    pub fn sleep(
        name: impl Into<String>,
        step: S,
        duration: Duration,
        wake_on: Option<String>,
    ) -> Act<S> {
        Act::engine(name, step, Call::Sleep { duration, wake_on })
    }

    /// A publish to a configured topic, deduplicated by the step's idempotency key.
    pub fn publish(
        name: impl Into<String>,
        step: S,
        topic: Topic,
        subject: impl Into<String>,
        message: Value,
    ) -> Act<S> {
        let call = Call::Publish {
            topic,
            subject: subject.into(),
            message,
            attributes: Default::default(),
        };
        Act::engine(name, step, call)
    }

    /// Any call the engine performs itself.
    pub fn engine(name: impl Into<String>, step: S, call: Call) -> Act<S> {
        Act {
            name: name.into(),
            step,
            call,
            retry: RetryPolicy::default(),
        }
    }

    /// The same step with another retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Act<S> {
        self.retry = policy;
        self
    }

    /// A publish with SNS message attributes a subscriber can filter on (`account`,
    /// `service`, `type`); other calls are left as they are.
    pub fn with_attributes<K: Into<String>, V: Into<String>>(
        mut self,
        attributes: impl IntoIterator<Item = (K, V)>,
    ) -> Act<S> {
        if let Call::Publish { attributes: a, .. } = &mut self.call {
            a.extend(attributes.into_iter().map(|(k, v)| (k.into(), v.into())));
        }
        self
    }
}

impl<S: Serialize> Act<S> {
    /// The journal's form of this step.
    pub fn erase(self) -> Result<Action, String> {
        let step = serde_json::to_value(&self.step)
            .map_err(|e| format!("step {} cannot be journaled: {e}", self.name))?;
        Ok(Action {
            name: self.name,
            step: step.into(),
            call: self.call,
            retry: self.retry,
        })
    }
}

/// A workflow kind, typed: its state and step types, its pure transitions, and the handlers
/// that perform its [`Call::Handler`] steps through the ports it was built with.
///
/// `start`, `advance` and `compensation` do no I/O and read no clock; `perform` calls ports
/// and nothing else.
#[async_trait]
pub trait Flow: Send + Sync + 'static {
    /// The name routes use.
    const KIND: &'static str;
    /// Everything the workflow remembers between steps; journaled as JSON.
    type State: Serialize + DeserializeOwned + Send + Sync;
    /// The workflow's step kinds, each carrying its request.
    type Step: Serialize + DeserializeOwned + Send + Sync + std::fmt::Debug;

    /// Where an instance's progress is kept while it goes well (see [`Durability`]).
    const DURABILITY: Durability = Durability::Journal;

    /// The first state and step for an event and the route's params; an error dead-letters the
    /// event with the reason.
    fn start(
        &self,
        event: &Value,
        params: &Value,
    ) -> Result<(Self::State, Decision<Self::Step>), String>;

    /// See [`crate::contract::Workflow::identity`].
    fn identity(&self, _event: &Value, _params: &Value) -> Option<String> {
        None
    }

    /// What to do after `step` finished with `outcome`.
    fn advance(
        &self,
        state: &mut Self::State,
        step: Self::Step,
        outcome: Result<Value, StepError>,
    ) -> Decision<Self::Step>;

    /// What undoes a failed run; run as ordinary steps after the failure is journaled.
    fn compensation(&self, _state: &Self::State) -> Vec<Act<Self::Step>> {
        Vec::new()
    }

    /// Performs one [`Call::Handler`] step. The default refuses: a workflow whose steps are
    /// all generic calls needs no handler.
    async fn perform(&self, ctx: StepContext<'_>, step: &Self::Step) -> Result<Value, StepError> {
        let _ = ctx;
        Err(StepError::permanent(format!(
            "workflow {} has no handler for step {step:?}",
            Self::KIND
        )))
    }
}

/// The [`Workflow`] of a [`Flow`].
#[derive(Debug, Clone, Default)]
pub struct Typed<F>(pub F);

fn erase<S: Serialize>(next: Decision<S>) -> Next {
    match next {
        Next::Run(act) => match act.erase() {
            Ok(a) => Next::Run(a),
            Err(e) => Next::Fail(e),
        },
        Next::Continue(act) => match act.erase() {
            Ok(a) => Next::Continue(a),
            Err(e) => Next::Fail(e),
        },
        Next::Complete(v) => Next::Complete(v),
        Next::Fail(reason) => Next::Fail(reason),
    }
}

fn to_state<S: Serialize>(state: &S) -> Result<Value, String> {
    serde_json::to_value(state).map_err(|e| format!("state cannot be journaled: {e}"))
}

#[async_trait]
impl<F: Flow> Workflow for Typed<F> {
    fn kind(&self) -> &'static str {
        F::KIND
    }

    fn identity(&self, event: &Value, params: &Value) -> Option<String> {
        self.0.identity(event, params)
    }

    fn durability(&self) -> Durability {
        F::DURABILITY
    }

    fn start(&self, event: &Value, params: &Value) -> Result<Transition, String> {
        let (state, next) = self.0.start(event, params)?;
        Ok(Transition {
            state: to_state(&state)?,
            next: erase(next),
        })
    }

    fn advance(
        &self,
        state: Value,
        done: &Action,
        outcome: Result<Value, StepError>,
    ) -> Transition {
        // A record written by an incompatible build fails the instance with the reason, rather
        // than being misread.
        let fail = |state: Value, why: String| Transition {
            state,
            next: Next::Fail(why),
        };
        // Read from the values in place (no copy of the event a step may carry).
        let mut typed: F::State = match F::State::deserialize(&state) {
            Ok(s) => s,
            Err(e) => return fail(state, format!("journaled state does not parse: {e}")),
        };
        let step: F::Step = match F::Step::deserialize(done.step.as_ref()) {
            Ok(s) => s,
            Err(e) => {
                return fail(
                    state,
                    format!("journaled step {} does not parse: {e}", done.name),
                );
            }
        };
        let next = erase(self.0.advance(&mut typed, step, outcome));
        match to_state(&typed) {
            Ok(state) => Transition { state, next },
            Err(e) => fail(state, e),
        }
    }

    fn compensation(&self, state: &Value) -> Vec<Action> {
        let Ok(typed) = F::State::deserialize(state) else {
            return Vec::new();
        };
        self.0
            .compensation(&typed)
            .into_iter()
            .filter_map(|a| a.erase().ok())
            .collect()
    }

    async fn perform(&self, ctx: StepContext<'_>, step: &Value) -> Result<Value, StepError> {
        let step: F::Step = F::Step::deserialize(step).map_err(|e| {
            StepError::permanent(format!("journaled step {} does not parse: {e}", ctx.step))
        })?;
        self.0.perform(ctx, &step).await
    }

    async fn run_direct(&self, event: &Value, params: &Value, workflow_id: &str) -> Direct {
        if F::DURABILITY != Durability::Message {
            return Direct::Journal(None);
        }
        // The start as the lifecycle would take it; anything but a handler's step goes the
        // journaled way (which takes the start again and decides what it means).
        let Ok((mut state, Next::Run(act))) = self.0.start(event, params) else {
            return Direct::Journal(None);
        };
        if act.call != Call::Handler {
            return Direct::Journal(None);
        }
        let ctx = StepContext {
            workflow_id,
            step: &act.name,
            attempt: 1,
            generation: 0,
            continued: 0,
            event,
        };
        let result = match self.0.perform(ctx, &act.step).await {
            Ok(result) => result,
            Err(e) => return Direct::Journal(Some((act.name, Err(e)))),
        };
        match self.0.advance(&mut state, act.step, Ok(result.clone())) {
            Next::Complete(_) => Direct::Done {
                step: act.name,
                result,
            },
            _ => Direct::Journal(Some((act.name, Ok(result)))),
        }
    }
}

/// A step's output read as the type its handler returned; an error names the type.
pub fn output<T: DeserializeOwned>(value: Value) -> Result<T, String> {
    serde_json::from_value(value).map_err(|e| {
        let name = std::any::type_name::<T>();
        let short = name.rsplit("::").next().unwrap_or(name);
        format!("unreadable {short}: {e}")
    })
}

/// A handler's typed result as the step's output.
pub fn to_output<T: Serialize>(value: &T) -> Result<Value, StepError> {
    serde_json::to_value(value)
        .map_err(|e| StepError::permanent(format!("the step's result cannot be journaled: {e}")))
}
