//! Shared by the benchmark programs: a no-op workflow, a journal that times its commits, and
//! a description of the machine.

#![allow(
    dead_code,
    reason = "each benchmark program uses a different part of this module"
)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The service binary's allocator, so that what a benchmark measures in process is what
/// `tugboat serve` runs (and the plain client loops beside it get it too).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use async_trait::async_trait;
use serde_json::{Value, json};
use tugboat::contract::{Act, Flow, Next, StepContext, StepError};
use tugboat::journal::{Journal, JournalError, ListFilter, Record};

/// Three steps, each performed by the workflow's handler, which does nothing.
pub struct Noop;

fn step(n: u64) -> Next<Act<u64>> {
    Next::Run(Act::handler(format!("step-{n}"), n))
}

#[async_trait]
impl Flow for Noop {
    const KIND: &'static str = "noop";
    type State = u64;
    type Step = u64;

    fn start(&self, _event: &Value, _params: &Value) -> Result<(u64, Next<Act<u64>>), String> {
        Ok((0, step(1)))
    }

    fn advance(
        &self,
        done: &mut u64,
        _step: u64,
        outcome: Result<Value, StepError>,
    ) -> Next<Act<u64>> {
        *done += 1;
        match outcome {
            Err(e) => Next::Fail(e.message),
            Ok(_) if *done >= 3 => Next::Complete(json!({"steps": *done})),
            Ok(_) => step(*done + 1),
        }
    }

    async fn perform(&self, _ctx: StepContext<'_>, _step: &u64) -> Result<Value, StepError> {
        Ok(json!({}))
    }
}

/// The service's configuration for a benchmark: one queue whose one route sends every
/// `"source": "bench"` event to `workflow`, `concurrency` messages and instances at once.
pub fn config(queue: &str, workflow: &str, concurrency: u32) -> String {
    config_with(queue, workflow, "{}", "", concurrency)
}

/// The same, with the route's `params` (a TOML inline table) and the sections the workflow
/// owns (`[brokers.b]` …).
pub fn config_with(
    queue: &str,
    workflow: &str,
    params: &str,
    sections: &str,
    concurrency: u32,
) -> String {
    format!(
        r#"[aws]
region = "us-east-1"

[[queues]]
name = "{queue}"
concurrency = {concurrency}
visibility_timeout = "300s"
receive_wait = "1s"

[[routes]]
name = "b"
pattern = {{ source = ["bench"] }}
workflow = "{workflow}"
params = {params}

[admin]
listen = "127.0.0.1:0"

[engine]
workflow_concurrency = {concurrency}

[shutdown]
deadline = "5s"

{sections}
"#
    )
}

/// Puts `events` bench events on `queue` (`id` `e-<i>`, `source` `bench`, the detail `detail`
/// gives for each), ten a batch.
pub async fn fill(
    queue: &tugboat::ports::memory::MemoryQueue,
    events: usize,
    detail: impl Fn(usize) -> Value,
) {
    use tugboat::ports::{OutgoingMessage, Queue};
    let bodies: Vec<OutgoingMessage> = (0..events)
        .map(|i| OutgoingMessage {
            body: json!({"id": format!("e-{i}"), "source": "bench", "detail-type": "b", "detail": detail(i)})
                .to_string(),
            ..Default::default()
        })
        .collect();
    for batch in bodies.chunks(10) {
        queue.send_batch(batch).await.unwrap();
    }
}

/// A journal that counts its puts and records how long each took to become durable.
#[derive(Debug)]
pub struct TimedJournal {
    pub inner: Arc<dyn Journal>,
    pub latencies: Mutex<Vec<Duration>>,
}

#[async_trait]
impl Journal for TimedJournal {
    async fn get(&self, id: &str) -> Result<Option<Record>, JournalError> {
        self.inner.get(id).await
    }
    async fn put(&self, record: &Record) -> Result<(), JournalError> {
        let start = Instant::now();
        let r = self.inner.put(record).await;
        self.latencies.lock().unwrap().push(start.elapsed());
        r
    }
    async fn list(&self, filter: &ListFilter) -> Result<Vec<Record>, JournalError> {
        self.inner.list(filter).await
    }
    fn flush(&self) -> Result<(), JournalError> {
        self.inner.flush()
    }
    async fn setting(&self, key: &str) -> Result<Option<serde_json::Value>, JournalError> {
        self.inner.setting(key).await
    }
    async fn put_setting(&self, key: &str, value: &serde_json::Value) -> Result<(), JournalError> {
        self.inner.put_setting(key, value).await
    }
}

/// The p-th percentile (0..=100) of `values`.
pub fn percentile(values: &mut [Duration], p: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    values.sort();
    let i = ((values.len() - 1) as f64 * p / 100.0).round() as usize;
    values[i]
}

/// "model name, N cores" from /proc/cpuinfo.
pub fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown CPU")
        .to_owned();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("{model}, {cores} cores")
}

/// The value after `--name` on the command line, or `default`.
pub fn arg(name: &str, default: usize) -> usize {
    arg_text(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The text after `--name` on the command line, if given.
pub fn arg_text(name: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.next()?;
    args.next()
}

/// Runs `work` the way `serve` runs the service: an actix System over a multi-threaded tokio
/// runtime, inside a `LocalSet` (the actors and the intake's tasks are local to it).
pub fn in_system<F: std::future::Future>(work: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let system = actix_rt::System::with_tokio_rt(move || runtime);
    let local = tokio::task::LocalSet::new();
    system.block_on(local.run_until(work))
}
