//! `cur_ingest` (seed plan 2): a Cost and Usage Report, from the S3 event that announced it to
//! the daily-cost table, a curated summary, anomaly alerts and a report notification.
//!
//! Trigger: an S3 "Object Created" event (EventBridge, or an S3 notification directly or
//! through SNS: the decoder gives both the same shape) for a manifest (`*-Manifest.json`:
//! every `reportKeys` part is one report) or a single report (`.csv`, `.csv.gz`; Parquet is
//! not read yet). Any other key completes at once as ignored (counted as `outcome="ignored"` in
//! `tugboat_workflows_finished_total`).
//!
//! Steps:
//! 1. `read-manifest` (manifests only): the parts' keys.
//! 2. `ingest`: every part streamed through [`report`] (never held in memory), summed per
//!    (day, payer, account, service, region, currency); for each payer and billing period the
//!    table's rows are **replaced** (a report is cumulative within its month: a re-delivered or
//!    restated report replaces, never adds), the curated summary is written to
//!    `<curated_prefix>/<payer>/<period>/daily.csv`, and the days this delivery adds are judged
//!    for anomalies against the table's history ([`anomaly`]); the month-end forecast per
//!    account is made, and budgets compared. Idempotent: a crash restarts the report.
//! 3. `report#N`: one message per payer and period on the success topic (attributes `type` =
//!    `report`, `payer`).
//! 4. `anomaly#N`, `budget#N`: one message each on the anomaly topic (attributes `type`,
//!    `account`, `service`), so that a subscription filter can take one account's alerts.
//!
//! A report that cannot be read (a truncated gzip, a missing column, a non-numeric cost, a
//! manifest naming a missing part) fails for good, naming file, line and column: the error
//! topic is told (the compensation step) and the event goes to the DLQ. Throttling retries.
//!
//! A budget alert is raised once per account and month (`CostStore::mark_once`). Not yet:
//! Parquet.

pub mod anomaly;
pub mod config;
pub mod ingest;
pub mod manifest;
pub mod page;
pub mod report;
mod rows;
pub mod tool;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Registration;
use crate::contract::{
    Act, Decision, Flow, Next, StepContext, StepError, Topic, Typed, decode, output, to_output,
};
use ingest::Ingested;
use crate::ports::costs::CostStore;
use crate::ports::objects::ObjectStore;
use config::CurSettings;
use manifest::Manifest;

pub const KIND: &str = "cur_ingest";

/// Manifests are small; a larger object under that name is not one.
const MANIFEST_LIMIT: usize = 4 << 20;

pub fn registration() -> Registration {
    Registration::new(KIND, Some(config::SECTION), |setup| {
        Box::pin(async move {
            // Without a [cur] section no route may name this workflow (the params check), so
            // the service still starts.
            let settings = match setup.config.sections.get(config::NAME) {
                Some(v) => Some(config::parse(v).map_err(|b| b.to_string())?),
                None => None,
            };
            Ok(Arc::new(Typed(CurIngest {
                settings,
                objects: setup.ports.objects.clone(),
                costs: setup.ports.costs.clone(),
            })) as Arc<dyn crate::contract::Workflow>)
        })
    })
    .with_params_check(|params, sections| {
        if !sections.contains_key(config::NAME) {
            return Err("cur_ingest needs a [cur] section naming the daily-cost table (cur.table)".into());
        }
        super::params::only_known(params, KIND, &[])
    })
    .with_command(
        "cur",
        "Cost and Usage Reports: the costs the service ingested, and reports on local disk (no configuration needed for those).",
    )
    .with_page(crate::workflows::surface::page::<page::CostsPage>())
    .with_tool(tool::TOOL)
}

/// The workflow: its settings and the stores it reads and writes.
#[derive(Debug, Clone)]
pub struct CurIngest {
    /// `None` without a `[cur]` section (then no route can start this workflow).
    pub settings: Option<CurSettings>,
    pub objects: Arc<dyn ObjectStore>,
    pub costs: Arc<dyn CostStore>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub bucket: String,
    pub key: String,
    /// The ingest step's result, once it ran.
    pub result: Option<Ingested>,
    /// Why the run failed, for the error topic.
    pub failure: Option<String>,
    /// Notifications published so far.
    #[serde(default)]
    pub sent: usize,
}

/// The steps; each carries its request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Result: [`Parts`].
    ReadManifest { bucket: String, key: String },
    /// Result: [`Ingested`].
    Ingest { bucket: String, parts: Vec<String> },
    /// Engine publishes.
    Notify,
}

/// The read-manifest step's result: the report parts' keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parts {
    pub parts: Vec<String>,
}

/// The workflow's output: the object and what its ingest came to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub bucket: String,
    pub key: String,
    pub ingested: Ingested,
}

/// A report notification on the success topic (`"type": "report"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "report")]
pub struct ReportNotice {
    pub bucket: String,
    pub key: String,
    pub payer: String,
    pub period: String,
    pub parts: usize,
    pub rows: usize,
    pub total: f64,
    pub currency: String,
    pub top_services: Vec<ingest::ServiceCost>,
    /// How many anomalies were found (each is published on its own).
    pub anomalies: usize,
    pub written: usize,
    pub deleted: usize,
    pub curated: String,
    pub forecast: std::collections::BTreeMap<String, f64>,
}

/// What this workflow reads of an S3 "Object Created" event.
#[derive(Debug, Deserialize)]
struct ObjectCreated {
    detail: ObjectDetail,
}

/// (Optional here so that a missing one is named to its leaf: `event.detail.bucket.name`.)
#[derive(Debug, Deserialize)]
struct ObjectDetail {
    bucket: Option<Named>,
    object: Option<Keyed>,
}

#[derive(Debug, Deserialize)]
struct Named {
    name: String,
}

#[derive(Debug, Deserialize)]
struct Keyed {
    key: String,
}

/// The object an event announces: `detail.bucket.name`, `detail.object.key`.
fn object(event: &Value) -> Result<(String, String), String> {
    let ObjectCreated { detail } = decode(event, "event")?;
    let bucket = detail.bucket.ok_or("event.detail.bucket.name is required")?;
    let object = detail.object.ok_or("event.detail.object.key is required")?;
    Ok((bucket.name, object.key))
}

/// A notification's message. (These types always serialize: strings, numbers, lists and
/// string-keyed maps.)
fn message<T: Serialize>(notice: &T) -> Value {
    serde_json::to_value(notice).unwrap_or_default()
}

fn is_report(key: &str) -> bool {
    key.ends_with(".csv") || key.ends_with(".csv.gz")
}

impl CurIngest {
    /// The next notification to publish, or the end.
    fn next_notification(&self, s: &State) -> Decision<Step> {
        let Some(result) = &s.result else {
            return Next::Fail("notifications before the ingest step ran".into());
        };
        match self.notifications(s, result).into_iter().nth(s.sent) {
            Some(act) => Next::Run(act),
            None => Next::done(&Output {
                bucket: s.bucket.clone(),
                key: s.key.clone(),
                ingested: result.clone(),
            }),
        }
    }

    /// The notifications for an ingest result, as publish steps.
    fn notifications(&self, s: &State, result: &Ingested) -> Vec<Act<Step>> {
        let mut acts = Vec::new();
        let mut n = 0;
        let mut next = |name: &str| {
            n += 1;
            format!("{name}#{n}")
        };
        for p in &result.payers {
            let payer = p.payer.as_str();
            let report = ReportNotice {
                bucket: s.bucket.clone(),
                key: s.key.clone(),
                payer: p.payer.clone(),
                period: p.period.clone(),
                parts: result.parts,
                rows: p.rows,
                total: p.total,
                currency: p.currency.clone(),
                top_services: p.top_services.clone(),
                anomalies: p.anomalies.len(),
                written: p.written,
                deleted: p.deleted,
                curated: p.curated.clone(),
                forecast: p.forecast.clone(),
            };
            let subject = format!("tugboat: cost report {payer} {}", p.period);
            acts.push(
                Act::publish(next("report"), Step::Notify, Topic::Success, subject, message(&report))
                    .with_attributes([("type", "report"), ("payer", payer)]),
            );
            for a in &p.anomalies {
                let (account, service) = (a.account.as_str(), a.service.as_str());
                let subject = format!("tugboat: cost anomaly {account} {service}");
                acts.push(
                    Act::publish(next("anomaly"), Step::Notify, Topic::Anomaly, subject, message(a))
                        .with_attributes([("type", "anomaly"), ("account", account), ("service", service), ("payer", payer)]),
                );
            }
            for b in &p.budgets {
                let account = b.account.as_str();
                let subject = format!("tugboat: budget forecast {account}");
                acts.push(
                    Act::publish(next("budget"), Step::Notify, Topic::Anomaly, subject, message(b))
                        .with_attributes([("type", "budget"), ("account", account), ("payer", payer)]),
                );
            }
        }
        acts
    }
}

#[async_trait]
impl Flow for CurIngest {
    const KIND: &'static str = KIND;
    type State = State;
    type Step = Step;

    fn start(&self, event: &Value, _params: &Value) -> Result<(State, Decision<Step>), String> {
        let (bucket, key) = object(event)?;
        let state = State {
            bucket: bucket.clone(),
            key: key.clone(),
            result: None,
            failure: None,
            sent: 0,
        };
        if self.settings.is_none() {
            return Err("no [cur] section is configured".into());
        }
        let name = key.rsplit('/').next().unwrap_or_default().to_string();
        let next = if Manifest::is_manifest_key(&name) {
            Next::Run(Act::handler("read-manifest", Step::ReadManifest { bucket, key }))
        } else if is_report(&name) {
            Next::Run(Act::handler("ingest", Step::Ingest { bucket, parts: vec![key] }))
        } else {
            Next::ignored(&key, "neither a report (.csv, .csv.gz) nor a manifest (*-Manifest.json)")
        };
        Ok((state, next))
    }

    fn advance(&self, s: &mut State, step: Step, outcome: Result<Value, StepError>) -> Decision<Step> {
        let value = match outcome {
            Ok(v) => v,
            Err(e) => {
                let reason = format!("s3://{}/{}: {}", s.bucket, s.key, e.message);
                s.failure = Some(reason.clone());
                return Next::Fail(reason);
            }
        };
        match step {
            Step::ReadManifest { bucket, .. } => match output::<Parts>(value) {
                Ok(Parts { parts }) => Next::Run(Act::handler("ingest", Step::Ingest { bucket, parts })),
                Err(e) => Next::Fail(e),
            },
            Step::Ingest { .. } => match output::<Ingested>(value) {
                Ok(result) => {
                    s.result = Some(result);
                    s.sent = 0;
                    self.next_notification(s)
                }
                Err(e) => Next::Fail(e),
            },
            Step::Notify => {
                s.sent += 1;
                self.next_notification(s)
            }
        }
    }

    fn compensation(&self, s: &State) -> Vec<Act<Step>> {
        let reason = s.failure.clone().unwrap_or_else(|| "failed".into());
        vec![
            Act::publish(
                "tell-error",
                Step::Notify,
                Topic::Error,
                "tugboat: cost report failed",
                json!({"type": "report-failed", "bucket": s.bucket, "key": s.key, "error": reason}),
            )
            .with_attributes([("type", "report-failed")]),
        ]
    }

    async fn perform(&self, _ctx: StepContext<'_>, step: &Step) -> Result<Value, StepError> {
        match step {
            Step::ReadManifest { bucket, key } => {
                let bytes = self.objects.get(bucket, key, MANIFEST_LIMIT).await?;
                let manifest = Manifest::parse(&bytes, &format!("s3://{bucket}/{key}"))
                    .map_err(StepError::permanent)?;
                to_output(&Parts {
                    parts: manifest.keys().map(str::to_owned).collect(),
                })
            }
            Step::Ingest { bucket, parts } => to_output(&ingest::run(self, bucket, parts).await?),
            Step::Notify => Err(StepError::permanent("notifications are published by the engine")),
        }
    }
}
