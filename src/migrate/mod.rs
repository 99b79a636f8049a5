//! Migrations: the numbered, declarative files in `migrations/` that say which queues, tables,
//! topics and subscriptions tugboat needs. This module reads and checks them and merges them
//! into one [`Plan`]; `src/aws/migrate.rs` converges an account on the plan.
//!
//! A migration is a TOML file named `NNNN_description.toml`. Files are applied in number order;
//! a resource declared again in a later file replaces the earlier declaration whole, so that a
//! change (say, a longer visibility timeout) is a new numbered file, and history stays readable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A migration that cannot be used: which file and why.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct MigrationError {
    pub file: PathBuf,
    pub message: String,
}

/// One migration file's contents.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Migration {
    /// What this migration is for, in a sentence. Shown by `tugboat migrate`.
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub queues: Vec<QueueSpec>,
    #[serde(default)]
    pub tables: Vec<TableSpec>,
    #[serde(default)]
    pub topics: Vec<TopicSpec>,
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionSpec>,
}

/// An SQS queue and, optionally, its dead-letter queue.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSpec {
    pub name: String,
    /// Default 30 s (SQS's default).
    #[serde(default = "default_visibility", with = "humantime_serde")]
    pub visibility_timeout: Duration,
    /// Default 4 days (SQS's default); 60 s to 14 days.
    #[serde(default = "default_retention", with = "humantime_serde")]
    pub message_retention: Duration,
    /// A FIFO queue (its name must end in `.fifo`). Default false.
    #[serde(default)]
    pub fifo: bool,
    #[serde(default)]
    pub dead_letter: Option<DeadLetterSpec>,
}

/// The DLQ of a queue; created with the queue, and named in its redrive policy.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterSpec {
    pub name: String,
    /// Receives before SQS moves a message to the DLQ by itself: the backstop for a message
    /// that crashes the process every time. 1 to 1000. Default 3.
    #[serde(default = "default_max_receive")]
    pub max_receive_count: u32,
    /// How long dead letters are kept. Default 14 days (the longest SQS allows).
    #[serde(default = "default_dlq_retention", with = "humantime_serde")]
    pub retention: Duration,
}

fn default_visibility() -> Duration {
    Duration::from_secs(30)
}
fn default_retention() -> Duration {
    Duration::from_secs(4 * 86_400)
}
fn default_max_receive() -> u32 {
    3
}
fn default_dlq_retention() -> Duration {
    Duration::from_secs(14 * 86_400)
}

/// A DynamoDB table, billed per request.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    pub name: String,
    pub partition_key: KeySpec,
    #[serde(default)]
    pub sort_key: Option<KeySpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    pub name: String,
    /// `S` (string), `N` (number) or `B` (binary).
    #[serde(rename = "type")]
    pub kind: KeyType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum KeyType {
    S,
    N,
    B,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::S => "S",
            KeyType::N => "N",
            KeyType::B => "B",
        }
    }
}

/// An SNS topic.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    pub name: String,
}

/// A subscription of an endpoint to a topic declared in the migrations.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSpec {
    pub topic: String,
    pub protocol: Protocol,
    /// For `sqs`: a queue declared in the migrations (by name) or a queue ARN. For `email`: an
    /// address; for `https`: a URL.
    pub endpoint: String,
    /// Deliver the message body alone, without the SNS envelope (`sqs` and `https` only).
    /// Default false.
    #[serde(default)]
    pub raw_message_delivery: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Sqs,
    Email,
    Https,
    Http,
    Lambda,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Sqs => "sqs",
            Protocol::Email => "email",
            Protocol::Https => "https",
            Protocol::Http => "http",
            Protocol::Lambda => "lambda",
        }
    }
}

/// Everything the migrations declare, merged in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The files read, in order, with their descriptions.
    pub files: Vec<(String, String)>,
    pub queues: BTreeMap<String, QueueSpec>,
    pub tables: BTreeMap<String, TableSpec>,
    pub topics: BTreeMap<String, TopicSpec>,
    /// Keyed by (topic, protocol, endpoint).
    pub subscriptions: BTreeMap<(String, String, String), SubscriptionSpec>,
}

impl Plan {
    /// Reads every migration in `dir`, checks it, and merges them in number order.
    pub fn load(dir: &Path) -> Result<Plan, MigrationError> {
        let err = |file: &Path, message: String| MigrationError {
            file: file.to_owned(),
            message,
        };
        let entries = std::fs::read_dir(dir)
            .map_err(|e| err(dir, format!("cannot read the migrations folder: {e}")))?;
        let mut files = BTreeMap::new();
        for entry in entries {
            let path = entry.map_err(|e| err(dir, e.to_string()))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_owned();
            if name.starts_with('.') || name == "README.md" {
                continue;
            }
            let number = parse_file_name(&name).map_err(|m| err(&path, m))?;
            if let Some(other) = files.insert(number, path.clone()) {
                return Err(err(
                    &path,
                    format!(
                        "migration number {number:04} is also used by {}",
                        other.display()
                    ),
                ));
            }
        }
        if files.is_empty() {
            return Err(err(
                dir,
                "no migrations found (expected NNNN_name.toml files)".into(),
            ));
        }
        let mut plan = Plan::default();
        for path in files.values() {
            let text = std::fs::read_to_string(path).map_err(|e| err(path, e.to_string()))?;
            let migration: Migration =
                toml::from_str(&text).map_err(|e| err(path, e.to_string()))?;
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            plan.merge(name, migration).map_err(|m| err(path, m))?;
        }
        plan.check().map_err(|m| err(dir, m))?;
        Ok(plan)
    }

    /// Parses one migration's text (for tests and for reading from elsewhere).
    pub fn merge_text(&mut self, name: &str, text: &str) -> Result<(), String> {
        let migration: Migration = toml::from_str(text).map_err(|e| e.to_string())?;
        self.merge(name.to_owned(), migration)
    }

    fn merge(&mut self, file: String, m: Migration) -> Result<(), String> {
        for q in m.queues {
            check_queue(&q)?;
            self.queues.insert(q.name.clone(), q);
        }
        for t in m.tables {
            check_name("table", &t.name, 3, 255)?;
            self.tables.insert(t.name.clone(), t);
        }
        for t in m.topics {
            check_name("topic", &t.name, 1, 256)?;
            self.topics.insert(t.name.clone(), t);
        }
        for s in m.subscriptions {
            if s.raw_message_delivery
                && !matches!(s.protocol, Protocol::Sqs | Protocol::Https | Protocol::Http)
            {
                return Err(format!(
                    "subscription of {:?} to topic {:?}: raw_message_delivery needs protocol sqs or http(s)",
                    s.endpoint, s.topic
                ));
            }
            let key = (
                s.topic.clone(),
                s.protocol.as_str().to_owned(),
                s.endpoint.clone(),
            );
            self.subscriptions.insert(key, s);
        }
        self.files.push((file, m.description));
        Ok(())
    }

    /// References across files: a subscription's topic and (for sqs) queue must be declared.
    fn check(&self) -> Result<(), String> {
        for s in self.subscriptions.values() {
            if !self.topics.contains_key(&s.topic) {
                return Err(format!(
                    "a subscription names topic {:?}, which no migration declares",
                    s.topic
                ));
            }
            if s.protocol == Protocol::Sqs
                && !s.endpoint.starts_with("arn:")
                && self.queue_by_name(&s.endpoint).is_none()
            {
                return Err(format!(
                    "a subscription of topic {:?} names queue {:?}, which no migration declares",
                    s.topic, s.endpoint
                ));
            }
        }
        let dlqs: Vec<&str> = self
            .queues
            .values()
            .filter_map(|q| q.dead_letter.as_ref().map(|d| d.name.as_str()))
            .collect();
        for d in &dlqs {
            if self.queues.contains_key(*d) {
                return Err(format!(
                    "{d:?} is declared both as a queue and as a dead-letter queue"
                ));
            }
        }
        Ok(())
    }

    /// A declared queue or DLQ by its name.
    pub fn queue_by_name(&self, name: &str) -> Option<&str> {
        self.queues
            .values()
            .flat_map(|q| {
                std::iter::once(q.name.as_str())
                    .chain(q.dead_letter.as_ref().map(|d| d.name.as_str()))
            })
            .find(|n| *n == name)
    }

    /// How many resources the plan declares (queues count their DLQs).
    pub fn resource_count(&self) -> usize {
        self.queues.len()
            + self
                .queues
                .values()
                .filter(|q| q.dead_letter.is_some())
                .count()
            + self.tables.len()
            + self.topics.len()
            + self.subscriptions.len()
    }
}

/// `0001_work_queues.toml` → 1; anything else is refused with the expected form.
fn parse_file_name(name: &str) -> Result<u32, String> {
    let expected =
        "expected a migration named NNNN_description.toml (four digits, lower-case words)";
    let stem = name
        .strip_suffix(".toml")
        .ok_or_else(|| format!("unknown migration file {name:?}: {expected}"))?;
    let (digits, rest) = stem.split_at(stem.find('_').unwrap_or(stem.len()));
    let valid_rest = rest.len() > 1
        && rest[1..]
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if digits.len() != 4 || !digits.chars().all(|c| c.is_ascii_digit()) || !valid_rest {
        return Err(format!("unknown migration file {name:?}: {expected}"));
    }
    digits
        .parse()
        .map_err(|_| format!("unknown migration file {name:?}: {expected}"))
}

fn check_name(kind: &str, name: &str, min: usize, max: usize) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if name.len() < min || name.len() > max || !ok_chars {
        return Err(format!(
            "{kind} name {name:?} must be {min} to {max} characters of letters, digits, '-', '_' or '.'"
        ));
    }
    Ok(())
}

fn check_queue(q: &QueueSpec) -> Result<(), String> {
    check_name("queue", &q.name, 1, 80)?;
    if q.fifo != q.name.ends_with(".fifo") {
        return Err(format!(
            "queue {:?}: a FIFO queue's name must end in .fifo, and only a FIFO queue's may",
            q.name
        ));
    }
    if q.visibility_timeout > Duration::from_secs(12 * 3600) {
        return Err(format!(
            "queue {:?}: visibility_timeout must be at most 12h",
            q.name
        ));
    }
    let retention_ok = |d: Duration| (60..=14 * 86_400).contains(&d.as_secs());
    if !retention_ok(q.message_retention) {
        return Err(format!(
            "queue {:?}: message_retention must be 60s to 14days",
            q.name
        ));
    }
    if let Some(d) = &q.dead_letter {
        check_name("queue", &d.name, 1, 80)?;
        if d.name.ends_with(".fifo") != q.fifo {
            return Err(format!(
                "queue {:?}: its dead-letter queue {:?} must be FIFO exactly when the queue is",
                q.name, d.name
            ));
        }
        if !(1..=1000).contains(&d.max_receive_count) {
            return Err(format!(
                "queue {:?}: dead_letter.max_receive_count must be 1 to 1000",
                q.name
            ));
        }
        if !retention_ok(d.retention) {
            return Err(format!(
                "queue {:?}: dead_letter.retention must be 60s to 14days",
                q.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
