//! The GCP source: the metadata server's `instance/preempted` (`TRUE` once the instance is
//! being preempted, about 30 s before it stops) and `instance/maintenance-event` (`NONE`,
//! `MIGRATE_ON_HOST_MAINTENANCE`, `TERMINATE_ON_HOST_MAINTENANCE`), each long-polled with
//! `?wait_for_change=true&last_etag=…`, with the header `Metadata-Flavor: Google`.
//! <https://cloud.google.com/compute/docs/metadata/querying-metadata#waitforchange>

use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use super::Found;
use super::config::AgentClock;
use super::notice::Notice;

pub struct Gcp {
    client: reqwest::Client,
    base: String,
    wait: Duration,
}

impl Gcp {
    pub fn new(base: &str, wait: Duration) -> Result<Gcp, String> {
        Ok(Gcp {
            // A long poll answers after up to `wait`; a little more before it counts as stuck.
            client: super::metadata_client(wait + Duration::from_secs(5))?,
            base: base.trim_end_matches('/').to_owned(),
            wait,
        })
    }

    /// The value at `path` under `/computeMetadata/v1/instance/` and its ETag; with
    /// `last_etag`, only once it differs (or the wait ends).
    pub async fn get(
        &self,
        path: &str,
        last_etag: Option<&str>,
    ) -> Result<(String, String), String> {
        let mut url = format!("{}/computeMetadata/v1/instance/{path}", self.base);
        if let Some(etag) = last_etag {
            url.push_str(&format!(
                "?wait_for_change=true&last_etag={etag}&timeout_sec={}",
                self.wait.as_secs()
            ));
        }
        let r = self
            .client
            .get(url)
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .map_err(|e| format!("GCP {path}: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("GCP {path}: HTTP {}", r.status()));
        }
        // Anything else on the metadata address (a proxy, a captive portal) is not GCP's.
        if r.headers()
            .get("metadata-flavor")
            .and_then(|v| v.to_str().ok())
            != Some("Google")
        {
            return Err(format!(
                "GCP {path}: the answer lacks Metadata-Flavor: Google"
            ));
        }
        let etag = r
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let value = r.text().await.map_err(|e| format!("GCP {path}: {e}"))?;
        Ok((value.trim().to_owned(), etag))
    }
}

/// Long-polls `path` until the receiver goes away, turning each value into notices with
/// `read(value, etag)`.
async fn watch(
    gcp: &Gcp,
    path: &str,
    found: &UnboundedSender<Found>,
    read: impl Fn(&str, &str) -> Result<Option<Notice>, String>,
) {
    let mut etag: Option<String> = None;
    loop {
        let answer = gcp.get(path, etag.as_deref()).await;
        let message = match answer {
            // The wait ended without a change: nothing new.
            Ok((_, new_etag)) if !new_etag.is_empty() && etag.as_deref() == Some(&new_etag) => None,
            Ok((value, new_etag)) => {
                let read = read(&value, &new_etag);
                etag = Some(new_etag);
                match read {
                    Ok(n) => n.map(Found::Notice),
                    Err(e) => Some(Found::Problem(format!("GCP {path}: {e}"))),
                }
            }
            Err(e) => {
                // Not at full speed against a server that fails at once.
                tokio::time::sleep(Duration::from_secs(1)).await;
                Some(Found::Problem(e))
            }
        };
        if let Some(m) = message
            && found.send(m).is_err()
        {
            return;
        }
        if found.is_closed() {
            return;
        }
        if etag.as_deref() == Some("") {
            // No ETag to wait on: a plain poll, once a second.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Both long polls, together.
pub async fn watch_all(
    gcp: &Gcp,
    instance: &str,
    config: &super::config::GcpSource,
    clock: &AgentClock,
    found: UnboundedSender<Found>,
) {
    let preempted = watch(gcp, "preempted", &found, |value, etag| match value {
        "TRUE" => Ok(Some(Notice::from_gcp_preempted(
            instance,
            etag,
            clock.now_ms(),
            config.preemption_notice.as_millis() as u64,
        ))),
        "FALSE" => Ok(None),
        other => Err(format!("{other:?} is neither TRUE nor FALSE")),
    });
    let maintenance = watch(
        gcp,
        "maintenance-event",
        &found,
        |value, etag| match value {
            "NONE" => Ok(None),
            other => Notice::from_gcp_maintenance(
                instance,
                other,
                etag,
                clock.now_ms(),
                config.maintenance_notice.as_millis() as u64,
            )
            .map(Some),
        },
    );
    futures::future::join(preempted, maintenance).await;
}
