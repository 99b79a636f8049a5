//! The `[destinations]` section: HTTP endpoints `http_deliver` routes deliver to, by name, as
//! EventBridge API destinations and their connections describe them. The rate limit of a
//! destination is shared by every route that names it.
//!
//! ```toml
//! [destinations.alerts]
//! url = "https://hooks.slack.com/services/T000/B000/XXXX"
//! method = "POST"                       # default POST
//! rate_limit_per_second = 1             # default 300 (EventBridge's); 0 = unlimited
//! timeout = "5s"                        # default 5 s, as API destinations
//! max_age = "24h"                       # retries stop after this (default 24 h)
//! max_attempts = 185                    # or after this many attempts (default 185)
//! batch = { max_events = 100, max_bytes = 1048576, max_wait = "50ms" }  # off by default:
//! #   a JSON array of up to 100 deliveries' bodies per request (see `ports::http::Batch`)
//! headers = { "x-team" = "platform" }
//! auth = { type = "basic", username = "tugboat", password = "set-by-env" }
//! # or { type = "api_key", header = "x-api-key", value = "…" }
//! # or { type = "oauth_client_credentials", token_url = "https://…/token", client_id = "…",
//! #      client_secret = "…", scope = "events" }
//! # Secrets come from the environment: TUGBOAT__DESTINATIONS__ALERTS__AUTH__PASSWORD=…
//! ```

use crate::config::BadKey;
use std::collections::BTreeMap;

use crate::config::parse_section;
use crate::ports::DestinationSettings;
use crate::ports::http::Auth;
use crate::workflows::Section;

pub const NAME: &str = "destinations";

pub const SECTION: Section = Section {
    name: NAME,
    check: |value| parse(value).map(|_| ()),
};

pub type Destinations = BTreeMap<String, DestinationSettings>;

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Parses and checks the section; errors name the key (`destinations.alerts.url`).
pub fn parse(value: &toml::Value) -> Result<Destinations, BadKey> {
    let destinations: Destinations = parse_section(NAME, value)?;
    for (name, d) in &destinations {
        let key = |field: &str| format!("{NAME}.{name}.{field}");
        check_url(&d.url).map_err(|m| BadKey::at(key("url"), m))?;
        if !METHODS.contains(&d.method.as_str()) {
            return Err(BadKey::at(
                key("method"),
                format!("must be one of {}, got {:?}", METHODS.join(", "), d.method),
            ));
        }
        if !d.rate_limit_per_second.is_finite() || d.rate_limit_per_second < 0.0 {
            return Err(BadKey::at(
                key("rate_limit_per_second"),
                format!("must be 0 (unlimited) or more, got {}", d.rate_limit_per_second),
            ));
        }
        if d.timeout.is_zero() || d.timeout.as_secs() > 300 {
            return Err(BadKey::at(key("timeout"), "must be more than 0s and at most 300s".into()));
        }
        if d.max_attempts == 0 {
            return Err(BadKey::at(key("max_attempts"), "must be at least 1".into()));
        }
        if d.max_age.is_zero() {
            return Err(BadKey::at(key("max_age"), "must be more than 0s".into()));
        }
        if let Some(b) = &d.batch {
            if !(1..=10_000).contains(&b.max_events) {
                return Err(BadKey::at(key("batch.max_events"), format!("must be 1 to 10000, got {}", b.max_events)));
            }
            if !(1024..=64 << 20).contains(&b.max_bytes) {
                return Err(BadKey::at(key("batch.max_bytes"), format!("must be 1024 (1 KiB) to 67108864 (64 MiB), got {}", b.max_bytes)));
            }
            if b.max_wait.is_zero() || b.max_wait.as_secs_f64() > 60.0 {
                return Err(BadKey::at(key("batch.max_wait"), "must be more than 0s and at most 60s".into()));
            }
        }
        for header in d.headers.keys() {
            if header.is_empty() || !header.bytes().all(is_token_byte) {
                return Err(BadKey::at(
                    format!("{NAME}.{name}.headers"),
                    format!("{header:?} is not a valid header name"),
                ));
            }
        }
        match &d.auth {
            Some(Auth::Basic { username, .. }) if username.contains(':') || username.is_empty() => {
                return Err(BadKey::at(
                    key("auth.username"),
                    "must be non-empty and without ':' (RFC 7617)".into(),
                ));
            }
            Some(Auth::ApiKey { header, .. }) if header.is_empty() || !header.bytes().all(is_token_byte) => {
                return Err(BadKey::at(key("auth.header"), format!("{header:?} is not a valid header name")));
            }
            Some(Auth::OauthClientCredentials { token_url, .. }) => {
                check_url(token_url).map_err(|m| BadKey::at(key("auth.token_url"), m))?;
            }
            _ => {}
        }
    }
    Ok(destinations)
}

fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("must start with http:// or https://, got {url:?}"))?;
    if rest.is_empty() || rest.starts_with('/') || url.chars().any(char::is_whitespace) {
        return Err(format!("{url:?} has no host or contains spaces"));
    }
    Ok(())
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

pub fn from_sections(sections: &BTreeMap<String, toml::Value>) -> Result<Destinations, String> {
    match sections.get(NAME) {
        None => Ok(Destinations::new()),
        Some(v) => parse(v).map_err(|b| b.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Destinations, BadKey> {
        parse(&toml::from_str::<toml::Table>(text).unwrap()["destinations"])
    }

    #[test]
    fn a_destination_loads_with_api_destination_defaults() {
        let d = parsed("[destinations.a]\nurl = \"http://127.0.0.1:8080/hook\"").unwrap();
        let a = &d["a"];
        assert_eq!(a.method, "POST");
        assert_eq!(a.timeout.as_secs(), 5);
        assert_eq!(a.rate_limit_per_second, 300.0);
        assert_eq!(a.max_attempts, 185);
        assert_eq!(a.max_age.as_secs(), 24 * 3600);
        assert!(a.auth.is_none());
        assert!(a.batch.is_none(), "one event per request unless asked");
        let d = parsed("[destinations.a]\nurl = \"http://h/x\"\nbatch = { max_events = 100 }").unwrap();
        let b = d["a"].batch.as_ref().unwrap();
        assert_eq!((b.max_events, b.max_bytes, b.max_wait.as_millis()), (100, 1 << 20, 50));
        let d = parsed(
            "[destinations.a]\nurl = \"https://h/x\"\nauth = { type = \"basic\", username = \"u\", password = \"hunter2\" }",
        )
        .unwrap();
        assert!(!format!("{d:?}").contains("hunter2"));
    }

    #[test]
    fn wrong_shapes_name_the_key() {
        for (text, key) in [
            ("[destinations.a]\nmethod = \"POST\"", "destinations.a"),
            ("[destinations.a]\nurl = \"ftp://h\"", "destinations.a.url"),
            ("[destinations.a]\nurl = \"http://\"", "destinations.a.url"),
            ("[destinations.a]\nurl = \"http://h\"\nmethod = \"FETCH\"", "destinations.a.method"),
            ("[destinations.a]\nurl = \"http://h\"\nrate_limit_per_second = -1", "destinations.a.rate_limit_per_second"),
            ("[destinations.a]\nurl = \"http://h\"\nrate_limit_per_second = \"1/s\"", "destinations.a.rate_limit_per_second"),
            ("[destinations.a]\nurl = \"http://h\"\ntimeout = \"0s\"", "destinations.a.timeout"),
            ("[destinations.a]\nurl = \"http://h\"\nmax_attempts = 0", "destinations.a.max_attempts"),
            ("[destinations.a]\nurl = \"http://h\"\nheaders = { \"bad header\" = \"x\" }", "destinations.a.headers"),
            ("[destinations.a]\nurl = \"http://h\"\nauth = { type = \"digest\" }", "destinations.a.auth.type"),
            ("[destinations.a]\nurl = \"http://h\"\nauth = { type = \"basic\", username = \"a:b\", password = \"p\" }", "destinations.a.auth.username"),
            ("[destinations.a]\nurl = \"http://h\"\nauth = { type = \"basic\", username = \"u\" }", "destinations.a.auth"),
            ("[destinations.a]\nurl = \"http://h\"\nauth = { type = \"api_key\", header = \"\", value = \"v\" }", "destinations.a.auth.header"),
            ("[destinations.a]\nurl = \"http://h\"\nauth = { type = \"oauth_client_credentials\", token_url = \"x\", client_id = \"c\", client_secret = \"s\" }", "destinations.a.auth.token_url"),
            ("[destinations.a]\nurl = \"http://h\"\nretries = 3", "destinations.a.retries"),
            ("[destinations.a]\nurl = \"http://h\"\nbatch = { max_events = 0 }", "destinations.a.batch.max_events"),
            ("[destinations.a]\nurl = \"http://h\"\nbatch = { max_events = 10001 }", "destinations.a.batch.max_events"),
            ("[destinations.a]\nurl = \"http://h\"\nbatch = { max_events = -1 }", "destinations.a.batch.max_events"),
            ("[destinations.a]\nurl = \"http://h\"\nbatch = { max_wait = \"1s\" }", "destinations.a.batch"),
            ("[destinations.a]\nurl = \"http://h\"\nbatch = { max_events = 10, max_bytes = 10 }", "destinations.a.batch.max_bytes"),
            ("[destinations.a]\nurl = \"http://h\"\nbatch = { max_events = 10, max_wait = \"0s\" }", "destinations.a.batch.max_wait"),
            ("[destinations.a]\nurl = \"http://h\"\nbatch = { max_events = 10, max_wait = \"2m\" }", "destinations.a.batch.max_wait"),
            ("[destinations.a]\nurl = \"http://h\"\nbatch = { max_events = 10, size = 3 }", "destinations.a.batch.size"),
            ("[destinations.a]\nurl = \"http://h\"\nbatch = 100", "destinations.a.batch"),
        ] {
            let BadKey { key: k, message: m } = parsed(text).unwrap_err();
            assert_eq!(k, key, "{text}: {m}");
        }
    }
}
