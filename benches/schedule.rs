//! Schedule jitter: how late after its time a tick's event is sent. The schedules' loop runs
//! alone (sled journal, an unconsumed in-memory queue, the system clock) with a
//! `rate = "1 second"` schedule starting on a whole second; the bench looks at the queue every
//! millisecond and takes each new message's lateness past its tick. Prints p50, p99 and max.
//!
//! `cargo bench --bench schedule` (`TUGBOAT_BENCH_TICKS`, default 60: a minute).

#[path = "common.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tugboat::ports::Queue;
use tugboat::ports::clock::{SystemClock, system_ms};
use tugboat::ports::memory::MemoryQueue;
use tugboat::schedule::runner::Scheduler;
use tugboat::schedule::{Schedule, ScheduleConfig};

#[tokio::main]
async fn main() {
    let ticks: usize = std::env::var("TUGBOAT_BENCH_TICKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let dir = tempfile::tempdir().unwrap();
    let journal =
        Arc::new(tugboat::journal::sled::SledJournal::open(&dir.path().join("j")).unwrap());
    // The first tick two whole seconds from now.
    let start_ms = (system_ms() / 1000 + 2) * 1000;
    let start = jiff::Timestamp::from_millisecond(start_ms as i64).unwrap();
    let config: ScheduleConfig = toml::from_str(&format!(
        "name = \"bench\"\nrate = \"1 second\"\nstart = \"{start}\"\n[event]\nsource = \"bench\"\ndetail-type = \"tick\"\n"
    ))
    .unwrap();
    let schedule = Schedule::compile(&config, &["q"]).unwrap();
    let queue = Arc::new(MemoryQueue::new("q"));
    let scheduler = Scheduler {
        schedules: vec![schedule],
        queues: BTreeMap::from([("q".to_owned(), queue.clone() as Arc<dyn Queue>)]),
        journal,
        clock: Arc::new(SystemClock),
        region: "us-east-1".into(),
        metrics: Arc::new(tugboat::metrics::Metrics::default()),
    };
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(scheduler.run(shutdown));
    let mut late = Vec::with_capacity(ticks);
    let mut seen = 0;
    while late.len() < ticks {
        let n = queue.len();
        let now = system_ms() as i64;
        for i in seen..n {
            let tick = start_ms as i64 + i as i64 * 1000;
            late.push(now - tick);
        }
        seen = n;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    stop.send(true).unwrap();
    running.await.unwrap();
    late.sort();
    let at = |q: f64| late[((late.len() as f64 * q).ceil() as usize).clamp(1, late.len()) - 1];
    println!("machine: {}", common::machine());
    println!(
        "schedule jitter over {} ticks of rate(1 second): p50 {} ms, p99 {} ms, max {} ms (lateness of the send past the tick, seen by polling every 1 ms)",
        late.len(),
        at(0.5),
        at(0.99),
        late[late.len() - 1]
    );
}
