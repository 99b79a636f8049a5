//! `agent.toml`: where the agent looks for notices and what it runs when one comes.
//!
//! ```toml
//! instance_id = "i-0123456789abcdef0"    # default: read from the metadata service
//! state_file = "/var/lib/tugboat-agent/state.json"
//! margin = "10s"                         # kept free before the deadline
//!
//! [aws]
//! base_url = "http://169.254.169.254"    # the instance metadata service (tests: 127.0.0.1)
//! poll_interval = "1s"                   # AWS advises 5 s or less
//! token_ttl = "6h"                       # IMDSv2 session token lifetime
//! imdsv1_fallback = false                # plain GETs only if a token cannot be had
//!
//! [[handlers]]
//! name = "checkpoint"
//! type = "command"                       # the notice as JSON on stdin and TUGBOAT_NOTICE_*
//! command = ["/usr/local/bin/checkpoint", "--fast"]
//! priority = 1                           # lower first; equal ones together
//! timeout = "20s"
//!
//! [[handlers]]
//! name = "redis"
//! type = "redis"                         # BGSAVE, then wait until LASTSAVE moves
//! address = "127.0.0.1:6379"
//! # password = "…"                       # never logged
//! # mode = "save"                         # a blocking SAVE instead
//!
//! [[handlers]]
//! name = "app"
//! type = "http"                          # retried on 429, 5xx, connection errors
//! url = "http://127.0.0.1:8080/checkpoint"
//! body = { reason = "{kind}" }           # a template over the notice; default: the notice
//!
//! [[handlers]]
//! name = "tell-tugboat"
//! type = "publish"                       # to the central queue, for spot_drain
//! queue = "https://sqs.us-east-1.amazonaws.com/123456789012/tugboat-events"
//!
//! [api]                                  # the AWS API publish handlers call
//! region = "us-east-1"
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    #[serde(default)]
    pub instance_id: Option<String>,
    pub state_file: PathBuf,
    #[serde(default = "default_margin", with = "humantime_serde")]
    pub margin: Duration,
    pub aws: AwsSource,
    /// The AWS API the `publish` handlers call (same keys as tugboat.toml's `[aws]`; leave
    /// out credentials on an instance: its role's are used).
    #[serde(default)]
    pub api: Option<crate::config::AwsSettings>,
    #[serde(default)]
    pub handlers: Vec<HandlerConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSource {
    #[serde(default = "default_base_url")]
    pub base_url: String,
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll_interval: Duration,
    #[serde(default = "default_token_ttl", with = "humantime_serde")]
    pub token_ttl: Duration,
    #[serde(default)]
    pub imdsv1_fallback: bool,
}

/// One local handler. (Unknown keys are refused by [`HandlerKind`]; see spot_drain's config
/// for why not here.)
#[derive(Debug, Clone, Deserialize)]
pub struct HandlerConfig {
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
    Command {
        command: Vec<String>,
        #[serde(default)]
        env: std::collections::BTreeMap<String, String>,
    },
    Publish {
        /// The central queue's name or URL.
        queue: String,
    },
    /// Redis: `BGSAVE`, then wait until `LASTSAVE` moves (or `SAVE` with `mode = "save"`).
    Redis {
        /// `host:port`.
        address: String,
        #[serde(default)]
        password: Option<secrecy::SecretString>,
        #[serde(default = "default_redis_mode")]
        mode: String,
    },
    /// A request to a local endpoint (the application's checkpoint URL), retried on 429, 5xx
    /// and connection errors within the timeout.
    Http {
        url: String,
        #[serde(default = "default_method")]
        method: String,
        #[serde(default)]
        headers: std::collections::BTreeMap<String, String>,
        /// A JSON template over the notice (`{instance}`, `{kind}`, `{deadline}`); default:
        /// the notice.
        #[serde(default)]
        body: Option<serde_json::Value>,
    },
}

fn default_redis_mode() -> String {
    "bgsave".into()
}

fn default_method() -> String {
    "POST".into()
}

fn default_margin() -> Duration {
    Duration::from_secs(10)
}
fn default_base_url() -> String {
    "http://169.254.169.254".into()
}
fn default_poll() -> Duration {
    Duration::from_secs(1)
}
fn default_token_ttl() -> Duration {
    Duration::from_secs(6 * 3600)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl AgentConfig {
    /// Reads and checks `path`; errors name the file and the key.
    pub fn load(path: &std::path::Path) -> Result<AgentConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        AgentConfig::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<AgentConfig, String> {
        let value: toml::Value = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        let c: AgentConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let first = e.inner().to_string();
            format!("{}: {}", e.path(), first.lines().next().unwrap_or_default())
        })?;
        if c.aws.poll_interval.is_zero() || c.aws.poll_interval > Duration::from_secs(60) {
            return Err("aws.poll_interval: must be more than 0s and at most 60s".into());
        }
        if c.aws.token_ttl < Duration::from_secs(1) || c.aws.token_ttl > Duration::from_secs(21_600)
        {
            return Err("aws.token_ttl: must be between 1s and 6h (IMDSv2's limits)".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, h) in c.handlers.iter().enumerate() {
            if h.name.is_empty() || !names.insert(h.name.clone()) {
                return Err(format!("handlers.{i}.name: must be unique and not empty"));
            }
            if h.timeout.is_zero() {
                return Err(format!("handlers.{i}.timeout: must be more than 0s"));
            }
            match &h.kind {
                HandlerKind::Command { command, .. } if command.is_empty() => {
                    return Err(format!("handlers.{i}.command: names no program"));
                }
                HandlerKind::Http {
                    url, method, body, ..
                } => {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Err(format!(
                            "handlers.{i}.url: must be an http(s) URL, got {url:?}"
                        ));
                    }
                    if reqwest::Method::from_bytes(method.as_bytes()).is_err() {
                        return Err(format!("handlers.{i}.method: {method:?} is no HTTP method"));
                    }
                    if let Some(b) = body {
                        crate::workflows::template::BodyTemplate::parse(b, &Default::default())
                            .map_err(|e| format!("handlers.{i}.body: {e}"))?;
                    }
                }
                HandlerKind::Redis { mode, .. } if mode != "bgsave" && mode != "save" => {
                    return Err(format!(
                        "handlers.{i}.mode: must be \"bgsave\" or \"save\", got {mode:?}"
                    ));
                }
                HandlerKind::Publish { .. } if c.api.is_none() => {
                    return Err(format!(
                        "handlers.{i}: a publish handler needs an [api] section (its region)"
                    ));
                }
                _ => {}
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_loads_with_defaults_and_wrong_shapes_name_the_key() {
        let c = AgentConfig::parse(
            "state_file = \"/tmp/s.json\"\n[aws]\n[[handlers]]\nname = \"c\"\ntype = \"command\"\ncommand = [\"true\"]\n",
        )
        .unwrap();
        assert_eq!(c.aws.poll_interval, Duration::from_secs(1));
        assert_eq!(c.aws.base_url, "http://169.254.169.254");
        assert_eq!(c.handlers[0].timeout, Duration::from_secs(10));
        for (text, key) in [
            ("[aws]\n", "state_file"),
            ("state_file = 3\n[aws]\n", "state_file"),
            (
                "state_file = \"s\"\n[aws]\npoll_interval = \"0s\"\n",
                "aws.poll_interval",
            ),
            (
                "state_file = \"s\"\n[aws]\ntoken_ttl = \"7h\"\n",
                "aws.token_ttl",
            ),
            ("state_file = \"s\"\n[aws]\nextra = 1\n", "aws"),
            (
                "state_file = \"s\"\n[aws]\n[[handlers]]\nname = \"c\"\ntype = \"command\"\ncommand = []\n",
                "handlers.0.command",
            ),
            (
                "state_file = \"s\"\n[aws]\n[[handlers]]\nname = \"c\"\ntype = \"pigeon\"\n",
                "handlers",
            ),
            ("state_file = \"s\"\n[aws\n", "expected"),
            (
                "state_file = \"s\"\n[aws]\n[[handlers]]\nname = \"p\"\ntype = \"publish\"\nqueue = \"q\"\n",
                "[api]",
            ),
            (
                "state_file = \"s\"\n[aws]\n[[handlers]]\nname = \"h\"\ntype = \"http\"\nurl = \"localhost:1\"\n",
                "handlers.0.url",
            ),
            (
                "state_file = \"s\"\n[aws]\n[[handlers]]\nname = \"r\"\ntype = \"redis\"\naddress = \"a:1\"\nmode = \"fsync\"\n",
                "handlers.0.mode",
            ),
            (
                "state_file = \"s\"\n[aws]\n[[handlers]]\nname = \"h\"\ntype = \"http\"\nurl = \"http://x\"\nbody = \"{a\"\n",
                "handlers.0.body",
            ),
        ] {
            let e = AgentConfig::parse(text).unwrap_err();
            assert!(e.contains(key), "{text}: {e}");
        }
    }
}
