//! Checking an AWS Signature Version 4 (`Authorization: AWS4-HMAC-SHA256 …`) as the AWS
//! services do, so that an AWS SDK's or the AWS CLI's EventBridge client, pointed at the
//! ingress, signs its requests with keys tugboat knows
//! (<https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html>):
//! the canonical request from the method, path, query, the signed headers and the body's
//! SHA-256; the string to sign from the algorithm, `X-Amz-Date`, the credential scope and the
//! canonical request's hash; the key derived from the secret through date, region and
//! service. A request more than 15 minutes off the clock is refused, as AWS refuses it.

use std::collections::BTreeMap;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How far a request's `X-Amz-Date` may be from now (AWS: 15 minutes).
pub const MAX_SKEW_MS: i64 = 15 * 60 * 1000;

/// Why a signature was refused; the `__type` AWS answers with, and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub code: &'static str,
    pub message: String,
}

fn refused(code: &'static str, message: impl Into<String>) -> Refused {
    Refused {
        code,
        message: message.into(),
    }
}

/// The parts of a request the signature covers.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as sent (already percent-encoded).
    pub path: &'a str,
    /// The query string as sent, without `?`.
    pub query: &'a str,
    /// Every header, names lower-case, values as sent (repeated ones joined by `,`).
    pub headers: &'a BTreeMap<String, String>,
    pub body: &'a [u8],
}

/// The signed request's access key id, when its signature holds for `secret_of(key id)` and
/// service `service`, at `now_ms`.
pub fn verify(
    request: &Request<'_>,
    service: &str,
    now_ms: i64,
    secret_of: impl Fn(&str) -> Option<String>,
) -> Result<String, Refused> {
    let auth = request.headers.get("authorization").ok_or_else(|| {
        refused(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        )
    })?;
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| {
        refused(
            "IncompleteSignatureException",
            "the Authorization header is not AWS4-HMAC-SHA256",
        )
    })?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=').unwrap_or(("", ""));
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed_headers = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(refused(
            "IncompleteSignatureException",
            "the Authorization header needs Credential, SignedHeaders and Signature",
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, date, region, scope_service, terminal] = scope[..] else {
        return Err(refused(
            "IncompleteSignatureException",
            "Credential must be KEY/DATE/REGION/SERVICE/aws4_request",
        ));
    };
    if terminal != "aws4_request" || scope_service != service {
        return Err(refused(
            "InvalidSignatureException",
            format!("Credential should be scoped to service {service:?} and aws4_request"),
        ));
    }
    let amz_date = request.headers.get("x-amz-date").ok_or_else(|| {
        refused(
            "IncompleteSignatureException",
            "the request has no X-Amz-Date header",
        )
    })?;
    let at = parse_amz_date(amz_date).ok_or_else(|| {
        refused(
            "IncompleteSignatureException",
            format!("X-Amz-Date {amz_date:?} is not YYYYMMDDTHHMMSSZ"),
        )
    })?;
    if !amz_date.starts_with(date) {
        return Err(refused(
            "InvalidSignatureException",
            "the Credential's date is not X-Amz-Date's",
        ));
    }
    if (now_ms - at).abs() > MAX_SKEW_MS {
        return Err(refused(
            "InvalidSignatureException",
            "Signature expired: the request's X-Amz-Date is more than 15 minutes from the server's time",
        ));
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    if !names.contains(&"host") {
        return Err(refused(
            "InvalidSignatureException",
            "SignedHeaders must include host",
        ));
    }
    let mut canonical_headers = String::new();
    for name in &names {
        let value = request.headers.get(*name).ok_or_else(|| {
            refused(
                "InvalidSignatureException",
                format!("signed header {name} is not in the request"),
            )
        })?;
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(&collapse(value));
        canonical_headers.push('\n');
    }
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method,
        if request.path.is_empty() {
            "/"
        } else {
            request.path
        },
        canonical_query(request.query),
        canonical_headers,
        signed_headers,
        hex::encode(Sha256::digest(request.body)),
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let Some(secret) = secret_of(key_id) else {
        return Err(refused(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    };
    let key = signing_key(&secret, date, region, service);
    let expected = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    if expected.as_bytes().ct_eq(signature.as_bytes()).into() {
        Ok(key_id.to_owned())
    } else {
        Err(refused(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
        ))
    }
}

/// The key the signature is made with.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, service.as_bytes());
    hmac(&k, b"aws4_request")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Trimmed, with runs of spaces as one (SigV4's canonical header value).
fn collapse(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The query's parameters sorted by name, then value (they arrive encoded as SigV4 wants
/// them from AWS clients).
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `20261207T101500Z` as ms since the epoch.
fn parse_amz_date(text: &str) -> Option<i64> {
    let t = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", text).ok()?;
    Some(
        t.to_zoned(jiff::tz::TimeZone::UTC)
            .ok()?
            .timestamp()
            .as_millisecond(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's documented example: the signing key of the "get-vanilla" test suite's secret.
    #[test]
    fn the_signing_key_is_aws_s_documented_one() {
        // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
        // (the example secret, 20150830, us-east-1, iam).
        let key = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20150830",
            "us-east-1",
            "iam",
        );
        assert_eq!(
            hex::encode(key),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
    }

    /// Signs as an AWS client does (the same steps, written again from the documentation).
    fn signed(body: &[u8], key: &str, secret: &str, amz_date: &str) -> BTreeMap<String, String> {
        let mut headers = BTreeMap::new();
        headers.insert("host".to_owned(), "127.0.0.1:8088".to_owned());
        headers.insert("x-amz-date".to_owned(), amz_date.to_owned());
        headers.insert("x-amz-target".to_owned(), "AWSEvents.PutEvents".to_owned());
        headers.insert(
            "content-type".to_owned(),
            "application/x-amz-json-1.1".to_owned(),
        );
        let signed = "content-type;host;x-amz-date;x-amz-target";
        let canonical = format!(
            "POST\n/\n\ncontent-type:application/x-amz-json-1.1\nhost:127.0.0.1:8088\nx-amz-date:{amz_date}\nx-amz-target:AWSEvents.PutEvents\n\n{signed}\n{}",
            hex::encode(Sha256::digest(body))
        );
        let date = &amz_date[..8];
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{date}/eu-west-1/events/aws4_request\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let sig = hex::encode(hmac(
            &signing_key(secret, date, "eu-west-1", "events"),
            to_sign.as_bytes(),
        ));
        headers.insert(
            "authorization".to_owned(),
            format!(
                "AWS4-HMAC-SHA256 Credential={key}/{date}/eu-west-1/events/aws4_request, SignedHeaders={signed}, Signature={sig}"
            ),
        );
        headers
    }

    const NOW: &str = "20261207T101500Z";

    fn now_ms() -> i64 {
        parse_amz_date(NOW).unwrap()
    }

    fn check(headers: &BTreeMap<String, String>, body: &[u8], now: i64) -> Result<String, Refused> {
        let request = Request {
            method: "POST",
            path: "/",
            query: "",
            headers,
            body,
        };
        verify(&request, "events", now, |k| {
            (k == "AKIDTUGBOAT").then(|| "s3cret".to_owned())
        })
    }

    #[test]
    fn a_signed_request_holds_and_every_forgery_is_refused_with_aws_s_code() {
        let body = br#"{"Entries":[]}"#;
        let h = signed(body, "AKIDTUGBOAT", "s3cret", NOW);
        assert_eq!(check(&h, body, now_ms()), Ok("AKIDTUGBOAT".to_owned()));
        // Another body under the same signature.
        let e = check(&h, br#"{"Entries":[{}]}"#, now_ms()).unwrap_err();
        assert_eq!(e.code, "InvalidSignatureException");
        // Another secret; an unknown key id.
        let e = check(&signed(body, "AKIDTUGBOAT", "guess", NOW), body, now_ms()).unwrap_err();
        assert_eq!(e.code, "InvalidSignatureException");
        let e = check(&signed(body, "AKIDOTHER", "s3cret", NOW), body, now_ms()).unwrap_err();
        assert_eq!(e.code, "UnrecognizedClientException");
        // A replay 16 minutes later; a header changed after signing.
        let e = check(&h, body, now_ms() + 16 * 60 * 1000).unwrap_err();
        assert!(e.message.contains("expired"), "{e:?}");
        let mut changed = h.clone();
        changed.insert("x-amz-target".into(), "AWSEvents.DeleteRule".into());
        assert_eq!(
            check(&changed, body, now_ms()).unwrap_err().code,
            "InvalidSignatureException"
        );
        // Missing or malformed authorization.
        let mut none = h.clone();
        none.remove("authorization");
        assert_eq!(
            check(&none, body, now_ms()).unwrap_err().code,
            "MissingAuthenticationTokenException"
        );
        for bad in [
            "Bearer x",
            "AWS4-HMAC-SHA256 Credential=a/b",
            "AWS4-HMAC-SHA256 Credential=AKIDTUGBOAT/20261207/eu-west-1/sqs/aws4_request, SignedHeaders=host, Signature=00",
        ] {
            let mut m = h.clone();
            m.insert("authorization".into(), bad.into());
            assert!(check(&m, body, now_ms()).is_err(), "{bad}");
        }
        let mut no_date = h.clone();
        no_date.remove("x-amz-date");
        assert_eq!(
            check(&no_date, body, now_ms()).unwrap_err().code,
            "IncompleteSignatureException"
        );
    }
}
