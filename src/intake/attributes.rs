//! The message attributes tugboat puts on the copies it makes of a message: a DLQ copy says
//! why its work failed; a redriven copy says which run it brings back; every copy names the
//! message that first carried the event.
//!
//! The control attributes (a retry's instance, a redrive's marker, the origin they carry) are
//! believed only with tugboat's signature over them and the body ([`SIGNATURE`]): whoever may
//! send to a queue cannot re-run a cancelled or dead-lettered instance by writing them.

use std::collections::BTreeMap;

use crate::engine::Failure;
use crate::engine::dispatcher::Redrive;
use crate::ports::ReceivedMessage;
use crate::signing::{Purpose, SigningKey};

/// Marks a message brought back by `tugboat dlq redrive`; its value is
/// [`Redrive::value`] of the run that was dead-lettered.
pub const REDRIVE: &str = "tugboat-redrive";

/// Names the SQS message that first carried an event, on every copy tugboat makes of it (a
/// refreshed copy, a DLQ copy, a redriven one): an event without an identity of its own keeps
/// its workflow instance across copies.
pub const ORIGIN: &str = "tugboat-original-message-id";

/// Which run of the instance failed; a redrive of the copy starts the next one.
pub const GENERATION: &str = "tugboat-generation";

/// Names the instance a retry message runs again (`tugboat workflows retry`): the message
/// skips routing and starts the next generation of that instance, with its journaled event
/// and params.
pub const RETRY: &str = "tugboat-retry-of";

/// Tugboat's signature over the control attributes and the body
/// ([`crate::signing::Purpose::Control`]), or over an agent notice's body
/// ([`crate::signing::Purpose::AgentNotice`]).
pub const SIGNATURE: &str = "tugboat-signature";

/// SQS's limit of message attributes per message.
pub const MAX_ATTRIBUTES: usize = 10;

/// The id of the message that first carried this body.
pub fn origin_id(message: &ReceivedMessage) -> &str {
    message
        .attributes
        .get(ORIGIN)
        .map(String::as_str)
        .unwrap_or(&message.message_id)
}

/// What a control signature covers: the control attributes (absent ones as empty) and the
/// body.
fn control_parts<'a>(attributes: &'a BTreeMap<String, String>, body: &'a str) -> [&'a [u8]; 4] {
    let get = |k: &str| attributes.get(k).map_or(&b""[..], |v| v.as_bytes());
    [get(RETRY), get(REDRIVE), get(ORIGIN), body.as_bytes()]
}

/// Signs the control attributes of a message tugboat sends (a retry, a redriven copy).
pub fn sign_control(
    attributes: &mut BTreeMap<String, String>,
    body: &str,
    key: &SigningKey,
    now_ms: u64,
) {
    let signature = key.sign(Purpose::Control, &control_parts(attributes, body), now_ms);
    attributes.insert(SIGNATURE.to_owned(), signature);
}

/// Whether the message carries control attributes (a retry or a redrive marker).
pub fn has_control(message: &ReceivedMessage) -> bool {
    message.attributes.contains_key(RETRY) || message.attributes.contains_key(REDRIVE)
}

/// Checks the signature over a message's control attributes; `Ok` for a message without
/// any. The error is the DLQ reason.
pub fn verify_control(
    message: &ReceivedMessage,
    key: Option<&SigningKey>,
    window: std::time::Duration,
    now_ms: u64,
) -> Result<(), String> {
    if !has_control(message) {
        return Ok(());
    }
    let refused = |e: crate::signing::Refusal| {
        format!("refused: its {RETRY}/{REDRIVE} attributes are not believed: {e}")
    };
    crate::signing::require(key, "security.signing_key")
        .and_then(|key| {
            key.verify(
                Purpose::Control,
                &control_parts(&message.attributes, &message.body),
                message.attributes.get(SIGNATURE).map(String::as_str),
                now_ms,
                window,
            )
        })
        .map(|_| ())
        .map_err(refused)
}

/// The redrive a message asks for, if it is a redriven copy.
pub fn redrive(message: &ReceivedMessage) -> Option<Redrive> {
    message.attributes.get(REDRIVE).map(|v| Redrive::parse(v))
}

/// The instance a retry message names, if it is one.
pub fn retry_of(message: &ReceivedMessage) -> Option<&str> {
    message.attributes.get(RETRY).map(String::as_str)
}

/// The attributes of a retry message for generation `generation` of instance `id`, first
/// carried by message `origin`.
pub fn retry(id: &str, generation: u32, origin: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (RETRY.to_owned(), id.to_owned()),
        (REDRIVE.to_owned(), Redrive::value(generation)),
        (ORIGIN.to_owned(), origin.to_owned()),
    ])
}

/// The attributes of a redriven copy of a DLQ message: the redrive marker for the failed
/// run, the origin, and the producer's trace context.
pub fn redriven(
    dead_letter: &BTreeMap<String, String>,
    message_id: &str,
) -> BTreeMap<String, String> {
    let generation = dead_letter
        .get(GENERATION)
        .and_then(|g| g.parse().ok())
        .map_or_else(|| "any".to_owned(), Redrive::value);
    let mut a = BTreeMap::from([
        (REDRIVE.to_owned(), generation),
        (
            ORIGIN.to_owned(),
            dead_letter
                .get(ORIGIN)
                .cloned()
                .unwrap_or_else(|| message_id.to_owned()),
        ),
    ]);
    if let Some(tp) = dead_letter.get("traceparent") {
        a.insert("traceparent".into(), tp.clone());
    }
    a
}

/// The attributes of a DLQ copy. SQS allows 10: tugboat's own (up to 10, with compensation)
/// come first, and the producer's traceparent is kept when there is room.
pub fn dead_letter(
    message: &ReceivedMessage,
    reason: &str,
    failure: Option<&Failure>,
) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert("tugboat-error".into(), clip(reason, 2000));
    a.insert(ORIGIN.into(), origin_id(message).to_owned());
    a.insert("tugboat-failed-at".into(), rfc3339_now());
    if let Some(f) = failure {
        a.insert("tugboat-workflow".into(), f.workflow.clone());
        a.insert("tugboat-workflow-id".into(), f.workflow_id.clone());
        a.insert("tugboat-route".into(), f.route.clone());
        a.insert("tugboat-attempts".into(), f.attempts.to_string());
        a.insert(GENERATION.into(), f.generation.to_string());
        if let Some(step) = &f.step {
            a.insert("tugboat-step".into(), step.clone());
        }
        if !f.compensation.is_empty() {
            a.insert(
                "tugboat-compensation".into(),
                clip(&f.compensation.join("; "), 1000),
            );
        }
    }
    if a.len() < MAX_ATTRIBUTES
        && let Some(tp) = message.attributes.get("traceparent")
    {
        a.insert("traceparent".into(), tp.clone());
    }
    a
}

/// At most `n` bytes of `s` (on a character boundary), marked with an ellipsis when cut.
fn clip(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_owned();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure() -> Failure {
        Failure {
            workflow_id: "w".into(),
            workflow: "log".into(),
            route: "r".into(),
            reason: "boom".into(),
            step: Some("notify".into()),
            attempts: 3,
            generation: 1,
            compensation: vec!["compensate:stop-task: done".into()],
        }
    }

    fn message(attributes: &[(&str, &str)]) -> ReceivedMessage {
        ReceivedMessage {
            message_id: "m-1".into(),
            receipt_handle: "h".into(),
            body: "{}".into(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            receive_count: 1,
            trace_header: None,
            sent_ms: None,
            sender_id: None,
        }
    }

    #[test]
    fn dead_letter_attributes_name_everything_and_fit_sqs() {
        let m = message(&[("traceparent", "00-1-2-01")]);
        let a = dead_letter(&m, &"x".repeat(5000), Some(&failure()));
        assert!(a.len() <= MAX_ATTRIBUTES, "{a:?}");
        for k in [
            "tugboat-workflow",
            "tugboat-workflow-id",
            "tugboat-route",
            "tugboat-step",
            "tugboat-error",
            "tugboat-attempts",
            "tugboat-generation",
            "tugboat-original-message-id",
            "tugboat-failed-at",
            "tugboat-compensation",
        ] {
            assert!(a.contains_key(k), "{k}");
        }
        assert!(a["tugboat-error"].len() < 2100);
        assert_eq!(a["tugboat-attempts"], "3");
        assert_eq!(a["tugboat-generation"], "1");
        assert!(
            !a.contains_key("traceparent"),
            "no room left for the traceparent"
        );
        let short = dead_letter(&m, "bad body", None);
        assert_eq!(short["traceparent"], "00-1-2-01");
    }

    #[test]
    fn copies_keep_the_first_message_id_and_redrives_name_the_failed_run() {
        let copy = message(&[(ORIGIN, "first")]);
        assert_eq!(origin_id(&copy), "first");
        assert_eq!(origin_id(&message(&[])), "m-1");
        let dead = dead_letter(&copy, "boom", Some(&failure()));
        let back = redriven(&dead, "dlq-message");
        assert_eq!(back[REDRIVE], "g1");
        assert_eq!(back[ORIGIN], "first");
        let from_sqs = redriven(&BTreeMap::new(), "dlq-message");
        assert_eq!(from_sqs[REDRIVE], "any");
        assert_eq!(from_sqs[ORIGIN], "dlq-message");
        let m = message(&[(REDRIVE, "g2")]);
        assert_eq!(redrive(&m), Some(Redrive::Of(2)));
        assert_eq!(redrive(&message(&[])), None);
    }

    #[test]
    fn control_attributes_are_believed_only_signed_fresh_and_unchanged() {
        let key = SigningKey::parse(&"k".repeat(32)).unwrap();
        let window = std::time::Duration::from_secs(3600);
        let now = 1_796_032_800_000;
        let mut a = retry("r:e-1", 1, "m-0");
        sign_control(&mut a, "{}", &key, now);
        let pairs: Vec<(&str, &str)> = a.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let signed = message(&pairs);
        assert_eq!(
            verify_control(&signed, Some(&key), window, now + 1000),
            Ok(())
        );
        // Forged: written by a sender without the key.
        let forged = message(&[(RETRY, "r:e-1"), (REDRIVE, "g1"), (ORIGIN, "m-0")]);
        let e = verify_control(&forged, Some(&key), window, now).unwrap_err();
        assert!(e.contains("carries no signature"), "{e}");
        // Another instance under a real signature.
        let mut other = signed.clone();
        other.attributes.insert(RETRY.into(), "r:e-2".into());
        assert!(
            verify_control(&other, Some(&key), window, now)
                .unwrap_err()
                .contains("does not match")
        );
        // Another body under a real signature.
        let mut body = signed.clone();
        body.body = "{\"x\":1}".into();
        assert!(
            verify_control(&body, Some(&key), window, now)
                .unwrap_err()
                .contains("does not match")
        );
        // Replayed after the window.
        let e = verify_control(&signed, Some(&key), window, now + 3_700_000).unwrap_err();
        assert!(e.contains("freshness window"), "{e}");
        // No key: nothing is believed, and the reason names the key to set.
        let e = verify_control(&signed, None, window, now).unwrap_err();
        assert!(e.contains("security.signing_key"), "{e}");
        // A message without control attributes needs no signature.
        assert_eq!(verify_control(&message(&[]), None, window, now), Ok(()));
        assert!(a.len() <= MAX_ATTRIBUTES);
    }

    #[test]
    fn clipping_respects_characters() {
        assert_eq!(clip("héllo", 2), "h…");
        assert_eq!(clip("abc", 5), "abc");
    }
}
