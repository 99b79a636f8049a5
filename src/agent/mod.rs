//! `tugboat agent`: runs on the instance, notices an interruption first, protects local state
//! through its handlers, then tells the central service.
//!
//! Sources, each a task that sends what it finds to one loop: the cloud's metadata service
//! ([`imds`] for AWS, [`azure`], [`gcp`]; `auto` probes the three), the machine itself
//! ([`local`]: disk, memory, network) and the group's other instances ([`peer`]). The loop
//! takes each notice not seen before (the state file remembers, across restarts), remembers
//! it, and runs the [`handlers`] that are `on` its class in a task of its own, so a long run
//! for one notice does not hold back another. The report is one JSON line on stdout, and
//! goes to `[report]`'s queue when configured; an Azure event is then acknowledged.
//! [`simulate`] runs the handlers against a made-up notice.

pub mod azure;
pub mod config;
pub mod gcp;
pub mod handlers;
pub mod imds;
pub mod local;
pub mod notice;
pub mod peer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use config::{AgentConfig, Provider};
pub use handlers::run_handlers;
use notice::Notice;

/// What a source sends the loop.
#[derive(Debug)]
pub enum Found {
    Notice(Notice),
    /// A local condition with this notice id is over: the next one is a new notice.
    Cleared(String),
    /// Logged; the source goes on.
    Problem(String),
}

/// An HTTP client for a metadata service: no proxy (the address is link-local), a short
/// timeout (a stuck service must not stall the polls).
pub(crate) fn metadata_client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())
}

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
            Ok(text) => match serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| serde_json::from_value::<Vec<String>>(v["seen"].clone()).ok())
            {
                Some(seen) => seen,
                // A damaged file (a crash of an older build mid-write, a full disk) must not
                // keep the agent from watching: it is kept aside for a look, and the agent
                // starts afresh (a notice seen before may run its handlers once more).
                None => {
                    // A stamp for the file's name only (no decision reads it).
                    let stamp = crate::ports::clock::system_ms();
                    let aside = path.with_extension(format!("damaged-{stamp}"));
                    std::fs::rename(path, &aside)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    tracing::warn!(state = %path.display(), moved_to = %aside.display(), "the agent state file was damaged: moved aside, starting afresh");
                    Vec::new()
                }
            },
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

    /// Forgets `id` (a local condition that cleared), durably; `false` if it was not known.
    pub fn forget(&mut self, id: &str) -> Result<bool, String> {
        let before = self.seen.len();
        self.seen.retain(|s| s != id);
        if self.seen.len() == before {
            return Ok(false);
        }
        self.write().map(|()| true)
    }

    /// Remembers `id`, durably (written to a new file, then renamed over the old one).
    pub fn remember(&mut self, id: &str) -> Result<(), String> {
        self.seen.push(id.to_owned());
        if self.seen.len() > 1000 {
            self.seen.remove(0);
        }
        self.write()
    }

    /// Written to a new file (readable by the agent's user alone), synced, renamed over the
    /// old one, and the folder synced: a power loss leaves the old file or the new one.
    fn write(&self) -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let text = json!({"seen": self.seen}).to_string();
        let tmp = self.path.with_extension("tmp");
        let written = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            let folder = self.path.parent().filter(|p| !p.as_os_str().is_empty());
            std::fs::File::open(folder.unwrap_or(Path::new(".")))?.sync_all()
        })();
        written.map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

/// What `tugboat agent simulate` can make up.
pub const SIMULATIONS: [&str; 9] = [
    "spot",
    "rebalance",
    "maintenance",
    "azure-preempt",
    "gcp-preempt",
    "disk",
    "memory",
    "network",
    "peer",
];

/// `tugboat agent simulate KIND --in D`: the handlers against a made-up notice of `kind` (one
/// of [`SIMULATIONS`]) whose deadline is `within` from now; the report.
pub async fn simulate(config: &AgentConfig, kind: &str, within: Duration) -> Result<Value, String> {
    let now = config.clock.now_ms();
    let instance = config
        .instance_id
        .clone()
        .unwrap_or_else(|| "i-simulated".into());
    let (provider, kind, action) = match kind {
        "spot" => (notice::Source::Aws, "spot-interruption", Some("terminate")),
        "rebalance" => (notice::Source::Aws, "rebalance-recommendation", None),
        "maintenance" => (
            notice::Source::Aws,
            "scheduled-maintenance",
            Some("system-reboot"),
        ),
        "azure-preempt" => (notice::Source::Azure, "spot-interruption", Some("Preempt")),
        "gcp-preempt" => (notice::Source::Gcp, "spot-interruption", Some("preempt")),
        "disk" => (notice::Source::Local, "disk-usage", None),
        "memory" => (notice::Source::Local, "memory-pressure", None),
        "network" => (notice::Source::Local, "network-unreachable", None),
        "peer" => (
            notice::Source::Peer,
            "peer-interruption",
            Some("spot-interruption"),
        ),
        other => {
            return Err(format!(
                "cannot simulate {other:?}: one of {}",
                SIMULATIONS.join(", ")
            ));
        }
    };
    let notice = Notice {
        id: format!("simulated:{kind}:{instance}:{now}"),
        provider,
        kind: kind.into(),
        instance,
        deadline_ms: Some(now + within.as_millis() as u64),
        action: action.map(str::to_owned),
        raw: json!({"simulated": true}),
    };
    Ok(run_handlers(config, &notice, &json!({})).await)
}

/// `auto`: the provider whose metadata service answers (AWS, then Azure, then GCP when more
/// than one would), asked together, each within 2 s; tried again a few times before giving up.
async fn probe(config: &AgentConfig) -> Result<Provider, String> {
    let bound = Duration::from_secs(2);
    for attempt in 1..=5 {
        let aws = async {
            let mut m = imds::Imds::new(
                &config.aws.base_url,
                config.aws.token_ttl,
                config.aws.imdsv1_fallback,
            )
            .ok()?;
            tokio::time::timeout(bound, m.get("instance-id"))
                .await
                .ok()?
                .ok()?
                .map(|_| Provider::Aws)
        };
        let azure = async {
            let a = azure::Azure::new(&config.azure.base_url).ok()?;
            tokio::time::timeout(bound, a.instance_name())
                .await
                .ok()?
                .ok()
                .map(|_| Provider::Azure)
        };
        let gcp = async {
            let g = gcp::Gcp::new(&config.gcp.base_url, config.gcp.wait).ok()?;
            tokio::time::timeout(bound, g.get("name", None))
                .await
                .ok()?
                .ok()
                .map(|_| Provider::Gcp)
        };
        let (a, b, c) = futures::future::join3(aws, azure, gcp).await;
        if let Some(p) = a.or(b).or(c) {
            return Ok(p);
        }
        tracing::warn!(attempt, "no metadata service answered yet");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(format!(
        "provider auto: no metadata service answered (AWS at {}, Azure at {}, GCP at {})",
        config.aws.base_url, config.azure.base_url, config.gcp.base_url
    ))
}

/// The instance's name as the provider knows it (retried while the service is not up), and
/// what a published notice may say about it.
async fn identify(config: &AgentConfig, provider: Provider) -> Result<(String, Value), String> {
    let mut extra = json!({});
    let mut attempts = 0;
    let instance = loop {
        let answer: Result<String, String> = match (&config.instance_id, provider) {
            (Some(i), _) => Ok(i.clone()),
            (None, Provider::Aws) => {
                let mut m = imds::Imds::new(
                    &config.aws.base_url,
                    config.aws.token_ttl,
                    config.aws.imdsv1_fallback,
                )?;
                match m.get("instance-id").await {
                    Ok(Some(id)) => {
                        extra = json!({
                            "instance_type": m.get("instance-type").await.ok().flatten(),
                            "zone": m.get("placement/availability-zone").await.ok().flatten(),
                        });
                        Ok(id.trim().to_owned())
                    }
                    Ok(None) => return Err("the metadata service has no instance-id".into()),
                    Err(e) => Err(e),
                }
            }
            (None, Provider::Azure) => {
                azure::Azure::new(&config.azure.base_url)?
                    .instance_name()
                    .await
            }
            (None, Provider::Gcp) => gcp::Gcp::new(&config.gcp.base_url, config.gcp.wait)?
                .get("name", None)
                .await
                .map(|(name, _)| name),
            (None, _) => std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .map_err(|e| format!("no instance_id configured and /etc/hostname: {e}")),
        };
        match answer {
            Ok(i) => break i,
            Err(e) if attempts < 30 => {
                attempts += 1;
                tracing::warn!(error = %e, "reading the instance id; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    };
    Ok((instance, extra))
}

/// Starts the configured sources; each sends to `found` until the loop goes away.
fn start_sources(
    config: &Arc<AgentConfig>,
    provider: Provider,
    instance: &str,
    found: &UnboundedSender<Found>,
) -> Result<(), String> {
    let (c, i, f) = (config.clone(), instance.to_owned(), found.clone());
    match provider {
        Provider::Aws => {
            let mut m = imds::Imds::new(&c.aws.base_url, c.aws.token_ttl, c.aws.imdsv1_fallback)?;
            tokio::spawn(async move { imds::watch(&mut m, &i, c.aws.poll_interval, f).await });
        }
        Provider::Azure => {
            let a = azure::Azure::new(&c.azure.base_url)?;
            tokio::spawn(async move { azure::watch(&a, &i, c.azure.poll_interval, f).await });
        }
        Provider::Gcp => {
            let g = gcp::Gcp::new(&c.gcp.base_url, c.gcp.wait)?;
            tokio::spawn(async move { gcp::watch_all(&g, &i, &c.gcp, &c.clock, f).await });
        }
        _ => {}
    }
    let l = &config.local;
    if !l.disk.is_empty() || l.memory.is_some() || !l.network.is_empty() {
        let (c, i, f) = (config.clone(), instance.to_owned(), found.clone());
        tokio::spawn(async move { local::watch(&c.local, &i, &c.clock, f).await });
    }
    if let Some(p) = &config.peer {
        let (c, i, f) = (config.clone(), instance.to_owned(), found.clone());
        match (&p.broker, &p.topic, &p.queue, &config.api) {
            (Some(b), Some(t), _, _) => {
                let broker = p.auth().broker(
                    b,
                    format!("tugboat-agent-{instance}-{}", std::process::id()),
                )?;
                let topic = t.clone();
                let trust = peer_trust(config);
                let clock = c.clock.clone();
                tokio::spawn(
                    async move { peer::watch_mqtt(broker, &topic, &i, trust, clock, f).await },
                );
            }
            (_, _, Some(q), Some(_)) => {
                let q = q.clone();
                let trust = peer_trust(config);
                tokio::spawn(async move {
                    if let Some(api) = &c.api {
                        peer::watch_queue(api, &q, &i, trust, c.clock.clone(), f).await
                    }
                });
            }
            _ => {}
        }
    }
    Ok(())
}

fn peer_trust(config: &AgentConfig) -> peer::PeerTrust {
    let accept_unsigned = config.peer.as_ref().is_some_and(|p| p.accept_unsigned);
    if config.signing_key.is_none() && !accept_unsigned {
        tracing::warn!("no signing_key: every peer notice will be ignored (peers sign theirs)");
    }
    peer::PeerTrust {
        key: config.signing_key.clone(),
        window: config.notice_max_age,
        accept_unsigned,
    }
}

/// The handlers for one notice, then its report: printed, published if configured, and an
/// Azure event acknowledged.
async fn act(config: Arc<AgentConfig>, n: Notice, extra: Value) {
    let mut report = run_handlers(&config, &n, &extra).await;
    if n.provider == notice::Source::Azure && config.azure.acknowledge {
        let event_id = n.raw["EventId"].as_str().unwrap_or_default();
        let acked = match azure::Azure::new(&config.azure.base_url) {
            Ok(a) => a.acknowledge(event_id).await,
            Err(e) => Err(e),
        };
        report["acknowledged"] = match acked {
            Ok(()) => json!(true),
            Err(e) => json!(e),
        };
    }
    println!("{report}");
    if let (Some(target), Some(api)) = (&config.report, &config.api)
        && let Err(e) =
            send_to_queue(api, &target.queue, report.to_string(), Default::default()).await
    {
        tracing::warn!(error = %e, queue = %target.queue, "publishing the report");
    }
}

/// Sends `body` to the SQS queue `queue` (a name or URL) through `api`; the message id.
pub(crate) async fn send_to_queue(
    api: &crate::config::AwsSettings,
    queue: &str,
    body: String,
    attributes: std::collections::BTreeMap<String, String>,
) -> Result<String, String> {
    use crate::ports::QueueSource;
    let clients = crate::aws::Clients::new(api).await;
    let q = crate::aws::sqs::SqsQueues::new(clients.sqs)
        .open(queue)
        .await
        .map_err(|e| e.message)?;
    q.send(&crate::ports::OutgoingMessage {
        body,
        attributes,
        ..Default::default()
    })
    .await
    .map_err(|e| e.message)
}

/// The agent until SIGTERM/SIGINT; handler runs under way then are waited for (each is
/// bounded by its timeouts).
pub async fn run(config: AgentConfig) -> Result<(), String> {
    let config = Arc::new(config);
    let mut state = State::open(&config.state_file)?;
    let provider = match config.provider {
        Provider::Auto => probe(&config).await?,
        other => other,
    };
    let (instance, extra) = identify(&config, provider).await?;
    let (found, mut incoming) = unbounded_channel();
    start_sources(&config, provider, &instance, &found)?;
    drop(found);
    tracing::info!(instance = %instance, provider = provider.as_str(), "agent watching");
    let mut runs = tokio::task::JoinSet::new();
    let mut peers = peer::Limiter::new(
        config
            .peer
            .as_ref()
            .map_or(Duration::ZERO, |p| p.min_interval),
    );
    let mut stop = Box::pin(shutdown_signal());
    // The remembered notices seen again by this process, said once each (a notice stays up
    // for every poll until the instance goes; a cleared one is forgotten here too).
    let mut said = std::collections::HashSet::new();
    loop {
        let next = tokio::select! {
            f = incoming.recv() => f,
            Some(_) = runs.join_next(), if !runs.is_empty() => continue,
            _ = &mut stop => break,
        };
        match next {
            Some(Found::Notice(n)) if state.seen(&n.id) => {
                if said.insert(n.id.clone()) {
                    tracing::info!(notice = %n.id, "notice already acted on (the state file remembers it): not run again");
                }
            }
            Some(Found::Notice(n))
                if n.provider == notice::Source::Peer
                    && !peers.admit(&n, config.clock.now_ms()) =>
            {
                tracing::warn!(notice = %n.id, peer = %n.instance, "a peer notice of a kind its handlers ran for within peer.min_interval: not run again");
            }
            Some(Found::Notice(n)) => {
                // Remembered first: a crash while the handlers run does not run them twice
                // (at most once, as a checkpoint wants).
                state.remember(&n.id)?;
                tracing::info!(notice = %n.id, kind = %n.kind, "notice");
                runs.spawn(act(config.clone(), n, extra.clone()));
            }
            Some(Found::Cleared(id)) => {
                said.remove(&id);
                if state.forget(&id)? {
                    tracing::info!(notice = %id, "condition cleared");
                }
            }
            Some(Found::Problem(e)) => tracing::warn!(error = %e, "watching for notices"),
            // Every source has ended (only `none` with nothing to watch): wait for a signal.
            None => {
                if runs.is_empty() {
                    stop.as_mut().await;
                    break;
                }
                while runs.join_next().await.is_some() {}
            }
        }
    }
    if !runs.is_empty() {
        tracing::info!(
            runs = runs.len(),
            "stopping once the handler runs under way end"
        );
        while runs.join_next().await.is_some() {}
    }
    Ok(())
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
    fn the_state_file_remembers_across_opens_and_a_damaged_one_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/folder/state.json");
        let mut s = State::open(&path).unwrap();
        assert!(!s.seen("a"));
        s.remember("a").unwrap();
        assert!(State::open(&path).unwrap().seen("a"));
        // A damaged file is moved aside, and the agent starts afresh.
        std::fs::write(&path, "{\"seen\": [\"a\", ").unwrap();
        let s = State::open(&path).unwrap();
        assert!(!s.seen("a"));
        let aside: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("state.damaged-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        // What it writes is its user's alone.
        let mut s = s;
        s.remember("b").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
}
