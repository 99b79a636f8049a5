//! The HTTP destination adapter: the [`Http`] port over reqwest, with one rate limiter per
//! destination shared by every route that names it.
//!
//! The limiter hands out evenly spaced send times (`1 / rate` apart, no burst: a token bucket
//! of one token), and a caller waits for its time with an async sleep, so that waiting holds
//! no thread. Secrets (auth, and the URL itself — a Slack webhook URL is a credential) are
//! never logged: errors carry reqwest's message without the URL. Redirects are never followed.
//!
//! A destination with `batch` set sends its deliveries' bodies together, a JSON array per
//! request ([`crate::ports::http::Batch`]): each caller adds its body to the open batch and
//! waits for that batch's answer; a batch is sent by a task of its own (not by a caller,
//! whose step may be dropped) when it is full, or by its timer `max_wait` after it opened.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest::header::{
    AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
};
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::ports::http::{
    Auth, Batch, Destination, DestinationSettings, Http, Response, TransportError,
};

/// How much of an answer's body a DLQ entry keeps.
const EXCERPT_BYTES: usize = 512;

/// Makes destinations over one shared HTTP client (one connection pool).
#[derive(Debug)]
pub struct HttpConnector {
    client: reqwest::Client,
    destinations: Mutex<HashMap<String, Arc<Endpoint>>>,
}

impl HttpConnector {
    pub fn new() -> Result<HttpConnector, String> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("tugboat/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(60))
            // Never follow a redirect: reqwest's default would carry the API key and custom
            // headers to the new host (https→http included), and a destination could point
            // tugboat at the task metadata endpoint or an internal host. A 3xx is answered as
            // it is, and `http_deliver` makes it a permanent failure (docs/security.md).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(HttpConnector {
            client,
            destinations: Mutex::new(HashMap::new()),
        })
    }
}

impl Http for HttpConnector {
    fn destination(
        &self,
        name: &str,
        s: &DestinationSettings,
    ) -> Result<Arc<dyn Destination>, String> {
        let mut destinations = self.destinations.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = destinations.get(name) {
            return Ok(d.clone());
        }
        let at = |field: &str| format!("destinations.{name}.{field}");
        let method = reqwest::Method::from_bytes(s.method.as_bytes())
            .map_err(|e| format!("{}: {e}", at("method")))?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (k, v) in &s.headers {
            let key = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| format!("{}: {k:?}: {e}", at("headers")))?;
            let value =
                HeaderValue::from_str(v).map_err(|e| format!("{}: {k:?}: {e}", at("headers")))?;
            headers.insert(key, value);
        }
        if let Some(Auth::ApiKey { header, value }) = &s.auth {
            let key = HeaderName::from_bytes(header.as_bytes())
                .map_err(|e| format!("{}: {e}", at("auth.header")))?;
            let mut value = HeaderValue::from_str(value.expose_secret())
                .map_err(|_| format!("{}: not a valid header value", at("auth.value")))?;
            value.set_sensitive(true);
            headers.insert(key, value);
        }
        // Parsed once: reqwest would parse the text again for every request (measured: a
        // third of a loopback delivery's own instructions).
        let url = reqwest::Url::parse(&s.url).map_err(|e| format!("{}: {e}", at("url")))?;
        let endpoint = Arc::new_cyclic(|me| Endpoint {
            me: me.clone(),
            name: name.to_string(),
            client: self.client.clone(),
            url,
            method,
            headers,
            auth: s.auth.clone(),
            timeout: s.timeout,
            limiter: Limiter::per_second(s.rate_limit_per_second),
            token: tokio::sync::Mutex::new(None),
            batching: s.batch.clone().map(|b| (b, Mutex::new(Open::default()))),
        });
        destinations.insert(name.to_string(), endpoint.clone());
        Ok(endpoint)
    }
}

/// Evenly spaced send times: a token bucket holding one token.
#[derive(Debug)]
pub struct Limiter {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl Limiter {
    /// `None` for 0 (unlimited).
    pub fn per_second(rate: f64) -> Option<Limiter> {
        (rate > 0.0).then(|| Limiter {
            interval: Duration::from_secs_f64(1.0 / rate),
            next: Mutex::new(None),
        })
    }

    /// Waits (asynchronously) for this caller's turn.
    pub async fn acquire(&self) {
        let slot = self.take_slot(Instant::now());
        tokio::time::sleep_until(slot).await;
    }

    /// The next free send time at or after `now`, taken.
    fn take_slot(&self, now: Instant) -> Instant {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let slot = next.map_or(now, |n| n.max(now));
        *next = Some(slot + self.interval);
        slot
    }
}

struct Endpoint {
    /// Itself, for the tasks that send its batches.
    me: Weak<Endpoint>,
    name: String,
    client: reqwest::Client,
    url: reqwest::Url,
    method: reqwest::Method,
    headers: HeaderMap,
    auth: Option<Auth>,
    timeout: Duration,
    limiter: Option<Limiter>,
    /// The OAuth access token and when to stop using it.
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
    /// A batching destination's settings and the batch being filled.
    batching: Option<(Batch, Mutex<Open>)>,
}

/// The batch being filled.
#[derive(Default)]
struct Open {
    /// Which batch it is: a batch's timer sends it only if it is still the open one.
    serial: u64,
    /// `[` and the bodies so far, comma-separated.
    body: Vec<u8>,
    /// Each body's caller, waiting for the answer.
    waiters: Vec<oneshot::Sender<Result<Response, TransportError>>>,
}

/// A batch closed for sending: the whole array, and who waits for its answer.
struct Closed {
    body: Vec<u8>,
    waiters: Vec<oneshot::Sender<Result<Response, TransportError>>>,
}

impl Open {
    fn close(&mut self) -> Closed {
        self.serial += 1;
        let mut body = std::mem::take(&mut self.body);
        body.push(b']');
        Closed {
            body,
            waiters: std::mem::take(&mut self.waiters),
        }
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the URL: it may be a credential.
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Destination for Endpoint {
    async fn send(&self, body: &Value) -> Result<Response, TransportError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| self.error(&format!("the body cannot be written as JSON: {e}")))?;
        match &self.batching {
            None => self.send_bytes(body).await,
            Some((batch, open)) => self.batched(batch, open, body).await,
        }
    }
}

impl Endpoint {
    /// One request of `body` (JSON) when the rate limit allows; once more with a new token
    /// after a 401 to an OAuth client.
    async fn send_bytes(&self, body: Vec<u8>) -> Result<Response, TransportError> {
        if let Some(limiter) = &self.limiter {
            limiter.acquire().await;
        }
        let oauth = matches!(self.auth, Some(Auth::OauthClientCredentials { .. }));
        let again = oauth.then(|| body.clone());
        let response = self.attempt(body).await?;
        if let (401, Some(body)) = (response.status, again) {
            // The token may have been revoked early: fetch a new one and try once more.
            *self.token.lock().await = None;
            return self.attempt(body).await;
        }
        Ok(response)
    }

    /// Adds `body` to the open batch and waits for the answer to the request that carries
    /// it. The caller whose body fills the batch (or would take it over `max_bytes`) closes
    /// it; the first body's caller starts its timer. Either way a task sends it.
    async fn batched(
        &self,
        batch: &Batch,
        open: &Mutex<Open>,
        body: Vec<u8>,
    ) -> Result<Response, TransportError> {
        let (tx, rx) = oneshot::channel();
        let mut closed = Vec::new();
        let timer = {
            let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
            if !open.waiters.is_empty() && open.body.len() + body.len() + 2 > batch.max_bytes {
                closed.push(open.close());
            }
            let separator = if open.waiters.is_empty() { b'[' } else { b',' };
            open.body.push(separator);
            open.body.extend_from_slice(&body);
            open.waiters.push(tx);
            if open.waiters.len() >= batch.max_events || open.body.len() + 1 >= batch.max_bytes {
                closed.push(open.close());
            }
            (open.waiters.len() == 1).then_some(open.serial)
        };
        let Some(me) = self.me.upgrade() else {
            return Err(self.error("the destination is being dropped"));
        };
        for c in closed {
            tokio::spawn(me.clone().flush(c));
        }
        if let Some(serial) = timer {
            let wait = batch.max_wait;
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let closed = match &me.batching {
                    Some((_, open)) => {
                        let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
                        (open.serial == serial && !open.waiters.is_empty()).then(|| open.close())
                    }
                    None => None,
                };
                if let Some(c) = closed {
                    me.flush(c).await;
                }
            });
        }
        rx.await
            .unwrap_or_else(|_| Err(self.error("the batch was dropped before it was answered")))
    }

    /// Sends a closed batch; every caller in it gets the answer.
    async fn flush(self: Arc<Self>, closed: Closed) {
        let answer = self.send_bytes(closed.body).await;
        for waiter in closed.waiters {
            let _ = waiter.send(answer.clone());
        }
    }

    async fn attempt(&self, body: Vec<u8>) -> Result<Response, TransportError> {
        let mut request = self
            .client
            .request(self.method.clone(), self.url.clone())
            .timeout(self.timeout)
            .headers(self.headers.clone())
            .body(body);
        // The receiver's work continues this trace (W3C trace context); a batch, sent by a
        // task of its own, carries none (its events come from many traces).
        if !self.headers.contains_key("traceparent")
            && let Some(tp) = crate::telemetry::propagation::current()
        {
            request = request.header("traceparent", tp);
        }
        match &self.auth {
            Some(Auth::Basic { username, password }) => {
                request = request.basic_auth(username, Some(password.expose_secret()));
            }
            Some(Auth::OauthClientCredentials { .. }) => {
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {}", self.token().await?))
                        .map_err(|_| self.error("the OAuth token is not a valid header value"))?;
                value.set_sensitive(true);
                request = request.header(AUTHORIZATION, value);
            }
            Some(Auth::ApiKey { .. }) | None => {}
        }
        let response = request.send().await.map_err(|e| self.error(&describe(e)))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, SystemTime::now()));
        Ok(Response {
            status,
            retry_after,
            excerpt: excerpt(response).await,
        })
    }

    fn error(&self, what: &str) -> TransportError {
        TransportError(format!("destination {}: {what}", self.name))
    }

    /// A cached OAuth access token, or a new one from the token endpoint.
    async fn token(&self) -> Result<String, TransportError> {
        let Some(Auth::OauthClientCredentials {
            token_url,
            client_id,
            client_secret,
            scope,
        }) = &self.auth
        else {
            return Err(self.error("no OAuth settings"));
        };
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let mut form = format!(
            "grant_type=client_credentials&client_id={}",
            encode(client_id)
        );
        if let Some(scope) = scope {
            form.push_str(&format!("&scope={}", encode(scope)));
        }
        let response = self
            .client
            .post(token_url)
            .timeout(self.timeout)
            .basic_auth(client_id, Some(client_secret.expose_secret()))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|e| self.error(&format!("OAuth token request: {}", describe(e))))?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.error(&format!(
                "OAuth token endpoint answered {}: {}",
                status.as_u16(),
                excerpt(response).await
            )));
        }
        let answer: Value = response
            .json()
            .await
            .map_err(|e| self.error(&format!("OAuth token answer: {}", describe(e))))?;
        let token = answer["access_token"]
            .as_str()
            .ok_or_else(|| self.error("the OAuth token answer has no access_token"))?
            .to_string();
        // Renew a little early so that a token does not expire on the way.
        let lifetime = answer["expires_in"]
            .as_u64()
            .unwrap_or(300)
            .saturating_sub(30);
        *cached = Some((
            token.clone(),
            Instant::now() + Duration::from_secs(lifetime),
        ));
        Ok(token)
    }
}

/// reqwest's message and its causes, without the URL (which may carry a credential).
fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// The first bytes of a body, as text.
async fn excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(EXCERPT_BYTES);
    String::from_utf8_lossy(&bytes).trim().to_string()
}

/// `Retry-After` as a delay: seconds, or an HTTP date (RFC 9110 §10.2.3). Capped at a day.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let delay = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or_default(),
    };
    Some(delay.min(Duration::from_secs(86_400)))
}

/// `application/x-www-form-urlencoded` for one value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-1", now), None);
        assert_eq!(
            retry_after("999999999", now),
            Some(Duration::from_secs(86_400))
        );
    }

    #[test]
    fn form_values_are_encoded() {
        assert_eq!(encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }

    #[tokio::test]
    async fn the_limiter_spaces_callers_evenly() {
        // 50/s: one send time every 20 ms, handed out in turn to callers that come together;
        // a caller after a quiet spell goes at once. (The slots, not wake times: a test
        // thread's scheduling would blur those.)
        let limiter = Limiter::per_second(50.0).unwrap();
        let t0 = Instant::now();
        let slots: Vec<Instant> = (0..5).map(|_| limiter.take_slot(t0)).collect();
        for (i, s) in slots.iter().enumerate() {
            assert_eq!(*s - t0, Duration::from_millis(20 * i as u64));
        }
        let later = t0 + Duration::from_secs(1);
        assert_eq!(limiter.take_slot(later), later);
        // acquire waits for its slot.
        let limiter = Arc::new(Limiter::per_second(50.0).unwrap());
        limiter.acquire().await;
        let before = Instant::now();
        limiter.acquire().await;
        assert!(
            before.elapsed() >= Duration::from_millis(15),
            "{:?}",
            before.elapsed()
        );
        assert!(Limiter::per_second(0.0).is_none());
    }
}
