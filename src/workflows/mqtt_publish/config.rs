//! The `[brokers]` section: the MQTT brokers `mqtt_publish` routes publish to, by name. One
//! connection per broker is shared by every route that names it.
//!
//! ```toml
//! [brokers.local]
//! host = "127.0.0.1"
//! port = 1883                # default 1883, or 8883 with tls
//! client_id = "tugboat-prod" # default tugboat-<name>-<pid>
//! username = "tugboat"       # optional
//! # password: set TUGBOAT__BROKERS__LOCAL__PASSWORD rather than writing it here
//! tls = false                # default false (needs --features mqtt-tls); ca_file = "/etc/ssl/broker-ca.pem"
//! keep_alive = "30s"
//! ack_timeout = "10s"        # no PUBACK by then: the publish is retried
//! ```

use crate::config::BadKey;
use std::collections::BTreeMap;

use crate::config::parse_section;
use crate::ports::BrokerSettings;
use crate::workflows::Section;

/// The section's name in the configuration file.
pub const NAME: &str = "brokers";

pub const SECTION: Section = Section {
    name: NAME,
    check: |value| parse(value).map(|_| ()),
};

pub type Brokers = BTreeMap<String, BrokerSettings>;

/// Parses and checks the section; errors name the key (`brokers.local.host`).
pub fn parse(value: &toml::Value) -> Result<Brokers, BadKey> {
    let brokers: Brokers = parse_section(NAME, value)?;
    for (name, b) in &brokers {
        let key = |field: &str| format!("{NAME}.{name}.{field}");
        if b.host.trim().is_empty() {
            return Err(BadKey::at(key("host"), "must not be empty".into()));
        }
        if b.port == Some(0) {
            return Err(BadKey::at(key("port"), "must be 1 to 65535, got 0".into()));
        }
        if b.client_id.as_deref().is_some_and(|c| c.is_empty() || c.len() > 65535) {
            return Err(BadKey::at(key("client_id"), "must be 1 to 65535 bytes".into()));
        }
        if b.ca_file.is_some() && !b.tls {
            return Err(BadKey::at(key("ca_file"), "only means something with tls = true".into()));
        }
        if b.password.is_some() && b.username.is_none() {
            return Err(BadKey::at(key("password"), "needs a username (MQTT 3.1.1 §3.1.2.9)".into()));
        }
        if b.keep_alive.as_secs() < 5 || b.keep_alive.as_secs() > 65535 {
            return Err(BadKey::at(key("keep_alive"), "must be 5s to 65535s".into()));
        }
        if b.ack_timeout.is_zero() {
            return Err(BadKey::at(key("ack_timeout"), "must be more than 0s".into()));
        }
    }
    Ok(brokers)
}

/// The section as the params check sees it: absent is empty.
pub fn from_sections(sections: &BTreeMap<String, toml::Value>) -> Result<Brokers, String> {
    match sections.get(NAME) {
        None => Ok(Brokers::new()),
        Some(v) => parse(v).map_err(|b| b.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Brokers, BadKey> {
        parse(&toml::from_str::<toml::Table>(text).unwrap()["brokers"])
    }

    #[test]
    fn a_broker_loads_with_its_defaults() {
        let b = parsed("[brokers.local]\nhost = \"127.0.0.1\"").unwrap();
        let local = &b["local"];
        assert_eq!(local.port(), 1883);
        assert_eq!(local.keep_alive.as_secs(), 30);
        assert!(!local.tls);
        let b = parsed("[brokers.x]\nhost = \"h\"\ntls = true").unwrap();
        assert_eq!(b["x"].port(), 8883);
    }

    #[test]
    fn wrong_shapes_name_the_key() {
        for (text, key) in [
            ("[brokers.a]\nport = 1", "brokers.a"),
            ("[brokers.a]\nhost = \"\"", "brokers.a.host"),
            ("[brokers.a]\nhost = \"h\"\nport = 0", "brokers.a.port"),
            ("[brokers.a]\nhost = \"h\"\nport = 70000", "brokers.a.port"),
            ("[brokers.a]\nhost = \"h\"\nport = \"x\"", "brokers.a.port"),
            ("[brokers.a]\nhost = \"h\"\nqos = 1", "brokers.a.qos"),
            ("[brokers.a]\nhost = \"h\"\nca_file = \"ca.pem\"", "brokers.a.ca_file"),
            ("[brokers.a]\nhost = \"h\"\npassword = \"p\"", "brokers.a.password"),
            ("[brokers.a]\nhost = \"h\"\nkeep_alive = \"1s\"", "brokers.a.keep_alive"),
            ("[brokers.a]\nhost = \"h\"\nack_timeout = \"soon\"", "brokers.a.ack_timeout"),
            ("[brokers.a]\nhost = \"h\"\nclient_id = \"\"", "brokers.a.client_id"),
        ] {
            let BadKey { key: k, message: m } = parsed(text).unwrap_err();
            assert_eq!(k, key, "{text}: {m}");
        }
    }

    #[test]
    fn a_password_is_never_printed() {
        let b = parsed("[brokers.a]\nhost = \"h\"\nusername = \"u\"\npassword = \"hunter2\"").unwrap();
        assert!(!format!("{b:?}").contains("hunter2"));
    }
}
