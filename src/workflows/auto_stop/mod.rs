//! `auto_stop` (cost plan, automation: "auto-stop non-production resources"): stops the EC2
//! instances that carry the route's tags on one schedule and starts them again on another.
//!
//! Params (checked at load):
//! - `action`: `"stop"` or `"start"`;
//! - `tags`: the tags an instance must carry, every one (`{ environment = "dev" }`), at least
//!   one: **an instance without them is never touched**;
//! - `regions`: default `[resources] regions`, else the service's region;
//! - `dry_run`: **default true** — the run reads and reports what it would do, and changes
//!   nothing; `false` acts.
//!
//! One step per region, `stop:<region>` or `start:<region>`, which reads the tagged
//! instances and acts on them:
//! - stop: the running (or pending) ones are first tagged `tugboat:auto-stopped` (the value is
//!   this instance's id), then stopped. A crash after the stop and before its outcome is
//!   journaled runs the step again, which finds them stopping or stopped: none is stopped a
//!   second time.
//! - start: the stopped ones **that carry the mark** are started, then the mark removed; an
//!   instance stopped by hand (no mark) stays stopped. A crash between start and unmark: the
//!   step again finds them running with the mark, counts them and only removes it (after the
//!   unmark nothing on the instance says it was started: a repeat then reports none).
//!
//! Then one report on the success topic (attributes `type` = `auto-stop`, `action`): per
//! region what was (or, in a dry run, would be) stopped or started. Every action is in the
//! journal (each step's output names the instances). Not yet: ECS services (desired count 0,
//! the old count remembered), RDS instances, accounts reached through an assumed role.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Registration;
use super::resource_scan::config as resources;
use crate::contract::{Act, Decision, Flow, Next, StepContext, StepError, Topic, Typed, decode, output, to_output};
use crate::ports::resources::{Instance, Power, STOPPED_MARK};

pub const KIND: &str = "auto_stop";

pub fn registration() -> Registration {
    Registration::new(KIND, None, |setup| {
        Box::pin(async move {
            let regions = match setup.config.sections.get(resources::NAME) {
                Some(v) => resources::parse(v).map_err(|b| b.to_string())?.regions,
                None => Vec::new(),
            };
            let regions = match regions.is_empty() {
                true => vec![setup.config.aws.region.clone()],
                false => regions,
            };
            Ok(Arc::new(Typed(AutoStop { regions, power: setup.ports.power.clone() }))
                as Arc<dyn crate::contract::Workflow>)
        })
    })
    .with_params_check(|params, _| Params::parse(params).map(|_| ()))
}

/// The workflow: the regions it acts in unless a route names others, and the port it acts
/// through.
#[derive(Debug, Clone)]
pub struct AutoStop {
    pub regions: Vec<String>,
    pub power: Arc<dyn Power>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Stop,
    Start,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Stop => "stop",
            Action::Start => "start",
        }
    }
}

/// A route's params.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub action: Action,
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub regions: Option<Vec<String>>,
    #[serde(default = "yes")]
    pub dry_run: bool,
}

fn yes() -> bool {
    true
}

impl Params {
    pub fn parse(params: &Value) -> Result<Params, String> {
        let p: Params = decode(params, "params")?;
        if p.tags.is_empty() {
            return Err("params.tags must name at least one tag: an instance without them is never touched".into());
        }
        if let Some((k, _)) = p.tags.iter().find(|(k, _)| k.is_empty() || k.starts_with("aws:") || *k == STOPPED_MARK) {
            return Err(format!("params.tags: {k:?} cannot select instances (empty, AWS's own, or tugboat's mark)"));
        }
        resources::check_param_regions(p.regions.as_ref())?;
        Ok(p)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub action: Action,
    pub tags: BTreeMap<String, String>,
    pub regions: Vec<String>,
    pub dry_run: bool,
    pub done: Vec<Switched>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Result: [`Switched`].
    Switch {
        region: String,
        action: Action,
        tags: BTreeMap<String, String>,
        dry_run: bool,
    },
    /// The engine publishes the report.
    Notify,
}

/// What one region's step did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Switched {
    pub region: String,
    /// The instances acted on (stopped or started), or to be in a dry run.
    pub instances: Vec<String>,
    /// Tagged instances left alone, with why (`already stopped`, `stopped by hand: no mark`).
    pub left: BTreeMap<String, String>,
    pub dry_run: bool,
}

/// The report, and the workflow's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "auto-stop")]
pub struct Report {
    pub action: Action,
    pub tags: BTreeMap<String, String>,
    pub dry_run: bool,
    pub instances: usize,
    pub regions: Vec<Switched>,
}

impl AutoStop {
    fn next(&self, s: &State) -> Decision<Step> {
        match s.regions.get(s.done.len()) {
            Some(region) => Next::Run(Act::handler(
                format!("{}:{region}", s.action.as_str()),
                Step::Switch { region: region.clone(), action: s.action, tags: s.tags.clone(), dry_run: s.dry_run },
            )),
            None => {
                let report = report(s);
                let verb = match (s.action, s.dry_run) {
                    (Action::Stop, false) => "stopped",
                    (Action::Start, false) => "started",
                    (Action::Stop, true) => "would stop",
                    (Action::Start, true) => "would start",
                };
                let subject = format!("tugboat: auto-{} {verb} {} instance(s)", s.action.as_str(), report.instances);
                let message = serde_json::to_value(&report).unwrap_or_default();
                Next::Run(
                    Act::publish("report", Step::Notify, Topic::Success, subject, message)
                        .with_attributes([("type", "auto-stop"), ("action", s.action.as_str())]),
                )
            }
        }
    }

    /// One region: read the tagged instances, choose, act. `marker` is this instance's id,
    /// the value of the mark a stop puts on what it stops.
    async fn switch(
        &self,
        region: &str,
        action: Action,
        tags: &BTreeMap<String, String>,
        dry_run: bool,
        marker: &str,
    ) -> Result<Switched, StepError> {
        let found = self.power.tagged(region, tags).await?;
        let (mut act, mut done) = (Vec::new(), Vec::new());
        let mut left = BTreeMap::new();
        for i in &found {
            // The port filtered by tag; checked again here: never an instance without them.
            if !tags.iter().all(|(k, v)| i.tags.get(k) == Some(v)) {
                continue;
            }
            match choose(action, i, marker) {
                Choice::Act => act.push(i.id.clone()),
                Choice::Done => done.push(i.id.clone()),
                Choice::Leave(why) => {
                    left.insert(i.id.clone(), why.to_string());
                }
            }
        }
        if !dry_run {
            match action {
                Action::Stop if !act.is_empty() => {
                    // Marked before stopped: a stopped instance always carries the mark.
                    self.power.mark(region, &act, STOPPED_MARK, marker).await?;
                    self.power.stop(region, &act).await?;
                }
                Action::Start => {
                    if !act.is_empty() {
                        self.power.start(region, &act).await?;
                    }
                    let unmark: Vec<String> = act.iter().chain(&done).cloned().collect();
                    if !unmark.is_empty() {
                        self.power.unmark(region, &unmark, STOPPED_MARK).await?;
                    }
                }
                Action::Stop => {}
            }
        }
        let mut instances: Vec<String> = act.into_iter().chain(done).collect();
        instances.sort();
        Ok(Switched {
            region: region.to_string(),
            instances,
            left,
            dry_run,
        })
    }
}

/// What a step does with one tagged instance.
#[derive(Debug, PartialEq)]
enum Choice {
    /// Stop (or start) it.
    Act,
    /// An earlier attempt of this step did it (its end was not journaled): counted, not
    /// repeated (a start's mark is still removed).
    Done,
    /// Not for this action, and why.
    Leave(&'static str),
}

fn choose(action: Action, i: &Instance, marker: &str) -> Choice {
    let mark = i.tags.get(STOPPED_MARK);
    match (action, i.state.as_str()) {
        (Action::Stop, "running" | "pending") => Choice::Act,
        (Action::Stop, "stopping" | "stopped") if mark.is_some_and(|m| m == marker) => Choice::Done,
        (Action::Stop, _) => Choice::Leave("not running"),
        (Action::Start, "stopped") if mark.is_some() => Choice::Act,
        (Action::Start, "running" | "pending") if mark.is_some() => Choice::Done,
        (Action::Start, "stopped") => Choice::Leave("stopped by hand (no auto-stop mark)"),
        (Action::Start, _) => Choice::Leave("not stopped"),
    }
}

fn report(s: &State) -> Report {
    Report {
        action: s.action,
        tags: s.tags.clone(),
        dry_run: s.dry_run,
        instances: s.done.iter().map(|d| d.instances.len()).sum(),
        regions: s.done.clone(),
    }
}

#[async_trait]
impl Flow for AutoStop {
    const KIND: &'static str = KIND;
    type State = State;
    type Step = Step;

    fn start(&self, _event: &Value, params: &Value) -> Result<(State, Decision<Step>), String> {
        let p = Params::parse(params)?;
        let state = State {
            action: p.action,
            tags: p.tags,
            regions: p.regions.unwrap_or_else(|| self.regions.clone()),
            dry_run: p.dry_run,
            done: Vec::new(),
        };
        let next = self.next(&state);
        Ok((state, next))
    }

    fn advance(&self, s: &mut State, step: Step, outcome: Result<Value, StepError>) -> Decision<Step> {
        let value = match outcome {
            Ok(v) => v,
            Err(e) => return Next::Fail(e.message),
        };
        match step {
            Step::Switch { .. } => match output::<Switched>(value) {
                Ok(done) => {
                    s.done.push(done);
                    self.next(s)
                }
                Err(e) => Next::Fail(e),
            },
            Step::Notify => Next::done(&report(s)),
        }
    }

    async fn perform(&self, ctx: StepContext<'_>, step: &Step) -> Result<Value, StepError> {
        match step {
            Step::Switch { region, action, tags, dry_run } => {
                to_output(&self.switch(region, *action, tags, *dry_run, ctx.workflow_id).await?)
            }
            Step::Notify => Err(StepError::permanent("the report is published by the engine")),
        }
    }
}
