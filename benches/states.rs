//! Benchmark: a five-state definition (Amazon States Language) run by the engine, beside the
//! built-in `log` workflow, both through `App::build` over an in-memory queue and the durable
//! sled journal. The definition enters five states (Choice, Pass, Task, Pass, Task) and makes
//! two effects, each a journaled step — as `log` makes two steps (its log line, its publish).
//! Prints workflows/s, state transitions/s, journal writes/s and the ratios.
//!
//!     cargo bench --bench states -- --workflows 20000

#[allow(dead_code, reason = "the benchmark uses part of the tests' harness")]
#[path = "../tests/support/app.rs"]
mod app;
#[path = "common.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TimedJournal, machine};
use serde_json::json;
use tugboat::app::Dependencies;
use tugboat::journal::sled::SledJournal;
use tugboat::ports::memory::{MemoryQueue, MemoryQueues};

/// Five states, two of them Tasks.
const FIVE: &str = r#"{"StartAt": "Classify", "States": {
  "Classify": {"Type": "Choice", "Choices": [{"Variable": "$.source", "StringEquals": "bench", "Next": "Shape"}], "Default": "Ignore"},
  "Shape": {"Type": "Pass", "Parameters": {"id.$": "$.id", "source.$": "$.source"}, "Next": "Log"},
  "Log": {"Type": "Task", "Resource": "arn:aws:states:::sns:publish", "Parameters": {"TopicArn": "arn:aws:sns:us-east-1:000000000000:bench", "Message.$": "$.id"}, "ResultPath": "$.logged", "Next": "Count"},
  "Count": {"Type": "Pass", "Result": 1, "ResultPath": "$.n", "Next": "Notify"},
  "Notify": {"Type": "Task", "Resource": "arn:aws:states:::sns:publish", "Parameters": {"TopicArn": "arn:aws:sns:us-east-1:000000000000:bench", "Message.$": "States.Format('done {}', $.id)"}, "End": true},
  "Ignore": {"Type": "Succeed"}}}"#;

/// (workflows/s, journal writes in all, seconds) for `workflows` events through `workflow`.
async fn run(
    workflow: &str,
    params: &str,
    sections: &str,
    workflows: usize,
    concurrency: u32,
) -> (f64, usize, f64) {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(TimedJournal {
        inner: Arc::new(SledJournal::open(dir.path()).unwrap()),
        latencies: Default::default(),
    });
    let queue = Arc::new(MemoryQueue::new("bench"));
    common::fill(&queue, workflows, |i| json!({"n": i})).await;
    let queues = Arc::new(MemoryQueues::default());
    queues.add(queue.clone());
    let mut deps = Dependencies::memory(queues);
    deps.journal = Some(journal.clone());
    let start = Instant::now();
    let app = app::spawn_app(
        &common::config_with("bench", workflow, params, sections, concurrency),
        deps,
    )
    .await;
    while queue.deleted() < workflows as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    app.stop().await;
    let puts = journal.latencies.lock().unwrap().len();
    (workflows as f64 / elapsed, puts, elapsed)
}

fn main() {
    let workflows = common::arg("--workflows", 20_000);
    let concurrency = common::arg("--concurrency", 100) as u32;
    println!("machine: {}", machine());
    let sections = format!("[workflows.five]\ndefinition_json = '''{FIVE}'''\n");
    let (log_wps, log_puts, log_s) =
        common::in_system(run("log", "{}", "", workflows, concurrency));
    let (def_wps, def_puts, def_s) = common::in_system(run(
        "states",
        "{ definition = \"five\" }",
        &sections,
        workflows,
        concurrency,
    ));
    println!("{workflows} events, {concurrency} in flight, sled journal:");
    println!(
        "  log (2 steps):                       {log_wps:>9.0} workflows/s  {:>9.0} journal writes/s",
        log_puts as f64 / log_s
    );
    println!(
        "  definition (5 states, 2 Tasks):      {def_wps:>9.0} workflows/s  {:>9.0} journal writes/s  {:>9.0} state transitions/s",
        def_puts as f64 / def_s,
        def_wps * 5.0
    );
    println!(
        "  definition ÷ log, workflows/s (= steps/s: two each): {:.2}",
        def_wps / log_wps
    );
    println!(
        "  definition's state transitions/s ÷ log's steps/s:   {:.2}",
        def_wps * 5.0 / (log_wps * 2.0)
    );
}
