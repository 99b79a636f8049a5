//! Peer notices: another instance of the group is being interrupted. Its notice arrives on an
//! MQTT topic (what the forwarding workflow publishes from EventBridge, or another agent's
//! `mqtt` handler) or an SQS queue, as an event `spot_drain` reads; it becomes a
//! `peer-interruption` notice for the `peer` handlers, e.g. to promote a replica before its
//! primary goes. This instance's own notices are left out (its own handlers run for them).
//!
//! Anyone who reaches the broker or the queue could say a primary is going (and make every
//! replica promote itself), so a peer notice is believed only with the group's signature
//! ([`SIGNATURE_FIELD`], made with the shared `signing_key` by another agent's `mqtt`
//! handler) and only while fresh (`notice_max_age`); anything else is logged and ignored.
//! [`Limiter`] lets one peer's notices of one kind run the handlers at most once per
//! `peer.min_interval`, however the notices vary.

use std::collections::HashMap;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

use super::Found;
use super::config::AgentClock;
use crate::signing::{Purpose, Refusal, SigningKey};

/// How long each receive from a peer queue waits (SQS's longest long poll).
pub const QUEUE_WAIT: Duration = Duration::from_secs(20);
use super::notice::Notice;
use crate::workflows::spot_drain::notice::Notice as Interruption;

/// The top-level field of a peer notice that holds its signature.
pub const SIGNATURE_FIELD: &str = "tugboat-signature";

/// What a peer notice must show.
#[derive(Debug, Clone)]
pub struct PeerTrust {
    /// The agent's `signing_key`; without it no peer notice is believed.
    pub key: Option<SigningKey>,
    /// The agent's `notice_max_age`.
    pub window: Duration,
    /// `[peer] accept_unsigned`: the queue's policy (or the broker's ACL) lets only trusted
    /// senders publish, EventBridge say, whose notices carry no signature of ours. A signed
    /// notice is still checked.
    pub accept_unsigned: bool,
}

/// `event` with the group's signature (what the agent's `mqtt` handler publishes).
pub fn sign(mut event: Value, key: &SigningKey, now_ms: u64) -> Value {
    if let Some(o) = event.as_object_mut() {
        o.remove(SIGNATURE_FIELD);
    }
    let signature = key.sign(Purpose::PeerNotice, &[canonical(&event).as_bytes()], now_ms);
    if let Some(o) = event.as_object_mut() {
        o.insert(SIGNATURE_FIELD.into(), Value::String(signature));
    }
    event
}

/// Checks and removes the signature of a peer notice.
fn verify(event: &mut Value, trust: &PeerTrust, now_ms: u64) -> Result<(), Refusal> {
    let signature = event
        .as_object_mut()
        .and_then(|o| o.remove(SIGNATURE_FIELD))
        .and_then(|v| v.as_str().map(str::to_owned));
    if signature.is_none() && trust.accept_unsigned {
        return Ok(());
    }
    crate::signing::require(trust.key.as_ref(), "signing_key")?
        .verify(
            Purpose::PeerNotice,
            &[canonical(event).as_bytes()],
            signature.as_deref(),
            now_ms,
            trust.window,
        )
        .map(|_| ())
}

/// JSON with every object's keys in order, whatever order they came in: the signed text of
/// a notice, the same for the signer and for every peer that parses it.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&o[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(canonical).collect();
            format!("[{}]", items.join(","))
        }
        scalar => scalar.to_string(),
    }
}

/// The peer notice in `body`, `Ok(None)` if it is this instance's own; an error (logged, the
/// notice ignored) if it is not one, or not signed by the group and fresh.
pub fn read(
    own_instance: &str,
    body: &str,
    trust: &PeerTrust,
    now_ms: u64,
) -> Result<Option<Notice>, String> {
    let mut event: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    verify(&mut event, trust, now_ms).map_err(|e| format!("not believed: {e}"))?;
    let n = Interruption::read(&event)?;
    let Some(instance) = n.instances.first().cloned() else {
        return Err("the notice names no instance".into());
    };
    if n.instances.iter().any(|i| i == own_instance) {
        return Ok(None);
    }
    Ok(Some(Notice {
        id: format!("peer:{}", n.identity()),
        provider: crate::agent::notice::Source::Peer,
        kind: "peer-interruption".into(),
        instance,
        deadline_ms: n.ends_ms,
        action: Some(n.kind.as_str().to_owned()),
        raw: event,
    }))
}

/// At most one handler run per peer instance and notice kind per interval: a flood of
/// notices about one peer (each a new minute, so a new notice id) runs the handlers once and
/// is logged, not remembered, so it cannot push real notices out of the state file.
#[derive(Debug)]
pub struct Limiter {
    interval: Duration,
    /// When each (peer, kind) last ran the handlers, ms by the agent's clock.
    last: HashMap<(String, String), u64>,
}

impl Limiter {
    pub fn new(interval: Duration) -> Limiter {
        Limiter {
            interval,
            last: HashMap::new(),
        }
    }

    /// Whether a peer notice may run the handlers at `now_ms`; counted when it may.
    pub fn admit(&mut self, notice: &Notice, now_ms: u64) -> bool {
        let key = (
            notice.instance.clone(),
            notice.action.clone().unwrap_or_default(),
        );
        let interval = self.interval.as_millis() as u64;
        self.last
            .retain(|_, at| now_ms.saturating_sub(*at) < interval);
        if self.last.contains_key(&key) {
            return false;
        }
        self.last.insert(key, now_ms);
        true
    }
}

/// Subscribes to `topic` on `broker` (host, port) and passes each peer notice on, until the
/// receiver goes away; reconnects (and subscribes again) when the connection drops.
pub async fn watch_mqtt(
    broker: crate::ports::mqtt::BrokerSettings,
    topic: &str,
    own_instance: &str,
    trust: PeerTrust,
    clock: AgentClock,
    found: UnboundedSender<Found>,
) {
    let address = format!("{}:{}", broker.host, broker.port());
    let options = match crate::mqtt::options("peer", &broker) {
        Ok(mut o) => {
            o.set_max_packet_size(320 * 1024, 10 * 1024);
            o
        }
        Err(e) => {
            let _ = found.send(Found::Problem(format!("peer broker {address}: {e}")));
            return;
        }
    };
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    loop {
        let message = match eventloop.poll().await {
            // Every (re)connection is a fresh session: subscribe again.
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if let Err(e) = client.try_subscribe(topic, QoS::AtLeastOnce) {
                    Some(Found::Problem(format!("peer topic {topic}: {e}")))
                } else {
                    tracing::info!(topic = %topic, "watching peers");
                    None
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let body = String::from_utf8_lossy(&p.payload);
                match read(own_instance, &body, &trust, clock.now_ms()) {
                    Ok(n) => n.map(Found::Notice),
                    Err(e) => Some(Found::Problem(format!("peer message on {}: {e}", p.topic))),
                }
            }
            Ok(_) => None,
            Err(e) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Some(Found::Problem(format!("peer broker {address}: {e}")))
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
    }
}

/// Long-polls the SQS queue and passes each peer notice on; every message is deleted once
/// read (a malformed one too, after it is logged: it would not read better next time).
pub async fn watch_queue(
    api: &crate::config::AwsSettings,
    queue: &str,
    own_instance: &str,
    trust: PeerTrust,
    clock: AgentClock,
    found: UnboundedSender<Found>,
) {
    use crate::ports::QueueSource;
    let clients = crate::aws::Clients::new(api).await;
    let queues = crate::aws::sqs::SqsQueues::new(clients.sqs);
    let q = loop {
        match queues.open(queue).await {
            Ok(q) => break q,
            Err(e) => {
                if found
                    .send(Found::Problem(format!("peer queue {queue}: {}", e.message)))
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    loop {
        let batch = match q.receive(10, QUEUE_WAIT, Duration::from_secs(30)).await {
            Ok(b) => b,
            Err(e) => {
                if found
                    .send(Found::Problem(format!("peer queue {queue}: {}", e.message)))
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut handles = Vec::new();
        for m in batch {
            let message = match read(own_instance, &m.body, &trust, clock.now_ms()) {
                Ok(n) => n.map(Found::Notice),
                Err(e) => Some(Found::Problem(format!(
                    "peer message {}: {e}",
                    m.message_id
                ))),
            };
            if let Some(message) = message
                && found.send(message).is_err()
            {
                return;
            }
            handles.push(m.receipt_handle);
        }
        if !handles.is_empty()
            && let Err(e) = q.delete_batch(&handles).await
        {
            let _ = found.send(Found::Problem(format!("peer queue {queue}: {}", e.message)));
        }
        if found.is_closed() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_796_032_800_000 + 30_000;

    fn trust() -> PeerTrust {
        PeerTrust {
            key: Some(SigningKey::parse("the-group-key-long-enough-for-tests-00").unwrap()),
            window: Duration::from_secs(300),
            accept_unsigned: false,
        }
    }

    fn warning(instance: &str, time: &str) -> Value {
        serde_json::from_str(&format!(
            r#"{{"version": "0", "id": "1", "detail-type": "EC2 Spot Instance Interruption Warning",
            "source": "aws.ec2", "account": "1", "time": "{time}", "region": "us-east-1",
            "resources": [], "detail": {{"instance-id": "{instance}", "instance-action": "terminate"}}}}"#
        ))
        .unwrap()
    }

    fn signed(event: Value, at: u64) -> String {
        sign(event, trust().key.as_ref().unwrap(), at).to_string()
    }

    #[test]
    fn signed_peer_notices_are_read_and_own_ones_left_out() {
        let body = signed(warning("i-primary", "2026-11-30T10:00:00Z"), NOW);
        let n = read("i-replica", &body, &trust(), NOW + 1_000)
            .unwrap()
            .unwrap();
        assert_eq!(n.kind, "peer-interruption");
        assert_eq!(n.class(), "peer");
        assert_eq!(n.instance, "i-primary");
        assert_eq!(n.id, "peer:i-primary:spot-interruption:2026-11-30T10:00");
        assert_eq!(n.deadline_ms, Some(1_796_032_800_000 + 120_000));
        assert_eq!(
            read("i-primary", &body, &trust(), NOW).unwrap(),
            None,
            "its own notice"
        );
        // The signed text does not depend on the order of the fields as they arrive.
        let reordered: Value = serde_json::from_str(&body).unwrap();
        let mut fields: Vec<(String, Value)> =
            reordered.as_object().unwrap().clone().into_iter().collect();
        fields.reverse();
        let text = format!(
            "{{{}}}",
            fields
                .iter()
                .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(read("i-replica", &text, &trust(), NOW).unwrap().is_some());
        for bad in [
            "{",
            "[]",
            r#"{"source": "aws.s3", "detail-type": "x", "time": "2026-11-30T10:00:00Z"}"#,
        ] {
            assert!(read("i-replica", bad, &trust(), NOW).is_err(), "{bad}");
        }
    }

    #[test]
    fn unsigned_forged_and_replayed_peer_notices_are_not_believed() {
        // The attack: any client of the broker publishes "the primary is going".
        let forged = warning("i-primary", "2026-11-30T10:00:00Z").to_string();
        let e = read("i-replica", &forged, &trust(), NOW).unwrap_err();
        assert!(e.contains("carries no signature"), "{e}");
        // Signed by another key.
        let other = SigningKey::parse("another-key-that-is-long-enough-000000").unwrap();
        let e = read(
            "i-replica",
            &sign(warning("i-primary", "2026-11-30T10:00:00Z"), &other, NOW).to_string(),
            &trust(),
            NOW,
        )
        .unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        // A real notice with its instance changed.
        let mut moved: Value =
            serde_json::from_str(&signed(warning("i-primary", "2026-11-30T10:00:00Z"), NOW))
                .unwrap();
        moved["detail"]["instance-id"] = Value::String("i-other".into());
        let e = read("i-replica", &moved.to_string(), &trust(), NOW).unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        // A real notice replayed an hour later.
        let body = signed(warning("i-primary", "2026-11-30T10:00:00Z"), NOW);
        let e = read("i-replica", &body, &trust(), NOW + 3_600_000).unwrap_err();
        assert!(e.contains("freshness window"), "{e}");
        // An agent without a key believes no peer.
        let keyless = PeerTrust {
            key: None,
            ..trust()
        };
        let e = read("i-replica", &body, &keyless, NOW).unwrap_err();
        assert!(e.contains("signing_key"), "{e}");
        // Where the operator says only trusted senders reach the source (accept_unsigned), an
        // unsigned notice is taken; a signed one is still checked.
        let open = PeerTrust {
            accept_unsigned: true,
            ..trust()
        };
        assert!(read("i-replica", &forged, &open, NOW).unwrap().is_some());
        let e = read("i-replica", &body, &open, NOW + 3_600_000).unwrap_err();
        assert!(e.contains("freshness window"), "{e}");
    }

    #[test]
    fn a_flood_about_one_peer_runs_the_handlers_once_per_interval_and_kind() {
        let mut limiter = Limiter::new(Duration::from_secs(600));
        let t0: u64 = 1_700_000_000_000;
        let notice = |instance: &str, minute: u32, action: &str| Notice {
            id: format!("peer:{instance}:{minute}"),
            provider: crate::agent::notice::Source::Peer,
            kind: "peer-interruption".into(),
            instance: instance.into(),
            deadline_ms: None,
            action: Some(action.into()),
            raw: Value::Null,
        };
        assert!(limiter.admit(&notice("i-1", 0, "spot-interruption"), t0));
        for minute in 1..100 {
            assert!(!limiter.admit(
                &notice("i-1", minute, "spot-interruption"),
                t0 + u64::from(minute) * 1_000
            ));
        }
        assert!(
            limiter.admit(&notice("i-2", 0, "spot-interruption"), t0),
            "another peer"
        );
        assert!(
            limiter.admit(&notice("i-1", 0, "rebalance-recommendation"), t0),
            "another kind"
        );
        assert!(limiter.admit(&notice("i-1", 200, "spot-interruption"), t0 + 601_000));
    }
}
