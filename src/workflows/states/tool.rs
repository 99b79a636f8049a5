//! `tugboat states validate FILE...` and `tugboat states run FILE --input EVENT --dry-run`:
//! a definition on the operator's disk, checked as the service will check it, and run with
//! fake effects (each Task answers `{}` or the result given for its state; waits pass at once),
//! printing the state path and the output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{FromArgMatches, Subcommand};
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::definition::{Definition, Resource};
use super::run::{Effects, StateError, run};
use crate::workflows::surface::{Desk, Tool};

/// The tool `tugboat states` carries.
pub const TOOL: Tool = Tool {
    subcommands: || StatesCommand::augment_subcommands(clap::Command::new("states")).get_subcommands().cloned().collect(),
    run: run_command,
};

#[derive(Debug, Subcommand)]
enum StatesCommand {
    /// Check definitions (Amazon States Language; JSON, or YAML in a .yaml/.yml file) as the service checks them when they
    /// load: every field, transition, path, template, intrinsic call, choice rule, retrier and
    /// catcher. Prints `FILE: ok (N states)` or exits 1 naming the JSON pointer of what is wrong.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run a definition on an event with fake effects: each Task answers `{}`, or what
    /// `--result STATE=JSON` gives, or fails as `--fail STATE=ERROR[:CAUSE]` says (its first
    /// attempts: `--fail STATE=ERROR:CAUSE:N` fails N times, then answers); Wait states and
    /// retry delays pass at once. Prints each state entered with its input, then the output
    /// (or the error that ended the run, exit 1).
    Run {
        file: PathBuf,
        /// The execution's input: a JSON file.
        #[arg(long)]
        input: PathBuf,
        /// Required: the fakes stand in for AWS, nothing is called.
        #[arg(long)]
        dry_run: bool,
        /// A Task state's answer: `STATE=JSON` (every attempt of the state of that name).
        #[arg(long = "result", value_name = "STATE=JSON")]
        results: Vec<String>,
        /// A Task state's failure: `STATE=ERROR[:CAUSE[:TIMES]]`.
        #[arg(long = "fail", value_name = "STATE=ERROR[:CAUSE[:TIMES]]")]
        failures: Vec<String>,
    },
}

fn read(desk: &Desk<'_>, path: &Path) -> Result<String, String> {
    let bytes = desk.files.read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", path.display()))
}

/// Parses and checks a definition file; errors start with the file's name.
pub fn load(desk: &Desk<'_>, path: &Path) -> Result<Definition, String> {
    Definition::from_file_text(path, &read(desk, path)?).map_err(|e| format!("{}: {e}", path.display()))
}

fn run_command(matches: &clap::ArgMatches, desk: &mut Desk<'_>) -> Result<(), String> {
    match StatesCommand::from_arg_matches(matches).map_err(|e| e.to_string())? {
        StatesCommand::Validate { files } => {
            for f in &files {
                let d = load(desk, f)?;
                let mut count = 0;
                d.walk("", &mut |_, _, _| count += 1);
                writeln!(desk.out, "{}: ok ({count} states)", f.display()).map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        StatesCommand::Run { file, input, dry_run, results, failures } => {
            if !dry_run {
                return Err("`tugboat states run` runs with fake effects only: give --dry-run (a route runs a definition for real)".into());
            }
            let d = load(desk, &file)?;
            let event: Value = serde_json::from_str(&read(desk, &input)?).map_err(|e| format!("{}: not JSON: {e}", input.display()))?;
            let mut fakes = Fakes::default();
            for r in &results {
                let (state, text) = r.split_once('=').ok_or_else(|| format!("--result {r:?}: give STATE=JSON"))?;
                let v = serde_json::from_str(text).map_err(|e| format!("--result {state}: not JSON: {e}"))?;
                fakes.results.insert(state.to_string(), v);
            }
            for f in &failures {
                let (state, spec) = f.split_once('=').ok_or_else(|| format!("--fail {f:?}: give STATE=ERROR[:CAUSE[:TIMES]]"))?;
                let mut parts = spec.splitn(3, ':');
                let error = parts.next().filter(|e| !e.is_empty()).ok_or_else(|| format!("--fail {f:?}: the error name is empty"))?;
                let cause = parts.next().unwrap_or("");
                let times = match parts.next() {
                    None => u32::MAX,
                    Some(t) => t.parse().map_err(|_| format!("--fail {f:?}: TIMES must be a whole number"))?,
                };
                fakes.failures.insert(state.to_string(), (StateError::new(error, cause), times));
            }
            let context = json!({"Execution": {"Id": "dry-run", "Input": event, "Name": "dry-run", "StartTime": "1970-01-01T00:00:00Z"}, "StateMachine": {"Id": file.display().to_string()}});
            let outcome = futures::executor::block_on(run(&d, event, &context, &mut fakes));
            for line in &fakes.trace {
                writeln!(desk.out, "{line}").map_err(|e| e.to_string())?;
            }
            match outcome {
                Ok(output) => {
                    writeln!(desk.out, "output: {output}").map_err(|e| e.to_string())?;
                    Ok(())
                }
                Err(e) => Err(format!("the run failed: {}: {}", e.error, e.cause)),
            }
        }
    }
}

/// Fake effects: canned answers by state name, failures for a number of attempts, waits that
/// pass at once; what happened, line by line.
#[derive(Debug, Default)]
pub struct Fakes {
    pub results: BTreeMap<String, Value>,
    pub failures: BTreeMap<String, (StateError, u32)>,
    pub trace: Vec<String>,
    /// Every task call: (key, resource, payload).
    pub calls: Vec<(String, Resource, Value)>,
    /// Every wait's seconds (retry delays included), in order.
    pub waits: Vec<f64>,
    /// States entered so far.
    pub entered: usize,
}

/// The state's name in a key (`Map[2]/Notify#2` → `Notify`).
fn state_of(key: &str) -> &str {
    let last = key.rsplit('/').next().unwrap_or(key);
    last.split(['#', '@']).next().unwrap_or(last)
}

impl Effects for Fakes {
    fn task<'a>(&'a mut self, key: &'a str, resource: Resource, payload: &'a Value, attempt: u32) -> BoxFuture<'a, Result<Value, StateError>> {
        Box::pin(async move {
            let state = state_of(key).to_string();
            self.calls.push((key.to_string(), resource, payload.clone()));
            self.trace.push(format!("  task {} {} attempt {attempt}: {payload}", key, resource.arn()));
            if let Some((e, times)) = self.failures.get(&state)
                && attempt <= *times
            {
                self.trace.push(format!("  task {key} failed: {}: {}", e.error, e.cause));
                return Err(e.clone());
            }
            Ok(self.results.get(&state).cloned().unwrap_or_else(|| json!({})))
        })
    }

    fn wait<'a>(&'a mut self, key: &'a str, seconds: f64) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.waits.push(seconds);
            self.trace.push(format!("  wait {key}: {seconds:.3} s (passed at once)"))
        })
    }

    fn wait_until<'a>(&'a mut self, key: &'a str, timestamp: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move { self.trace.push(format!("  wait {key}: until {timestamp} (passed at once)")) })
    }

    fn entered(&mut self, path: &str, input: &Value) -> Result<(), StateError> {
        self.trace.push(format!("{path} <- {input}"));
        self.entered += 1;
        if self.entered > super::run::MAX_TRANSITIONS {
            return Err(StateError::new("States.Runtime", format!("more than {} state transitions: a loop that never ends?", super::run::MAX_TRANSITIONS)));
        }
        Ok(())
    }

    fn draw(&mut self, key: &str, n: u32) -> u64 {
        // The same on every run, as on a replay.
        super::run::seeded_draw("dry-run", key, n)
    }
}
