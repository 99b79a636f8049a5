//! `agent.toml`: where the agent looks for notices and what it runs when one comes.
//! `deploy/agent/agent.toml` is a commented example of every section (a test loads it).
//! Every check names the key it refuses (`handlers.2.url: …`); secrets (database URLs, the
//! Redis password) never appear in an error.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Where interruption notices come from: `aws`, `azure`, `gcp`, `auto` (the one whose
    /// metadata service answers) or `none` (local sources and peers only).
    #[serde(default)]
    pub provider: Provider,
    #[serde(default)]
    pub instance_id: Option<String>,
    pub state_file: PathBuf,
    #[serde(default = "default_margin", with = "humantime_serde")]
    pub margin: Duration,
    #[serde(default)]
    pub aws: AwsSource,
    #[serde(default)]
    pub azure: AzureSource,
    #[serde(default)]
    pub gcp: GcpSource,
    #[serde(default)]
    pub local: LocalSources,
    #[serde(default)]
    pub peer: Option<PeerSource>,
    /// Where each report goes besides stdout.
    #[serde(default)]
    pub report: Option<ReportTarget>,
    /// The AWS API the `publish` handlers call (same keys as tugboat.toml's `[aws]`; leave
    /// out credentials on an instance: its role's are used).
    #[serde(default)]
    pub api: Option<crate::config::AwsSettings>,
    #[serde(default)]
    pub handlers: Vec<HandlerConfig>,
    /// The key the service's `[security] signing_key` holds: the `publish` handler signs
    /// notices with it (the service believes no unsigned one), peer notices are checked and
    /// signed with it. Keep `agent.toml` readable by the agent's user alone (0600). Or set
    /// `TUGBOAT_AGENT_SIGNING_KEY`.
    #[serde(default)]
    pub signing_key: Option<crate::signing::SigningKey>,
    /// How old a signed peer notice may be. Default 5 minutes.
    #[serde(default = "default_notice_max_age", with = "humantime_serde")]
    pub notice_max_age: Duration,
    /// The agent's one clock: every time the agent decides by (a notice's deadline,
    /// `left_ms`, how long the network has been down, the peer limit, a signature's time)
    /// reads it; its waits are on tokio's timer, which this clock follows. Not configured:
    /// [`crate::ports::clock::TokioClock`] (the system's time, moving with tokio's timer, so
    /// that a test on paused time moves both at once).
    #[serde(skip)]
    pub clock: AgentClock,
}

/// The clock an agent reads (see [`AgentConfig::clock`]).
#[derive(Debug, Clone)]
pub struct AgentClock(pub std::sync::Arc<dyn crate::ports::clock::Clock>);

impl Default for AgentClock {
    fn default() -> Self {
        AgentClock(std::sync::Arc::new(crate::ports::clock::TokioClock::new()))
    }
}

impl std::ops::Deref for AgentClock {
    type Target = dyn crate::ports::clock::Clock;
    fn deref(&self) -> &Self::Target {
        self.0.as_ref()
    }
}

/// The environment variable that gives the agent its signing key.
pub const SIGNING_KEY_ENV: &str = "TUGBOAT_AGENT_SIGNING_KEY";

fn default_notice_max_age() -> Duration {
    Duration::from_secs(300)
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

impl Default for AwsSource {
    fn default() -> Self {
        AwsSource {
            base_url: default_base_url(),
            poll_interval: default_poll(),
            token_ttl: default_token_ttl(),
            imdsv1_fallback: false,
        }
    }
}

/// Azure's Scheduled Events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureSource {
    #[serde(default = "default_base_url")]
    pub base_url: String,
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// After the handlers ran, tell Azure to go ahead (`StartRequests`), so the event starts
    /// now rather than at its `NotBefore`.
    #[serde(default = "yes")]
    pub acknowledge: bool,
}

impl Default for AzureSource {
    fn default() -> Self {
        AzureSource {
            base_url: default_base_url(),
            poll_interval: default_poll(),
            acknowledge: true,
        }
    }
}

/// GCP's metadata server, long-polled.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpSource {
    #[serde(default = "default_gcp_url")]
    pub base_url: String,
    /// How long one long poll may wait for a change before it is asked again.
    #[serde(default = "default_gcp_wait", with = "humantime_serde")]
    pub wait: Duration,
    /// The time a preemption leaves (GCP: about 30 s), the notice's deadline.
    #[serde(default = "default_gcp_notice", with = "humantime_serde")]
    pub preemption_notice: Duration,
    /// The time a host maintenance event leaves (GCP: 60 s).
    #[serde(default = "default_gcp_maintenance", with = "humantime_serde")]
    pub maintenance_notice: Duration,
}

impl Default for GcpSource {
    fn default() -> Self {
        GcpSource {
            base_url: default_gcp_url(),
            wait: default_gcp_wait(),
            preemption_notice: default_gcp_notice(),
            maintenance_notice: default_gcp_maintenance(),
        }
    }
}

/// The machine's own trouble: full disks, memory pressure, a network gone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSources {
    #[serde(default = "default_local_interval", with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default)]
    pub disk: Vec<DiskWatch>,
    #[serde(default)]
    pub memory: Option<MemoryWatch>,
    #[serde(default)]
    pub network: Vec<NetworkWatch>,
}

impl Default for LocalSources {
    fn default() -> Self {
        LocalSources {
            interval: default_local_interval(),
            disk: Vec::new(),
            memory: None,
            network: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskWatch {
    /// A path on the file system to watch (its mount point, usually).
    pub mount: PathBuf,
    /// Used space, in percent of the space a non-root user could have, above which a
    /// `disk-usage` notice is raised.
    pub above_percent: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryWatch {
    /// `/proc/pressure/memory`'s `some avg10` (percent of time stalled) above which a
    /// `memory-pressure` notice is raised, where the kernel has PSI.
    #[serde(default = "default_pressure")]
    pub pressure_above: f64,
    /// Without PSI: `MemAvailable` below this many MiB.
    #[serde(default = "default_available")]
    pub available_below_mib: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkWatch {
    /// An interface that must be up (`/sys/class/net/NAME/operstate`), or
    #[serde(default)]
    pub interface: Option<String>,
    /// a `host:port` that must accept TCP connections.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// How long it must stay down before it is a notice.
    #[serde(default = "default_unreachable", with = "humantime_serde")]
    pub unreachable_for: Duration,
}

/// Another instance of the group is being interrupted: its notices arrive on an MQTT topic
/// (what another agent's `mqtt` handler publishes, signed with the shared `signing_key`) or
/// an SQS queue, and run the `peer` handlers. An unsigned or stale notice is logged and
/// ignored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSource {
    /// MQTT `host:port`, with `topic` (wildcards allowed).
    #[serde(default)]
    pub broker: Option<String>,
    #[serde(default)]
    pub topic: Option<String>,
    /// The broker's credentials (give the agents an account that may only read the peer
    /// topic and publish to its own). The password is never logged.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<secrecy::SecretString>,
    /// TLS (a build with `--features mqtt-tls`), verified against the system's roots or
    /// `ca_file`.
    #[serde(default)]
    pub tls: bool,
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Or an SQS queue's name or URL (through `[api]`).
    #[serde(default)]
    pub queue: Option<String>,
    /// One peer's notices of one kind run the handlers at most once in this long. Default
    /// 10 minutes.
    #[serde(default = "default_peer_interval", with = "humantime_serde")]
    pub min_interval: Duration,
    /// Take notices without a signature too: only where the queue's policy (or the broker's
    /// ACL) lets nothing but trusted senders publish, such as an EventBridge rule delivering
    /// spot warnings to the peer queue. A signed notice is still checked. Default false.
    #[serde(default)]
    pub accept_unsigned: bool,
}

fn default_peer_interval() -> Duration {
    Duration::from_secs(600)
}

impl PeerSource {
    pub fn auth(&self) -> MqttAuth {
        MqttAuth {
            username: self.username.clone(),
            password: self.password.clone(),
            tls: self.tls,
            ca_file: self.ca_file.clone(),
        }
    }
}

/// How the agent logs in to an MQTT broker (the peer source's or an `mqtt` handler's keys).
#[derive(Debug, Clone, Default)]
pub struct MqttAuth {
    pub username: Option<String>,
    pub password: Option<secrecy::SecretString>,
    pub tls: bool,
    pub ca_file: Option<String>,
}

impl MqttAuth {
    /// Settings for the broker at `address` (`host:port`), as this agent's client `client_id`.
    pub fn broker(
        &self,
        address: &str,
        client_id: String,
    ) -> Result<crate::ports::mqtt::BrokerSettings, String> {
        let (host, port) = host_port(address)?;
        Ok(crate::ports::mqtt::BrokerSettings {
            host,
            port: Some(port),
            client_id: Some(client_id),
            username: self.username.clone(),
            password: self.password.clone(),
            tls: self.tls,
            ca_file: self.ca_file.clone(),
            keep_alive: Duration::from_secs(30),
            ack_timeout: Duration::from_secs(10),
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportTarget {
    /// An SQS queue's name or URL (through `[api]`) that receives every report.
    pub queue: String,
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
    /// The notices it runs for: classes (`interruption`, `disk`, `memory`, `network`,
    /// `peer`) or kinds (`spot-interruption`, …). Default: `interruption`.
    #[serde(default = "default_on")]
    pub on: Vec<String>,
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
    /// PostgreSQL: `CHECKPOINT` (a superuser or `pg_checkpoint` member).
    Postgres {
        /// `postgresql://user:password@host:port/db` or `host=… user=…`; never logged.
        url: secrecy::SecretString,
    },
    /// MySQL or MariaDB: `FLUSH TABLES` (needs the `RELOAD` privilege).
    Mysql {
        /// `mysql://user:password@host:port/db`; never logged.
        url: secrecy::SecretString,
    },
    /// The notice (as the event `spot_drain` and peers read) to an MQTT topic, for peers.
    Mqtt {
        /// `host:port`.
        broker: String,
        /// A template over the notice: `{instance}`, `{kind}`, `{provider}`.
        topic: String,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        password: Option<secrecy::SecretString>,
        #[serde(default)]
        tls: bool,
        #[serde(default)]
        ca_file: Option<String>,
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

/// What a handler's `on` may name.
pub const CLASSES: [&str; 5] = ["interruption", "disk", "memory", "network", "peer"];

impl HandlerConfig {
    /// Whether it runs for a notice of `kind` (whose class is `class`).
    pub fn runs_for(&self, class: &str, kind: &str) -> bool {
        self.on.iter().any(|o| o == class || o == kind)
    }
}

/// Which metadata service the agent watches (`provider`). Default `aws`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum Provider {
    #[default]
    Aws,
    Azure,
    Gcp,
    /// Whichever answers first.
    Auto,
    /// No metadata service: only the local and peer sources.
    None,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Azure => "azure",
            Provider::Gcp => "gcp",
            Provider::Auto => "auto",
            Provider::None => "none",
        }
    }
}

impl TryFrom<String> for Provider {
    type Error = String;

    fn try_from(name: String) -> Result<Provider, String> {
        Ok(match name.as_str() {
            "aws" => Provider::Aws,
            "azure" => Provider::Azure,
            "gcp" => Provider::Gcp,
            "auto" => Provider::Auto,
            "none" => Provider::None,
            _ => {
                return Err(format!(
                    "must be \"aws\", \"azure\", \"gcp\", \"auto\" or \"none\", got {name:?}"
                ));
            }
        })
    }
}
fn yes() -> bool {
    true
}
fn default_gcp_url() -> String {
    "http://metadata.google.internal".into()
}
fn default_gcp_wait() -> Duration {
    Duration::from_secs(60)
}
fn default_gcp_notice() -> Duration {
    Duration::from_secs(30)
}
fn default_gcp_maintenance() -> Duration {
    Duration::from_secs(60)
}
fn default_local_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_pressure() -> f64 {
    10.0
}
fn default_available() -> u64 {
    100
}
fn default_unreachable() -> Duration {
    Duration::from_secs(30)
}
fn default_on() -> Vec<String> {
    vec!["interruption".into()]
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
        let mut c = AgentConfig::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        // The key may come from the environment (a systemd credential, a secrets manager)
        // rather than the file.
        if let Ok(text) = std::env::var(SIGNING_KEY_ENV)
            && !text.is_empty()
        {
            c.signing_key = Some(
                crate::signing::SigningKey::parse(&text)
                    .map_err(|e| format!("{SIGNING_KEY_ENV}: {e}"))?,
            );
        }
        Ok(c)
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
        if c.azure.poll_interval.is_zero() || c.azure.poll_interval > Duration::from_secs(60) {
            return Err("azure.poll_interval: must be more than 0s and at most 60s".into());
        }
        if c.gcp.wait < Duration::from_secs(1) || c.gcp.wait > Duration::from_secs(3600) {
            return Err("gcp.wait: must be between 1s and 1h".into());
        }
        for (key, url) in [
            ("aws.base_url", &c.aws.base_url),
            ("azure.base_url", &c.azure.base_url),
            ("gcp.base_url", &c.gcp.base_url),
        ] {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(format!("{key}: must be an http(s) URL, got {url:?}"));
            }
        }
        c.check_local()?;
        if let Some(p) = &c.peer {
            match (&p.broker, &p.topic, &p.queue) {
                (Some(b), Some(t), None) => {
                    host_port(b).map_err(|e| format!("peer.broker: {e}"))?;
                    if t.is_empty() {
                        return Err("peer.topic: must not be empty".into());
                    }
                }
                (None, None, Some(_)) if c.api.is_none() => {
                    return Err("peer.queue: needs an [api] section (its region)".into());
                }
                (None, None, Some(_)) => {}
                _ => {
                    return Err(
                        "peer: give either broker and topic (MQTT) or queue (SQS), not both".into(),
                    );
                }
            }
        }
        if let Some(api) = &c.api {
            api.check_timeouts("api").map_err(|b| b.to_string())?;
            let peer_queue = c.peer.as_ref().is_some_and(|p| p.queue.is_some());
            let least = super::peer::QUEUE_WAIT + crate::config::LONG_POLL_MARGIN;
            if peer_queue && api.attempt_timeout < least {
                return Err(format!(
                    "api.attempt_timeout: must be at least {} with peer.queue (its long polls take {}), got {}",
                    humantime::format_duration(least),
                    humantime::format_duration(super::peer::QUEUE_WAIT),
                    humantime::format_duration(api.attempt_timeout)
                ));
            }
        }
        if c.report.is_some() && c.api.is_none() {
            return Err("report.queue: needs an [api] section (its region)".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, h) in c.handlers.iter().enumerate() {
            if h.name.is_empty() || !names.insert(h.name.clone()) {
                return Err(format!("handlers.{i}.name: must be unique and not empty"));
            }
            if h.timeout.is_zero() {
                return Err(format!("handlers.{i}.timeout: must be more than 0s"));
            }
            for on in &h.on {
                if !CLASSES.contains(&on.as_str()) && !KINDS.contains(&on.as_str()) {
                    return Err(format!(
                        "handlers.{i}.on: {on:?} is neither a class ({}) nor a kind ({})",
                        CLASSES.join(", "),
                        KINDS.join(", ")
                    ));
                }
            }
            match &h.kind {
                HandlerKind::Postgres { url } => {
                    use secrecy::ExposeSecret;
                    // The parser's message never repeats the string (it may hold a password).
                    url.expose_secret()
                        .parse::<tokio_postgres::Config>()
                        .map_err(|e| {
                            format!("handlers.{i}.url: not a PostgreSQL connection string: {e}")
                        })?;
                }
                HandlerKind::Mysql { url } => {
                    use secrecy::ExposeSecret;
                    if mysql_async::Opts::from_url(url.expose_secret()).is_err() {
                        return Err(format!(
                            "handlers.{i}.url: not a mysql://user:password@host:port/db URL"
                        ));
                    }
                }
                HandlerKind::Mqtt { broker, topic, .. } => {
                    host_port(broker).map_err(|e| format!("handlers.{i}.broker: {e}"))?;
                    if topic.is_empty() || topic.contains(['+', '#']) {
                        return Err(format!(
                            "handlers.{i}.topic: must be a topic to publish to (no wildcards), got {topic:?}"
                        ));
                    }
                }
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

/// Every kind of notice (see [`super::notice::Notice::class`]).
pub const KINDS: [&str; 8] = [
    "spot-interruption",
    "rebalance-recommendation",
    "scheduled-maintenance",
    "termination",
    "disk-usage",
    "memory-pressure",
    "network-unreachable",
    "peer-interruption",
];

/// `host:port`, or why not.
pub fn host_port(text: &str) -> Result<(String, u16), String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not host:port"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("{text:?}: the port is not a number up to 65535"))?;
    if host.is_empty() {
        return Err(format!("{text:?} has no host"));
    }
    Ok((host.trim_matches(['[', ']']).to_owned(), port))
}

impl AgentConfig {
    fn check_local(&self) -> Result<(), String> {
        let l = &self.local;
        if l.interval.is_zero() {
            return Err("local.interval: must be more than 0s".into());
        }
        for (i, d) in l.disk.iter().enumerate() {
            if !(d.above_percent > 0.0 && d.above_percent <= 100.0) {
                return Err(format!(
                    "local.disk.{i}.above_percent: must be more than 0 and at most 100"
                ));
            }
        }
        if let Some(m) = &l.memory
            && !(0.0..=100.0).contains(&m.pressure_above)
        {
            return Err("local.memory.pressure_above: must be between 0 and 100".into());
        }
        for (i, n) in l.network.iter().enumerate() {
            match (&n.interface, &n.endpoint) {
                (Some(name), None) if !name.is_empty() && !name.contains('/') => {}
                (None, Some(e)) => {
                    host_port(e).map_err(|e| format!("local.network.{i}.endpoint: {e}"))?;
                }
                _ => {
                    return Err(format!(
                        "local.network.{i}: give either interface (a name) or endpoint (host:port)"
                    ));
                }
            }
        }
        Ok(())
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
            ("provider = \"oracle\"\nstate_file = \"s\"\n", "provider"),
            (
                "state_file = \"s\"\n[azure]\npoll_interval = \"2m\"\n",
                "azure.poll_interval",
            ),
            ("state_file = \"s\"\n[gcp]\nwait = \"0s\"\n", "gcp.wait"),
            (
                "state_file = \"s\"\n[gcp]\nbase_url = \"metadata\"\n",
                "gcp.base_url",
            ),
            (
                "state_file = \"s\"\n[[local.disk]]\nmount = \"/\"\nabove_percent = 120\n",
                "local.disk.0.above_percent",
            ),
            (
                "state_file = \"s\"\n[[local.disk]]\nmount = \"/\"\n",
                "above_percent",
            ),
            (
                "state_file = \"s\"\n[local.memory]\npressure_above = -1\n",
                "local.memory.pressure_above",
            ),
            (
                "state_file = \"s\"\n[[local.network]]\ninterface = \"eth0\"\nendpoint = \"a:1\"\n",
                "local.network.0",
            ),
            (
                "state_file = \"s\"\n[[local.network]]\nendpoint = \"nohost\"\n",
                "local.network.0.endpoint",
            ),
            (
                "state_file = \"s\"\n[peer]\nbroker = \"a:1\"\n",
                "peer: give either",
            ),
            ("state_file = \"s\"\n[peer]\nqueue = \"q\"\n", "peer.queue"),
            (
                "state_file = \"s\"\n[api]\nregion = \"r\"\ncall_timeout = \"5s\"\n",
                "api.call_timeout: must be at least attempt_timeout",
            ),
            (
                "state_file = \"s\"\n[api]\nregion = \"r\"\nattempt_timeout = \"0s\"\n",
                "api.attempt_timeout: must be at least 1s",
            ),
            (
                "state_file = \"s\"\n[peer]\nqueue = \"q\"\n[api]\nregion = \"r\"\nattempt_timeout = \"20s\"\n",
                "api.attempt_timeout: must be at least 25s with peer.queue",
            ),
            (
                "state_file = \"s\"\n[report]\nqueue = \"q\"\n",
                "report.queue",
            ),
            (
                "state_file = \"s\"\n[[handlers]]\nname = \"c\"\ntype = \"command\"\ncommand = [\"true\"]\non = [\"fire\"]\n",
                "handlers.0.on",
            ),
            (
                "state_file = \"s\"\n[[handlers]]\nname = \"p\"\ntype = \"postgres\"\nurl = \"postgresql://u:hunter2@h:port/db\"\n",
                "handlers.0.url",
            ),
            (
                "state_file = \"s\"\n[[handlers]]\nname = \"m\"\ntype = \"mysql\"\nurl = \"postgres://u:hunter2@h/db\"\n",
                "handlers.0.url",
            ),
            (
                "state_file = \"s\"\n[[handlers]]\nname = \"m\"\ntype = \"mqtt\"\nbroker = \"h:1\"\ntopic = \"a/#\"\n",
                "handlers.0.topic",
            ),
        ] {
            let e = AgentConfig::parse(text).unwrap_err();
            assert!(!e.contains("hunter2"), "a secret in an error: {e}");
            assert!(e.contains(key), "{text}: {e}");
        }
    }
}
