//! Benchmark: the console. (1) The workflows page with `--instances` (10 000) instances in a
//! sled journal: the first screen's server time, cold (the first request scans the journal
//! into the console's index) and warm, with and without filters, and one instance's page.
//! (2) What live updates cost: the service's CPU while it runs `--rate` (100) events/s of a
//! 3-step workflow for `--secs` (20) seconds, without and then with a browser's event stream
//! (`/events`, read by a `curl -N` of its own, so that the reader's CPU is not counted).
//!
//!     cargo bench --bench console -- --instances 10000 --rate 100 --secs 20

#[allow(dead_code, reason = "the benchmark uses part of the tests' harness")]
#[path = "../tests/support/app.rs"]
mod app;
#[path = "common.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{machine, percentile};
use serde_json::json;
use tugboat::app::Dependencies;
use tugboat::contract::Typed;
use tugboat::journal::sled::SledJournal;
use tugboat::journal::{Journal, Origin, Record, Status, now_ms};
use tugboat::ports::memory::{MemoryQueue, MemoryQueues};
use tugboat::ports::{OutgoingMessage, Queue};
use tugboat::workflows::{Catalog, Registration};

/// An instance as an `ecs_start` leaves it: an EventBridge event, five steps with their
/// requests and outputs, one in twenty failed.
fn record(i: usize) -> Record {
    let event = json!({"version": "0", "id": format!("ev-{i:06}"), "source": "custom.app",
        "detail-type": "Start ECS Task", "account": "123456789012", "time": "2026-11-30T00:00:00Z",
        "region": "us-east-1", "resources": [], "detail": {"service": "auth", "reason": "scale out", "requested_by": "ops"}});
    let mut r = Record::new(
        &format!("start-ecs-task:ev-{i:06}"),
        "ecs_start",
        Origin {
            route: "start-ecs-task".into(),
            queue: "events".into(),
            message_id: format!("m-{i}"),
            trace: None,
        },
        event,
        json!({"poll_interval": "1s"}),
    );
    for (n, name) in [
        "run-task",
        "wait-running#1",
        "register-target",
        "wait-healthy#1",
        "notify",
    ]
    .iter()
    .enumerate()
    {
        let s = r.step_mut(name);
        s.attempts = 1;
        s.input =
            Some(json!({"request": name, "cluster": "prod", "task_definition": "auth:42"}).into());
        s.output = Some(
            json!({"task_arn": format!("arn:aws:ecs:us-east-1:123456789012:task/prod/{i:032}"), "n": n}),
        );
        s.try_started(1_000 + n as u64);
        s.try_ended(1_001 + n as u64, None);
        s.finished_ms = Some(1_001 + n as u64);
    }
    r.status = if i.is_multiple_of(20) {
        Status::DeadLettered {
            reason: "the target did not become healthy".into(),
        }
    } else {
        Status::Succeeded
    };
    r.updated_ms = now_ms() - (10_000 - i as u64 % 10_000) * 1_000;
    r
}

async fn fill(journal: &SledJournal, instances: usize) {
    let mut writes = futures::stream::FuturesUnordered::new();
    use futures::StreamExt;
    for i in 0..instances {
        let r = record(i);
        writes.push(async move { journal.put(&r).await });
        if writes.len() >= 256 {
            writes.next().await.unwrap().unwrap();
        }
    }
    while let Some(w) = writes.next().await {
        w.unwrap();
    }
}

async fn get(client: &reqwest::Client, url: &str) -> (Duration, usize) {
    let started = Instant::now();
    let response = client
        .get(url)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    let bytes = response.bytes().await.unwrap().len();
    (started.elapsed(), bytes)
}

async fn page_times(admin: std::net::SocketAddr, rounds: usize) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://{admin}");
    let (cold, bytes) = get(&client, &format!("{base}/workflows")).await;
    println!(
        "  /workflows, first request (scans the journal):  {:>8.1} ms  ({} KiB)",
        ms(cold),
        bytes / 1024
    );
    for (name, path) in [
        ("/workflows (100 newest)", "/workflows".to_owned()),
        (
            "/workflows?status=dead_lettered",
            "/workflows?status=dead_lettered".to_owned(),
        ),
        ("/workflows?q=ev-0042", "/workflows?q=ev-0042".to_owned()),
        ("/workflows?limit=1000", "/workflows?limit=1000".to_owned()),
        (
            "/workflows/{id} (one instance)",
            "/workflows/start-ecs-task:ev-004242".to_owned(),
        ),
    ] {
        let mut times = Vec::new();
        for _ in 0..rounds {
            times.push(get(&client, &format!("{base}{path}")).await.0);
        }
        println!(
            "  {name:<36} p50 {:>6.1} ms  p99 {:>6.1} ms",
            ms(percentile(&mut times, 50.0)),
            ms(percentile(&mut times, 99.0))
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// This process's CPU time so far (user + system).
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// Feeds `rate` events/s for `secs`; the share of one core the process used meanwhile.
async fn feed(queue: &MemoryQueue, rate: usize, secs: u64, start: usize) -> f64 {
    let cpu_before = cpu();
    let began = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut n = start;
    while began.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        let batch: Vec<OutgoingMessage> = (0..rate / 10)
            .map(|_| {
                n += 1;
                OutgoingMessage {
                    body: json!({"id": format!("live-{n}"), "source": "bench", "detail-type": "b", "detail": {}})
                        .to_string(),
                    ..Default::default()
                }
            })
            .collect();
        for chunk in batch.chunks(10) {
            queue.send_batch(chunk).await.unwrap();
        }
    }
    (cpu() - cpu_before).as_secs_f64() / began.elapsed().as_secs_f64() * 100.0
}

async fn run(instances: usize, rate: usize, secs: u64) {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(SledJournal::open(dir.path()).unwrap());
    let filling = Instant::now();
    fill(&journal, instances).await;
    println!(
        "journal: {instances} instances written in {:.1} s",
        filling.elapsed().as_secs_f64()
    );
    let queue = Arc::new(MemoryQueue::new("bench"));
    let queues = Arc::new(MemoryQueues::default());
    queues.add(queue.clone());
    let mut deps = Dependencies::memory(queues);
    deps.journal = Some(journal.clone());
    deps.catalog = Catalog::builtin().with(Registration::ready(Arc::new(Typed(common::Noop))));
    let app = app::spawn_app(&common::config("bench", "noop", 100), deps).await;

    // Warm up: the first events build the actors' pools. Then the service before anyone
    // opened the console (no index, no summaries built).
    feed(&queue, rate, 2, 0).await;
    let unopened = feed(&queue, rate, secs, 500_000).await;

    println!("pages, {instances} instances in the journal (server time over loopback):");
    page_times(app.admin, 50).await;

    println!("live updates, {rate} events/s of a 3-step workflow for {secs} s each:");
    let without = feed(&queue, rate, secs, 1_000_000).await;
    let mut reader = std::process::Command::new("curl")
        .args([
            "-sN",
            "-o",
            "/dev/null",
            &format!("http://{}/events", app.admin),
        ])
        .spawn()
        .expect("curl reads the event stream");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with = feed(&queue, rate, secs, 2_000_000).await;
    let _ = reader.kill();
    let _ = reader.wait();
    let again = feed(&queue, rate, secs, 3_000_000).await;
    println!("  service CPU, console never opened:   {unopened:>6.2} % of one core");
    println!("  service CPU without a live page:     {without:>6.2} % of one core");
    println!("  service CPU with one live page:      {with:>6.2} % of one core");
    println!("  service CPU without, again:          {again:>6.2} % of one core");
    println!(
        "  cost of the live page:               {:>6.2} % of one core (with − mean of without)",
        with - (without + again) / 2.0
    );
    println!(
        "  cost of the console, index and page:  {:>6.2} % of one core (with − never opened)",
        with - unopened
    );
    app.stop().await;
}

fn main() {
    let instances = common::arg("--instances", 10_000);
    let rate = common::arg("--rate", 100);
    let secs = common::arg("--secs", 20) as u64;
    println!("machine: {}", machine());
    common::in_system(run(instances, rate, secs));
}
