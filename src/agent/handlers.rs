//! The local handlers (the seed plan's plugins): `command`, `http`, `redis`, `postgres`,
//! `mysql`, `mqtt`, `publish`. Those that run for a notice go in priority order, equal
//! priorities together, each within its timeout and the deadline less the margin; one that
//! cannot start in time is skipped. Connection strings and passwords are never logged.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::config::{AgentConfig, HandlerConfig, HandlerKind};
use super::notice::{self, Notice};

/// Runs the handlers for `notice`; the report.
pub async fn run_handlers(config: &AgentConfig, notice: &Notice, extra: &Value) -> Value {
    let deadline = notice
        .deadline_ms
        .map(|d| d.saturating_sub(config.margin.as_millis() as u64));
    let class = notice.class();
    let chosen: Vec<&HandlerConfig> = config
        .handlers
        .iter()
        .filter(|h| h.runs_for(class, &notice.kind))
        .collect();
    let mut priorities: Vec<u32> = chosen.iter().map(|h| h.priority).collect();
    priorities.sort_unstable();
    priorities.dedup();
    let mut outcomes = Vec::new();
    for p in priorities {
        let group = chosen.iter().copied().filter(|h| h.priority == p);
        let results =
            futures::future::join_all(group.map(|h| run_one(config, h, notice, deadline, extra)))
                .await;
        outcomes.extend(results);
    }
    json!({
        "notice": notice,
        "deadline": deadline.map(notice::rfc3339),
        "handlers": outcomes,
        "left_ms": deadline.map(|d| d as i64 - config.clock.now_ms() as i64),
    })
}

async fn run_one(
    config: &AgentConfig,
    h: &HandlerConfig,
    notice: &Notice,
    deadline: Option<u64>,
    extra: &Value,
) -> Value {
    let started = config.clock.now_ms();
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
            HandlerKind::Postgres { url } => postgres_handler(url).await,
            HandlerKind::Mysql { url } => mysql_handler(url).await,
            HandlerKind::Mqtt {
                broker,
                topic,
                username,
                password,
                tls,
                ca_file,
            } => {
                let auth = super::config::MqttAuth {
                    username: username.clone(),
                    password: password.clone(),
                    tls: *tls,
                    ca_file: ca_file.clone(),
                };
                let now = config.clock.now_ms();
                mqtt_handler(broker, &auth, topic, config.signing_key.as_ref(), notice, extra, now)
                    .await
            }
            HandlerKind::Publish { queue } => match (&config.api, &config.signing_key) {
                (Some(api), Some(key)) => {
                    let now = config.clock.now_ms();
                    publish_handler(queue, api, key, notice, extra, now).await
                }
                (None, _) => Err("no [api] section".into()),
                (_, None) => Err(
                    "no signing_key: tugboat refuses an unsigned agent notice (set signing_key, the service's [security] signing_key)"
                        .into(),
                ),
            },
        }
    };
    let result = match tokio::time::timeout(bound, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("cut off after {} ms", bound.as_millis())),
    };
    let took = config.clock.now_ms().saturating_sub(started);
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
        .env("TUGBOAT_NOTICE_PROVIDER", notice.provider.as_str())
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
    // LASTSAVE counts seconds of the server's wall clock (the system's, not the agent's):
    // a save in the same second as the last would not show.
    while crate::ports::clock::system_ms() / 1000 <= before {
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

/// The notice to the agents' queue, for `spot_drain` (which takes it and EventBridge's copy
/// as one drain), signed (`tugboat-signature`) with the key the service shares: the service
/// believes no other `tugboat.agent` event.
async fn publish_handler(
    queue: &str,
    api: &crate::config::AwsSettings,
    key: &crate::signing::SigningKey,
    notice: &Notice,
    extra: &Value,
    now: u64,
) -> Result<Value, String> {
    let event = notice.event(now, extra["instance_type"].as_str(), extra["zone"].as_str());
    let body = event.to_string();
    let signature = crate::intake::trust::sign_notice(&body, key, now);
    let attributes = [(crate::intake::attributes::SIGNATURE.to_owned(), signature)].into();
    let id = super::send_to_queue(api, queue, body, attributes).await?;
    Ok(json!({"message_id": id}))
}

/// PostgreSQL writes every dirty buffer to disk: `CHECKPOINT`. The connection string is
/// never logged (the driver's errors do not repeat it).
async fn postgres_handler(url: &secrecy::SecretString) -> Result<Value, String> {
    use secrecy::ExposeSecret;
    let config: tokio_postgres::Config = url
        .expose_secret()
        .parse()
        .map_err(|e| format!("postgres: {e}"))?;
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("postgres: {}", crate::aws::chain(&e)))?;
    let driver = tokio::spawn(connection);
    let started = std::time::Instant::now();
    let done = client
        .simple_query("CHECKPOINT")
        .await
        .map(
            |_| json!({"ran": "CHECKPOINT", "checkpoint_ms": started.elapsed().as_millis() as u64}),
        )
        .map_err(|e| match e.as_db_error() {
            Some(db) => format!(
                "postgres CHECKPOINT: {} ({})",
                db.message(),
                db.code().code()
            ),
            None => format!("postgres CHECKPOINT: {}", crate::aws::chain(&e)),
        });
    drop(client);
    let _ = driver.await;
    done
}

/// MySQL or MariaDB closes its tables and flushes them: `FLUSH TABLES`.
async fn mysql_handler(url: &secrecy::SecretString) -> Result<Value, String> {
    use mysql_async::prelude::Queryable;
    use secrecy::ExposeSecret;
    let opts = mysql_async::Opts::from_url(url.expose_secret())
        .map_err(|_| "mysql: not a mysql://user:password@host:port/db URL".to_owned())?;
    let mut conn = mysql_async::Conn::new(opts)
        .await
        .map_err(|e| format!("mysql: {e}"))?;
    let started = std::time::Instant::now();
    let done = conn
        .query_drop("FLUSH TABLES")
        .await
        .map(|()| json!({"ran": "FLUSH TABLES", "flush_ms": started.elapsed().as_millis() as u64}))
        .map_err(|e| format!("mysql FLUSH TABLES: {e}"));
    let _ = conn.disconnect().await;
    done
}

/// The notice as the event peers (and `spot_drain`) read, signed for the peers with the
/// group's key, to `topic` on `broker`, QoS 1: done when the broker acknowledges it.
async fn mqtt_handler(
    broker: &str,
    auth: &super::config::MqttAuth,
    topic: &str,
    key: Option<&crate::signing::SigningKey>,
    notice: &Notice,
    extra: &Value,
    now: u64,
) -> Result<Value, String> {
    use crate::ports::mqtt::{Mqtt, Publication, Qos};
    let key = key.ok_or(
        "no signing_key: peers believe no unsigned notice (set signing_key, the group's shared key)",
    )?;
    let topic = topic
        .replace("{instance}", &notice.instance)
        .replace("{kind}", &notice.kind)
        .replace("{provider}", notice.provider.as_str());
    let client_id = format!(
        "tugboat-agent-{}-{}-pub",
        notice.instance,
        std::process::id()
    );
    let settings = auth.broker(broker, client_id)?;
    let connector = crate::mqtt::MqttConnector::default();
    let b = connector.broker(broker, &settings)?;
    let event = notice.event(now, extra["instance_type"].as_str(), extra["zone"].as_str());
    let event = super::peer::sign(event, key, now);
    let publication = Publication {
        topic: topic.clone(),
        payload: event.to_string(),
        qos: Qos::AtLeastOnce,
        retain: false,
    };
    // The connection comes up in the background; a publish before it fails as retryable.
    let mut pause = Duration::from_millis(20);
    loop {
        match b.publish(publication.clone()).await {
            Ok(()) => return Ok(json!({"topic": topic})),
            Err(e) if e.retryable => {
                tracing::debug!(error = %e.message, "mqtt handler: retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            Err(e) => return Err(format!("mqtt {topic}: {}", e.message)),
        }
    }
}
