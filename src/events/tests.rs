use std::path::{Path, PathBuf};

use serde_json::json;

use super::*;

fn material() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(material().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn events(body: &str) -> Vec<Event> {
    match decode(body, "sqs-message-id").unwrap_or_else(|e| panic!("{e}: {body:.120}")) {
        Decoded::Events(e) => e,
        Decoded::Ignore(why) => panic!("ignored: {why}"),
    }
}

/// Every JSON event in the fixtures (tests/fixtures/events) decodes into EventBridge-shaped events.
#[test]
fn every_event_in_the_material_decodes() {
    let mut seen = 0;
    for dir in ["eventbridge", "sqs"] {
        let mut files: Vec<_> = std::fs::read_dir(material().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for path in files {
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue; // The .SNIPPET.txt files are truncated documentation, not JSON.
            }
            let body = std::fs::read_to_string(&path).unwrap();
            match decode(&body, "m-1").unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
                Decoded::Ignore(_) => assert!(path.to_string_lossy().contains("test-event")),
                Decoded::Events(events) => {
                    assert!(!events.is_empty(), "{}", path.display());
                    for e in events {
                        assert!(
                            e.body["source"].is_string(),
                            "{}: {}",
                            path.display(),
                            e.body
                        );
                        assert!(
                            e.body["detail-type"].is_string(),
                            "{}: {}",
                            path.display(),
                            e.body
                        );
                        assert!(!e.identity.is_empty());
                    }
                }
            }
            seen += 1;
        }
    }
    assert!(
        seen >= 39,
        "only {seen} files found; are the fixtures in tests/fixtures/events?"
    );
}

#[test]
fn eventbridge_events_keep_their_id_and_tolerate_missing_fields() {
    let e = events(&read(
        "eventbridge/ec2-spot-instance-interruption-warning.awsdocs.json",
    ));
    assert_eq!(e[0].identity, "12345678-1234-1234-1234-123456789012");
    assert_eq!(e[0].body["detail"]["instance-id"], "i-1234567890abcdef0");
    // The documented example has no "version".
    let e = events(&read(
        "eventbridge/ec2-instance-state-change-pending.awsdocs.json",
    ));
    assert_eq!(
        e[0].body["detail-type"],
        "EC2 Instance State-change Notification"
    );
}

#[test]
fn command_events_take_the_sqs_message_id() {
    let e = events(
        r#"{"source":"custom.app","detail-type":"Start ECS Task","detail":{"service":"auth"}}"#,
    );
    assert_eq!(e[0].identity, "sqs-message-id");
    assert_eq!(e[0].body["detail"]["service"], "auth");
}

#[test]
fn s3_notifications_become_s3_eventbridge_shaped_events() {
    let e = events(&read("sqs/s3-notification-objectcreated-put.awsdocs.json"));
    assert_eq!(e[0].body["source"], "aws.s3");
    assert_eq!(e[0].body["detail-type"], "Object Created");
    let bucket = e[0].body["detail"]["bucket"]["name"].as_str().unwrap();
    let key = e[0].body["detail"]["object"]["key"].as_str().unwrap();
    assert!(
        e[0].identity.starts_with(&format!("{bucket}/{key}/")),
        "{}",
        e[0].identity
    );
    let deleted = events(&read("sqs/s3-notification-delete.powertools.json"));
    assert_eq!(deleted[0].body["detail-type"], "Object Deleted");
    // Keys arrive URL-encoded in notifications.
    let body = json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "b"}, "object": {"key": "cur/2024+01/r%C3%A9port.csv.gz", "sequencer": "0A"}}}]});
    let e = events(&body.to_string());
    assert_eq!(
        e[0].body["detail"]["object"]["key"],
        "cur/2024 01/réport.csv.gz"
    );
    assert_eq!(e[0].identity, "b/cur/2024 01/réport.csv.gz/0A");
}

#[test]
fn the_s3_test_event_is_ignored() {
    let d = decode(&read("sqs/s3-notification-test-event.awsdocs.json"), "m").unwrap();
    assert!(matches!(d, Decoded::Ignore(ref why) if why.contains("s3:TestEvent")));
}

#[test]
fn sns_envelopes_are_unwrapped_raw_or_not() {
    let inner = read("eventbridge/ec2-spot-instance-interruption-warning.awsdocs.json");
    let envelope = json!({"Type": "Notification", "MessageId": "sns-1", "TopicArn": "arn:aws:sns:us-east-1:1:t",
        "Message": inner, "Timestamp": "2024-01-01T00:00:00Z"});
    let wrapped = events(&envelope.to_string());
    let raw = events(&inner);
    assert_eq!(
        wrapped[0].body, raw[0].body,
        "raw delivery and the envelope give the same event"
    );
    assert_eq!(wrapped[0].identity, "12345678-1234-1234-1234-123456789012");
    // A message that is not an event becomes an SNS notification event with the SNS id.
    let plain = json!({"Type": "Notification", "MessageId": "sns-2", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": "hello"});
    let e = events(&plain.to_string());
    assert_eq!(e[0].identity, "sns-2");
    assert_eq!(e[0].body["source"], "aws.sns");
    assert_eq!(e[0].body["detail"]["message"], "hello");
}

#[test]
fn lambda_sqs_and_put_events_batches_give_one_event_per_entry() {
    let e = events(&read(
        "sqs/lambda-sqs-event-with-s3-notification-body.powertools.json",
    ));
    assert!(e.iter().all(|e| e.body["source"] == "aws.s3"));
    let e = events(&read("sqs/lambda-sqs-event.lambda-rust.json"));
    assert_eq!(e[0].body["source"], "aws.sqs");
    assert_eq!(e[0].body["detail"]["body"], "Message Body");
    let e = events(&read(
        "eventbridge/aws-health-event-ecs-scheduled.putevents-entries.aws-health-tools.json",
    ));
    assert_eq!(e[0].body["detail"]["service"], "ECS");
    assert_ne!(
        e[0].identity,
        e.get(1).map(|x| x.identity.clone()).unwrap_or_default()
    );
}

#[test]
fn wrong_shapes_are_errors_with_reasons() {
    for (body, reason) in [
        ("", "not valid JSON"),
        ("nul\u{0}l", "not valid JSON"),
        ("42", "not an object (it is a number)"),
        ("null", "not an object (it is null)"),
        ("[]", "not an object (it is an array)"),
        ("{}", "unknown event shape"),
        (r#"{"detail-type": "x"}"#, "missing field \"source\""),
        (
            r#"{"source": "x", "detail-type": ["y"]}"#,
            "\"detail-type\" must be a string",
        ),
        (
            r#"{"source": "x", "detail-type": "y", "id": 5}"#,
            "\"id\" must be a non-empty string",
        ),
        (r#"{"Records": []}"#, "\"Records\" is empty"),
        (r#"{"Records": [1]}"#, "Records[0] is not an object"),
        (
            r#"{"Records": [{"eventSource": "aws:kinesis"}]}"#,
            "unknown eventSource",
        ),
        (
            r#"{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]}"#,
            "missing object \"s3\"",
        ),
        (
            r#"{"Type": "Notification", "TopicArn": "t", "Message": 5, "MessageId": "m"}"#,
            "\"Message\" must be a string",
        ),
        (
            r#"[{"Source": "s", "DetailType": "d", "Detail": "[1]"}]"#,
            "must hold a JSON object",
        ),
    ] {
        let err = decode(body, "m").expect_err(body);
        assert!(err.0.contains(reason), "{body:?}: {err}");
    }
    let big = format!("{{\"source\":\"{}\"}}", "a".repeat(MAX_BODY_BYTES));
    assert!(decode(&big, "m").unwrap_err().0.contains("over the limit"));
}

#[test]
fn nesting_is_bounded() {
    let mut body = read("eventbridge/ec2-spot-instance-interruption-warning.awsdocs.json");
    for i in 0..8 {
        body = json!({"Type": "Notification", "MessageId": format!("m{i}"), "TopicArn": "t", "Message": body}).to_string();
    }
    // Too deep to unwrap: it still decodes, as the outermost SNS notification.
    let e = events(&body);
    assert_eq!(e[0].body["source"], "aws.sns");
}
