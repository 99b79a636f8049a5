//! `tugboat agent`: runs on the instance, notices an interruption first, protects local state
//! through its handlers, then tells the central service. One loop: poll the metadata service
//! every `poll_interval`; a notice not seen before (the state file remembers, across
//! restarts) runs the handlers in priority order, equal priorities together, each within its
//! timeout and the deadline less the margin (a handler that cannot start in time is skipped);
//! the report is one JSON line on stdout.
//!
//! Sources so far: AWS (IMDSv2). Handlers so far: `command`, `http`, `redis`, `publish`. The
//! rest of the issue (Azure, GCP, local system sources, peers, postgres/mysql handlers) is not
//! built yet. [`simulate`] runs the handlers against a made-up notice.

pub mod config;
pub mod imds;
pub mod notice;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::journal::now_ms;
use config::{AgentConfig, HandlerConfig, HandlerKind};
use notice::Notice;

/// The ids of the notices already acted on, kept in a small JSON file (the last 1 000).
pub struct State {
    path: PathBuf,
    seen: Vec<String>,
}

impl State {
    pub fn open(path: &Path) -> Result<State, String> {
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).map_err(|e| format!("{}: {e}", folder.display()))?;
        }
        let seen = match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| serde_json::from_value(v["seen"].clone()).ok())
                .ok_or_else(|| format!("{}: not an agent state file", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Ok(State {
            path: path.to_owned(),
            seen,
        })
    }

    pub fn seen(&self, id: &str) -> bool {
        self.seen.iter().any(|s| s == id)
    }

    /// Remembers `id`, durably (written to a new file, then renamed over the old one).
    pub fn remember(&mut self, id: &str) -> Result<(), String> {
        self.seen.push(id.to_owned());
        if self.seen.len() > 1000 {
            self.seen.remove(0);
        }
        let text = json!({"seen": self.seen}).to_string();
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

/// Runs the handlers for `notice`; the report.
pub async fn run_handlers(config: &AgentConfig, notice: &Notice, extra: &Value) -> Value {
    let deadline = notice
        .deadline_ms
        .map(|d| d.saturating_sub(config.margin.as_millis() as u64));
    let mut priorities: Vec<u32> = config.handlers.iter().map(|h| h.priority).collect();
    priorities.sort_unstable();
    priorities.dedup();
    let mut outcomes = Vec::new();
    for p in priorities {
        let group = config.handlers.iter().filter(|h| h.priority == p);
        let results =
            futures::future::join_all(group.map(|h| run_one(config, h, notice, deadline, extra)))
                .await;
        outcomes.extend(results);
    }
    json!({
        "notice": notice,
        "deadline": deadline.map(notice::rfc3339),
        "handlers": outcomes,
        "left_ms": deadline.map(|d| d as i64 - now_ms() as i64),
    })
}

async fn run_one(
    config: &AgentConfig,
    h: &HandlerConfig,
    notice: &Notice,
    deadline: Option<u64>,
    extra: &Value,
) -> Value {
    let started = now_ms();
    let left = deadline.map(|d| d as i64 - started as i64);
    if let Some(left) = left
        && left <= 0
    {
        return json!({"name": h.name, "outcome": "skipped",
            "reason": format!("the deadline passed {} ms before it could start", -left)});
    }
    let bound = match left {
        Some(l) => h.timeout.min(Duration::from_millis(l as u64)),
        None => h.timeout,
    };
    let work = async {
        match &h.kind {
            HandlerKind::Command { command, env } => command_handler(command, env, notice).await,
            HandlerKind::Http {
                url,
                method,
                headers,
                body,
            } => http_handler(url, method, headers, body.as_ref(), notice).await,
            HandlerKind::Redis {
                address,
                password,
                mode,
            } => redis_handler(address, password.as_ref(), mode).await,
            HandlerKind::Publish { queue } => match &config.api {
                Some(api) => publish_handler(queue, api, notice, extra).await,
                None => Err("no [api] section".into()),
            },
        }
    };
    let result = match tokio::time::timeout(bound, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("cut off after {} ms", bound.as_millis())),
    };
    let took = now_ms().saturating_sub(started);
    match result {
        Ok(detail) => json!({"name": h.name, "outcome": "ok", "detail": detail, "took_ms": took}),
        Err(reason) => {
            json!({"name": h.name, "outcome": "failed", "reason": reason, "took_ms": took})
        }
    }
}

/// The program with the notice as JSON on stdin and in `TUGBOAT_NOTICE_*` variables; killed
/// when it runs out of time.
async fn command_handler(
    command: &[String],
    env: &std::collections::BTreeMap<String, String>,
    notice: &Notice,
) -> Result<Value, String> {
    let mut cmd = tokio::process::Command::new(&command[0]);
    cmd.args(&command[1..])
        .envs(env)
        .env("TUGBOAT_NOTICE_ID", &notice.id)
        .env("TUGBOAT_NOTICE_PROVIDER", &notice.provider)
        .env("TUGBOAT_NOTICE_KIND", &notice.kind)
        .env("TUGBOAT_NOTICE_INSTANCE", &notice.instance)
        .env(
            "TUGBOAT_NOTICE_DEADLINE",
            notice.deadline_ms.map(notice::rfc3339).unwrap_or_default(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| format!("{}: {e}", command[0]))?;
    if let Some(mut stdin) = child.stdin.take() {
        let body = serde_json::to_vec(notice).unwrap_or_default();
        // A program that does not read its input is fine.
        let _ = stdin.write_all(&body).await;
    }
    let out = child.wait_with_output().await.map_err(|e| e.to_string())?;
    let stderr: String = String::from_utf8_lossy(&out.stderr)
        .chars()
        .take(512)
        .collect();
    match out.status.code() {
        Some(0) => Ok(json!({"exit": 0})),
        code => Err(format!("exit {code:?}: {stderr}")),
    }
}

/// One request, retried on 429, 5xx and connection errors until it succeeds or the handler's
/// bound cuts it off.
async fn http_handler(
    url: &str,
    method: &str,
    headers: &std::collections::BTreeMap<String, String>,
    body: Option<&Value>,
    notice: &Notice,
) -> Result<Value, String> {
    let view = json!({
        "id": notice.id, "provider": notice.provider, "kind": notice.kind,
        "instance": notice.instance, "action": notice.action,
        "deadline": notice.deadline_ms.map(notice::rfc3339), "raw": notice.raw,
    });
    let body = match body {
        Some(b) => crate::workflows::template::BodyTemplate::parse(b, &Default::default())
            .and_then(|t| t.render(&view, &Default::default()))?,
        None => view,
    };
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let client = reqwest::Client::new();
    let mut pause = Duration::from_millis(100);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut request = client.request(method.clone(), url).json(&body);
        for (k, v) in headers {
            request = request.header(k, v);
        }
        let retry = match request.send().await {
            Ok(r) if r.status().is_success() => {
                return Ok(json!({"status": r.status().as_u16(), "attempts": attempts}));
            }
            Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                format!("HTTP {}", r.status().as_u16())
            }
            Ok(r) => return Err(format!("HTTP {}", r.status().as_u16())),
            Err(e) => e.to_string(),
        };
        tracing::debug!(handler_url = %url, error = %retry, "retrying");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Redis persists its data: `BGSAVE` and wait until `LASTSAVE` moves past what it was (or a
/// blocking `SAVE`). Spoken in RESP over TCP; the password is never logged.
async fn redis_handler(
    address: &str,
    password: Option<&secrecy::SecretString>,
    mode: &str,
) -> Result<Value, String> {
    use secrecy::ExposeSecret;
    use tokio::io::{AsyncBufReadExt, BufReader};
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| format!("redis {address}: {e}"))?;
    let mut conn = BufReader::new(stream);
    async fn call(
        conn: &mut BufReader<tokio::net::TcpStream>,
        args: &[&str],
    ) -> Result<String, String> {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        conn.get_mut()
            .write_all(out.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        conn.read_line(&mut line).await.map_err(|e| e.to_string())?;
        let line = line.trim_end().to_owned();
        match line.strip_prefix('-') {
            Some(error) => Err(error.to_owned()),
            None if line.is_empty() => Err("the connection closed".into()),
            None => Ok(line),
        }
    }
    if let Some(p) = password {
        call(&mut conn, &["AUTH", p.expose_secret()])
            .await
            .map_err(|e| format!("redis AUTH: {e}"))?;
    }
    let lastsave = |reply: String| -> Result<u64, String> {
        reply
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("redis LASTSAVE: unexpected reply {reply:?}"))
    };
    if mode == "save" {
        call(&mut conn, &["SAVE"])
            .await
            .map_err(|e| format!("redis SAVE: {e}"))?;
        let at = lastsave(call(&mut conn, &["LASTSAVE"]).await?)?;
        return Ok(json!({"saved": "SAVE", "lastsave": at}));
    }
    let before = lastsave(call(&mut conn, &["LASTSAVE"]).await?)?;
    // LASTSAVE counts seconds: a save in the same second as the last would not show.
    while now_ms() / 1000 <= before {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match call(&mut conn, &["BGSAVE"]).await {
        Ok(_) => {}
        // One is running already: its end is as good.
        Err(e) if e.contains("already in progress") => {}
        Err(e) => return Err(format!("redis BGSAVE: {e}")),
    }
    loop {
        let at = lastsave(call(&mut conn, &["LASTSAVE"]).await?)?;
        if at > before {
            return Ok(json!({"saved": "BGSAVE", "lastsave": at}));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The notice to the central queue, for `spot_drain` (which takes it and EventBridge's copy
/// as one drain).
async fn publish_handler(
    queue: &str,
    api: &crate::config::AwsSettings,
    notice: &Notice,
    extra: &Value,
) -> Result<Value, String> {
    let clients = crate::aws::Clients::new(api).await;
    let queues = crate::aws::sqs::SqsQueues::new(clients.sqs);
    use crate::ports::QueueSource;
    let q = queues.open(queue).await.map_err(|e| e.message)?;
    let event = notice.event(
        now_ms(),
        extra["instance_type"].as_str(),
        extra["zone"].as_str(),
    );
    let id = q
        .send(&crate::ports::OutgoingMessage {
            body: event.to_string(),
            ..Default::default()
        })
        .await
        .map_err(|e| e.message)?;
    Ok(json!({"message_id": id}))
}

/// `tugboat agent simulate KIND --in D`: the handlers against a made-up notice of `kind`
/// (`spot`, `rebalance`, `maintenance`) whose deadline is `within` from now; the report.
pub async fn simulate(config: &AgentConfig, kind: &str, within: Duration) -> Value {
    let now = now_ms();
    let instance = config
        .instance_id
        .clone()
        .unwrap_or_else(|| "i-simulated".into());
    let (kind, action) = match kind {
        "rebalance" => ("rebalance-recommendation", None),
        "maintenance" => ("scheduled-maintenance", Some("system-reboot".to_owned())),
        _ => ("spot-interruption", Some("terminate".to_owned())),
    };
    let notice = Notice {
        id: format!("simulated:{kind}:{instance}:{now}"),
        provider: "simulated".into(),
        kind: kind.into(),
        instance,
        deadline_ms: Some(now + within.as_millis() as u64),
        action,
        raw: json!({"simulated": true}),
    };
    run_handlers(config, &notice, &json!({})).await
}

/// The agent until SIGTERM/SIGINT.
pub async fn run(config: AgentConfig) -> Result<(), String> {
    let mut imds = imds::Imds::new(
        &config.aws.base_url,
        config.aws.token_ttl,
        config.aws.imdsv1_fallback,
    )?;
    let mut state = State::open(&config.state_file)?;
    let instance = match &config.instance_id {
        Some(i) => i.clone(),
        None => loop {
            match imds.get("instance-id").await {
                Ok(Some(id)) => break id.trim().to_owned(),
                Ok(None) => return Err("the metadata service has no instance-id".into()),
                Err(e) => {
                    tracing::warn!(error = %e, "reading the instance id; trying again");
                    tokio::time::sleep(config.aws.poll_interval).await;
                }
            }
        },
    };
    let extra = json!({
        "instance_type": imds.get("instance-type").await.ok().flatten(),
        "zone": imds.get("placement/availability-zone").await.ok().flatten(),
    });
    tracing::info!(instance = %instance, "agent watching {}", config.aws.base_url);
    let mut stop = Box::pin(shutdown_signal());
    loop {
        for found in imds.poll(&instance).await {
            match found {
                Ok(n) if state.seen(&n.id) => {}
                Ok(n) => {
                    // Remembered first: a crash while the handlers run does not run them
                    // twice (at most once, as a checkpoint wants).
                    state.remember(&n.id)?;
                    tracing::info!(notice = %n.id, kind = %n.kind, "notice");
                    let report = run_handlers(&config, &n, &extra).await;
                    println!("{report}");
                }
                Err(e) => tracing::warn!(error = %e, "polling the metadata service"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(config.aws.poll_interval) => {}
            _ = &mut stop => return Ok(()),
        }
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_remembers_across_opens_and_refuses_a_foreign_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/folder/state.json");
        let mut s = State::open(&path).unwrap();
        assert!(!s.seen("a"));
        s.remember("a").unwrap();
        assert!(State::open(&path).unwrap().seen("a"));
        std::fs::write(&path, "[1, 2]").unwrap();
        let e = State::open(&path).err().unwrap();
        assert!(e.contains("not an agent state file"), "{e}");
    }
}
