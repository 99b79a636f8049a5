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
        let state = match self.state(s, now).await.map_err(|e| e.to_string())? {
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
        let next = s.next_fire(&state);
        if next.is_none_or(|n| n > now) {
            return Ok(Looked::Waiting { next });
        }
        // Something is due: only the holder of the schedule's lease fires it.
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
        let state = self
            .state(s, now)
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or(state);
        let due = s.due(&state, now);
        if !due.fire.is_empty() {
            self.send(s, &due.fire).await?;
        }
        if due.skipped > 0 {
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

    async fn state(&self, s: &Schedule, _now: i64) -> Result<Option<State>, JournalError> {
        Ok(self
            .journal
            .setting(&state_key(&s.name))
            .await?
            .and_then(|v| serde_json::from_value(v).ok()))
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
                tracing::info!(schedule = %s.name, tick_ms = t, late_ms = now - t, queue = %s.queue,
                    "schedule: fired");
            }
        }
        Ok(())
    }
}
