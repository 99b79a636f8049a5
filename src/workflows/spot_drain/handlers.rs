//! The `[[spot.handlers]]`: who is told of a notice, in priority order, each bounded by its
//! own timeout and by the deadline, and retried within both (unlike a single short attempt:
//! a pager that answers 503 once still hears of the interruption).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{Either, join_all, select};
use serde_json::{Value, json};

use super::{Outcome, Verdict};
use super::config::{HandlerKind, HandlerSettings};
use super::notice::{Notice, rfc3339};
use crate::ports::clock::Clock;
use crate::ports::mqtt::{Publication, Qos};
use crate::ports::{
    Broker, BrokerSettings, Destination, DestinationSettings, Notifier, OutgoingMessage, Ports,
    Queue,
};
use crate::workflows::template::{BodyTemplate, Maps, Template, topic_level};

/// The first pause between attempts of a handler; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Handlers {
    all: Vec<Handler>,
}

#[derive(Debug)]
struct Handler {
    name: String,
    priority: u32,
    timeout: Duration,
    target: Target,
}

#[derive(Debug)]
enum Target {
    Http {
        destination: Arc<dyn Destination>,
        body: Option<BodyTemplate>,
    },
    Mqtt {
        broker: Arc<dyn Broker>,
        topic: Template,
        qos: Qos,
    },
    Sns {
        notifier: Arc<dyn Notifier>,
        topic: String,
        body: Option<BodyTemplate>,
    },
    Sqs {
        queue: Arc<dyn Queue>,
        body: Option<BodyTemplate>,
    },
}

/// Why one attempt failed, and whether another may succeed.
struct Failure {
    message: String,
    retryable: bool,
}

impl Handlers {
    /// Opens each handler's destination or broker; a name that is not configured, or a
    /// template that does not parse, stops the service from starting.
    pub async fn build(
        settings: &[HandlerSettings],
        destinations: &BTreeMap<String, DestinationSettings>,
        brokers: &BTreeMap<String, BrokerSettings>,
        ports: &Ports,
    ) -> Result<Handlers, String> {
        let maps = Maps::new();
        let mut all = Vec::new();
        for (i, h) in settings.iter().enumerate() {
            let key = |field: &str| format!("spot.handlers.{i}.{field}");
            let body_template = |body: &Option<Value>| match body {
                Some(b) => BodyTemplate::parse(b, &maps)
                    .map(Some)
                    .map_err(|e| format!("{}: {e}", key("body"))),
                None => Ok(None),
            };
            let target = match &h.kind {
                HandlerKind::Sns { topic, body } => Target::Sns {
                    notifier: ports.notifier.clone(),
                    topic: topic.clone(),
                    body: body_template(body)?,
                },
                HandlerKind::Sqs { queue, body } => Target::Sqs {
                    queue: ports
                        .queues
                        .open(queue)
                        .await
                        .map_err(|e| format!("{}: {e}", key("queue")))?,
                    body: body_template(body)?,
                },
                HandlerKind::Http { destination, body } => {
                    let d = destinations.get(destination).ok_or_else(|| {
                        format!(
                            "{}: no [destinations.{destination}] is configured",
                            key("destination")
                        )
                    })?;
                    let body = match body {
                        Some(b) => Some(
                            BodyTemplate::parse(b, &maps)
                                .map_err(|e| format!("{}: {e}", key("body")))?,
                        ),
                        None => None,
                    };
                    Target::Http {
                        destination: ports.http.destination(destination, d)?,
                        body,
                    }
                }
                HandlerKind::Mqtt { broker, topic, qos } => {
                    let b = brokers.get(broker).ok_or_else(|| {
                        format!("{}: no [brokers.{broker}] is configured", key("broker"))
                    })?;
                    Target::Mqtt {
                        broker: ports.mqtt.broker(broker, b)?,
                        topic: Template::parse(topic, &maps)
                            .map_err(|e| format!("{}: {e}", key("topic")))?,
                        qos: Qos::try_from(*qos).map_err(|e| format!("{}: {e}", key("qos")))?,
                    }
                }
            };
            all.push(Handler {
                name: h.name.clone(),
                priority: h.priority,
                timeout: h.timeout,
                target,
            });
        }
        Ok(Handlers { all })
    }

    /// Runs the handlers of `priority` together; one outcome each, as JSON (never an error:
    /// a handler that fails is reported, and the drain goes on).
    pub async fn run(
        &self,
        priority: u32,
        deadline_ms: u64,
        notice: &Notice,
        event: &Value,
        clock: &dyn Clock,
    ) -> Value {
        let group = self.all.iter().filter(|h| h.priority == priority);
        let outcomes = join_all(group.map(|h| h.run(deadline_ms, notice, event, clock))).await;
        json!(outcomes)
    }
}

impl Handler {
    async fn run(&self, deadline_ms: u64, notice: &Notice, event: &Value, clock: &dyn Clock) -> Outcome {
        let left = deadline_ms as i64 - clock.now_ms() as i64;
        let outcome = |outcome: Verdict, reason: Option<String>, detail: Value, left_ms: i64| Outcome {
            name: self.name.clone(),
            outcome,
            reason,
            detail,
            left_ms: Some(left_ms),
        };
        if left <= 0 {
            return outcome(
                Verdict::Skipped,
                Some(format!("the deadline passed {} ms before it could start", -left)),
                Value::Null,
                left,
            );
        }
        let bound = self.timeout.min(Duration::from_millis(left as u64));
        let last_error: Mutex<Option<String>> = Mutex::new(None);
        let attempts = Mutex::new(0u32);
        let started = clock.now_ms();
        let trying = async {
            let mut pause = FIRST_PAUSE;
            loop {
                *attempts.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                let view = view(notice, event, deadline_ms, clock.now_ms());
                match self.attempt(&view).await {
                    Ok(detail) => return Ok(detail),
                    Err(f) if !f.retryable => return Err(f.message),
                    Err(f) => {
                        *last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(f.message);
                        clock.sleep(pause).await;
                        pause = (pause * 2).min(MAX_PAUSE);
                    }
                }
            }
        };
        let result = match select(Box::pin(trying), clock.sleep(bound)).await {
            Either::Left((result, _)) => result,
            Either::Right(((), _)) => {
                let last = last_error.lock().unwrap_or_else(|e| e.into_inner()).take();
                Err(format!(
                    "cut off after {} ms{}",
                    bound.as_millis(),
                    last.map(|e| format!(" (last error: {e})")).unwrap_or_default()
                ))
            }
        };
        let now = clock.now_ms();
        let left = deadline_ms as i64 - now as i64;
        let attempts = *attempts.lock().unwrap_or_else(|e| e.into_inner());
        let took = json!({"attempts": attempts, "took_ms": now.saturating_sub(started)});
        match result {
            Ok(mut detail) => {
                if let (Some(d), Some(t)) = (detail.as_object_mut(), took.as_object()) {
                    d.extend(t.clone());
                }
                outcome(Verdict::Ok, None, detail, left)
            }
            Err(reason) => outcome(Verdict::Failed, Some(reason), took, left),
        }
    }

    async fn attempt(&self, view: &Value) -> Result<Value, Failure> {
        match &self.target {
            Target::Http { destination, body } => {
                let body = match body {
                    Some(t) => t.render(view, &Maps::new()).map_err(permanent)?,
                    None => view.clone(),
                };
                match destination.send(&body).await {
                    Ok(r) if (200..300).contains(&r.status) => Ok(json!({"status": r.status})),
                    Ok(r) => Err(Failure {
                        message: format!("HTTP {}: {}", r.status, r.excerpt),
                        retryable: r.status == 429 || r.status >= 500,
                    }),
                    Err(e) => Err(Failure {
                        message: e.0,
                        retryable: true,
                    }),
                }
            }
            Target::Mqtt { broker, topic, qos } => {
                // A value from the event (an instance id, a kind) fills one topic level: a
                // `/` or a wildcard would add levels, a NUL would make the broker drop the
                // connection every route shares.
                let topic = topic
                    .render_with(view, &Maps::new(), topic_level)
                    .map_err(permanent)?;
                let payload = view.to_string();
                broker
                    .publish(Publication {
                        topic: topic.clone(),
                        payload,
                        qos: *qos,
                        retain: false,
                    })
                    .await
                    .map_err(|e| Failure {
                        message: e.message,
                        retryable: e.retryable,
                    })?;
                Ok(json!({"topic": topic}))
            }
            Target::Sns {
                notifier,
                topic,
                body,
            } => {
                let message = render(body, view)?;
                let attributes = notice_attributes(view);
                let subject = format!(
                    "tugboat: {} {}",
                    view["kind"].as_str().unwrap_or_default(),
                    view["instance"].as_str().unwrap_or_default()
                );
                let dedup = view["identity"].as_str().unwrap_or_default();
                let id = notifier
                    .publish_to(topic, &subject, &message, dedup, &attributes)
                    .await
                    .map_err(|e| Failure {
                        message: e.message,
                        retryable: e.retryable,
                    })?;
                Ok(json!({"message_id": id}))
            }
            Target::Sqs { queue, body } => {
                let message = OutgoingMessage {
                    body: render(body, view)?.to_string(),
                    attributes: notice_attributes(view),
                    ..OutgoingMessage::default()
                };
                let id = queue.send(&message).await.map_err(|e| Failure {
                    message: e.message,
                    retryable: e.retryable,
                })?;
                Ok(json!({"message_id": id}))
            }
        }
    }
}

fn render(body: &Option<BodyTemplate>, view: &Value) -> Result<Value, Failure> {
    match body {
        Some(t) => t.render(view, &Maps::new()).map_err(permanent),
        None => Ok(view.clone()),
    }
}

/// `type` and `instance`, so that a subscription filter policy can pick notices.
fn notice_attributes(view: &Value) -> BTreeMap<String, String> {
    [("type", "kind"), ("instance", "instance")]
        .into_iter()
        .filter_map(|(name, field)| {
            let v = view[field].as_str()?;
            (!v.is_empty()).then(|| (name.to_owned(), v.to_owned()))
        })
        .collect()
}

fn permanent(message: String) -> Failure {
    Failure {
        message,
        retryable: false,
    }
}

/// What templates are filled from (and the default body): the notice, the time left, and
/// the event.
pub fn view(notice: &Notice, event: &Value, deadline_ms: u64, now_ms: u64) -> Value {
    let left_ms = deadline_ms as i64 - now_ms as i64;
    json!({
        "instance": notice.instances.first().cloned()
            .or_else(|| notice.task.as_ref().map(|t| t.arn.clone())).unwrap_or_default(),
        "instances": notice.instances,
        "kind": notice.kind.as_str(),
        "source": notice.source,
        "action": notice.action,
        "zone": notice.zone,
        "deadline": rfc3339(deadline_ms),
        "left_s": left_ms.max(0) / 1000,
        "left_ms": left_ms,
        "identity": notice.identity(),
        "event": event,
    })
}
