//! The `[spot]` section: where a drain reaches and who is told.
//!
//! ```toml
//! [spot]
//! clusters = ["prod"]                 # ECS clusters whose container instances are drained
//! target_groups = ["web-tg"]          # names or ARNs; the instance's targets leave them
//! window = "2m"                       # the deadline of notices that carry none (rebalance,
//!                                     # lifecycle actions, the agent's without one)
//! margin = "10s"                      # kept free before the deadline
//! drain_wait = true                   # wait (until the deadline) for the drained container
//!                                     # instances' tasks to leave before completing a
//!                                     # lifecycle action and reporting; default true
//! drain_poll = "5s"                   # how often ECS is asked while waiting; default 5s
//!
//! [[spot.handlers]]                   # run in priority order, equal priorities together
//! name = "pager"
//! type = "http"                       # POST to a [destinations.NAME]
//! destination = "pager"
//! priority = 1                        # lower first; default 0
//! timeout = "5s"                      # each handler's own bound (within the deadline)
//! body = { text = "{instance} goes away in {left_s} s" }   # default: the notice
//!
//! [[spot.handlers]]
//! name = "fluxer"
//! type = "mqtt"                       # through a [brokers.NAME]
//! broker = "main"
//! topic = "fluxer/aws/instances/{instance}/spot-interruption"
//! qos = 1
//!
//! [[spot.handlers]]
//! name = "ops-topic"
//! type = "sns"                        # a topic by ARN (attributes `type`, `instance`)
//! topic = "arn:aws:sns:us-east-1:123456789012:ops"
//!
//! [[spot.handlers]]
//! name = "agent"
//! type = "sqs"                        # a queue by name or URL
//! queue = "instance-agents"
//! ```
//!
//! Templates are filled from the notice: `instance`, `kind`, `deadline` (RFC 3339), `left_s`,
//! `source`, `action`, `zone`, `event` (the whole event: `{event.detail.instance-id}`).

use crate::config::BadKey;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::config::parse_section;
use crate::workflows::Section;

pub const NAME: &str = "spot";

pub const SECTION: Section = Section {
    name: NAME,
    check: |value| parse(value).map(|_| ()),
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpotSettings {
    #[serde(default)]
    pub clusters: Vec<String>,
    #[serde(default)]
    pub target_groups: Vec<String>,
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
    #[serde(default = "default_margin", with = "humantime_serde")]
    pub margin: Duration,
    #[serde(default)]
    pub handlers: Vec<HandlerSettings>,
    #[serde(default = "default_drain_wait")]
    pub drain_wait: bool,
    #[serde(default = "default_drain_poll", with = "humantime_serde")]
    pub drain_poll: Duration,
}

fn default_drain_wait() -> bool {
    true
}

fn default_drain_poll() -> Duration {
    Duration::from_secs(5)
}

fn default_window() -> Duration {
    Duration::from_secs(120)
}

fn default_margin() -> Duration {
    Duration::from_secs(10)
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_qos() -> u8 {
    1
}

/// One handler. (Unknown keys are refused by [`HandlerKind`]: serde's `deny_unknown_fields`
/// does not work beside `flatten`.)
#[derive(Debug, Clone, Deserialize)]
pub struct HandlerSettings {
    pub name: String,
    #[serde(default)]
    pub priority: u32,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(flatten)]
    pub kind: HandlerKind,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum HandlerKind {
    Http {
        destination: String,
        #[serde(default)]
        body: Option<Value>,
    },
    Mqtt {
        broker: String,
        topic: String,
        #[serde(default = "default_qos")]
        qos: u8,
    },
    Sns {
        /// The topic's ARN.
        topic: String,
        #[serde(default)]
        body: Option<Value>,
    },
    Sqs {
        /// The queue's name or URL (the instance's agent listens there, say).
        queue: String,
        #[serde(default)]
        body: Option<Value>,
    },
}

/// Parses and checks the section; errors name the key (`spot.handlers.0.timeout`).
pub fn parse(value: &toml::Value) -> Result<SpotSettings, BadKey> {
    let s: SpotSettings = parse_section(NAME, value)?;
    if s.window.is_zero() {
        return Err(BadKey::at(format!("{NAME}.window"), "must be more than 0s".into()));
    }
    if s.drain_poll < Duration::from_millis(100) {
        return Err(BadKey::at(
            format!("{NAME}.drain_poll"),
            format!(
                "must be at least 100ms, got {}",
                humantime::format_duration(s.drain_poll)
            ),
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, h) in s.handlers.iter().enumerate() {
        let key = |field: &str| format!("{NAME}.handlers.{i}.{field}");
        if h.name.is_empty() || !names.insert(h.name.clone()) {
            return Err(BadKey::at(key("name"), format!("must be unique and not empty, got {:?}", h.name)));
        }
        if h.timeout.is_zero() {
            return Err(BadKey::at(key("timeout"), "must be more than 0s".into()));
        }
        match &h.kind {
            HandlerKind::Mqtt { qos, .. } if *qos > 1 => {
                return Err(BadKey::at(key("qos"), format!("must be 0 or 1, got {qos}")));
            }
            HandlerKind::Sns { topic, .. } if !topic.starts_with("arn:") => {
                return Err(BadKey::at(key("topic"), format!("must be a topic ARN, got {topic:?}")));
            }
            _ => {}
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> toml::Value {
        let v: toml::Table = toml::from_str(text).unwrap();
        v["spot"].clone()
    }

    #[test]
    fn the_section_loads_with_defaults_and_wrong_shapes_name_the_key() {
        let s = parse(&section(
            "[spot]\nclusters = [\"c\"]\n[[spot.handlers]]\nname = \"h\"\ntype = \"http\"\ndestination = \"d\"\n",
        ))
        .unwrap();
        assert_eq!(s.window, Duration::from_secs(120));
        assert_eq!(s.margin, Duration::from_secs(10));
        assert!(s.drain_wait);
        assert_eq!(s.drain_poll, Duration::from_secs(5));
        assert_eq!(s.handlers[0].timeout, Duration::from_secs(10));
        for (text, key) in [
            ("[spot]\nclusters = \"c\"\n", "spot.clusters"),
            ("[spot]\nwindow = \"soon\"\n", "spot.window"),
            ("[spot]\nwindow = \"0s\"\n", "spot.window"),
            ("[spot]\ndrain_wait = \"yes\"\n", "spot.drain_wait"),
            ("[spot]\ndrain_poll = \"10ms\"\n", "spot.drain_poll"),
            ("[spot]\ndrain_poll = 5\n", "spot.drain_poll"),
            ("[spot]\nextra = 1\n", "spot"),
            (
                "[spot]\n[[spot.handlers]]\nname = \"h\"\ntype = \"pigeon\"\n",
                "spot.handlers",
            ),
            (
                "[spot]\n[[spot.handlers]]\nname = \"h\"\ntype = \"http\"\ndestination = \"d\"\nretries = 3\n",
                "spot.handlers",
            ),
            (
                "[spot]\n[[spot.handlers]]\nname = \"h\"\ntype = \"sns\"\ntopic = \"ops\"\n",
                "spot.handlers.0.topic",
            ),
            (
                "[spot]\n[[spot.handlers]]\nname = \"h\"\ntype = \"mqtt\"\nbroker = \"b\"\ntopic = \"t\"\nqos = 2\n",
                "spot.handlers.0.qos",
            ),
            (
                "[spot]\n[[spot.handlers]]\nname = \"h\"\ntype = \"http\"\ndestination = \"d\"\ntimeout = \"0s\"\n",
                "spot.handlers.0.timeout",
            ),
            (
                "[spot]\n[[spot.handlers]]\nname = \"h\"\ntype = \"http\"\ndestination = \"d\"\n[[spot.handlers]]\nname = \"h\"\ntype = \"http\"\ndestination = \"d\"\n",
                "spot.handlers.1.name",
            ),
        ] {
            let BadKey { key: k, message: m } = parse(&section(text)).unwrap_err();
            assert!(k.starts_with(key), "{text}: {k}: {m}");
        }
    }
}
