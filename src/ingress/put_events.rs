//! EventBridge's `PutEvents` as the ingress reads and answers it
//! (<https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEvents.html>): up to
//! 10 entries, each `Source`, `DetailType` and `Detail` (a JSON object as a string) required,
//! `Resources`, `Time`, `EventBusName`, `TraceHeader` optional; an entry over 256 KiB or
//! malformed fails alone (its `ErrorCode` and `ErrorMessage` in the answer, counted in
//! `FailedEntryCount`) while the others are accepted. Pure: the listener does the sending.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An entry's largest size, counted as EventBridge counts it (the entry's JSON).
pub const MAX_ENTRY: usize = 256 * 1024;
/// Entries in one request.
pub const MAX_ENTRIES: usize = 10;

#[derive(Debug, Deserialize)]
pub struct PutEventsRequest {
    #[serde(rename = "Entries")]
    pub entries: Vec<Value>,
    #[serde(rename = "EndpointId", default)]
    pub endpoint_id: Option<String>,
}

/// One entry's result, as `PutEvents` answers it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntryResult {
    #[serde(rename = "EventId", skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(rename = "ErrorCode", skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(rename = "ErrorMessage", skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

impl EntryResult {
    pub fn accepted(id: String) -> EntryResult {
        EntryResult {
            event_id: Some(id),
            error_code: None,
            error_message: None,
        }
    }

    pub fn failed(code: &str, message: impl Into<String>) -> EntryResult {
        EntryResult {
            event_id: None,
            error_code: Some(code.to_owned()),
            error_message: Some(message.into()),
        }
    }
}

/// The answer: entries in the request's order.
pub fn answer(results: &[EntryResult]) -> Value {
    json!({
        "FailedEntryCount": results.iter().filter(|r| r.error_code.is_some()).count(),
        "Entries": results,
    })
}

/// An entry as the EventBridge-shaped event tugboat routes, given its new id, the region and
/// the time now (RFC 3339) for an entry without `Time`; `Err` is the entry's error
/// (`MalformedDetail`, `InvalidArgument`, …) and message.
pub fn event_of(
    entry: &Value,
    id: &str,
    region: &str,
    now: &str,
) -> Result<Value, (&'static str, String)> {
    let size = entry.to_string().len();
    if size > MAX_ENTRY {
        return Err((
            "EntrySizeTooLarge",
            format!("the entry is {size} bytes; at most {MAX_ENTRY}"),
        ));
    }
    let Some(fields) = entry.as_object() else {
        return Err(("InvalidArgument", "an entry must be a JSON object".into()));
    };
    let text = |name: &str| -> Result<Option<&str>, (&'static str, String)> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err((
                "InvalidArgument",
                format!("{name} must be a string, got {other}"),
            )),
        }
    };
    let source = text("Source")?.filter(|s| !s.is_empty()).ok_or((
        "InvalidArgument",
        "Parameter Source is not valid. Reason: Source is a required argument.".to_owned(),
    ))?;
    let detail_type = text("DetailType")?.filter(|s| !s.is_empty()).ok_or((
        "InvalidArgument",
        "Parameter DetailType is not valid. Reason: DetailType is a required argument.".to_owned(),
    ))?;
    let detail_text = text("Detail")?.ok_or((
        "InvalidArgument",
        "Parameter Detail is not valid. Reason: Detail is a required argument.".to_owned(),
    ))?;
    let detail: Value = serde_json::from_str(detail_text)
        .map_err(|e| ("MalformedDetail", format!("Detail is not valid JSON: {e}")))?;
    if !detail.is_object() {
        return Err(("MalformedDetail", "Detail must be a JSON object".into()));
    }
    if source.starts_with("aws.") {
        return Err((
            "NotAuthorizedForSourceException",
            format!("Not authorized for the source {source:?} (aws.* sources are AWS's)"),
        ));
    }
    let resources = match fields.get("Resources") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items.clone(),
        Some(_) => {
            return Err((
                "InvalidArgument",
                "Resources must be a list of strings".into(),
            ));
        }
    };
    let time = match fields.get("Time") {
        None | Some(Value::Null) => now.to_owned(),
        // SDKs send a timestamp as epoch seconds in the JSON 1.1 protocol.
        Some(Value::Number(n)) => n
            .as_f64()
            .and_then(|s| jiff::Timestamp::from_millisecond((s * 1000.0) as i64).ok())
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .ok_or(("InvalidArgument", format!("Time {n} is not a time")))?,
        Some(Value::String(s)) => s
            .parse::<jiff::Timestamp>()
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .map_err(|_| ("InvalidArgument", format!("Time {s:?} is not a time")))?,
        Some(other) => {
            return Err(("InvalidArgument", format!("Time {other} is not a time")));
        }
    };
    Ok(json!({
        "version": "0",
        "id": id,
        "detail-type": detail_type,
        "source": source,
        "account": "",
        "time": time,
        "region": region,
        "resources": resources,
        "detail": detail,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-12-07T10:00:00Z";

    fn event(entry: Value) -> Result<Value, (&'static str, String)> {
        event_of(&entry, "id-1", "eu-west-1", NOW)
    }

    #[test]
    fn an_entry_becomes_an_eventbridge_event() {
        let e = event(json!({"Source": "my.app", "DetailType": "Order Placed",
            "Detail": "{\"order\": 7}", "Resources": ["arn:x"], "Time": 1796637600}))
        .unwrap();
        assert_eq!(e["source"], "my.app");
        assert_eq!(e["detail-type"], "Order Placed");
        assert_eq!(e["detail"]["order"], 7);
        assert_eq!(e["resources"][0], "arn:x");
        assert_eq!(e["time"], "2026-12-07T10:00:00Z");
        assert_eq!(e["id"], "id-1");
        assert_eq!(e["region"], "eu-west-1");
        let e = event(json!({"Source": "a", "DetailType": "b", "Detail": "{}"})).unwrap();
        assert_eq!(e["time"], NOW);
    }

    #[test]
    fn a_malformed_entry_fails_alone_naming_what_is_wrong() {
        for (entry, code, says) in [
            (
                json!({"DetailType": "b", "Detail": "{}"}),
                "InvalidArgument",
                "Source",
            ),
            (
                json!({"Source": "a", "Detail": "{}"}),
                "InvalidArgument",
                "DetailType",
            ),
            (
                json!({"Source": "a", "DetailType": "b"}),
                "InvalidArgument",
                "Detail is",
            ),
            (
                json!({"Source": "a", "DetailType": "b", "Detail": "{"}),
                "MalformedDetail",
                "not valid JSON",
            ),
            (
                json!({"Source": "a", "DetailType": "b", "Detail": "[1]"}),
                "MalformedDetail",
                "object",
            ),
            (
                json!({"Source": 5, "DetailType": "b", "Detail": "{}"}),
                "InvalidArgument",
                "string",
            ),
            (
                json!({"Source": "a", "DetailType": "b", "Detail": "{}", "Resources": "x"}),
                "InvalidArgument",
                "Resources",
            ),
            (
                json!({"Source": "a", "DetailType": "b", "Detail": "{}", "Time": "soon"}),
                "InvalidArgument",
                "Time",
            ),
            (
                json!({"Source": "aws.ec2", "DetailType": "b", "Detail": "{}"}),
                "NotAuthorizedForSourceException",
                "aws.ec2",
            ),
            (json!("just a string"), "InvalidArgument", "object"),
        ] {
            let (c, m) = event(entry.clone()).unwrap_err();
            assert_eq!(c, code, "{entry}: {m}");
            assert!(m.contains(says), "{entry}: {m}");
        }
        let big = "x".repeat(MAX_ENTRY);
        let (c, _) = event(json!({"Source": "a", "DetailType": "b",
            "Detail": format!("{{\"x\":\"{big}\"}}")}))
        .unwrap_err();
        assert_eq!(c, "EntrySizeTooLarge");
    }

    #[test]
    fn the_answer_counts_the_failed_entries() {
        let a = answer(&[
            EntryResult::accepted("e1".into()),
            EntryResult::failed("MalformedDetail", "no"),
        ]);
        assert_eq!(a["FailedEntryCount"], 1);
        assert_eq!(a["Entries"][0], json!({"EventId": "e1"}));
        assert_eq!(
            a["Entries"][1],
            json!({"ErrorCode": "MalformedDetail", "ErrorMessage": "no"})
        );
    }
}
