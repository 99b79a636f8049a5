//! Intake: one per configured queue. It polls ([`polling`]), decodes, routes and dispatches
//! each message, keeps in-flight messages invisible while their work runs ([`visibility`]),
//! and settles each message when its workflows are done ([`settling`]): delete (in batches),
//! release, or hand to the DLQ with the reason.
//!
//! **Only [`settling`] deletes or releases messages** (besides `operate::dead_letters`), and deletes one
//! only after every workflow it started is terminal in the journal, or after its copy is in
//! the DLQ. The intake never holds more messages than `concurrency`: the poller asks SQS for
//! no more than the free permits, and a permit is returned only when its message is settled.
//!
//! Actor-free: `actors::intake` gives it its supervised lifecycle.

pub mod attributes;
mod polling;
mod settling;
pub mod trust;
mod visibility;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::config::UnmatchedPolicy;
use crate::engine::dispatcher::{Dispatcher, StartRequest};
use crate::engine::{Failure, RunResult};
use crate::events::{self, Decoded};
use crate::ports::{Queue, ReceivedMessage};
use crate::routing::Router;

use self::settling::Settle;
use self::visibility::Leases;

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
    /// How long a paused route's message is put back for before it is looked at again (a
    /// resume in this process brings it back at once).
    pub pause_recheck: Duration,
    /// The queue's `maxReceiveCount`, read from its redrive policy at start: a message whose
    /// next receive would reach it is released as a fresh copy, so that SQS's redrive never
    /// takes a message whose workflow is alive. `None`: no redrive policy.
    pub max_receive_count: Option<u32>,
    /// What a message must show before its events run (signatures, sources).
    pub trust: trust::Trust,
}

/// Counters, for `/readyz`, metrics and tests.
#[derive(Debug, Default, Serialize)]
pub struct IntakeStats {
    pub received: AtomicU64,
    pub deleted: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub released: AtomicU64,
    /// Released as a fresh copy (and the original deleted) to stay clear of the queue's
    /// `maxReceiveCount`.
    pub refreshed: AtomicU64,
    pub unmatched: AtomicU64,
    pub ignored: AtomicU64,
    pub decode_errors: AtomicU64,
    /// Dead-lettered because a trust rule refused them (an unsigned control attribute or
    /// agent notice, a source the queue does not carry).
    pub refused: AtomicU64,
    pub visibility_extensions: AtomicU64,
    pub polling: AtomicBool,
    /// The last receive from the queue failed (cleared by the next that works).
    pub unreachable: AtomicBool,
    /// Messages received and not yet settled (deleted, released or handed to the DLQ).
    #[serde(serialize_with = "load")]
    pub in_flight: Arc<AtomicU64>,
}

fn load<S: serde::Serializer>(v: &Arc<AtomicU64>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(v.load(Ordering::Relaxed))
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What to do with a message once its work is done.
#[derive(Debug)]
pub(crate) enum Disposition {
    Delete,
    Release(Duration),
    /// A paused route's event: released until the recheck, and remembered, so that a
    /// resume brings it back at once.
    Park(Duration),
    DeadLetter {
        reason: String,
        failures: Vec<Failure>,
    },
}

/// The messages put back for a paused route, with when each returns by itself: a resume
/// brings back those still away (a receipt handle is useless once its message is received
/// again).
#[derive(Debug, Default)]
pub struct Parked(std::sync::Mutex<Vec<(String, Instant)>>);

impl Parked {
    fn keep(&self, receipt_handle: String, away: Duration) {
        let mut parked = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        parked.retain(|(_, back)| *back > now);
        parked.push((receipt_handle, now + away));
    }

    fn take(&self) -> Vec<String> {
        let mut parked = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        std::mem::take(&mut *parked)
            .into_iter()
            .filter(|(_, back)| *back > now)
            .map(|(h, _)| h)
            .collect()
    }
}

/// One queue's intake.
pub struct Intake {
    pub config: IntakeConfig,
    pub queue: Arc<dyn Queue>,
    pub dlq: Option<Arc<dyn Queue>>,
    pub router: Arc<Router>,
    pub dispatcher: Arc<Dispatcher>,
    pub stats: Arc<IntakeStats>,
    pub parked: Parked,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Intake {
    /// Runs until shutdown has begun and every message is settled or released.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let cfg = &self.config;
        let permits = Arc::new(Semaphore::new(cfg.concurrency as usize));
        let (received_tx, mut received) = mpsc::channel(cfg.concurrency as usize);
        let leases = Arc::new(Leases::counted(self.stats.in_flight.clone()));
        let (settle_tx, settle_rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = watch::channel(false);
        // On this thread (the actix System's LocalSet), beside the intake and the instances they
        // feed: a hand-off between them is then a local wake, not a cross-thread one. Measured
        // (benches/engine.rs, 100 in flight): median 14.2k against 12.5k workflows/s on the
        // tokio pool, and 12.6k against 7.4k with 1 000 in flight. SDK I/O still runs on the pool.
        let poller = tokio::task::spawn_local(polling::poll(
            self.clone(),
            permits,
            received_tx,
            shutdown.clone(),
        ));
        let extender =
            tokio::task::spawn_local(visibility::extend(self.clone(), leases.clone(), stop_rx));
        let settler =
            tokio::task::spawn_local(settling::run(self.clone(), leases.clone(), settle_rx));
        let mut work = FuturesUnordered::new();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut deadline: Option<Instant> = None;
        let mut pause_changes = self.dispatcher.engine().paused.subscribe();

        loop {
            tokio::select! {
                Ok(()) = pause_changes.changed() => {
                    tokio::task::spawn_local(settling::expedite(self.clone()));
                }
                _ = crate::engine::shutdown_begun(&mut shutdown), if deadline.is_none() => {
                    tracing::info!(queue = %cfg.queue, running = work.len(), "shutdown: no new receives; waiting for running work and the receive in flight");
                    deadline = Some(Instant::now() + cfg.shutdown_deadline);
                }
                Some((message, permit)) = received.recv() => {
                    let message: ReceivedMessage = message;
                    tracing::debug!(queue = %cfg.queue, message_id = %message.message_id,
                        receive_count = message.receive_count, "received");
                    bump(&self.stats.received);
                    leases.take(&message, cfg.visibility_timeout).await;
                    if deadline.is_some() {
                        // The last receive finished after shutdown began: back to the queue
                        // at once, untouched.
                        leases.hand_over(&message.message_id).await;
                        let _ = settle_tx.send(Settle {
                            message,
                            disposition: Disposition::Release(Duration::ZERO),
                            permit: Some(permit),
                        });
                        continue;
                    }
                    let this = self.clone();
                    work.push(async move {
                        let disposition = this.process(&message).await;
                        Settle { message, disposition, permit: Some(permit) }
                    });
                }
                Some(done) = work.next(), if !work.is_empty() => {
                    // The settler owns it from here; its lease is kept until it is settled.
                    let done: Settle = done;
                    leases.hand_over(&done.message.message_id).await;
                    let _ = settle_tx.send(done);
                }
                _ = tick.tick() => {
                    let drained = work.is_empty() && poller.is_finished();
                    if let Some(d) = deadline && (drained || Instant::now() >= d) {
                        break;
                    }
                }
            }
        }

        // Shutdown: nothing more arrives (the poller has finished its last receive, or the
        // deadline cut it short). Whatever has not finished goes back to the queue at once
        // (the settler's release, which also keeps clear of maxReceiveCount), so that another
        // task resumes it from SQS (and this journal, if restarted here).
        poller.abort();
        received.close();
        while let Some((message, permit)) = received.recv().await {
            leases.take(&message, cfg.visibility_timeout).await;
            drop(permit);
        }
        drop(work);
        for message in leases.unsettled().await {
            let _ = settle_tx.send(Settle {
                message,
                disposition: Disposition::Release(Duration::ZERO),
                permit: None,
            });
        }
        drop(settle_tx);
        let _ = settler.await;
        let _ = stop_tx.send(true);
        let _ = extender.await;
        tracing::info!(queue = %cfg.queue, "intake stopped");
    }

    /// Processes one message in a consumer span of its own that continues the producer's
    /// trace (`traceparent`/`tracestate` attributes, else the `AWSTraceHeader` system
    /// attribute); the workflows it starts are its children.
    async fn process(&self, message: &ReceivedMessage) -> Disposition {
        use tracing::Instrument;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let span = tracing::info_span!(
            "process message",
            otel.name = format!("{} process", self.config.queue),
            otel.kind = "consumer",
            messaging.system = "aws_sqs",
            messaging.destination.name = %self.config.queue,
            messaging.message.id = %message.message_id,
            messaging.operation = "process",
            messaging.operation.type = "process",
            messaging.message.delivery_count = message.receive_count,
            queue = %self.config.queue,
            message_id = %message.message_id,
        );
        if let Some(cx) = crate::telemetry::propagation::extract(
            message.attributes.get("traceparent").map(String::as_str),
            message.attributes.get("tracestate").map(String::as_str),
            message.trace_header.as_deref(),
        ) {
            let _ = span.set_parent(cx);
        }
        self.decode_and_dispatch(message).instrument(span).await
    }

    /// Decodes, routes and dispatches one message; says what to do with it.
    async fn decode_and_dispatch(&self, message: &ReceivedMessage) -> Disposition {
        let now = crate::journal::now_ms();
        if let Err(reason) = self.config.trust.control(message, now) {
            return self.refuse(message, reason);
        }
        // A plain EventBridge event no route matches is settled from the fields the routes
        // read, without the full parse (a retry names its instance: it is not routed; on a
        // queue that takes only some sources, an event of another is refused with the
        // reason, not settled as unmatched).
        if attributes::retry_of(message).is_none()
            && self.config.trust.sources.is_none()
            && self
                .router
                .matches_nothing(&self.config.queue, &message.body)
        {
            return self.unmatched();
        }
        let decoded = match events::decode(&message.body, attributes::origin_id(message)) {
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
        if let Some(reason) = events
            .iter()
            .find_map(|e| self.config.trust.event(message, &e.body, now).err())
        {
            return self.refuse(message, reason);
        }
        let trace = message.attributes.get("traceparent").cloned();
        let redrive = attributes::redrive(message);
        let paused = &self.dispatcher.engine().paused;
        let mut parked = false;
        let mut starts = Vec::new();
        if let Some(id) = attributes::retry_of(message) {
            // A retry names its instance: the journaled route, workflow and params, not a
            // routing of the body.
            match self.retried(message, id, trace.clone(), redrive).await {
                Ok(req) if paused.contains(&req.route) => parked = true,
                Ok(req) => starts.push(self.dispatcher.start(req)),
                Err(disposition) => return disposition,
            }
        } else {
            for event in events {
                let mut routes = Vec::new();
                for route in self.router.matching(&self.config.queue, &event.body) {
                    if paused.contains(&route.name) {
                        parked = true;
                        continue;
                    }
                    routes.push(route);
                }
                let request = |route: &crate::routing::Route, event| StartRequest {
                    route: route.name.clone(),
                    workflow: route.workflow.clone(),
                    params: route.params.clone(),
                    event,
                    queue: self.config.queue.clone(),
                    message_id: message.message_id.clone(),
                    trace: trace.clone(),
                    redrive,
                    instance: None,
                };
                // Each route but the last gets a copy of the event; the last takes it.
                let Some((last, others)) = routes.split_last() else {
                    continue;
                };
                for route in others {
                    starts.push(self.dispatcher.start(request(route, event.clone())));
                }
                starts.push(self.dispatcher.start(request(last, event)));
            }
        }
        if parked {
            // The routes that are not paused run now; the message waits for the rest (a
            // failure among them is dead-lettered once the paused routes have run too).
            let results = futures::future::join_all(starts).await;
            let recheck = self.config.pause_recheck;
            tracing::debug!(queue = %self.config.queue, message_id = %message.message_id, "a paused route matched; the message waits");
            return match combine(results) {
                Disposition::Release(d) if d < recheck => Disposition::Release(d),
                _ => Disposition::Park(recheck),
            };
        }
        if starts.is_empty() {
            return self.unmatched();
        }
        combine(futures::future::join_all(starts).await)
    }
}

impl Intake {
    /// A message a trust rule refused: to the DLQ with the reason, and counted.
    fn refuse(&self, message: &ReceivedMessage, reason: String) -> Disposition {
        bump(&self.stats.refused);
        tracing::warn!(queue = %self.config.queue, message_id = %message.message_id, reason = %reason, "message refused");
        Disposition::DeadLetter {
            reason,
            failures: vec![],
        }
    }

    /// A message whose events matched no route, as `[unmatched]` says.
    fn unmatched(&self) -> Disposition {
        bump(&self.stats.unmatched);
        match self.config.unmatched {
            UnmatchedPolicy::Acknowledge => Disposition::Delete,
            UnmatchedPolicy::DeadLetter => Disposition::DeadLetter {
                reason: "no route matched".into(),
                failures: vec![],
            },
        }
    }

    /// The start of a retry of instance `id`: its journaled route, workflow, params and
    /// event. A retry of an instance the journal does not have is a dead letter.
    async fn retried(
        &self,
        message: &ReceivedMessage,
        id: &str,
        trace: Option<String>,
        redrive: Option<crate::engine::dispatcher::Redrive>,
    ) -> Result<StartRequest, Disposition> {
        let journal = &self.dispatcher.engine().journal;
        let record = match journal.get(id).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Err(Disposition::DeadLetter {
                    reason: format!("retry of {id}: no such instance in the journal"),
                    failures: vec![],
                });
            }
            Err(e) => {
                tracing::error!(workflow_id = %id, error = %e, "journal failure reading a retried instance");
                return Err(Disposition::Release(Duration::from_secs(5)));
            }
        };
        Ok(StartRequest {
            route: record.route,
            workflow: record.workflow,
            params: record.params,
            event: events::Event {
                identity: id.to_owned(),
                body: record.input,
            },
            queue: self.config.queue.clone(),
            message_id: message.message_id.clone(),
            trace,
            redrive,
            instance: Some(id.to_owned()),
        })
    }
}

/// One disposition for all the workflows a message started.
fn combine(results: Vec<RunResult>) -> Disposition {
    let mut failures = Vec::new();
    let mut release: Option<Duration> = None;
    for r in results {
        match r {
            RunResult::Succeeded | RunResult::DeadLettered | RunResult::Cancelled => {}
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
            generation: 0,
            compensation: vec![],
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
}
