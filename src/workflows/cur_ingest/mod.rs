//! `cur_ingest` (seed plan 2): Cost and Usage Reports into the daily-cost table, a curated
//! summary, anomalies, a forecast and budgets.
//!
//! **So far only the report reading and the analysis are here** ([`report`]: layouts,
//! streaming parse, exact sums; [`manifest`]: a manifest's report parts; [`anomaly`]:
//! anomalies per series and the month-end forecast), used by `tugboat cur summarize` and
//! `tugboat cur anomalies`. The
//! workflow itself (S3 trigger, DynamoDB replace, curated object, anomalies, forecast,
//! budgets, notifications) is not built yet, so this folder is not in the `workflows!` list.

pub mod anomaly;
pub mod manifest;
pub mod report;
