//! The service in process — built by `App::build` as `serve` builds it — with in-memory
//! queues and a test workflow whose handler counts its calls and can fail, panic or stall on
//! demand: flow, dedupe, retries, compensation and the DLQ, redrives, panics, bad input,
//! visibility, long back-offs, shutdown and resume.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use support::app::{TestApp, spawn_app};
use tugboat::app::Dependencies;
use tugboat::contract::{Act, Decision, Flow, Next, RetryPolicy, StepContext, StepError, Typed};
use tugboat::intake::attributes::{self, REDRIVE};
use tugboat::journal::memory::MemoryJournal;
use tugboat::journal::sled::SledJournal;
use tugboat::journal::{Journal, Status};
use tugboat::ports::memory::{MemoryQueue, MemoryQueues};
use tugboat::ports::{OutgoingMessage, Queue};
use tugboat::workflows::{Catalog, Registration};

/// A workflow of `params.steps` (default 3) calls to the `effect` port, each tried at most
/// `params.attempts` (default 4) times, compensated by `undo`.
struct Steps {
    effect: Arc<EffectPort>,
    undo: Arc<EffectPort>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Step {
    Effect(u64),
    Undo,
}

#[derive(Debug, Serialize, Deserialize)]
struct State {
    done: u64,
    total: u64,
    attempts: u32,
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        initial_interval: Duration::from_millis(10),
        coefficient: 2.0,
        max_interval: Duration::from_millis(40),
        max_attempts: 4,
        deadline: None,
    }
}

fn effect_step(n: u64, attempts: u32) -> Decision<Step> {
    let retry = RetryPolicy {
        max_attempts: attempts,
        ..fast_retry()
    };
    Next::Run(Act::handler(format!("step-{n}"), Step::Effect(n)).retry(retry))
}

#[async_trait]
impl Flow for Steps {
    const KIND: &'static str = "steps";
    type State = State;
    type Step = Step;

    fn start(&self, event: &Value, params: &Value) -> Result<(State, Decision<Step>), String> {
        if event.pointer("/detail/refuse").is_some() {
            return Err("the event asks to be refused".into());
        }
        let total = params.get("steps").and_then(Value::as_u64).unwrap_or(3);
        let attempts = params.get("attempts").and_then(Value::as_u64).unwrap_or(4) as u32;
        let first = effect_step(1, attempts);
        Ok((
            State {
                done: 0,
                total,
                attempts,
            },
            first,
        ))
    }

    fn advance(
        &self,
        s: &mut State,
        step: Step,
        outcome: Result<Value, StepError>,
    ) -> Decision<Step> {
        if let Err(e) = outcome {
            return Next::Fail(format!("{step:?}: {}", e.message));
        }
        s.done += 1;
        if s.done >= s.total {
            Next::Complete(json!({"steps": s.done}))
        } else {
            effect_step(s.done + 1, s.attempts)
        }
    }

    fn compensation(&self, _s: &State) -> Vec<Act<Step>> {
        vec![Act::handler("undo", Step::Undo).retry(fast_retry())]
    }

    async fn perform(&self, ctx: StepContext<'_>, step: &Step) -> Result<Value, StepError> {
        match step {
            Step::Effect(n) => self.effect.call(ctx, *n).await,
            Step::Undo => self.undo.call(ctx, 0).await,
        }
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
/// for step number `n`.
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

    async fn call(&self, ctx: StepContext<'_>, n: u64) -> Result<Value, StepError> {
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
    effect: Arc<EffectPort>,
    undo: Arc<EffectPort>,
    app: TestApp,
}

struct Setup {
    queue: Arc<MemoryQueue>,
    dlq: Arc<MemoryQueue>,
    journal: Arc<dyn Journal>,
    effect: Arc<EffectPort>,
    undo: Arc<EffectPort>,
    visibility: &'static str,
    max_in_process_wait: &'static str,
    unmatched: &'static str,
    params: &'static str,
}

impl Setup {
    fn new() -> Setup {
        let dlq = Arc::new(MemoryQueue::new("work-dlq"));
        Setup {
            queue: Arc::new(MemoryQueue::new("work")),
            dlq,
            journal: Arc::new(MemoryJournal::default()),
            effect: Arc::new(EffectPort::default()),
            undo: Arc::new(EffectPort::default()),
            visibility: "30s",
            max_in_process_wait: "20s",
            unmatched: "acknowledge",
            params: "{}",
        }
    }

    /// The work queue with SQS's redrive policy: a receive beyond `max` moves a message to
    /// the DLQ, as the shipped migrations configure it (3).
    fn with_redrive(mut self, max: u32) -> Setup {
        self.queue = Arc::new(MemoryQueue::with_redrive("work", max, self.dlq.clone()));
        self
    }

    async fn start(self) -> Harness {
        let queues = Arc::new(MemoryQueues::default());
        queues.add(self.queue.clone());
        queues.add(self.dlq.clone());
        let steps = Steps {
            effect: self.effect.clone(),
            undo: self.undo.clone(),
        };
        let mut deps = Dependencies::memory(queues);
        deps.journal = Some(self.journal.clone());
        deps.catalog = Catalog::builtin().with(Registration::ready(Arc::new(Typed(steps))));
        let config = format!(
            r#"unmatched = "{unmatched}"

[aws]
region = "us-east-1"

[[queues]]
name = "work"
dlq = "work-dlq"
visibility_timeout = "{visibility}"
receive_wait = "100ms"

[[routes]]
name = "all"
pattern = {{ source = ["test"] }}
workflow = "steps"
params = {params}

[admin]
listen = "127.0.0.1:0"

[engine]
max_in_process_wait = "{wait}"
max_panics = 3

[shutdown]
deadline = "2s"
"#,
            unmatched = self.unmatched,
            visibility = self.visibility,
            params = self.params,
            wait = self.max_in_process_wait,
        );
        let app = spawn_app(&config, deps).await;
        Harness {
            queue: self.queue,
            dlq: self.dlq,
            effect: self.effect,
            undo: self.undo,
            app,
        }
    }
}

impl Harness {
    async fn send(&self, body: &str) {
        self.send_with(body, Default::default()).await;
    }

    async fn send_with(&self, body: &str, attributes: std::collections::BTreeMap<String, String>) {
        self.queue
            .send(&OutgoingMessage {
                body: body.into(),
                attributes,
                ..Default::default()
            })
            .await
            .unwrap();
    }

    /// Waits until `done` holds, for at most 10 s; a failure shows the journal.
    async fn until(&self, what: &str, done: impl Fn(&Harness) -> bool) {
        support::wait::until_explained(
            what,
            Duration::from_secs(10),
            async || done(self),
            || format!("journal: {:?}", self.app.statuses()),
        )
        .await
    }

    fn stat(
        &self,
        read: impl Fn(&tugboat::intake::IntakeStats) -> &std::sync::atomic::AtomicU64,
    ) -> u64 {
        read(self.app.stats("work")).load(std::sync::atomic::Ordering::Relaxed)
    }

    fn statuses(&self) -> Vec<String> {
        self.app.statuses()
    }

    async fn stop(self) -> (Setup, Arc<dyn Journal>) {
        let journal = self.app.stop().await;
        let mut next = Setup::new();
        next.queue = self.queue;
        next.dlq = self.dlq;
        next.effect = self.effect;
        next.undo = self.undo;
        next.journal = journal.clone();
        (next, journal)
    }
}

fn event(id: &str) -> String {
    json!({"version": "0", "id": id, "source": "test", "detail-type": "t", "detail": {}})
        .to_string()
}

#[actix_rt::test]
async fn a_message_flows_to_a_journaled_workflow_and_is_deleted() {
    let h = Setup::new().start().await;
    h.send(&event("e-1")).await;
    h.until("the message is deleted", |h| h.queue.deleted() == 1)
        .await;
    let r = h
        .app
        .journal
        .get("all:e-1")
        .await
        .unwrap()
        .expect("journaled");
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(r.steps.len(), 3);
    assert!(
        r.steps
            .iter()
            .all(|s| s.attempts == 1 && s.finished_ms.is_some())
    );
    assert_eq!(r.output, Some(json!({"steps": 3})));
    assert_eq!(h.effect.calls().len(), 3);
    h.app.stop().await;
}

#[actix_rt::test]
async fn the_same_event_twice_runs_once() {
    let h = Setup::new().start().await;
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
    h.app.stop().await;
}

#[actix_rt::test]
async fn retryable_failures_are_retried_with_persisted_attempts() {
    let h = Setup::new().start().await;
    h.effect.set(2, Behaviour::FailRetryable(2));
    h.send(&event("retry")).await;
    h.until("deleted", |h| h.queue.deleted() == 1).await;
    let r = h.app.journal.get("all:retry").await.unwrap().unwrap();
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(r.step("step-2").unwrap().attempts, 3);
    assert_eq!(h.effect.calls().len(), 5);
    assert_eq!(
        h.effect.distinct(),
        3,
        "retries reuse the step's idempotency key"
    );
    h.app.stop().await;
}

#[actix_rt::test]
async fn a_permanent_failure_is_compensated_and_dead_lettered_with_attributes() {
    let h = Setup::new().start().await;
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
    let r = h.app.journal.get("all:bad").await.unwrap().unwrap();
    assert!(
        matches!(r.status, Status::DeadLettered { .. }),
        "{:?}",
        r.status
    );
    // A redelivery of the same event (not a redrive) is acknowledged without running again.
    h.send(&event("bad")).await;
    h.until("acknowledged", |h| h.queue.deleted() == 2).await;
    assert_eq!(h.effect.calls().len(), 2);
    h.app.stop().await;
}

#[actix_rt::test]
async fn exhausted_retries_dead_letter_and_a_redrive_is_a_new_generation() {
    let h = Setup::new().start().await;
    h.effect.set(2, Behaviour::FailRetryable(100));
    h.send(&event("flaky")).await;
    h.until("dead-lettered", |h| h.dlq.len() == 1).await;
    let dead = h.dlq.messages().remove(0);
    let a = &dead.attributes;
    assert_eq!(a["tugboat-attempts"], "4");
    assert_eq!(a["tugboat-generation"], "0");
    assert!(
        a["tugboat-error"].contains("gave up after 4 attempts"),
        "{a:?}"
    );
    let first_run: Vec<String> = h.effect.calls();
    assert_eq!(first_run.len(), 5, "step 1 once, step 2 four times");

    // The fix: the port works again. `tugboat dlq redrive` sends the copy back marked with
    // the run that failed; it starts the instance's next generation under new keys.
    h.effect.set(2, Behaviour::FailRetryable(0));
    let mut back = attributes::redriven(&dead.attributes, "dlq-message-1");
    assert_eq!(back[REDRIVE], "g0");
    let key = tugboat::signing::SigningKey::parse(support::SIGNING_KEY).unwrap();
    attributes::sign_control(&mut back, &dead.body, &key, tugboat::journal::now_ms());
    h.send_with(&dead.body, back.clone()).await;
    h.until("the redriven message is deleted", |h| {
        h.queue.deleted() == 2
    })
    .await;
    let r = h.app.record("all:flaky");
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(r.generation, 1);
    assert_eq!(r.earlier.len(), 1, "the first run is kept");
    assert_eq!(
        r.earlier[0]
            .steps
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["step-1", "step-2", "compensate:undo"]
    );
    assert!(
        r.earlier[0].ended.starts_with("dead_lettered"),
        "{}",
        r.earlier[0].ended
    );
    let second_run: Vec<String> = h.effect.calls()[first_run.len()..].to_vec();
    assert_eq!(second_run.len(), 3);
    for key in &second_run {
        assert!(
            !first_run.contains(key),
            "a redriven step runs under a new idempotency key"
        );
    }
    assert_eq!(r.step("step-1").unwrap().key, second_run[0]);
    assert_eq!(
        r.earlier[0].steps[0].key, first_run[0],
        "the old keys are kept"
    );

    // A duplicate of the same redriven copy (SQS delivers at least once) is acknowledged:
    // the run it asks for is not the last one.
    h.send_with(&dead.body, back).await;
    h.until("the duplicate is deleted", |h| h.queue.deleted() == 3)
        .await;
    assert_eq!(h.effect.calls().len(), first_run.len() + 3);
    assert_eq!(h.app.record("all:flaky").generation, 1);
    h.app.stop().await;
}

#[actix_rt::test]
async fn a_panicking_step_restarts_from_the_journal_and_repeated_panics_dead_letter() {
    let h = Setup::new().start().await;
    h.effect.set(2, Behaviour::Panic(1));
    h.send(&event("once")).await;
    h.until("deleted", |h| h.queue.deleted() == 1).await;
    let r = h.app.journal.get("all:once").await.unwrap().unwrap();
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
    let r = h.app.journal.get("all:always").await.unwrap().unwrap();
    assert!(
        r.last_error
            .as_deref()
            .unwrap_or("")
            .contains("panicked 3 times"),
        "{:?}",
        r.last_error
    );
    assert!(h.dlq.messages()[0].attributes["tugboat-error"].contains("panicked 3 times"));
    // The queue keeps flowing.
    h.send(&event("after")).await;
    h.until("deleted", |h| h.queue.deleted() == 3).await;
    h.app.stop().await;
}

#[actix_rt::test]
async fn bad_input_goes_to_the_dlq_with_a_reason_and_good_messages_still_flow() {
    let mut setup = Setup::new();
    setup.unmatched = "dead_letter";
    let h = setup.start().await;
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
        h.app.journal.get("all:good").await.unwrap().unwrap().status,
        Status::Succeeded
    );
    assert_eq!(h.stat(|s| &s.decode_errors), 10);
    h.app.stop().await;
}

#[actix_rt::test]
async fn a_step_longer_than_the_visibility_timeout_is_not_redelivered() {
    let mut setup = Setup::new();
    setup.visibility = "1s";
    let h = setup.start().await;
    h.effect
        .set(2, Behaviour::Stall(Duration::from_millis(2500)));
    h.send(&event("slow")).await;
    h.until("deleted", |h| h.queue.deleted() == 1).await;
    assert_eq!(
        h.effect.calls().len(),
        3,
        "no second delivery ran the workflow again"
    );
    assert!(h.stat(|s| &s.visibility_extensions) >= 2);
    h.app.stop().await;
}

#[actix_rt::test]
async fn a_long_backoff_releases_the_message_instead_of_sleeping() {
    let mut setup = Setup::new();
    // Every back-off is "long": the message is released with ChangeMessageVisibility.
    setup.max_in_process_wait = "0s";
    let h = setup.start().await;
    h.effect.set(1, Behaviour::FailRetryable(1));
    h.send(&event("later")).await;
    h.until("deleted", |h| h.queue.deleted() == 1).await;
    assert_eq!(h.stat(|s| &s.released), 1);
    assert_eq!(h.stat(|s| &s.received), 2, "resumed on redelivery");
    let r = h.app.journal.get("all:later").await.unwrap().unwrap();
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(
        r.step("step-1").unwrap().attempts,
        2,
        "the attempt count survived the release"
    );
    assert_eq!(h.effect.distinct(), 3);
    h.app.stop().await;
}

#[actix_rt::test]
async fn shutdown_releases_in_flight_messages_and_the_next_process_resumes_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new();
    setup.journal = Arc::new(SledJournal::open(dir.path()).unwrap());
    let h = setup.start().await;
    h.effect.set(2, Behaviour::Stall(Duration::from_secs(5)));
    h.send(&event("inflight")).await;
    h.until("step 2 is running", |h| h.effect.calls().len() == 2)
        .await;
    let started = Instant::now();
    let (mut next, journal) = h.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the shutdown deadline (2 s) bounds the wait"
    );
    assert_eq!(next.queue.len(), 1, "released, not deleted");
    assert_eq!(
        journal.get("all:inflight").await.unwrap().unwrap().status,
        Status::Running
    );
    drop(journal);
    next.journal = Arc::new(MemoryJournal::default());
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
    next.effect.set(2, Behaviour::Stall(Duration::ZERO));
    next.journal = Arc::new(reopened);
    let h = next.start().await;
    h.until("deleted", |h| h.queue.deleted() == 1).await;
    let r = h.app.record("all:inflight");
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
    h.app.stop().await;
}

#[actix_rt::test]
async fn compensation_is_journaled_before_it_runs_and_resumes_after_a_stop() {
    let h = Setup::new().start().await;
    h.effect.set(2, Behaviour::FailPermanent);
    // The undo stalls: the process stops while compensating.
    h.undo.set(0, Behaviour::Stall(Duration::from_secs(30)));
    h.send(&event("undo")).await;
    h.until("compensating", |h| h.undo.calls().len() == 1).await;
    let r = h.app.record("all:undo");
    assert!(
        matches!(r.status, Status::Compensating { ref reason } if reason.contains("ValidationException")),
        "the failure decision is journaled before the first undo call: {:?}",
        r.status
    );
    assert_eq!(r.step("compensate:undo").unwrap().attempts, 1);
    assert!(h.dlq.is_empty());
    let (mut next, journal) = h.stop().await;
    assert_eq!(next.queue.len(), 1, "released while compensating");
    // The next process starts from what was durable when this one stopped (the stalled
    // undo of this one never finishes, as if it had been killed).
    next.journal = snapshot(journal.as_ref()).await;
    next.undo.set(0, Behaviour::Stall(Duration::ZERO));
    let h = next.start().await;
    h.until("dead-lettered", |h| h.dlq.len() == 1).await;
    let a = &h.dlq.messages()[0].attributes;
    assert!(
        a["tugboat-compensation"].contains("compensate:undo: done"),
        "{a:?}"
    );
    let r = h.app.record("all:undo");
    assert_eq!(
        r.step("compensate:undo").unwrap().attempts,
        2,
        "the undo attempt cut short by the stop ran again, and only it"
    );
    assert_eq!(h.effect.calls().len(), 2, "no forward step ran again");
    let keys = h.undo.calls();
    assert_eq!(keys.len(), 2);
    assert_eq!(
        keys[0], keys[1],
        "both attempts under the undo step's one key"
    );
    h.app.stop().await;
}

/// A copy of everything in `journal` now: what a killed process left behind.
async fn snapshot(journal: &dyn Journal) -> Arc<dyn Journal> {
    let copy = MemoryJournal::default();
    for r in journal.list(&Default::default()).await.unwrap() {
        copy.put(&r).await.unwrap();
    }
    Arc::new(copy)
}

#[actix_rt::test]
async fn a_workflow_that_panics_for_good_still_compensates() {
    let h = Setup::new().start().await;
    h.effect.set(2, Behaviour::Panic(100));
    h.send(&event("panics")).await;
    h.until("dead-lettered", |h| h.dlq.len() == 1).await;
    assert_eq!(
        h.undo.calls().len(),
        1,
        "compensation ran after the last panic"
    );
    let a = &h.dlq.messages()[0].attributes;
    assert!(a["tugboat-error"].contains("panicked 3 times"), "{a:?}");
    assert!(
        a["tugboat-compensation"].contains("compensate:undo: done"),
        "{a:?}"
    );
    h.app.stop().await;
}

#[actix_rt::test]
async fn sqs_redrive_never_takes_a_workflow_that_is_still_retrying() {
    // maxReceiveCount 3, every back-off released to SQS (none waits in process), six
    // retryable failures: seven receives in all, more than SQS would allow one message.
    let mut setup = Setup::new().with_redrive(3);
    setup.max_in_process_wait = "0s";
    setup.params = "{ steps = 1, attempts = 10 }";
    let h = setup.start().await;
    h.effect.set(1, Behaviour::FailRetryable(6));
    h.send(&event("patient")).await;
    h.until("succeeded", |h| h.statuses() == ["succeeded"])
        .await;
    h.until("settled", |h| h.queue.is_empty()).await;
    assert!(
        h.dlq.is_empty(),
        "nothing reached the DLQ: {:?}",
        h.dlq.messages()
    );
    let r = h.app.record("all:patient");
    assert_eq!(r.step("step-1").unwrap().attempts, 7);
    assert!(
        h.stat(|s| &s.refreshed) >= 2,
        "released as fresh copies near the limit"
    );
    assert_eq!(
        h.effect.distinct(),
        1,
        "every attempt under the step's one key"
    );
    h.app.stop().await;
}

#[actix_rt::test]
async fn repeated_shutdown_releases_do_not_hand_a_message_to_sqs_redrive() {
    let mut setup = Setup::new().with_redrive(3);
    setup.params = "{ steps = 1 }";
    setup
        .effect
        .set(1, Behaviour::Stall(Duration::from_secs(60)));
    let mut h = setup.start().await;
    h.send(&event("restarts")).await;
    for round in 1..=3 {
        h.until("the step runs", |h| h.effect.calls().len() == round)
            .await;
        let (next, _) = h.stop().await;
        assert_eq!(next.queue.len(), 1, "round {round}: released, not lost");
        assert!(
            next.dlq.is_empty(),
            "round {round}: {:?}",
            next.dlq.messages()
        );
        h = next.start().await;
    }
    h.effect.set(1, Behaviour::Stall(Duration::ZERO));
    h.until("deleted", |h| h.queue.is_empty()).await;
    assert!(h.dlq.is_empty());
    h.app.stop().await;
}
