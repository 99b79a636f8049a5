//! Benchmark (b): messages/s through tugboat against the local AWS emulator, beside a plain
//! receive/delete loop on the same emulator in the same run. moto's own speed bounds both
//! (LOCAL-AWS.md: each call costs O(queue depth)), so the ratio is the figure that speaks
//! about tugboat; the absolute rates speak about moto.
//!
//!     cargo bench --bench emulator -- --messages 400

#[path = "common.rs"]
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use tugboat::app::Dependencies;
use tugboat::aws::sqs::{SqsQueue, SqsQueues};
use tugboat::journal::sled::SledJournal;
use tugboat::ports::{OutgoingMessage, Queue};

async fn fill(queue: &SqsQueue, n: usize, tag: &str) {
    let messages: Vec<OutgoingMessage> = (0..n)
        .map(|i| OutgoingMessage {
            body: json!({"id": format!("{tag}-{i}"), "source": "bench", "detail-type": "b", "detail": {}}).to_string(),
            ..Default::default()
        })
        .collect();
    for chunk in messages.chunks(10) {
        queue.send_batch(chunk).await.unwrap();
    }
}

/// Receive 10 / delete batch, until `n` messages were deleted.
async fn plain_loop(queue: &SqsQueue, n: usize) -> f64 {
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        let got = queue
            .receive(10, Duration::from_secs(1), Duration::from_secs(60))
            .await
            .unwrap();
        let handles: Vec<String> = got.into_iter().map(|m| m.receipt_handle).collect();
        if !handles.is_empty() {
            queue.delete_batch(&handles).await.unwrap();
            done += handles.len();
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// The service as `serve` builds it — intake, dispatcher, `log` workflow, sled journal — on
/// the same kind of queue (the notifier is in memory: no topic is configured here anyway).
async fn through_tugboat(queue: &str, n: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let clients = support::clients().await;
    let mut deps = Dependencies::memory(Arc::new(SqsQueues::new(clients.sqs.clone())));
    deps.journal = Some(Arc::new(SledJournal::open(dir.path()).unwrap()));
    let start = Instant::now();
    let app = support::app::spawn_app(&common::config(queue, "log", 100), deps).await;
    while app.stats(queue).deleted.load(Ordering::Relaxed) < n as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    app.stop().await;
    rate
}

async fn bench(n: usize) {
    let clients = support::clients().await;
    let plain_name = support::unique("bench-plain");
    let tug_name = support::unique("bench-tugboat");
    for name in [&plain_name, &tug_name] {
        clients
            .sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .unwrap();
    }
    let plain = SqsQueue::resolve(&clients.sqs, &plain_name).await.unwrap();
    let tug = SqsQueue::resolve(&clients.sqs, &tug_name).await.unwrap();
    fill(&plain, n, "p").await;
    fill(&tug, n, "t").await;
    let plain_rate = plain_loop(&plain, n).await;
    let tug_rate = through_tugboat(&tug_name, n).await;
    println!("{n} messages, queues filled first, same emulator:");
    println!("  plain receive(10)/delete-batch loop:   {plain_rate:>8.1} messages/s");
    println!("  through tugboat (log workflow, sled):  {tug_rate:>8.1} messages/s");
    println!(
        "  ratio tugboat / plain:                 {:>8.2}",
        tug_rate / plain_rate
    );
}

fn main() {
    // No tracing subscriber is installed: tugboat's per-event logs would drown the figures.
    let n = common::arg("--messages", 400);
    println!("machine: {}", common::machine());
    support::emulator();
    common::in_system(bench(n));
}
