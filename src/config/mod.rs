//! The typed configuration tree: one TOML file, environment overrides, validated once at start.
//!
//! Every field is documented here with its unit and default; `config/example.toml` shows them all.
//! Loading goes file → `toml::Value` → environment overrides (`TUGBOAT__SECTION__KEY=value`) →
//! the sections workflows own are set aside and checked by their owners (`[services]` of the
//! ECS workflows, typed in their folder) → the rest into the typed tree (unknown keys and wrong
//! types are errors that name the key path and the file; route patterns are compiled here,
//! once) → cross-field validation (a route naming an unknown workflow, a duplicate queue, …).
//!
//! Config knows workflows only through the [`Catalog`] passed in, so it depends on none of
//! them.

mod env;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::routing::{Pattern, Route};

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
    /// Schedules: a cron or rate expression whose every tick sends an event to a queue.
    #[serde(default)]
    pub schedules: Vec<crate::schedule::ScheduleConfig>,
    /// The HTTP ingress (EventBridge `PutEvents` and `POST /events`). Default: none.
    #[serde(default)]
    pub ingress: Option<crate::ingress::IngressConfig>,
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
    /// Where traces go (OTLP/HTTP) when the `OTEL_*` environment does not say. Default: none.
    #[serde(default)]
    pub telemetry: Option<crate::telemetry::TelemetrySettings>,
    /// What to do with an event that matches no route.
    #[serde(default)]
    pub unmatched: UnmatchedPolicy,
    /// Who is believed: the key that signs tugboat's control attributes and the agent's
    /// notices, and how old a signature may be (docs/security.md).
    #[serde(default)]
    pub security: SecurityConfig,
    /// Values `http_deliver` bodies name as `"{secret:NAME}"`; set them from the environment
    /// (`TUGBOAT__SECRETS__NAME`). Never journaled, logged or shown. Default: none.
    #[serde(default)]
    pub secrets: BTreeMap<String, secrecy::SecretString>,
    /// The top-level sections that workflows own (such as `[services]`), as read (environment
    /// overrides applied) and already checked by their owner at load; the owner parses its
    /// own with [`Config::section`].
    #[serde(skip)]
    pub sections: BTreeMap<String, toml::Value>,
    /// The file the configuration was read from (`None` for `$TUGBOAT_CONFIG_TOML`): files it
    /// names by relative paths are read beside it.
    #[serde(skip)]
    pub source: Option<PathBuf>,
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
    /// How long one attempt of an AWS call may take before the SDK abandons it and tries again
    /// (its standard retry: three attempts). A call to an endpoint that accepts the connection
    /// and never answers would otherwise hold its step, or a queue's intake, forever. It must
    /// outlast every queue's `receive_wait` by 5 s (a long poll is one attempt). Default `"30s"`.
    #[serde(default = "default_attempt_timeout", with = "humantime_serde")]
    pub attempt_timeout: Duration,
    /// How long one AWS call may take, its retries included. Past it the call fails as a
    /// retryable `Timeout`: the step's own retry policy (or the intake's next receive) takes
    /// over. At least `attempt_timeout`. Default `"90s"`.
    #[serde(default = "default_call_timeout", with = "humantime_serde")]
    pub call_timeout: Duration,
}

fn default_attempt_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_call_timeout() -> Duration {
    Duration::from_secs(90)
}

/// How much longer than a long poll's wait one attempt of an AWS call must be allowed (the
/// answer's way back): a long poll is one attempt of one call.
pub const LONG_POLL_MARGIN: Duration = Duration::from_secs(5);

impl AwsSettings {
    /// The timeouts' own bounds, as `(key, message)` with keys under `section` (`aws`, or the
    /// agent's `api`).
    pub fn check_timeouts(&self, section: &str) -> Result<(), BadKey> {
        if self.attempt_timeout < Duration::from_secs(1) {
            return Err(BadKey::at(
                format!("{section}.attempt_timeout"),
                format!(
                    "must be at least 1s, got {}",
                    humantime::format_duration(self.attempt_timeout)
                ),
            ));
        }
        if self.call_timeout < self.attempt_timeout {
            return Err(BadKey::at(
                format!("{section}.call_timeout"),
                format!(
                    "must be at least attempt_timeout ({}), got {}",
                    humantime::format_duration(self.attempt_timeout),
                    humantime::format_duration(self.call_timeout)
                ),
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for AwsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsSettings")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("call_timeout", &self.call_timeout)
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
    /// How long each receive waits for messages (SQS long polling), 0 s to 20 s. A shutdown
    /// lets the receive in flight finish and releases what it returns, because SQS still
    /// delivers to an abandoned long poll (the messages would stay invisible for the
    /// visibility timeout and count a receive): a shutdown may take this long. Shorter means
    /// faster shutdowns and more (cheap) receive calls. Default `"20s"`.
    #[serde(default = "default_receive_wait", with = "humantime_serde")]
    pub receive_wait: Duration,
    /// The event sources this queue may carry, such as `["tugboat.agent"]` for the queue the
    /// agents send to: an event of another source is dead-lettered, naming it, so that
    /// whoever may send to this queue cannot forge `aws.ec2` or `aws.ecs` events. Default:
    /// any source.
    #[serde(default)]
    pub sources: Option<Vec<String>>,
    /// Believe a `tugboat.agent` notice about instance X only when SQS names X's role session
    /// as its sender (`SenderId` `AROA…:X`: the credentials of an EC2 instance profile name the
    /// instance as the session), so that an instance holding the signing key still cannot
    /// speak for another. Default false.
    #[serde(default)]
    pub agent_sender_is_instance: bool,
}

/// `[security]`: the signing key and the freshness windows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// The shared secret (at least 32 bytes) that signs `tugboat workflows retry`'s and
    /// `tugboat dlq redrive`'s control attributes and that agents sign their notices with.
    /// Set it through `TUGBOAT__SECURITY__SIGNING_KEY` (an ECS task definition's `secrets`
    /// take it from SSM Parameter Store or Secrets Manager); it is never logged. Without it,
    /// retries, redrives and agent notices are refused, saying so. Default: none.
    #[serde(default)]
    pub signing_key: Option<crate::signing::SigningKey>,
    /// How old a signed control attribute may be. Default 14 days (SQS's longest retention:
    /// the signature binds the marker to the message's body and the run it brings back, so
    /// a replay cannot bring back a later run).
    #[serde(default = "default_control_max_age", with = "humantime_serde")]
    pub control_max_age: Duration,
    /// How old a signed agent notice may be when it is read. Default 5 minutes (a spot
    /// warning gives two).
    #[serde(default = "default_notice_max_age", with = "humantime_serde")]
    pub notice_max_age: Duration,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            signing_key: None,
            control_max_age: default_control_max_age(),
            notice_max_age: default_notice_max_age(),
        }
    }
}

fn default_control_max_age() -> Duration {
    Duration::from_secs(14 * 24 * 3600)
}

fn default_notice_max_age() -> Duration {
    Duration::from_secs(300)
}

fn default_receive_wait() -> Duration {
    Duration::from_secs(20)
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
    /// An EventBridge event pattern, as a TOML table or a JSON string; compiled while the
    /// config loads. Required.
    pub pattern: RoutePattern,
    /// The workflow to start (`tugboat workflows kinds` lists them). Required.
    pub workflow: String,
    /// Workflow-specific parameters. Default: empty.
    #[serde(default)]
    pub params: toml::Table,
    /// The queues this route applies to. Default: every configured queue.
    #[serde(default)]
    pub queues: Option<Vec<String>>,
}

impl RouteConfig {
    /// The compiled route.
    pub fn route(&self) -> Result<Route, String> {
        let params = serde_json::to_value(&self.params)
            .map_err(|e| format!("route {:?}: params: {e}", self.name))?;
        let mut route = Route::new(&self.name, self.pattern.compiled.clone(), &self.workflow);
        route.params = params;
        route.queues = self.queues.clone();
        Ok(route)
    }
}

/// A pattern written inline as a TOML table, or as a JSON string (to paste an EventBridge rule).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PatternSource {
    Json(String),
    Table(toml::Table),
}

/// A route's pattern: as written, and compiled (once, while the config loads, so that a
/// pattern that does not compile is a config error naming its key).
#[derive(Debug, Clone)]
pub struct RoutePattern {
    json: serde_json::Value,
    compiled: Pattern,
}

impl RoutePattern {
    /// The pattern as JSON.
    pub fn json(&self) -> &serde_json::Value {
        &self.json
    }

    pub fn compiled(&self) -> &Pattern {
        &self.compiled
    }
}

impl<'de> Deserialize<'de> for RoutePattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let json = PatternSource::deserialize(d)?
            .to_json()
            .map_err(D::Error::custom)?;
        let compiled = Pattern::compile(&json).map_err(D::Error::custom)?;
        Ok(RoutePattern { json, compiled })
    }
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
    /// `sled` (embedded, on the task's disk: one consumer per queue) or `dynamodb` (shared:
    /// several processes on one queue, leases and fencing). Default `sled`.
    #[serde(default)]
    pub kind: JournalKind,
    /// Directory of the sled journal. Default `tugboat-journal` (relative to the working dir).
    #[serde(default = "default_journal_path")]
    pub path: PathBuf,
    /// The DynamoDB table of the shared journal (`migrations/0004_journal.toml`). Default
    /// `tugboat-journal`.
    #[serde(default = "default_journal_table")]
    pub table: String,
    /// How long a process owns an instance without renewing (renewed every third of it while
    /// it runs); another process takes over an instance only after this. Default 30 s.
    #[serde(default = "default_lease", with = "humantime_serde")]
    pub lease: std::time::Duration,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            kind: JournalKind::default(),
            path: default_journal_path(),
            table: default_journal_table(),
            lease: default_lease(),
        }
    }
}

/// What is wrong with one key of the configuration (the file is added where it is loaded): the key path (`services.auth.subnets`,
/// `routes[2].params`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct BadKey {
    pub key: String,
    pub message: String,
}

impl BadKey {
    pub fn at(key: String, message: String) -> BadKey {
        BadKey { key, message }
    }
}

/// Where the journal is kept (`journal.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum JournalKind {
    /// Embedded, on the task's disk: one consumer per queue.
    #[default]
    Sled,
    /// A DynamoDB table shared by several processes on one queue (leases, fencing).
    Dynamodb,
}

impl TryFrom<String> for JournalKind {
    type Error = String;

    fn try_from(name: String) -> Result<JournalKind, String> {
        match name.as_str() {
            "sled" => Ok(JournalKind::Sled),
            "dynamodb" => Ok(JournalKind::Dynamodb),
            _ => Err(format!("must be \"sled\" or \"dynamodb\", got {name:?}")),
        }
    }
}

fn default_journal_table() -> String {
    "tugboat-journal".into()
}

fn default_lease() -> std::time::Duration {
    std::time::Duration::from_secs(30)
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
    /// Whether the console and the API may change things (cancel, retry, pause, resume,
    /// redrive). Default false: the console only shows.
    #[serde(default)]
    pub allow_actions: bool,
    /// Host names (with port, as a browser sends them in `Host`) under which the console
    /// is reached through a proxy, besides the listen address, `localhost` and `127.0.0.1`.
    /// An action whose `Host` is none of them is refused (a DNS-rebinding page cannot act).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Set when the listener is reached only through a proxy that authenticates every user
    /// (an ALB with OIDC, an SSO proxy). Only then may a non-loopback `listen` take
    /// `allow_actions = true`, and only then is the action token handed to clients that are not
    /// on loopback (the proxy is their peer). Default false.
    #[serde(default)]
    pub proxy_authenticates: bool,
    /// A link to a trace viewer, with `{trace_id}` where the id goes
    /// (`"https://jaeger.example/trace/{trace_id}"`); without it the console shows the id.
    #[serde(default)]
    pub trace_url: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
            allow_actions: false,
            hosts: Vec::new(),
            proxy_authenticates: false,
            trace_url: None,
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
    /// How long the message of a paused route's event is put back for before it is looked
    /// at again; a resume brings it back at once. Default "60s", 1s to 12h.
    #[serde(default = "default_pause_recheck", with = "humantime_serde")]
    pub pause_recheck: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workflow_concurrency: default_workflow_concurrency(),
            max_in_process_wait: default_in_process_wait(),
            max_panics: default_max_panics(),
            pause_recheck: default_pause_recheck(),
        }
    }
}

fn default_pause_recheck() -> Duration {
    Duration::from_secs(60)
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

/// What the configuration needs to know of the workflows: their names (routes refer to them)
/// and the top-level sections they own. Passed in, so that config depends on no workflow.
pub trait Catalog {
    fn is_known(&self, kind: &str) -> bool;
    fn names(&self) -> Vec<&'static str>;
    /// Checks the top-level section `name` if a workflow owns it (`None` when none does):
    /// the key path and what is wrong.
    fn check_section(&self, name: &str, value: &toml::Value) -> Option<Result<(), BadKey>>;
    /// Checks a route's params for workflow `kind` while the configuration loads (a topic
    /// template that does not parse, a broker that is not configured), given the sections
    /// workflows own. `Err` says what is wrong, under `routes[i].params`.
    fn check_params(
        &self,
        kind: &str,
        params: &serde_json::Value,
        sections: &BTreeMap<String, toml::Value>,
    ) -> Result<(), String>;
}

/// Parses the top-level section `name` as its owner's type `T`; errors name the key path
/// inside the file (`services.auth.subnets`).
pub fn parse_section<T: DeserializeOwned>(name: &str, value: &toml::Value) -> Result<T, BadKey> {
    serde_path_to_error::deserialize(value.clone()).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." || path.is_empty() {
            name.to_owned()
        } else {
            format!("{name}.{path}")
        };
        BadKey::at(key, first_line(&e.inner().to_string()))
    })
}

/// toml appends "in `table`" on a second line; the key path already says where.
fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or_default().to_owned()
}

impl Config {
    /// Reads, overrides from `env`, deserialises and validates the file at `path` — or, when
    /// `env` has a non-empty `TUGBOAT_CONFIG_TOML`, that text instead of the file (how a
    /// container gets its configuration from a secret or parameter store without a file).
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
        workflows: &dyn Catalog,
    ) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        if let Some((_, text)) = env
            .iter()
            .find(|(k, v)| k == "TUGBOAT_CONFIG_TOML" && !v.trim().is_empty())
        {
            let text = text.clone();
            return Self::from_toml_str(&text, Path::new("$TUGBOAT_CONFIG_TOML"), env, workflows);
        }
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            key: "(file)".into(),
            message: format!("cannot read: {e}"),
        })?;
        let mut config = Self::from_toml_str(&text, path, env, workflows)?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// As [`Config::load`], from text already read; `path` only names the source in errors.
    pub fn from_toml_str(
        text: &str,
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
        workflows: &dyn Catalog,
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
        let blame = |key: String, mut message: String| {
            if let Some(var) = applied.iter().find(|(_, p)| key.starts_with(p.as_str())) {
                message.push_str(&format!(" (set by environment variable {})", var.0));
            }
            err(key, message)
        };
        // The sections workflows own are theirs to check; the rest is the typed tree.
        let mut sections = BTreeMap::new();
        if let toml::Value::Table(top) = &mut value {
            let owned: Vec<String> = top
                .iter()
                .filter(|(k, v)| workflows.check_section(k, v).is_some())
                .map(|(k, _)| k.clone())
                .collect();
            for k in owned {
                if let Some(v) = top.remove(&k) {
                    sections.insert(k, v);
                }
            }
        }
        let mut config: Config = serde_path_to_error::deserialize(value)
            .map_err(|e| blame(e.path().to_string(), first_line(&e.inner().to_string())))?;
        for (name, v) in &sections {
            if let Some(Err(BadKey { key, message })) = workflows.check_section(name, v) {
                return Err(blame(key, message));
            }
        }
        config.sections = sections;
        config
            .validate(workflows)
            .map_err(|b| err(b.key, b.message))?;
        Ok(config)
    }

    /// Cross-field checks that the types alone cannot express.
    fn validate(&self, workflows: &dyn Catalog) -> Result<(), BadKey> {
        if self.journal.lease < std::time::Duration::from_secs(3) {
            return Err(BadKey::at(
                "journal.lease".into(),
                "must be at least 3s (it is renewed every third of it)".into(),
            ));
        }
        if self.aws.region.trim().is_empty() {
            return Err(BadKey::at("aws.region".into(), "must not be empty".into()));
        }
        if let Some(url) = &self.aws.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(BadKey::at(
                "aws.endpoint_url".into(),
                format!("must start with http:// or https://, got {url:?}"),
            ));
        }
        self.aws.check_timeouts("aws")?;
        let mut seen = std::collections::BTreeSet::new();
        for (i, q) in self.queues.iter().enumerate() {
            let key = |field: &str| format!("queues[{i}].{field}");
            if q.name.trim().is_empty() {
                return Err(BadKey::at(key("name"), "must not be empty".into()));
            }
            if !seen.insert(q.name.as_str()) {
                return Err(BadKey::at(
                    key("name"),
                    format!("queue {:?} is configured twice", q.name),
                ));
            }
            if !(1..=1000).contains(&q.concurrency) {
                return Err(BadKey::at(
                    key("concurrency"),
                    format!("must be 1 to 1000, got {}", q.concurrency),
                ));
            }
            if q.receive_wait > Duration::from_secs(20) {
                return Err(BadKey::at(
                    key("receive_wait"),
                    format!(
                        "must be 0s to 20s (SQS's longest poll), got {}",
                        humantime::format_duration(q.receive_wait)
                    ),
                ));
            }
            if q.receive_wait + LONG_POLL_MARGIN > self.aws.attempt_timeout {
                return Err(BadKey::at(
                    "aws.attempt_timeout".into(),
                    format!(
                        "must be at least {} longer than queues[{i}].receive_wait ({}), got {}",
                        humantime::format_duration(LONG_POLL_MARGIN),
                        humantime::format_duration(q.receive_wait),
                        humantime::format_duration(self.aws.attempt_timeout)
                    ),
                ));
            }
            let vt = q.visibility_timeout;
            if vt < Duration::from_secs(1) || vt > Duration::from_secs(12 * 3600) {
                return Err(BadKey::at(
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
                return Err(BadKey::at(key("name"), "must not be empty".into()));
            }
            if !route_names.insert(r.name.as_str()) {
                return Err(BadKey::at(
                    key("name"),
                    format!("route {:?} is configured twice", r.name),
                ));
            }
            if !workflows.is_known(&r.workflow) {
                return Err(BadKey::at(
                    key("workflow"),
                    format!(
                        "route {:?} names unknown workflow {:?}; known workflows: {}",
                        r.name,
                        r.workflow,
                        workflows.names().join(", ")
                    ),
                ));
            }
            let params = serde_json::to_value(&r.params)
                .map_err(|e| BadKey::at(key("params"), e.to_string()))?;
            workflows
                .check_params(&r.workflow, &params, &self.sections)
                .map_err(|e| BadKey::at(key("params"), format!("route {:?}: {e}", r.name)))?;
            for q in r.queues.iter().flatten() {
                if !seen.contains(q.as_str()) {
                    return Err(BadKey::at(
                        key("queues"),
                        format!("route {:?} names unknown queue {q:?}", r.name),
                    ));
                }
            }
        }
        self.compiled_schedules()?;
        if let Some(ingress) = &self.ingress {
            let queues: Vec<&str> = self.queues.iter().map(|q| q.name.as_str()).collect();
            ingress
                .check(&queues)
                .map_err(|(field, e)| BadKey::at(format!("ingress.{field}"), e))?;
        }
        if self.engine.workflow_concurrency == 0 {
            return Err(BadKey::at(
                "engine.workflow_concurrency".into(),
                "must be at least 1".into(),
            ));
        }
        if self.engine.max_panics == 0 {
            return Err(BadKey::at(
                "engine.max_panics".into(),
                "must be at least 1".into(),
            ));
        }
        if self.engine.pause_recheck < Duration::from_secs(1)
            || self.engine.pause_recheck > Duration::from_secs(12 * 3600)
        {
            return Err(BadKey::at(
                "engine.pause_recheck".into(),
                "must be between 1s and 12h (SQS's longest visibility timeout)".into(),
            ));
        }
        if let Some(url) = &self.admin.trace_url
            && !url.contains("{trace_id}")
        {
            return Err(BadKey::at(
                "admin.trace_url".into(),
                format!("{url:?} has no {{trace_id}} where the trace id goes"),
            ));
        }
        if let Some(h) = self
            .admin
            .hosts
            .iter()
            .find(|h| h.is_empty() || h.contains('/') || h.chars().any(char::is_whitespace))
        {
            return Err(BadKey::at(
                "admin.hosts".into(),
                format!(
                    "{h:?} is not a host name (as in `console.example.com` or `console.example.com:8443`)"
                ),
            ));
        }
        for (key, window) in [
            ("security.control_max_age", self.security.control_max_age),
            ("security.notice_max_age", self.security.notice_max_age),
        ] {
            if window < Duration::from_secs(1) || window > default_control_max_age() {
                return Err(BadKey::at(key.into(), "must be between 1s and 14d".into()));
            }
        }
        if let Some((i, _)) = self.queues.iter().enumerate().find(|(_, q)| {
            q.sources
                .as_ref()
                .is_some_and(|s| s.is_empty() || s.iter().any(String::is_empty))
        }) {
            return Err(BadKey::at(
                format!("queues[{i}].sources"),
                "must name at least one event source, none empty (leave it out to take any)".into(),
            ));
        }
        if self.admin.allow_actions
            && !self.admin.listen.ip().is_loopback()
            && !self.admin.proxy_authenticates
        {
            return Err(BadKey::at(
                "admin.allow_actions".into(),
                format!(
                    "refused with admin.listen = {} (not loopback): anyone who reaches that port could cancel, retry and redrive; \
                     listen on loopback, or put a proxy that authenticates every user in front and set admin.proxy_authenticates = true",
                    self.admin.listen
                ),
            ));
        }
        if self.shutdown.deadline > Duration::from_secs(120) {
            return Err(BadKey::at(
                "shutdown.deadline".into(),
                "must be at most 120s (ECS stopTimeout's maximum)".into(),
            ));
        }
        Ok(())
    }

    /// The section `name` that a workflow owns, parsed as its type; `T::default()` when the
    /// file has none. Errors name the key path.
    pub fn section<T: DeserializeOwned + Default>(&self, name: &str) -> Result<T, BadKey> {
        match self.sections.get(name) {
            Some(v) => parse_section(name, v),
            None => Ok(T::default()),
        }
    }

    /// The compiled routes, in configuration order.
    pub fn compiled_routes(&self) -> Result<Vec<Route>, String> {
        self.routes.iter().map(RouteConfig::route).collect()
    }

    /// The schedules, compiled; `Err` names the key of the first wrong one
    /// (`schedules[0].cron`).
    pub fn compiled_schedules(&self) -> Result<Vec<crate::schedule::Schedule>, BadKey> {
        let queues: Vec<&str> = self.queues.iter().map(|q| q.name.as_str()).collect();
        let mut names = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for (i, c) in self.schedules.iter().enumerate() {
            let s = crate::schedule::Schedule::compile(c, &queues)
                .map_err(|(field, e)| BadKey::at(format!("schedules[{i}].{field}"), e))?;
            if !names.insert(s.name.clone()) {
                return Err(BadKey::at(
                    format!("schedules[{i}].name"),
                    format!("schedule {:?} is configured twice", s.name),
                ));
            }
            out.push(s);
        }
        Ok(out)
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
