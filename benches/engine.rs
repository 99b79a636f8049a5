//! Benchmark (a): the engine alone — in-memory queue, durable sled journal — running a 3-step
//! no-op workflow per message, beside the raw `sled insert + flush` rate measured in the same
//! run. Prints workflows/s, durable transitions/s and commit latency p50/p99.
//!
//!     cargo bench --bench engine -- --workflows 20000

#[allow(dead_code, reason = "the benchmark uses part of the tests' harness")]
#[path = "../tests/support/app.rs"]
mod app;
#[path = "common.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TimedJournal, machine, percentile};
use serde_json::json;
use tugboat::app::Dependencies;
use tugboat::contract::Typed;
use tugboat::journal::sled::SledJournal;
use tugboat::ports::memory::{MemoryQueue, MemoryQueues};
use tugboat::workflows::{Catalog, Registration};

/// Sequential `insert` of a 1 KiB value followed by `flush`, for `secs` seconds.
fn raw_sled(secs: f64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(dir.path())
        .flush_every_ms(None)
        .open()
        .unwrap();
    let value = vec![7u8; 1024];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        db.insert(n.to_be_bytes(), value.as_slice()).unwrap();
        db.flush().unwrap();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn engine(
    workflows: usize,
    concurrency: u32,
    tasks: bool,
) -> (f64, f64, Duration, Duration, usize) {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(TimedJournal {
        inner: Arc::new(SledJournal::open(dir.path()).unwrap()),
        latencies: Default::default(),
    });
    let queue = Arc::new(MemoryQueue::new("bench"));
    common::fill(&queue, workflows, |_| json!({})).await;

    let queues = Arc::new(MemoryQueues::default());
    queues.add(queue.clone());
    let mut deps = Dependencies::memory(queues);
    deps.journal = Some(journal.clone());
    if tasks {
        // The engine alone: instances on plain tokio tasks instead of supervised actors.
        deps.spawn = Arc::new(tugboat::engine::TaskSpawn);
    }
    deps.catalog = Catalog::builtin().with(Registration::ready(Arc::new(Typed(common::Noop))));
    let start = Instant::now();
    let app = app::spawn_app(&common::config("bench", "noop", concurrency), deps).await;
    while queue.deleted() < workflows as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    app.stop().await;
    let mut lat = journal.latencies.lock().unwrap().clone();
    let puts = lat.len();
    let p50 = percentile(&mut lat, 50.0);
    let p99 = percentile(&mut lat, 99.0);
    (
        workflows as f64 / elapsed,
        puts as f64 / elapsed,
        p50,
        p99,
        puts,
    )
}

fn main() {
    let workflows = common::arg("--workflows", 20_000);
    let concurrency = common::arg("--concurrency", 1000) as u32;
    // `--tasks`: instances on tokio tasks (the engine alone) rather than actix actors.
    let tasks = std::env::args().any(|a| a == "--tasks");
    println!("machine: {}", machine());
    let raw = raw_sled(2.0);
    println!("raw sled insert(1 KiB) + flush, sequential:        {raw:>10.0} ops/s");
    let (wps, tps, p50, p99, puts) = common::in_system(engine(workflows, concurrency, tasks));
    let on = if tasks {
        "tokio tasks"
    } else {
        "supervised actors"
    };
    println!("engine, {workflows} × 3-step no-op workflows, {concurrency} in flight, on {on}:");
    println!("  workflows/s:                                      {wps:>10.0}");
    println!("  durable journal transitions/s ({puts} in all):  {tps:>10.0}");
    println!(
        "  commit latency p50 / p99:                         {:>7.2} ms / {:.2} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    println!(
        "  transitions/s ÷ raw flushes/s:                    {:>10.1}×",
        tps / raw
    );
}
