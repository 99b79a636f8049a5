//! `auto_stop` (cost plan, automation: "auto-stop non-production resources"): stops the EC2
//! instances and RDS DB instances and scales to zero the ECS services that carry the route's
//! tags on one schedule, and starts them again on another.
//!
//! Params (checked at load):
//! - `action`: `"stop"` or `"start"`;
//! - `tags`: the tags a resource must carry, every one (`{ environment = "dev" }`), at least
//!   one: **a resource without them is never touched**;
//! - `regions`: default `[resources] regions`, else the service's region;
//! - `resources`: `["instances", "services", "databases"]` (the default), or some of them;
//! - `clusters`: the ECS clusters whose services are considered; default every cluster;
//! - `account`: a `[[resources.accounts]]` name: act in that account, through its role
//!   (default the service's own account; its steps are then named `<verb>:<account>:<region>`);
//! - `dry_run`: **default true** — the run reads and reports what it would do, and changes
//!   nothing; `false` acts.
//!
//! Per region, these steps:
//! - `stop:<region>` / `start:<region>`, the instances: a stop first tags the running (or
//!   pending) ones `tugboat:auto-stopped` (the value is this workflow instance's id), then stops
//!   them. A crash after the stop and before its outcome is journaled runs the step again,
//!   which finds them stopping or stopped with its own mark: none is stopped a second time. A
//!   start starts the stopped ones **that carry the mark**, then removes it; an instance stopped
//!   by hand (no mark) stays stopped. A crash between start and unmark: the step again finds
//!   them running with the mark, counts them and only removes it.
//! - `databases:<region>`: the RDS DB instances, as the instances: a stop marks and stops the
//!   available ones; a start starts the marked stopped ones, then unmarks. (RDS starts a DB
//!   instance stopped for 7 days by itself; the next scheduled stop stops it again.)
//! - `services:<region>`: reads the tagged services and chooses, changing nothing. A stop
//!   takes those with a desired count above 0 **and journals each count** (this step's
//!   output, then the instance's report) before anything is scaled. A start takes those that
//!   carry the mark at 0; the mark names the stopping instance.
//! - `read-stop:<id>` (start): the engine reads that stopping instance's journal record; its
//!   report holds the counts to restore. A record that is not in this journal, or did not succeed, leaves the
//!   service at 0 with its mark, saying so in the report.
//! - `scale-down:<region>` / `scale-up:<region>`: a stop marks each service, then sets its
//!   desired count to 0; a start sets the remembered count, then removes the mark. Every call
//!   sets an absolute value, so a repeat after a crash changes nothing more. A service scaled up
//!   by hand since the stop keeps its count; only its mark is removed.
//!
//! A second stop before the start leaves the stopped resources alone (and their marks, which
//! still name the stop that holds their counts).
//!
//! Then one report on the success topic (attributes `type` = `auto-stop`, `action`): per
//! region what was (or, in a dry run, would be) stopped or started, and why each tagged
//! resource left alone was.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Registration;
use super::resource_scan::config as resources;
use crate::contract::{
    Act, Call, Decision, Flow, Next, StepContext, StepError, Topic, Typed, WorkflowRead, decode, output, to_output,
};
use crate::ports::resources::{AccountRole, Accounts, Databases, Instance, Power, STOPPED_MARK, ServicePower};

pub const KIND: &str = "auto_stop";

pub fn registration() -> Registration {
    Registration::new(KIND, None, |setup| {
        Box::pin(async move {
            let settings = match setup.config.sections.get(resources::NAME) {
                Some(v) => Some(resources::parse(v).map_err(|b| b.to_string())?),
                None => None,
            };
            let regions = match &settings {
                Some(s) => s.regions_or(&setup.config.aws.region),
                None => vec![setup.config.aws.region.clone()],
            };
            Ok(Arc::new(Typed(AutoStop {
                regions,
                power: setup.ports.power.clone(),
                services: setup.ports.services.clone(),
                databases: setup.ports.databases.clone(),
                accounts: setup.ports.accounts.clone(),
                settings,
            })) as Arc<dyn crate::contract::Workflow>)
        })
    })
    .with_params_check(|params, sections| {
        let p = Params::parse(params)?;
        let settings = sections.get(resources::NAME).and_then(|v| resources::parse(v).ok());
        other_account(settings.as_ref(), p.account.as_deref()).map(drop)
    })
}

/// The workflow: the regions it acts in unless a route names others, and the ports it acts
/// through (the service's own account's, and other accounts' through their roles).
#[derive(Debug, Clone)]
pub struct AutoStop {
    pub regions: Vec<String>,
    pub power: Arc<dyn Power>,
    pub services: Arc<dyn ServicePower>,
    pub databases: Arc<dyn Databases>,
    pub accounts: Arc<dyn Accounts>,
    /// `[resources]`, where other accounts are configured.
    pub settings: Option<resources::ResourceSettings>,
}

/// The other account a route's `account` names: `None` for the service's own.
fn other_account<'a>(
    settings: Option<&'a resources::ResourceSettings>,
    account: Option<&str>,
) -> Result<Option<&'a resources::AccountSettings>, String> {
    match (settings, account) {
        (_, None) => Ok(None),
        (None, Some(name)) => Err(format!(
            "params.account {name:?}: no [resources] section configures other accounts ([[resources.accounts]])"
        )),
        (Some(settings), name) => settings.other_account(name),
    }
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

/// What a route's `resources` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    /// EC2 instances.
    Instances,
    /// ECS services (desired count to 0 and back).
    Services,
    /// RDS DB instances.
    Databases,
}

fn every_resource() -> Vec<Resource> {
    vec![Resource::Instances, Resource::Services, Resource::Databases]
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
    /// Default: instances and services.
    #[serde(default = "every_resource")]
    pub resources: Vec<Resource>,
    /// The ECS clusters (names or ARNs) whose services are considered; default every cluster
    /// of the region.
    #[serde(default)]
    pub clusters: Vec<String>,
    /// A `[[resources.accounts]]` name: act in that account through its role. Default the
    /// service's own account.
    #[serde(default)]
    pub account: Option<String>,
}

fn yes() -> bool {
    true
}

impl Params {
    pub fn parse(params: &Value) -> Result<Params, String> {
        let p: Params = decode(params, "params")?;
        if p.tags.is_empty() {
            return Err("params.tags must name at least one tag: a resource without them is never touched".into());
        }
        if let Some((k, _)) = p.tags.iter().find(|(k, _)| k.is_empty() || k.starts_with("aws:") || *k == STOPPED_MARK) {
            return Err(format!("params.tags: {k:?} cannot select resources (empty, AWS's own, or tugboat's mark)"));
        }
        if p.resources.is_empty() {
            return Err("params.resources must name at least one of instances, services, databases".into());
        }
        if let Some(c) = p.clusters.iter().find(|c| c.trim().is_empty()) {
            return Err(format!("params.clusters: {c:?} is not a cluster name"));
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
    #[serde(default = "every_resource")]
    pub resources: Vec<Resource>,
    #[serde(default)]
    pub clusters: Vec<String>,
    /// The regions finished, in order.
    pub done: Vec<Switched>,
    /// The region in progress: its instances' step's result, once run.
    #[serde(default)]
    pub current: Option<Switched>,
    /// The services the region in progress found to act on.
    #[serde(default)]
    pub found: Option<Found>,
    /// A start's reads of the stopping instances' records: by id, the services each scaled
    /// down with their counts before (`None`: the record is gone or did not complete).
    #[serde(default)]
    pub stops: BTreeMap<String, Option<Vec<ScaledService>>>,
    /// The region in progress's scale step has run.
    #[serde(default)]
    pub scaled: bool,
    /// The region in progress's DB instances step has run.
    #[serde(default)]
    pub databases_switched: bool,
    /// Another account's name and role (absent: the service's own account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<AccountRole>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// A region's instances. Result: [`Switched`].
    Switch {
        region: String,
        action: Action,
        tags: BTreeMap<String, String>,
        dry_run: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<AccountRole>,
    },
    /// Reads a region's tagged services (no change). Result: [`Found`].
    FindServices {
        region: String,
        action: Action,
        tags: BTreeMap<String, String>,
        clusters: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<AccountRole>,
    },
    /// A region's DB instances, as [`Step::Switch`] does instances. Result: [`Switched`]
    /// (its `databases` and `left`).
    SwitchDatabases {
        region: String,
        action: Action,
        tags: BTreeMap<String, String>,
        dry_run: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<AccountRole>,
    },
    /// The engine reads a stopping instance's record (start). Result: [`WorkflowRead`].
    ReadStop { id: String },
    /// Scales services (stop: marks, then 0; start: the remembered count, then unmarks).
    /// Result: [`Scaled`].
    Scale {
        region: String,
        action: Action,
        targets: Vec<ScaleTarget>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<AccountRole>,
    },
    /// The engine publishes the report.
    Notify,
}

/// What one region's steps did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Switched {
    pub region: String,
    /// The instances acted on (stopped or started), or to be in a dry run.
    pub instances: Vec<String>,
    /// The DB instances acted on (by identifier).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<String>,
    /// The services scaled: a stop's with their desired count before (what the start
    /// restores), a start's with the count restored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ScaledService>,
    /// Tagged instances and services (by ARN) left alone, with why (`already stopped`,
    /// `stopped by hand: no mark`).
    pub left: BTreeMap<String, String>,
    pub dry_run: bool,
}

/// A service and a desired count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaledService {
    pub service: String,
    pub cluster: String,
    pub desired: u32,
}

/// A region's tagged services, as a [`Step::FindServices`] chose them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Found {
    /// Stop: the services to scale to 0, with their desired count now. Start: the services a
    /// stop scaled to 0, with the stopping instance's id (its record holds the count).
    pub services: Vec<FoundService>,
    /// Start: services with the mark that were scaled up by hand since: only unmarked.
    #[serde(default)]
    pub unmark: Vec<String>,
    pub left: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundService {
    pub service: String,
    pub cluster: String,
    pub desired: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
}

/// One service a [`Step::Scale`] changes: to `desired`, or (start, `None`) only unmarked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleTarget {
    pub service: String,
    pub cluster: String,
    pub desired: Option<u32>,
}

/// What a [`Step::Scale`] did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scaled {
    pub services: Vec<String>,
}

/// The report, and the workflow's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "auto-stop")]
pub struct Report {
    /// Another account's name (absent: the service's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub action: Action,
    pub tags: BTreeMap<String, String>,
    pub dry_run: bool,
    pub instances: usize,
    #[serde(default)]
    pub services: usize,
    #[serde(default)]
    pub databases: usize,
    pub regions: Vec<Switched>,
}

impl AutoStop {
    /// The step the region in progress needs next, if any.
    fn pending(&self, s: &State) -> Option<Act<Step>> {
        let region = s.regions.get(s.done.len())?;
        let Some(_) = &s.current else {
            return Some(Act::handler(
                step_name(s, s.action.as_str(), region),
                Step::Switch {
                    region: region.clone(),
                    action: s.action,
                    tags: s.tags.clone(),
                    dry_run: s.dry_run,
                    role: s.role.clone(),
                },
            ));
        };
        if s.resources.contains(&Resource::Databases) && !s.databases_switched {
            return Some(Act::handler(
                step_name(s, "databases", region),
                Step::SwitchDatabases {
                    region: region.clone(),
                    action: s.action,
                    tags: s.tags.clone(),
                    dry_run: s.dry_run,
                    role: s.role.clone(),
                },
            ));
        }
        if !s.resources.contains(&Resource::Services) {
            return None;
        }
        let Some(found) = &s.found else {
            return Some(Act::handler(
                step_name(s, "services", region),
                Step::FindServices {
                    region: region.clone(),
                    action: s.action,
                    tags: s.tags.clone(),
                    clusters: s.clusters.clone(),
                    role: s.role.clone(),
                },
            ));
        };
        if let Some(id) = found.services.iter().filter_map(|f| f.stopped_by.as_ref()).find(|id| !s.stops.contains_key(*id)) {
            return Some(Act::engine(
                format!("read-stop:{id}"),
                Step::ReadStop { id: id.clone() },
                Call::ReadWorkflow { id: id.clone() },
            ));
        }
        let (targets, _) = plan(s, found);
        if s.dry_run || targets.is_empty() || s.scaled {
            return None;
        }
        let verb = match s.action {
            Action::Stop => "scale-down",
            Action::Start => "scale-up",
        };
        Some(Act::handler(
            step_name(s, verb, region),
            Step::Scale { region: region.clone(), action: s.action, targets, role: s.role.clone() },
        ))
    }

    /// Moves each region that needs no more steps from `current` to `done`, with what its
    /// services' plan scaled (or would scale).
    fn settle(&self, s: &mut State) {
        while s.current.is_some() && self.pending(s).is_none() {
            let Some(mut region) = s.current.take() else { break };
            s.scaled = false;
            s.databases_switched = false;
            if let Some(found) = s.found.take() {
                let (targets, left) = plan(s, &found);
                region.left.extend(left);
                region.services = match s.action {
                    // What the start restores: the counts before.
                    Action::Stop => found
                        .services
                        .iter()
                        .map(|f| ScaledService { service: f.service.clone(), cluster: f.cluster.clone(), desired: f.desired })
                        .collect(),
                    Action::Start => targets
                        .iter()
                        .filter_map(|t| {
                            Some(ScaledService { service: t.service.clone(), cluster: t.cluster.clone(), desired: t.desired? })
                        })
                        .collect(),
                };
                region.services.sort_by(|a, b| a.service.cmp(&b.service));
            }
            s.done.push(region);
            open_region_without_instances(s);
        }
    }

    fn next(&self, s: &State) -> Decision<Step> {
        if let Some(act) = self.pending(s) {
            return Next::Run(act);
        }
        let report = report(s);
        let verb = match (s.action, s.dry_run) {
            (Action::Stop, false) => "stopped",
            (Action::Start, false) => "started",
            (Action::Stop, true) => "would stop",
            (Action::Start, true) => "would start",
        };
        let subject = format!(
            "tugboat: auto-{} {verb} {} instance(s), {} service(s), {} database(s)",
            s.action.as_str(),
            report.instances,
            report.services,
            report.databases
        );
        let message = serde_json::to_value(&report).unwrap_or_default();
        Next::Run(
            Act::publish("report", Step::Notify, Topic::Success, subject, message)
                .with_attributes([("type", "auto-stop"), ("action", s.action.as_str())]),
        )
    }

    /// One region's instances: read the tagged ones, choose, act. `marker` is this
    /// instance's id, the value of the mark a stop puts on what it stops.
    async fn switch(
        &self,
        power: &dyn Power,
        region: &str,
        action: Action,
        tags: &BTreeMap<String, String>,
        dry_run: bool,
        marker: &str,
    ) -> Result<Switched, StepError> {
        let found = power.tagged(region, tags).await?;
        let (mut act, mut done) = (Vec::new(), Vec::new());
        let mut left = BTreeMap::new();
        for i in &found {
            // The port filtered by tag; checked again here: never an instance without them.
            if !has_tags(&i.tags, tags) {
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
                    power.mark(region, &act, STOPPED_MARK, marker).await?;
                    power.stop(region, &act).await?;
                }
                Action::Start => {
                    if !act.is_empty() {
                        power.start(region, &act).await?;
                    }
                    let unmark: Vec<String> = act.iter().chain(&done).cloned().collect();
                    if !unmark.is_empty() {
                        power.unmark(region, &unmark, STOPPED_MARK).await?;
                    }
                }
                Action::Stop => {}
            }
        }
        let mut instances: Vec<String> = act.into_iter().chain(done).collect();
        instances.sort();
        Ok(Switched { region: region.to_string(), instances, left, dry_run, ..Default::default() })
    }

    /// One region's DB instances: read, choose (as [`choose`] does instances), act. RDS
    /// starts a DB instance stopped for 7 days by itself; the next stop stops it again.
    async fn switch_databases(
        &self,
        databases: &dyn Databases,
        region: &str,
        action: Action,
        tags: &BTreeMap<String, String>,
        dry_run: bool,
        marker: &str,
    ) -> Result<Switched, StepError> {
        let (mut act, mut done) = (Vec::new(), Vec::new());
        let mut left = BTreeMap::new();
        for d in databases.databases(region).await? {
            if !has_tags(&d.tags, tags) {
                continue;
            }
            let mark = d.tags.get(STOPPED_MARK);
            let choice = match (action, d.status.as_str()) {
                (Action::Stop, "available") => Choice::Act,
                (Action::Stop, "stopping" | "stopped") if mark.is_some_and(|m| m == marker) => Choice::Done,
                (Action::Stop, _) => Choice::Leave("not available"),
                (Action::Start, "stopped") if mark.is_some() => Choice::Act,
                (Action::Start, "starting" | "available") if mark.is_some() => Choice::Done,
                (Action::Start, "stopped") => Choice::Leave("stopped by hand (no auto-stop mark)"),
                (Action::Start, _) => Choice::Leave("not stopped"),
            };
            match choice {
                Choice::Act => act.push(d),
                Choice::Done => done.push(d),
                Choice::Leave(why) => {
                    left.insert(d.id.clone(), format!("{why} ({})", d.status));
                }
            }
        }
        if !dry_run {
            for d in &act {
                match action {
                    Action::Stop => {
                        databases.mark_database(region, &d.arn, STOPPED_MARK, marker).await?;
                        databases.stop_database(region, &d.id).await?;
                    }
                    Action::Start => databases.start_database(region, &d.id).await?,
                }
            }
            if action == Action::Start {
                for d in act.iter().chain(&done) {
                    databases.unmark_database(region, &d.arn, STOPPED_MARK).await?;
                }
            }
        }
        let mut ids: Vec<String> = act.iter().chain(&done).map(|d| d.id.clone()).collect();
        ids.sort();
        Ok(Switched { region: region.to_string(), databases: ids, left, dry_run, ..Default::default() })
    }

    /// One region's tagged services, chosen (no change: what a stop remembers is journaled
    /// before anything is scaled).
    async fn find_services(
        &self,
        services: &dyn ServicePower,
        region: &str,
        action: Action,
        tags: &BTreeMap<String, String>,
        clusters: &[String],
    ) -> Result<Found, StepError> {
        let mut found = Found::default();
        for svc in services.tagged_services(region, clusters, tags).await? {
            if !has_tags(&svc.tags, tags) {
                continue;
            }
            let mark = svc.tags.get(STOPPED_MARK);
            let chosen = |stopped_by| FoundService {
                service: svc.arn.clone(),
                cluster: svc.cluster.clone(),
                desired: svc.desired,
                stopped_by,
            };
            match (action, mark) {
                (Action::Stop, _) if svc.desired > 0 => found.services.push(chosen(None)),
                (Action::Stop, Some(by)) => {
                    found.left.insert(svc.arn.clone(), format!("desired count already 0 (stopped by {by})"));
                }
                (Action::Stop, None) => {
                    found.left.insert(svc.arn.clone(), "desired count already 0".into());
                }
                (Action::Start, Some(by)) if svc.desired == 0 => found.services.push(chosen(Some(by.clone()))),
                (Action::Start, Some(_)) => {
                    found.unmark.push(svc.arn.clone());
                    found.left.insert(
                        svc.arn.clone(),
                        format!("scaled up since the stop (desired {}): only the mark removed", svc.desired),
                    );
                }
                (Action::Start, None) => {
                    found.left.insert(svc.arn.clone(), "not stopped by auto_stop (no mark)".into());
                }
            }
        }
        found.services.sort_by(|a, b| a.service.cmp(&b.service));
        Ok(found)
    }

    /// Scales `targets`: a stop marks each (so that the start finds it and the record that
    /// holds its count), then sets it to 0; a start sets the remembered count, then unmarks.
    /// Every call sets an absolute value: a repeat after a crash changes nothing more.
    async fn scale(
        &self,
        services: &dyn ServicePower,
        region: &str,
        action: Action,
        targets: &[ScaleTarget],
        marker: &str,
    ) -> Result<Scaled, StepError> {
        let mut scaled = Scaled::default();
        for t in targets {
            match action {
                Action::Stop => {
                    services.mark_service(region, &t.service, STOPPED_MARK, marker).await?;
                    services.scale(region, &t.cluster, &t.service, 0).await?;
                }
                Action::Start => {
                    if let Some(n) = t.desired {
                        services.scale(region, &t.cluster, &t.service, n).await?;
                    }
                    services.unmark_service(region, &t.service, STOPPED_MARK).await?;
                }
            }
            scaled.services.push(t.service.clone());
        }
        Ok(scaled)
    }
}

type AccountTools = (Arc<dyn Power>, Arc<dyn ServicePower>, Arc<dyn Databases>);

impl AutoStop {
    /// The ports of the account a step acts in: instances, services, DB instances.
    async fn at(&self, role: Option<&AccountRole>) -> Result<AccountTools, StepError> {
        match role {
            None => Ok((self.power.clone(), self.services.clone(), self.databases.clone())),
            Some(role) => {
                let other = self.accounts.reach(role).await?;
                Ok((other.power, other.services, other.databases))
            }
        }
    }
}

/// Without instances a region has no instances' step to open it: the next region starts at
/// its other resources.
fn open_region_without_instances(s: &mut State) {
    if !s.resources.contains(&Resource::Instances)
        && let Some(next) = s.regions.get(s.done.len())
    {
        s.current = Some(Switched { region: next.clone(), dry_run: s.dry_run, ..Default::default() });
    }
}

/// `<verb>:<region>`, or in another account `<verb>:<account>:<region>`.
fn step_name(s: &State, verb: &str, region: &str) -> String {
    match &s.account {
        Some(account) => format!("{verb}:{account}:{region}"),
        None => format!("{verb}:{region}"),
    }
}

fn has_tags(have: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

/// The services a region's scale step changes, and the ones left with why: a stop scales
/// every found service to 0; a start restores each to the count its stopping instance's
/// record holds (a service whose record is gone is left at 0, marked, for a person).
fn plan(s: &State, found: &Found) -> (Vec<ScaleTarget>, BTreeMap<String, String>) {
    let mut targets = Vec::new();
    let mut left = found.left.clone();
    for f in &found.services {
        let desired = match (s.action, &f.stopped_by) {
            (Action::Stop, _) => Some(0),
            (Action::Start, None) => None,
            (Action::Start, Some(id)) => match s.stops.get(id) {
                // Not read yet: `pending` reads it before planning the scale.
                None => None,
                Some(None) => {
                    left.insert(
                        f.service.clone(),
                        format!("the stopping instance {id} has no succeeded record here: set its desired count by hand"),
                    );
                    continue;
                }
                Some(Some(services)) => match services.iter().find(|x| x.service == f.service) {
                    Some(x) => Some(x.desired),
                    None => {
                        left.insert(
                            f.service.clone(),
                            format!("the stopping instance {id} did not scale it: set its desired count by hand"),
                        );
                        continue;
                    }
                },
            },
        };
        let Some(desired) = desired else { continue };
        targets.push(ScaleTarget { service: f.service.clone(), cluster: f.cluster.clone(), desired: Some(desired) });
    }
    if s.action == Action::Start {
        targets.extend(found.unmark.iter().map(|arn| ScaleTarget {
            service: arn.clone(),
            cluster: String::new(),
            desired: None,
        }));
    }
    (targets, left)
}

/// A stop's count before, by service, from the stop's record (its report).
fn remembered(read: &WorkflowRead) -> Option<Vec<ScaledService>> {
    if read.status.as_deref() != Some(crate::journal::Status::Succeeded.name()) {
        return None;
    }
    let report: Report = serde_json::from_value(read.output.clone()?).ok()?;
    (report.action == Action::Stop).then(|| report.regions.into_iter().flat_map(|r| r.services).collect())
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
        account: s.account.clone(),
        action: s.action,
        tags: s.tags.clone(),
        dry_run: s.dry_run,
        instances: s.done.iter().map(|d| d.instances.len()).sum(),
        services: s.done.iter().map(|d| d.services.len()).sum(),
        databases: s.done.iter().map(|d| d.databases.len()).sum(),
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
        let other = other_account(self.settings.as_ref(), p.account.as_deref())?;
        // The route's regions, else another account's own, else the workflow's.
        let regions = p
            .regions
            .unwrap_or_else(|| other.map_or_else(|| self.regions.clone(), |a| a.regions_or(self.regions.clone())));
        let mut state = State {
            account: other.map(|a| a.name.clone()),
            role: other.map(resources::AccountSettings::role),
            action: p.action,
            tags: p.tags,
            regions,
            dry_run: p.dry_run,
            resources: p.resources,
            clusters: p.clusters,
            done: Vec::new(),
            current: None,
            found: None,
            stops: BTreeMap::new(),
            scaled: false,
            databases_switched: false,
        };
        open_region_without_instances(&mut state);
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
                Ok(done) => s.current = Some(done),
                Err(e) => return Next::Fail(e),
            },
            Step::SwitchDatabases { .. } => match output::<Switched>(value) {
                Ok(done) => {
                    if let Some(current) = s.current.as_mut() {
                        current.databases = done.databases;
                        current.left.extend(done.left);
                    }
                    s.databases_switched = true;
                }
                Err(e) => return Next::Fail(e),
            },
            Step::FindServices { .. } => match output::<Found>(value) {
                Ok(found) => s.found = Some(found),
                Err(e) => return Next::Fail(e),
            },
            Step::ReadStop { id } => match output::<WorkflowRead>(value) {
                Ok(read) => {
                    s.stops.insert(id, remembered(&read));
                }
                Err(e) => return Next::Fail(e),
            },
            Step::Scale { .. } => match output::<Scaled>(value) {
                Ok(_) => s.scaled = true,
                Err(e) => return Next::Fail(e),
            },
            Step::Notify => return Next::done(&report(s)),
        }
        self.settle(s);
        self.next(s)
    }

    async fn perform(&self, ctx: StepContext<'_>, step: &Step) -> Result<Value, StepError> {
        match step {
            Step::Switch { region, action, tags, dry_run, role } => {
                let (power, _, _) = self.at(role.as_ref()).await?;
                to_output(&self.switch(power.as_ref(), region, *action, tags, *dry_run, ctx.workflow_id).await?)
            }
            Step::SwitchDatabases { region, action, tags, dry_run, role } => {
                let (_, _, databases) = self.at(role.as_ref()).await?;
                to_output(&self.switch_databases(databases.as_ref(), region, *action, tags, *dry_run, ctx.workflow_id).await?)
            }
            Step::FindServices { region, action, tags, clusters, role } => {
                let (_, services, _) = self.at(role.as_ref()).await?;
                to_output(&self.find_services(services.as_ref(), region, *action, tags, clusters).await?)
            }
            Step::Scale { region, action, targets, role } => {
                let (_, services, _) = self.at(role.as_ref()).await?;
                to_output(&self.scale(services.as_ref(), region, *action, targets, ctx.workflow_id).await?)
            }
            Step::ReadStop { .. } | Step::Notify => Err(StepError::permanent("this step is performed by the engine")),
        }
    }
}
