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

// ---- peek: the one-pass read of the fields routes need ----

mod peeking {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use crate::events::doc::Num;
    use crate::events::peek::{Paths, Peeked, peek};

    fn paths(list: &[&[&str]]) -> Paths {
        let mut p = Paths::new();
        for path in list {
            p.add(&path.iter().map(|k| k.to_string()).collect::<Vec<_>>());
        }
        p
    }

    /// `event` keeping only what `peek` keeps: the shape's fields and those under `keep`.
    fn pruned(event: &Value, keep: &Paths) -> Value {
        let body = event.to_string();
        Value::from(&peek(&body, keep).unwrap_or_else(|| panic!("not peeked: {body}")))
    }

    #[test]
    fn kept_strings_numbers_and_literals_are_what_serde_json_reads() {
        let body = r#" { "source" : "a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00 é" ,
            "detail-type":"t", "detail": {"n": [0, -0, 1.5e3, 1E+2, 0.1, -7,
            9007199254740993, 18446744073709551615, 18446744073709551616,
            -9223372036854775808, -9223372036854775809, 123456789012345678901234567890.5,
            true, false, null, "x", {"deep": [{}]}, []]}, "unread": {"big": [1, 2, {"a": "b"}]} }"#;
        let keep = paths(&[&["detail", "n"]]);
        let whole: Value = serde_json::from_str(body).unwrap();
        let mut expected = whole.clone();
        expected.as_object_mut().unwrap().remove("unread");
        assert_eq!(Value::from(&peek(body, &keep).unwrap()), expected);
        // Numbers are held as serde_json holds them, integer or float.
        let Some(Peeked::Object(top)) = peek(body, &keep) else {
            panic!()
        };
        let detail = &top.iter().find(|(k, _)| k == "detail").unwrap().1;
        let Peeked::Object(fields) = detail else {
            panic!()
        };
        let Peeked::Array(items) = &fields[0].1 else {
            panic!()
        };
        for (peeked, read) in items.iter().zip(whole["detail"]["n"].as_array().unwrap()) {
            if let (Peeked::Num(a), Value::Number(b)) = (peeked, read) {
                assert_eq!(*a, Num::from(b), "{b}");
            }
        }
    }

    #[test]
    fn an_escaped_key_is_read_by_what_it_spells_and_a_repeated_key_keeps_its_last_value() {
        let body = r#"{"sour\u0063e": "s", "detail-type": "t", "source": "s2",
            "detail": {"a": 1, "a": 2}}"#;
        assert_eq!(
            pruned(
                &serde_json::from_str(body).unwrap(),
                &paths(&[&["detail", "a"]])
            ),
            json!({"source": "s2", "detail-type": "t", "detail": {"a": 2}})
        );
        let v = peek(body, &paths(&[&["detail", "a"]])).unwrap();
        assert_eq!(
            Value::from(&v),
            json!({"source": "s2", "detail-type": "t", "detail": {"a": 2}})
        );
    }

    /// What `serde_json` refuses, in a field no route reads, is refused here too (the body
    /// then goes to `decode`, which says why), never settled as matching nothing.
    #[test]
    fn malformed_json_in_unread_fields_is_not_taken() {
        let keep = paths(&[&["detail", "state"]]);
        for bad in [
            r#""\ud800""#,
            r#""\udc00x""#,
            r#""\ud800\u0041""#,
            r#""\x""#,
            r#""\u12""#,
            "\"tab\there\"",
            "1e400",
            "-1e400",
            &format!("{}.5", "9".repeat(400)),
            &"9".repeat(400),
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "+1",
            "tru",
            "nul",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{a:1}",
            "[1 2]",
            &("[".repeat(120) + &"]".repeat(120)),
        ] {
            let body = format!(r#"{{"source":"s","detail-type":"t","unread":{bad}}}"#);
            assert!(
                serde_json::from_str::<Value>(&body).is_err() || bad.starts_with("[[["),
                "serde_json takes {body}"
            );
            assert!(peek(&body, &keep).is_none(), "{body}");
        }
        // What serde_json takes, is taken.
        for good in [
            r#""\ud83d\ude00""#,
            r#""\u0000""#,
            "1e-400",
            "-0.0e0",
            &"9".repeat(300),
            r#"{"":[]}"#,
        ] {
            let body = format!(r#"{{"source":"s","detail-type":"t","unread":{good}}}"#);
            serde_json::from_str::<Value>(&body).unwrap();
            assert!(peek(&body, &keep).is_some(), "{body}");
        }
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            "[a-z\"\\\\/\u{0}-\u{1f}é😀]{0,12}".prop_map(Value::String),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-c]{1,2}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Every path of up to two keys from `a`..`c`.
    fn some_paths() -> impl Strategy<Value = Vec<Vec<String>>> {
        prop::collection::vec(prop::collection::vec("[a-c]{1,2}", 1..3), 0..4)
    }

    fn keep_only(v: &Value, keep: &[Vec<String>]) -> Value {
        fn walk(v: &Value, keep: &[&[String]]) -> Value {
            if keep.iter().any(|p| p.is_empty()) {
                return v.clone();
            }
            match v {
                Value::Array(items) => items.iter().map(|i| walk(i, keep)).collect(),
                Value::Object(m) => m
                    .iter()
                    .filter_map(|(k, x)| {
                        let below: Vec<&[String]> = keep
                            .iter()
                            .filter(|p| p[0] == *k)
                            .map(|p| &p[1..])
                            .collect();
                        (!below.is_empty()).then(|| (k.clone(), walk(x, &below)))
                    })
                    .collect(),
                leaf => leaf.clone(),
            }
        }
        let refs: Vec<&[String]> = keep.iter().map(Vec::as_slice).collect();
        walk(v, &refs)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The pruned event is the whole event, read by serde_json, with what no path names
        /// left out; compact or pretty, escaped or not.
        #[test]
        fn the_pruned_event_is_the_whole_one_pruned(
            detail in value(),
            other in value(),
            kept in some_paths(),
            pretty in any::<bool>(),
        ) {
            let event = json!({"source": "s", "detail-type": "t", "detail": {"x": detail}, "a": other});
            let body = if pretty { serde_json::to_string_pretty(&event).unwrap() } else { event.to_string() };
            let mut keep = Paths::new();
            let mut routes: Vec<Vec<String>> = Vec::new();
            for p in &kept {
                keep.add(p);
                routes.push(p.clone());
                // detail.x itself (a one-key path), or below it.
                let mut under_detail = vec!["detail".to_string(), "x".to_string()];
                under_detail.extend(p[1..].iter().cloned());
                keep.add(&under_detail);
                routes.push(under_detail);
            }
            for shape in ["source", "detail-type", "id", "Event", "Records", "Type", "TopicArn"] {
                routes.push(vec![shape.to_string()]);
            }
            let mut expected = keep_only(&event, &routes);
            expected.as_object_mut().unwrap().entry("detail").or_insert(json!({}));
            let got = peek(&body, &keep);
            prop_assert!(got.is_some(), "not peeked: {}", body);
            prop_assert_eq!(Value::from(&got.unwrap()), expected);
        }

        /// Whatever is done to a body, `peek` takes it only when serde_json does, and then
        /// reads the same fields.
        #[test]
        fn a_damaged_body_is_taken_only_when_serde_json_takes_it(
            detail in value(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), 0..3u8,
                prop::sample::select(b"{}[],:\"\\ 0129eE.+-tfnul\x01\x1fx".to_vec())), 1..4),
        ) {
            let event = json!({"source": "s", "detail-type": "t", "detail": {"x": detail}});
            let mut bytes = event.to_string().into_bytes();
            for (at, how, b) in edits {
                let i = at.index(bytes.len() + 1);
                match how {
                    0 => bytes.insert(i, b),
                    1 if i < bytes.len() => { bytes.remove(i); }
                    _ if i < bytes.len() => bytes[i] = b,
                    _ => {}
                }
            }
            let Ok(body) = String::from_utf8(bytes) else { return Ok(()) };
            let keep = {
                let mut p = Paths::new();
                p.add(&["detail".to_string(), "x".to_string()]);
                p
            };
            if let Some(got) = peek(&body, &keep) {
                let whole: Value = serde_json::from_str(&body)
                    .map_err(|e| TestCaseError::fail(format!("peek took what serde_json refuses ({e}): {body}")))?;
                prop_assert_eq!(Value::from(&got), keep_only(&whole, &[
                    vec!["source".into()], vec!["detail-type".into()], vec!["id".into()],
                    vec!["detail".into(), "x".into()],
                ]));
            }
        }
    }
}
