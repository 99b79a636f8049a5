//! Schedule expressions as EventBridge Scheduler reads them, and their fire times.
//!
//! - `cron(min hour day-of-month month day-of-week year)` — EventBridge's six fields — or the
//!   five of Unix cron (`min hour dom month dow`, any year). Values, `*`, ranges `a-b`, lists
//!   `a,b`, steps `*/n` and `a-b/n`, month names `JAN`–`DEC`, day names `SUN`–`SAT`. Day of
//!   week counts 1–7 from Sunday in six fields (EventBridge), 0–7 from Sunday in five (Unix;
//!   0 and 7 are both Sunday). `?` means "any" in day-of-month or day-of-week; in six fields
//!   one of the two must be `?` (EventBridge refuses both), in five both may be given and a
//!   day matches either (Unix). `L` (last day of the month, or `nL`, the last weekday n of
//!   it), `W` (`15W`: the weekday nearest the 15th, within the month; `LW`) and `#`
//!   (`2#1`: the first Monday) as EventBridge has them.
//! - `rate(value unit)`: every `value` minutes, hours or days (or seconds: tugboat's, not
//!   EventBridge's), counted as fixed durations from the schedule's start (a "day" is 24
//!   hours, across a daylight-saving change too).
//!
//! Fire times are computed in the schedule's time zone (IANA names) as EventBridge Scheduler
//! does across daylight-saving changes: a time the clocks skip (spring forward) does not
//! fire; a time that happens twice (fall back) fires once, at its first occurrence.

use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::{Date, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};

/// A parsed schedule expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expression {
    Cron(Cron),
    /// Every this long, from the schedule's start.
    Rate(Duration),
}

/// A cron expression's fields, each as the set of values it allows.
#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    minutes: Bits,
    hours: Bits,
    months: Bits,
    days: Days,
    /// `None`: any year.
    years: Option<(i16, i16, i16)>,
    /// Both day fields restricted (Unix cron): a day matches either.
    either: bool,
}

/// Which values 0..=63 a field allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bits(u64);

impl Bits {
    fn has(self, v: i64) -> bool {
        (0..64).contains(&v) && self.0 & (1 << v) != 0
    }
}

/// The day fields.
#[derive(Debug, Clone, PartialEq)]
struct Days {
    /// Day of month: `None` for `?`/`*` (any).
    month_days: Option<MonthDays>,
    /// Day of week: `None` for `?`/`*` (any).
    week_days: Option<WeekDays>,
}

#[derive(Debug, Clone, PartialEq)]
enum MonthDays {
    Set(Bits),
    /// `L`: the last day of the month.
    Last,
    /// `nW`: the weekday nearest day n.
    NearestWeekday(i8),
    /// `LW`: the last weekday of the month.
    LastWeekday,
}

#[derive(Debug, Clone, PartialEq)]
enum WeekDays {
    /// Sunday = 0.
    Set(Bits),
    /// `nL`: the last weekday n (Sunday = 0) of the month.
    Last(i8),
    /// `n#k`: the k-th weekday n of the month.
    Nth(i8, i8),
}

/// Why an expression was refused, naming the field.
pub type ParseError = String;

impl Expression {
    /// Parses `cron(...)` or `rate(...)`.
    pub fn parse(text: &str) -> Result<Expression, ParseError> {
        let text = text.trim();
        if let Some(inner) = text.strip_prefix("rate(").and_then(|t| t.strip_suffix(')')) {
            return parse_rate(inner).map(Expression::Rate);
        }
        if let Some(inner) = text.strip_prefix("cron(").and_then(|t| t.strip_suffix(')')) {
            return Cron::parse(inner).map(Expression::Cron);
        }
        if text.starts_with("rate") || text.starts_with("cron") {
            return Err(format!(
                "{text:?} is neither rate(value unit) nor cron(fields)"
            ));
        }
        Err(format!(
            "{text:?} is neither rate(value unit) nor cron(fields) (an expression is one of the two)"
        ))
    }
}

/// `5 minutes`, `1 hour`, `2 days`.
pub fn parse_rate(text: &str) -> Result<Duration, ParseError> {
    let mut words = text.split_whitespace();
    let (Some(value), Some(unit), None) = (words.next(), words.next(), words.next()) else {
        return Err(format!(
            "rate must be `value unit` (30 seconds, 5 minutes, 1 hour, 2 days), got {text:?}"
        ));
    };
    let value: u64 = value
        .parse()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("rate's value must be a whole number above 0, got {value:?}"))?;
    let unit_secs = match unit {
        // Not EventBridge's (its least is a minute): tugboat's, for frequent checks.
        "second" | "seconds" => 1,
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3_600,
        "day" | "days" => 86_400,
        other => {
            return Err(format!(
                "rate's unit must be seconds, minutes, hours or days, got {other:?}"
            ));
        }
    };
    value
        .checked_mul(unit_secs)
        .filter(|s| *s <= 10 * 366 * 86_400)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("rate {text:?} is longer than ten years"))
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Cron {
    /// The fields of a cron expression, without `cron(` `)`.
    pub fn parse(text: &str) -> Result<Cron, ParseError> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let aws = match fields.len() {
            6 => true,
            5 => false,
            n => {
                return Err(format!(
                    "cron needs 6 fields (minutes hours day-of-month month day-of-week year) or 5 (Unix: without the year), got {n} in {text:?}"
                ));
            }
        };
        let minutes = bits("minutes", fields[0], 0, 59, &[])?;
        let hours = bits("hours", fields[1], 0, 23, &[])?;
        let months = bits("month", fields[3], 1, 12, &MONTHS)?;
        let month_days = month_days(fields[2])?;
        let week_days = week_days(fields[4], aws)?;
        if aws && fields[2] != "?" && fields[4] != "?" {
            return Err(format!(
                "day-of-month ({}) and day-of-week ({}) cannot both be given: one of them must be ?",
                fields[2], fields[4]
            ));
        }
        if aws && fields[2] == "?" && fields[4] == "?" {
            return Err("day-of-month and day-of-week cannot both be ?".into());
        }
        let years = if aws { years(fields[5])? } else { None };
        let either = !aws && month_days.is_some() && week_days.is_some();
        Ok(Cron {
            minutes,
            hours,
            months,
            days: Days {
                month_days,
                week_days,
            },
            years,
            either,
        })
    }

    /// Whether the schedule fires on `date` (its month and days; not its time of day).
    fn fires_on(&self, date: Date) -> bool {
        if !self.months.has(i64::from(date.month())) {
            return false;
        }
        if let Some((from, to, step)) = self.years {
            let y = date.year();
            if y < from || y > to || (y - from) % step != 0 {
                return false;
            }
        }
        let by_month = self.days.month_days.as_ref().map(|m| m.has(date));
        let by_week = self.days.week_days.as_ref().map(|w| w.has(date));
        match (by_month, by_week) {
            (Some(m), Some(w)) if self.either => m || w,
            (Some(m), Some(w)) => m && w,
            (Some(m), None) => m,
            (None, Some(w)) => w,
            (None, None) => true,
        }
    }

    /// The first fire time strictly after `after`, in `tz`; `None` when there is none (a
    /// year range that has ended, a 30th of February).
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        // Local times more than two hours before `after`'s cannot be after it, even across a
        // daylight-saving fold: they are passed over without asking the zone.
        let from = after
            .to_zoned(tz.clone())
            .datetime()
            .checked_sub(jiff::SignedDuration::from_hours(2))
            .ok()?;
        // Looked for over eight years of days, enough for every expression that fires at all
        // (a 29th of February in a leap year).
        let mut date = from.date();
        for _ in 0..(8 * 366 + 2) {
            if let Some(last) = self.years.map(|y| y.1)
                && date.year() > last
            {
                return None;
            }
            if self.fires_on(date) {
                let first_hour = if date == from.date() { from.hour() } else { 0 };
                for hour in (i64::from(first_hour)..24).filter(|h| self.hours.has(*h)) {
                    for minute in (0..60).filter(|m| self.minutes.has(*m)) {
                        let Some(at) = local(date, hour as i8, minute as i8, tz) else {
                            continue;
                        };
                        if at > after {
                            return Some(at);
                        }
                    }
                }
            }
            date = date.tomorrow().ok()?;
        }
        None
    }
}

/// The instant of a local time, as EventBridge Scheduler fires it: `None` for a time the
/// clocks skip; the first of a time that happens twice.
fn local(date: Date, hour: i8, minute: i8, tz: &TimeZone) -> Option<Timestamp> {
    let civil = date.at(hour, minute, 0, 0);
    let ambiguous = tz.to_ambiguous_timestamp(civil);
    match ambiguous.offset() {
        AmbiguousOffset::Gap { .. } => None,
        AmbiguousOffset::Unambiguous { .. } | AmbiguousOffset::Fold { .. } => {
            ambiguous.earlier().ok()
        }
    }
}

impl MonthDays {
    fn has(&self, date: Date) -> bool {
        let day = date.day();
        let last = date.days_in_month();
        match self {
            MonthDays::Set(bits) => bits.has(i64::from(day)),
            MonthDays::Last => day == last,
            MonthDays::NearestWeekday(n) => day == nearest_weekday(date, (*n).min(last)),
            MonthDays::LastWeekday => day == nearest_weekday(date, last),
        }
    }
}

/// The day of `date`'s month that is the weekday nearest its day `n`, within the month.
fn nearest_weekday(date: Date, n: i8) -> i8 {
    let Ok(target) = Date::new(date.year(), date.month(), n) else {
        return -1;
    };
    let last = date.days_in_month();
    match target.weekday() {
        Weekday::Saturday if n == 1 => 3,
        Weekday::Saturday => n - 1,
        Weekday::Sunday if n == last => n - 2,
        Weekday::Sunday => n + 1,
        _ => n,
    }
}

impl WeekDays {
    fn has(&self, date: Date) -> bool {
        let weekday = i64::from(date.weekday().to_sunday_zero_offset());
        match self {
            WeekDays::Set(bits) => bits.has(weekday),
            WeekDays::Last(n) => weekday == i64::from(*n) && date.day() + 7 > date.days_in_month(),
            WeekDays::Nth(n, k) => weekday == i64::from(*n) && (date.day() - 1) / 7 + 1 == *k,
        }
    }
}

fn month_days(field: &str) -> Result<Option<MonthDays>, ParseError> {
    match field {
        "?" | "*" => Ok(None),
        "L" => Ok(Some(MonthDays::Last)),
        "LW" => Ok(Some(MonthDays::LastWeekday)),
        f if f.ends_with('W') => {
            let n = number("day-of-month", &f[..f.len() - 1], 1, 31, &[])?;
            Ok(Some(MonthDays::NearestWeekday(n as i8)))
        }
        f => bits("day-of-month", f, 1, 31, &[]).map(|b| Some(MonthDays::Set(b))),
    }
}

fn week_days(field: &str, aws: bool) -> Result<Option<WeekDays>, ParseError> {
    // EventBridge counts 1 (Sunday) to 7 (Saturday); Unix 0 (Sunday) to 7 (Sunday again).
    let (low, high, shift) = if aws { (1, 7, 1) } else { (0, 7, 0) };
    let day = |text: &str| -> Result<i8, ParseError> {
        let v = number("day-of-week", text, low, high, &DAYS)?;
        Ok(((v - shift).rem_euclid(7)) as i8)
    };
    match field {
        "?" | "*" => Ok(None),
        "L" => Ok(Some(WeekDays::Set(Bits(1 << 6)))),
        f if f.ends_with('L') => Ok(Some(WeekDays::Last(day(&f[..f.len() - 1])?))),
        f if f.contains('#') => {
            let (d, k) = f.split_once('#').unwrap_or_default();
            let k = k
                .parse::<i8>()
                .ok()
                .filter(|k| (1..=5).contains(k))
                .ok_or_else(|| {
                    format!("day-of-week {f:?}: the week after # must be 1 to 5, got {k:?}")
                })?;
            Ok(Some(WeekDays::Nth(day(d)?, k)))
        }
        f => {
            let raw = bits("day-of-week", f, low, high, &DAYS)?;
            // Named days are 1-based in EventBridge's numbering and 0-based in Unix's.
            let mut out = 0u64;
            for v in low..=high {
                if raw.has(v) {
                    out |= 1 << (v - shift).rem_euclid(7);
                }
            }
            Ok(Some(WeekDays::Set(Bits(out))))
        }
    }
}

fn years(field: &str) -> Result<Option<(i16, i16, i16)>, ParseError> {
    const FIRST: i64 = 1970;
    const LAST: i64 = 2199;
    if field == "*" {
        return Ok(None);
    }
    if field.contains(',') {
        return Err(format!(
            "year {field:?}: a list of years is not supported; use a range (2026-2028) or *"
        ));
    }
    let (range, step) = match field.split_once('/') {
        Some((r, s)) => (r, step_of("year", field, s)?),
        None => (field, 1),
    };
    let (from, to) = match range.split_once('-') {
        Some((a, b)) => (
            number("year", a, FIRST, LAST, &[])?,
            number("year", b, FIRST, LAST, &[])?,
        ),
        None if range == "*" => (FIRST, LAST),
        None => {
            let y = number("year", range, FIRST, LAST, &[])?;
            (y, if field.contains('/') { LAST } else { y })
        }
    };
    if from > to {
        return Err(format!("year {field:?}: the range ends before it starts"));
    }
    Ok(Some((from as i16, to as i16, step as i16)))
}

/// A field of values, ranges, steps and names, as the set of values it allows.
fn bits(name: &str, field: &str, low: i64, high: i64, names: &[&str]) -> Result<Bits, ParseError> {
    let mut out = 0u64;
    for part in field.split(',') {
        if part.is_empty() {
            return Err(format!("{name} {field:?}: an empty item in the list"));
        }
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, step_of(name, field, s)?),
            None => (part, 1),
        };
        let (from, to) = match range {
            "*" => (low, high),
            r => match r.split_once('-') {
                Some((a, b)) => (
                    number(name, a, low, high, names)?,
                    number(name, b, low, high, names)?,
                ),
                // `5/15`: from 5 to the end, every 15.
                None if part.contains('/') => (number(name, r, low, high, names)?, high),
                None => {
                    let v = number(name, r, low, high, names)?;
                    (v, v)
                }
            },
        };
        if from > to {
            return Err(format!(
                "{name} {field:?}: the range {range} ends before it starts"
            ));
        }
        let mut v = from;
        while v <= to {
            out |= 1 << v;
            v += step;
        }
    }
    Ok(Bits(out))
}

fn step_of(name: &str, field: &str, step: &str) -> Result<i64, ParseError> {
    step.parse::<i64>()
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| format!("{name} {field:?}: the step after / must be a whole number above 0"))
}

/// One value of a field: a number in `low..=high`, or one of `names` (counted from `low`).
fn number(name: &str, text: &str, low: i64, high: i64, names: &[&str]) -> Result<i64, ParseError> {
    let upper = text.to_ascii_uppercase();
    if let Some(i) = names.iter().position(|n| *n == upper) {
        // Names count from the field's first value: JAN = 1; SUN = 1 in EventBridge's
        // numbering of days, 0 in Unix's.
        return Ok(i as i64 + low);
    }
    match text.parse::<i64>() {
        Ok(v) if (low..=high).contains(&v) => Ok(v),
        Ok(v) => Err(format!("{name} must be {low} to {high}, got {v}")),
        Err(_) => Err(format!(
            "{name}: {text:?} is not a number{}",
            if names.is_empty() {
                String::new()
            } else {
                format!(" or one of {}", names.join(" "))
            }
        )),
    }
}

#[cfg(test)]
mod tests;
