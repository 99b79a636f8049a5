//! Benchmark: deliveries per second through tugboat beside a plain client loop against the
//! same endpoint in the same run, with the same number in flight.
//!
//! - MQTT: `mqtt_publish` QoS 1 publishes (counted once PUBACKed; the message deleted after)
//!   against the broker on 127.0.0.1:1883 (or a Mosquitto of its own), beside a plain rumqttc
//!   loop that publishes at QoS 1 and counts PUBACKs.
//! - HTTP: `http_deliver` to an unlimited destination (a loopback axum server answering 200),
//!   beside a plain reqwest loop.
//!
//! Tugboat runs in process (`App::build`), over an in-memory queue holding every message
//! before the clock starts, with the durable sled journal, as `serve` runs.
//!
//! Then, for each, the writes a shared (DynamoDB) journal would take per delivered event:
//! the same run over a journal that says it is shared and counts claims, puts, releases and
//! signals (each a DynamoDB write), 2 000 messages.
//!
//!     cargo bench --bench delivery -- --messages 5000 --concurrency 100 [--rounds 2] [--logs]

#[allow(dead_code, reason = "the benchmark uses part of the tests' harness")]
#[path = "../tests/support/app.rs"]
mod app;
#[allow(dead_code, reason = "the benchmark uses part of the tests' harness")]
#[path = "../tests/support/broker.rs"]
mod broker;
#[path = "common.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use serde_json::json;
use tugboat::app::Dependencies;
use tugboat::journal::sled::SledJournal;
use tugboat::journal::{JournalError, ListFilter, Record};
use tugboat::ports::memory::{MemoryQueue, MemoryQueues};
use tugboat::ports::{OutgoingMessage, Queue};

fn event(n: usize) -> String {
    json!({"version": "0", "id": format!("ev-{n}"), "source": "bench", "detail-type": "EC2 Instance State-change Notification",
        "time": "2026-11-29T10:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {"instance-id": format!("i-{n:06}"), "state": "running"}})
    .to_string()
}

/// A journal that says it is shared, as the DynamoDB one is, and counts the calls that would
/// be DynamoDB writes there (claims, puts, releases, signals).
#[derive(Debug, Default)]
struct SharedCounting {
    inner: tugboat::journal::memory::MemoryJournal,
    writes: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl tugboat::journal::Journal for SharedCounting {
    async fn get(&self, id: &str) -> Result<Option<Record>, JournalError> {
        self.inner.get(id).await
    }
    async fn put(&self, record: &Record) -> Result<(), JournalError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.put(record).await
    }
    async fn list(&self, filter: &ListFilter) -> Result<Vec<Record>, JournalError> {
        self.inner.list(filter).await
    }
    fn flush(&self) -> Result<(), JournalError> {
        self.inner.flush()
    }
    fn is_shared(&self) -> bool {
        true
    }
    async fn claim(&self, _id: &str) -> Result<tugboat::journal::Claim, JournalError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(tugboat::journal::Claim::Granted)
    }
    async fn release(&self, _id: &str) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }
    async fn signal(&self, key: &str) -> Result<(), JournalError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.signal(key).await
    }
    async fn setting(&self, key: &str) -> Result<Option<serde_json::Value>, JournalError> {
        self.inner.setting(key).await
    }
    async fn put_setting(&self, key: &str, value: &serde_json::Value) -> Result<(), JournalError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.put_setting(key, value).await
    }
}

/// Tugboat: messages/s from the first receive to the last delete.
async fn through_tugboat(messages: usize, config: &str) -> f64 {
    through_tugboat_over(messages, config, None).await
}

/// The same over `journal` when given (else sled, or memory with `--memory-journal`).
async fn through_tugboat_over(
    messages: usize,
    config: &str,
    journal: Option<Arc<dyn tugboat::journal::Journal>>,
) -> f64 {
    let queue = Arc::new(MemoryQueue::new("bench"));
    let batch: Vec<OutgoingMessage> = (0..messages)
        .map(|n| OutgoingMessage {
            body: event(n),
            ..Default::default()
        })
        .collect();
    for chunk in batch.chunks(10) {
        queue.send_batch(chunk).await.unwrap();
    }
    let queues = Arc::new(MemoryQueues::default());
    queues.add(queue.clone());
    let dir = tempfile::tempdir().unwrap();
    let mut deps = Dependencies::memory(queues);
    deps.journal = Some(if let Some(j) = journal {
        j
    } else if std::env::args().any(|a| a == "--memory-journal") {
        Arc::new(tugboat::journal::memory::MemoryJournal::default())
    } else {
        Arc::new(SledJournal::open(dir.path()).unwrap())
    });
    if std::env::args().any(|a| a == "--tasks") {
        deps.spawn = Arc::new(tugboat::engine::TaskSpawn);
    }
    deps.ports.mqtt = Arc::new(tugboat::mqtt::MqttConnector::default());
    deps.ports.http = Arc::new(tugboat::http::HttpConnector::new().unwrap());
    let app = app::spawn_app(config, deps).await;
    while queue.deleted() < messages as u64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // From the first receive, as the plain loops time from their connection's first send:
    // the service's start (its journal opened, its broker connected) is not in the figure.
    let start = queue.first_delivered().expect("messages were received");
    let rate = messages as f64 / start.elapsed().as_secs_f64();
    app.stop().await;
    rate
}

/// A plain rumqttc loop: QoS 1 publishes, at most `inflight` unacknowledged, until every
/// PUBACK is in.
async fn plain_mqtt(port: u16, messages: usize, inflight: u16) -> f64 {
    let mut options = MqttOptions::new(
        format!("bench-plain-{}", std::process::id()),
        "127.0.0.1",
        port,
    );
    options.set_inflight(inflight);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);
    loop {
        if let Ok(Event::Incoming(Packet::ConnAck(_))) = eventloop.poll().await {
            break;
        }
    }
    // Built before the clock starts, as tugboat's queue is filled before its clock.
    let events: Vec<String> = (0..messages).map(event).collect();
    let start = Instant::now();
    let publisher = tokio::spawn(async move {
        for (n, event) in events.into_iter().enumerate() {
            let topic = format!("bench/plain/i-{n:06}/running");
            client
                .publish(topic, QoS::AtLeastOnce, false, event)
                .await
                .unwrap();
        }
        client
    });
    let mut acked = 0;
    while acked < messages {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
            Ok(Event::Outgoing(Outgoing::Publish(_))) | Ok(_) => {}
            Err(e) => panic!("plain MQTT loop: {e}"),
        }
    }
    let rate = messages as f64 / start.elapsed().as_secs_f64();
    let _ = publisher.await;
    rate
}

/// A loopback server answering every POST with 200, counting the events (an array's
/// elements, or one) and the requests.
async fn receiver(count: Arc<AtomicUsize>, requests: Arc<AtomicUsize>) -> u16 {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let (count, requests) = (count.clone(), requests.clone());
            async move {
                let events = match body.as_bytes().first() {
                    Some(b'[') => serde_json::from_str::<Vec<serde_json::Value>>(&body)
                        .map_or(0, |events| events.len()),
                    _ => 1,
                };
                count.fetch_add(events, Ordering::Relaxed);
                requests.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

/// A plain reqwest loop: `concurrency` tasks posting the events as JSON.
async fn plain_http(port: u16, messages: usize, concurrency: usize) -> f64 {
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    // Built before the clock starts, as tugboat's queue is filled before its clock; each is
    // read and written again as JSON in the loop, as a forwarder does.
    let events: Arc<Vec<String>> = Arc::new((0..messages).map(event).collect());
    let url = format!("http://127.0.0.1:{port}/hook");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next, events, url) =
            (client.clone(), next.clone(), events.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= messages {
                    break;
                }
                let body: serde_json::Value = serde_json::from_str(&events[n]).unwrap();
                let r = client.post(&url).json(&body).send().await.unwrap();
                assert!(r.status().is_success());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    messages as f64 / start.elapsed().as_secs_f64()
}

async fn run(messages: usize, concurrency: u32) {
    let broker = broker::Broker::shared();
    println!(
        "MQTT QoS 1 to 127.0.0.1:{}, {messages} messages, {concurrency} in flight:",
        broker.port
    );
    let mqtt = common::config_with(
        "bench",
        "mqtt_publish",
        r#"{ broker = "b", topic = "bench/tugboat/{detail.instance-id}/{detail.state}" }"#,
        &format!(
            "[brokers.b]\nhost = \"127.0.0.1\"\nport = {}\n",
            broker.port
        ),
        concurrency,
    );
    let mut ratios = Vec::new();
    for round in 1..=rounds() {
        let plain = plain_mqtt(broker.port, messages, concurrency as u16).await;
        let tug = through_tugboat(messages, &mqtt).await;
        ratios.push(tug / plain);
        println!(
            "  round {round}: plain rumqttc {plain:>8.0}/s   through tugboat {tug:>8.0}/s   ratio {:.2}",
            tug / plain
        );
    }
    median("MQTT", ratios);
    shared_writes(&mqtt).await;
    let (count, requests) = (Arc::default(), Arc::default());
    let port = receiver(Arc::clone(&count), Arc::clone(&requests)).await;
    println!("HTTP POST to a loopback server, {messages} messages, {concurrency} in flight:");
    let http = common::config_with(
        "bench",
        "http_deliver",
        r#"{ destination = "d" }"#,
        &format!(
            "[destinations.d]\nurl = \"http://127.0.0.1:{port}/hook\"\nrate_limit_per_second = 0\n"
        ),
        concurrency,
    );
    let mut ratios = Vec::new();
    for round in 1..=rounds() {
        let plain = plain_http(port, messages, concurrency as usize).await;
        let tug = through_tugboat(messages, &http).await;
        ratios.push(tug / plain);
        println!(
            "  round {round}: plain reqwest {plain:>8.0}/s   through tugboat {tug:>8.0}/s   ratio {:.2}",
            tug / plain
        );
    }
    median("HTTP", ratios);
    assert_eq!(
        count.load(Ordering::Relaxed),
        messages * 2 * rounds(),
        "every POST arrived"
    );
    shared_writes(&http).await;

    // The same destination batching: a JSON array of up to 100 bodies per request.
    println!(
        "HTTP POST batched (batch = {{ max_events = 100, max_wait = \"5ms\" }}), {messages} messages, {concurrency} in flight:"
    );
    let batched = common::config_with(
        "bench",
        "http_deliver",
        r#"{ destination = "d" }"#,
        &format!(
            "[destinations.d]\nurl = \"http://127.0.0.1:{port}/hook\"\nrate_limit_per_second = 0\nbatch = {{ max_events = 100, max_wait = \"5ms\" }}\n"
        ),
        concurrency,
    );
    for round in 1..=rounds() {
        let plain = plain_http(port, messages, concurrency as usize).await;
        let (events, posts) = (
            count.load(Ordering::Relaxed),
            requests.load(Ordering::Relaxed),
        );
        let tug = through_tugboat(messages, &batched).await;
        let delivered = count.load(Ordering::Relaxed) - events;
        let posted = requests.load(Ordering::Relaxed) - posts;
        assert!(delivered >= messages, "every event arrived: {delivered}");
        println!(
            "  round {round}: plain reqwest {plain:>8.0}/s   through tugboat {tug:>8.0}/s   ratio {:.2}   ({:.1} events per request)",
            tug / plain,
            delivered as f64 / posted as f64
        );
    }
}

/// Rounds of each (`--rounds`, default 2): the machines these run on change speed by tens of
/// percent within a minute, so a figure is the median of interleaved rounds' ratios.
fn rounds() -> usize {
    common::arg("--rounds", 2)
}

fn median(what: &str, mut ratios: Vec<f64>) {
    ratios.sort_by(f64::total_cmp);
    let n = ratios.len();
    let median = if n % 2 == 1 {
        ratios[n / 2]
    } else {
        (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0
    };
    println!("  {what}: median ratio {median:.2} of {n} rounds");
}

/// Prints the shared journal's writes per delivered event for `config`'s workflow.
async fn shared_writes(config: &str) {
    let n = 2000;
    let journal = Arc::new(SharedCounting::default());
    through_tugboat_over(n, config, Some(journal.clone())).await;
    let writes = journal.writes.load(Ordering::Relaxed);
    println!(
        "  shared journal: {writes} writes for {n} deliveries = {:.2} per delivered event (claims, puts, releases)",
        writes as f64 / n as f64
    );
}

fn main() {
    let messages = common::arg("--messages", 5000);
    let concurrency = common::arg("--concurrency", 100) as u32;
    println!("machine: {}", common::machine());
    // `--logs`: with the JSON log lines `serve` writes when stderr is not a terminal (info
    // and above; the spans each delivery opens are then made and kept), as a service runs.
    if std::env::args().any(|a| a == "--logs") {
        tugboat::telemetry::init(true, None, false).expect("the log subscriber");
        println!("with serve's JSON log subscriber (info)");
    }
    common::in_system(run(messages, concurrency));
}
