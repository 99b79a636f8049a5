//! Shared by the benchmark programs: a no-op workflow, a journal that times its commits, and
//! a description of the machine.

#![allow(
    dead_code,
    reason = "each benchmark program uses a different part of this module"
)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use tugboat::engine::StepContext;
use tugboat::engine::effects::CustomPort;
use tugboat::journal::{Journal, JournalError, ListFilter, Record};
use tugboat::workflows::{Action, Call, Next, StepError, Transition, Workflow};

/// Three steps, each a call to the `noop` port.
pub struct Noop;

fn step(n: u64) -> Action {
    Action::new(
        format!("step-{n}"),
        Call::Custom {
            port: "noop".into(),
            input: json!({"n": n}),
        },
    )
}

impl Workflow for Noop {
    fn kind(&self) -> &'static str {
        "noop"
    }
    fn start(&self, _event: &Value, _params: &Value) -> Result<Transition, String> {
        Ok(Transition {
            state: json!(0),
            next: Next::Run(step(1)),
        })
    }
    fn advance(&self, state: Value, _step: &str, outcome: Result<Value, StepError>) -> Transition {
        let done = state.as_u64().unwrap_or(0) + 1;
        let next = match outcome {
            Err(e) => Next::Fail(e.message),
            Ok(_) if done >= 3 => Next::Complete(json!({"steps": done})),
            Ok(_) => Next::Run(step(done + 1)),
        };
        Transition {
            state: json!(done),
            next,
        }
    }
}

pub struct NoopPort;

#[async_trait]
impl CustomPort for NoopPort {
    async fn call(&self, _ctx: StepContext<'_>, _input: &Value) -> Result<Value, StepError> {
        Ok(json!({}))
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
    fn get(&self, id: &str) -> Result<Option<Record>, JournalError> {
        self.inner.get(id)
    }
    async fn put(&self, record: &Record) -> Result<(), JournalError> {
        let start = Instant::now();
        let r = self.inner.put(record).await;
        self.latencies.lock().unwrap().push(start.elapsed());
        r
    }
    fn list(&self, filter: &ListFilter) -> Result<Vec<Record>, JournalError> {
        self.inner.list(filter)
    }
    fn flush(&self) -> Result<(), JournalError> {
        self.inner.flush()
    }
}

/// An intake on `queue` whose one route sends every `"source": "bench"` event to `workflow`.
pub fn bench_intake(
    queue: Arc<dyn tugboat::ports::Queue>,
    engine: Arc<tugboat::engine::Engine>,
    workflow: &str,
    concurrency: u32,
    wait: Duration,
) -> Arc<tugboat::actors::intake::Intake> {
    use tugboat::actors::intake::{Intake, IntakeConfig, IntakeStats};
    use tugboat::config::{PatternSource, RouteConfig, UnmatchedPolicy};
    let pattern: toml::Table = toml::from_str("source = [\"bench\"]").unwrap();
    let router = tugboat::routing::Router::from_config(&[RouteConfig {
        name: "b".into(),
        pattern: PatternSource::Table(pattern),
        workflow: workflow.into(),
        params: Default::default(),
        queues: None,
    }])
    .unwrap();
    Arc::new(Intake {
        config: IntakeConfig {
            queue: queue.name().to_owned(),
            concurrency,
            visibility_timeout: Duration::from_secs(300),
            wait,
            unmatched: UnmatchedPolicy::Acknowledge,
            shutdown_deadline: Duration::from_secs(5),
        },
        queue,
        dlq: None,
        router: Arc::new(router),
        dispatcher: tugboat::engine::Dispatcher::new(engine),
        stats: Arc::new(IntakeStats::default()),
    })
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
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
