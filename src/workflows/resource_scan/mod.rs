//! `resource_scan` (cost plan, phase 3: the resource optimization scanner): what the
//! configured regions hold that costs money while nobody uses it, each finding with its
//! estimated monthly cost, kept in the findings table and announced on the success topic.
//!
//! Trigger: any routed event — a schedule's tick (`[[schedules]]`, the usual way), or an
//! event of your own. Params: `regions` (a list) replaces the account's regions for the route;
//! `account` names a `[[resources.accounts]]` entry to scan that account through its role
//! (default: the service's own account; one instance scans one account, so a schedule's tick
//! routed to several routes scans several).
//!
//! Steps:
//! 1. `scan:<region>` (another account's: `scan:<account>:<region>`), one region at a time:
//!    the region's volumes, Elastic IPs, instances, own snapshots and RDS DB instances read at
//!    once (each call paged through); then CloudWatch (`GetMetricData`, up to 500 resources a
//!    call) for the daily average CPU of the instances running at least `low_cpu_days` and the
//!    daily maximum connections of the DB instances at least `idle_database_days` old; all
//!    judged by [`findings`] (unattached volumes, unassociated addresses, stopped instances
//!    whose volumes are billed, old snapshots, low-CPU instances, idle DB instances), and the
//!    account's findings for the region **replaced** in the table (a scan is the whole truth
//!    about its region: a volume deleted since drops out). Idempotent: a crash repeats the
//!    region. Throttling retries.
//! 2. `report`: one message on the success topic (attributes `type` = `resource-scan`,
//!    `account`): per region the count and monthly cost by kind, the total, the ten costliest.
//!
//! Prices: the unit rates your own cost reports billed in the region, where `cur_ingest` kept
//! one (`resources.rates_table`, default `[cur] table`), else [`prices`] (AWS's us-east-1
//! list prices); a key set in `[resources.prices]` replaces both.
//! `tugboat resources scan [--dry-run]` ([`operation`]) runs the same reads and rules from the
//! command line; the console's findings page ([`page`], also `tugboat resources findings`)
//! shows the table.

pub mod config;
pub mod findings;
pub mod operation;
pub mod page;
pub mod prices;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Registration;
use crate::contract::{Act, Decision, Flow, Next, StepContext, StepError, Topic, Typed, decode, output, to_output};
use crate::ports::clock::Clock;
use crate::ports::costs::{CostStore, UnitRate};
use crate::ports::resources::{AccountRole, Accounts, Databases, Finding, FindingStore, Inventory, MetricQuery, Metrics, Stat};
use config::ResourceSettings;
use findings::{Gathered, Rules, cents};
use prices::Prices;

pub const KIND: &str = "resource_scan";

/// How many of the costliest findings a report lists.
pub const TOP: usize = 10;

pub fn registration() -> Registration {
    Registration::new(KIND, Some(config::SECTION), |setup| {
        Box::pin(async move {
            // Without a [resources] section no route may name this workflow (the params
            // check), so the service still starts.
            let settings = config::load(&setup.config.sections)?;
            Ok(Arc::new(Typed(ResourceScan::new(settings, setup.config.aws.region.clone(), setup.ports)))
                as Arc<dyn crate::contract::Workflow>)
        })
    })
    .with_params_check(|params, sections| {
        if !sections.contains_key(config::NAME) {
            return Err("resource_scan needs a [resources] section naming the findings table (resources.table)".into());
        }
        super::params::only_known(params, KIND, &["regions", "account"])?;
        let p = RouteParams::parse(params)?;
        // The account must be configured (the section was checked on its own before).
        if let Some(settings) = sections.get(config::NAME).and_then(|v| config::parse(v).ok()) {
            settings.other_account(p.account.as_deref())?;
        }
        Ok(())
    })
    .with_command(
        "resources",
        "Idle resources: scan for them as the resource_scan workflow does, and the findings the scans stored.",
    )
    .with_page(crate::workflows::surface::page::<page::FindingsPage>())
    .with_operation(operation::OPERATION)
}

/// The workflow: its settings and the ports it reads and writes through.
#[derive(Debug, Clone)]
pub struct ResourceScan {
    /// `None` without a `[resources]` section (then no route can start this workflow).
    pub settings: Option<ResourceSettings>,
    /// The service's region: what is scanned when nothing names regions.
    pub own_region: String,
    pub inventory: Arc<dyn Inventory>,
    pub databases: Arc<dyn Databases>,
    pub metrics: Arc<dyn Metrics>,
    /// Other accounts' inventories (`[[resources.accounts]]`).
    pub accounts: Arc<dyn Accounts>,
    pub findings: Arc<dyn FindingStore>,
    /// The unit rates cost reports billed (`resources.rates_table`).
    pub costs: Arc<dyn CostStore>,
    pub clock: Arc<dyn Clock>,
}

/// A route's params.
#[derive(Debug, Default, Deserialize)]
struct RouteParams {
    #[serde(default)]
    regions: Option<Vec<String>>,
    /// A `[[resources.accounts]]` name; default the service's own account.
    #[serde(default)]
    account: Option<String>,
}

impl RouteParams {
    fn parse(params: &Value) -> Result<RouteParams, String> {
        let p: RouteParams = match params {
            Value::Null => RouteParams::default(),
            v => decode(v, "params")?,
        };
        config::check_param_regions(p.regions.as_ref())?;
        Ok(p)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub account: String,
    /// The role assumed to reach another account; `None`: the service's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<AccountRole>,
    pub regions: Vec<String>,
    /// Each scanned region's result, in order.
    pub scanned: Vec<RegionScan>,
}

/// The steps; each carries its request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Result: [`RegionScan`]. `account` and `role` name another account (absent: the
    /// service's own).
    Scan {
        region: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        account: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<AccountRole>,
    },
    /// The engine publishes the report.
    Notify,
}

/// Findings of one kind in a region.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KindTotal {
    pub count: usize,
    pub monthly_cost: f64,
}

/// One region's scan: what was read, what was found, what the table holds now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegionScan {
    pub region: String,
    /// Resources read: volumes, addresses, instances, snapshots.
    pub read: usize,
    pub findings: usize,
    pub monthly_cost: f64,
    pub by_kind: BTreeMap<String, KindTotal>,
    /// The costliest findings, at most [`TOP`].
    pub top: Vec<Finding>,
    /// Findings written, and earlier ones the table no longer needs.
    pub written: usize,
    pub deleted: usize,
}

/// The report on the success topic, and the workflow's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "resource-scan")]
pub struct ScanReport {
    pub account: String,
    pub currency: String,
    pub findings: usize,
    pub monthly_cost: f64,
    pub regions: Vec<RegionScan>,
}

impl ResourceScan {
    pub fn new(settings: Option<ResourceSettings>, own_region: String, ports: &crate::ports::Ports) -> ResourceScan {
        ResourceScan {
            settings,
            own_region,
            inventory: ports.inventory.clone(),
            databases: ports.databases.clone(),
            metrics: ports.metrics.clone(),
            accounts: ports.accounts.clone(),
            findings: ports.findings.clone(),
            costs: ports.costs.clone(),
            clock: ports.clock.clone(),
        }
    }

    fn settings(&self) -> Result<&ResourceSettings, String> {
        self.settings.as_ref().ok_or_else(|| "no [resources] section is configured".into())
    }

    /// The judging rules for `account`'s `region`, pricing with `rates` (the region's report
    /// rates) before the table.
    pub fn rules(&self, account: &str, region: &str, rates: &[UnitRate]) -> Result<Rules, String> {
        let s = self.settings()?;
        Ok(Rules {
            account: account.to_string(),
            region: region.to_string(),
            unattached_days: s.unattached_days,
            snapshot_days: s.snapshot_days,
            low_cpu_days: s.low_cpu_days,
            low_cpu_percent: s.low_cpu_percent,
            idle_database_days: s.idle_database_days,
            currency: s.currency.clone(),
            prices: Prices::new(&s.prices).with_rates(rates, &s.currency),
        })
    }

    /// Reads `region`'s inventory in `account` (through `role`, or the service's own) (EC2's four calls and RDS's at
    /// once), then CloudWatch for the CPU of the running instances and the connections of the
    /// DB instances old enough to judge (one batched call each), and judges it: the findings,
    /// costliest first, and how many resources were read.
    pub async fn survey(
        &self,
        account: &str,
        role: Option<&AccountRole>,
        region: &str,
    ) -> Result<(Vec<Finding>, usize), StepError> {
        let settings = self.settings().map_err(StepError::permanent)?;
        // The rates are the payer's, the same whichever of its accounts is scanned.
        let rates = match settings.rates_table() {
            Some(table) => self.costs.rates(table, region).await?,
            None => Vec::new(),
        };
        let rules = self.rules(account, region, &rates).map_err(StepError::permanent)?;
        let (inventory, databases, metrics) = match role {
            None => (self.inventory.clone(), self.databases.clone(), self.metrics.clone()),
            Some(role) => {
                let other = self.accounts.reach(role).await?;
                (other.inventory, other.databases, other.metrics)
            }
        };
        let (volumes, addresses, instances, snapshots, dbs) = futures::try_join!(
            inventory.volumes(region),
            inventory.addresses(region),
            inventory.instances(region),
            inventory.snapshots(region),
            databases.databases(region),
        )?;
        let now = self.clock.now_ms();
        let cpu: Vec<MetricQuery> = rules
            .cpu_candidates(now, &instances)
            .iter()
            .map(|i| metric("AWS/EC2", "CPUUtilization", "InstanceId", &i.id, Stat::Average))
            .collect();
        let connections: Vec<MetricQuery> = rules
            .connection_candidates(now, &dbs)
            .iter()
            .map(|d| metric("AWS/RDS", "DatabaseConnections", "DBInstanceIdentifier", &d.id, Stat::Maximum))
            .collect();
        let (cpu, connections) = futures::try_join!(
            daily(metrics.as_ref(), region, cpu, now, rules.low_cpu_days),
            daily(metrics.as_ref(), region, connections, now, rules.idle_database_days),
        )?;
        let gathered = Gathered { volumes, addresses, instances, snapshots, databases: dbs, cpu, connections };
        let read = gathered.volumes.len()
            + gathered.addresses.len()
            + gathered.instances.len()
            + gathered.snapshots.len()
            + gathered.databases.len();
        Ok((findings::find(&rules, now, &gathered), read))
    }

    fn report(&self, s: &State) -> ScanReport {
        ScanReport {
            account: s.account.clone(),
            currency: self.settings.as_ref().map_or_else(|| "USD".into(), |c| c.currency.clone()),
            findings: s.scanned.iter().map(|r| r.findings).sum(),
            monthly_cost: cents(s.scanned.iter().map(|r| r.monthly_cost).sum()),
            regions: s.scanned.clone(),
        }
    }

    fn next(&self, s: &State) -> Decision<Step> {
        match s.regions.get(s.scanned.len()) {
            // The own account's steps keep their names from before accounts existed.
            Some(region) => Next::Run(Act::handler(
                match &s.role {
                    None => format!("scan:{region}"),
                    Some(_) => format!("scan:{}:{region}", s.account),
                },
                Step::Scan {
                    region: region.clone(),
                    account: s.role.as_ref().map(|_| s.account.clone()),
                    role: s.role.clone(),
                },
            )),
            None => {
                let report = self.report(s);
                let subject = format!(
                    "tugboat: resource scan {}: {} findings, {:.2} {}/month",
                    report.account, report.findings, report.monthly_cost, report.currency
                );
                let message = serde_json::to_value(&report).unwrap_or_default();
                Next::Run(
                    Act::publish("report", Step::Notify, Topic::Success, subject, message)
                        .with_attributes([("type", "resource-scan"), ("account", s.account.as_str())]),
                )
            }
        }
    }
}

fn metric(namespace: &str, name: &str, dimension: &str, value: &str, stat: Stat) -> MetricQuery {
    MetricQuery {
        namespace: namespace.into(),
        metric: name.into(),
        dimension: dimension.into(),
        value: value.into(),
        stat,
    }
}

const DAY_MS: u64 = 86_400_000;

/// Each query's daily values over the last `days`, by the queried resource's id (no call when
/// nothing is asked).
async fn daily(
    metrics: &dyn Metrics,
    region: &str,
    queries: Vec<MetricQuery>,
    now_ms: u64,
    days: u64,
) -> Result<BTreeMap<String, Vec<f64>>, StepError> {
    if queries.is_empty() {
        return Ok(BTreeMap::new());
    }
    let series = metrics.series(region, &queries, now_ms.saturating_sub(days * DAY_MS), now_ms, 86_400).await?;
    Ok(queries.into_iter().map(|q| q.value).zip(series).collect())
}

/// A region's findings summed up for the report.
pub fn summarize(region: &str, found: &[Finding], read: usize) -> RegionScan {
    let mut by_kind: BTreeMap<String, KindTotal> = BTreeMap::new();
    for f in found {
        let t = by_kind.entry(f.kind.as_str().to_string()).or_default();
        t.count += 1;
        t.monthly_cost = cents(t.monthly_cost + f.monthly_cost);
    }
    RegionScan {
        region: region.to_string(),
        read,
        findings: found.len(),
        monthly_cost: cents(found.iter().map(|f| f.monthly_cost).sum()),
        by_kind,
        top: found.iter().take(TOP).cloned().collect(),
        written: 0,
        deleted: 0,
    }
}

#[async_trait]
impl Flow for ResourceScan {
    const KIND: &'static str = KIND;
    type State = State;
    type Step = Step;

    fn start(&self, _event: &Value, params: &Value) -> Result<(State, Decision<Step>), String> {
        let settings = self.settings()?;
        let p = RouteParams::parse(params)?;
        let reach = settings.reach(p.account.as_deref(), &self.own_region)?;
        let state = State {
            account: reach.account,
            role: reach.role,
            regions: p.regions.unwrap_or(reach.regions),
            scanned: Vec::new(),
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
            Step::Scan { .. } => match output::<RegionScan>(value) {
                Ok(scan) => {
                    s.scanned.push(scan);
                    self.next(s)
                }
                Err(e) => Next::Fail(e),
            },
            Step::Notify => Next::done(&self.report(s)),
        }
    }

    async fn perform(&self, _ctx: StepContext<'_>, step: &Step) -> Result<Value, StepError> {
        match step {
            Step::Scan { region, account, role } => {
                let settings = self.settings().map_err(StepError::permanent)?;
                let account = account.as_deref().unwrap_or(&settings.account);
                let (found, read) = self.survey(account, role.as_ref(), region).await?;
                let replaced = self.findings.replace(&settings.table, account, region, &found).await?;
                let mut scan = summarize(region, &found, read);
                scan.written = replaced.written;
                scan.deleted = replaced.deleted;
                to_output(&scan)
            }
            Step::Notify => Err(StepError::permanent("the report is published by the engine")),
        }
    }
}
