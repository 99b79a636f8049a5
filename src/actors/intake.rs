//! Intake: one actor per configured queue. It long-polls, decodes, routes, dispatches, keeps
//! in-flight messages invisible while their work runs, and settles each message when its
//! workflows are done: delete (in batches), release (ChangeMessageVisibility), or hand to the
//! DLQ with the reason.
//!
//! **Only intake deletes SQS messages**, and only after every workflow the message started is
//! terminal in the journal, or after its copy is in the DLQ. It never holds more messages
//! than `concurrency`: the poller asks SQS for no more than the free permits.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::{Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Supervised, WrapFuture};
use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};

use crate::config::UnmatchedPolicy;
use crate::engine::dispatcher::{Dispatcher, StartRequest};
use crate::engine::runner::{Failure, RunResult};
use crate::events::{self, Decoded};
use crate::ports::{OutgoingMessage, Queue, ReceivedMessage};
use crate::routing::Router;

/// Message attribute that marks a message brought back by `tugboat dlq redrive`.
pub const REDRIVE_ATTRIBUTE: &str = "tugboat-redrive";

/// How an intake behaves.
#[derive(Debug, Clone)]
pub struct IntakeConfig {
    pub queue: String,
    pub concurrency: u32,
    pub visibility_timeout: Duration,
    /// Long-poll wait; 20 s (SQS's maximum) in production.
    pub wait: Duration,
    pub unmatched: UnmatchedPolicy,
    pub shutdown_deadline: Duration,
}

/// Counters, for `/readyz`, metrics and tests.
#[derive(Debug, Default, Serialize)]
pub struct IntakeStats {
    pub received: AtomicU64,
    pub deleted: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub released: AtomicU64,
    pub unmatched: AtomicU64,
    pub ignored: AtomicU64,
    pub decode_errors: AtomicU64,
    pub visibility_extensions: AtomicU64,
    pub polling: AtomicBool,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What to do with a message once its work is done.
#[derive(Debug)]
enum Disposition {
    Delete,
    Release(Duration),
    DeadLetter {
        reason: String,
        failures: Vec<Failure>,
    },
}

struct InFlight {
    handle: String,
    visible_until: Instant,
}

/// One queue's intake.
pub struct Intake {
    pub config: IntakeConfig,
    pub queue: Arc<dyn Queue>,
    pub dlq: Option<Arc<dyn Queue>>,
    pub router: Arc<Router>,
    pub dispatcher: Arc<Dispatcher>,
    pub stats: Arc<IntakeStats>,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Intake {
    /// Runs until shutdown has begun and every message is settled or released. Must run on an
    /// actix arbiter (it dispatches into actors).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let cfg = &self.config;
        let permits = Arc::new(Semaphore::new(cfg.concurrency as usize));
        let (tx, mut rx) = mpsc::channel(cfg.concurrency as usize);
        let poller = tokio::spawn(poll(self.clone(), permits.clone(), tx, shutdown.clone()));
        let mut work = FuturesUnordered::new();
        let mut in_flight: HashMap<String, InFlight> = HashMap::new();
        let mut deletes: Vec<String> = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut deadline: Option<Instant> = None;

        loop {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s), if deadline.is_none() => {
                    tracing::info!(queue = %cfg.queue, in_flight = in_flight.len(), "shutdown: stopped polling; waiting for running work");
                    deadline = Some(Instant::now() + cfg.shutdown_deadline);
                }
                Some((message, permit)) = rx.recv() => {
                    let message: ReceivedMessage = message;
                    bump(&self.stats.received);
                    in_flight.insert(message.message_id.clone(), InFlight {
                        handle: message.receipt_handle.clone(),
                        visible_until: Instant::now() + cfg.visibility_timeout,
                    });
                    let this = self.clone();
                    work.push(async move {
                        let disposition = this.process(&message).await;
                        (message, disposition, permit)
                    });
                }
                Some((message, disposition, permit)) = work.next(), if !work.is_empty() => {
                    in_flight.remove(&message.message_id);
                    self.settle(&message, disposition, &mut deletes).await;
                    drop::<OwnedSemaphorePermit>(permit);
                    if deletes.len() >= 10 {
                        self.flush_deletes(&mut deletes).await;
                    }
                }
                _ = tick.tick() => {
                    self.flush_deletes(&mut deletes).await;
                    self.extend_visibility(&mut in_flight).await;
                    if let Some(d) = deadline && (work.is_empty() || Instant::now() >= d) {
                        break;
                    }
                }
            }
        }

        // Shutdown: nothing more arrives; whatever is still in flight goes back to the queue
        // at once so that another task resumes it from SQS (and this journal, if restarted).
        poller.abort();
        rx.close();
        while let Some((message, _permit)) = rx.recv().await {
            in_flight.insert(
                message.message_id.clone(),
                InFlight {
                    handle: message.receipt_handle.clone(),
                    visible_until: Instant::now(),
                },
            );
        }
        drop(work);
        self.flush_deletes(&mut deletes).await;
        let handles: Vec<String> = in_flight.into_values().map(|f| f.handle).collect();
        for chunk in handles.chunks(10) {
            match self
                .queue
                .change_visibility_batch(chunk, Duration::ZERO)
                .await
            {
                Ok(failures) => {
                    self.stats
                        .released
                        .fetch_add((chunk.len() - failures.len()) as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(queue = %cfg.queue, error = %e, "could not release messages; they return when their visibility lapses")
                }
            }
        }
        tracing::info!(queue = %cfg.queue, released = handles.len(), "intake stopped");
    }

    /// Decodes, routes and dispatches one message; says what to do with it.
    async fn process(&self, message: &ReceivedMessage) -> Disposition {
        let decoded = match events::decode(&message.body, &message.message_id) {
            Ok(d) => d,
            Err(e) => {
                bump(&self.stats.decode_errors);
                tracing::warn!(queue = %self.config.queue, message_id = %message.message_id, error = %e, "undecodable message");
                return Disposition::DeadLetter {
                    reason: format!("decode error: {e}"),
                    failures: vec![],
                };
            }
        };
        let events = match decoded {
            Decoded::Ignore(why) => {
                bump(&self.stats.ignored);
                tracing::info!(queue = %self.config.queue, message_id = %message.message_id, "ignored: {why}");
                return Disposition::Delete;
            }
            Decoded::Events(events) => events,
        };
        let trace = message.attributes.get("traceparent").cloned();
        let redrive = message.attributes.contains_key(REDRIVE_ATTRIBUTE);
        let mut starts = Vec::new();
        for event in &events {
            for route in self.router.matching(&self.config.queue, &event.body) {
                starts.push(self.dispatcher.start(StartRequest {
                    route: route.name.clone(),
                    workflow: route.workflow.clone(),
                    params: route.params.clone(),
                    event: event.clone(),
                    queue: self.config.queue.clone(),
                    message_id: message.message_id.clone(),
                    trace: trace.clone(),
                    redrive,
                }));
            }
        }
        if starts.is_empty() {
            bump(&self.stats.unmatched);
            return match self.config.unmatched {
                UnmatchedPolicy::Acknowledge => Disposition::Delete,
                UnmatchedPolicy::DeadLetter => Disposition::DeadLetter {
                    reason: "no route matched".into(),
                    failures: vec![],
                },
            };
        }
        combine(futures::future::join_all(starts).await)
    }

    /// Carries out a disposition.
    async fn settle(
        &self,
        message: &ReceivedMessage,
        disposition: Disposition,
        deletes: &mut Vec<String>,
    ) {
        match disposition {
            Disposition::Delete => deletes.push(message.receipt_handle.clone()),
            Disposition::Release(after) => {
                bump(&self.stats.released);
                if let Err(e) = self
                    .queue
                    .change_visibility_batch(std::slice::from_ref(&message.receipt_handle), after)
                    .await
                {
                    tracing::warn!(message_id = %message.message_id, error = %e, "could not release message; it returns when its visibility lapses");
                }
            }
            Disposition::DeadLetter { reason, failures } => {
                let Some(dlq) = &self.dlq else {
                    // Without a DLQ, SQS's own redrive policy is the only way out: leave the
                    // message to become visible again and count towards maxReceiveCount.
                    tracing::error!(queue = %self.config.queue, message_id = %message.message_id, %reason,
                        "work failed for good and no dlq is configured; leaving the message to the queue's redrive policy");
                    return;
                };
                let copy = OutgoingMessage {
                    body: message.body.clone(),
                    attributes: dead_letter_attributes(
                        message,
                        &self.config.queue,
                        &reason,
                        failures.first(),
                    ),
                    ..Default::default()
                };
                match dlq.send(&copy).await {
                    Ok(_) => {
                        for f in &failures {
                            if let Err(e) = self
                                .dispatcher
                                .mark_dead_lettered(&f.workflow_id, &f.reason)
                                .await
                            {
                                tracing::warn!(workflow_id = %f.workflow_id, error = %e, "could not journal the dead-lettering; a redelivery will hand it over again");
                            }
                        }
                        bump(&self.stats.dead_lettered);
                        tracing::warn!(queue = %self.config.queue, message_id = %message.message_id, %reason, "message handed to the DLQ");
                        deletes.push(message.receipt_handle.clone());
                    }
                    Err(e) => {
                        tracing::error!(message_id = %message.message_id, error = %e, "could not copy the message to the DLQ; retrying later");
                        let _ = self
                            .queue
                            .change_visibility_batch(
                                std::slice::from_ref(&message.receipt_handle),
                                Duration::from_secs(30),
                            )
                            .await;
                    }
                }
            }
        }
    }

    async fn flush_deletes(&self, deletes: &mut Vec<String>) {
        while !deletes.is_empty() {
            let chunk: Vec<String> = deletes.drain(..deletes.len().min(10)).collect();
            match self.queue.delete_batch(&chunk).await {
                Ok(failures) => {
                    self.stats
                        .deleted
                        .fetch_add((chunk.len() - failures.len()) as u64, Ordering::Relaxed);
                    for f in failures {
                        // A stale handle means the message was received again meanwhile; the
                        // journal says it is done, so that delivery is acknowledged at once.
                        tracing::warn!(queue = %self.config.queue, code = %f.code, "delete failed: {}", f.message);
                    }
                }
                Err(e) => {
                    tracing::warn!(queue = %self.config.queue, error = %e, "delete batch failed; the messages will be redelivered and acknowledged from the journal");
                }
            }
        }
    }

    /// Extends the visibility of every in-flight message whose lease is half gone.
    async fn extend_visibility(&self, in_flight: &mut HashMap<String, InFlight>) {
        let vt = self.config.visibility_timeout;
        let now = Instant::now();
        let due: Vec<(String, String)> = in_flight
            .iter()
            .filter(|(_, f)| f.visible_until.saturating_duration_since(now) < vt / 2)
            .map(|(id, f)| (id.clone(), f.handle.clone()))
            .collect();
        for chunk in due.chunks(10) {
            let handles: Vec<String> = chunk.iter().map(|(_, h)| h.clone()).collect();
            match self.queue.change_visibility_batch(&handles, vt).await {
                Ok(failures) => {
                    for (i, (id, _)) in chunk.iter().enumerate() {
                        if failures.iter().any(|f| f.index == i) {
                            tracing::warn!(message_id = %id, "could not extend visibility; the message may be redelivered");
                        } else if let Some(f) = in_flight.get_mut(id) {
                            f.visible_until = now + vt;
                            bump(&self.stats.visibility_extensions);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(queue = %self.config.queue, error = %e, "visibility extension failed; retrying")
                }
            }
        }
    }
}

/// Receives while there is room: asks for no more messages than free permits.
async fn poll(
    intake: Arc<Intake>,
    permits: Arc<Semaphore>,
    tx: mpsc::Sender<(ReceivedMessage, OwnedSemaphorePermit)>,
    mut shutdown: watch::Receiver<bool>,
) {
    use backon::BackoffBuilder;
    let cfg = &intake.config;
    // While the queue is unreachable: 100 ms doubling up to 10 s, with jitter, for as long as
    // it takes (SQS outages end; the service must not give up polling).
    let backoff = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times();
    let mut delays = backoff.build();
    intake.stats.polling.store(true, Ordering::Relaxed);
    loop {
        let first = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let mut held = vec![first];
        while held.len() < 10 {
            match permits.clone().try_acquire_owned() {
                Ok(p) => held.push(p),
                Err(_) => break,
            }
        }
        let received = tokio::select! {
            r = intake.queue.receive(held.len() as u32, cfg.wait, cfg.visibility_timeout) => r,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        match received {
            Ok(messages) => {
                delays = backoff.build();
                for m in messages {
                    let Some(permit) = held.pop() else { break };
                    if tx.send((m, permit)).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                let delay = delays.next().unwrap_or(Duration::from_secs(10));
                tracing::warn!(queue = %cfg.queue, error = %e, retry_in_ms = delay.as_millis() as u64, "receive failed");
                drop(held);
                tokio::time::sleep(delay).await;
            }
        }
    }
    intake.stats.polling.store(false, Ordering::Relaxed);
}

/// One disposition for all the workflows a message started.
fn combine(results: Vec<RunResult>) -> Disposition {
    let mut failures = Vec::new();
    let mut release: Option<Duration> = None;
    for r in results {
        match r {
            RunResult::Succeeded | RunResult::DeadLettered => {}
            RunResult::Failed(f) => failures.push(f),
            RunResult::RetryLater(d) => release = Some(release.map_or(d, |r| r.min(d))),
            RunResult::Released => release = Some(Duration::ZERO),
            RunResult::JournalError(e) => {
                tracing::error!(error = %e, "journal failure; releasing the message for a retry");
                release = Some(Duration::from_secs(5));
            }
        }
    }
    // Unfinished work keeps the message; failed workflows are dead-lettered once the rest is
    // done, so one message never reaches the DLQ twice for one delivery.
    if let Some(after) = release {
        return Disposition::Release(after);
    }
    if !failures.is_empty() {
        let reason = failures
            .iter()
            .map(|f| format!("{}: {}", f.workflow_id, f.reason))
            .collect::<Vec<_>>()
            .join("; ");
        return Disposition::DeadLetter { reason, failures };
    }
    Disposition::Delete
}

/// SQS allows 10 attributes per message: tugboat's own (up to 10, with compensation) come first,
/// and the producer's traceparent is kept when there is room.
fn dead_letter_attributes(
    message: &ReceivedMessage,
    queue: &str,
    reason: &str,
    failure: Option<&Failure>,
) -> BTreeMap<String, String> {
    let clip = |s: &str, n: usize| -> String {
        if s.len() <= n {
            s.to_owned()
        } else {
            let mut end = n;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", &s[..end])
        }
    };
    let mut a = BTreeMap::new();
    a.insert("tugboat-error".into(), clip(reason, 2000));
    a.insert("tugboat-queue".into(), queue.to_owned());
    a.insert(
        "tugboat-original-message-id".into(),
        message.message_id.clone(),
    );
    a.insert("tugboat-failed-at".into(), rfc3339_now());
    if let Some(f) = failure {
        a.insert("tugboat-workflow".into(), f.workflow.clone());
        a.insert("tugboat-workflow-id".into(), f.workflow_id.clone());
        a.insert("tugboat-route".into(), f.route.clone());
        a.insert("tugboat-attempts".into(), f.attempts.to_string());
        if let Some(step) = &f.step {
            a.insert("tugboat-step".into(), step.clone());
        }
        if !f.compensation.is_empty() {
            a.insert(
                "tugboat-compensation".into(),
                clip(&f.compensation.join("; "), 1000),
            );
        }
    }
    if a.len() < 10
        && let Some(tp) = message.attributes.get("traceparent")
    {
        a.insert("traceparent".into(), tp.clone());
    }
    a
}

fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The actor around one [`Intake`]: supervised, so that a panic in its loop restarts it.
pub struct IntakeActor {
    intake: Arc<Intake>,
    shutdown: watch::Receiver<bool>,
    done: Option<oneshot::Sender<()>>,
}

impl IntakeActor {
    pub fn new(
        intake: Arc<Intake>,
        shutdown: watch::Receiver<bool>,
        done: oneshot::Sender<()>,
    ) -> IntakeActor {
        IntakeActor {
            intake,
            shutdown,
            done: Some(done),
        }
    }
}

impl Actor for IntakeActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let run = AssertUnwindSafe(self.intake.clone().run(self.shutdown.clone())).catch_unwind();
        ctx.spawn(run.into_actor(self).map(|result, act, ctx| match result {
            Ok(()) => {
                if let Some(done) = act.done.take() {
                    let _ = done.send(());
                }
            }
            Err(_) => {
                tracing::error!(queue = %act.intake.config.queue, "intake panicked; restarting it");
                ctx.stop();
            }
        }));
    }
}

impl Supervised for IntakeActor {}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(id: &str) -> Failure {
        Failure {
            workflow_id: id.into(),
            workflow: "log".into(),
            route: "r".into(),
            reason: "boom".into(),
            step: Some("notify".into()),
            attempts: 3,
            compensation: vec!["compensate:stop-task: done".into()],
        }
    }

    #[test]
    fn unfinished_work_keeps_the_message_and_failures_wait_for_the_rest() {
        assert!(matches!(
            combine(vec![RunResult::Succeeded, RunResult::DeadLettered]),
            Disposition::Delete
        ));
        assert!(
            matches!(combine(vec![RunResult::Succeeded, RunResult::Released]), Disposition::Release(d) if d.is_zero())
        );
        assert!(matches!(
            combine(vec![RunResult::RetryLater(Duration::from_secs(60)), RunResult::RetryLater(Duration::from_secs(30))]),
            Disposition::Release(d) if d == Duration::from_secs(30)
        ));
        assert!(matches!(
            combine(vec![RunResult::Failed(failure("a")), RunResult::Released]),
            Disposition::Release(_)
        ));
        let Disposition::DeadLetter { reason, failures } =
            combine(vec![RunResult::Failed(failure("a")), RunResult::Succeeded])
        else {
            panic!()
        };
        assert_eq!(failures.len(), 1);
        assert!(reason.contains("a: boom"));
    }

    #[test]
    fn dead_letter_attributes_name_everything_and_fit_sqs() {
        let m = ReceivedMessage {
            message_id: "m-1".into(),
            receipt_handle: "h".into(),
            body: "{}".into(),
            attributes: crate::ports::memory::attributes([("traceparent", "00-1-2-01")]),
            receive_count: 1,
            aws_trace_header: None,
        };
        let a = dead_letter_attributes(&m, "q", &"x".repeat(5000), Some(&failure("w")));
        assert!(a.len() <= 10, "{a:?}");
        for k in [
            "tugboat-workflow",
            "tugboat-workflow-id",
            "tugboat-route",
            "tugboat-step",
            "tugboat-error",
            "tugboat-attempts",
            "tugboat-original-message-id",
            "tugboat-failed-at",
            "tugboat-compensation",
        ] {
            assert!(a.contains_key(k), "{k}");
        }
        assert!(a["tugboat-error"].len() < 2100);
        assert_eq!(a["tugboat-attempts"], "3");
    }
}
