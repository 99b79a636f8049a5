//! `mqtt_publish` (seed plan 4): publishes each matching event to an MQTT topic built from the
//! event, so that a laptop or a backend can subscribe with wildcards
//! (`fluxer/aws/instances/+/+`, `fluxer/aws/#`).
//!
//! Steps: `publish` (through the broker's shared connection; counts only once the broker
//! acknowledged it — PUBACK for QoS 1) → complete. A broker that is down or a lost
//! acknowledgement is retryable: the step retries with back-off and the message waits in the
//! queue. A topic hole the event lacks fails the event for good, naming the field.
//! The message is the record ([`Durability::Message`]): a publish that goes well writes
//! nothing to the journal; the first failed attempt journals the instance.
//!
//! Params:
//! - `broker`: a `[brokers.NAME]`; default the only one configured.
//! - `topic`: a template (`fluxer/aws/instances/{detail.instance-id}/{detail.state}`; see
//!   [`crate::workflows::template`]). Required. A filled value may not contain `/`, `+`, `#`.
//! - `maps`: value maps for `|map:NAME` filters.
//! - `body`: a JSON template; default `{"timestamp","region","source","detail"}` of the event.
//! - `qos`: 0 or 1, default 1. `retain`: default false.
//! - `retry`: the publish's retry policy; default 1 s doubling to 30 s, for an hour or 120
//!   attempts, so that a broker restart delays events and loses none.

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
use super::template::{BodyTemplate, Maps, Template, maps_param, topic_level};
use crate::contract::{
    Durability,
    Act, Decision, Flow, Next, RetryPolicy, StepContext, StepError, Typed, decode,
    params_or_empty,
};
use crate::ports::Broker;
use crate::ports::mqtt::{Publication, Qos};

pub const KIND: &str = "mqtt_publish";

pub fn registration() -> Registration {
    Registration::new(KIND, Some(config::SECTION), |setup| {
        Box::pin(async move {
            let settings = setup
                .config
                .section::<config::Brokers>(config::NAME)
                .map_err(|b| b.to_string())?;
            let mut brokers = BTreeMap::new();
            for (name, s) in &settings {
                brokers.insert(name.clone(), setup.ports.mqtt.broker(name, s)?);
            }
            Ok(Arc::new(Typed(MqttPublish::new(brokers))) as Arc<dyn crate::contract::Workflow>)
        })
    })
    .with_params_check(|params, sections| {
        let brokers = config::from_sections(sections)?;
        Params::parse(params, &brokers.keys().cloned().collect::<Vec<_>>()).map(|_| ())
    })
}

/// The workflow: one shared connection per configured broker.
#[derive(Debug, Clone, Default)]
pub struct MqttPublish {
    pub brokers: BTreeMap<String, Arc<dyn Broker>>,
    /// Each route's params, parsed at its first event.
    parsed: Arc<super::params::Parsed<Params>>,
}

impl MqttPublish {
    pub fn new(brokers: BTreeMap<String, Arc<dyn Broker>>) -> MqttPublish {
        MqttPublish {
            brokers,
            parsed: Arc::default(),
        }
    }
}

/// A route's params, parsed.
#[derive(Debug)]
struct Params {
    broker: String,
    topic: Template,
    maps: Maps,
    body: Option<BodyTemplate>,
    qos: Qos,
    retain: bool,
    retry: RetryPolicy,
}

/// The default retry of a publish: a broker restart should delay events, not lose them.
pub fn default_retry() -> RetryPolicy {
    RetryPolicy {
        initial_interval: Duration::from_secs(1),
        coefficient: 2.0,
        max_interval: Duration::from_secs(30),
        max_attempts: 120,
        deadline: Some(Duration::from_secs(3600)),
    }
}

const KNOWN: [&str; 7] = ["broker", "topic", "maps", "body", "qos", "retain", "retry"];

/// The params as they are written, before the templates are parsed (`broker` and `maps` are
/// read on their own: a broker must be a configured one, maps feed the templates).
#[derive(Debug, Deserialize)]
#[serde(expecting = "an object")]
struct RawParams {
    topic: Option<Value>,
    body: Option<Value>,
    #[serde(default = "at_least_once")]
    qos: Qos,
    #[serde(default)]
    retain: bool,
    #[serde(default = "default_retry")]
    retry: RetryPolicy,
}

fn at_least_once() -> Qos {
    Qos::AtLeastOnce
}

impl Params {
    /// `brokers` are the configured broker names.
    fn parse(params: &Value, brokers: &[String]) -> Result<Params, String> {
        only_known(params, KIND, &KNOWN)?;
        let broker = configured_name(params, "broker", brokers, "brokers")?;
        let maps = maps_param(params)?;
        let raw: RawParams = decode(params_or_empty(params), "params")?;
        let topic = match raw.topic {
            Some(Value::String(t)) => {
                Template::parse(&t, &maps).map_err(|e| format!("params.topic: {e}"))?
            }
            Some(other) => return Err(format!("params.topic must be a text, got {other}")),
            None => return Err("params.topic is required (a template such as \"fluxer/aws/instances/{detail.instance-id}/{detail.state}\")".into()),
        };
        let body = match &raw.body {
            None => None,
            Some(b) => Some(BodyTemplate::parse(b, &maps).map_err(|e| format!("params.{e}"))?),
        };
        let RawParams {
            qos, retain, retry, ..
        } = raw;
        Ok(Params {
            broker,
            topic,
            maps,
            body,
            qos,
            retain,
            retry,
        })
    }
}

/// The default body: what a subscriber needs to know without the whole envelope (written
/// from the event in place, without a copy of it).
/// (Its fields in the order a JSON object's keys are written: the payload is what it was.)
#[derive(Serialize)]
struct DefaultBody<'a> {
    detail: Option<&'a Value>,
    region: Option<&'a Value>,
    source: Option<&'a Value>,
    timestamp: Option<&'a Value>,
}

fn default_payload(event: &Value) -> String {
    let body = DefaultBody {
        timestamp: event.get("time"),
        region: event.get("region"),
        source: event.get("source"),
        detail: event.get("detail"),
    };
    serde_json::to_string(&body).unwrap_or_default()
}

/// Where the event was published: the state, and the workflow's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub broker: String,
    pub topic: String,
}

/// The one step. Its result is `{}` once the broker acknowledged the publication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Publish {
        broker: String,
        publication: Publication,
    },
}

#[async_trait]
impl Flow for MqttPublish {
    const KIND: &'static str = KIND;
    // One idempotent step: the message is the record until something goes wrong.
    const DURABILITY: Durability = Durability::Message;
    type State = State;
    type Step = Step;

    fn start(&self, event: &Value, params: &Value) -> Result<(State, Decision<Step>), String> {
        let p = self.parsed.get_or(params, || {
            let names: Vec<String> = self.brokers.keys().cloned().collect();
            Params::parse(params, &names)
        })?;
        let topic = p
            .topic
            .render_with(event, &p.maps, topic_level)
            .map_err(|e| format!("topic: {e}"))?;
        let payload = match &p.body {
            None => default_payload(event),
            Some(t) => match t.render(event, &p.maps).map_err(|e| format!("body: {e}"))? {
                Value::String(s) => s,
                other => other.to_string(),
            },
        };
        let state = State {
            broker: p.broker.clone(),
            topic: topic.clone(),
        };
        let step = Step::Publish {
            broker: p.broker.clone(),
            publication: Publication {
                topic,
                payload,
                qos: p.qos,
                retain: p.retain,
            },
        };
        Ok((state, Next::Run(Act::handler("publish", step).retry(p.retry.clone()))))
    }

    fn advance(&self, s: &mut State, _step: Step, outcome: Result<Value, StepError>) -> Decision<Step> {
        match outcome {
            // The state is the output: where the event went.
            Ok(_) => Next::done(s),
            Err(e) => Next::Fail(format!(
                "publish to {} on broker {}: {}",
                s.topic, s.broker, e.message
            )),
        }
    }

    async fn perform(&self, _ctx: StepContext<'_>, step: &Step) -> Result<Value, StepError> {
        let Step::Publish {
            broker,
            publication,
        } = step;
        let connection = self.brokers.get(broker).ok_or_else(|| {
            StepError::permanent(format!(
                "broker {broker:?} is no longer configured (the event was started under an earlier configuration)"
            ))
        })?;
        match connection.publish(publication.clone()).await {
            Ok(()) => Ok(json!({})),
            Err(e) if e.retryable => Err(StepError::retryable(e.message)),
            Err(e) => Err(StepError::permanent(e.message)),
        }
    }
}
