//! Running a definition: the States Language's data flow and transitions, over an
//! [`Effects`] that performs what leaves the machine (a Task's call, a Wait's sleep).
//!
//! The interpreter is deterministic: given the same effects' answers it takes the same path
//! and computes the same data, so an engine can journal each effect under its key (the state
//! path, `Process/Items[3]/Notify#2`) and replay the run after a crash without repeating a
//! side effect; random intrinsics draw from a generator seeded by the execution and the key.
//! `Parallel` branches and `Map` items are explored one after another; an [`Effects`] that
//! answers an effect it has not performed with [`SUSPENDED`] lets the run go on to the other
//! branches and items (up to `MaxConcurrency` items waiting at once), so that it learns every
//! effect that may run now and can perform them together.

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::definition::{Definition, Io, Jitter, Kind, Resource, ResultPath, Retrier, Text, Transition, Until, matches};
use super::payload::{Failure, Template};

/// An error as the States Language carries it: a name and a cause.
#[derive(Debug, Clone, PartialEq)]
pub struct StateError {
    pub error: String,
    pub cause: String,
}

impl StateError {
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> StateError {
        StateError { error: error.into(), cause: cause.into() }
    }

    fn from_failure(f: Failure) -> StateError {
        StateError::new(f.error(), f.cause())
    }

    /// The `{"Error", "Cause"}` object a catcher passes on.
    pub fn to_value(&self) -> Value {
        json!({"Error": self.error, "Cause": self.cause})
    }
}

/// What the machine asks of the world.
pub trait Effects: Send {
    /// Performs a Task's call (attempt `attempt`, from 1) under `key`, unique in the run.
    fn task<'a>(&'a mut self, key: &'a str, resource: Resource, payload: &'a Value, attempt: u32) -> BoxFuture<'a, Result<Value, StateError>>;

    /// Waits `seconds` (a Wait state, or a retrier's delay) under `key`.
    fn wait<'a>(&'a mut self, key: &'a str, seconds: f64) -> BoxFuture<'a, ()>;

    /// Waits until `timestamp` (RFC 3339) under `key`.
    fn wait_until<'a>(&'a mut self, key: &'a str, timestamp: &'a str) -> BoxFuture<'a, ()>;

    /// Notes that the run entered the state at `path` with `input` (for the state path the
    /// console shows); an error ends the run with it (a loop past [`MAX_TRANSITIONS`]).
    fn entered(&mut self, _path: &str, _input: &Value) -> Result<(), StateError> {
        Ok(())
    }

    /// A random draw for `key` (seeded by the execution and the key: the same on replay).
    fn draw(&mut self, key: &str, n: u32) -> u64;
}

/// The error an [`Effects`] answers with for an effect it has not performed yet, so that a
/// `Parallel` or `Map` goes on to its other branches and items (finding every effect that may
/// run now) instead of stopping at the first. No `Retry` or `Catch` ever matches it
/// ([`super::definition::matches`]); it ends the run as it is, for the caller to perform what
/// it found.
pub const SUSPENDED: &str = "tugboat.Suspended";

/// How many states one execution may enter: a loop of Choice and Pass states costs no
/// effect, and would otherwise spin for ever (Step Functions stops at 25 000 history events).
pub const MAX_TRANSITIONS: usize = 25_000;

/// A random draw for `key` from an execution's `seed`: FNV-1a of the three, the same on every
/// replay.
pub fn seeded_draw(seed: &str, key: &str, n: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes().chain([0]).chain(key.bytes()).chain(n.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Runs `definition` on `input` to its output, or to the error that ended it.
pub async fn run(definition: &Definition, input: Value, context: &Value, effects: &mut dyn Effects) -> Result<Value, StateError> {
    scope(definition, "", input, context.clone(), effects).await
}

fn scope<'a>(d: &'a Definition, prefix: &'a str, input: Value, context: Value, fx: &'a mut dyn Effects) -> BoxFuture<'a, Result<Value, StateError>> {
    Box::pin(async move {
        let mut name = d.start_at.clone();
        let mut data = input;
        let mut ctx = context;
        // How often each state was entered: keys stay unique in loops.
        let mut visits: std::collections::BTreeMap<String, u32> = Default::default();
        loop {
            let n = visits.entry(name.clone()).or_default();
            *n += 1;
            let key = if *n == 1 { format!("{prefix}{name}") } else { format!("{prefix}{name}#{n}") };
            let state = &d.states[&name];
            fx.entered(&key, &data)?;
            // One context per scope, its `State` replaced at each state (no copy of the
            // execution's input per state).
            ctx["State"] = json!({"Name": name, "RetryCount": 0});
            let outcome = step(state, &key, data.clone(), &ctx, fx).await;
            let (output, next) = match outcome {
                Ok(Outcome::Go(output, next)) => (output, next),
                Ok(Outcome::End(output)) => return Ok(output),
                Err((e, raw)) => {
                    // A catcher of the state's, if any matches.
                    let catchers = match &state.kind {
                        Kind::Task { catch, .. } | Kind::Parallel { catch, .. } | Kind::Map { catch, .. } => catch.as_slice(),
                        _ => &[],
                    };
                    match catchers.iter().find(|c| matches(&c.errors, &e.error)) {
                        Some(c) => {
                            let output = place(&c.result_path, raw, e.to_value())?;
                            (output, c.next.clone())
                        }
                        None => return Err(e),
                    }
                }
            };
            data = output;
            name = next;
        }
    })
}

enum Outcome {
    Go(Value, String),
    End(Value),
}

/// One state: its input processed, its work done (retried as its retriers say), its output
/// processed, and where to go. An error comes back with the state's raw input (for a catcher).
async fn step(state: &super::definition::State, key: &str, raw: Value, ctx: &Value, fx: &mut dyn Effects) -> Result<Outcome, (StateError, Value)> {
    let fail = |e: StateError, raw: &Value| (e, raw.clone());
    let input = select_io(&state.input_path, &raw, ctx).map_err(|e| fail(e, &raw))?;
    let go = |output: Value| match &state.transition {
        Some(Transition::Next(n)) => Outcome::Go(output, n.clone()),
        _ => Outcome::End(output),
    };
    let finish = |result: Value, selector: Option<&Template>, result_path: &ResultPath, fx: &mut dyn Effects| -> Result<Value, StateError> {
        let result = match selector {
            Some(t) => render(t, &result, ctx, key, fx)?,
            None => result,
        };
        let placed = place(result_path, raw.clone(), result)?;
        select_io(&state.output_path, &placed, ctx)
    };
    match &state.kind {
        Kind::Pass { parameters, result, result_path } => {
            let effective = match parameters {
                Some(t) => render(t, &input, ctx, key, fx).map_err(|e| fail(e, &raw))?,
                None => input,
            };
            let result = result.clone().unwrap_or(effective);
            finish(result, None, result_path, fx).map(go).map_err(|e| fail(e, &raw))
        }
        Kind::Succeed => Ok(Outcome::End(select_io(&state.output_path, &input, ctx).map_err(|e| fail(e, &raw))?)),
        Kind::Fail { error, cause } => {
            let text = |t: &Option<Text>| -> Result<String, StateError> {
                Ok(match t {
                    None => String::new(),
                    Some(Text::Literal(s)) => s.clone(),
                    Some(Text::Path(p)) => match p.select(&raw, ctx) {
                        Some(Value::String(s)) => s,
                        Some(other) => other.to_string(),
                        None => return Err(StateError::new("States.Runtime", format!("{} names nothing in the Fail state's input", p.text))),
                    },
                })
            };
            let e = StateError::new(text(error).map_err(|e| fail(e, &raw))?, text(cause).map_err(|e| fail(e, &raw))?);
            // A Fail state ends its scope; nothing catches it there.
            Err((e, raw))
        }
        Kind::Choice { choices, default } => {
            for (rule, next) in choices {
                if rule.holds(&input, ctx).map_err(|c| fail(StateError::new("States.Runtime", c), &raw))? {
                    let output = select_io(&state.output_path, &input, ctx).map_err(|e| fail(e, &raw))?;
                    return Ok(Outcome::Go(output, next.clone()));
                }
            }
            match default {
                Some(d) => Ok(Outcome::Go(select_io(&state.output_path, &input, ctx).map_err(|e| fail(e, &raw))?, d.clone())),
                None => Err(fail(StateError::new("States.NoChoiceMatched", format!("no choice rule matched and {key} has no Default")), &raw)),
            }
        }
        Kind::Wait { until } => {
            match until {
                Until::Seconds(s) => fx.wait(key, *s as f64).await,
                Until::Timestamp(t) => fx.wait_until(key, t).await,
                Until::SecondsPath(p) => {
                    let s = p.select(&input, ctx).and_then(|v| v.as_u64()).ok_or_else(|| {
                        fail(StateError::new("States.Runtime", format!("SecondsPath {} is not a whole number of seconds in the input", p.text)), &raw)
                    })?;
                    fx.wait(key, s as f64).await
                }
                Until::TimestampPath(p) => {
                    let t = p.select(&input, ctx).and_then(|v| v.as_str().map(str::to_string)).filter(|t| super::choice::timestamp(t).is_some());
                    let t = t.ok_or_else(|| fail(StateError::new("States.Runtime", format!("TimestampPath {} is not an RFC 3339 timestamp in the input", p.text)), &raw))?;
                    fx.wait_until(key, &t).await
                }
            }
            Ok(go(select_io(&state.output_path, &input, ctx).map_err(|e| fail(e, &raw))?))
        }
        Kind::Task { parameters, result_selector, result_path, retry, .. }
        | Kind::Parallel { parameters, result_selector, result_path, retry, .. }
        | Kind::Map { item_selector: parameters, result_selector, result_path, retry, .. } => {
            // A Map's selector is per item (rendered with `$$.Map.Item`); the others' once.
            let effective = match (parameters, &state.kind) {
                (Some(t), Kind::Task { .. } | Kind::Parallel { .. }) => render(t, &input, ctx, key, fx).map_err(|e| fail(e, &raw))?,
                _ => input,
            };
            let mut attempt = 1;
            let result = loop {
                match work(&state.kind, key, &effective, ctx, attempt, fx).await {
                    Ok(v) => break v,
                    Err(e) => match delay(retry, &e, attempt, key, fx) {
                        Some(seconds) => {
                            fx.wait(&format!("{key}@retry{attempt}"), seconds).await;
                            attempt += 1;
                        }
                        None => return Err((e, raw)),
                    },
                }
            };
            finish(result, result_selector.as_ref(), result_path, fx).map(go).map_err(|e| fail(e, &raw))
        }
    }
}

/// One attempt of a Task's call, a Parallel's branches or a Map's items, on the state's
/// effective input. Keys of later attempts carry the attempt (`Par@2/0/A`), so that a replay
/// tells them apart.
async fn work(kind: &Kind, key: &str, input: &Value, ctx: &Value, attempt: u32, fx: &mut dyn Effects) -> Result<Value, StateError> {
    let at = |rest: &str| if attempt == 1 { format!("{key}{rest}") } else { format!("{key}@{attempt}{rest}") };
    match kind {
        Kind::Task { resource, .. } => fx.task(key, *resource, input, attempt).await,
        Kind::Parallel { branches, .. } => {
            let mut results = Vec::with_capacity(branches.len());
            let mut suspended = false;
            for (i, b) in branches.iter().enumerate() {
                // A branch waiting on an effect lets the others find theirs (they run at once).
                match scope(b, &at(&format!("/{i}/")), input.clone(), ctx.clone(), fx).await {
                    Ok(v) => results.push(v),
                    Err(e) if e.error == SUSPENDED => suspended = true,
                    Err(e) => return Err(e),
                }
            }
            if suspended {
                return Err(StateError::new(SUSPENDED, key));
            }
            Ok(Value::Array(results))
        }
        Kind::Map { processor, items_path, item_selector, max_concurrency, .. } => {
            let items = match items_path {
                Some(p) => p.select(input, ctx),
                None => Some(input.clone()),
            };
            let Some(Value::Array(items)) = items else {
                return Err(StateError::new("States.Runtime", format!("{key}: ItemsPath does not name an array in the input")));
            };
            let mut results = Vec::with_capacity(items.len());
            // Items waiting on an effect: at most MaxConcurrency of them at once (0: no limit).
            let mut waiting = 0u32;
            for (i, item) in items.iter().enumerate() {
                if *max_concurrency > 0 && waiting >= *max_concurrency {
                    break;
                }
                let mut item_ctx = ctx.clone();
                item_ctx["Map"] = json!({"Item": {"Index": i, "Value": item}});
                let item_input = match item_selector {
                    Some(t) => render(t, input, &item_ctx, &format!("{key}[{i}]"), fx)?,
                    None => item.clone(),
                };
                match scope(processor, &at(&format!("[{i}]/")), item_input, item_ctx, fx).await {
                    Ok(v) => results.push(v),
                    Err(e) if e.error == SUSPENDED => waiting += 1,
                    Err(e) => return Err(e),
                }
            }
            if waiting > 0 {
                return Err(StateError::new(SUSPENDED, key));
            }
            Ok(Value::Array(results))
        }
        other => Err(StateError::new("States.Runtime", format!("{key}: a {} state has no work to attempt", other.type_name()))),
    }
}

/// The delay before attempt `attempt + 1` after `e`, if a retrier takes it: the first retrier
/// whose names match, while attempts are left (`IntervalSeconds × BackoffRate^(n-1)`, capped
/// by `MaxDelaySeconds`, a uniform draw below that with FULL jitter).
pub fn delay(retriers: &[Retrier], e: &StateError, attempt: u32, key: &str, fx: &mut dyn Effects) -> Option<f64> {
    let r = retriers.iter().find(|r| matches(&r.errors, &e.error))?;
    // Retries so far of this retrier: every earlier attempt failed (a simplification: errors
    // matched by different retriers share the count).
    let retries = attempt - 1;
    if retries >= r.max_attempts {
        return None;
    }
    let mut seconds = r.interval_seconds as f64 * r.backoff_rate.powi(retries as i32);
    if let Some(max) = r.max_delay_seconds {
        seconds = seconds.min(max as f64);
    }
    if r.jitter == Jitter::Full {
        let unit = (fx.draw(key, 1000 + attempt) >> 11) as f64 / (1u64 << 53) as f64;
        seconds *= unit;
    }
    Some(seconds)
}

fn render(t: &Template, input: &Value, ctx: &Value, key: &str, fx: &mut dyn Effects) -> Result<Value, StateError> {
    let mut n = 0;
    let mut draw = || {
        n += 1;
        fx.draw(key, n)
    };
    t.render(input, ctx, &mut draw).map_err(StateError::from_failure)
}

fn select_io(io: &Io, data: &Value, ctx: &Value) -> Result<Value, StateError> {
    match io {
        Io::All => Ok(data.clone()),
        Io::Nothing => Ok(json!({})),
        Io::Path(p) => p
            .select(data, ctx)
            .ok_or_else(|| StateError::new("States.Runtime", format!("Invalid path {}: the data has no such field", p.text))),
    }
}

fn place(result_path: &ResultPath, raw: Value, result: Value) -> Result<Value, StateError> {
    match result_path {
        ResultPath::Replace => Ok(result),
        ResultPath::Discard => Ok(raw),
        ResultPath::At(p) => p.place(raw, result).map_err(|e| StateError::new("States.ResultPathMatchFailure", e)),
    }
}
