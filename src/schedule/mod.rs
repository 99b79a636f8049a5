//! Schedules: `[[schedules]]` in the configuration, each a cron or rate expression in a time
//! zone whose every tick is an EventBridge-shaped event sent to one of the configured queues —
//! routed there like any other event, so that any workflow can be scheduled.
//!
//! Exactly once per tick: the last tick fired lives in the journal (a setting per schedule,
//! which holds that tick and nothing that grows); a tick's event has an id made of the
//! schedule's name and the tick, so that a tick sent twice (a crash between the send and the
//! journal write, two processes) starts each route's instance once (the dispatcher's
//! dedupe). With a shared journal only the process holding the schedule's lease fires it
//! ([`runner`]). A tick missed while no process ran is fired on start as `catch_up` says.
//!
//! This file and [`expr`] are pure: what is due at a time, and the event of a tick.

pub mod expr;
pub mod runner;

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use expr::Expression;

/// One `[[schedules]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Unique; part of every tick's event id. Required.
    pub name: String,
    /// A cron expression: six fields as EventBridge (`0 8 ? * MON-FRI *`) or five as Unix
    /// (`0 8 * * 1-5`), with or without `cron( )`. One of `cron` and `rate` is required.
    #[serde(default)]
    pub cron: Option<String>,
    /// Every so often: `5 minutes`, `1 hour`, `2 days` (or `rate(5 minutes)`).
    #[serde(default)]
    pub rate: Option<String>,
    /// The IANA time zone `cron` is read in (`Europe/Berlin`). Default: UTC.
    #[serde(default = "utc")]
    pub timezone: String,
    /// The event each tick emits.
    pub event: EventTemplate,
    /// No tick before this instant (RFC 3339); a rate counts from it. Default: from when the
    /// schedule is first seen.
    #[serde(default)]
    pub start: Option<String>,
    /// No tick after this instant (RFC 3339). Default: none.
    #[serde(default)]
    pub end: Option<String>,
    /// Spread each fire over this long after its time (EventBridge's flexible time window),
    /// the same offset in every process. Default: 0 (fire at the time).
    #[serde(default, with = "humantime_serde")]
    pub flexible_window: Option<Duration>,
    /// `false` keeps the schedule configured but firing nothing. Default: true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Ticks missed while no process ran: `one` fires the latest of them once, `all` fires
    /// each, `none` fires none. Default: `one`.
    #[serde(default)]
    pub catch_up: CatchUp,
    /// The configured queue ticks are sent to. Default: the only queue, when there is one.
    #[serde(default)]
    pub queue: Option<String>,
}

fn utc() -> String {
    "UTC".into()
}

fn yes() -> bool {
    true
}

/// The event a tick emits: EventBridge's `source`, `detail-type` and `detail`; the tick's
/// time, its id and `resources = ["tugboat:schedule/NAME"]` are added.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTemplate {
    pub source: String,
    #[serde(rename = "detail-type", alias = "detail_type")]
    pub detail_type: String,
    #[serde(default)]
    pub detail: toml::Table,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    #[default]
    One,
    All,
    None,
}

/// A schedule ready to compute with: its expression parsed, its zone found.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub expression: Expression,
    /// As written (`cron(0 8 ? * MON-FRI *)`), for lists.
    pub expression_text: String,
    pub timezone: TimeZone,
    pub timezone_name: String,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub window: Duration,
    pub enabled: bool,
    pub catch_up: CatchUp,
    pub queue: String,
    pub source: String,
    pub detail_type: String,
    pub detail: Value,
}

/// How late a tick may fire and still count as on time rather than missed (EventBridge
/// Scheduler fires within its minute).
pub const ON_TIME: Duration = Duration::from_secs(60);

/// At most this many missed ticks are fired by `catch_up = "all"`: a schedule of every
/// minute that was down for a month does not send 43 200 events at once.
pub const MAX_CATCH_UP: usize = 1_000;

/// What the journal keeps of a schedule: its anchor (the start a rate counts from), the last
/// tick fired or passed over, and whether an operator paused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct State {
    pub anchor_ms: i64,
    pub last_ms: i64,
    #[serde(default)]
    pub paused: bool,
}

/// What is due now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The ticks to fire, oldest first.
    pub fire: Vec<i64>,
    /// Ticks passed over (missed, with `catch_up` other than `all`).
    pub skipped: usize,
    /// The new `last_ms`: the latest tick fired or passed over.
    pub last_ms: i64,
}

impl Schedule {
    /// Checks and compiles an entry; `Err((field, message))` names the wrong field.
    pub fn compile(
        c: &ScheduleConfig,
        queues: &[&str],
    ) -> Result<Schedule, (&'static str, String)> {
        if c.name.trim().is_empty() {
            return Err(("name", "must not be empty".into()));
        }
        if c.name.chars().any(|ch| ch.is_whitespace() || ch == '/') {
            return Err((
                "name",
                format!("{:?} must have no spaces or slashes", c.name),
            ));
        }
        let (field, text) = match (&c.cron, &c.rate) {
            (Some(cron), None) => ("cron", cron.trim()),
            (None, Some(rate)) => ("rate", rate.trim()),
            (Some(_), Some(_)) => return Err(("cron", "give cron or rate, not both".into())),
            (None, None) => return Err(("cron", "one of cron and rate is required".into())),
        };
        let inner = strip(text, field);
        let expression = if field == "cron" {
            expr::Cron::parse(inner).map(Expression::Cron)
        } else {
            expr::parse_rate(inner).map(Expression::Rate)
        }
        .map_err(|e| (field, e))?;
        let timezone = TimeZone::get(&c.timezone).map_err(|_| {
            (
                "timezone",
                format!(
                    "{:?} is not a time zone (an IANA name such as UTC, Europe/Berlin, America/New_York)",
                    c.timezone
                ),
            )
        })?;
        let instant = |field: &'static str, text: &Option<String>| match text {
            None => Ok(None),
            Some(t) => t
                .parse::<Timestamp>()
                .map(|t| Some(t.as_millisecond()))
                .map_err(|_| {
                    (
                        field,
                        format!("must be an RFC 3339 time such as 2026-12-24T08:00:00Z, got {t:?}"),
                    )
                }),
        };
        let start_ms = instant("start", &c.start)?;
        let end_ms = instant("end", &c.end)?;
        if let (Some(s), Some(e)) = (start_ms, end_ms)
            && e <= s
        {
            return Err(("end", "must be after start".into()));
        }
        let window = c.flexible_window.unwrap_or_default();
        if window > Duration::from_secs(24 * 3600) {
            return Err(("flexible_window", "must be at most 24h".into()));
        }
        let queue = match &c.queue {
            Some(q) if queues.contains(&q.as_str()) => q.clone(),
            Some(q) => return Err(("queue", format!("names unknown queue {q:?}"))),
            None if queues.len() == 1 => queues[0].to_owned(),
            None => {
                return Err((
                    "queue",
                    format!(
                        "is required when there is not exactly one queue (configured: {})",
                        queues.join(", ")
                    ),
                ));
            }
        };
        if c.event.source.trim().is_empty() {
            return Err(("event.source", "must not be empty".into()));
        }
        if c.event.detail_type.trim().is_empty() {
            return Err(("event.detail-type", "must not be empty".into()));
        }
        Ok(Schedule {
            name: c.name.clone(),
            expression,
            expression_text: format!("{field}({inner})"),
            timezone,
            timezone_name: c.timezone.clone(),
            start_ms,
            end_ms,
            window,
            enabled: c.enabled,
            catch_up: c.catch_up,
            queue,
            source: c.event.source.clone(),
            detail_type: c.event.detail_type.clone(),
            detail: serde_json::to_value(&c.event.detail).unwrap_or(Value::Null),
        })
    }

    /// The journal's state of a schedule seen for the first time at `now_ms`: nothing before
    /// now is owed; a rate without a start fires at once (as EventBridge Scheduler does).
    pub fn first_state(&self, now_ms: i64) -> State {
        let anchor_ms = self.start_ms.unwrap_or(now_ms);
        let last_ms = match self.expression {
            Expression::Rate(_) => (anchor_ms - 1).max(now_ms - 1),
            Expression::Cron(_) => now_ms.max(anchor_ms - 1),
        };
        State {
            anchor_ms,
            last_ms,
            paused: false,
        }
    }

    /// The first tick after `after_ms` (within start and end), for a schedule anchored at
    /// `anchor_ms`.
    pub fn next_after(&self, after_ms: i64, anchor_ms: i64) -> Option<i64> {
        let after_ms = match self.start_ms {
            Some(s) if after_ms < s => s - 1,
            _ => after_ms,
        };
        let next = match &self.expression {
            Expression::Rate(every) => {
                let every = every.as_millis() as i64;
                if after_ms < anchor_ms {
                    anchor_ms
                } else {
                    anchor_ms + ((after_ms - anchor_ms) / every + 1) * every
                }
            }
            Expression::Cron(cron) => cron
                .next_after(Timestamp::from_millisecond(after_ms).ok()?, &self.timezone)?
                .as_millisecond(),
        };
        match self.end_ms {
            Some(end) if next > end => None,
            _ => Some(next),
        }
    }

    /// How long after its tick a fire waits: a share of the flexible window made from the
    /// schedule's name and the tick, so that every process waits the same.
    pub fn offset_ms(&self, tick_ms: i64) -> i64 {
        let window = self.window.as_millis() as u64;
        if window == 0 {
            return 0;
        }
        let digest = Sha256::digest(format!("{}\n{tick_ms}", self.name));
        let n = u64::from_be_bytes(digest[..8].try_into().unwrap_or_default());
        (n % window) as i64
    }

    /// When the next fire after `state` is (its tick plus its offset), if any.
    pub fn next_fire(&self, state: &State) -> Option<i64> {
        self.next_after(state.last_ms, state.anchor_ms)
            .map(|t| t + self.offset_ms(t))
    }

    /// The ticks due at `now_ms` after `state`: each tick whose fire time has come, those
    /// missed by more than [`ON_TIME`] (past their window) treated as `catch_up` says.
    pub fn due(&self, state: &State, now_ms: i64) -> Due {
        let mut ticks = Vec::new();
        let mut after = state.last_ms;
        while let Some(t) = self.next_after(after, state.anchor_ms) {
            if t + self.offset_ms(t) > now_ms {
                break;
            }
            ticks.push(t);
            after = t;
            if ticks.len() > 100_000 {
                // Down for longer than any catch-up: the rest are passed over.
                break;
            }
        }
        let last_ms = ticks.last().copied().unwrap_or(state.last_ms);
        let late = |t: i64| now_ms - (t + self.offset_ms(t)) > ON_TIME.as_millis() as i64;
        let (missed, on_time): (Vec<i64>, Vec<i64>) = ticks.iter().partition(|t| late(**t));
        let mut fire = match self.catch_up {
            CatchUp::All => missed,
            // The latest missed one stands for them all, unless one is on time anyway.
            CatchUp::One if on_time.is_empty() => missed.last().copied().into_iter().collect(),
            CatchUp::One | CatchUp::None => Vec::new(),
        };
        fire.extend(on_time);
        // The latest MAX_CATCH_UP at most.
        let fire = fire.split_off(fire.len().saturating_sub(MAX_CATCH_UP));
        Due {
            skipped: ticks.len() - fire.len(),
            fire,
            last_ms,
        }
    }

    /// The event of tick `tick_ms`: its id is the same wherever and however often it is
    /// made, so that a tick sent twice starts each route's instance once.
    pub fn event(&self, tick_ms: i64, region: &str) -> Value {
        let time = runner::rfc3339(tick_ms);
        json!({
            "version": "0",
            "id": tick_id(&self.name, tick_ms),
            "detail-type": self.detail_type,
            "source": self.source,
            "account": "",
            "time": time,
            "region": region,
            "resources": [format!("tugboat:schedule/{}", self.name)],
            "detail": self.detail,
        })
    }
}

fn strip<'a>(text: &'a str, field: &str) -> &'a str {
    text.strip_prefix(&format!("{field}("))
        .and_then(|t| t.strip_suffix(')'))
        .unwrap_or(text)
}

/// A tick's event id: a UUID-shaped digest of the schedule's name and the tick.
pub fn tick_id(name: &str, tick_ms: i64) -> String {
    let d = hex::encode(Sha256::digest(format!(
        "tugboat-schedule\n{name}\n{tick_ms}"
    )));
    format!(
        "{}-{}-{}-{}-{}",
        &d[0..8],
        &d[8..12],
        &d[12..16],
        &d[16..20],
        &d[20..32]
    )
}

/// The journal setting that holds a schedule's [`State`].
pub fn state_key(name: &str) -> String {
    format!("schedule:{name}")
}

#[cfg(test)]
mod tests;
