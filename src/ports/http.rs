//! The HTTP destination port: named endpoints with their auth, headers, timeout and a rate
//! limit shared by every route using them, as EventBridge API destinations and connections
//! are. `src/http/` implements it over reqwest; [`super::memory::MemoryHttp`] scripts
//! responses for unit tests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use serde::Deserialize;

/// One destination (`[destinations.NAME]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationSettings {
    /// `http://` or `https://`. Required.
    pub url: String,
    /// Default `POST`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Default none.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// Extra request headers. `content-type: application/json` is sent unless set here.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Per request, connection included. Default 5 s (API destinations' limit).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Invocations per second, shared by every route using the destination. Default 300
    /// (EventBridge's default); `0` means unlimited.
    #[serde(default = "default_rate")]
    pub rate_limit_per_second: f64,
    /// How long a delivery keeps being retried after its first attempt. Default 24 h.
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub max_age: Duration,
    /// Attempts in all. Default 185 (EventBridge's default).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Several deliveries per request, as EventBridge Pipes and Vector batch: off unless set.
    #[serde(default)]
    pub batch: Option<Batch>,
}

/// `[destinations.NAME.batch]`: the bodies of the deliveries to one destination go out
/// together, a JSON array per request, sent when it holds `max_events` bodies, when the next
/// would take it over `max_bytes`, or `max_wait` after its first body came, whichever is
/// first. The answer is every delivery's in it (a 2xx delivers them all, a 429 or 5xx retries
/// them all), so a receiver must take the array whole or refuse it whole. The rate limit
/// counts requests.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// Bodies per request, at most: 1 to 10 000. Required.
    pub max_events: usize,
    /// A request's body (the array), at most, in bytes: 1 KiB to 64 MiB. Default 1 MiB. A
    /// body larger on its own goes alone, in an array of one.
    #[serde(default = "default_batch_bytes")]
    pub max_bytes: usize,
    /// How long a batch waits for more after its first body: more than 0 s, at most 60 s.
    /// Default 50 ms.
    #[serde(default = "default_batch_wait", with = "humantime_serde")]
    pub max_wait: Duration,
}

fn default_batch_bytes() -> usize {
    1 << 20
}
fn default_batch_wait() -> Duration {
    Duration::from_millis(50)
}

fn default_method() -> String {
    "POST".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_rate() -> f64 {
    300.0
}
fn default_max_age() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_max_attempts() -> u32 {
    185
}

/// How requests authenticate, as EventBridge connections offer. Secrets are never logged; set
/// them from the environment (`TUGBOAT__DESTINATIONS__NAME__AUTH__PASSWORD`).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    Basic {
        username: String,
        password: SecretString,
    },
    /// A header carrying a key (`x-api-key: …`).
    ApiKey { header: String, value: SecretString },
    /// OAuth 2.0 client credentials: a token fetched from `token_url`, cached until it
    /// expires, sent as `Authorization: Bearer …`.
    OauthClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: SecretString,
        #[serde(default)]
        scope: Option<String>,
    },
}

/// What the destination answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The `Retry-After` header, as a delay from now.
    pub retry_after: Option<Duration>,
    /// The first bytes of the body, for the DLQ entry.
    pub excerpt: String,
}

/// The request could not be made or had no answer (connection refused, timeout, an OAuth
/// token that could not be had): always worth another attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

/// One configured destination.
#[async_trait]
pub trait Destination: Send + Sync + std::fmt::Debug {
    /// Waits for the rate limit's token (without holding a thread), then sends `body` as JSON
    /// with the destination's auth and headers; a batching destination sends it in its next
    /// batch and answers with that request's answer ([`Batch`]).
    async fn send(&self, body: &serde_json::Value) -> Result<Response, TransportError>;
}

/// Opens destinations.
pub trait Http: Send + Sync + std::fmt::Debug {
    /// Destination `name`, made on first use and then shared (its rate limit with it).
    fn destination(
        &self,
        name: &str,
        settings: &DestinationSettings,
    ) -> Result<Arc<dyn Destination>, String>;
}
