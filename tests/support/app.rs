//! The service in process, built by `App::build` exactly as `tugboat serve` builds it, with the
//! dependencies a test chooses (in-memory queues and ports, or the emulator's SQS with fake
//! ports) — the one harness for in-process tests and benchmarks (zero-to-production's
//! `spawn_app`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tugboat::app::{App, AppError, Dependencies, Stopper};

// By path, so that the benches that include this file alone get it too.
#[path = "wait.rs"]
pub mod wait;
use tugboat::config::Config;
use tugboat::intake::IntakeStats;
use tugboat::journal::{Journal, ListFilter, Record};

/// A running service. Must be used inside an actix System (`#[actix_rt::test]`).
pub struct TestApp {
    pub journal: Arc<dyn Journal>,
    pub admin: std::net::SocketAddr,
    stats: Vec<(String, Arc<IntakeStats>)>,
    stopper: Stopper,
    run: Option<actix_rt::task::JoinHandle<Result<(), AppError>>>,
}

/// The service's dependencies over the emulator, as `serve` builds them from `config` (TOML
/// with the emulator's `[aws]`, see [`super::aws_section`]), with a sled journal at `journal`.
pub async fn emulator_deps(config: &str, journal: &Path) -> Dependencies {
    let catalog = tugboat::workflows::Catalog::builtin();
    let config = Config::from_toml_str(
        config,
        Path::new("bench.toml"),
        signing_env(config),
        &catalog,
    )
    .unwrap();
    let mut deps = Dependencies::aws(&config).await.unwrap();
    deps.journal = Some(Arc::new(
        tugboat::journal::sled::SledJournal::open(journal).unwrap(),
    ));
    deps
}

/// The signing key every test service and agent shares (`[security] signing_key`, given
/// through the environment as an operator would): retries, redrives and agent notices are
/// signed with it. Tests of what happens without it, or with another, say so.
pub const SIGNING_KEY: &str = "tugboat-tests-signing-key-0123456789abcdef";

/// The test signing key as an operator gives it (`TUGBOAT__SECURITY__SIGNING_KEY`), unless
/// the configuration has a `[security]` section of its own.
fn signing_env(config: &str) -> Vec<(String, String)> {
    if config.contains("[security]") {
        return vec![];
    }
    vec![("TUGBOAT__SECURITY__SIGNING_KEY".into(), SIGNING_KEY.into())]
}

/// Loads `config` (TOML) against the dependencies' catalog, builds the service and runs it.
pub async fn spawn_app(config: &str, deps: Dependencies) -> TestApp {
    let config = Config::from_toml_str(
        config,
        Path::new("test.toml"),
        signing_env(config),
        &deps.catalog,
    )
    .unwrap_or_else(|e| panic!("test config: {e}"));
    let app = App::build(config, deps)
        .await
        .unwrap_or_else(|e| panic!("building the service: {e}"));
    let journal = app.journal();
    let stats = app.stats();
    let stopper = app.stopper();
    let admin = app.admin_addr();
    TestApp {
        journal,
        admin,
        stats,
        stopper,
        run: Some(actix_rt::spawn(app.run_until_stopped())),
    }
}

impl TestApp {
    /// The counters of the configured queue `queue`.
    pub fn stats(&self, queue: &str) -> &IntakeStats {
        &self
            .stats
            .iter()
            .find(|(q, _)| q == queue)
            .unwrap_or_else(|| panic!("no queue {queue} in the test config"))
            .1
    }

    /// The record of `id`, if any. (Sync, for `until`'s closures: the test apps' journals
    /// answer at once.)
    pub fn try_record(&self, id: &str) -> Option<Record> {
        use futures::FutureExt;
        self.journal
            .get(id)
            .now_or_never()
            .expect("the journal answers at once")
            .unwrap()
    }

    pub fn record(&self, id: &str) -> Record {
        self.try_record(id)
            .unwrap_or_else(|| panic!("no journal record {id}"))
    }

    pub fn statuses(&self) -> Vec<String> {
        use futures::FutureExt;
        self.journal
            .list(&ListFilter::default())
            .now_or_never()
            .expect("the journal answers at once")
            .unwrap()
            .iter()
            .map(|r| r.status.name().to_owned())
            .collect()
    }

    /// Waits until `done` holds, for at most `secs` seconds; a failure shows the journal.
    pub async fn until(&self, what: &str, secs: u64, done: impl Fn(&TestApp) -> bool) {
        wait::until_explained(
            what,
            Duration::from_secs(secs),
            async || done(self),
            || format!("journal: {:?}", self.statuses()),
        )
        .await
    }

    /// Stops the service as SIGTERM does and waits until it has shut down.
    pub async fn stop(mut self) -> Arc<dyn Journal> {
        self.stopper.stop();
        let run = self.run.take().expect("running");
        run.await
            .expect("the service's task")
            .unwrap_or_else(|e| panic!("shutdown: {e}"));
        self.journal.clone()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stopper.stop();
    }
}

/// The service over an in-memory work queue (`work`) and its DLQ (`work-dlq`), with an
/// in-memory journal: a test sees exactly when each message is deleted or dead-lettered.
pub struct MemoryApp {
    pub queue: Arc<tugboat::ports::memory::MemoryQueue>,
    pub dlq: Arc<tugboat::ports::memory::MemoryQueue>,
    pub app: TestApp,
}

/// Starts [`MemoryApp`] with `config` (its queue must be `work` with `dlq = "work-dlq"`);
/// `adjust` swaps in the real adapter a test is about (`deps.ports.http = …`).
pub async fn spawn_memory_app(config: &str, adjust: impl FnOnce(&mut Dependencies)) -> MemoryApp {
    use tugboat::ports::memory::{MemoryQueue, MemoryQueues};
    let queue = Arc::new(MemoryQueue::new("work"));
    let dlq = Arc::new(MemoryQueue::new("work-dlq"));
    let queues = Arc::new(MemoryQueues::default());
    queues.add(queue.clone());
    queues.add(dlq.clone());
    let mut deps = Dependencies::memory(queues);
    deps.journal = Some(Arc::new(tugboat::journal::memory::MemoryJournal::default()));
    adjust(&mut deps);
    MemoryApp {
        queue,
        dlq,
        app: spawn_app(config, deps).await,
    }
}

impl MemoryApp {
    /// Puts `body` on the work queue.
    pub async fn send(&self, body: &str) {
        use tugboat::ports::{OutgoingMessage, Queue};
        let m = OutgoingMessage {
            body: body.into(),
            ..Default::default()
        };
        self.queue.send(&m).await.unwrap();
    }
}

/// Waits until `done` holds, for at most `secs` seconds.
pub async fn until(what: &str, secs: u64, done: impl Fn() -> bool) {
    wait::until(what, Duration::from_secs(secs), async || done()).await
}
