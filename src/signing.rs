//! Signatures on what tugboat believes only when tugboat, or its agent, said it: the control
//! attributes of a message (a retry, a redrive), the agent's notices on a queue, and peers'
//! notices (docs/security.md).
//!
//! A signature is `v1.<signed-at, ms since the epoch>.<HMAC-SHA256, hex>`, computed with the
//! configured key over a purpose (so that a signature made for one use cannot be replayed as
//! another), the signed-at time and the signed parts, each length-prefixed (so that moving
//! bytes between parts changes the MAC). It is accepted when the MAC matches (compared in
//! constant time) and the signed-at time lies within the freshness window before now, and
//! not more than [`MAX_AHEAD`] after it (clocks differ a little).
//!
//! The key is a secret: it is never logged, and its `Debug` says only that it is set.

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// How far ahead of this clock a signed-at time may be.
pub const MAX_AHEAD: Duration = Duration::from_secs(60);

/// The shortest key accepted, in bytes: HMAC-SHA256's own output size (RFC 2104 §3).
pub const MIN_KEY_BYTES: usize = 32;

/// What a signature is for; part of what is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `tugboat-retry-of` / `tugboat-redrive` on a message (`tugboat workflows retry`,
    /// `tugboat dlq redrive`, the console).
    Control,
    /// A `tugboat.agent` event the agent sent to a queue.
    AgentNotice,
    /// A notice published for peers (MQTT or SQS).
    PeerNotice,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Purpose::Control => "tugboat/control/v1",
            Purpose::AgentNotice => "tugboat/agent-notice/v1",
            Purpose::PeerNotice => "tugboat/peer-notice/v1",
        }
    }
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("it carries no signature")]
    Unsigned,
    #[error("its signature is not of the form v1.<ms>.<hex>")]
    Malformed,
    #[error("its signature does not match (another key, or the signed parts were changed)")]
    Mismatch,
    #[error("it was signed {age_s} s ago, past the {window_s} s freshness window (a replay?)")]
    Stale { age_s: u64, window_s: u64 },
    #[error("it was signed {ahead_s} s in the future")]
    Future { ahead_s: u64 },
    #[error("no signing key is configured, so nothing signed can be believed (set {key})")]
    NoKey { key: &'static str },
}

/// The shared key.
#[derive(Clone)]
pub struct SigningKey(SecretString);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

impl SigningKey {
    /// The key from its configured text (any text of at least [`MIN_KEY_BYTES`] bytes, such
    /// as `openssl rand -hex 32`); the error says why not, without the text.
    pub fn parse(text: &str) -> Result<SigningKey, String> {
        let text = text.trim();
        if text.len() < MIN_KEY_BYTES {
            return Err(format!(
                "must be at least {MIN_KEY_BYTES} bytes (e.g. `openssl rand -hex 32`), got {}",
                text.len()
            ));
        }
        Ok(SigningKey(SecretString::from(text.to_owned())))
    }

    fn mac(&self, purpose: Purpose, at_ms: u64, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.expose_secret().as_bytes())
            .expect("HMAC takes a key of any length");
        for part in [purpose.label().as_bytes(), &at_ms.to_be_bytes()]
            .into_iter()
            .chain(parts.iter().copied())
        {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    /// The signature of `parts` for `purpose`, signed at `at_ms`.
    pub fn sign(&self, purpose: Purpose, parts: &[&[u8]], at_ms: u64) -> String {
        let tag = self.mac(purpose, at_ms, parts).finalize().into_bytes();
        format!("v1.{at_ms}.{}", hex::encode(tag))
    }

    /// Checks `signature` over `parts` for `purpose` at `now_ms`; the signed-at time when it
    /// holds.
    pub fn verify(
        &self,
        purpose: Purpose,
        parts: &[&[u8]],
        signature: Option<&str>,
        now_ms: u64,
        window: Duration,
    ) -> Result<u64, Refusal> {
        let signature = signature.ok_or(Refusal::Unsigned)?;
        let mut pieces = signature.splitn(3, '.');
        let (Some("v1"), Some(at), Some(tag)) = (pieces.next(), pieces.next(), pieces.next())
        else {
            return Err(Refusal::Malformed);
        };
        let at_ms: u64 = at.parse().map_err(|_| Refusal::Malformed)?;
        let tag = hex::decode(tag).map_err(|_| Refusal::Malformed)?;
        // The MAC first: a forged time must not learn anything from the freshness answer.
        self.mac(purpose, at_ms, parts)
            .verify_slice(&tag)
            .map_err(|_| Refusal::Mismatch)?;
        if at_ms > now_ms + MAX_AHEAD.as_millis() as u64 {
            return Err(Refusal::Future {
                ahead_s: (at_ms - now_ms) / 1000,
            });
        }
        let age = now_ms.saturating_sub(at_ms);
        if age > window.as_millis() as u64 {
            return Err(Refusal::Stale {
                age_s: age / 1000,
                window_s: window.as_secs(),
            });
        }
        Ok(at_ms)
    }
}

impl<'de> serde::Deserialize<'de> for SigningKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SigningKey, D::Error> {
        let text = SecretString::deserialize(d)?;
        SigningKey::parse(text.expose_secret()).map_err(serde::de::Error::custom)
    }
}

/// The configured key, or the refusal that says which key to set.
pub fn require<'a>(
    key: Option<&'a SigningKey>,
    name: &'static str,
) -> Result<&'a SigningKey, Refusal> {
    key.ok_or(Refusal::NoKey { key: name })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_796_032_800_000;
    const HOUR: Duration = Duration::from_secs(3600);

    fn key(text: &str) -> SigningKey {
        SigningKey::parse(text).unwrap()
    }

    #[test]
    fn a_signature_holds_for_its_parts_purpose_and_key_only() {
        let k = key(&"k".repeat(32));
        let parts: [&[u8]; 2] = [b"instance-1", b"{\"body\":1}"];
        let s = k.sign(Purpose::Control, &parts, NOW);
        assert!(s.starts_with(&format!("v1.{NOW}.")), "{s}");
        assert_eq!(
            k.verify(Purpose::Control, &parts, Some(&s), NOW + 5, HOUR),
            Ok(NOW)
        );
        let moved: [&[u8]; 2] = [b"instance-1{", b"\"body\":1}"];
        assert_eq!(
            k.verify(Purpose::Control, &moved, Some(&s), NOW, HOUR),
            Err(Refusal::Mismatch)
        );
        assert_eq!(
            k.verify(Purpose::AgentNotice, &parts, Some(&s), NOW, HOUR),
            Err(Refusal::Mismatch),
            "a control signature is not an agent notice's"
        );
        let other = key(&"o".repeat(32));
        assert_eq!(
            other.verify(Purpose::Control, &parts, Some(&s), NOW, HOUR),
            Err(Refusal::Mismatch)
        );
        // The time is signed: moving it (to look fresh) breaks the MAC.
        let moved_time = s.replacen(&NOW.to_string(), &(NOW + 1).to_string(), 1);
        assert_eq!(
            k.verify(Purpose::Control, &parts, Some(&moved_time), NOW, HOUR),
            Err(Refusal::Mismatch)
        );
    }

    #[test]
    fn old_future_unsigned_and_malformed_signatures_are_refused_with_the_reason() {
        let k = key(&"k".repeat(40));
        let parts: [&[u8]; 1] = [b"x"];
        let old = k.sign(Purpose::PeerNotice, &parts, NOW - 3_600_001);
        let e = k
            .verify(Purpose::PeerNotice, &parts, Some(&old), NOW, HOUR)
            .unwrap_err();
        assert_eq!(
            e,
            Refusal::Stale {
                age_s: 3600,
                window_s: 3600
            }
        );
        assert!(e.to_string().contains("freshness window"), "{e}");
        let ahead = k.sign(Purpose::PeerNotice, &parts, NOW + 120_000);
        assert_eq!(
            k.verify(Purpose::PeerNotice, &parts, Some(&ahead), NOW, HOUR),
            Err(Refusal::Future { ahead_s: 120 })
        );
        let slightly = k.sign(Purpose::PeerNotice, &parts, NOW + 30_000);
        assert!(
            k.verify(Purpose::PeerNotice, &parts, Some(&slightly), NOW, HOUR)
                .is_ok()
        );
        assert_eq!(
            k.verify(Purpose::PeerNotice, &parts, None, NOW, HOUR),
            Err(Refusal::Unsigned)
        );
        for bad in ["", "v1", "v2.1.00", "v1.x.00", "v1.1.zz", "v1.1"] {
            assert_eq!(
                k.verify(Purpose::PeerNotice, &parts, Some(bad), NOW, HOUR),
                Err(Refusal::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn short_keys_are_refused_without_echoing_them_and_debug_hides_the_key() {
        let e = SigningKey::parse("hunter2").unwrap_err();
        assert!(
            e.contains("at least 32 bytes") && !e.contains("hunter2"),
            "{e}"
        );
        let k = key("a-long-enough-secret-for-a-test-0000");
        assert_eq!(format!("{k:?}"), "SigningKey([redacted])");
        assert_eq!(
            require(None, "security.signing_key")
                .unwrap_err()
                .to_string(),
            "no signing key is configured, so nothing signed can be believed (set security.signing_key)"
        );
    }
}
