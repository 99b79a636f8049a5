//! Decoding SQS message bodies into events.
//!
//! Every event comes out EventBridge-shaped (`source`, `detail-type`, `detail`, …), so that one
//! route pattern matches an event however it arrived:
//!
//! - an EventBridge envelope is taken as it is (a missing `version` or `account` is tolerated);
//! - a tugboat command event is the same without `id` (`{"source", "detail-type", "detail"}`);
//! - an S3 notification (`Records[]`) gives one event per record, shaped like S3's own
//!   EventBridge events (`source` `aws.s3`, `detail-type` `Object Created`, `detail.bucket.name`,
//!   `detail.object.key`, …); S3's `s3:TestEvent` is recognised and ignored;
//! - an SNS envelope (raw delivery off) is unwrapped and its `Message` decoded in turn; a message
//!   that is not itself an event becomes `source` `aws.sns`, `detail-type` `SNS Notification`;
//! - a Lambda-style SQS batch (`Records[]` of `aws:sqs`) gives the events of each record's body
//!   (a body that is not an event becomes `source` `aws.sqs`, `detail-type` `SQS Message`);
//! - a PutEvents request's entries (`[{"Source", "DetailType", "Detail": "<json>"}]`) give one
//!   event each.
//!
//! Anything else is a [`DecodeError`] with the reason, and goes to the DLQ.

pub mod doc;
pub mod peek;

use serde_json::{Map, Value, json};

/// SQS's largest message body; a larger body cannot have come from SQS and is refused.
pub const MAX_BODY_BYTES: usize = crate::ports::queue::MAX_MESSAGE_BYTES;

/// How deep envelopes may nest (SNS inside SQS batch inside SNS …) before the body is refused.
const MAX_NESTING: usize = 4;

/// One decoded event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event's identity, from which workflow ids are derived: the EventBridge `id`, the S3
    /// `bucket/key/sequencer`, the SNS `MessageId`, or (for command events) the SQS message id.
    pub identity: String,
    /// The EventBridge-shaped event that route patterns match.
    pub body: Value,
}

/// What a message body holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Events(Vec<Event>),
    /// A message to acknowledge and otherwise ignore (S3's test event), with the reason.
    Ignore(String),
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// Decodes an SQS message body; `message_id` is the identity of command events.
pub fn decode(body: &str, message_id: &str) -> Result<Decoded, DecodeError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(DecodeError(format!(
            "body of {} bytes is over the limit of {MAX_BODY_BYTES}",
            body.len()
        )));
    }
    let value: Value = serde_json::from_str(body)
        .map_err(|e| DecodeError(format!("body is not valid JSON: {e}")))?;
    decode_value(value, message_id, 0)
}

fn decode_value(value: Value, fallback_id: &str, depth: usize) -> Result<Decoded, DecodeError> {
    if depth > MAX_NESTING {
        return Err(DecodeError(format!(
            "envelopes nested deeper than {MAX_NESTING}"
        )));
    }
    if let Value::Array(entries) = &value
        && !entries.is_empty()
        && entries
            .iter()
            .all(|e| e.get("Source").is_some() && e.get("DetailType").is_some())
    {
        return decode_put_events_entries(entries, fallback_id);
    }
    let Value::Object(object) = value else {
        return Err(DecodeError(format!(
            "body is JSON but not an object (it is {})",
            kind_of(&value)
        )));
    };
    if object.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Decoded::Ignore("S3 test event (s3:TestEvent)".into()));
    }
    if let Some(records) = object.get("Records") {
        return decode_records(records, fallback_id, depth);
    }
    if object.get("Type").and_then(Value::as_str) == Some("Notification")
        && object.contains_key("TopicArn")
    {
        return decode_sns(object, depth);
    }
    if object.contains_key("source") || object.contains_key("detail-type") {
        return decode_eventbridge(object, fallback_id).map(|e| Decoded::Events(vec![e]));
    }
    let keys: Vec<&str> = object.keys().map(String::as_str).take(8).collect();
    Err(DecodeError(format!(
        "unknown event shape: not an EventBridge event, S3 notification, SNS envelope or tugboat command (keys: {})",
        if keys.is_empty() {
            "none".to_string()
        } else {
            keys.join(", ")
        }
    )))
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn string_field<'a>(
    object: &'a Map<String, Value>,
    field: &str,
    what: &str,
) -> Result<&'a str, DecodeError> {
    match object.get(field) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(DecodeError(format!(
            "{what}: field {field:?} must be a string, got {}",
            kind_of(other)
        ))),
        None => Err(DecodeError(format!("{what}: missing field {field:?}"))),
    }
}

/// An EventBridge envelope, or a command event (the same without `id`).
fn decode_eventbridge(object: Map<String, Value>, fallback_id: &str) -> Result<Event, DecodeError> {
    let what = "EventBridge event";
    string_field(&object, "source", what)?;
    string_field(&object, "detail-type", what)?;
    match object.get("detail") {
        None | Some(Value::Object(_)) => {}
        Some(other) => {
            return Err(DecodeError(format!(
                "{what}: field \"detail\" must be an object, got {}",
                kind_of(other)
            )));
        }
    }
    let identity = match object.get("id") {
        None => fallback_id.to_owned(),
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        Some(other) => {
            return Err(DecodeError(format!(
                "{what}: field \"id\" must be a non-empty string, got {other}"
            )));
        }
    };
    Ok(Event {
        identity,
        body: Value::Object(object),
    })
}

fn decode_records(
    records: &Value,
    fallback_id: &str,
    depth: usize,
) -> Result<Decoded, DecodeError> {
    let Value::Array(records) = records else {
        return Err(DecodeError(format!(
            "field \"Records\" must be an array, got {}",
            kind_of(records)
        )));
    };
    if records.is_empty() {
        return Err(DecodeError("field \"Records\" is empty".into()));
    }
    let mut events = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let Value::Object(r) = record else {
            return Err(DecodeError(format!("Records[{i}] is not an object")));
        };
        let source = r
            .get("eventSource")
            .or_else(|| r.get("EventSource"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let decoded = match source {
            "aws:s3" => Decoded::Events(vec![
                s3_record(r).map_err(|e| DecodeError(format!("Records[{i}]: {}", e.0)))?,
            ]),
            "aws:sqs" => {
                let body = string_field(r, "body", "SQS record")?;
                let id = r
                    .get("messageId")
                    .and_then(Value::as_str)
                    .unwrap_or(fallback_id);
                match serde_json::from_str::<Value>(body)
                    .map(|inner| decode_value(inner, id, depth + 1))
                {
                    Ok(Ok(decoded)) => decoded,
                    // A body that is not an event is still a message someone sent.
                    _ => Decoded::Events(vec![Event {
                        identity: id.to_owned(),
                        body: json!({
                            "source": "aws.sqs",
                            "detail-type": "SQS Message",
                            "id": id,
                            "region": r.get("awsRegion").cloned().unwrap_or(Value::Null),
                            "resources": [r.get("eventSourceARN").cloned().unwrap_or(Value::Null)],
                            "detail": {
                                "body": serde_json::from_str::<Value>(body).unwrap_or_else(|_| Value::String(body.to_owned())),
                                "message-attributes": r.get("messageAttributes").cloned().unwrap_or(Value::Null),
                            },
                        }),
                    }]),
                }
            }
            "aws:sns" => {
                let Some(Value::Object(sns)) = r.get("Sns") else {
                    return Err(DecodeError(format!(
                        "Records[{i}]: SNS record without an \"Sns\" object"
                    )));
                };
                decode_sns(sns.clone(), depth + 1)?
            }
            other => {
                return Err(DecodeError(format!(
                    "Records[{i}]: unknown eventSource {other:?}"
                )));
            }
        };
        if let Decoded::Events(mut e) = decoded {
            events.append(&mut e);
        }
    }
    if events.is_empty() {
        return Ok(Decoded::Ignore("the records hold no events".into()));
    }
    Ok(Decoded::Events(events))
}

/// The entries of a PutEvents request: `Source`, `DetailType`, `Detail` (a JSON string),
/// `Resources`, `Time`.
fn decode_put_events_entries(entries: &[Value], fallback_id: &str) -> Result<Decoded, DecodeError> {
    let mut events = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let what = format!("PutEvents entry {i}");
        let Value::Object(e) = entry else {
            return Err(DecodeError(format!("{what} is not an object")));
        };
        let source = string_field(e, "Source", &what)?;
        let detail_type = string_field(e, "DetailType", &what)?;
        let detail = match e.get("Detail") {
            None => json!({}),
            Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
                Ok(d @ Value::Object(_)) => d,
                _ => {
                    return Err(DecodeError(format!(
                        "{what}: \"Detail\" must hold a JSON object"
                    )));
                }
            },
            Some(other) => {
                return Err(DecodeError(format!(
                    "{what}: \"Detail\" must be a string, got {}",
                    kind_of(other)
                )));
            }
        };
        let identity = format!("{fallback_id}#{i}");
        events.push(Event {
            body: json!({
                "source": source,
                "detail-type": detail_type,
                "id": identity,
                "time": e.get("Time").cloned().unwrap_or(Value::Null),
                "resources": e.get("Resources").cloned().unwrap_or(json!([])),
                "detail": detail,
            }),
            identity,
        });
    }
    Ok(Decoded::Events(events))
}

/// One S3 notification record, shaped like S3's EventBridge event.
fn s3_record(r: &Map<String, Value>) -> Result<Event, DecodeError> {
    let what = "S3 record";
    let name = string_field(r, "eventName", what)?;
    let s3 = r
        .get("s3")
        .and_then(Value::as_object)
        .ok_or_else(|| DecodeError(format!("{what}: missing object \"s3\"")))?;
    let bucket = s3
        .get("bucket")
        .and_then(Value::as_object)
        .ok_or_else(|| DecodeError(format!("{what}: missing object \"s3.bucket\"")))?;
    let object = s3
        .get("object")
        .and_then(Value::as_object)
        .ok_or_else(|| DecodeError(format!("{what}: missing object \"s3.object\"")))?;
    let bucket_name = string_field(bucket, "name", "S3 record bucket")?;
    let key = string_field(object, "key", "S3 record object")?;
    // Notification keys are URL-encoded ('+' for spaces); S3's EventBridge events are not.
    let key = url_decode(key);
    let sequencer = object
        .get("sequencer")
        .and_then(Value::as_str)
        .unwrap_or("");
    let detail_type = if name.starts_with("ObjectCreated") {
        "Object Created"
    } else if name.starts_with("ObjectRemoved") {
        "Object Deleted"
    } else if name.starts_with("ObjectRestore") {
        "Object Restore Completed"
    } else {
        "Object Event"
    };
    let mut detail_object = json!({"key": key});
    for field in ["size", "eTag", "versionId", "sequencer"] {
        if let Some(v) = object.get(field) {
            let name = if field == "eTag" {
                "etag"
            } else if field == "versionId" {
                "version-id"
            } else {
                field
            };
            detail_object[name] = v.clone();
        }
    }
    let region = r.get("awsRegion").cloned().unwrap_or(Value::Null);
    let record = Value::Object(r.clone());
    let at = |pointer: &str| record.pointer(pointer).cloned().unwrap_or(Value::Null);
    let body = json!({
        "source": "aws.s3",
        "detail-type": detail_type,
        "time": r.get("eventTime").cloned().unwrap_or(Value::Null),
        "region": region,
        "resources": [format!("arn:aws:s3:::{bucket_name}")],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket_name},
            "object": detail_object,
            "reason": name,
            "request-id": at("/responseElements/x-amz-request-id"),
            "requester": at("/userIdentity/principalId"),
            "source-ip-address": at("/requestParameters/sourceIPAddress"),
        },
    });
    Ok(Event {
        identity: format!("{bucket_name}/{key}/{sequencer}"),
        body,
    })
}

/// `%2F` → `/`, `+` → space; malformed escapes are kept as they are.
fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_owned())
}

fn decode_sns(object: Map<String, Value>, depth: usize) -> Result<Decoded, DecodeError> {
    let what = "SNS envelope";
    let message_id = string_field(&object, "MessageId", what)?.to_owned();
    let message = string_field(&object, "Message", what)?.to_owned();
    // The message may itself be an event (EventBridge → SNS → SQS, S3 → SNS → SQS).
    if let Ok(inner @ Value::Object(_)) = serde_json::from_str::<Value>(&message)
        && let Ok(decoded) = decode_value(inner.clone(), &message_id, depth + 1)
    {
        return Ok(decoded);
    }
    let parsed = serde_json::from_str::<Value>(&message).unwrap_or(Value::String(message));
    let topic = object.get("TopicArn").cloned().unwrap_or(Value::Null);
    let body = json!({
        "source": "aws.sns",
        "detail-type": "SNS Notification",
        "id": message_id,
        "time": object.get("Timestamp").cloned().unwrap_or(Value::Null),
        "resources": [topic.clone()],
        "detail": {
            "topic-arn": topic,
            "subject": object.get("Subject").cloned().unwrap_or(Value::Null),
            "message": parsed,
            "message-attributes": object.get("MessageAttributes").cloned().unwrap_or(Value::Null),
        },
    });
    Ok(Decoded::Events(vec![Event {
        identity: message_id,
        body,
    }]))
}

#[cfg(test)]
mod tests;
