//! The typed configuration tree: one TOML file, environment overrides, validated once at start.
//!
//! Every field is documented here with its unit and default; `config/example.toml` shows them all.
//! Loading goes file → `toml::Value` → environment overrides (`TUGBOAT__SECTION__KEY=value`) →
//! typed tree (unknown keys and wrong types are errors that name the key path and the file) →
//! cross-field validation (a route naming an unknown workflow, a duplicate queue, …).

mod env;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

pub use env::ENV_PREFIX;

/// The environment variable that names the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "TUGBOAT_CONFIG";

/// A configuration that could not be loaded: which file, which key, and why.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {message}")]
pub struct ConfigError {
    pub file: PathBuf,
    /// The key path inside the file, such as `queues[0].concurrency`, or `(file)` for the whole.
    pub key: String,
    pub message: String,
}

/// The whole configuration of one tugboat process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where AWS is and how to reach it.
    pub aws: AwsSettings,
    /// The SQS queues tugboat consumes (and `tugboat send` produces to).
    #[serde(default)]
    pub queues: Vec<QueueConfig>,
    /// Routes: an EventBridge pattern and the workflow every matching event starts.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// ECS service mappings of the `ecs_start` workflow, keyed by service name.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceMapping>,
    /// SNS topics that workflows notify.
    #[serde(default)]
    pub notify: NotifyConfig,
    #[serde(default)]
    pub journal: JournalConfig,
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub engine: EngineConfig,
    /// What to do with an event that matches no route.
    #[serde(default)]
    pub unmatched: UnmatchedPolicy,
}

/// AWS region, endpoint and (for local emulation only) static credentials.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    /// The AWS region, such as `eu-west-1`. Required.
    pub region: String,
    /// Overrides every service's endpoint, such as `http://127.0.0.1:5000` for the local emulator.
    /// Default: none (the real AWS endpoints).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Static credentials. Meant for the local emulator; in AWS leave it out and the task role's
    /// credentials are used. Default: none (the SDK's default chain).
    #[serde(default)]
    pub credentials: Option<StaticCredentials>,
}

impl fmt::Debug for AwsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsSettings")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// An access key pair; the secret is never printed (`SecretString` redacts it in `Debug`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
}

/// One consumed queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// The queue's SQS name. Routes and the CLI refer to the queue by it. Required.
    pub name: String,
    /// The queue URL. Default: resolved from `name` with `GetQueueUrl` at start.
    #[serde(default)]
    pub url: Option<String>,
    /// The dead-letter queue tugboat hands failed work to: an SQS name or URL. Default: none
    /// (failed work is left to the queue's own redrive policy).
    #[serde(default)]
    pub dlq: Option<String>,
    /// How many messages of this queue may be in flight at once. Default 10, 1 to 1000.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// The visibility timeout tugboat asks for and keeps extending while work runs, such as
    /// `"60s"`. Default 60 s, 1 s to 12 h (SQS's limits).
    #[serde(default = "default_visibility", with = "humantime_serde")]
    pub visibility_timeout: Duration,
}

fn default_concurrency() -> u32 {
    10
}

fn default_visibility() -> Duration {
    Duration::from_secs(60)
}

/// A route: events matching `pattern` start `workflow` with `params`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique route name; part of every workflow id it starts. Required.
    pub name: String,
    /// An EventBridge event pattern, as a TOML table or a JSON string. Required.
    pub pattern: PatternSource,
    /// The workflow to start (`tugboat workflows kinds` lists them). Required.
    pub workflow: String,
    /// Workflow-specific parameters. Default: empty.
    #[serde(default)]
    pub params: toml::Table,
    /// The queues this route applies to. Default: every configured queue.
    #[serde(default)]
    pub queues: Option<Vec<String>>,
}

/// A pattern written inline as a TOML table, or as a JSON string (to paste an EventBridge rule).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PatternSource {
    Json(String),
    Table(toml::Table),
}

impl PatternSource {
    /// The pattern as JSON; a JSON string that does not parse is an error message.
    pub fn to_json(&self) -> Result<serde_json::Value, String> {
        match self {
            PatternSource::Json(text) => {
                serde_json::from_str(text).map_err(|e| format!("pattern is not valid JSON: {e}"))
            }
            PatternSource::Table(table) => serde_json::to_value(table)
                .map_err(|e| format!("pattern cannot be expressed as JSON: {e}")),
        }
    }
}

/// How one ECS service is started by the `ecs_start` workflow.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceMapping {
    /// Cluster name or ARN. Required.
    pub cluster: String,
    /// Task definition `family[:revision]` or ARN. Required.
    pub task_definition: String,
    /// Target group ARN, or its name (resolved at start). Required.
    pub target_group: String,
    /// The container that receives traffic. Required.
    pub container_name: String,
    /// The port registered in the target group, 1 to 65535. Required.
    pub container_port: u16,
    /// Subnet ids for the task's ENI; at least one. Required.
    pub subnets: Vec<String>,
    /// Security group ids for the task's ENI. Default: none (the VPC's default group).
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Give the task a public IP. Default false.
    #[serde(default)]
    pub assign_public_ip: bool,
}

/// SNS topics (name or ARN) that workflows publish results to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Successful results. Default: none (not published).
    #[serde(default)]
    pub success_topic: Option<String>,
    /// Failures handed to a DLQ. Default: none.
    #[serde(default)]
    pub error_topic: Option<String>,
    /// Anomalies found by the cost workflow. Default: none.
    #[serde(default)]
    pub anomaly_topic: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    /// Directory of the sled journal. Default `tugboat-journal` (relative to the working dir).
    #[serde(default = "default_journal_path")]
    pub path: PathBuf,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            path: default_journal_path(),
        }
    }
}

fn default_journal_path() -> PathBuf {
    PathBuf::from("tugboat-journal")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long running steps get to reach a journaled point after SIGTERM, such as `"25s"`.
    /// Keep it below the ECS task's `stopTimeout` (30 s by default, 120 s at most).
    /// Default 25 s, at most 120 s.
    #[serde(default = "default_deadline", with = "humantime_serde")]
    pub deadline: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            deadline: default_deadline(),
        }
    }
}

fn default_deadline() -> Duration {
    Duration::from_secs(25)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin HTTP listener (`/healthz`, `/readyz`, `/workflows`).
    /// Default `127.0.0.1:9090`; loopback so that it is not exposed by accident.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
        }
    }
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}

/// Limits of the workflow engine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Instances of one workflow kind running at once in this process. Default 64, at least 1.
    #[serde(default = "default_workflow_concurrency")]
    pub workflow_concurrency: usize,
    /// Back-offs and sleeps up to this long wait in the process; longer ones release the
    /// message to SQS and resume when it comes back. Default "20s".
    #[serde(default = "default_in_process_wait", with = "humantime_serde")]
    pub max_in_process_wait: Duration,
    /// Panics of one instance before it is dead-lettered instead of restarted. Default 3,
    /// at least 1.
    #[serde(default = "default_max_panics")]
    pub max_panics: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workflow_concurrency: default_workflow_concurrency(),
            max_in_process_wait: default_in_process_wait(),
            max_panics: default_max_panics(),
        }
    }
}

fn default_workflow_concurrency() -> usize {
    64
}

fn default_in_process_wait() -> Duration {
    Duration::from_secs(20)
}

fn default_max_panics() -> u32 {
    3
}

/// What happens to an event that matches no route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnmatchedPolicy {
    /// Delete it and count it (the default).
    #[default]
    Acknowledge,
    /// Hand it to the queue's DLQ with the reason "no route matched".
    DeadLetter,
}

/// The validation of names that other parts of the config refer to (workflow kinds). Passed in
/// so that config does not depend on the workflow registry.
pub trait KnownWorkflows {
    fn is_known(&self, kind: &str) -> bool;
    fn names(&self) -> Vec<&'static str>;
}

impl Config {
    /// Reads, overrides from `env`, deserialises and validates the file at `path`.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
        workflows: &dyn KnownWorkflows,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            key: "(file)".into(),
            message: format!("cannot read: {e}"),
        })?;
        Self::from_toml_str(&text, path, env, workflows)
    }

    /// As [`Config::load`], from text already read; `path` only names the source in errors.
    pub fn from_toml_str(
        text: &str,
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
        workflows: &dyn KnownWorkflows,
    ) -> Result<Config, ConfigError> {
        let err = |key: String, message: String| ConfigError {
            file: path.to_owned(),
            key,
            message,
        };
        let mut value: toml::Value = toml::from_str(text).map_err(|e| {
            err(
                "(syntax)".into(),
                e.message().to_owned() + &span_hint(text, &e),
            )
        })?;
        let applied = env::apply_overrides(&mut value, env).map_err(|e| err(e.key, e.message))?;
        let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            // toml appends "in `table`" on a second line; the key path already says where.
            let inner = e.inner().to_string();
            let mut message = inner.lines().next().unwrap_or_default().to_owned();
            if let Some(var) = applied.iter().find(|(_, p)| key.starts_with(p.as_str())) {
                message.push_str(&format!(" (set by environment variable {})", var.0));
            }
            err(key, message)
        })?;
        config.validate(workflows).map_err(|(k, m)| err(k, m))?;
        Ok(config)
    }

    /// Cross-field checks that the types alone cannot express.
    fn validate(&self, workflows: &dyn KnownWorkflows) -> Result<(), (String, String)> {
        if self.aws.region.trim().is_empty() {
            return Err(("aws.region".into(), "must not be empty".into()));
        }
        if let Some(url) = &self.aws.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err((
                "aws.endpoint_url".into(),
                format!("must start with http:// or https://, got {url:?}"),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, q) in self.queues.iter().enumerate() {
            let key = |field: &str| format!("queues[{i}].{field}");
            if q.name.trim().is_empty() {
                return Err((key("name"), "must not be empty".into()));
            }
            if !seen.insert(q.name.as_str()) {
                return Err((
                    key("name"),
                    format!("queue {:?} is configured twice", q.name),
                ));
            }
            if !(1..=1000).contains(&q.concurrency) {
                return Err((
                    key("concurrency"),
                    format!("must be 1 to 1000, got {}", q.concurrency),
                ));
            }
            let vt = q.visibility_timeout;
            if vt < Duration::from_secs(1) || vt > Duration::from_secs(12 * 3600) {
                return Err((
                    key("visibility_timeout"),
                    format!(
                        "must be 1s to 12h (SQS's limits), got {}",
                        humantime::format_duration(vt)
                    ),
                ));
            }
        }
        let mut route_names = std::collections::BTreeSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            let key = |field: &str| format!("routes[{i}].{field}");
            if r.name.trim().is_empty() {
                return Err((key("name"), "must not be empty".into()));
            }
            if !route_names.insert(r.name.as_str()) {
                return Err((
                    key("name"),
                    format!("route {:?} is configured twice", r.name),
                ));
            }
            if !workflows.is_known(&r.workflow) {
                return Err((
                    key("workflow"),
                    format!(
                        "route {:?} names unknown workflow {:?}; known workflows: {}",
                        r.name,
                        r.workflow,
                        workflows.names().join(", ")
                    ),
                ));
            }
            let pattern = r
                .pattern
                .to_json()
                .map_err(|m| (key("pattern"), format!("route {:?}: {m}", r.name)))?;
            crate::routing::Pattern::compile(&pattern)
                .map_err(|e| (key("pattern"), format!("route {:?}: {e}", r.name)))?;
            for q in r.queues.iter().flatten() {
                if !seen.contains(q.as_str()) {
                    return Err((
                        key("queues"),
                        format!("route {:?} names unknown queue {q:?}", r.name),
                    ));
                }
            }
        }
        for (name, s) in &self.services {
            let key = |field: &str| format!("services.{name}.{field}");
            for (field, v) in [
                ("cluster", &s.cluster),
                ("task_definition", &s.task_definition),
                ("target_group", &s.target_group),
                ("container_name", &s.container_name),
            ] {
                if v.trim().is_empty() {
                    return Err((key(field), "must not be empty".into()));
                }
            }
            if s.container_port == 0 {
                return Err((key("container_port"), "must be 1 to 65535, got 0".into()));
            }
            if s.subnets.is_empty() {
                return Err((key("subnets"), "needs at least one subnet id".into()));
            }
        }
        if self.engine.workflow_concurrency == 0 {
            return Err((
                "engine.workflow_concurrency".into(),
                "must be at least 1".into(),
            ));
        }
        if self.engine.max_panics == 0 {
            return Err(("engine.max_panics".into(), "must be at least 1".into()));
        }
        if self.shutdown.deadline > Duration::from_secs(120) {
            return Err((
                "shutdown.deadline".into(),
                "must be at most 120s (ECS stopTimeout's maximum)".into(),
            ));
        }
        Ok(())
    }

    /// The configured queue called `name`, or an error listing the configured ones.
    pub fn queue(&self, name: &str) -> Result<&QueueConfig, String> {
        self.queues.iter().find(|q| q.name == name).ok_or_else(|| {
            let known: Vec<_> = self.queues.iter().map(|q| q.name.as_str()).collect();
            format!(
                "no queue named {name:?} in the config; configured queues: {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        })
    }
}

/// " at line L, column C" for a TOML syntax error, so that the reader can find it.
fn span_hint(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |p| p + 1) + 1;
            format!(" (at line {line}, column {column})")
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests;
