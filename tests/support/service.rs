//! A running `tugboat serve` and the queue helpers that service-level tests share.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;

use super::{clients, tugboat};

/// Creates a standard queue in the emulator and returns its URL.
pub async fn create_queue(name: &str) -> String {
    clients()
        .await
        .sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

/// The ARN of the queue at `url`.
pub async fn queue_arn(url: &str) -> String {
    clients()
        .await
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone()
}

pub async fn send(url: &str, body: &str) {
    send_with(url, body, &[]).await
}

/// Sends `body` with string message attributes.
pub async fn send_with(url: &str, body: &str, attributes: &[(&str, String)]) {
    let mut request = clients()
        .await
        .sqs
        .send_message()
        .queue_url(url)
        .message_body(body);
    for (name, value) in attributes {
        request = request.message_attributes(
            *name,
            aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .unwrap(),
        );
    }
    request.send().await.unwrap();
}

/// Sends `body`, a `tugboat.agent` notice, signed with the tests' key as `tugboat agent`
/// signs it (the service believes no unsigned one).
pub async fn send_agent_notice(url: &str, body: &str) {
    let key = tugboat::signing::SigningKey::parse(super::SIGNING_KEY).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let signature = tugboat::intake::trust::sign_notice(body, &key, now);
    send_with(
        url,
        body,
        &[(tugboat::intake::attributes::SIGNATURE, signature)],
    )
    .await
}

/// Visible plus in-flight messages.
pub async fn depth(url: &str) -> (u32, u32) {
    let a = clients()
        .await
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    let n = |k: QueueAttributeName| a.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0);
    (
        n(QueueAttributeName::ApproximateNumberOfMessages),
        n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

/// Every message in a queue (bodies), read with the SDK.
pub async fn drain(url: &str) -> Vec<(String, std::collections::HashMap<String, String>)> {
    let c = clients().await;
    let mut out = Vec::new();
    loop {
        let got = c
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .wait_time_seconds(0)
            .send()
            .await
            .unwrap();
        let messages = got.messages.unwrap_or_default();
        if messages.is_empty() {
            return out;
        }
        for m in messages {
            let attrs = m
                .message_attributes
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| v.string_value.map(|s| (k, s)))
                .collect();
            out.push((m.body.unwrap_or_default(), attrs));
        }
    }
}

/// A running `tugboat serve`.
pub struct Service {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    pub admin: Option<String>,
}

impl Service {
    pub fn start(config: &Path, failpoint: Option<&str>) -> Service {
        Service::start_with_env(config, failpoint, &[])
    }

    /// [`Service::start`] with extra environment variables (`OTEL_*`).
    pub fn start_with_env(config: &Path, failpoint: Option<&str>, env: &[(&str, &str)]) -> Service {
        let mut cmd = tugboat(config);
        cmd.envs(env.iter().copied());
        cmd.args(["--log-format", "json", "serve"])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .stdin(Stdio::null());
        cmd.env("RUST_LOG", "info,tugboat=debug");
        match failpoint {
            Some(f) => cmd.env("TUGBOAT_FAILPOINT", f),
            None => cmd.env_remove("TUGBOAT_FAILPOINT"),
        };
        let mut child = cmd.spawn().expect("start tugboat serve");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut s = Service {
            child,
            lines,
            admin: None,
        };
        let line = s.wait_for_line(
            |l| l.contains("tugboat serving") || l.starts_with("TUGBOAT_FAILPOINT"),
            Duration::from_secs(30),
        );
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            s.admin = v["admin"].as_str().map(str::to_owned);
        }
        s
    }

    /// Starts the service with failpoint `spec` (`NAME:N`) armed, waits until it stops there,
    /// and kills it with SIGKILL: a crash at exactly that boundary.
    pub fn killed_at(config: &Path, spec: &str) {
        let crashing = Service::start(config, Some(spec));
        crashing.wait_for_line(
            |l| l.starts_with("TUGBOAT_FAILPOINT"),
            Duration::from_secs(30),
        );
        crashing.kill9();
    }

    pub fn wait_for_line(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| pred(l)) {
                return l.clone();
            }
            assert!(
                start.elapsed() < timeout,
                "timed out; tugboat said:\n{}",
                self.lines.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every instance's journal record, newest first (the list, then each instance).
    pub fn workflows(&self) -> Vec<Value> {
        let admin = self.admin.as_ref().expect("the service is serving");
        let get = |path: &str| -> Value {
            let out = Command::new("curl")
                .args(["-fsS", &format!("http://{admin}{path}")])
                .output()
                .unwrap();
            serde_json::from_slice(&out.stdout).unwrap_or_default()
        };
        let list = get("/workflows?limit=1000");
        list["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["id"].as_str())
            .map(|id| {
                let encoded: String = id
                    .bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b':' => {
                            (b as char).to_string()
                        }
                        _ => format!("%{b:02X}"),
                    })
                    .collect();
                get(&format!("/workflows/{encoded}"))["record"].clone()
            })
            .filter(|r| !r.is_null())
            .collect()
    }

    /// The admin listener's `/metrics` text.
    pub fn metrics(&self) -> String {
        let admin = self.admin.as_ref().expect("the service is serving");
        let out = Command::new("curl")
            .args(["-fsS", &format!("http://{admin}/metrics")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line tugboat wrote on stderr so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn terminate(mut self) -> (i32, String) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50));
                return (
                    status.code().unwrap_or(-1),
                    self.lines.lock().unwrap().join("\n"),
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "tugboat did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(unused_imports)] // Not every test binary waits.
pub use super::wait::until;

pub fn succeeded(s: &Service) -> usize {
    s.workflows()
        .iter()
        .filter(|w| w["status"] == "succeeded")
        .count()
}

/// A daily-cost table as `migrations/0002_cost_tables.toml` declares it (`pk`, `sk`, both
/// strings; on demand), named `name`.
pub async fn create_cost_table(name: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let key = |n: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .unwrap()
    };
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    clients()
        .await
        .dynamodb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .send()
        .await
        .unwrap();
}

/// An SNS topic named `name` subscribed by the queue at `queue_url`; returns the topic's ARN.
/// With `raw`, the queue gets the message alone (attributes as SQS attributes); without, the
/// SNS envelope (`Message`, `MessageAttributes`, `TopicArn`).
pub async fn topic_into(name: &str, queue_url: &str, raw: bool) -> String {
    let c = clients().await;
    let arn = c
        .sns
        .create_topic()
        .name(name)
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let mut subscribe = c
        .sns
        .subscribe()
        .topic_arn(&arn)
        .protocol("sqs")
        .endpoint(queue_arn(queue_url).await);
    if raw {
        subscribe = subscribe.attributes("RawMessageDelivery", "true");
    }
    subscribe.send().await.unwrap();
    arn
}

/// A table for the shared journal (`migrations/0004_journal.toml`'s shape).
pub async fn create_journal_table(name: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    clients()
        .await
        .dynamodb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// Every item of DynamoDB table `table` (a consistent scan, all pages).
pub async fn scan_items(
    table: &str,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = super::clients()
            .await
            .dynamodb
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .unwrap();
        out.extend(page.items.unwrap_or_default());
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return out,
        }
    }
}
