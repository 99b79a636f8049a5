//! What each console page shows, as data: the JSON API answers with these, and
//! [`super::pages`] renders the same values as HTML.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AdminState, ApiError};
use crate::journal::{ListFilter, Record, Status, Summary, now_ms};
use crate::schedule::runner::ScheduleView;
use crate::workflows::BuiltPage;
use crate::workflows::surface::{Instance, PageInput};

/// The filters of the workflows page (all optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkflowsQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Updated within this long (`15m`, `2h`, `7d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// A piece of the instance id or of the event's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// A message to show after an action (the console's own redirect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

impl WorkflowsQuery {
    /// Empty fields (a form's blank inputs) are no filter.
    fn tidy(mut self) -> WorkflowsQuery {
        for f in [
            &mut self.status,
            &mut self.route,
            &mut self.kind,
            &mut self.since,
            &mut self.q,
        ] {
            if f.as_deref().is_some_and(|v| v.trim().is_empty()) {
                *f = None;
            }
        }
        self
    }

    fn since_ms(&self) -> Result<Option<u64>, ApiError> {
        let Some(since) = &self.since else {
            return Ok(None);
        };
        let d = humantime::parse_duration(since.trim()).map_err(|e| {
            ApiError::bad_request(format!("since={since:?}: {e} (as in 15m, 2h or 7d)"))
        })?;
        Ok(Some(now_ms().saturating_sub(d.as_millis() as u64)))
    }

    /// Whether `s` passes every filter but the status (the counts per status use that).
    fn accepts_but_status(&self, s: &Summary, since_ms: Option<u64>) -> bool {
        self.route.as_deref().is_none_or(|r| r == s.route)
            && self.kind.as_deref().is_none_or(|k| k == s.workflow)
            && since_ms.is_none_or(|t| s.updated_ms >= t)
            && self.q.as_deref().is_none_or(|q| {
                s.id.contains(q) || s.event_id.as_deref().is_some_and(|e| e.contains(q))
            })
    }
}

/// The largest page of instances.
pub const MAX_LIMIT: usize = 1000;

#[derive(Debug, Clone, Serialize)]
pub struct RouteView {
    pub name: String,
    pub workflow: String,
    pub paused: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkflowsView {
    /// Instances per status among those the other filters pass.
    pub counts: BTreeMap<String, usize>,
    /// How many pass every filter (at most `limit` are listed).
    pub matching: usize,
    pub instances: Vec<Summary>,
    pub routes: Vec<RouteView>,
    pub kinds: Vec<String>,
    pub query: WorkflowsQuery,
    pub actions: bool,
}

/// Every instance's summary, newest first, kept current from the engine's updates once
/// built (one journal scan, at the first request that needs it). Instances another process
/// of a shared journal changes show at the next scan (`refresh`).
#[derive(Debug, Default)]
pub struct Index {
    inner: Mutex<Indexed>,
    following: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default)]
struct Indexed {
    by_id: HashMap<String, Summary>,
    /// The ids of the unjournaled ones in `by_id` (deliveries whose message was their
    /// record), oldest first: at most [`crate::engine::RECENT`] are kept, as the engine does.
    unjournaled: std::collections::VecDeque<String>,
    /// Whether `by_id` holds a whole scan of the journal (else the next use scans).
    scanned: bool,
    /// Whether it ever did (the engine's recent unjournaled instances are taken in once).
    scanned_once: bool,
}

impl Index {
    fn lock(&self) -> std::sync::MutexGuard<'_, Indexed> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An update the engine journaled (kept even while a scan runs: it is newer).
    pub fn update(&self, s: &Summary) {
        let mut index = self.lock();
        if !s.journaled {
            index.unjournaled.push_back(s.id.clone());
            if index.unjournaled.len() > crate::engine::RECENT
                && let Some(old) = index.unjournaled.pop_front()
                && index.by_id.get(&old).is_some_and(|o| !o.journaled)
            {
                index.by_id.remove(&old);
            }
        }
        index.by_id.insert(s.id.clone(), s.clone());
    }

    /// The next use scans the journal again (updates were missed, or other processes of a
    /// shared journal changed instances).
    pub fn refresh(&self) {
        self.lock().scanned = false;
    }

    /// Runs `f` over the summaries as they are (no scan: for the live stream, which must
    /// not scan a shared journal four times a second); `None` before the first scan.
    pub fn peek<T>(&self, f: impl FnOnce(&HashMap<String, Summary>) -> T) -> Option<T> {
        let index = self.lock();
        (index.scanned || !index.by_id.is_empty()).then(|| f(&index.by_id))
    }

    /// Runs `f` over the summaries, scanning the journal first if needed.
    pub async fn with<T>(
        &self,
        state: &AdminState,
        f: impl FnOnce(&HashMap<String, Summary>) -> T,
    ) -> Result<T, ApiError> {
        if !self
            .following
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            follow(state);
        }
        if !self.lock().scanned {
            let scanned = state.journal.summaries().await.map_err(ApiError::journal)?;
            // The deliveries that ended before the console followed, with no record.
            let first = !self.lock().scanned_once;
            if first {
                for r in state.dispatcher.engine().recent_list().iter().rev() {
                    if !self.lock().by_id.contains_key(&r.id) {
                        let mut s = r.summary();
                        s.journaled = false;
                        self.update(&s);
                    }
                }
            }
            let mut index = self.lock();
            index.scanned_once = true;
            for s in scanned {
                // An update that arrived during the scan is at least as new as what it read.
                let newer = index
                    .by_id
                    .get(&s.id)
                    .is_none_or(|known| known.updated_ms <= s.updated_ms);
                if newer {
                    index.by_id.insert(s.id.clone(), s);
                }
            }
            index.scanned = true;
        }
        Ok(f(&self.lock().by_id))
    }
}

/// Keeps the index current from the engine's updates (subscribed before the first scan, so
/// that nothing between the two is missed); a shared journal's index is rebuilt every
/// [`SHARED_REFRESH`], for what other processes changed.
fn follow(state: &AdminState) {
    let engine = state.dispatcher.engine();
    let mut updates = engine.updates.subscribe();
    let shared = engine.journal.is_shared();
    let console = state.console.clone();
    let mut shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        let mut refresh = tokio::time::interval(SHARED_REFRESH);
        loop {
            tokio::select! {
                update = updates.recv() => match update {
                    Ok(s) => console.index.update(&s),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => console.index.refresh(),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                _ = refresh.tick(), if shared => console.index.refresh(),
                _ = crate::engine::shutdown_begun(&mut shutdown) => return,
            }
        }
    });
}

/// Counts per status, in lifecycle order, every status present (0 when none).
pub fn counts<'a>(summaries: impl Iterator<Item = &'a Summary>) -> BTreeMap<String, usize> {
    // Counted by position, without an allocation per instance (this runs for every batch
    // of live updates).
    let mut n = [0usize; Status::NAMES.len()];
    for s in summaries {
        if let Some(i) = Status::NAMES.iter().position(|name| *name == s.status) {
            n[i] += 1;
        }
    }
    Status::NAMES
        .iter()
        .zip(n)
        .map(|(name, count)| (name.to_string(), count))
        .collect()
}

pub async fn workflows(
    state: &AdminState,
    query: WorkflowsQuery,
) -> Result<WorkflowsView, ApiError> {
    let query = query.tidy();
    if let Some(s) = &query.status
        && !Status::NAMES.contains(&s.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "status={s:?}: one of {}",
            Status::NAMES.join(", ")
        )));
    }
    let since_ms = query.since_ms()?;
    let limit = query.limit.unwrap_or(100).clamp(1, MAX_LIMIT);
    let (counts, matching, instances) = state
        .console
        .index
        .with(state, |all| {
            let passing: Vec<&Summary> = all
                .values()
                .filter(|s| query.accepts_but_status(s, since_ms))
                .collect();
            let counts = counts(passing.iter().copied());
            let mut chosen: Vec<&Summary> = passing
                .into_iter()
                .filter(|s| query.status.as_deref().is_none_or(|st| st == s.status))
                .collect();
            let matching = chosen.len();
            // Newest first: only the first `limit` are sorted.
            let newest = |a: &&Summary, b: &&Summary| {
                b.updated_ms
                    .cmp(&a.updated_ms)
                    .then_with(|| a.id.cmp(&b.id))
            };
            if chosen.len() > limit {
                chosen.select_nth_unstable_by(limit - 1, newest);
                chosen.truncate(limit);
            }
            chosen.sort_unstable_by(newest);
            (counts, matching, chosen.into_iter().cloned().collect())
        })
        .await?;
    let engine = state.dispatcher.engine();
    Ok(WorkflowsView {
        counts,
        matching,
        instances,
        routes: routes(state),
        kinds: engine
            .registry
            .names()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        query: WorkflowsQuery {
            limit: Some(limit),
            ..query
        },
        actions: state.console.allow_actions,
    })
}

/// The configured routes, with whether each is paused.
pub fn routes(state: &AdminState) -> Vec<RouteView> {
    let paused = &state.dispatcher.engine().paused;
    state
        .console
        .routes
        .iter()
        .map(|(name, workflow)| RouteView {
            name: name.clone(),
            workflow: workflow.clone(),
            paused: paused.contains(name),
        })
        .collect()
}

/// Every configured schedule with its state in the journal and its next fire times.
pub async fn schedules(state: &AdminState) -> Result<Vec<ScheduleView>, ApiError> {
    let engine = state.dispatcher.engine();
    let now = engine.clock.now_ms() as i64;
    let mut out = Vec::new();
    for s in &state.console.schedules {
        let (st, _) = crate::schedule::runner::state_of(engine.journal.as_ref(), s, now)
            .await
            .map_err(ApiError::journal)?;
        out.push(crate::schedule::runner::view(s, &st, now));
    }
    Ok(out)
}

/// One attempt on the timeline, placed as a share of the instance's life.
#[derive(Debug, Clone, Serialize)]
pub struct Bar {
    /// Where it starts and how wide it is, in % of the timeline.
    pub left: f64,
    pub width: f64,
    /// ok, failed, running, sleep
    pub state: &'static str,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRow {
    pub name: String,
    pub compensation: bool,
    pub sleep: bool,
    pub attempts: u32,
    pub state: &'static str,
    pub bars: Vec<Bar>,
    /// Attempts made before the first one still on the record.
    pub earlier_attempts: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub start_ms: u64,
    pub end_ms: u64,
    pub rows: Vec<StepRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    pub record: Record,
    pub timeline: Timeline,
    /// The W3C trace id of the message's trace (or of the run's), when it was traced.
    pub trace_id: Option<String>,
    pub trace_url: Option<String>,
    pub can_cancel: bool,
    pub can_retry: bool,
    pub actions: bool,
}

pub async fn instance(state: &AdminState, id: &str) -> Result<InstanceView, ApiError> {
    let record = match state.journal.get(id).await {
        Ok(Some(r)) => r,
        // One of the last deliveries that went well with their message as their record.
        Ok(None) => match state.dispatcher.engine().recent(id) {
            Some(r) => (*r).clone(),
            None => return Err(ApiError::not_found(format!("no workflow {id}"))),
        },
        Err(e) => return Err(ApiError::journal(e)),
    };
    let trace_id = record
        .trace
        .as_deref()
        .or(record.run_span.as_deref())
        .and_then(|tp| tp.split('-').nth(1))
        .filter(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned);
    let trace_url = match (&trace_id, &state.console.trace_url) {
        (Some(t), Some(template)) => Some(template.replace("{trace_id}", t)),
        _ => None,
    };
    let can_cancel = matches!(record.status, Status::Running | Status::Waiting { .. });
    let can_retry = matches!(
        record.status,
        Status::DeadLettered { .. } | Status::Cancelled { .. }
    );
    Ok(InstanceView {
        timeline: timeline(&record, now_ms()),
        trace_id,
        trace_url,
        can_cancel,
        can_retry,
        actions: state.console.allow_actions,
        record,
    })
}

/// The steps of the current run as bars on one time axis, from the instance's creation (or
/// its generation's first step) to its last change (now, while it runs).
pub fn timeline(r: &Record, now: u64) -> Timeline {
    let start_ms = r
        .steps
        .iter()
        .map(|s| s.first_started_ms)
        .min()
        .unwrap_or(r.created_ms)
        .min(r.updated_ms);
    let end_ms = if r.status.is_terminal() || matches!(r.status, Status::Failed { .. }) {
        r.updated_ms
    } else {
        now.max(r.updated_ms)
    };
    let span = (end_ms.saturating_sub(start_ms)).max(1) as f64;
    let place = |t: u64| (t.saturating_sub(start_ms) as f64 / span * 100.0).clamp(0.0, 100.0);
    let rows = r
        .steps
        .iter()
        .map(|s| {
            let running =
                s.finished_ms.is_none() && r.pending.as_ref().is_some_and(|p| p.name == s.name);
            let state = if running {
                "running"
            } else if s.output.is_some() {
                "ok"
            } else if s.last_error.is_some() {
                "failed"
            } else {
                "pending"
            };
            // Records written before attempts were kept show one bar for the whole step.
            let tries: Vec<(u64, Option<u64>, Option<String>)> = if s.tries.is_empty() {
                vec![(s.first_started_ms, s.finished_ms, s.last_error.clone())]
            } else {
                s.tries
                    .iter()
                    .map(|t| (t.started_ms, t.ended_ms, t.error.clone()))
                    .collect()
            };
            let bars = tries
                .into_iter()
                .map(|(started, ended, error)| {
                    let left = place(started);
                    let right = place(ended.unwrap_or(end_ms));
                    // At least visible, and inside the axis even at its very end.
                    let width = (right - left).max(0.4);
                    Bar {
                        left: left.min(100.0 - width),
                        width,
                        state: match (&error, ended) {
                            (Some(_), _) => "failed",
                            (None, None) if running => "running",
                            (None, None) => "pending",
                            _ if s.sleep => "sleep",
                            _ => "ok",
                        },
                        started_ms: started,
                        ended_ms: ended,
                        error,
                    }
                })
                .collect::<Vec<_>>();
            StepRow {
                name: s.name.clone(),
                compensation: s.compensation,
                sleep: s.sleep,
                attempts: s.attempts,
                state,
                earlier_attempts: s.attempts.saturating_sub(bars.len() as u32),
                bars,
            }
        })
        .collect();
    Timeline {
        start_ms,
        end_ms,
        rows,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Letter {
    pub message_id: String,
    pub workflow: Option<String>,
    pub workflow_id: Option<String>,
    pub route: Option<String>,
    pub step: Option<String>,
    pub attempts: Option<String>,
    pub generation: Option<String>,
    pub reason: String,
    pub failed_at: Option<String>,
    pub compensation: Option<String>,
    /// The instance's status now (it may have been retried since).
    pub status_now: Option<String>,
    pub body: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DlqView {
    pub queue: String,
    pub dlq: Option<String>,
    pub letters: Vec<Letter>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeadLettersView {
    pub queues: Vec<DlqView>,
    pub actions: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

/// Dead letters read per DLQ (this many at most).
pub const LETTERS_SHOWN: usize = 100;

pub async fn dead_letters(state: &AdminState, notice: Option<String>) -> DeadLettersView {
    let mut queues = Vec::new();
    for q in &state.console.queues {
        let Some(dlq) = &q.dlq else {
            queues.push(DlqView {
                queue: q.name.clone(),
                dlq: None,
                letters: vec![],
                error: None,
            });
            continue;
        };
        let (letters, error) =
            match crate::operate::dead_letters::list(dlq.as_ref(), LETTERS_SHOWN).await {
                Ok(l) => (l, None),
                Err(e) => (vec![], Some(e)),
            };
        let mut shown = Vec::new();
        for l in letters {
            let status_now = match l.workflow_id() {
                Some(id) => match state.journal.get(id).await {
                    Ok(Some(r)) => Some(r.status.name().to_owned()),
                    _ => None,
                },
                None => None,
            };
            let get = |k: &str| l.get(k).map(str::to_owned);
            shown.push(Letter {
                workflow: get("tugboat-workflow"),
                workflow_id: get("tugboat-workflow-id"),
                route: get("tugboat-route"),
                step: get("tugboat-step"),
                attempts: get("tugboat-attempts"),
                generation: get("tugboat-generation"),
                reason: l.reason().to_owned(),
                failed_at: get("tugboat-failed-at"),
                compensation: get("tugboat-compensation"),
                status_now,
                message_id: l.message_id,
                body: l.body,
            });
        }
        queues.push(DlqView {
            queue: q.name.clone(),
            dlq: Some(dlq.name().to_owned()),
            letters: shown,
            error,
        });
    }
    DeadLettersView {
        queues,
        actions: state.console.allow_actions,
        notice,
    }
}

/// The view of a page a workflow adds: built from every instance of its kind in the journal.
pub async fn workflow_page(
    state: &AdminState,
    page: &BuiltPage,
    query: &BTreeMap<String, String>,
) -> Result<Value, ApiError> {
    let records = state
        .journal
        .list(&ListFilter::default())
        .await
        .map_err(ApiError::journal)?;
    let input = PageInput {
        instances: records
            .iter()
            .filter(|r| r.workflow == page.kind)
            .map(|r| Instance {
                state: &r.state,
                output: r.output.as_ref(),
            })
            .collect(),
        query,
        now_ms: state.dispatcher.engine().clock.now_ms(),
    };
    page.view.view(input).await.map_err(ApiError::bad_request)
}

/// How long the console waits between checks for changes by other processes of a shared
/// journal (its index is rebuilt).
pub const SHARED_REFRESH: Duration = Duration::from_secs(10);
