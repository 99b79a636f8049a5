//! The engine without an actor system: the dispatcher with [`TaskSpawn`], an in-memory
//! journal and notifier, and a small workflow whose handler scripts its outcomes. Time is
//! tokio's paused clock, which the engine's clock follows: back-offs take no real time.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::dispatcher::{Redrive, StartRequest};
use super::*;
use crate::contract::{Act, Decision, Flow, Next, StepContext, StepError, Typed};
use crate::events::Event;
use crate::journal::Status;
use crate::journal::memory::MemoryJournal;
use crate::ports::memory::MemoryNotifier;
use crate::workflows::{Catalog, Registration, Setup};

/// Two handler steps, `a` then `b`, undone by `undo`; the outcomes of `b` are scripted.
struct Two {
    b: Mutex<Vec<Result<Value, StepError>>>,
    keys: Mutex<Vec<(String, String)>>,
    panic_in_b: Mutex<u32>,
}

impl Two {
    fn new(b: Vec<Result<Value, StepError>>) -> Two {
        Two {
            b: Mutex::new(b),
            keys: Mutex::new(Vec::new()),
            panic_in_b: Mutex::new(0),
        }
    }
}

#[async_trait]
impl Flow for Two {
    const KIND: &'static str = "two";
    type State = Vec<String>;
    type Step = String;

    fn start(&self, _e: &Value, _p: &Value) -> Result<(Vec<String>, Decision<String>), String> {
        Ok((vec![], Next::Run(Act::handler("a", "a".to_owned()))))
    }

    fn advance(
        &self,
        done: &mut Vec<String>,
        step: String,
        outcome: Result<Value, StepError>,
    ) -> Decision<String> {
        if let Err(e) = outcome {
            return Next::Fail(format!("{step}: {}", e.message));
        }
        done.push(step.clone());
        match step.as_str() {
            "a" => Next::Run(Act::handler("b", "b".to_owned())),
            _ => Next::Complete(json!({"done": done})),
        }
    }

    fn compensation(&self, done: &Vec<String>) -> Vec<Act<String>> {
        done.iter()
            .map(|s| Act::handler(format!("undo-{s}"), format!("undo-{s}")))
            .collect()
    }

    async fn perform(&self, ctx: StepContext<'_>, step: &String) -> Result<Value, StepError> {
        self.keys
            .lock()
            .unwrap()
            .push((step.clone(), ctx.idempotency_key()));
        if step == "b" {
            let mut panics = self.panic_in_b.lock().unwrap();
            if *panics > 0 {
                *panics -= 1;
                drop(panics);
                panic!("b panicked on purpose");
            }
            drop(panics);
            let mut b = self.b.lock().unwrap();
            if !b.is_empty() {
                return b.remove(0);
            }
        }
        Ok(json!({}))
    }
}

/// The in-memory journal, counting its writes.
#[derive(Debug, Default)]
struct Counting {
    inner: MemoryJournal,
    puts: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Journal for Counting {
    async fn get(
        &self,
        id: &str,
    ) -> Result<Option<crate::journal::Record>, crate::journal::JournalError> {
        self.inner.get(id).await
    }
    async fn put(
        &self,
        record: &crate::journal::Record,
    ) -> Result<(), crate::journal::JournalError> {
        self.puts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.put(record).await
    }
    async fn list(
        &self,
        filter: &crate::journal::ListFilter,
    ) -> Result<Vec<crate::journal::Record>, crate::journal::JournalError> {
        self.inner.list(filter).await
    }
    fn flush(&self) -> Result<(), crate::journal::JournalError> {
        self.inner.flush()
    }
    async fn setting(
        &self,
        key: &str,
    ) -> Result<Option<serde_json::Value>, crate::journal::JournalError> {
        self.inner.setting(key).await
    }
    async fn put_setting(
        &self,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<(), crate::journal::JournalError> {
        self.inner.put_setting(key, value).await
    }
}

async fn dispatcher(two: Arc<Typed<Two>>) -> (Arc<Dispatcher>, Arc<dyn Journal>) {
    dispatcher_over(two, Arc::new(MemoryJournal::default())).await
}

async fn dispatcher_over(
    two: Arc<Typed<Two>>,
    journal: Arc<dyn Journal>,
) -> (Arc<Dispatcher>, Arc<dyn Journal>) {
    dispatcher_with(two, journal, EngineOptions::default()).await
}

async fn dispatcher_with(
    two: Arc<Typed<Two>>,
    journal: Arc<dyn Journal>,
    options: EngineOptions,
) -> (Arc<Dispatcher>, Arc<dyn Journal>) {
    let d = engine_for(Registration::ready(two), journal.clone(), options).await;
    (d, journal)
}

/// A dispatcher on plain tokio tasks over `journal`, with the built-in workflows and `test`.
async fn engine_for(
    test: Registration,
    journal: Arc<dyn Journal>,
    options: EngineOptions,
) -> Arc<Dispatcher> {
    let (tx, shutdown) = watch::channel(false);
    // Kept for the test's lifetime: a closed channel reads as shutdown, which would cut
    // short an in-process back-off.
    Box::leak(Box::new(tx));
    engine_over(test, journal, options, shutdown).await
}

/// [`engine_for`] with the default options, whose shutdown the test holds.
async fn engine_with_shutdown(
    test: Registration,
    journal: Arc<dyn Journal>,
    shutdown: watch::Receiver<bool>,
) -> Arc<Dispatcher> {
    engine_over(test, journal, EngineOptions::default(), shutdown).await
}

async fn engine_over(
    test: Registration,
    journal: Arc<dyn Journal>,
    options: EngineOptions,
    shutdown: watch::Receiver<bool>,
) -> Arc<Dispatcher> {
    let config = crate::config::Config::from_toml_str(
        "[aws]\nregion = \"us-east-1\"\n",
        std::path::Path::new("t.toml"),
        std::iter::empty(),
        &Catalog::builtin(),
    )
    .unwrap();
    let ports = crate::ports::Ports::memory();
    let registry = Catalog::builtin()
        .with(test)
        .build(Setup {
            config: &config,
            ports: &ports,
        })
        .await
        .unwrap();
    let engine = Arc::new(
        Engine::new(
            journal,
            registry,
            Arc::new(MemoryNotifier::default()),
            options,
            shutdown,
        )
        .with_clock(ports.clock.clone()),
    );
    Dispatcher::new(engine, Arc::new(TaskSpawn))
}

fn request(redrive: Option<Redrive>) -> StartRequest {
    StartRequest {
        route: "r".into(),
        workflow: "two".into(),
        params: json!({}),
        event: Event {
            identity: "e-1".into(),
            body: json!({"source": "test"}),
        },
        queue: "q".into(),
        message_id: "m-1".into(),
        trace: None,
        redrive,
        instance: None,
    }
}

#[tokio::test(start_paused = true)]
async fn an_instance_runs_to_success_on_plain_tokio_tasks() {
    let two = Arc::new(Typed(Two::new(vec![])));
    let (d, journal) = dispatcher(two.clone()).await;
    assert_eq!(d.start(request(None)).await, RunResult::Succeeded);
    let r = journal.get("r:e-1").await.unwrap().unwrap();
    assert_eq!(r.output, Some(json!({"done": ["a", "b"]})));
    assert_eq!(d.running_count(), 0);
    // Delivered again: answered from the journal, nothing runs.
    assert_eq!(d.start(request(None)).await, RunResult::Succeeded);
    assert_eq!(two.0.keys.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn each_step_costs_one_durable_write_and_each_attempt_is_journaled_before_its_call() {
    let two = Arc::new(Typed(Two::new(vec![
        Err(StepError::retryable("busy")),
        Ok(json!({})),
    ])));
    let counting = Arc::new(Counting::default());
    let (d, journal) = dispatcher_over(two, counting.clone()).await;
    assert_eq!(d.start(request(None)).await, RunResult::Succeeded);
    // The instance with a's first attempt; a's outcome with b's first attempt; b's failure;
    // b's second attempt; b's outcome with the completion.
    assert_eq!(counting.puts.load(std::sync::atomic::Ordering::Relaxed), 5);
    let r = journal.get("r:e-1").await.unwrap().unwrap();
    let attempts: Vec<(String, u32)> = r
        .steps
        .iter()
        .map(|s| (s.name.clone(), s.attempts))
        .collect();
    assert_eq!(attempts, [("a".to_string(), 1), ("b".to_string(), 2)]);
    // The metrics saw the same: three attempts, one retry, five commits, one end.
    let m = &d.engine().metrics;
    let step = |s: &str| crate::metrics::StepLabels {
        workflow: r.workflow.clone(),
        step: s.into(),
    };
    assert_eq!(m.step_attempts.get_or_create(&step("b")).get(), 2);
    assert_eq!(m.step_retries.get_or_create(&step("b")).get(), 1);
    assert_eq!(m.step_retries.get_or_create(&step("a")).get(), 0);
    let text = crate::metrics::text(&m.registry(Box::new(NoMore)));
    assert!(
        text.contains("tugboat_journal_commit_seconds_count 5"),
        "{text}"
    );
    assert!(
        text.contains("tugboat_step_duration_seconds_count{workflow=\"two\",step=\"b\",outcome=\"retryable\"} 1"),
        "{text}"
    );
}

/// No metrics collected at scrape time.
#[derive(Debug)]
struct NoMore;

impl crate::metrics::Collector for NoMore {
    fn encode(
        &self,
        _: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_failure_compensates_in_journaled_steps_and_a_redrive_is_a_new_generation() {
    let two = Arc::new(Typed(Two::new(vec![Err(StepError::permanent("no"))])));
    let (d, journal) = dispatcher(two.clone()).await;
    let RunResult::Failed(f) = d.start(request(None)).await else {
        panic!("expected a failure")
    };
    assert_eq!(f.reason, "b: no");
    assert_eq!(f.step.as_deref(), Some("b"));
    assert_eq!(f.compensation, ["compensate:undo-a: done"]);
    assert_eq!(f.generation, 0);
    let r = journal.get("r:e-1").await.unwrap().unwrap();
    assert!(matches!(r.status, Status::Failed { .. }));
    assert!(r.step("compensate:undo-a").unwrap().compensation);
    d.mark_dead_lettered("r:e-1", &f.reason).await.unwrap();

    // A plain redelivery is acknowledged; a redrive of generation 0 runs generation 1.
    assert_eq!(d.start(request(None)).await, RunResult::DeadLettered);
    assert_eq!(
        d.start(request(Some(Redrive::Of(0)))).await,
        RunResult::Succeeded
    );
    let r = journal.get("r:e-1").await.unwrap().unwrap();
    assert_eq!(r.generation, 1);
    assert_eq!(r.earlier[0].steps.len(), 3);
    let keys = two.0.keys.lock().unwrap().clone();
    let a_keys: Vec<&String> = keys
        .iter()
        .filter(|(s, _)| s == "a")
        .map(|(_, k)| k)
        .collect();
    assert_eq!(a_keys.len(), 2);
    assert_ne!(a_keys[0], a_keys[1], "step a ran again under a new key");
    // A duplicate of the same redrive changes nothing.
    assert_eq!(
        d.start(request(Some(Redrive::Of(0)))).await,
        RunResult::Succeeded
    );
    assert_eq!(two.0.keys.lock().unwrap().len(), keys.len());
}

#[tokio::test(start_paused = true)]
async fn a_panicking_step_is_restarted_by_the_task_spawner_and_compensated_after_too_many() {
    let two = Arc::new(Typed(Two::new(vec![])));
    *two.0.panic_in_b.lock().unwrap() = 1;
    let (d, journal) = dispatcher(two.clone()).await;
    assert_eq!(d.start(request(None)).await, RunResult::Succeeded);
    assert_eq!(journal.get("r:e-1").await.unwrap().unwrap().panics, 1);

    let two = Arc::new(Typed(Two::new(vec![])));
    *two.0.panic_in_b.lock().unwrap() = 100;
    let (d, _) = dispatcher(two.clone()).await;
    let RunResult::Failed(f) = d.start(request(None)).await else {
        panic!("expected a failure")
    };
    assert!(f.reason.contains("panicked 3 times"), "{}", f.reason);
    assert_eq!(f.compensation, ["compensate:undo-a: done"]);
}

/// Waits until the journal's record of `id` satisfies `ok`.
async fn until(journal: &Arc<dyn Journal>, id: &str, ok: impl Fn(&crate::journal::Record) -> bool) {
    for _ in 0..500 {
        if let Ok(Some(r)) = journal.get(id).await
            && ok(&r)
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{id} never got there: {:?}", journal.get(id).await);
}

#[tokio::test(start_paused = true)]
async fn a_cancel_ends_a_back_off_at_once_compensates_and_ends_cancelled() {
    let busy = (0..50).map(|_| Err(StepError::retryable("busy"))).collect();
    let two = Arc::new(Typed(Two::new(busy)));
    let (d, journal) = dispatcher(two.clone()).await;
    let run = tokio::spawn({
        let d = d.clone();
        async move { d.start(request(None)).await }
    });
    until(&journal, "r:e-1", |r| {
        r.step("b").is_some_and(|b| b.attempts >= 1)
    })
    .await;
    // On the engine's clock (virtual time: a back-off left to run would move it on).
    let asked = tokio::time::Instant::now();
    assert_eq!(
        d.cancel("r:e-1", "test").await,
        Ok(super::dispatcher::Cancelled::Requested)
    );
    assert_eq!(run.await.unwrap(), RunResult::Cancelled);
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(1),
        "the back-off was not cut short"
    );
    let r = journal.get("r:e-1").await.unwrap().unwrap();
    assert_eq!(r.status.name(), "cancelled");
    assert_eq!(r.cancel.as_ref().map(|c| c.by.as_str()), Some("test"));
    assert!(
        r.step("compensate:undo-a")
            .is_some_and(|s| s.output.is_some())
    );
    // Every attempt of b is on the record, each with its end and error.
    let b = r.step("b").unwrap();
    assert_eq!(b.tries.len() as u32, b.attempts);
    assert!(
        b.tries.iter().all(|t| t.ended_ms.is_some()),
        "{:?}",
        b.tries
    );
    // The message comes back: acknowledged; the instance cannot be cancelled again.
    assert_eq!(d.start(request(None)).await, RunResult::Cancelled);
    assert!(matches!(
        d.cancel("r:e-1", "test").await,
        Err(super::dispatcher::CancelError::NotNow(_))
    ));
    assert_eq!(
        d.cancel("r:nope", "test").await,
        Err(super::dispatcher::CancelError::NotFound)
    );
}

#[tokio::test(start_paused = true)]
async fn a_waiting_instance_is_cancelled_now_and_a_retry_starts_its_next_generation() {
    // Back-offs longer than this release the message: the instance waits with nobody
    // running it.
    let options = EngineOptions {
        max_in_process_wait: std::time::Duration::from_millis(1),
        ..EngineOptions::default()
    };
    let two = Arc::new(Typed(Two::new(vec![Err(StepError::retryable("busy"))])));
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::default());
    let (d, journal) = dispatcher_with(two.clone(), journal, options).await;
    assert!(matches!(
        d.start(request(None)).await,
        RunResult::RetryLater(_)
    ));
    assert_eq!(
        journal.get("r:e-1").await.unwrap().unwrap().status.name(),
        "waiting"
    );
    assert_eq!(
        d.cancel("r:e-1", "console").await,
        Ok(super::dispatcher::Cancelled::Running)
    );
    until(&journal, "r:e-1", |r| r.status.name() == "cancelled").await;
    assert_eq!(d.start(request(None)).await, RunResult::Cancelled);

    // A retry names the instance and the cancelled run.
    let mut retry = request(Some(Redrive::Of(0)));
    retry.instance = Some("r:e-1".into());
    retry.event.identity = "other".into();
    assert_eq!(d.start(retry.clone()).await, RunResult::Succeeded);
    let r = journal.get("r:e-1").await.unwrap().unwrap();
    assert_eq!((r.generation, r.status.name()), (1, "succeeded"));
    assert!(
        r.earlier[0].ended.starts_with("cancelled"),
        "{}",
        r.earlier[0].ended
    );
    assert!(r.cancel.is_none());
    // A duplicate of the retry message changes nothing.
    assert_eq!(d.start(retry).await, RunResult::Succeeded);
    assert_eq!(journal.get("r:e-1").await.unwrap().unwrap().generation, 1);
}

#[tokio::test(start_paused = true)]
async fn paused_routes_are_kept_in_the_journal() {
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::default());
    let paused = Paused::default();
    let mut changes = paused.subscribe();
    assert_eq!(
        paused.set(journal.as_ref(), "r", true).await.unwrap(),
        ["r"]
    );
    assert!(paused.contains("r") && !paused.contains("s"));
    assert!(changes.has_changed().unwrap());
    changes.mark_unchanged();
    // Another process (a fresh set) reads the same from the journal.
    let other = Paused::default();
    assert!(other.load(journal.as_ref()).await.unwrap());
    assert!(other.contains("r"));
    assert!(
        paused
            .set(journal.as_ref(), "r", false)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(changes.has_changed().unwrap());
    assert!(other.load(journal.as_ref()).await.unwrap() && !other.contains("r"));
}

/// One handler step with scripted outcomes, whose message is its record (a delivery).
struct Deliver {
    outcomes: Mutex<Vec<Result<Value, StepError>>>,
    calls: std::sync::atomic::AtomicUsize,
    /// Attempts that panic before the scripted outcomes are taken.
    panics: std::sync::atomic::AtomicU32,
}

#[async_trait]
impl Flow for Deliver {
    const KIND: &'static str = "deliver";
    const DURABILITY: crate::contract::Durability = crate::contract::Durability::Message;
    type State = ();
    type Step = String;

    fn start(&self, _e: &Value, _p: &Value) -> Result<((), Decision<String>), String> {
        Ok(((), Next::Run(Act::handler("send", "send".to_owned()))))
    }

    fn advance(
        &self,
        _: &mut (),
        _: String,
        outcome: Result<Value, StepError>,
    ) -> Decision<String> {
        match outcome {
            Ok(v) => Next::Complete(v),
            Err(e) => Next::Fail(e.message),
        }
    }

    async fn perform(&self, _ctx: StepContext<'_>, _step: &String) -> Result<Value, StepError> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let panics = &self.panics;
        if panics.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            panics.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            panic!("send panicked on purpose");
        }
        let mut outcomes = self.outcomes.lock().unwrap();
        match outcomes.is_empty() {
            true => Ok(json!({"status": 200})),
            false => outcomes.remove(0),
        }
    }
}

async fn deliverer(
    outcomes: Vec<Result<Value, StepError>>,
) -> (Arc<Dispatcher>, Arc<Counting>, Arc<Typed<Deliver>>) {
    let deliver = Arc::new(Typed(Deliver {
        outcomes: Mutex::new(outcomes),
        calls: Default::default(),
        panics: Default::default(),
    }));
    let counting = Arc::new(Counting::default());
    let d = engine_for(
        Registration::ready(deliver.clone()),
        counting.clone(),
        EngineOptions::default(),
    )
    .await;
    (d, counting, deliver)
}

fn delivery() -> StartRequest {
    StartRequest {
        workflow: "deliver".into(),
        ..request(None)
    }
}

fn puts(counting: &Counting) -> usize {
    counting.puts.load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test(start_paused = true)]
async fn a_delivery_that_goes_well_writes_nothing_and_is_kept_among_the_recent() {
    let (d, counting, deliver) = deliverer(vec![]).await;
    assert_eq!(d.start(delivery()).await, RunResult::Succeeded);
    assert_eq!(puts(&counting), 0, "no journal write");
    assert!(counting.get("r:e-1").await.unwrap().is_none());
    let kept = d.engine().recent("r:e-1").expect("kept among the recent");
    assert_eq!(kept.status, Status::Succeeded);
    assert_eq!(kept.output, Some(json!({"status": 200})));
    // Its step's key was not made while it ran (a SHA-256 a delivery need not pay); the
    // console's view of it has it.
    let key = crate::contract::run_key("r:e-1", 0, 0, &kept.steps[0].name);
    assert_eq!(kept.steps[0].key, key);
    assert_eq!(d.running_count(), 0);
    // Delivered again (the delete was lost): at least once, it runs again.
    assert_eq!(d.start(delivery()).await, RunResult::Succeeded);
    assert_eq!(
        deliver.0.calls.load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    assert_eq!(puts(&counting), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_journals_the_delivery_and_its_retries_count_from_there() {
    let (d, counting, deliver) = deliverer(vec![
        Err(StepError::retryable("503")),
        Err(StepError::retryable("503")),
        Ok(json!({"status": 204})),
    ])
    .await;
    assert_eq!(d.start(delivery()).await, RunResult::Succeeded);
    assert_eq!(
        deliver.0.calls.load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    let r = counting
        .get("r:e-1")
        .await
        .unwrap()
        .expect("journaled once it failed");
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(
        r.steps[0].attempts, 3,
        "every attempt counted, the first included"
    );
    assert_eq!(r.output, Some(json!({"status": 204})));
    assert_eq!(
        r.steps[0].key,
        crate::contract::run_key("r:e-1", 0, 0, &r.steps[0].name),
        "the key deferred while unjournaled is written with the record"
    );
    // Journaled at the first back-off, then each attempt and the end: never before.
    assert!(puts(&counting) >= 2, "{} writes", puts(&counting));
}

#[tokio::test(start_paused = true)]
async fn a_direct_delivery_is_shown_as_the_lifecycle_would_have_journaled_it() {
    let (d, counting, _) = deliverer(vec![]).await;
    let before = d.engine().clock.now_ms();
    assert_eq!(d.start(delivery()).await, RunResult::Succeeded);
    assert_eq!(puts(&counting), 0);
    let r = d.engine().recent("r:e-1").expect("kept among the recent");
    assert_eq!((r.id.as_str(), r.route.as_str()), ("r:e-1", "r"));
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(r.output, Some(json!({"status": 200})));
    assert_eq!(r.input, delivery().event.body, "the event, for the console");
    assert!(r.pending.is_none() && r.last_error.is_none());
    let steps: Vec<_> = (r.steps.iter())
        .map(|s| (s.name.as_str(), s.attempts, s.output.clone()))
        .collect();
    assert_eq!(steps, [("send", 1, Some(json!({"status": 200})))]);
    assert!(r.steps[0].finished_ms.is_some());
    assert!(before <= r.created_ms && r.created_ms <= r.updated_ms);
    assert_eq!(d.engine().recent_list().len(), 1);
    // Counted as a journaled success is: started, one attempt, one end.
    let m = &d.engine().metrics;
    let step = crate::metrics::StepLabels {
        workflow: "deliver".into(),
        step: "send".into(),
    };
    assert_eq!(m.step_attempts.get_or_create(&step).get(), 1);
    let text = crate::metrics::text(&m.registry(Box::new(NoMore)));
    for line in [
        "tugboat_workflows_started_total{route=\"r\",workflow=\"deliver\"} 1",
        "tugboat_workflows_finished_total{route=\"r\",workflow=\"deliver\",outcome=\"succeeded\"} 1",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_direct_attempt_is_counted_once_and_not_made_again() {
    let (d, counting, deliver) = deliverer(vec![Err(StepError::retryable("503"))]).await;
    assert_eq!(d.start(delivery()).await, RunResult::Succeeded);
    assert_eq!(
        deliver.0.calls.load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    let r = counting.get("r:e-1").await.unwrap().expect("journaled");
    assert_eq!(r.steps[0].attempts, 2);
    let m = &d.engine().metrics;
    let step = crate::metrics::StepLabels {
        workflow: "deliver".into(),
        step: "send".into(),
    };
    assert_eq!(
        m.step_attempts.get_or_create(&step).get(),
        2,
        "the direct attempt and the retry"
    );
    assert_eq!(m.step_retries.get_or_create(&step).get(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_a_direct_delivery_fails_it_with_the_reason_and_journals_nothing() {
    let (d, counting, deliver) = deliverer(vec![]).await;
    deliver
        .0
        .panics
        .store(1, std::sync::atomic::Ordering::Relaxed);
    let RunResult::Failed(f) = d.start(delivery()).await else {
        panic!("not failed")
    };
    assert!(
        f.reason.contains("send panicked on purpose"),
        "{}",
        f.reason
    );
    assert_eq!(puts(&counting), 0);
    assert_eq!(d.running_count(), 0);
    // The message again (a redrive runs it journaled): it is delivered.
    assert_eq!(d.start(delivery()).await, RunResult::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn a_delivery_that_arrives_during_shutdown_is_released_untried() {
    let journal = Arc::new(Counting::default());
    let deliver = Arc::new(Typed(Deliver {
        outcomes: Mutex::new(vec![]),
        calls: Default::default(),
        panics: Default::default(),
    }));
    let (stop, shutdown) = watch::channel(false);
    let d = engine_with_shutdown(
        Registration::ready(deliver.clone()),
        journal.clone(),
        shutdown,
    )
    .await;
    stop.send_replace(true);
    assert_eq!(d.start(delivery()).await, RunResult::Released);
    assert_eq!(
        deliver.0.calls.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(puts(&journal), 0);
}

#[tokio::test(start_paused = true)]
async fn a_delivery_that_fails_for_good_is_journaled_with_its_reason_and_answered_from_it() {
    let (d, counting, deliver) = deliverer(vec![Err(StepError::permanent("HTTP 400: no"))]).await;
    let RunResult::Failed(f) = d.start(delivery()).await else {
        panic!("not failed")
    };
    assert!(f.reason.contains("HTTP 400"), "{}", f.reason);
    let r = counting
        .get("r:e-1")
        .await
        .unwrap()
        .expect("the failure is journaled");
    assert!(matches!(r.status, Status::Failed { .. }), "{:?}", r.status);
    // Its message again (before the DLQ hand-off settled): answered from the journal.
    assert!(matches!(d.start(delivery()).await, RunResult::Failed(_)));
    assert_eq!(
        deliver.0.calls.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}
