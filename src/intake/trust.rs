//! What a message must show before its events run (docs/security.md): control attributes
//! (a retry, a redrive) signed by tugboat; events of a source the queue may carry; and an
//! agent's notice signed by an agent, fresh, and — where the queue says so — sent by the
//! instance it is about. A refusal is the message's DLQ reason.

use std::time::Duration;

use serde_json::Value;

use super::attributes;
use crate::ports::ReceivedMessage;
use crate::signing::{Purpose, SigningKey};

/// The source of the agent's notices (`tugboat agent`'s `publish` handler).
pub const AGENT_SOURCE: &str = "tugboat.agent";

/// One queue's rules.
#[derive(Debug, Clone)]
pub struct Trust {
    /// `[security] signing_key`.
    pub key: Option<SigningKey>,
    pub control_max_age: Duration,
    pub notice_max_age: Duration,
    /// `queues.sources`: the event sources this queue may carry; `None`, any.
    pub sources: Option<Vec<String>>,
    /// `queues.agent_sender_is_instance`.
    pub agent_sender_is_instance: bool,
}

impl Trust {
    /// The rules of `queue` under `security`.
    pub fn new(
        security: &crate::config::SecurityConfig,
        queue: &crate::config::QueueConfig,
    ) -> Trust {
        Trust {
            key: security.signing_key.clone(),
            control_max_age: security.control_max_age,
            notice_max_age: security.notice_max_age,
            sources: queue.sources.clone(),
            agent_sender_is_instance: queue.agent_sender_is_instance,
        }
    }

    /// The message's control attributes, if it has any, are tugboat's.
    pub fn control(&self, message: &ReceivedMessage, now_ms: u64) -> Result<(), String> {
        attributes::verify_control(message, self.key.as_ref(), self.control_max_age, now_ms)
    }

    /// `event`, decoded from `message`, may run.
    pub fn event(
        &self,
        message: &ReceivedMessage,
        event: &Value,
        now_ms: u64,
    ) -> Result<(), String> {
        let source = event
            .get("source")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Some(sources) = &self.sources
            && !sources.iter().any(|s| s == source)
        {
            return Err(format!(
                "refused: source {source:?} is not one this queue carries (queues.sources = {sources:?})"
            ));
        }
        if source != AGENT_SOURCE {
            return Ok(());
        }
        crate::signing::require(self.key.as_ref(), "security.signing_key")
            .and_then(|key| {
                key.verify(
                    Purpose::AgentNotice,
                    &[message.body.as_bytes()],
                    message
                        .attributes
                        .get(attributes::SIGNATURE)
                        .map(String::as_str),
                    now_ms,
                    self.notice_max_age,
                )
            })
            .map_err(|e| format!("refused: an agent notice not believed: {e}"))?;
        if self.agent_sender_is_instance {
            let instance = event
                .pointer("/detail/instance-id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let session = message
                .sender_id
                .as_deref()
                .and_then(|s| s.split_once(':'))
                .map(|(_, session)| session);
            if instance.is_empty() || session != Some(instance) {
                return Err(format!(
                    "refused: an agent notice about {instance:?} sent by {:?}, not by that instance's role session (queues.agent_sender_is_instance)",
                    message.sender_id.as_deref().unwrap_or("an unknown sender")
                ));
            }
        }
        Ok(())
    }
}

/// Signs an agent notice's body (what `tugboat agent` does before sending it).
pub fn sign_notice(body: &str, key: &SigningKey, now_ms: u64) -> String {
    key.sign(Purpose::AgentNotice, &[body.as_bytes()], now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_796_032_800_000;

    fn key() -> SigningKey {
        SigningKey::parse("an-agent-key-long-enough-for-tests-000").unwrap()
    }

    fn trust() -> Trust {
        Trust {
            key: Some(key()),
            control_max_age: Duration::from_secs(14 * 86_400),
            notice_max_age: Duration::from_secs(300),
            sources: None,
            agent_sender_is_instance: false,
        }
    }

    fn message(body: &Value, signature: Option<String>, sender: Option<&str>) -> ReceivedMessage {
        ReceivedMessage {
            message_id: "m".into(),
            receipt_handle: "h".into(),
            body: body.to_string(),
            attributes: signature
                .map(|s| (attributes::SIGNATURE.to_owned(), s))
                .into_iter()
                .collect(),
            receive_count: 1,
            trace_header: None,
            sent_ms: None,
            sender_id: sender.map(str::to_owned),
        }
    }

    fn notice(instance: &str) -> Value {
        json!({"source": "tugboat.agent", "detail-type": "Interruption Notice",
            "detail": {"instance-id": instance, "kind": "spot-interruption"}})
    }

    #[test]
    fn agent_notices_need_a_fresh_signature_and_other_sources_do_not() {
        let t = trust();
        let n = notice("i-1");
        let signed = message(&n, Some(sign_notice(&n.to_string(), &key(), NOW)), None);
        assert_eq!(t.event(&signed, &n, NOW + 2_000), Ok(()));
        let e = t.event(&message(&n, None, None), &n, NOW).unwrap_err();
        assert!(e.contains("carries no signature"), "{e}");
        // A replay of a real notice an hour later.
        let e = t.event(&signed, &n, NOW + 3_600_000).unwrap_err();
        assert!(e.contains("freshness window"), "{e}");
        // Another instance's notice under a real signature.
        let other = notice("i-2");
        let mut swapped = signed.clone();
        swapped.body = other.to_string();
        assert!(
            t.event(&swapped, &other, NOW)
                .unwrap_err()
                .contains("does not match")
        );
        // Without a key nothing the agent says is believed.
        let none = Trust {
            key: None,
            ..trust()
        };
        assert!(
            none.event(&signed, &n, NOW)
                .unwrap_err()
                .contains("security.signing_key")
        );
        // EventBridge's events carry no signature of ours.
        let ec2 =
            json!({"source": "aws.ec2", "detail-type": "EC2 Spot Instance Interruption Warning"});
        assert_eq!(none.event(&message(&ec2, None, None), &ec2, NOW), Ok(()));
    }

    #[test]
    fn a_queue_carries_only_its_sources_and_notices_from_their_own_instance() {
        let t = Trust {
            sources: Some(vec!["tugboat.agent".into()]),
            agent_sender_is_instance: true,
            ..trust()
        };
        let ec2 = json!({"source": "aws.ec2", "detail-type": "EC2 Spot Instance Interruption Warning",
            "detail": {"instance-id": "i-1"}});
        let e = t.event(&message(&ec2, None, None), &ec2, NOW).unwrap_err();
        assert!(
            e.contains("\"aws.ec2\" is not one this queue carries"),
            "{e}"
        );
        let n = notice("i-1");
        let sig = || Some(sign_notice(&n.to_string(), &key(), NOW));
        assert_eq!(
            t.event(&message(&n, sig(), Some("AROAEXAMPLE:i-1")), &n, NOW),
            Ok(())
        );
        for sender in [Some("AROAEXAMPLE:i-2"), Some("AIDAUSER"), None] {
            let e = t.event(&message(&n, sig(), sender), &n, NOW).unwrap_err();
            assert!(
                e.contains("not by that instance's role session"),
                "{sender:?}: {e}"
            );
        }
    }
}
