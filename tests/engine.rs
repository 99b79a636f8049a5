//! The engine in process: intake, dispatcher, supervised workflow actors and the journal, with
//! in-memory queues and a counting effect port that can fail, panic or stall on demand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::watch;

use tugboat::actors::intake::{Intake, IntakeConfig, IntakeStats, REDRIVE_ATTRIBUTE};
use tugboat::config::{PatternSource, RouteConfig, UnmatchedPolicy};
use tugboat::engine::effects::CustomPort;
use tugboat::engine::{Dispatcher, Engine, EngineOptions, PortEffects, StepContext};
use tugboat::journal::memory::MemoryJournal;
use tugboat::journal::sled::SledJournal;
use tugboat::journal::{Journal, ListFilter, Status};
use tugboat::ports::memory::{MemoryNotifier, MemoryQueue, attributes};
use tugboat::ports::{OutgoingMessage, Queue};
use tugboat::retry::RetryPolicy;
use tugboat::routing::Router;
use tugboat::workflows::{Action, Call, Next, Registry, StepError, Transition, Workflow};

/// A workflow of `params.steps` (default 3) calls to the `effect` port, compensated by `undo`.
struct Steps;

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        initial_interval: Duration::from_millis(10),
        coefficient: 2.0,
        max_interval: Duration::from_millis(40),
        max_attempts: 4,
        deadline: None,
    }
}

fn effect_step(n: u64) -> Action {
    Action {
        step: format!("step-{n}"),
        call: Call::Custom {
            port: "effect".into(),
            input: json!({"n": n}),
        },
        retry: fast_retry(),
    }
}

impl Workflow for Steps {
    fn kind(&self) -> &'static str {
        "steps"
    }

    fn start(&self, event: &Value, params: &Value) -> Result<Transition, String> {
        if event.pointer("/detail/refuse").is_some() {
            return Err("the event asks to be refused".into());
        }
        let total = params.get("steps").and_then(Value::as_u64).unwrap_or(3);
        Ok(Transition {
            state: json!({"done": 0, "total": total}),
            next: Next::Run(effect_step(1)),
        })
    }

    fn advance(
        &self,
        mut state: Value,
        step: &str,
        outcome: Result<Value, StepError>,
    ) -> Transition {
        if let Err(e) = outcome {
            return Transition {
                state,
                next: Next::Fail(format!("{step}: {}", e.message)),
            };
        }
        let done = state["done"].as_u64().unwrap_or(0) + 1;
        state["done"] = json!(done);
        let next = if done >= state["total"].as_u64().unwrap_or(0) {
            Next::Complete(json!({"steps": done}))
        } else {
            Next::Run(effect_step(done + 1))
        };
        Transition { state, next }
    }

    fn compensation(&self, state: &Value) -> Vec<Action> {
        vec![Action::new(
            "undo",
            Call::Custom {
                port: "undo".into(),
                input: state.clone(),
            },
        )]
    }
}

#[derive(Debug, Clone)]
enum Behaviour {
    FailRetryable(u32),
    FailPermanent,
    Panic(u32),
    Stall(Duration),
}

/// Counts calls by idempotency key, as AWS would deduplicate them, and misbehaves on demand
/// for the step number `n` of its input.
#[derive(Default)]
struct EffectPort {
    calls: Mutex<Vec<String>>,
    behaviour: Mutex<HashMap<u64, Behaviour>>,
}

impl EffectPort {
    fn set(&self, n: u64, b: Behaviour) {
        self.behaviour.lock().unwrap().insert(n, b);
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn distinct(&self) -> usize {
        let mut c = self.calls();
        c.sort();
        c.dedup();
        c.len()
    }
}

#[async_trait]
impl CustomPort for EffectPort {
    async fn call(&self, ctx: StepContext<'_>, input: &Value) -> Result<Value, StepError> {
        let n = input["n"].as_u64().unwrap_or(0);
        self.calls.lock().unwrap().push(ctx.idempotency_key());
        let behaviour = self.behaviour.lock().unwrap().get(&n).cloned();
        match behaviour {
            Some(Behaviour::FailRetryable(k)) if k > 0 => {
                self.set(n, Behaviour::FailRetryable(k - 1));
                Err(StepError::retryable("ThrottlingException: slow down"))
            }
            Some(Behaviour::FailPermanent) => {
                Err(StepError::permanent("ValidationException: no such thing"))
            }
            Some(Behaviour::Panic(k)) if k > 0 => {
                self.set(n, Behaviour::Panic(k - 1));
                panic!("effect {n} panicked on purpose");
            }
            Some(Behaviour::Stall(d)) => {
                tokio::time::sleep(d).await;
                Ok(json!({"n": n}))
            }
            _ => Ok(json!({"n": n})),
        }
    }
}

struct Harness {
    queue: Arc<MemoryQueue>,
    dlq: Arc<MemoryQueue>,
    journal: Arc<dyn Journal>,
    effect: Arc<EffectPort>,
    undo: Arc<EffectPort>,
    stats: Arc<IntakeStats>,
    shutdown: watch::Sender<bool>,
    intake: Option<actix_rt::task::JoinHandle<()>>,
}

struct Setup {
    queue: Arc<MemoryQueue>,
    dlq: Arc<MemoryQueue>,
    journal: Arc<dyn Journal>,
    effect: Arc<EffectPort>,
    visibility: Duration,
    options: EngineOptions,
    unmatched: UnmatchedPolicy,
    params: toml::Table,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            queue: Arc::new(MemoryQueue::new("work")),
            dlq: Arc::new(MemoryQueue::new("work-dlq")),
            journal: Arc::new(MemoryJournal::default()),
            effect: Arc::new(EffectPort::default()),
            visibility: Duration::from_secs(30),
            options: EngineOptions {
                max_panics: 3,
                ..EngineOptions::default()
            },
            unmatched: UnmatchedPolicy::Acknowledge,
            params: toml::Table::new(),
        }
    }

    fn start(self) -> Harness {
        let undo = Arc::new(EffectPort::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut registry = Registry::default();
        registry.register(Arc::new(Steps));
        let mut effects = PortEffects {
            notifier: Some(Arc::new(MemoryNotifier::default())),
            ..Default::default()
        };
        effects.custom.insert("effect".into(), self.effect.clone());
        effects.custom.insert("undo".into(), undo.clone());
        let engine = Arc::new(Engine::new(
            self.journal.clone(),
            registry,
            Arc::new(effects),
            self.options,
            shutdown_rx.clone(),
        ));
        let pattern: toml::Table = toml::from_str("source = [\"test\"]").unwrap();
        let router = Router::from_config(&[RouteConfig {
            name: "all".into(),
            pattern: PatternSource::Table(pattern),
            workflow: "steps".into(),
            params: self.params,
            queues: None,
        }])
        .unwrap();
        let stats = Arc::new(IntakeStats::default());
        let intake = Arc::new(Intake {
            config: IntakeConfig {
                queue: "work".into(),
                concurrency: 10,
                visibility_timeout: self.visibility,
                wait: Duration::from_millis(20),
                unmatched: self.unmatched,
                shutdown_deadline: Duration::from_secs(2),
            },
            queue: self.queue.clone(),
            dlq: Some(self.dlq.clone()),
            router: Arc::new(router),
            dispatcher: Dispatcher::new(engine),
            stats: stats.clone(),
        });
        let handle = actix_rt::spawn(intake.run(shutdown_rx));
        Harness {
            queue: self.queue,
            dlq: self.dlq,
            journal: self.journal,
            effect: self.effect,
            undo,
            stats,
            shutdown,
            intake: Some(handle),
        }
    }
}

impl Harness {
    async fn send(&self, body: &str) {
        self.queue
            .send(&OutgoingMessage {
                body: body.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    /// Waits until `done` holds, for at most 10 s.
    async fn until(&self, what: &str, done: impl Fn(&Harness) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(
        mut self,
    ) -> (
        Arc<MemoryQueue>,
        Arc<MemoryQueue>,
        Arc<dyn Journal>,
        Arc<EffectPort>,
    ) {
        self.shutdown.send(true).unwrap();
        self.intake.take().unwrap().await.unwrap();
        (self.queue, self.dlq, self.journal, self.effect)
    }

    fn statuses(&self) -> Vec<String> {
        self.journal
            .list(&ListFilter::default())
            .unwrap()
            .iter()
            .map(|r| r.status.name().to_owned())
            .collect()
    }
}

fn event(id: &str) -> String {
    json!({"version": "0", "id": id, "source": "test", "detail-type": "t", "detail": {}})
        .to_string()
}

#[actix_rt::test]
async fn a_message_flows_to_a_journaled_workflow_and_is_deleted() {
    let h = Setup::new().start();
    h.send(&event("e-1")).await;
    h.until("the message is deleted", |h| h.queue.deleted() == 1)
        .await;
    let r = h.journal.get("all:e-1").unwrap().expect("journaled");
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(r.steps.len(), 3);
    assert!(
        r.steps
            .iter()
            .all(|s| s.attempts == 1 && s.finished_ms.is_some())
    );
    assert_eq!(r.output, Some(json!({"steps": 3})));
    assert_eq!(h.effect.calls().len(), 3);
    h.stop().await;
}

#[actix_rt::test]
async fn the_same_event_twice_runs_once() {
    let h = Setup::new().start();
    h.effect
        .set(1, Behaviour::Stall(Duration::from_millis(200)));
    // Concurrently (the second attaches to the running instance) and after completion (the
    // journal answers at once).
    h.send(&event("dup")).await;
    h.send(&event("dup")).await;
    h.until("both are deleted", |h| h.queue.deleted() == 2)
        .await;
    h.send(&event("dup")).await;
    h.until("the third is deleted", |h| h.queue.deleted() == 3)
        .await;
    assert_eq!(h.effect.calls().len(), 3, "{:?}", h.effect.calls());
    assert_eq!(h.statuses(), ["succeeded"]);
    h.stop().await;
}

#[actix_rt::test]
async fn retryable_failures_are_retried_with_persisted_attempts() {
    let h = Setup::new().start();
    h.effect.set(2, Behaviour::FailRetryable(2));
    h.send(&event("retry")).await;
    h.until("deleted", |h| h.queue.deleted() == 1).await;
    let r = h.journal.get("all:retry").unwrap().unwrap();
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(r.step("step-2").unwrap().attempts, 3);
    assert_eq!(h.effect.calls().len(), 5);
    assert_eq!(
        h.effect.distinct(),
        3,
        "retries reuse the step's idempotency key"
    );
    h.stop().await;
}

#[actix_rt::test]
async fn a_permanent_failure_is_compensated_and_dead_lettered_with_attributes() {
    let h = Setup::new().start();
    h.effect.set(2, Behaviour::FailPermanent);
    h.send(&event("bad")).await;
    h.until("dead-lettered", |h| {
        h.dlq.len() == 1 && h.queue.deleted() == 1
    })
    .await;
    let copy = &h.dlq.messages()[0];
    assert_eq!(copy.body, event("bad"));
    let a = &copy.attributes;
    assert_eq!(a["tugboat-workflow"], "steps");
    assert_eq!(a["tugboat-workflow-id"], "all:bad");
    assert_eq!(a["tugboat-route"], "all");
    assert_eq!(a["tugboat-step"], "step-2");
    assert_eq!(
        a["tugboat-attempts"], "1",
        "a permanent error is not retried"
    );
    assert!(a["tugboat-error"].contains("ValidationException"), "{a:?}");
    assert!(
        a["tugboat-compensation"].contains("compensate:undo: done"),
        "{a:?}"
    );
    assert!(a.contains_key("tugboat-original-message-id") && a.contains_key("tugboat-failed-at"));
    assert_eq!(h.undo.calls().len(), 1);
    let r = h.journal.get("all:bad").unwrap().unwrap();
    assert!(
        matches!(r.status, Status::DeadLettered { .. }),
        "{:?}",
        r.status
    );
    // A redelivery of the same event (not a redrive) is acknowledged without running again.
    h.send(&event("bad")).await;
    h.until("acknowledged", |h| h.queue.deleted() == 2).await;
    assert_eq!(h.effect.calls().len(), 2);
    h.stop().await;
}

#[actix_rt::test]
async fn exhausted_retries_dead_letter_and_a_redrive_runs_again_and_succeeds() {
    let h = Setup::new().start();
    h.effect.set(1, Behaviour::FailRetryable(100));
    h.send(&event("flaky")).await;
    h.until("dead-lettered", |h| h.dlq.len() == 1).await;
    let a = &h.dlq.messages()[0].attributes;
    assert_eq!(a["tugboat-attempts"], "4");
    assert!(
        a["tugboat-error"].contains("gave up after 4 attempts"),
        "{a:?}"
    );

    // The fix: the port works again. A redriven copy starts the instance afresh.
    h.effect.set(1, Behaviour::FailRetryable(0));
    let redriven = OutgoingMessage {
        body: event("flaky"),
        attributes: attributes([(REDRIVE_ATTRIBUTE, "1")]),
        ..Default::default()
    };
    h.queue.send(&redriven).await.unwrap();
    h.until("the redriven message is deleted", |h| {
        h.queue.deleted() == 2
    })
    .await;
    let r = h.journal.get("all:flaky").unwrap().unwrap();
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(r.redrives, 1);
    h.stop().await;
}

#[actix_rt::test]
async fn a_panicking_step_restarts_from_the_journal_and_repeated_panics_dead_letter() {
    let h = Setup::new().start();
    h.effect.set(2, Behaviour::Panic(1));
    h.send(&event("once")).await;
    h.until("deleted", |h| h.queue.deleted() == 1).await;
    let r = h.journal.get("all:once").unwrap().unwrap();
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(r.panics, 1);
    assert_eq!(
        r.step("step-1").unwrap().attempts,
        1,
        "the restart resumed after step 1"
    );

    h.effect.set(3, Behaviour::Panic(100));
    h.send(&event("always")).await;
    h.until("dead-lettered", |h| h.dlq.len() == 1).await;
    let r = h.journal.get("all:always").unwrap().unwrap();
    assert_eq!(r.panics, 3);
    assert!(h.dlq.messages()[0].attributes["tugboat-error"].contains("panicked 3 times"));
    // The queue keeps flowing.
    h.send(&event("after")).await;
    h.until("deleted", |h| h.queue.deleted() == 3).await;
    h.stop().await;
}

#[actix_rt::test]
async fn bad_input_goes_to_the_dlq_with_a_reason_and_good_messages_still_flow() {
    let mut setup = Setup::new();
    setup.unmatched = UnmatchedPolicy::DeadLetter;
    let h = setup.start();
    let huge = format!(
        "{{\"source\":\"test\",\"detail-type\":\"t\",\"detail\":{{\"x\":\"{}\"}}}}",
        "a".repeat(300 * 1024)
    );
    let cases: Vec<(String, &str)> = vec![
        ("not json at all".into(), "not valid JSON"),
        ("[1, 2, 3]".into(), "not an object"),
        ("\"just a string\"".into(), "not an object"),
        ("{\"hello\": \"world\"}".into(), "unknown event shape"),
        (
            "{\"source\": \"test\"}".into(),
            "missing field \"detail-type\"",
        ),
        (
            "{\"source\": 7, \"detail-type\": \"t\"}".into(),
            "\"source\" must be a string",
        ),
        (
            "{\"source\": \"test\", \"detail-type\": \"t\", \"detail\": []}".into(),
            "\"detail\" must be an object",
        ),
        (
            "{\"Records\": \"nope\"}".into(),
            "\"Records\" must be an array",
        ),
        (huge, "over the limit"),
        ("\u{0}\u{1}\u{2}binary\u{7f}".into(), "not valid JSON"),
        (
            "{\"source\": \"other\", \"detail-type\": \"t\"}".into(),
            "no route matched",
        ),
        (
            json!({"source": "test", "detail-type": "t", "detail": {"refuse": true}}).to_string(),
            "cannot start",
        ),
    ];
    for (body, _) in &cases {
        h.send(body).await;
    }
    h.send(&event("good")).await;
    h.until("every message is settled", |h| h.queue.is_empty())
        .await;
    let dead = h.dlq.messages();
    assert_eq!(dead.len(), cases.len());
    for (body, reason) in &cases {
        let d = dead
            .iter()
            .find(|d| &d.body == body)
            .unwrap_or_else(|| panic!("no DLQ copy of {:.60}", body));
        assert!(
            d.attributes["tugboat-error"].contains(reason),
            "{:.60}: {:?}",
            body,
            d.attributes["tugboat-error"]
        );
    }
    assert_eq!(
        h.journal.get("all:good").unwrap().unwrap().status,
        Status::Succeeded
    );
    assert_eq!(
        h.stats
            .decode_errors
            .load(std::sync::atomic::Ordering::Relaxed),
        10
    );
    h.stop().await;
}

#[actix_rt::test]
async fn a_step_longer_than_the_visibility_timeout_is_not_redelivered() {
    let mut setup = Setup::new();
    setup.visibility = Duration::from_secs(1);
    let h = setup.start();
    h.effect
        .set(2, Behaviour::Stall(Duration::from_millis(2500)));
    h.send(&event("slow")).await;
    h.until("deleted", |h| h.queue.deleted() == 1).await;
    assert_eq!(
        h.effect.calls().len(),
        3,
        "no second delivery ran the workflow again"
    );
    assert!(
        h.stats
            .visibility_extensions
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
    h.stop().await;
}

#[actix_rt::test]
async fn a_long_backoff_releases_the_message_instead_of_sleeping() {
    let mut setup = Setup::new();
    // Every back-off is "long": the message is released with ChangeMessageVisibility.
    setup.options.max_in_process_wait = Duration::ZERO;
    let h = setup.start();
    h.effect.set(1, Behaviour::FailRetryable(1));
    h.send(&event("later")).await;
    h.until("deleted", |h| h.queue.deleted() == 1).await;
    assert_eq!(
        h.stats.released.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        h.stats.received.load(std::sync::atomic::Ordering::Relaxed),
        2,
        "resumed on redelivery"
    );
    let r = h.journal.get("all:later").unwrap().unwrap();
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(
        r.step("step-1").unwrap().attempts,
        2,
        "the attempt count survived the release"
    );
    assert_eq!(h.effect.distinct(), 3);
    h.stop().await;
}

#[actix_rt::test]
async fn shutdown_releases_in_flight_messages_and_the_next_process_resumes_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new();
    setup.journal = Arc::new(SledJournal::open(dir.path()).unwrap());
    let h = setup.start();
    h.effect.set(2, Behaviour::Stall(Duration::from_secs(5)));
    h.send(&event("inflight")).await;
    h.until("step 2 is running", |h| h.effect.calls().len() == 2)
        .await;
    let started = Instant::now();
    let (queue, dlq, journal, effect) = h.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the shutdown deadline (2 s) bounds the wait"
    );
    assert_eq!(queue.len(), 1, "released, not deleted");
    assert_eq!(
        journal.get("all:inflight").unwrap().unwrap().status,
        Status::Running
    );
    drop(journal);
    // In this test the "old process" lives on: its stalled step still holds the journal until
    // it reaches a journaled point (in production the process has exited by then).
    let reopened = {
        let start = Instant::now();
        loop {
            match SledJournal::open(dir.path()) {
                Ok(j) => break j,
                Err(e) => assert!(start.elapsed() < Duration::from_secs(10), "{e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };

    // A new process on the same journal resumes at step 2 (its attempt was journaled).
    effect.set(2, Behaviour::Stall(Duration::ZERO));
    let mut setup = Setup::new();
    setup.queue = queue;
    setup.dlq = dlq;
    setup.effect = effect;
    setup.journal = Arc::new(reopened);
    let h = setup.start();
    h.until("deleted", |h| h.queue.deleted() == 1).await;
    let r = h.journal.get("all:inflight").unwrap().unwrap();
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(
        r.step("step-1").unwrap().attempts,
        1,
        "step 1 did not run again"
    );
    assert_eq!(
        h.effect.distinct(),
        3,
        "every effect ran under its own step's key"
    );
    assert!(h.effect.calls().len() <= 4, "{:?}", h.effect.calls());
    h.stop().await;
}
