//! The schedules' loop in a running service: at each schedule's fire time it takes the
//! schedule's lease (a shared journal: one process of many fires it), reads the schedule's
//! state from the journal, sends the due ticks' events to the schedule's queue, and writes the
//! state back. Sleeps on the service's clock until the next fire (or the end of a lease that
//! another process holds), and stops with the service.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{Due, Schedule, State, state_key, tick_id};
use crate::journal::{Claim, Journal, JournalError};
use crate::ports::clock::Clock;
use crate::ports::{OutgoingMessage, Queue};

/// The longest the loop sleeps without looking again (a pause or resume by an operator is
/// seen within it).
const LOOK_AGAIN: Duration = Duration::from_secs(30);

/// Everything the loop needs.
pub struct Scheduler {
    pub schedules: Vec<Schedule>,
    /// The configured queues by name.
    pub queues: BTreeMap<String, Arc<dyn Queue>>,
    pub journal: Arc<dyn Journal>,
    pub clock: Arc<dyn Clock>,
    /// The region events name.
    pub region: String,
    /// Fires, lateness, ticks passed over.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// What happened to a schedule at one look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Looked {
    /// Ticks sent (and passed over), the next fire after them.
    Fired {
        due: Due,
        next: Option<i64>,
    },
    /// Nothing due before `next`.
    Waiting {
        next: Option<i64>,
    },
    /// Another process holds the lease until then.
    HeldElsewhere {
        until_ms: i64,
    },
    Paused,
    Disabled,
}

impl Scheduler {
    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        if self.schedules.is_empty() {
            return;
        }
        loop {
            if *shutdown.borrow() {
                return;
            }
            let now = self.clock.now_ms() as i64;
            let mut wake = now + LOOK_AGAIN.as_millis() as i64;
            for s in &self.schedules {
                let at = match self.look(s).await {
                    Ok(Looked::Fired { next, .. } | Looked::Waiting { next }) => next,
                    Ok(Looked::HeldElsewhere { until_ms }) => Some(until_ms + 100),
                    Ok(Looked::Paused | Looked::Disabled) => None,
                    Err(e) => {
                        tracing::warn!(schedule = %s.name, error = %e, "schedule: will look again");
                        Some(now + 5_000)
                    }
                };
                if let Some(at) = at {
                    wake = wake.min(at);
                }
            }
            let sleep = Duration::from_millis((wake - self.clock.now_ms() as i64).max(0) as u64);
            tokio::select! {
                _ = self.clock.sleep(sleep) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Looks at one schedule now: fires what is due (when this process may).
    pub async fn look(&self, s: &Schedule) -> Result<Looked, String> {
        if !s.enabled {
            return Ok(Looked::Disabled);
        }
        let key = state_key(&s.name);
        let now = self.clock.now_ms() as i64;
        let found = self.state(s).await.map_err(|e| e.to_string())?;
        let seen = found.unwrap_or_else(|| s.first_state(now));
        if seen.paused {
            return Ok(Looked::Paused);
        }
        let next = s.next_fire(&seen);
        if found.is_some() && next.is_none_or(|n| n > now) {
            return Ok(Looked::Waiting { next });
        }
        // A tick is due, or the schedule is new (its anchor is written once, by one process):
        // only the holder of the schedule's lease acts.
        if self.journal.is_shared() {
            match self.journal.claim(&key).await.map_err(|e| e.to_string())? {
                Claim::Granted => {}
                Claim::HeldBy { until_ms, .. } => {
                    return Ok(Looked::HeldElsewhere {
                        until_ms: until_ms as i64,
                    });
                }
            }
        }
        // Read again under the lease: another process may have fired it meanwhile.
        let state = match self.state(s).await.map_err(|e| e.to_string())? {
            Some(state) => state,
            None => {
                let state = s.first_state(now);
                self.save(&key, &state).await?;
                state
            }
        };
        if state.paused {
            return Ok(Looked::Paused);
        }
        let due = s.due(&state, now);
        if !due.fire.is_empty() {
            self.send(s, &due.fire).await?;
        }
        if due.skipped > 0 {
            self.metrics.skipped(&s.name, due.skipped as u64);
            tracing::warn!(schedule = %s.name, skipped = due.skipped, catch_up = ?s.catch_up,
                "schedule: ticks missed while no process ran were passed over");
        }
        let after = State {
            last_ms: due.last_ms,
            ..state
        };
        if after != state {
            self.save(&key, &after).await?;
        }
        Ok(Looked::Fired {
            next: s.next_fire(&after),
            due,
        })
    }

    async fn state(&self, s: &Schedule) -> Result<Option<State>, JournalError> {
        read_state(self.journal.as_ref(), s).await
    }

    async fn save(&self, key: &str, state: &State) -> Result<(), String> {
        let value = serde_json::to_value(state).map_err(|e| e.to_string())?;
        self.journal
            .put_setting(key, &value)
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends the ticks' events, ten at a time; every one must be accepted.
    async fn send(&self, s: &Schedule, ticks: &[i64]) -> Result<(), String> {
        let queue = self
            .queues
            .get(&s.queue)
            .ok_or_else(|| format!("queue {} is not open", s.queue))?;
        let fifo = s.queue.ends_with(".fifo");
        let now = self.clock.now_ms() as i64;
        for chunk in ticks.chunks(10) {
            let messages: Vec<OutgoingMessage> = chunk
                .iter()
                .map(|t| OutgoingMessage {
                    body: s.event(*t, &self.region).to_string(),
                    attributes: BTreeMap::new(),
                    group_id: fifo.then(|| s.name.clone()),
                    deduplication_id: fifo.then(|| tick_id(&s.name, *t)),
                    delay: None,
                })
                .collect();
            let sent = queue
                .send_batch(&messages)
                .await
                .map_err(|e| format!("sending to {}: {e}", s.queue))?;
            if let Some(Err(f)) = sent.iter().find(|r| r.is_err()) {
                return Err(format!("sending to {}: {f:?}", s.queue));
            }
            for t in chunk {
                let late = (now - (t + s.offset_ms(*t))).max(0) as u64;
                self.metrics.fired(&s.name, Duration::from_millis(late));
                tracing::info!(schedule = %s.name, tick_ms = t, late_ms = now - t, queue = %s.queue,
                    "schedule: fired");
            }
        }
        Ok(())
    }
}

/// A schedule's state as the journal holds it (`None`: never seen, or unreadable — then it
/// starts again as new).
async fn read_state(journal: &dyn Journal, s: &Schedule) -> Result<Option<State>, JournalError> {
    Ok(journal
        .setting(&state_key(&s.name))
        .await?
        .and_then(|v| serde_json::from_value(v).ok()))
}

/// A schedule's state as the journal holds it, or as it would be first seen at `now_ms`.
pub async fn state_of(
    journal: &dyn Journal,
    s: &Schedule,
    now_ms: i64,
) -> Result<(State, bool), JournalError> {
    Ok(match read_state(journal, s).await? {
        Some(state) => (state, true),
        None => (s.first_state(now_ms), false),
    })
}

/// Pauses or resumes a schedule (an operator's action). A resume owes nothing of the paused
/// time: the ticks it passed over are not fired (as a disabled EventBridge schedule's are
/// not), the next one is.
pub async fn set_paused(
    journal: &dyn Journal,
    s: &Schedule,
    paused: bool,
    now_ms: i64,
) -> Result<State, JournalError> {
    let (mut state, _) = state_of(journal, s, now_ms).await?;
    if state.paused == paused {
        return Ok(state);
    }
    state.paused = paused;
    if !paused {
        state.last_ms = state.last_ms.max(now_ms);
    }
    let value = serde_json::to_value(state).map_err(|e| JournalError::Corrupt {
        id: state_key(&s.name),
        message: e.to_string(),
    })?;
    journal.put_setting(&state_key(&s.name), &value).await?;
    Ok(state)
}

/// What `/schedules` and `tugboat schedule list` show of one schedule.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ScheduleView {
    pub name: String,
    pub expression: String,
    pub timezone: String,
    pub queue: String,
    pub enabled: bool,
    pub paused: bool,
    pub catch_up: super::CatchUp,
    /// Ticks up to this time are settled (fired or passed over); RFC 3339.
    pub through: Option<String>,
    /// The next fire times (at most three), RFC 3339 in UTC.
    pub next: Vec<String>,
}

/// The view of `s` in `state` at `now_ms`: the next fire times are those to come (a tick
/// owed from before now is fired at once by the running service, as `catch_up` says).
pub fn view(s: &Schedule, state: &State, now_ms: i64) -> ScheduleView {
    let mut next = Vec::new();
    let mut after = *state;
    after.last_ms = after.last_ms.max(now_ms - 1);
    if s.enabled && !state.paused {
        while next.len() < 3 {
            let Some(t) = s.next_after(after.last_ms, after.anchor_ms) else {
                break;
            };
            next.push(rfc3339(t + s.offset_ms(t)));
            after.last_ms = t;
        }
    }
    ScheduleView {
        name: s.name.clone(),
        expression: s.expression_text.clone(),
        timezone: s.timezone_name.clone(),
        queue: s.queue.clone(),
        enabled: s.enabled,
        paused: state.paused,
        catch_up: s.catch_up,
        through: Some(rfc3339(state.last_ms)),
        next,
    }
}

/// `ms` as RFC 3339 in UTC, to the second.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::memory::MemoryJournal;
    use crate::ports::clock::TokioClock;
    use crate::ports::memory::MemoryQueue;

    const HOUR: Duration = Duration::from_secs(3600);

    fn scheduler(journal: Arc<MemoryJournal>, queue: Arc<MemoryQueue>) -> (Scheduler, Schedule) {
        let config: super::super::ScheduleConfig = toml::from_str(
            "name = \"hourly\"\nrate = \"1 hour\"\ncatch_up = \"all\"\n[event]\nsource = \"s\"\ndetail-type = \"t\"\n",
        )
        .unwrap();
        let schedule = Schedule::compile(&config, &["q"]).unwrap();
        let scheduler = Scheduler {
            schedules: vec![schedule.clone()],
            queues: BTreeMap::from([("q".to_owned(), queue as Arc<dyn Queue>)]),
            journal,
            // 2026-12-07T10:00:00Z, on tokio's paused time.
            clock: Arc::new(TokioClock::starting_at(1_796_637_600_000)),
            region: "us-east-1".into(),
            metrics: Arc::new(crate::metrics::Metrics::default()),
        };
        (scheduler, schedule)
    }

    fn times(queue: &MemoryQueue) -> Vec<String> {
        let mut t: Vec<String> = queue
            .messages()
            .iter()
            .map(|m| {
                let v: serde_json::Value = serde_json::from_str(&m.body).unwrap();
                v["time"].as_str().unwrap().to_owned()
            })
            .collect();
        t.sort();
        t
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_schedule_fires_nothing_and_a_resume_owes_nothing_of_the_pause() {
        let journal = Arc::new(MemoryJournal::default());
        let queue = Arc::new(MemoryQueue::new("q"));
        let (sched, s) = scheduler(journal.clone(), queue.clone());
        // New: a rate fires at once, then waits an hour.
        assert!(matches!(sched.look(&s).await, Ok(Looked::Fired { .. })));
        assert!(matches!(sched.look(&s).await, Ok(Looked::Waiting { .. })));
        assert_eq!(times(&queue), ["2026-12-07T10:00:00Z"]);

        let now = || sched.clock.now_ms() as i64;
        set_paused(journal.as_ref(), &s, true, now()).await.unwrap();
        tokio::time::advance(3 * HOUR).await;
        assert_eq!(sched.look(&s).await, Ok(Looked::Paused));
        assert_eq!(queue.len(), 1, "a paused schedule fired");

        // Resumed after three hours: the three ticks of the pause are not owed (catch_up =
        // all notwithstanding); the next one, at 14:00, fires.
        set_paused(journal.as_ref(), &s, false, now())
            .await
            .unwrap();
        assert!(matches!(sched.look(&s).await, Ok(Looked::Waiting { .. })));
        assert_eq!(queue.len(), 1);
        tokio::time::advance(HOUR).await;
        sched.look(&s).await.unwrap();
        assert_eq!(
            times(&queue),
            ["2026-12-07T10:00:00Z", "2026-12-07T14:00:00Z"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_fires_on_time_on_the_clock_and_stops_at_shutdown() {
        let journal = Arc::new(MemoryJournal::default());
        let queue = Arc::new(MemoryQueue::new("q"));
        let (sched, _) = scheduler(journal.clone(), queue.clone());
        let (stop, shutdown) = watch::channel(false);
        let running = tokio::spawn(sched.run(shutdown));
        // Three hours of virtual time: the tick at once and one each hour.
        for _ in 0..3 {
            tokio::time::sleep(HOUR).await;
        }
        tokio::task::yield_now().await;
        assert_eq!(
            times(&queue),
            [
                "2026-12-07T10:00:00Z",
                "2026-12-07T11:00:00Z",
                "2026-12-07T12:00:00Z",
                "2026-12-07T13:00:00Z"
            ]
        );
        stop.send(true).unwrap();
        running.await.unwrap();
    }
}
