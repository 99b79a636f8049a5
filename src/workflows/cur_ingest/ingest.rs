//! The `ingest` step: read every part, replace each payer's period, write the curated
//! summary, judge the new days, forecast the month.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::Date;

use super::CurIngest;
use super::anomaly::{self, Series, Settings};
use super::report::{CSV_HEADER, Cost, Gunzip, Summary, csv_record, is_gzip};
use crate::contract::StepError;
use crate::ports::costs::{DailyCost, UnitRate};

/// The ingest step's result: what was read and, per payer and billing period, what was
/// written and found. (Fields default so that a console reading an older record still shows
/// what it has.)
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ingested {
    /// How many report files were read.
    pub parts: usize,
    pub line_items: u64,
    pub payers: Vec<PayerReport>,
    /// Unit rates kept for the resource scan (usage types it prices), and how many of them
    /// replaced the stored ones.
    pub rates: usize,
    pub rates_written: usize,
}

/// One payer's billing period, as one delivery left it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PayerReport {
    pub payer: String,
    /// `YYYY-MM`.
    pub period: String,
    /// Daily-cost rows written for the period.
    pub rows: usize,
    pub total: f64,
    /// The report's currency, or `mixed`.
    pub currency: String,
    /// The five costliest services.
    pub top_services: Vec<ServiceCost>,
    pub written: usize,
    pub deleted: usize,
    /// The curated summary's `s3://` address.
    pub curated: String,
    pub anomalies: Vec<AnomalyNotice>,
    /// The month's forecast per account.
    pub forecast: BTreeMap<String, f64>,
    pub budgets: Vec<BudgetNotice>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceCost {
    pub service: String,
    pub cost: f64,
}

/// An unusual day, as the anomaly topic publishes it (`"type": "anomaly"`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "anomaly")]
pub struct AnomalyNotice {
    pub payer: String,
    pub account: String,
    pub service: String,
    /// `YYYY-MM-DD`.
    pub day: String,
    pub cost: f64,
    pub expected: f64,
    pub impact: f64,
    pub impact_percent: Option<f64>,
}

/// A month whose forecast is above the account's budget (`"type": "budget"`), once per
/// account and month.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "budget")]
pub struct BudgetNotice {
    pub payer: String,
    pub account: String,
    pub period: String,
    pub forecast: f64,
    pub budget: f64,
    /// The last day the forecast knows.
    pub through: String,
}

/// Reads one part (gzip recognised by its first bytes) into `summary`.
fn read_part(input: &mut (dyn Read + Send), name: &str, summary: &mut Summary) -> Result<(), String> {
    let mut buffered = BufReader::with_capacity(256 * 1024, input);
    let head = buffered.fill_buf().map_err(|e| format!("{name}: {e}"))?;
    if is_gzip(head) {
        summary.add_report(Gunzip::new(buffered), name)?;
    } else {
        summary.add_report(buffered, name)?;
    }
    Ok(())
}

/// The month before `period` (`YYYY-MM`).
fn previous_period(period: &str) -> Option<String> {
    let day = anomaly::day(&format!("{period}-01")).ok()?;
    let before = day.previous_day()?;
    Some(format!("{:04}-{:02}", before.year(), u8::from(before.month())))
}

fn to_f64(cost: &str) -> f64 {
    cost.parse().unwrap_or(0.0)
}

pub(super) async fn run(w: &CurIngest, bucket: &str, parts: &[String]) -> Result<Ingested, StepError> {
    let settings = w
        .settings
        .as_ref()
        .ok_or_else(|| StepError::permanent("no [cur] section is configured"))?;
    // Parts are read one by one on the store's blocking thread; the sums stay small (at most
    // `max_keys`).
    let limits = settings.limits();
    let summary = Arc::new(Mutex::new(Summary {
        limits,
        ..Summary::default()
    }));
    for key in parts {
        let name = format!("s3://{bucket}/{key}");
        let into = summary.clone();
        let verdict = w
            .objects
            .read_with(
                bucket,
                key,
                Box::new(move |input| {
                    let mut part = Summary {
                        limits,
                        ..Summary::default()
                    };
                    read_part(input, &name, &mut part)?;
                    let mut all = into.lock().map_err(|_| "a part's reader panicked".to_string())?;
                    all.merge(part, &name)?;
                    Ok(json!({}))
                }),
            )
            .await?;
        verdict.map_err(StepError::permanent)?;
    }
    let summary = std::mem::take(&mut *summary.lock().map_err(|_| StepError::permanent("poisoned"))?);

    // Per payer and billing period.
    let mut groups: BTreeMap<(String, String), Vec<DailyCost>> = BTreeMap::new();
    for (k, cost) in &summary.totals {
        let row = DailyCost {
            day: k.day.clone(),
            payer: k.payer.clone(),
            account: k.account.clone(),
            service: k.service.clone(),
            region: k.region.clone(),
            currency: k.currency.clone(),
            cost: cost.to_string(),
        };
        groups
            .entry((row.payer.clone(), row.period().to_string()))
            .or_default()
            .push(row);
    }

    let judge = Settings {
        k: settings.anomaly_k,
        floor: settings.anomaly_floor,
        ..Settings::default()
    };
    let mut payers = Vec::new();
    for ((payer, period), rows) in groups {
        let before = match previous_period(&period) {
            Some(p) => w.costs.period(&settings.table, &payer, &p).await?,
            None => Vec::new(),
        };
        let replaced = w
            .costs
            .replace_period(&settings.table, &payer, &period, &rows)
            .await?;

        // The curated summary.
        let mut csv = format!("{CSV_HEADER}\n");
        for r in &rows {
            csv.push_str(&csv_record(&[
                &r.day, &r.payer, &r.account, &r.service, &r.region, &r.cost, &r.currency,
            ]));
        }
        let curated_bucket = settings.curated_bucket.as_deref().unwrap_or(bucket);
        let curated_key = format!("{}/{payer}/{period}/daily.csv", settings.curated_prefix.trim_end_matches('/'));
        w.objects
            .put(curated_bucket, &curated_key, csv.into_bytes(), "text/csv")
            .await?;

        // Series: the previous month from the table, this month from the report.
        let mut series = Series::new();
        for r in before.iter().chain(rows.iter()) {
            let Ok(day) = anomaly::day(&r.day) else { continue };
            *series
                .entry((r.account.clone(), r.service.clone()))
                .or_default()
                .entry(day)
                .or_default() += to_f64(&r.cost);
        }
        // The days this delivery adds: after the last day already stored (this month's, or
        // the previous month's); on a first delivery, only the latest day, not a month of
        // alerts about the past.
        let report_days: BTreeSet<Date> = rows.iter().filter_map(|r| anomaly::day(&r.day).ok()).collect();
        let known_last = replaced
            .previous_last_day
            .iter()
            .chain(before.iter().map(|r| &r.day))
            .filter_map(|d| anomaly::day(d).ok())
            .max();
        let new_days: Vec<Date> = match known_last {
            Some(last) => report_days.iter().copied().filter(|d| *d > last).collect(),
            None => report_days.iter().next_back().copied().into_iter().collect(),
        };
        let anomalies: Vec<AnomalyNotice> = anomaly::detect(&series, &judge, Some(&new_days))
            .into_iter()
            .map(|a| AnomalyNotice {
                payer: payer.clone(),
                account: a.account,
                service: a.service,
                day: a.day.to_string(),
                cost: a.cost,
                expected: a.expected,
                impact: a.impact,
                impact_percent: a.impact_percent,
            })
            .collect();

        // Forecast and budgets per account.
        let through = report_days.iter().next_back().copied();
        let mut daily: BTreeMap<String, BTreeMap<Date, f64>> = BTreeMap::new();
        for r in &rows {
            if let Ok(day) = anomaly::day(&r.day) {
                *daily.entry(r.account.clone()).or_default().entry(day).or_default() += to_f64(&r.cost);
            }
        }
        let mut forecast = BTreeMap::new();
        let mut budgets = Vec::new();
        if let Some(through) = through {
            for (account, days) in &daily {
                let f = anomaly::forecast_month(days, through);
                forecast.insert(account.clone(), f);
                // Once per account and month: the marker is set with the decision to alert.
                if let Some(&budget) = settings.budgets.get(account)
                    && f > budget
                    && w
                        .costs
                        .mark_once(&settings.table, &format!("BUDGET#{payer}#{account}#{period}"))
                        .await?
                {
                    budgets.push(BudgetNotice {
                        payer: payer.clone(),
                        account: account.clone(),
                        period: period.clone(),
                        forecast: f,
                        budget,
                        through: through.to_string(),
                    });
                }
            }
        }

        // Totals and the top services.
        let mut total = Cost::default();
        let mut by_service: BTreeMap<String, Cost> = BTreeMap::new();
        let mut currencies = BTreeSet::new();
        for r in &rows {
            let c = Cost::parse(&r.cost).unwrap_or_default();
            total += c;
            *by_service.entry(r.service.clone()).or_default() += c;
            currencies.insert(r.currency.clone());
        }
        let mut top: Vec<(String, Cost)> = by_service.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let top_services = top
            .into_iter()
            .take(5)
            .map(|(service, c)| ServiceCost {
                service,
                cost: to_f64(&c.to_string()),
            })
            .collect();
        let currency = if currencies.len() == 1 {
            currencies.into_iter().next().unwrap_or_default()
        } else {
            "mixed".into()
        };
        payers.push(PayerReport {
            rows: rows.len(),
            total: to_f64(&total.to_string()),
            currency,
            top_services,
            written: replaced.written,
            deleted: replaced.deleted,
            curated: format!("s3://{curated_bucket}/{curated_key}"),
            anomalies,
            forecast,
            budgets,
            payer,
            period,
        });
    }
    // The unit rates the resource scan prices with; after the costs, so that a crash
    // between repeats both (each write replaces).
    let rates: Vec<UnitRate> = summary
        .rates
        .iter()
        // A rate without a region cannot price anything a region holds.
        .filter(|(k, _)| !k.region.is_empty())
        .map(|(k, r)| UnitRate {
            region: k.region.clone(),
            usage_type: k.usage_type.clone(),
            rate: r.rate.to_string(),
            unit: r.unit.clone(),
            currency: k.currency.clone(),
            day: r.day.clone(),
        })
        .collect();
    let rates_written = w.costs.put_rates(&settings.table, &rates).await?;
    Ok(Ingested {
        parts: parts.len(),
        line_items: summary.rows,
        payers,
        rates: rates.len(),
        rates_written,
    })
}
