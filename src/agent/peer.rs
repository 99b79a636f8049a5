//! Peer notices: another instance of the group is being interrupted. Its notice arrives on an
//! MQTT topic (what the forwarding workflow publishes from EventBridge, or another agent's
//! `mqtt` handler) or an SQS queue, as an event `spot_drain` reads; it becomes a
//! `peer-interruption` notice for the `peer` handlers, e.g. to promote a replica before its
//! primary goes. This instance's own notices are left out (its own handlers run for them).

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

use super::Found;

/// How long each receive from a peer queue waits (SQS's longest long poll).
pub const QUEUE_WAIT: Duration = Duration::from_secs(20);
use super::notice::Notice;
use crate::workflows::spot_drain::notice::Notice as Interruption;

/// The peer notice in `body`, `Ok(None)` if it is this instance's own.
pub fn read(own_instance: &str, body: &str) -> Result<Option<Notice>, String> {
    let event: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    let n = Interruption::read(&event)?;
    let Some(instance) = n.instances.first().cloned() else {
        return Err("the notice names no instance".into());
    };
    if n.instances.iter().any(|i| i == own_instance) {
        return Ok(None);
    }
    Ok(Some(Notice {
        id: format!("peer:{}", n.identity()),
        provider: "peer".into(),
        kind: "peer-interruption".into(),
        instance,
        deadline_ms: n.ends_ms,
        action: Some(n.kind.as_str().to_owned()),
        raw: event,
    }))
}

/// Subscribes to `topic` on `broker` (host, port) and passes each peer notice on, until the
/// receiver goes away; reconnects (and subscribes again) when the connection drops.
pub async fn watch_mqtt(
    broker: (String, u16),
    topic: &str,
    own_instance: &str,
    found: UnboundedSender<Found>,
) {
    let mut options = MqttOptions::new(
        format!("tugboat-agent-{own_instance}-{}", std::process::id()),
        broker.0.clone(),
        broker.1,
    );
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_session(true);
    options.set_max_packet_size(320 * 1024, 10 * 1024);
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
                match read(own_instance, &String::from_utf8_lossy(&p.payload)) {
                    Ok(n) => n.map(Found::Notice),
                    Err(e) => Some(Found::Problem(format!("peer message on {}: {e}", p.topic))),
                }
            }
            Ok(_) => None,
            Err(e) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Some(Found::Problem(format!(
                    "peer broker {}:{}: {e}",
                    broker.0, broker.1
                )))
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
            let message = match read(own_instance, &m.body) {
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

    #[test]
    fn peer_notices_are_read_from_eventbridge_and_agent_events_and_own_ones_left_out() {
        let warning = r#"{"version": "0", "id": "1", "detail-type": "EC2 Spot Instance Interruption Warning",
            "source": "aws.ec2", "account": "1", "time": "2026-11-30T10:00:00Z", "region": "us-east-1",
            "resources": [], "detail": {"instance-id": "i-primary", "instance-action": "terminate"}}"#;
        let n = read("i-replica", warning).unwrap().unwrap();
        assert_eq!(n.kind, "peer-interruption");
        assert_eq!(n.class(), "peer");
        assert_eq!(n.instance, "i-primary");
        assert_eq!(n.id, "peer:i-primary:2026-11-30T10:00");
        assert_eq!(n.deadline_ms, Some(1_796_032_800_000 + 120_000));
        assert_eq!(read("i-primary", warning).unwrap(), None, "its own notice");
        for bad in [
            "{",
            "[]",
            r#"{"source": "aws.s3", "detail-type": "x", "time": "2026-11-30T10:00:00Z"}"#,
        ] {
            assert!(read("i-replica", bad).is_err(), "{bad}");
        }
    }
}
