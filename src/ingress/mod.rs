//! The HTTP ingress, off unless `[ingress]` is configured: a listener of its own (not the
//! admin one) that takes events from applications and puts them on a configured queue — the
//! durable point — before it answers.
//!
//! - `POST /` with `X-Amz-Target: AWSEvents.PutEvents` (AWS JSON 1.1): EventBridge's
//!   `PutEvents`, so that any AWS SDK's EventBridge client (or `aws events put-events`) with
//!   its endpoint pointed here sends to tugboat unchanged. Signed with SigV4 by an access key
//!   of `[ingress.access_keys]` ([`sigv4`]), or carrying `Authorization: Bearer` one of
//!   `[ingress] tokens`. Per-entry results as EventBridge gives them ([`put_events`]).
//! - `POST /events` with a bearer token: one EventBridge-shaped event as JSON.
//!
//! Refusals are answered as EventBridge answers them (`__type` and `message`): no or bad
//! credentials 403, a body over `max_body` 413, over `rate_limit` 400 `ThrottlingException`,
//! a malformed request 400; the queue failing 500 with nothing accepted (the client retries).

pub mod put_events;
pub mod sigv4;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::ports::clock::Clock;
use crate::ports::{OutgoingMessage, Queue};
use put_events::{EntryResult, PutEventsRequest};

/// `[ingress]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngressConfig {
    /// Where the ingress listens (`0.0.0.0:8088`). Required: without `[ingress]` there is none.
    pub listen: SocketAddr,
    /// The configured queue accepted events are put on. Default: the only queue.
    #[serde(default)]
    pub queue: Option<String>,
    /// Access keys whose SigV4 signatures are accepted, id → secret (set the secrets from the
    /// environment: `TUGBOAT__INGRESS__ACCESS_KEYS__AKID=...`). Never printed.
    #[serde(default)]
    pub access_keys: BTreeMap<String, SecretString>,
    /// Bearer tokens accepted (`Authorization: Bearer …`). Never printed.
    #[serde(default)]
    pub tokens: Vec<SecretString>,
    /// The largest request body, in bytes. Default 1 MiB (ten entries of 256 KiB do not fit:
    /// EventBridge's own limit on a request is 1 MiB too).
    #[serde(default = "default_max_body")]
    pub max_body: usize,
    /// Requests per second the ingress takes (each over is refused with
    /// `ThrottlingException`); 0 for no limit. Default 500.
    #[serde(default = "default_rate")]
    pub rate_limit: u32,
}

fn default_max_body() -> usize {
    1 << 20
}

fn default_rate() -> u32 {
    500
}

impl IngressConfig {
    /// Checks what the types cannot: `Err((field, message))`.
    pub fn check(&self, queues: &[&str]) -> Result<String, (&'static str, String)> {
        if self.access_keys.is_empty() && self.tokens.is_empty() {
            return Err((
                "access_keys",
                "the ingress needs access_keys or tokens: it accepts no anonymous events".into(),
            ));
        }
        if self
            .tokens
            .iter()
            .any(|t| t.expose_secret().chars().count() < 16)
        {
            return Err(("tokens", "each token must be at least 16 characters".into()));
        }
        if !(1024..=16 << 20).contains(&self.max_body) {
            return Err(("max_body", "must be 1024 to 16777216 bytes".into()));
        }
        match &self.queue {
            Some(q) if queues.contains(&q.as_str()) => Ok(q.clone()),
            Some(q) => Err(("queue", format!("names unknown queue {q:?}"))),
            None if queues.len() == 1 => Ok(queues[0].to_owned()),
            None => Err((
                "queue",
                "is required when there is not exactly one queue".into(),
            )),
        }
    }
}

/// What the ingress's handlers share.
#[derive(Clone)]
pub struct Ingress {
    pub config: Arc<IngressConfig>,
    pub queue: Arc<dyn Queue>,
    pub clock: Arc<dyn Clock>,
    pub region: String,
    limiter: Arc<Mutex<Bucket>>,
    metrics: Arc<crate::metrics::Metrics>,
}

/// A token bucket of `rate` a second, holding a second's worth.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last_ms: u64,
}

impl Ingress {
    pub fn new(
        config: IngressConfig,
        queue: Arc<dyn Queue>,
        clock: Arc<dyn Clock>,
        region: String,
    ) -> Ingress {
        let now = clock.now_ms();
        Ingress {
            limiter: Arc::new(Mutex::new(Bucket {
                tokens: f64::from(config.rate_limit),
                last_ms: now,
            })),
            config: Arc::new(config),
            queue,
            clock,
            region,
            metrics: Arc::new(crate::metrics::Metrics::default()),
        }
    }

    /// The ingress counting its requests and entries in `metrics` (the service's).
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Ingress {
        self.metrics = metrics;
        self
    }

    /// The ingress's routes.
    pub fn router(self) -> axum::Router {
        let limit = self.config.max_body;
        axum::Router::new()
            .route("/", post(put_events))
            .route("/events", post(one_event))
            .layer(DefaultBodyLimit::max(limit))
            .with_state(self)
    }

    /// Serves on `listener` until `shutdown` turns true.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let serve = axum::serve(listener, self.router()).with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "ingress listener failed");
        }
    }

    /// Whether one more request fits the rate limit now.
    fn admit(&self) -> bool {
        let rate = f64::from(self.config.rate_limit);
        if rate == 0.0 {
            return true;
        }
        let now = self.clock.now_ms();
        let mut b = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_sub(b.last_ms) as f64 / 1000.0;
        b.tokens = (b.tokens + elapsed * rate).min(rate);
        b.last_ms = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// What every request passes first: its credentials (SigV4 where `sigv4` allows it, or
    /// a token), then the rate limit. `Ok(caller)`, or the answer that refuses it.
    #[allow(
        clippy::result_large_err,
        reason = "the refusal is the response, made once"
    )]
    fn gate(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        sigv4: bool,
    ) -> Result<String, Response> {
        let api = if sigv4 { "put_events" } else { "events" };
        let caller = authenticate(self, method, uri, headers, body, sigv4).map_err(|r| {
            self.metrics.ingress(api, "refused");
            r.into_response()
        })?;
        if !self.admit() {
            self.metrics.ingress(api, "throttled");
            return Err(aws_error(
                StatusCode::BAD_REQUEST,
                "ThrottlingException",
                "Rate exceeded",
            ));
        }
        Ok(caller)
    }

    /// Whether `presented` is one of the configured tokens (compared in constant time).
    fn token_ok(&self, presented: &str) -> bool {
        self.config.tokens.iter().fold(false, |ok, t| {
            ok | bool::from(t.expose_secret().as_bytes().ct_eq(presented.as_bytes()))
        })
    }

    fn now_text(&self) -> String {
        crate::schedule::runner::rfc3339(self.clock.now_ms() as i64)
    }

    /// Puts `events` on the queue, ten at a time; per event, its message id or why not.
    async fn enqueue(&self, events: &[Value]) -> Result<Vec<Result<(), String>>, String> {
        let mut out = Vec::with_capacity(events.len());
        for chunk in events.chunks(10) {
            let messages: Vec<OutgoingMessage> = chunk
                .iter()
                .map(|e| OutgoingMessage {
                    body: e.to_string(),
                    attributes: BTreeMap::new(),
                    group_id: None,
                    deduplication_id: None,
                    delay: None,
                })
                .collect();
            let sent = self
                .queue
                .send_batch(&messages)
                .await
                .map_err(|e| e.to_string())?;
            out.extend(
                sent.into_iter()
                    .map(|r| r.map(|_| ()).map_err(|f| format!("{f:?}"))),
            );
        }
        Ok(out)
    }
}

/// An error as EventBridge answers it (AWS JSON 1.1).
fn aws_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
        json!({"__type": code, "message": message}).to_string(),
    )
        .into_response()
}

fn headers_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

/// Credentials refused: answered 403 with this `__type` and message.
struct Refusal(&'static str, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        aws_error(StatusCode::FORBIDDEN, self.0, &self.1)
    }
}

/// Who sent it: `Ok(caller)` (an access key id, or "token"), or the refusal to answer.
fn authenticate(
    ingress: &Ingress,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    sigv4_allowed: bool,
) -> Result<String, Refusal> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if let Some(token) = auth.strip_prefix("Bearer ") {
        return if ingress.token_ok(token.trim()) {
            Ok("token".into())
        } else {
            Err(Refusal(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.".into(),
            ))
        };
    }
    if !sigv4_allowed || !auth.starts_with("AWS4-HMAC-SHA256") {
        return Err(Refusal(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token".into(),
        ));
    }
    let map = headers_map(headers);
    let request = sigv4::Request {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or_default(),
        headers: &map,
        body,
    };
    sigv4::verify(&request, "events", ingress.clock.now_ms() as i64, |id| {
        ingress
            .config
            .access_keys
            .get(id)
            .map(|s| s.expose_secret().to_owned())
    })
    .map_err(|r| Refusal(r.code, r.message))
}

async fn put_events(
    State(ingress): State<Ingress>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if target != "AWSEvents.PutEvents" {
        ingress.metrics.ingress("put_events", "refused");
        return aws_error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            &format!("this endpoint takes AWSEvents.PutEvents only, not {target:?}"),
        );
    }
    let caller = match ingress.gate(&method, &uri, &headers, &body, true) {
        Ok(c) => c,
        Err(refusal) => return refusal,
    };
    let request: PutEventsRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            ingress.metrics.ingress("put_events", "refused");
            return aws_error(
                StatusCode::BAD_REQUEST,
                "SerializationException",
                &format!("the body is not a PutEvents request: {e}"),
            );
        }
    };
    if request.entries.is_empty() || request.entries.len() > put_events::MAX_ENTRIES {
        ingress.metrics.ingress("put_events", "refused");
        return aws_error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            &format!(
                "1 validation error detected: Value at 'entries' failed to satisfy constraint: Member must have length between 1 and {}",
                put_events::MAX_ENTRIES
            ),
        );
    }
    let now = ingress.now_text();
    let mut results: Vec<EntryResult> = Vec::with_capacity(request.entries.len());
    let mut events = Vec::new();
    let mut slots = Vec::new();
    for entry in &request.entries {
        let id = event_id();
        match put_events::event_of(entry, &id, &ingress.region, &now) {
            Ok(event) => {
                slots.push(results.len());
                results.push(EntryResult::accepted(id));
                events.push(event);
            }
            Err((code, message)) => results.push(EntryResult::failed(code, message)),
        }
    }
    if !events.is_empty() {
        match ingress.enqueue(&events).await {
            Ok(sent) => {
                for (slot, r) in slots.iter().zip(sent) {
                    if let Err(e) = r {
                        results[*slot] = EntryResult::failed("InternalFailure", e);
                    }
                }
            }
            Err(e) => {
                ingress.metrics.ingress("put_events", "failed");
                tracing::warn!(error = %e, "ingress: the queue refused the events; answered 500");
                return aws_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalException",
                    "the events could not be put on the queue; nothing was accepted: retry",
                );
            }
        }
    }
    let failed = results.iter().filter(|r| r.error_code.is_some()).count() as u64;
    ingress.metrics.ingress_entries_failed.inc_by(failed);
    ingress
        .metrics
        .ingress_entries_accepted
        .inc_by(results.len() as u64 - failed);
    ingress.metrics.ingress("put_events", "ok");
    let answer = put_events::answer(&results);
    tracing::info!(caller = %caller, entries = results.len(), failed = %answer["FailedEntryCount"],
        "ingress: PutEvents");
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
        answer.to_string(),
    )
        .into_response()
}

/// `POST /events`: one EventBridge-shaped event (`source`, `detail-type`, `detail`; the
/// rest optional), with a bearer token.
async fn one_event(
    State(ingress): State<Ingress>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refusal) = ingress.gate(&method, &uri, &headers, &body, false) {
        return refusal;
    }
    let event: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            ingress.metrics.ingress("events", "refused");
            return aws_error(
                StatusCode::BAD_REQUEST,
                "SerializationException",
                &format!("the body is not JSON: {e}"),
            );
        }
    };
    // The same checks as a PutEvents entry's, through the entry's shape.
    let entry = json!({
        "Source": event.get("source"),
        "DetailType": event.get("detail-type"),
        "Detail": event.get("detail").map(|d| d.to_string()),
        "Resources": event.get("resources"),
        "Time": event.get("time"),
    });
    let id = event_id();
    let event = match put_events::event_of(&entry, &id, &ingress.region, &ingress.now_text()) {
        Ok(e) => e,
        Err((code, message)) => {
            ingress.metrics.ingress("events", "refused");
            return aws_error(StatusCode::BAD_REQUEST, code, &message);
        }
    };
    match ingress.enqueue(std::slice::from_ref(&event)).await {
        Ok(sent) if sent.iter().all(Result::is_ok) => {
            ingress.metrics.ingress("events", "ok");
            ingress.metrics.ingress_entries_accepted.inc();
            (StatusCode::OK, axum::Json(json!({"id": id}))).into_response()
        }
        Ok(_) | Err(_) => {
            ingress.metrics.ingress("events", "failed");
            aws_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalException",
                "the event could not be put on the queue; nothing was accepted: retry",
            )
        }
    }
}

/// A new event id, UUID-shaped.
fn event_id() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests;
