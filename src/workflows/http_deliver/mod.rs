//! `http_deliver` (seed plan 5): delivers each matching event to an HTTP destination, the way
//! EventBridge API destinations do — auth from the destination's connection, a rate limit in
//! invocations per second shared by every route using it, retries on 429, 5xx, timeouts and
//! connection errors with jittered back-off that honours `Retry-After`, bounded by the
//! destination's `max_age` and `max_attempts`; any other 4xx (or 3xx) is permanent and the
//! event goes to the DLQ with the status and an excerpt of the answer.
//!
//! Steps: `deliver` → complete. The message is deleted only after a 2xx.
//!
//! Params:
//! - `destination`: a `[destinations.NAME]`; default the only one configured.
//! - `body`: a JSON template over the event (a Slack webhook: `{ text = "Task {detail.taskArn}
//!   stopped: {detail.stoppedReason}" }`); default the event itself.
//! - `maps`: value maps for `|map:NAME` filters.

pub mod config;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Registration;
use super::params::{configured_name, only_known};
use super::template::{BodyTemplate, maps_param};
use crate::contract::{Act, Decision, Flow, Next, RetryPolicy, StepContext, StepError, Typed};
use crate::ports::Destination;
use crate::ports::http::Response;

pub const KIND: &str = "http_deliver";

pub fn registration() -> Registration {
    Registration::new(KIND, Some(config::SECTION), |setup| {
        Box::pin(async move {
            let settings = setup
                .config
                .section::<config::Destinations>(config::NAME)
                .map_err(|(key, message)| format!("{key}: {message}"))?;
            let mut destinations = BTreeMap::new();
            for (name, s) in &settings {
                let endpoint = setup.ports.http.destination(name, s)?;
                destinations.insert(
                    name.clone(),
                    Target {
                        endpoint,
                        retry: retry_policy(s.max_attempts, s.max_age),
                    },
                );
            }
            Ok(Arc::new(Typed(HttpDeliver { destinations })) as Arc<dyn crate::contract::Workflow>)
        })
    })
    .with_params_check(|params, sections| {
        let names: Vec<String> = config::from_sections(sections)?.keys().cloned().collect();
        Params::parse(params, &names).map(|_| ())
    })
}

/// A destination as the workflow holds it: the shared endpoint and its retry bounds.
#[derive(Debug, Clone)]
pub struct Target {
    pub endpoint: Arc<dyn Destination>,
    pub retry: RetryPolicy,
}

/// The workflow: the configured destinations.
#[derive(Debug, Clone)]
pub struct HttpDeliver {
    pub destinations: BTreeMap<String, Target>,
}

/// EventBridge-like retries: exponential back-off with full jitter from 1 s, capped at 15 min
/// so that the default 185 attempts spread over about the default 24 h.
pub fn retry_policy(max_attempts: u32, max_age: Duration) -> RetryPolicy {
    RetryPolicy {
        initial_interval: Duration::from_secs(1),
        coefficient: 2.0,
        max_interval: Duration::from_secs(15 * 60),
        max_attempts,
        deadline: Some(max_age),
    }
}

struct Params {
    destination: String,
    body: Option<BodyTemplate>,
    maps: super::template::Maps,
}

const KNOWN: [&str; 3] = ["destination", "body", "maps"];

impl Params {
    fn parse(params: &Value, destinations: &[String]) -> Result<Params, String> {
        only_known(params, KIND, &KNOWN)?;
        let destination = configured_name(params, "destination", destinations, "destinations")?;
        let maps = maps_param(params)?;
        let body = match params.get("body") {
            None => None,
            Some(b) => Some(BodyTemplate::parse(b, &maps).map_err(|e| format!("params.{e}"))?),
        };
        Ok(Params {
            destination,
            body,
            maps,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub destination: String,
}

/// The one step. Its result is `{"status": 2xx}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Deliver { destination: String, body: Value },
}

/// What an answer means for the delivery: 2xx delivered; 429 and 5xx worth another attempt
/// (no sooner than its `Retry-After`); anything else permanent.
pub fn classify(response: &Response) -> Result<Value, StepError> {
    let status = response.status;
    if (200..300).contains(&status) {
        return Ok(json!({"status": status}));
    }
    let message = if response.excerpt.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {}", response.excerpt)
    };
    if status == 429 || (500..600).contains(&status) {
        Err(StepError::retryable(message).after(response.retry_after))
    } else {
        Err(StepError::permanent(message))
    }
}

#[async_trait]
impl Flow for HttpDeliver {
    const KIND: &'static str = KIND;
    type State = State;
    type Step = Step;

    fn start(&self, event: &Value, params: &Value) -> Result<(State, Decision<Step>), String> {
        let names: Vec<String> = self.destinations.keys().cloned().collect();
        let p = Params::parse(params, &names)?;
        let body = match &p.body {
            None => event.clone(),
            Some(t) => t.render(event, &p.maps).map_err(|e| format!("body: {e}"))?,
        };
        let retry = self.destinations[&p.destination].retry.clone();
        let step = Step::Deliver {
            destination: p.destination.clone(),
            body,
        };
        let state = State {
            destination: p.destination,
        };
        Ok((state, Next::Run(Act::handler("deliver", step).retry(retry))))
    }

    fn advance(&self, s: &mut State, _step: Step, outcome: Result<Value, StepError>) -> Decision<Step> {
        match outcome {
            Ok(v) => Next::Complete(json!({"destination": s.destination, "status": v["status"]})),
            Err(e) => Next::Fail(format!("delivery to {}: {}", s.destination, e.message)),
        }
    }

    async fn perform(&self, _ctx: StepContext<'_>, step: &Step) -> Result<Value, StepError> {
        let Step::Deliver { destination, body } = step;
        let target = self.destinations.get(destination).ok_or_else(|| {
            StepError::permanent(format!(
                "destination {destination:?} is no longer configured (the event was started under an earlier configuration)"
            ))
        })?;
        match target.endpoint.send(body).await {
            Ok(response) => classify(&response),
            Err(e) => Err(StepError::retryable(e.0)),
        }
    }
}
