//! The Task resources a running definition calls, each through a port: SNS `publish` (any
//! topic by ARN), SQS `sendMessage`, DynamoDB `putItem`, `getItem` and `updateItem` (any
//! table), Step Functions' HTTP task through a configured `[destinations]` entry, and
//! `tugboat:mqtt:publish` through a configured `[brokers]` entry.
//!
//! A Task's payload is its rendered `Parameters` (the names Step Functions uses). A failure
//! comes back named as a `Retry` or `Catch` matches it: `Tugboat.Retryable` (throttling, a
//! 5xx, a timeout, a broker that is down — worth another attempt), `Tugboat.Permanent` (access
//! denied, a queue that does not exist, a payload the resource refuses), and an HTTP answer
//! that is not 2xx as `States.Http.StatusCode.NNN`, a DynamoDB refusal as Step Functions
//! names it (`DynamoDB.ConditionalCheckFailedException`). `States.TaskFailed` and
//! `States.ALL` match them all.
//!
//! Side effects carry the visit's idempotency key (the same for every attempt of the state in
//! this run): the SNS deduplication attribute and, on a FIFO queue, the message's
//! deduplication id unless the definition gives one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::definition::Resource;
use super::flow::task_error;
use crate::contract::StepError;
use crate::ports::items::{self, Expressions, Get, Items, Put, Returns, Update};
use crate::ports::mqtt::{Publication, Qos};
use crate::ports::{BrokerSettings, Destination, Mqtt, Notifier, OutgoingMessage, Queue, QueueSource};

/// What a Task's call may reach: the ports, the configured brokers and destinations.
pub struct Reach {
    pub notifier: Arc<dyn Notifier>,
    pub items: Arc<dyn Items>,
    pub queues: Arc<dyn QueueSource>,
    pub mqtt: Arc<dyn Mqtt>,
    pub brokers: BTreeMap<String, BrokerSettings>,
    pub destinations: BTreeMap<String, Arc<dyn Destination>>,
    /// Queues already opened, by URL or name.
    opened: Mutex<BTreeMap<String, Arc<dyn Queue>>>,
}

impl std::fmt::Debug for Reach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reach")
            .field("brokers", &self.brokers.keys().collect::<Vec<_>>())
            .field("destinations", &self.destinations.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What the Task resources take, by name: (required, optional). A definition is checked
/// against it when it loads, where its `Parameters` name the fields.
pub fn parameters(resource: Resource) -> (&'static [&'static str], &'static [&'static str]) {
    match resource {
        Resource::SnsPublish => (&["TopicArn", "Message"], &["Subject", "MessageAttributes"]),
        Resource::SqsSendMessage => (
            &["QueueUrl", "MessageBody"],
            &["MessageAttributes", "MessageGroupId", "MessageDeduplicationId", "DelaySeconds"],
        ),
        Resource::HttpInvoke => (&["Destination"], &["Method", "RequestBody"]),
        Resource::MqttPublish => (&["Broker", "Topic", "Payload"], &["Qos", "Retain"]),
        Resource::DynamoPutItem => (
            &["TableName", "Item"],
            &["ConditionExpression", "ExpressionAttributeNames", "ExpressionAttributeValues", "ReturnValues"],
        ),
        Resource::DynamoGetItem => (&["TableName", "Key"], &["ConsistentRead", "ProjectionExpression", "ExpressionAttributeNames"]),
        Resource::DynamoUpdateItem => (
            &["TableName", "Key", "UpdateExpression"],
            &["ConditionExpression", "ExpressionAttributeNames", "ExpressionAttributeValues", "ReturnValues"],
        ),
        Resource::EcsRunTaskSync => (
            &["Service"],
            &["Environment", "Command", "Revision", "Tags", "Count", "PollInterval", "RunningTimeout", "HealthyTimeout"],
        ),
    }
}

/// Checks the field names of a Task's `Parameters` against what `resource` takes; the error starts with the field's pointer tail
/// (`/Subjekt: …`) or `: ` for a missing one.
pub fn check_names<'a>(resource: Resource, names: impl Iterator<Item = &'a str> + Clone) -> Result<(), String> {
    let (required, optional) = parameters(resource);
    for name in names.clone() {
        if !required.contains(&name) && !optional.contains(&name) {
            let takes: Vec<&str> = required.iter().chain(optional).copied().collect();
            return Err(format!("/{name}: not a parameter of {} (it takes {})", resource.arn(), takes.join(", ")));
        }
    }
    if let Some(missing) = required.iter().find(|r| !names.clone().any(|n| n == **r)) {
        return Err(format!(": {} needs {missing}", resource.arn()));
    }
    Ok(())
}

fn permanent(cause: impl std::fmt::Display) -> StepError {
    task_error("Tugboat.Permanent", cause, false)
}

/// A port's failure, named by whether it is worth another attempt.
fn port(message: impl std::fmt::Display, retryable: bool) -> StepError {
    if retryable { task_error("Tugboat.Retryable", message, true) } else { permanent(message) }
}

fn text<'a>(payload: &'a Value, field: &str) -> Result<&'a str, StepError> {
    match payload.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(other) => Err(permanent(format!("Parameters.{field} must be a non-empty string, got {other}"))),
        None => Err(permanent(format!("Parameters.{field} is required"))),
    }
}

/// A message body as Step Functions sends one: a string as it is, anything else as JSON.
fn body(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `MessageAttributes` (`{"name": {"DataType": "String", "StringValue": "v"}}`) as string
/// attributes; tugboat's own (`tugboat-…`) are not a definition's to set.
fn attributes(payload: &Value) -> Result<BTreeMap<String, String>, StepError> {
    let mut out = BTreeMap::new();
    let Some(v) = payload.get("MessageAttributes") else { return Ok(out) };
    let Value::Object(map) = v else {
        return Err(permanent("Parameters.MessageAttributes must be an object of {\"DataType\", \"StringValue\"}"));
    };
    for (name, a) in map {
        if name.to_ascii_lowercase().starts_with("tugboat-") {
            return Err(permanent(format!("Parameters.MessageAttributes.{name}: tugboat-… attributes are tugboat's own")));
        }
        let value = match (a.get("DataType").and_then(Value::as_str), a.get("StringValue")) {
            (Some("String" | "Number"), Some(Value::String(s))) => s.clone(),
            _ => return Err(permanent(format!("Parameters.MessageAttributes.{name} must be {{\"DataType\": \"String\"|\"Number\", \"StringValue\": \"…\"}}"))),
        };
        out.insert(name.clone(), value);
    }
    Ok(out)
}

impl Reach {
    pub fn new(
        notifier: Arc<dyn Notifier>,
        items: Arc<dyn Items>,
        queues: Arc<dyn QueueSource>,
        mqtt: Arc<dyn Mqtt>,
        brokers: BTreeMap<String, BrokerSettings>,
        destinations: BTreeMap<String, Arc<dyn Destination>>,
    ) -> Reach {
        Reach { notifier, items, queues, mqtt, brokers, destinations, opened: Mutex::new(BTreeMap::new()) }
    }

    /// Performs one Task call with idempotency key `key`.
    pub async fn call(&self, resource: Resource, payload: &Value, key: &str) -> Result<Value, StepError> {
        if !payload.is_object() {
            return Err(permanent(format!("the Parameters of {} must be an object, got {payload}", resource.arn())));
        }
        match resource {
            Resource::SnsPublish => self.publish(payload, key).await,
            Resource::SqsSendMessage => self.send(payload, key).await,
            Resource::HttpInvoke => self.invoke(payload).await,
            Resource::MqttPublish => self.mqtt(payload).await,
            Resource::DynamoPutItem | Resource::DynamoGetItem | Resource::DynamoUpdateItem => self.dynamodb(resource, payload).await,
            other => Err(permanent(format!("{} is not a call of its own (the engine runs its steps)", other.arn()))),
        }
    }

    async fn publish(&self, payload: &Value, key: &str) -> Result<Value, StepError> {
        let topic = text(payload, "TopicArn")?;
        let message = payload.get("Message").ok_or_else(|| permanent("Parameters.Message is required"))?;
        let subject = match payload.get("Subject") {
            None => "",
            Some(Value::String(s)) => s,
            Some(other) => return Err(permanent(format!("Parameters.Subject must be a string, got {other}"))),
        };
        let attributes = attributes(payload)?;
        let id = self.notifier.publish_to(topic, subject, message, key, &attributes).await.map_err(|e| port(e.message, e.retryable))?;
        Ok(json!({"MessageId": id}))
    }

    async fn queue(&self, url: &str) -> Result<Arc<dyn Queue>, StepError> {
        if let Some(q) = self.opened.lock().unwrap_or_else(|e| e.into_inner()).get(url) {
            return Ok(q.clone());
        }
        let q = self.queues.open(url).await.map_err(|e| port(format!("queue {url}: {}", e.message), e.retryable))?;
        self.opened.lock().unwrap_or_else(|e| e.into_inner()).insert(url.to_string(), q.clone());
        Ok(q)
    }

    async fn send(&self, payload: &Value, key: &str) -> Result<Value, StepError> {
        let url = text(payload, "QueueUrl")?;
        let message = payload.get("MessageBody").ok_or_else(|| permanent("Parameters.MessageBody is required"))?;
        let optional = |field: &str| -> Result<Option<String>, StepError> {
            match payload.get(field) {
                None => Ok(None),
                Some(_) => text(payload, field).map(|s| Some(s.to_string())),
            }
        };
        let group_id = optional("MessageGroupId")?;
        // On a FIFO queue the visit's key makes a repeated send one message.
        let deduplication_id = optional("MessageDeduplicationId")?.or_else(|| group_id.as_ref().map(|_| key.to_string()));
        let delay = match payload.get("DelaySeconds") {
            None => None,
            Some(v) => match v.as_u64() {
                Some(s) if s <= 900 => Some(std::time::Duration::from_secs(s)),
                _ => return Err(permanent(format!("Parameters.DelaySeconds must be 0 to 900, got {v}"))),
            },
        };
        let outgoing = OutgoingMessage { body: body(message), attributes: attributes(payload)?, group_id, deduplication_id, delay };
        let queue = self.queue(url).await?;
        let id = queue.send(&outgoing).await.map_err(|e| port(e.message, e.retryable))?;
        Ok(json!({"MessageId": id}))
    }

    async fn invoke(&self, payload: &Value) -> Result<Value, StepError> {
        let name = text(payload, "Destination")?;
        let endpoint = self.destinations.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.destinations.keys().map(String::as_str).collect();
            permanent(format!("Parameters.Destination {name:?} is not a [destinations] name (configured: {})", known.join(", ")))
        })?;
        if let Some(m) = payload.get("Method")
            && !m.as_str().is_some_and(|m| m.eq_ignore_ascii_case("POST"))
        {
            return Err(permanent(format!("Parameters.Method {m}: a destination is sent POST requests")));
        }
        let request = payload.get("RequestBody").cloned().unwrap_or_else(|| json!({}));
        let response = endpoint.send(&request).await.map_err(|e| task_error("Tugboat.Retryable", e.0, true))?;
        let body = serde_json::from_str::<Value>(&response.excerpt).unwrap_or(Value::String(response.excerpt.clone()));
        if (200..300).contains(&response.status) {
            return Ok(json!({"StatusCode": response.status, "ResponseBody": body}));
        }
        let retryable = response.status == 408 || response.status == 429 || response.status >= 500;
        Err(task_error(&format!("States.Http.StatusCode.{}", response.status), response.excerpt, retryable))
    }

    async fn mqtt(&self, payload: &Value) -> Result<Value, StepError> {
        let name = text(payload, "Broker")?;
        let settings = self.brokers.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.brokers.keys().map(String::as_str).collect();
            permanent(format!("Parameters.Broker {name:?} is not a [brokers] name (configured: {})", known.join(", ")))
        })?;
        let topic = text(payload, "Topic")?;
        check_topic(topic).map_err(permanent)?;
        let message = payload.get("Payload").ok_or_else(|| permanent("Parameters.Payload is required"))?;
        let qos = match payload.get("Qos") {
            None => Qos::AtLeastOnce,
            Some(v) => {
                let n = v.as_u64().and_then(|n| u8::try_from(n).ok()).ok_or_else(|| permanent(format!("Parameters.Qos must be 0 or 1, got {v}")))?;
                Qos::try_from(n).map_err(|e| permanent(format!("Parameters.Qos: {e}")))?
            }
        };
        let retain = match payload.get("Retain") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(permanent(format!("Parameters.Retain must be true or false, got {other}"))),
        };
        let broker = self.mqtt.broker(name, settings).map_err(permanent)?;
        let publication = Publication { topic: topic.to_string(), payload: body(message), qos, retain };
        broker.publish(publication).await.map_err(|e| port(e.message, e.retryable))?;
        Ok(json!({"Topic": topic}))
    }
}

/// A DynamoDB failure as Step Functions names it: `DynamoDB.<code>` for a refusal
/// (`DynamoDB.ConditionalCheckFailedException`), `Tugboat.Retryable` for what is worth
/// another attempt.
fn dynamodb_error(e: StepError) -> StepError {
    if e.retryable {
        return port(e.message, true);
    }
    // The adapter's message is `Operation: Code: message`.
    let code = e.message.split(": ").nth(1).filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric()));
    match code {
        Some(code) => task_error(&format!("DynamoDB.{code}"), &e.message, false),
        None => permanent(e.message),
    }
}

fn expressions(payload: &Value) -> Result<Expressions, StepError> {
    let condition = match payload.get("ConditionExpression") {
        None => None,
        Some(_) => Some(text(payload, "ConditionExpression")?.to_string()),
    };
    Ok(Expressions { condition, names: names(payload)?, values: typed(payload, "ExpressionAttributeValues", false)? })
}

fn names(payload: &Value) -> Result<BTreeMap<String, String>, StepError> {
    match payload.get("ExpressionAttributeNames") {
        None => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(permanent(format!("Parameters.ExpressionAttributeNames.{k} must be a string, got {other}"))),
            })
            .collect(),
        Some(other) => Err(permanent(format!("Parameters.ExpressionAttributeNames must be an object, got {other}"))),
    }
}

/// An item, key or value map in DynamoDB's JSON, read at `Parameters.<field>`.
fn typed(payload: &Value, field: &str, required: bool) -> Result<items::Item, StepError> {
    match payload.get(field) {
        None if !required => Ok(items::Item::new()),
        None => Err(permanent(format!("Parameters.{field} is required"))),
        Some(v) => items::item(v, &format!("Parameters.{field}")).map_err(permanent),
    }
}

fn returns(payload: &Value) -> Result<Returns, StepError> {
    match payload.get("ReturnValues") {
        None => Ok(Returns::None),
        Some(Value::String(s)) => Returns::parse(s).map_err(|e| permanent(format!("Parameters.{e}"))),
        Some(other) => Err(permanent(format!("Parameters.ReturnValues must be a string, got {other}"))),
    }
}

impl Reach {
    /// A DynamoDB item call; the answer is the API's (`{"Item": …}`, `{"Attributes": …}`, or
    /// `{}`), values in DynamoDB's JSON, as Step Functions gives it.
    async fn dynamodb(&self, resource: Resource, payload: &Value) -> Result<Value, StepError> {
        let table = text(payload, "TableName")?.to_string();
        let (field, found) = match resource {
            Resource::DynamoPutItem => {
                let put = Put { table, item: typed(payload, "Item", true)?, expressions: expressions(payload)?, returns: returns(payload)? };
                ("Attributes", self.items.put(&put).await.map_err(dynamodb_error)?)
            }
            Resource::DynamoGetItem => {
                let consistent = match payload.get("ConsistentRead") {
                    None => false,
                    Some(Value::Bool(b)) => *b,
                    Some(other) => return Err(permanent(format!("Parameters.ConsistentRead must be true or false, got {other}"))),
                };
                let projection = match payload.get("ProjectionExpression") {
                    None => None,
                    Some(_) => Some(text(payload, "ProjectionExpression")?.to_string()),
                };
                let get = Get { table, key: typed(payload, "Key", true)?, consistent, projection, names: names(payload)? };
                ("Item", self.items.get(&get).await.map_err(dynamodb_error)?)
            }
            _ => {
                let update = Update {
                    table,
                    key: typed(payload, "Key", true)?,
                    update: text(payload, "UpdateExpression")?.to_string(),
                    expressions: expressions(payload)?,
                    returns: returns(payload)?,
                };
                ("Attributes", self.items.update(&update).await.map_err(dynamodb_error)?)
            }
        };
        Ok(match found {
            Some(item) if !item.is_empty() => json!({field: items::item_json(&item)}),
            _ => json!({}),
        })
    }
}

/// A topic a definition publishes to: no wildcards, no NUL (either makes the broker drop the
/// connection every route shares), not a `$` system topic, within MQTT's length.
pub fn check_topic(topic: &str) -> Result<(), String> {
    if topic.len() > 65_535 {
        return Err(format!("Parameters.Topic is {} bytes; MQTT allows 65 535", topic.len()));
    }
    if topic.starts_with('$') {
        return Err(format!("Parameters.Topic {topic:?}: topics beginning with $ are the broker's own"));
    }
    if let Some(c) = topic.chars().find(|c| matches!(c, '+' | '#' | '\0')) {
        return Err(format!("Parameters.Topic {topic:?} holds {c:?}: a publish names one topic, without wildcards"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::memory::{MemoryItems, MemoryMqtt, MemoryNotifier, MemoryQueues};

    fn reach() -> (Reach, Arc<MemoryNotifier>, Arc<MemoryQueues>) {
        let notifier = Arc::new(MemoryNotifier::default());
        let queues = Arc::new(MemoryQueues::default());
        let r = Reach::new(notifier.clone(), Arc::new(MemoryItems::default()), queues.clone(), Arc::new(MemoryMqtt::default()), BTreeMap::new(), BTreeMap::new());
        (r, notifier, queues)
    }

    #[tokio::test]
    async fn sns_publish_sends_the_message_with_the_visits_key() {
        let (r, notifier, _) = reach();
        let payload = json!({"TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": "hello", "Subject": "s",
            "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "x"}}});
        let out = r.call(Resource::SnsPublish, &payload, "k1").await.unwrap();
        assert!(out["MessageId"].is_string());
        let sent = notifier.published_to();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, "arn:aws:sns:us-east-1:1:t");
        assert_eq!(sent[0].2, json!("hello"));
        assert_eq!(sent[0].3["kind"], "x");
    }

    #[tokio::test]
    async fn wrong_parameters_are_a_permanent_failure_naming_the_field() {
        let (r, _, _) = reach();
        let cases = [
            (Resource::SnsPublish, json!({"Message": "m"}), "Parameters.TopicArn is required"),
            (Resource::SnsPublish, json!({"TopicArn": 3, "Message": "m"}), "Parameters.TopicArn must be"),
            (Resource::SnsPublish, json!({"TopicArn": "t", "Message": "m", "MessageAttributes": {"tugboat-kind": {"DataType": "String", "StringValue": "x"}}}), "tugboat's own"),
            (Resource::SnsPublish, json!({"TopicArn": "t", "Message": "m", "MessageAttributes": {"a": "x"}}), "MessageAttributes.a"),
            (Resource::SqsSendMessage, json!({"QueueUrl": "q"}), "MessageBody is required"),
            (Resource::SqsSendMessage, json!({"QueueUrl": "q", "MessageBody": "b", "DelaySeconds": 901}), "DelaySeconds"),
            (Resource::HttpInvoke, json!({"Destination": "nowhere"}), "not a [destinations] name"),
            (Resource::MqttPublish, json!({"Broker": "b", "Topic": "t", "Payload": 1}), "not a [brokers] name"),
            (Resource::SnsPublish, json!("text"), "must be an object"),
        ];
        for (resource, payload, want) in cases {
            let e = r.call(resource, &payload, "k").await.unwrap_err();
            assert!(!e.retryable, "{payload}");
            assert!(e.message.starts_with("Tugboat.Permanent: "), "{}", e.message);
            assert!(e.message.contains(want), "{payload}: {}", e.message);
        }
    }

    #[tokio::test]
    async fn a_queue_that_does_not_exist_is_permanent() {
        let (r, _, _) = reach();
        let e = r.call(Resource::SqsSendMessage, &json!({"QueueUrl": "nope", "MessageBody": {"a": 1}}), "k").await.unwrap_err();
        assert!(e.message.starts_with("Tugboat.Permanent: "), "{}", e.message);
    }

    #[tokio::test]
    async fn dynamodb_items_are_put_and_read_back_in_dynamodbs_json() {
        let (r, _, _) = reach();
        let item = json!({"pk": {"S": "run#1"}, "n": {"N": "3"}});
        assert_eq!(r.call(Resource::DynamoPutItem, &json!({"TableName": "t", "Item": item}), "k").await.unwrap(), json!({}));
        let got = r.call(Resource::DynamoGetItem, &json!({"TableName": "t", "Key": {"pk": {"S": "run#1"}}}), "k").await.unwrap();
        assert_eq!(got, json!({"Item": item}));
        let none = r.call(Resource::DynamoGetItem, &json!({"TableName": "t", "Key": {"pk": {"S": "other"}}}), "k").await.unwrap();
        assert_eq!(none, json!({}));
        for (payload, says) in [
            (json!({"TableName": "t", "Item": {"pk": "bare"}}), "Parameters.Item.pk: must be a typed value"),
            (json!({"TableName": "t", "Key": {"pk": {"S": "a"}}, "ConsistentRead": "yes"}), "ConsistentRead"),
            (json!({"Item": {}}), "Parameters.TableName is required"),
        ] {
            let resource = if payload.get("Key").is_some() { Resource::DynamoGetItem } else { Resource::DynamoPutItem };
            let e = r.call(resource, &payload, "k").await.unwrap_err();
            assert!(e.message.starts_with("Tugboat.Permanent: ") && e.message.contains(says), "{payload}: {}", e.message);
        }
    }

    #[test]
    fn a_dynamodb_refusal_is_named_as_step_functions_names_it() {
        let e = dynamodb_error(StepError::permanent("PutItem: ConditionalCheckFailedException: The conditional request failed"));
        assert!(e.message.starts_with("DynamoDB.ConditionalCheckFailedException: "), "{}", e.message);
        let e = dynamodb_error(StepError::retryable("PutItem: ThrottlingException: slow down"));
        assert!(e.message.starts_with("Tugboat.Retryable: ") && e.retryable, "{}", e.message);
        let e = dynamodb_error(StepError::permanent("no code here"));
        assert!(e.message.starts_with("Tugboat.Permanent: "), "{}", e.message);
    }

    #[test]
    fn topics_with_wildcards_or_system_prefixes_are_refused() {
        assert!(check_topic("ecs/web/oom").is_ok());
        for bad in ["a/+/b", "a/#", "$SYS/x", "a\0b"] {
            assert!(check_topic(bad).is_err(), "{bad:?}");
        }
    }
}
