//! The AWS source: the instance metadata service with IMDSv2 — a session token PUT with a
//! lifetime, GETs carrying it, a new token before the old one ends (or when the service says
//! 401) — polling `spot/instance-action` (404: nothing), `events/recommendations/rebalance`
//! and `events/maintenance/scheduled`. Plain IMDSv1 GETs only when configured and no token can
//! be had.

use std::time::Duration;

// tokio's instant, not std's: the token's expiry moves with the timer the agent waits on
// (and with paused time in a test), as its clock does.
use tokio::time::Instant;

use serde_json::Value;

use super::notice::Notice;

/// Reads one metadata body into notices.
type ReadBody = fn(&str, &Value) -> Result<Vec<Notice>, String>;

pub struct Imds {
    client: reqwest::Client,
    base: String,
    ttl: Duration,
    v1_fallback: bool,
    token: Option<(String, Instant)>,
}

impl Imds {
    pub fn new(base: &str, ttl: Duration, v1_fallback: bool) -> Result<Imds, String> {
        // The metadata service answers in milliseconds; a stuck one must not stall a poll.
        let client = super::metadata_client(Duration::from_secs(2))?;
        Ok(Imds {
            client,
            base: base.trim_end_matches('/').to_owned(),
            ttl,
            v1_fallback,
            token: None,
        })
    }

    /// A token with at least a tenth of its life left, fetched anew when needed.
    async fn token(&mut self) -> Result<Option<String>, String> {
        let margin = self.ttl / 10;
        if let Some((t, until)) = &self.token
            && Instant::now() + margin < *until
        {
            return Ok(Some(t.clone()));
        }
        let answer = self
            .client
            .put(format!("{}/latest/api/token", self.base))
            .header(
                "X-aws-ec2-metadata-token-ttl-seconds",
                self.ttl.as_secs().to_string(),
            )
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => {
                let token = r.text().await.map_err(|e| format!("IMDS token: {e}"))?;
                self.token = Some((token.trim().to_owned(), Instant::now() + self.ttl));
                Ok(self.token.as_ref().map(|(t, _)| t.clone()))
            }
            Ok(r) if self.v1_fallback => {
                tracing::debug!(status = %r.status(), "no IMDSv2 token; IMDSv1 as configured");
                Ok(None)
            }
            Ok(r) => Err(format!("IMDS token: HTTP {}", r.status())),
            Err(e) if self.v1_fallback => {
                tracing::debug!(error = %e, "no IMDSv2 token; IMDSv1 as configured");
                Ok(None)
            }
            Err(e) => Err(format!("IMDS token: {e}")),
        }
    }

    /// The text at `path` under `/latest/meta-data/`, `None` for 404.
    pub async fn get(&mut self, path: &str) -> Result<Option<String>, String> {
        for _ in 0..2 {
            let token = self.token().await?;
            let mut request = self
                .client
                .get(format!("{}/latest/meta-data/{path}", self.base));
            if let Some(t) = &token {
                request = request.header("X-aws-ec2-metadata-token", t);
            }
            let r = request
                .send()
                .await
                .map_err(|e| format!("IMDS {path}: {e}"))?;
            match r.status().as_u16() {
                200 => {
                    return r
                        .text()
                        .await
                        .map(Some)
                        .map_err(|e| format!("IMDS {path}: {e}"));
                }
                404 => return Ok(None),
                // The token ended early (the service restarted, or the clock): a new one.
                401 => self.token = None,
                code => return Err(format!("IMDS {path}: HTTP {code}")),
            }
        }
        Err(format!("IMDS {path}: HTTP 401 with a fresh token"))
    }

    /// The notices the service shows now; each problem (an error, a malformed body) as an
    /// error to log, the others still returned.
    pub async fn poll(&mut self, instance: &str) -> Vec<Result<Notice, String>> {
        let mut out = Vec::new();
        let reads: [(&str, ReadBody); 3] = [
            ("spot/instance-action", Notice::from_spot),
            ("events/recommendations/rebalance", Notice::from_rebalance),
            ("events/maintenance/scheduled", Notice::from_maintenance),
        ];
        for (path, read) in reads {
            match self.get(path).await {
                Ok(None) => {}
                Ok(Some(text)) => match serde_json::from_str::<Value>(&text) {
                    Ok(body) => match read(instance, &body) {
                        Ok(notices) => out.extend(notices.into_iter().map(Ok)),
                        Err(e) => out.push(Err(format!("IMDS {path}: {e}"))),
                    },
                    Err(e) => out.push(Err(format!("IMDS {path}: not JSON: {e}"))),
                },
                Err(e) => out.push(Err(e)),
            }
        }
        out
    }
}

/// Polls every `interval` until the receiver goes away.
pub async fn watch(
    imds: &mut Imds,
    instance: &str,
    interval: std::time::Duration,
    found: tokio::sync::mpsc::UnboundedSender<super::Found>,
) {
    loop {
        for f in imds.poll(instance).await {
            let message = match f {
                Ok(n) => super::Found::Notice(n),
                Err(e) => super::Found::Problem(format!("polling the metadata service: {e}")),
            };
            if found.send(message).is_err() {
                return;
            }
        }
        tokio::time::sleep(interval).await;
    }
}
