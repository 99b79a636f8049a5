//! The ingress in process over an in-memory queue: each refusal performs the attack or the
//! mistake and checks that nothing reached the queue.

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt;

use super::*;
use crate::ports::clock::TokioClock;
use crate::ports::memory::MemoryQueue;

const TOKEN: &str = "tugboat-ingress-token-0123";

fn ingress(rate: u32, max_body: usize) -> (Ingress, Arc<MemoryQueue>) {
    let queue = Arc::new(MemoryQueue::new("q"));
    let config: IngressConfig = toml::from_str(&format!(
        "listen = \"127.0.0.1:0\"\ntokens = [\"{TOKEN}\"]\nrate_limit = {rate}\nmax_body = {max_body}\n[access_keys]\nAKIDTUGBOAT = \"s3cret\"\n"
    ))
    .unwrap();
    (
        Ingress::new(
            config,
            queue.clone(),
            Arc::new(TokioClock::new()),
            "eu-west-1".into(),
        ),
        queue,
    )
}

async fn call(
    i: &Ingress,
    path: &str,
    headers: &[(&str, &str)],
    body: String,
) -> (StatusCode, Value) {
    let mut request = Request::post(path);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = i
        .clone()
        .router()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn put(entries: Value) -> String {
    json!({ "Entries": entries }).to_string()
}

const TARGET: (&str, &str) = ("x-amz-target", "AWSEvents.PutEvents");
const BEARER: (&str, &str) = ("authorization", "Bearer tugboat-ingress-token-0123");

fn entry(detail: &str) -> Value {
    json!({"Source": "my.app", "DetailType": "Order Placed", "Detail": detail})
}

#[tokio::test]
async fn put_events_with_a_token_puts_the_good_entries_on_the_queue_and_reports_the_bad() {
    let (i, queue) = ingress(100, 1 << 20);
    let (status, answer) = call(
        &i,
        "/",
        &[TARGET, BEARER],
        put(json!([
            entry("{\"order\":1}"),
            entry("{not json"),
            entry("{\"order\":2}")
        ])),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["FailedEntryCount"], 1);
    assert!(answer["Entries"][0]["EventId"].is_string());
    assert_eq!(answer["Entries"][1]["ErrorCode"], "MalformedDetail");
    let bodies: Vec<Value> = queue
        .messages()
        .iter()
        .map(|m| serde_json::from_str(&m.body).unwrap())
        .collect();
    assert_eq!(bodies.len(), 2);
    let ids: Vec<&Value> = bodies.iter().map(|b| &b["id"]).collect();
    assert!(ids.contains(&&answer["Entries"][0]["EventId"]));
    assert!(
        bodies
            .iter()
            .all(|b| b["source"] == "my.app" && b["region"] == "eu-west-1")
    );
}

#[tokio::test]
async fn every_refusal_is_answered_as_eventbridge_does_and_enqueues_nothing() {
    let (i, queue) = ingress(100, 4096);
    let good = put(json!([entry("{}")]));
    for (headers, body, status, code) in [
        // No credentials; a wrong token; a SigV4 header from a stranger.
        (
            vec![TARGET],
            good.clone(),
            403,
            "MissingAuthenticationTokenException",
        ),
        (
            vec![TARGET, ("authorization", "Bearer guess-guess-guess-guess")],
            good.clone(),
            403,
            "UnrecognizedClientException",
        ),
        (
            vec![
                TARGET,
                (
                    "authorization",
                    "AWS4-HMAC-SHA256 Credential=AKIDX/20261207/us-east-1/events/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
                ),
                ("x-amz-date", "20261207T000000Z"),
            ],
            good.clone(),
            403,
            "InvalidSignatureException",
        ),
        // Another operation of the API.
        (
            vec![("x-amz-target", "AWSEvents.DeleteRule"), BEARER],
            good.clone(),
            400,
            "UnknownOperationException",
        ),
        // Not JSON; no entries; eleven entries.
        (
            vec![TARGET, BEARER],
            "{".to_owned(),
            400,
            "SerializationException",
        ),
        (
            vec![TARGET, BEARER],
            put(json!([])),
            400,
            "ValidationException",
        ),
        (
            vec![TARGET, BEARER],
            put(Value::Array(vec![entry("{}"); 11])),
            400,
            "ValidationException",
        ),
    ] {
        let (s, answer) = call(&i, "/", &headers, body).await;
        assert_eq!(s.as_u16(), status, "{headers:?}: {answer}");
        assert_eq!(answer["__type"], code, "{headers:?}: {answer}");
    }
    // A body over max_body.
    let big = put(json!([entry(&format!(
        "{{\"x\":\"{}\"}}",
        "y".repeat(5000)
    ))]));
    let (s, _) = call(&i, "/", &[TARGET, BEARER], big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    // An AWS source is AWS's: refused per entry.
    let (s, answer) = call(
        &i,
        "/",
        &[TARGET, BEARER],
        put(json!([{"Source": "aws.ec2",
        "DetailType": "EC2 Spot Instance Interruption Warning", "Detail": "{}"}])),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        answer["Entries"][0]["ErrorCode"],
        "NotAuthorizedForSourceException"
    );
    // POST /events: a token only (no SigV4), one event.
    let (s, answer) = call(
        &i,
        "/events",
        &[],
        json!({"source": "a", "detail-type": "b", "detail": {}}).to_string(),
    )
    .await;
    assert_eq!(
        (s.as_u16(), answer["__type"].as_str()),
        (403, Some("MissingAuthenticationTokenException"))
    );
    let (s, answer) = call(
        &i,
        "/events",
        &[BEARER],
        json!({"source": "a", "detail": {}}).to_string(),
    )
    .await;
    assert_eq!(
        (s.as_u16(), answer["__type"].as_str()),
        (400, Some("InvalidArgument")),
        "{answer}"
    );
    assert_eq!(queue.len(), 0, "a refused request reached the queue");
    let refused = i
        .metrics
        .ingress_requests
        .get_or_create(&crate::metrics::IngressLabels {
            api: "put_events".into(),
            outcome: "refused".into(),
        })
        .get();
    assert_eq!(refused, 7, "each refusal is counted");

    let (s, answer) = call(
        &i,
        "/events",
        &[BEARER],
        json!({"source": "a", "detail-type": "b", "detail": {"k": 1}}).to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{answer}");
    assert!(answer["id"].is_string());
    assert_eq!(queue.len(), 1);
}

#[tokio::test]
async fn a_queue_that_fails_is_a_500_and_nothing_is_acknowledged() {
    let (i, queue) = ingress(100, 1 << 20);
    queue.inject_failures(1);
    let (s, answer) = call(&i, "/", &[TARGET, BEARER], put(json!([entry("{}")]))).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{answer}");
    assert_eq!(answer["__type"], "InternalException");
    assert_eq!(queue.len(), 0);
    // The client's retry goes through.
    let (s, _) = call(&i, "/", &[TARGET, BEARER], put(json!([entry("{}")]))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(queue.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn requests_over_the_rate_limit_are_throttled_until_the_bucket_refills() {
    let (i, queue) = ingress(3, 1 << 20);
    let mut codes = Vec::new();
    for _ in 0..5 {
        let (s, a) = call(&i, "/", &[TARGET, BEARER], put(json!([entry("{}")]))).await;
        codes.push((s.as_u16(), a["__type"].as_str().unwrap_or("").to_owned()));
    }
    assert_eq!(
        codes,
        [
            (200, String::new()),
            (200, String::new()),
            (200, String::new()),
            (400, "ThrottlingException".to_owned()),
            (400, "ThrottlingException".to_owned())
        ]
    );
    assert_eq!(queue.len(), 3);
    tokio::time::advance(Duration::from_secs(1)).await;
    let (s, _) = call(&i, "/", &[TARGET, BEARER], put(json!([entry("{}")]))).await;
    assert_eq!(s, StatusCode::OK);
}

#[test]
fn an_ingress_without_credentials_or_with_a_short_token_is_refused() {
    let parse = |text: &str| toml::from_str::<IngressConfig>(text).unwrap();
    let (f, e) = parse("listen = \"127.0.0.1:0\"").check(&["q"]).unwrap_err();
    assert_eq!(f, "access_keys", "{e}");
    let (f, _) = parse("listen = \"127.0.0.1:0\"\ntokens = [\"short\"]")
        .check(&["q"])
        .unwrap_err();
    assert_eq!(f, "tokens");
    let (f, _) = parse(&format!(
        "listen = \"127.0.0.1:0\"\ntokens = [\"{TOKEN}\"]\nqueue = \"nope\""
    ))
    .check(&["q"])
    .unwrap_err();
    assert_eq!(f, "queue");
    assert_eq!(
        parse(&format!("listen = \"127.0.0.1:0\"\ntokens = [\"{TOKEN}\"]")).check(&["q"]),
        Ok("q".to_owned())
    );
    assert!(toml::from_str::<IngressConfig>("listen = \"nowhere\"").is_err());
}
