//! One provider-neutral notice: provider, kind, instance, deadline, the raw body, and the id
//! that makes the same notice seen twice one.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use crate::workflows::spot_drain::notice::{rfc3339, rfc3339_ms};

/// Where a notice came from: a cloud's metadata service, the machine itself, or a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Aws,
    Azure,
    Gcp,
    Local,
    Peer,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Aws => "aws",
            Source::Azure => "azure",
            Source::Gcp => "gcp",
            Source::Local => "local",
            Source::Peer => "peer",
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// Same for the same notice, however often it is seen.
    pub id: String,
    pub provider: Source,
    /// `spot-interruption`, `rebalance-recommendation`, `scheduled-maintenance`.
    pub kind: String,
    pub instance: String,
    /// When the capacity goes, ms since the epoch, if the notice says.
    pub deadline_ms: Option<u64>,
    pub action: Option<String>,
    pub raw: Value,
}

/// `21 Jan 2019 09:00:43 GMT`, as `events/maintenance/scheduled` writes.
fn maintenance_ms(text: &str) -> Option<u64> {
    let format = time::macros::format_description!(
        "[day padding:none] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let t = time::PrimitiveDateTime::parse(text.trim(), &format).ok()?;
    u64::try_from(t.assume_utc().unix_timestamp_nanos() / 1_000_000).ok()
}

impl Notice {
    /// `spot/instance-action`: `{"action": "terminate", "time": "2017-09-18T08:22:00Z"}`.
    pub fn from_spot(instance: &str, body: &Value) -> Result<Vec<Notice>, String> {
        let time = body["time"].as_str().ok_or("no \"time\" (a string)")?;
        let deadline = rfc3339_ms(time).ok_or_else(|| format!("time {time:?} is not RFC 3339"))?;
        Ok(vec![Notice {
            id: format!("aws:spot:{instance}:{time}"),
            provider: Source::Aws,
            kind: "spot-interruption".into(),
            instance: instance.to_owned(),
            deadline_ms: Some(deadline),
            action: body["action"].as_str().map(str::to_owned),
            raw: body.clone(),
        }])
    }

    /// `events/recommendations/rebalance`: `{"noticeTime": "…"}`; no deadline.
    pub fn from_rebalance(instance: &str, body: &Value) -> Result<Vec<Notice>, String> {
        let time = body["noticeTime"]
            .as_str()
            .ok_or("no \"noticeTime\" (a string)")?;
        rfc3339_ms(time).ok_or_else(|| format!("noticeTime {time:?} is not RFC 3339"))?;
        Ok(vec![Notice {
            id: format!("aws:rebalance:{instance}:{time}"),
            provider: Source::Aws,
            kind: "rebalance-recommendation".into(),
            instance: instance.to_owned(),
            deadline_ms: None,
            action: None,
            raw: body.clone(),
        }])
    }

    /// `events/maintenance/scheduled`: a list; each event not yet completed or canceled is a
    /// notice, its `NotBefore` the deadline.
    pub fn from_maintenance(instance: &str, body: &Value) -> Result<Vec<Notice>, String> {
        let events = body.as_array().ok_or("not a list of events")?;
        let mut out = Vec::new();
        for e in events {
            let state = e["State"].as_str().unwrap_or("active");
            if state == "completed" || state == "canceled" {
                continue;
            }
            let id = e["EventId"]
                .as_str()
                .ok_or("an event without \"EventId\"")?;
            let not_before = e["NotBefore"].as_str().unwrap_or_default();
            out.push(Notice {
                id: format!("aws:maintenance:{instance}:{id}"),
                provider: Source::Aws,
                kind: "scheduled-maintenance".into(),
                instance: instance.to_owned(),
                deadline_ms: Some(
                    maintenance_ms(not_before)
                        .ok_or_else(|| format!("NotBefore {not_before:?} of {id} is not a time"))?,
                ),
                action: e["Code"].as_str().map(str::to_owned),
                raw: e.clone(),
            });
        }
        Ok(out)
    }

    /// Azure Scheduled Events: each event of the document that affects `instance` (the VM's
    /// name in `Resources`) and has not ended. `Preempt` is a spot eviction; `Terminate` a
    /// deletion; `Reboot`, `Redeploy`, `Freeze` maintenance. `NotBefore` (an HTTP date, empty
    /// once the event has started) is the deadline.
    pub fn from_azure(instance: &str, body: &Value) -> Result<Vec<Notice>, String> {
        let events = body["Events"].as_array().ok_or("no \"Events\" (a list)")?;
        let mut out = Vec::new();
        for e in events {
            let id = e["EventId"]
                .as_str()
                .ok_or("an event without \"EventId\"")?;
            let affected = e["Resources"]
                .as_array()
                .is_none_or(|r| r.is_empty() || r.iter().any(|r| r.as_str() == Some(instance)));
            if !affected || e["EventStatus"].as_str() == Some("Completed") {
                continue;
            }
            let event_type = e["EventType"]
                .as_str()
                .ok_or_else(|| format!("event {id} has no \"EventType\""))?;
            let kind = match event_type {
                "Preempt" => "spot-interruption",
                "Terminate" => "termination",
                "Reboot" | "Redeploy" | "Freeze" | "LiveMigration" => "scheduled-maintenance",
                other => {
                    tracing::debug!(event = %id, "Azure event type {other:?} is no interruption");
                    continue;
                }
            };
            let deadline_ms = match e["NotBefore"].as_str().unwrap_or_default().trim() {
                "" => None,
                text => Some(
                    httpdate::parse_http_date(text)
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_millis() as u64)
                        .ok_or_else(|| format!("NotBefore {text:?} of {id} is not an HTTP date"))?,
                ),
            };
            out.push(Notice {
                id: format!("azure:{id}"),
                provider: Source::Azure,
                kind: kind.into(),
                instance: instance.to_owned(),
                deadline_ms,
                action: Some(event_type.to_owned()),
                raw: e.clone(),
            });
        }
        Ok(out)
    }

    /// GCP `instance/preempted` turned `TRUE` (`etag` tells this change from a later one):
    /// about 30 s left.
    pub fn from_gcp_preempted(instance: &str, etag: &str, now_ms: u64, notice_ms: u64) -> Notice {
        Notice {
            id: format!("gcp:preempted:{instance}:{etag}"),
            provider: Source::Gcp,
            kind: "spot-interruption".into(),
            instance: instance.to_owned(),
            deadline_ms: Some(now_ms + notice_ms),
            action: Some("preempt".into()),
            raw: json!({"preempted": "TRUE"}),
        }
    }

    /// GCP `instance/maintenance-event` other than `NONE`.
    pub fn from_gcp_maintenance(
        instance: &str,
        value: &str,
        etag: &str,
        now_ms: u64,
        notice_ms: u64,
    ) -> Result<Notice, String> {
        let action = match value {
            "MIGRATE_ON_HOST_MAINTENANCE" => "migrate",
            "TERMINATE_ON_HOST_MAINTENANCE" => "terminate",
            other => return Err(format!("maintenance-event {other:?} is not a known value")),
        };
        Ok(Notice {
            id: format!("gcp:maintenance:{instance}:{etag}"),
            provider: Source::Gcp,
            kind: "scheduled-maintenance".into(),
            instance: instance.to_owned(),
            deadline_ms: Some(now_ms + notice_ms),
            action: Some(action.into()),
            raw: json!({"maintenance-event": value}),
        })
    }

    /// `interruption`, `disk`, `memory`, `network` or `peer`: what handlers' `on` names.
    pub fn class(&self) -> &'static str {
        match self.kind.as_str() {
            "disk-usage" => "disk",
            "memory-pressure" => "memory",
            "network-unreachable" => "network",
            "peer-interruption" => "peer",
            _ => "interruption",
        }
    }

    /// The event `spot_drain` reads (`source` `tugboat.agent`), sent by `publish` handlers.
    pub fn event(&self, now_ms: u64, instance_type: Option<&str>, zone: Option<&str>) -> Value {
        json!({
            "version": "0",
            "id": self.id,
            "source": "tugboat.agent",
            "detail-type": "Interruption Notice",
            "time": rfc3339(now_ms),
            "detail": {
                "provider": self.provider,
                "kind": self.kind,
                "instance-id": self.instance,
                "instance-action": self.action,
                "deadline": self.deadline_ms.map(rfc3339),
                "instance-type": instance_type,
                "availability-zone": zone,
                "raw": self.raw,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/tests/fixtures/events/imds/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_fixture_bodies_are_read_and_bad_ones_refused() {
        let spot = Notice::from_spot(
            "i-1",
            &fixture("spot-instance-action.terminate.awsdocs.json"),
        )
        .unwrap();
        assert_eq!(spot[0].deadline_ms, Some(1_505_722_920_000));
        assert_eq!(spot[0].action.as_deref(), Some("terminate"));
        let stop =
            Notice::from_spot("i-1", &fixture("spot-instance-action.stop.awsdocs.json")).unwrap();
        assert_eq!(stop[0].action.as_deref(), Some("stop"));
        let r = Notice::from_rebalance(
            "i-1",
            &fixture("events-recommendations-rebalance.awsdocs.json"),
        )
        .unwrap();
        assert_eq!(r[0].kind, "rebalance-recommendation");
        let m =
            Notice::from_maintenance("i-1", &fixture("events-maintenance-scheduled.awsdocs.json"))
                .unwrap();
        assert_eq!(
            m[0].id,
            "aws:maintenance:i-1:instance-event-0d59937288b749b32"
        );
        assert_eq!(m[0].deadline_ms, Some(1_548_061_243_000));
        for (body, why) in [
            (json!({"action": "terminate"}), "time"),
            (json!({"time": "soon"}), "RFC 3339"),
            (json!([1]), "time"),
        ] {
            let e = Notice::from_spot("i-1", &body).unwrap_err();
            assert!(e.contains(why), "{body}: {e}");
        }
        assert!(Notice::from_maintenance("i-1", &json!({})).is_err());
        assert!(
            Notice::from_maintenance("i-1", &json!([{"EventId": "e", "NotBefore": "later"}]))
                .is_err()
        );
        // The event spot_drain reads: the same identity as EventBridge's warning.
        let e = spot[0].event(0, Some("m5.large"), None);
        assert_eq!(e["source"], "tugboat.agent");
        assert_eq!(e["detail"]["deadline"], "2017-09-18T08:22:00Z");
        let n = crate::workflows::spot_drain::notice::Notice::read(&e).unwrap();
        assert_eq!(n.identity(), "i-1:spot-interruption:2017-09-18T08:20");
    }

    #[test]
    fn azure_documents_are_read_for_this_vm_and_bad_ones_refused() {
        // The shape of learn.microsoft.com's Scheduled Events example.
        let doc = json!({"DocumentIncarnation": 2, "Events": [
            {"EventId": "E1", "EventType": "Preempt", "ResourceType": "VirtualMachine",
             "Resources": ["vm-1"], "EventStatus": "Scheduled",
             "NotBefore": "Mon, 19 Sep 2016 18:29:47 GMT", "Description": "",
             "EventSource": "Platform", "DurationInSeconds": -1},
            {"EventId": "E2", "EventType": "Reboot", "Resources": ["vm-2"],
             "EventStatus": "Scheduled", "NotBefore": ""},
            {"EventId": "E3", "EventType": "Freeze", "Resources": ["vm-1"],
             "EventStatus": "Started", "NotBefore": ""},
            {"EventId": "E4", "EventType": "Terminate", "Resources": ["vm-1"],
             "EventStatus": "Completed", "NotBefore": ""},
        ]});
        let n = Notice::from_azure("vm-1", &doc).unwrap();
        let ids: Vec<&str> = n.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["azure:E1", "azure:E3"]);
        assert_eq!(n[0].kind, "spot-interruption");
        assert_eq!(n[0].deadline_ms, Some(1_474_309_787_000));
        assert_eq!(n[1].kind, "scheduled-maintenance");
        assert_eq!(n[1].deadline_ms, None, "started: no NotBefore");
        for (body, why) in [
            (json!({"DocumentIncarnation": 1}), "Events"),
            (json!({"Events": [{"EventType": "Preempt"}]}), "EventId"),
            (json!({"Events": [{"EventId": "x"}]}), "EventType"),
            (
                json!({"Events": [{"EventId": "x", "EventType": "Reboot", "NotBefore": "soon"}]}),
                "HTTP date",
            ),
        ] {
            let e = Notice::from_azure("vm-1", &body).unwrap_err();
            assert!(e.contains(why), "{body}: {e}");
        }
    }

    #[test]
    fn gcp_values_become_notices_with_their_time_left() {
        let p = Notice::from_gcp_preempted("gce-1", "etag-2", 1_000, 30_000);
        assert_eq!(p.deadline_ms, Some(31_000));
        assert_eq!(p.class(), "interruption");
        let m =
            Notice::from_gcp_maintenance("gce-1", "MIGRATE_ON_HOST_MAINTENANCE", "e", 0, 60_000)
                .unwrap();
        assert_eq!(m.action.as_deref(), Some("migrate"));
        assert!(Notice::from_gcp_maintenance("gce-1", "SOON", "e", 0, 1).is_err());
    }
}
