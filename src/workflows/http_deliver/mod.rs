//! `http_deliver` (seed plan 5): delivers each matching event to an HTTP destination, the way
//! EventBridge API destinations do — auth from the destination's connection, a rate limit in
//! invocations per second shared by every route using it, retries on 429, 5xx, timeouts and
//! connection errors with jittered back-off that honours `Retry-After`, bounded by the
//! destination's `max_age` and `max_attempts`; any other 4xx (or 3xx) is permanent and the
//! event goes to the DLQ with the status and an excerpt of the answer.
//!
//! Steps: `deliver` → complete. The message is deleted only after a 2xx. The message is the
//! record ([`Durability::Message`]): a delivery that goes well writes nothing to the journal;
//! the first failed attempt journals the instance, which then retries as any other.
//!
//! Params:
//! - `destination`: a `[destinations.NAME]`; default the only one configured.
//! - `body`: a JSON template over the event (a Slack webhook: `{ text = "Task {detail.taskArn}
//!   stopped: {detail.stoppedReason}" }`); default the event itself.
//! - `maps`: value maps for `|map:NAME` filters.
//!
//! A body value `"{secret:NAME}"` is `[secrets] NAME` (set it from the environment,
//! `TUGBOAT__SECRETS__NAME`): the journal and the console hold `[secret NAME]` in its place, and
//! the value is put in only as the request is sent. (Auth and headers belong in the
//! destination, which is never journaled.)

pub mod config;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Registration;
use super::params::{configured_name, only_known};
use super::template::{BodyTemplate, maps_param};
use crate::contract::{
    Durability,
    Act, Decision, Flow, Next, RetryPolicy, StepContext, StepError, Typed, decode, output,
    params_or_empty, to_output,
};
use crate::ports::Destination;
use crate::ports::http::Response;

pub const KIND: &str = "http_deliver";

pub fn registration() -> Registration {
    Registration::new(KIND, Some(config::SECTION), |setup| {
        Box::pin(async move {
            let settings = setup
                .config
                .section::<config::Destinations>(config::NAME)
                .map_err(|b| b.to_string())?;
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
            // A route's body naming a secret that is not configured stops the start here, not
            // at the first event. (Its params were checked at load: parsed again, they parse.)
            let names: Vec<String> = destinations.keys().cloned().collect();
            for (i, route) in setup.config.routes.iter().enumerate() {
                if route.workflow != KIND {
                    continue;
                }
                let params = serde_json::to_value(&route.params)
                    .map_err(|e| format!("routes[{i}].params: {e}"))?;
                let p = Params::parse(&params, &names).map_err(|e| format!("routes[{i}].{e}"))?;
                let places = p.body.as_ref().map(BodyTemplate::secrets).unwrap_or_default();
                if let Some((_, name)) =
                    places.into_iter().find(|(_, n)| !setup.config.secrets.contains_key(n))
                {
                    return Err(format!(
                        "routes[{i}].params.body: secret {name:?} is not configured (set [secrets] {name}, e.g. TUGBOAT__SECRETS__{})",
                        name.to_ascii_uppercase()
                    ));
                }
            }
            let secrets = Arc::new(setup.config.secrets.clone());
            Ok(Arc::new(Typed(HttpDeliver::new(destinations, secrets))) as Arc<dyn crate::contract::Workflow>)
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

/// The workflow: the configured destinations and `[secrets]`.
#[derive(Debug, Clone)]
pub struct HttpDeliver {
    pub destinations: BTreeMap<String, Target>,
    pub secrets: Arc<BTreeMap<String, secrecy::SecretString>>,
    /// Each route's params, parsed at its first event.
    parsed: Arc<super::params::Parsed<Params>>,
}

impl HttpDeliver {
    pub fn new(
        destinations: BTreeMap<String, Target>,
        secrets: Arc<BTreeMap<String, secrecy::SecretString>>,
    ) -> HttpDeliver {
        HttpDeliver {
            destinations,
            secrets,
            parsed: Arc::default(),
        }
    }
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

#[derive(Debug)]
struct Params {
    destination: String,
    body: Option<BodyTemplate>,
    maps: super::template::Maps,
}

const KNOWN: [&str; 3] = ["destination", "body", "maps"];

/// The params as they are written, before the body's template is parsed (`destination` and
/// `maps` are read on their own: a destination must be a configured one, maps feed the body).
#[derive(Debug, Deserialize)]
#[serde(expecting = "an object")]
struct RawParams {
    body: Option<Value>,
}

impl Params {
    fn parse(params: &Value, destinations: &[String]) -> Result<Params, String> {
        only_known(params, KIND, &KNOWN)?;
        let destination = configured_name(params, "destination", destinations, "destinations")?;
        let maps = maps_param(params)?;
        let raw: RawParams = decode(params_or_empty(params), "params")?;
        let body = match &raw.body {
            None => None,
            Some(b) => Some(
                BodyTemplate::parse_with_secrets(b, &maps).map_err(|e| format!("params.{e}"))?,
            ),
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

/// The one step. Its result is [`Delivered`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// `body` holds `[secret NAME]` where each of `secrets` (JSON pointer, name) goes; no
    /// body: the event itself (sent from the record, not copied into the step).
    Deliver {
        destination: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<Value>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        secrets: Vec<(String, String)>,
    },
}

/// The deliver step's result: the destination's 2xx status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivered {
    pub status: u16,
}

/// The workflow's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub destination: String,
    pub status: u16,
}

/// What an answer means for the delivery: 2xx delivered; 429 and 5xx worth another attempt
/// (no sooner than its `Retry-After`); anything else permanent.
pub fn classify(response: &Response) -> Result<Delivered, StepError> {
    let status = response.status;
    if (200..300).contains(&status) {
        return Ok(Delivered { status });
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
    // One idempotent step: the message is the record until something goes wrong.
    const DURABILITY: Durability = Durability::Message;
    type State = State;
    type Step = Step;

    fn start(&self, event: &Value, params: &Value) -> Result<(State, Decision<Step>), String> {
        let p = self.parsed.get_or(params, || {
            let names: Vec<String> = self.destinations.keys().cloned().collect();
            Params::parse(params, &names)
        })?;
        let body = match &p.body {
            None => None,
            Some(t) => Some(t.render(event, &p.maps).map_err(|e| format!("body: {e}"))?),
        };
        let retry = self.destinations[&p.destination].retry.clone();
        let step = Step::Deliver {
            destination: p.destination.clone(),
            body,
            secrets: p.body.as_ref().map(BodyTemplate::secrets).unwrap_or_default(),
        };
        let state = State {
            destination: p.destination.clone(),
        };
        Ok((state, Next::Run(Act::handler("deliver", step).retry(retry))))
    }

    fn advance(&self, s: &mut State, _step: Step, outcome: Result<Value, StepError>) -> Decision<Step> {
        match outcome {
            Ok(v) => match output::<Delivered>(v) {
                Ok(Delivered { status }) => Next::done(&Output {
                    destination: s.destination.clone(),
                    status,
                }),
                Err(e) => Next::Fail(e),
            },
            Err(e) => Next::Fail(format!("delivery to {}: {}", s.destination, e.message)),
        }
    }

    async fn perform(&self, ctx: StepContext<'_>, step: &Step) -> Result<Value, StepError> {
        let Step::Deliver {
            destination,
            body,
            secrets,
        } = step;
        let target = self.destinations.get(destination).ok_or_else(|| {
            StepError::permanent(format!(
                "destination {destination:?} is no longer configured (the event was started under an earlier configuration)"
            ))
        })?;
        let body = body.as_ref().unwrap_or(ctx.event);
        let body = if secrets.is_empty() {
            std::borrow::Cow::Borrowed(body)
        } else {
            let mut filled = body.clone();
            super::template::fill_secrets(&mut filled, secrets, &self.secrets)
                .map_err(StepError::permanent)?;
            std::borrow::Cow::Owned(filled)
        };
        match target.endpoint.send(&body).await {
            Ok(response) => to_output(&classify(&response)?),
            Err(e) => Err(StepError::retryable(e.0)),
        }
    }
}
