//! `http_deliver` against an HTTP server of the test's own on loopback, through the service in
//! process (built by `App::build` with the reqwest adapter) over an in-memory queue.

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use support::app::{MemoryApp, spawn_memory_app, until};
use tugboat::http::HttpConnector;

use support::eventbridge as fixture;

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    headers: HeaderMap,
    body: Value,
}

/// A scripted answer: status, `Retry-After`, body. Status 0 stalls for 3 s, then answers 200.
type Answer = (u16, Option<&'static str>, &'static str);

/// A receiver that answers from a script (then 200) and records every request.
#[derive(Clone, Default)]
struct Receiver {
    script: Arc<Mutex<VecDeque<Answer>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// OAuth token requests (`/token`): their headers and form bodies.
    tokens: Arc<Mutex<Vec<(HeaderMap, String)>>>,
}

impl Receiver {
    fn answer(&self, status: u16, retry_after: Option<&'static str>, body: &'static str) {
        self.script
            .lock()
            .unwrap()
            .push_back((status, retry_after, body));
    }
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: String) -> impl IntoResponse {
    r.seen.lock().unwrap().push(Seen {
        at: Instant::now(),
        headers,
        body: serde_json::from_str(&body).unwrap_or(Value::String(body)),
    });
    let (mut status, retry_after, body) = r
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or((200, None, "ok"));
    if status == 0 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        status = 200;
    }
    let mut headers = HeaderMap::new();
    if let Some(v) = retry_after {
        headers.insert("retry-after", v.parse().unwrap());
    }
    (StatusCode::from_u16(status).unwrap(), headers, body)
}

/// The OAuth token endpoint: client credentials in, `tok-<n>` out, valid for an hour.
async fn token(State(r): State<Receiver>, headers: HeaderMap, body: String) -> impl IntoResponse {
    let mut tokens = r.tokens.lock().unwrap();
    tokens.push((headers, body));
    axum::Json(
        json!({"access_token": format!("tok-{}", tokens.len()), "token_type": "Bearer", "expires_in": 3600}),
    )
}

async fn receiver() -> (Receiver, u16) {
    let r = Receiver::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .route("/token", axum::routing::post(token))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, port)
}

/// The seed plan 5 route: STOPPED ECS tasks whose stoppedReason (or a container's reason)
/// starts with OutOfMemory, to destination `alerts`.
fn config(port: u16, destination: &str) -> String {
    format!(
        r#"unmatched = "acknowledge"

[aws]
region = "us-east-1"

[[queues]]
name = "work"
dlq = "work-dlq"
receive_wait = "100ms"

[[routes]]
name = "oom"
pattern = '''{{"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"], "detail": {{"lastStatus": ["STOPPED"],
  "$or": [{{"stoppedReason": [{{"prefix": "OutOfMemory"}}]}}, {{"containers": {{"reason": [{{"prefix": "OutOfMemory"}}]}}}}]}}}}'''
workflow = "http_deliver"
params = {{ destination = "alerts" }}

[[routes]]
name = "test"
pattern = {{ source = ["test"] }}
workflow = "http_deliver"
params = {{ destination = "alerts" }}

[admin]
listen = "127.0.0.1:0"

[shutdown]
deadline = "2s"

[destinations.alerts]
url = "http://127.0.0.1:{port}/hook"
{destination}
"#
    )
}

fn test_event(n: usize) -> String {
    json!({"version": "0", "id": format!("ev-{n}"), "source": "test", "detail-type": "t", "detail": {"n": n}}).to_string()
}

#[actix_rt::test]
async fn basic_auth_and_headers_are_sent_and_only_oom_stops_are_forwarded() {
    let (r, port) = receiver().await;
    let auth = r#"auth = { type = "basic", username = "tugboat", password = "s3cret" }
headers = { "x-team" = "platform" }
rate_limit_per_second = 0"#;
    let h = start_http(&config(port, auth)).await;
    h.send(&fixture(
        "ecs-task-state-change-stopped-exited.derived.json",
    ))
    .await;
    h.send(&fixture(
        "ecs-task-state-change-running-fargate.awsdocs.json",
    ))
    .await;
    h.send(&fixture("ecs-task-state-change-stopped-oom.derived.json"))
        .await;
    until("all three are settled", 10, || h.queue.deleted() == 3).await;
    let seen = r.seen();
    assert_eq!(seen.len(), 1, "only the OOM stop is forwarded: {seen:?}");
    let s = &seen[0];
    assert_eq!(s.headers["authorization"], "Basic dHVnYm9hdDpzM2NyZXQ=");
    assert_eq!(s.headers["x-team"], "platform");
    assert_eq!(s.headers["content-type"], "application/json");
    assert_eq!(
        s.body["detail"]["stoppedReason"],
        "OutOfMemoryError: Container killed due to memory usage"
    );
    assert!(h.dlq.is_empty());
    h.app.stop().await;
}

#[actix_rt::test]
async fn an_oom_reason_only_on_the_container_is_forwarded_too() {
    let (r, port) = receiver().await;
    let h = start_http(&config(port, "")).await;
    let mut event: Value =
        serde_json::from_str(&fixture("ecs-task-state-change-stopped-oom.derived.json")).unwrap();
    event["detail"]["stoppedReason"] = json!("Essential container in task exited");
    h.send(&event.to_string()).await;
    until("delivered", 10, || h.queue.deleted() == 1).await;
    assert_eq!(r.seen().len(), 1);
    h.app.stop().await;
}

/// Gaps between consecutive requests.
fn gaps(seen: &[Seen]) -> Vec<Duration> {
    let mut at: Vec<Instant> = seen.iter().map(|s| s.at).collect();
    at.sort();
    at.windows(2).map(|w| w[1] - w[0]).collect()
}

#[actix_rt::test]
async fn the_rate_limit_holds_at_one_and_at_fifty_per_second() {
    for (rate, n) in [(1.0, 4), (50.0, 40)] {
        let (r, port) = receiver().await;
        let h = start_http(&config(port, &format!("rate_limit_per_second = {rate}"))).await;
        for i in 0..n {
            h.send(&test_event(i)).await;
        }
        until("all delivered", 30, || h.queue.deleted() == n as u64).await;
        let seen = r.seen();
        assert_eq!(seen.len(), n);
        let gaps = gaps(&seen);
        let interval = 1.0 / rate;
        let span: f64 = gaps.iter().map(|g| g.as_secs_f64()).sum();
        let min = gaps.iter().min().unwrap().as_secs_f64();
        eprintln!(
            "{rate}/s: {n} requests over {span:.3}s, smallest gap {:.1} ms",
            min * 1e3
        );
        // Send times are exactly `interval` apart; arrival adds a little jitter either way.
        assert!(
            span >= (n - 1) as f64 * interval * 0.95,
            "{rate}/s: {n} requests in {span:.3}s"
        );
        assert!(
            min >= interval * 0.5,
            "{rate}/s: two requests {:.1} ms apart",
            min * 1e3
        );
        h.app.stop().await;
    }
}

#[actix_rt::test]
async fn a_503_then_200_is_delivered_once_after_a_retry_honouring_retry_after() {
    let (r, port) = receiver().await;
    r.answer(503, Some("2"), "busy");
    let h = start_http(&config(port, "")).await;
    h.send(&test_event(1)).await;
    until("delivered", 15, || h.queue.deleted() == 1).await;
    let seen = r.seen();
    assert_eq!(seen.len(), 2, "one refused attempt, one delivery");
    let gap = gaps(&seen)[0];
    // The back-off alone would be at most 1 s (full jitter from 1 s).
    assert!(
        gap >= Duration::from_millis(1950),
        "retried {gap:?} after a Retry-After of 2 s"
    );
    assert_eq!(seen[0].body, seen[1].body);
    assert!(h.dlq.is_empty());
    let record = h.app.record("test:ev-1");
    assert_eq!(record.output.unwrap()["status"], 200);
    h.app.stop().await;
}

#[actix_rt::test]
async fn a_400_is_dead_lettered_at_once_with_the_status_and_an_excerpt() {
    let (r, port) = receiver().await;
    r.answer(400, None, "{\"message\":\"channel_not_found\"}");
    let h = start_http(&config(port, "")).await;
    h.send(&test_event(2)).await;
    until("dead-lettered", 10, || {
        h.dlq.len() == 1 && h.queue.deleted() == 1
    })
    .await;
    assert_eq!(r.seen().len(), 1, "a 400 is not retried");
    let dead = h.dlq.messages().remove(0);
    assert_eq!(
        dead.attributes["tugboat-error"],
        "test:ev-2: delivery to alerts: HTTP 400: {\"message\":\"channel_not_found\"}"
    );
    assert_eq!(dead.attributes["tugboat-step"], "deliver");
    h.app.stop().await;
}

#[actix_rt::test]
async fn a_receiver_that_is_down_is_retried_until_it_answers() {
    // A port with nothing listening, then a receiver on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let h = start_http(&config(port, "timeout = \"1s\"")).await;
    h.send(&test_event(3)).await;
    until("tried twice", 10, || {
        h.app
            .try_record("test:ev-3")
            .is_some_and(|r| r.steps.iter().any(|s| s.attempts >= 2))
    })
    .await;
    assert_eq!(h.queue.deleted(), 0);
    let record = h.app.record("test:ev-3");
    let error = record.steps[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("could not connect"), "{error}");
    assert!(
        !error.contains("127.0.0.1"),
        "the URL is not in the error: {error}"
    );
    let r = Receiver::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    until("delivered", 40, || h.queue.deleted() == 1).await;
    assert_eq!(r.seen().len(), 1);
    h.app.stop().await;
}

async fn start_http(config: &str) -> MemoryApp {
    spawn_memory_app(config, |deps| {
        deps.ports.http = Arc::new(HttpConnector::new().unwrap())
    })
    .await
}

#[actix_rt::test]
async fn an_api_key_header_is_sent() {
    let (r, port) = receiver().await;
    let auth = r#"auth = { type = "api_key", header = "x-api-key", value = "k-123" }"#;
    let h = start_http(&config(port, auth)).await;
    h.send(&test_event(10)).await;
    until("delivered", 10, || h.queue.deleted() == 1).await;
    let seen = r.seen();
    assert_eq!(seen[0].headers["x-api-key"], "k-123");
    assert!(seen[0].headers.get("authorization").is_none());
    h.app.stop().await;
}

#[actix_rt::test]
async fn oauth_client_credentials_fetch_a_token_once_and_again_after_a_401() {
    let (r, port) = receiver().await;
    let auth = format!(
        r#"auth = {{ type = "oauth_client_credentials", token_url = "http://127.0.0.1:{port}/token", client_id = "tugboat", client_secret = "s3cret", scope = "events:write" }}"#
    );
    r.answer(200, None, "ok");
    r.answer(200, None, "ok");
    r.answer(401, None, "token revoked");
    let h = start_http(&config(port, &auth)).await;
    h.send(&test_event(11)).await;
    until("the first is delivered", 10, || h.queue.deleted() == 1).await;
    h.send(&test_event(12)).await;
    until("the second is delivered", 10, || h.queue.deleted() == 2).await;
    {
        let tokens = r.tokens.lock().unwrap();
        assert_eq!(tokens.len(), 1, "the token is cached");
        let (headers, form) = &tokens[0];
        assert_eq!(headers["authorization"], "Basic dHVnYm9hdDpzM2NyZXQ=");
        assert!(
            form.contains("grant_type=client_credentials") && form.contains("scope=events%3Awrite"),
            "{form}"
        );
    }
    // A 401 drops the token: a new one is fetched and the request sent once more.
    h.send(&test_event(13)).await;
    until("the third is delivered", 10, || h.queue.deleted() == 3).await;
    assert_eq!(r.tokens.lock().unwrap().len(), 2);
    let auths: Vec<String> = r
        .seen()
        .iter()
        .map(|s| s.headers["authorization"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(
        auths,
        [
            "Bearer tok-1",
            "Bearer tok-1",
            "Bearer tok-1",
            "Bearer tok-2"
        ]
    );
    assert!(h.dlq.is_empty());
    h.app.stop().await;
}

#[actix_rt::test]
async fn a_timeout_is_retried_and_attempts_are_bounded() {
    let (r, port) = receiver().await;
    // The first request stalls past the 1 s timeout; the retry is answered.
    r.answer(0, None, "");
    let h = start_http(&config(port, "timeout = \"1s\"\nmax_attempts = 3")).await;
    h.send(&test_event(20)).await;
    until("delivered after the timeout", 15, || h.queue.deleted() == 1).await;
    assert_eq!(r.seen().len(), 2);
    let record = h.app.record("test:ev-20");
    assert_eq!(record.steps[0].attempts, 2);
    // Always 503: three attempts, then the DLQ says so.
    for _ in 0..3 {
        r.answer(503, None, "down");
    }
    h.send(&test_event(21)).await;
    until("dead-lettered", 20, || h.dlq.len() == 1).await;
    let dead = h.dlq.messages().remove(0);
    let error = &dead.attributes["tugboat-error"];
    assert!(
        error.contains("gave up after 3 attempts: HTTP 503: down"),
        "{error}"
    );
    h.app.stop().await;
}

/// Answers every request with a redirect to `location`.
async fn redirector(location: String) -> u16 {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let location = location.clone();
            async move { (StatusCode::TEMPORARY_REDIRECT, [("location", location)], "") }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

#[actix_rt::test]
async fn a_redirect_is_not_followed_and_the_credentials_stay_home() {
    // The attack: a destination (or whoever controls its host) answers 307 to another host.
    // reqwest's default policy would follow it, carrying the API key there.
    let (target, target_port) = receiver().await;
    let port = redirector(format!("http://127.0.0.1:{target_port}/hook")).await;
    let auth = r#"auth = { type = "api_key", header = "x-api-key", value = "k-secret" }"#;
    let h = start_http(&config(port, auth)).await;
    h.send(&test_event(30)).await;
    until("dead-lettered", 10, || {
        h.dlq.len() == 1 && h.queue.deleted() == 1
    })
    .await;
    assert!(
        target.seen().is_empty(),
        "a request reached the redirect's target: {:?}",
        target.seen()
    );
    let dead = h.dlq.messages().remove(0);
    assert!(
        dead.attributes["tugboat-error"].contains("HTTP 307"),
        "{}",
        dead.attributes["tugboat-error"]
    );
    h.app.stop().await;
}

/// The `n` fields of the events a request carried (an array's elements, or the one body).
fn ns(seen: &Seen) -> Vec<u64> {
    let events = match &seen.body {
        Value::Array(events) => events.clone(),
        one => vec![one.clone()],
    };
    events
        .iter()
        .map(|e| e["detail"]["n"].as_u64().unwrap())
        .collect()
}

/// `events` test events through a destination that batches (`batch`, unlimited rate), the
/// receiver answering `first` to the first request: what the receiver saw once all were
/// deleted, and the app.
async fn batched(batch: &str, first: Option<Answer>, events: usize) -> (Vec<Seen>, MemoryApp) {
    let (r, port) = receiver().await;
    if let Some((status, retry_after, body)) = first {
        r.answer(status, retry_after, body);
    }
    let settings = format!("rate_limit_per_second = 0\nbatch = {batch}");
    let h = start_http(&config(port, &settings)).await;
    for n in 0..events {
        h.send(&test_event(n)).await;
    }
    until("all delivered", 30, || h.queue.deleted() == events as u64).await;
    assert!(h.dlq.is_empty(), "nothing dead-lettered");
    (r.seen(), h)
}

#[actix_rt::test]
async fn a_batching_destination_sends_arrays_and_every_event_arrives() {
    let batch = "{ max_events = 10, max_wait = \"300ms\" }";
    let (seen, h) = batched(batch, None, 25).await;
    let mut all: Vec<u64> = seen.iter().flat_map(ns).collect();
    all.sort_unstable();
    assert_eq!(all, (0..25).collect::<Vec<u64>>(), "each event once");
    assert!(
        seen.iter().all(|s| s.body.is_array() && ns(s).len() <= 10),
        "arrays of at most 10: {:?}",
        seen.iter().map(|s| ns(s).len()).collect::<Vec<_>>()
    );
    assert!(
        seen.len() >= 3 && seen.len() < 25,
        "{} requests",
        seen.len()
    );
    h.app.stop().await;
}

#[actix_rt::test]
async fn a_refused_batch_is_retried_for_each_of_its_events() {
    let batch = "{ max_events = 3, max_wait = \"2s\" }";
    let (seen, h) = batched(batch, Some((503, None, "busy")), 3).await;
    assert_eq!(ns(&seen[0]).len(), 3, "the first request carried all three");
    // Each event came again in a later (200) request; none was lost or dead-lettered.
    let mut again: Vec<u64> = seen[1..].iter().flat_map(ns).collect();
    again.sort_unstable();
    assert_eq!(again, [0, 1, 2]);
    for n in 0..3 {
        let record = h.app.record(&format!("test:ev-{n}"));
        assert_eq!(
            record.steps[0].attempts, 2,
            "journaled at its failed attempt"
        );
    }
    h.app.stop().await;
}

#[actix_rt::test]
async fn a_batch_stays_under_max_bytes_and_a_larger_body_goes_alone() {
    let (r, port) = receiver().await;
    let h = start_http(&config(
        port,
        "rate_limit_per_second = 0\nbatch = { max_events = 100, max_bytes = 1024, max_wait = \"300ms\" }",
    ))
    .await;
    let padded = |n: usize, pad: usize| {
        json!({"version": "0", "id": format!("ev-{n}"), "source": "test", "detail-type": "t",
            "detail": {"n": n, "pad": "x".repeat(pad)}})
        .to_string()
    };
    for n in 0..6 {
        h.send(&padded(n, 300)).await;
    }
    h.send(&padded(6, 2000)).await;
    until("all 7 delivered", 20, || h.queue.deleted() == 7).await;
    let seen = r.seen();
    for s in &seen {
        let size = serde_json::to_vec(&s.body).unwrap().len();
        let n = ns(s);
        assert!(size <= 1024 || n == [6], "{size} bytes for {n:?}");
    }
    let alone = seen.iter().find(|s| ns(s).contains(&6)).unwrap();
    assert_eq!(ns(alone), [6], "the large body in an array of its own");
    let mut all: Vec<u64> = seen.iter().flat_map(ns).collect();
    all.sort_unstable();
    assert_eq!(all, (0..7).collect::<Vec<u64>>());
    h.app.stop().await;
}
