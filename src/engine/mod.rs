//! The durable workflow engine: the runner that drives one instance from its journal record,
//! and the dispatcher that maps events to instances and supervises their runs.
//!
//! The engine performs only generic things: it calls a workflow's handler, sleeps, wakes,
//! reads another instance's record, and publishes to the configured topics. It knows no AWS
//! service and no actor system: how an instance's run is given a lifecycle is a [`Spawn`]
//! hook, which `src/actors/` implements with supervised actix actors and [`TaskSpawn`]
//! implements with plain tokio tasks, so that the engine is tested without an actor system.

pub mod dispatcher;
pub mod lifecycle;
pub mod runner;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};

pub use dispatcher::{Dispatcher, Spawn, StartRequest, TaskSpawn};
pub use lifecycle::{Failure, RunResult};

use crate::journal::{Journal, Record};
use crate::ports::Notifier;
use crate::ports::clock::{Clock, SystemClock};
use crate::workflows::Registry;

/// Tunables of the engine, with their defaults.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Back-offs and sleeps up to this long wait in process; longer ones release the message
    /// with ChangeMessageVisibility and resume on redelivery. Default 20 s.
    pub max_in_process_wait: Duration,
    /// Panics of one instance before it is dead-lettered instead of restarted. Default 3.
    pub max_panics: u32,
    /// Instances of one workflow kind running at once. Default 64.
    pub per_kind_concurrency: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_in_process_wait: Duration::from_secs(20),
            max_panics: 3,
            per_kind_concurrency: 64,
        }
    }
}

/// What every part of the engine shares.
pub struct Engine {
    pub journal: Arc<dyn Journal>,
    pub registry: Registry,
    /// Where the generic `Publish` call goes.
    pub notifier: Arc<dyn Notifier>,
    pub options: EngineOptions,
    /// Becomes true when shutdown begins.
    pub shutdown: watch::Receiver<bool>,
    /// In-process sleeps that a `Call::Wake` (or a cancel) may end early.
    pub wakers: Wakers,
    /// Operators' cancels of instances running in this process, until their runs take them.
    pub cancels: Cancels,
    /// The routes an operator paused: their events wait in the queue.
    pub paused: Paused,
    /// Every journaled change of an instance, for whoever watches (the console's live
    /// updates); nothing is built when nobody does.
    pub updates: tokio::sync::broadcast::Sender<Arc<crate::journal::Summary>>,
    /// Counters and histograms of what the engine does (`/metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The time every decision is taken at, and what sleeps and back-offs wait on: the
    /// system's, or a virtual one in tests ([`Engine::with_clock`]).
    pub clock: Arc<dyn Clock>,
    /// The instances running with the message as their record ([`Durability::Message`]):
    /// not claimed in a shared journal, not written, until something but success happens.
    unjournaled: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The last of those that ended without a record, newest last, for the console.
    pub recent: Recent,
    limits: HashMap<&'static str, Arc<Semaphore>>,
}

/// How many instances that ended without a journal record the console keeps (newest).
pub const RECENT: usize = 1000;

/// A delivery that went well in its direct run ([`crate::contract::Workflow::run_direct`]),
/// with nothing made for a journal: what its record is made from when someone looks.
#[derive(Debug)]
pub(crate) struct Delivered {
    pub id: String,
    pub workflow: String,
    pub origin: crate::journal::Origin,
    pub input: serde_json::Value,
    pub params: serde_json::Value,
    /// Its one step's result.
    pub result: serde_json::Value,
    pub started_ms: u64,
    pub ended_ms: u64,
}

/// One of the [`Recent`]: the record a run left in memory, or a direct run's facts.
#[derive(Debug, Clone)]
enum Kept {
    Record(Arc<Record>),
    Delivered(Arc<Delivered>),
}

impl Kept {
    fn id(&self) -> &str {
        match self {
            Kept::Record(r) => &r.id,
            Kept::Delivered(d) => &d.id,
        }
    }
}

/// The last [`RECENT`] instances that ended without a journal record (deliveries whose message
/// was their record): what the console shows of them once they are gone. A direct run keeps
/// its facts, and its record is made from them by the lifecycle when asked
/// ([`Engine::recent`]): a delivery makes no record nobody reads.
#[derive(Debug, Default)]
pub struct Recent(std::sync::Mutex<std::collections::VecDeque<Kept>>);

impl Recent {
    fn push(&self, kept: Kept) {
        let old = {
            let mut recent = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let old = (recent.len() >= RECENT).then(|| recent.pop_front());
            recent.push_back(kept);
            old
        };
        // Dropped outside the lock (an event's tree is freed node by node).
        drop(old);
    }

    /// All of them, newest first (handles only: the records are made after the lock is let
    /// go, so that a console's look never holds up a delivery).
    fn kept(&self) -> Vec<Kept> {
        let recent = self.0.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().rev().cloned().collect()
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("registry", &self.registry)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub fn new(
        journal: Arc<dyn Journal>,
        registry: Registry,
        notifier: Arc<dyn Notifier>,
        options: EngineOptions,
        shutdown: watch::Receiver<bool>,
    ) -> Engine {
        let limits = registry
            .names()
            .into_iter()
            .map(|k| {
                (
                    k,
                    Arc::new(Semaphore::new(options.per_kind_concurrency.max(1))),
                )
            })
            .collect();
        Engine {
            journal,
            registry,
            notifier,
            options,
            shutdown,
            wakers: Wakers::default(),
            cancels: Cancels::default(),
            paused: Paused::default(),
            updates: tokio::sync::broadcast::channel(4096).0,
            metrics: Arc::default(),
            clock: Arc::new(SystemClock),
            unjournaled: Default::default(),
            recent: Recent::default(),
            limits,
        }
    }

    /// The same engine on `clock` (the service passes its ports' clock, tests a virtual one).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Engine {
        self.clock = clock;
        self
    }

    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Writes `record` durably, timing the write (`tugboat_journal_commit_seconds`) and
    /// counting an instance that ended (`tugboat_workflows_finished_total`: once per
    /// instance, on its terminal write, not once per redelivery).
    pub(crate) async fn commit(&self, record: &Record) -> Result<(), crate::journal::JournalError> {
        let started = std::time::Instant::now();
        self.journal.put(record).await?;
        self.metrics
            .journal_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.ended(record);
        if self.updates.receiver_count() > 0 {
            let _ = self.updates.send(Arc::new(record.summary()));
        }
        Ok(())
    }

    /// Instance `id` starts with its message as its record: nothing claimed or written yet.
    pub(crate) fn begin_unjournaled(&self, id: &str) {
        self.unjournaled_ids().insert(id.to_owned());
    }

    /// Whether instance `id` runs with no record yet; `forget` ends that (it is journaled now,
    /// or the dispatcher finished it: only those two forget).
    pub(crate) fn is_unjournaled(&self, id: &str, forget: bool) -> bool {
        let mut ids = self.unjournaled_ids();
        if forget {
            ids.remove(id)
        } else {
            ids.contains(id)
        }
    }

    fn unjournaled_ids(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.unjournaled.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the first record of an instance that ran with its message as its record: the
    /// journal's claim first (a shared journal writes only what this process holds). `Err`:
    /// what the run comes to instead (another process holds it; the journal failed).
    pub(crate) async fn journal_from_now(&self, record: &mut Record) -> Result<(), RunResult> {
        use crate::journal::Claim;
        self.is_unjournaled(&record.id, true);
        record.fill_keys();
        match self.journal.claim(&record.id).await {
            Ok(Claim::Granted) => {}
            Ok(Claim::HeldBy { until_ms, .. }) => {
                let now = self.clock.now_ms();
                let wait =
                    Duration::from_millis(until_ms.saturating_sub(now)).max(Duration::from_secs(1));
                return Err(RunResult::RetryLater(wait));
            }
            Err(e) => return Err(RunResult::JournalError(e.to_string())),
        }
        self.commit(record)
            .await
            .map_err(|e| RunResult::JournalError(e.to_string()))
    }

    /// An instance ended without ever being journaled: counted and shown as a journaled end
    /// is, and kept among the [`Recent`] ones.
    pub(crate) fn ended_unjournaled(&self, record: Record) {
        self.metrics.ended(&record);
        if self.updates.receiver_count() > 0 {
            let mut summary = record.summary();
            summary.journaled = false;
            let _ = self.updates.send(Arc::new(summary));
        }
        self.recent.push(Kept::Record(Arc::new(record)));
    }

    /// A delivery's direct run went well (and was counted: [`Metrics::delivered`]): sent to
    /// whoever watches, and kept among the [`Recent`] ones.
    ///
    /// [`Metrics::delivered`]: crate::metrics::Metrics::delivered
    pub(crate) fn delivered(&self, delivered: Delivered) {
        if self.updates.receiver_count() > 0 {
            let mut summary = self.view(&delivered).summary();
            summary.journaled = false;
            let _ = self.updates.send(Arc::new(summary));
        }
        self.recent.push(Kept::Delivered(Arc::new(delivered)));
    }

    /// The record of `id` if it is one of the [`Recent`], with its steps' keys (see
    /// [`Record::keys_deferred`]).
    pub fn recent(&self, id: &str) -> Option<Arc<Record>> {
        let found = self.recent.kept().into_iter().find(|k| k.id() == id)?;
        let mut record = match found {
            Kept::Record(r) => Arc::unwrap_or_clone(r),
            Kept::Delivered(d) => self.view(&d),
        };
        record.fill_keys();
        Some(Arc::new(record))
    }

    /// The records of all the [`Recent`], newest first.
    pub fn recent_list(&self) -> Vec<Arc<Record>> {
        (self.recent.kept().into_iter())
            .map(|k| match k {
                Kept::Record(r) => r,
                Kept::Delivered(d) => Arc::new(self.view(&d)),
            })
            .collect()
    }

    /// What the lifecycle makes of a direct run that went well: its record, as it would have
    /// been had it run from one.
    fn view(&self, d: &Delivered) -> Record {
        let (input, params) = (d.input.clone(), d.params.clone());
        let mut record = Record::new(&d.id, &d.workflow, d.origin.clone(), input, params);
        record.created_ms = d.started_ms;
        let logic = self.registry.get(&d.workflow).map(|w| w.as_ref());
        let (result, took) = (d.result.clone(), (d.started_ms, d.ended_ms));
        lifecycle::delivered(logic, &self.options, &mut record, result, took);
        record
    }

    /// The concurrency limit of a workflow kind.
    pub(crate) fn limit(&self, kind: &str) -> Option<Arc<Semaphore>> {
        self.limits.get(kind).cloned()
    }
}

/// Resolves once `shutdown` is true. (A helper rather than `wait_for` in a `select!`: its
/// guard is not `Send`, and these futures run on the multi-threaded pool.)
pub async fn shutdown_begun(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Cancels asked for instances that run in this process; the run takes its request at its
/// next step (a sleep ends at once: it listens on [`runner::cancel_key`]).
#[derive(Debug, Default)]
pub struct Cancels {
    requested: std::sync::Mutex<HashMap<String, crate::journal::Cancel>>,
}

impl Cancels {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, crate::journal::Cancel>> {
        self.requested.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn request(&self, id: &str, cancel: crate::journal::Cancel) {
        self.lock().insert(id.to_owned(), cancel);
    }

    pub fn take(&self, id: &str) -> Option<crate::journal::Cancel> {
        self.lock().remove(id)
    }
}

/// The paused routes, kept in the journal (setting [`Paused::SETTING`]) so that a restart
/// (and every process of a shared journal) keeps them paused. `changes` counts changes: an
/// intake holding messages back for a paused route brings them back when it moves.
#[derive(Debug)]
pub struct Paused {
    routes: std::sync::RwLock<std::collections::BTreeSet<String>>,
    changes: watch::Sender<u64>,
}

impl Default for Paused {
    fn default() -> Self {
        Paused {
            routes: Default::default(),
            changes: watch::channel(0).0,
        }
    }
}

impl Paused {
    pub const SETTING: &'static str = "paused_routes";

    pub fn contains(&self, route: &str) -> bool {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        !routes.is_empty() && routes.contains(route)
    }

    pub fn routes(&self) -> Vec<String> {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        routes.iter().cloned().collect()
    }

    /// Told of every change (a resume most of all).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Replaces the set (as read from the journal); true if it changed.
    pub fn replace(&self, routes: std::collections::BTreeSet<String>) -> bool {
        let mut current = self.routes.write().unwrap_or_else(|e| e.into_inner());
        if *current == routes {
            return false;
        }
        *current = routes;
        drop(current);
        self.changes.send_modify(|n| *n += 1);
        true
    }

    /// Reads the set from the journal.
    pub async fn load(&self, journal: &dyn Journal) -> Result<bool, crate::journal::JournalError> {
        let value = journal.setting(Self::SETTING).await?;
        let routes = value
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        Ok(self.replace(routes))
    }

    /// Pauses (`true`) or resumes `route`, durably; the set after the change.
    pub async fn set(
        &self,
        journal: &dyn Journal,
        route: &str,
        paused: bool,
    ) -> Result<Vec<String>, crate::journal::JournalError> {
        // Read first: another process of a shared journal may have changed the set.
        let stored = journal.setting(Self::SETTING).await?;
        let mut routes: std::collections::BTreeSet<String> = stored
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        if paused {
            routes.insert(route.to_owned());
        } else {
            routes.remove(route);
        }
        journal
            .put_setting(Self::SETTING, &serde_json::json!(routes))
            .await?;
        self.replace(routes);
        Ok(self.routes())
    }
}

/// The in-process sleeps waiting on a key (such as `ecs-task:<task ARN>`).
#[derive(Debug, Default)]
pub struct Wakers {
    waiting: std::sync::Mutex<HashMap<String, Vec<Arc<tokio::sync::Notify>>>>,
}

impl Wakers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Arc<tokio::sync::Notify>>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a sleeper on `key`.
    pub fn register(&self, key: &str) -> (String, Arc<tokio::sync::Notify>) {
        let notify = Arc::new(tokio::sync::Notify::new());
        self.lock()
            .entry(key.to_owned())
            .or_default()
            .push(notify.clone());
        (key.to_owned(), notify)
    }

    pub fn unregister(&self, key: &str, notify: &Arc<tokio::sync::Notify>) {
        let mut waiting = self.lock();
        if let Some(list) = waiting.get_mut(key) {
            list.retain(|n| !Arc::ptr_eq(n, notify));
            if list.is_empty() {
                waiting.remove(key);
            }
        }
    }

    /// Wakes every sleeper on `key`; whether there was one.
    pub fn wake(&self, key: &str) -> bool {
        match self.lock().get(key) {
            Some(list) if !list.is_empty() => {
                // notify_one keeps a permit if the sleeper is between registering and waiting.
                list.iter().for_each(|n| n.notify_one());
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests;
