//! The Azure source: Scheduled Events, `GET /metadata/scheduledevents` with the header
//! `Metadata: true`, polled; a document is read again only when its `DocumentIncarnation`
//! changes. After the handlers have run, an event is acknowledged with a `StartRequests`
//! POST, so Azure starts it now instead of waiting for its `NotBefore` (configurable).
//! <https://learn.microsoft.com/azure/virtual-machines/linux/scheduled-events>

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedSender;

use super::Found;
use super::notice::Notice;

const API_VERSION: &str = "2020-07-01";

pub struct Azure {
    client: reqwest::Client,
    base: String,
}

impl Azure {
    pub fn new(base: &str) -> Result<Azure, String> {
        Ok(Azure {
            client: super::metadata_client(Duration::from_secs(2))?,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    fn events_url(&self) -> String {
        format!(
            "{}/metadata/scheduledevents?api-version={API_VERSION}",
            self.base
        )
    }

    /// The Scheduled Events document.
    pub async fn document(&self) -> Result<Value, String> {
        let r = self
            .client
            .get(self.events_url())
            .header("Metadata", "true")
            .send()
            .await
            .map_err(|e| format!("Azure scheduled events: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("Azure scheduled events: HTTP {}", r.status()));
        }
        let text = r
            .text()
            .await
            .map_err(|e| format!("Azure scheduled events: {e}"))?;
        serde_json::from_str(&text).map_err(|e| format!("Azure scheduled events: not JSON: {e}"))
    }

    /// Tells Azure the event may start now.
    pub async fn acknowledge(&self, event_id: &str) -> Result<(), String> {
        let r = self
            .client
            .post(self.events_url())
            .header("Metadata", "true")
            .json(&json!({"StartRequests": [{"EventId": event_id}]}))
            .send()
            .await
            .map_err(|e| format!("acknowledging {event_id}: {e}"))?;
        match r.status().is_success() {
            true => Ok(()),
            false => Err(format!("acknowledging {event_id}: HTTP {}", r.status())),
        }
    }

    /// The VM's name, as Scheduled Events' `Resources` list it.
    pub async fn instance_name(&self) -> Result<String, String> {
        let r = self
            .client
            .get(format!(
                "{}/metadata/instance/compute/name?api-version=2021-02-01&format=text",
                self.base
            ))
            .header("Metadata", "true")
            .send()
            .await
            .map_err(|e| format!("Azure instance name: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("Azure instance name: HTTP {}", r.status()));
        }
        let name = r.text().await.map_err(|e| e.to_string())?;
        Ok(name.trim().to_owned())
    }
}

/// Polls every `interval` until the receiver goes away.
pub async fn watch(
    azure: &Azure,
    instance: &str,
    interval: Duration,
    found: UnboundedSender<Found>,
) {
    let mut incarnation: Option<Value> = None;
    loop {
        match azure.document().await {
            Ok(doc) if doc.get("DocumentIncarnation") == incarnation.as_ref() => {}
            Ok(doc) => {
                incarnation = doc.get("DocumentIncarnation").cloned();
                let sent = match Notice::from_azure(instance, &doc) {
                    Ok(notices) => notices
                        .into_iter()
                        .all(|n| found.send(Found::Notice(n)).is_ok()),
                    Err(e) => found
                        .send(Found::Problem(format!("Azure scheduled events: {e}")))
                        .is_ok(),
                };
                if !sent {
                    return;
                }
            }
            Err(e) => {
                if found.send(Found::Problem(e)).is_err() {
                    return;
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}
