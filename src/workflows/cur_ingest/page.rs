//! The console's costs page (`/costs`, and `tugboat cur costs`): the daily costs the ingests
//! wrote for a billing period, stacked by service, and the anomalies they raised. Read from
//! `[cur] table` through the `CostStore` port, for the (period, payer) pairs the instances'
//! outputs name.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::ingest::{AnomalyNotice, Ingested};
use crate::contract::output;
use crate::html::{esc, select};
use crate::ports::costs::CostStore;
use crate::workflows::Setup;
use crate::workflows::surface::{Page, PageInput};

/// The costs page, built with the table it reads (`None` without a `[cur]` section).
pub struct CostsPage {
    table: Option<String>,
    store: Arc<dyn CostStore>,
}

impl Page for CostsPage {
    type View = CostsView;
    const TITLE: &'static str = "Costs";
    const PATH: &'static str = "/costs";
    const SUBCOMMAND: &'static str = "costs";
    const ABOUT: &'static str = "The daily costs ingested for a billing period, per service, and the anomalies found \
         (from the running service, or from the journal and `[cur] table`).";

    fn options() -> Vec<clap::Arg> {
        vec![
            clap::Arg::new("period")
                .long("period")
                .value_name("YYYY-MM")
                .help("The billing period; default: the latest ingested."),
            clap::Arg::new("account")
                .long("account")
                .help("Only this account's costs."),
        ]
    }

    fn build(setup: Setup<'_>) -> CostsPage {
        CostsPage {
            table: setup
                .config
                .sections
                .get(super::config::NAME)
                .and_then(|v| super::config::parse(v).ok())
                .map(|s| s.table),
            store: setup.ports.costs.clone(),
        }
    }

    fn view<'a>(&'a self, input: PageInput<'a>) -> BoxFuture<'a, Result<CostsView, String>> {
        Box::pin(self.costs(input))
    }

    fn body(view: &CostsView) -> String {
        body(view)
    }

    fn text(view: &CostsView) -> String {
        text(view)
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct CostsQuery {
    /// Only this account's costs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// This billing period (`YYYY-MM`); default: the latest ingested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Day {
    pub day: String,
    pub total: f64,
    /// Cost per service that day, in the order of `CostsView::services`.
    pub services: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CostsView {
    /// Where the costs are read from (`[cur] table`); `None` when `cur_ingest` is not set up.
    pub table: Option<String>,
    pub periods: Vec<String>,
    pub period: Option<String>,
    pub accounts: Vec<String>,
    pub currency: Option<String>,
    /// Most expensive first.
    pub services: Vec<String>,
    pub days: Vec<Day>,
    pub total: f64,
    /// The anomalies the ingests found (newest ingest first), as they were published.
    pub anomalies: Vec<AnomalyNotice>,
    pub query: CostsQuery,
    pub error: Option<String>,
}

/// Services shown apart in the chart; the rest are summed as "other".
const SERVICES_SHOWN: usize = 8;

impl CostsPage {
    async fn costs(&self, input: PageInput<'_>) -> Result<CostsView, String> {
    let query = CostsQuery {
        account: input.query.get("account").cloned(),
        period: input.query.get("period").cloned(),
    };
    let mut view = CostsView {
        table: self.table.clone(),
        periods: vec![],
        period: None,
        accounts: vec![],
        currency: None,
        services: vec![],
        days: vec![],
        total: 0.0,
        anomalies: vec![],
        query: query.clone(),
        error: None,
    };
    let Some(table) = &self.table else {
        return Ok(view);
    };
    // (period, payer) pairs the ingests wrote, and their anomalies.
    let mut payers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &input.instances {
        // An ignored object's output has no `ingested`; one that does not read is skipped.
        let Some(Ok(ingested)) = r
            .output
            .and_then(|o| o.get("ingested"))
            .map(|i| output::<Ingested>(i.clone()))
        else {
            continue;
        };
        for p in ingested.payers {
            if p.payer.is_empty() || p.period.is_empty() {
                continue;
            }
            payers.entry(p.period).or_default().insert(p.payer);
            view.anomalies.extend(p.anomalies);
        }
    }
    view.periods = payers.keys().rev().cloned().collect();
    let period = match &query.period {
        Some(p) if !p.is_empty() => p.clone(),
        _ => match view.periods.first() {
            Some(p) => p.clone(),
            None => return Ok(view),
        },
    };
    let mut rows = Vec::new();
    for payer in payers.get(&period).into_iter().flatten() {
        match self.store.period(table, payer, &period).await {
            Ok(r) => rows.extend(r),
            Err(e) => view.error = Some(format!("{table}: {}", e.message)),
        }
    }
    view.accounts = rows
        .iter()
        .map(|r| r.account.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let account = query.account.as_deref().filter(|a| !a.is_empty());
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| account.is_none_or(|a| a == r.account))
        .collect();
    view.currency = rows.first().map(|r| r.currency.clone());
    let mut per_service: HashMap<&str, f64> = HashMap::new();
    let mut per_day: BTreeMap<&str, HashMap<&str, f64>> = BTreeMap::new();
    for r in &rows {
        let cost: f64 = r.cost.parse().unwrap_or(0.0);
        *per_service.entry(&r.service).or_default() += cost;
        *per_day
            .entry(&r.day)
            .or_default()
            .entry(&r.service)
            .or_default() += cost;
    }
    let mut services: Vec<(&str, f64)> = per_service.into_iter().collect();
    services.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let shown: Vec<&str> = services.iter().take(SERVICES_SHOWN).map(|s| s.0).collect();
    let other = services.len() > SERVICES_SHOWN;
    view.services = shown.iter().map(|s| s.to_string()).collect();
    if other {
        view.services.push("other".into());
    }
    for (day, by_service) in per_day {
        let mut values: Vec<f64> = shown
            .iter()
            .map(|s| by_service.get(s).copied().unwrap_or(0.0))
            .collect();
        if other {
            values.push(
                by_service
                    .iter()
                    .filter(|(s, _)| !shown.contains(s))
                    .map(|(_, c)| c)
                    .sum(),
            );
        }
        let total = values.iter().sum();
        view.total += total;
        view.days.push(Day {
            day: day.to_owned(),
            total,
            services: values,
        });
    }
    view.anomalies
        .retain(|a| account.is_none_or(|acc| a.account == acc) && a.day.starts_with(&period));
    view.period = Some(period);
    Ok(view)
}
}

fn body(v: &CostsView) -> String {
    let mut body = String::from("<h1>Costs</h1>");
    let Some(table) = &v.table else {
        body.push_str("<p class=\"empty\">No <code>[cur]</code> section: <code>cur_ingest</code> is not set up, so there are no costs to show.</p>");
        return body;
    };
    if let Some(e) = &v.error {
        let _ = write!(body, "<p class=\"error\">{}</p>", esc(e));
    }
    let Some(period) = &v.period else {
        let _ = write!(
            body,
            "<p class=\"empty\">No cost report has been ingested into <code>{}</code> yet.</p>",
            esc(table)
        );
        return body;
    };
    let _ = write!(
        body,
        "<form class=\"filters\" method=\"get\" action=\"/costs\">{}{}<button type=\"submit\">Show</button></form>",
        select("period", "period", Some(period), &v.periods),
        select(
            "account",
            "account",
            v.query.account.as_deref(),
            &v.accounts
        ),
    );
    let currency = esc(v.currency.as_deref().unwrap_or(""));
    let _ = write!(
        body,
        "<p class=\"meta\">{period}: <b id=\"total\">{:.2}</b> {currency} over {} day(s), from <code>{}</code>.</p>",
        v.total,
        v.days.len(),
        esc(table),
        period = esc(period),
    );
    // Daily cost, stacked by service.
    let max = v
        .days
        .iter()
        .map(|d| d.total)
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let width = 960.0 / v.days.len().max(1) as f64;
    body.push_str("<svg class=\"chart\" id=\"daily\" viewBox=\"0 0 960 220\" role=\"img\" aria-label=\"daily cost by service\">");
    for (i, d) in v.days.iter().enumerate() {
        let mut y = 200.0;
        for (j, cost) in d.services.iter().enumerate() {
            if *cost <= 0.0 {
                continue;
            }
            let h = cost / max * 190.0;
            y -= h;
            let _ = write!(
                body,
                "<rect class=\"s{}\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\"><title>{} {}: {cost:.2}</title></rect>",
                j % 9,
                i as f64 * width + 1.0,
                (width - 2.0).max(1.0),
                esc(&d.day),
                esc(&v.services[j]),
            );
        }
        let _ = write!(
            body,
            "<rect class=\"hit\" x=\"{:.1}\" y=\"0\" width=\"{width:.1}\" height=\"200\"><title>{}: {:.2}</title></rect>",
            i as f64 * width,
            esc(&d.day),
            d.total
        );
        // The day of the month under its bar.
        let _ = write!(
            body,
            "<text x=\"{:.1}\" y=\"215\">{}</text>",
            i as f64 * width + width / 2.0 - 6.0,
            esc(d.day.get(8..10).unwrap_or(&d.day))
        );
    }
    let _ = write!(body, "<text x=\"4\" y=\"12\">{max:.2} {currency}</text>");
    body.push_str("</svg><ul class=\"legend\">");
    for (j, s) in v.services.iter().enumerate() {
        let _ = write!(
            body,
            "<li><svg viewBox=\"0 0 10 10\" class=\"swatch\"><rect class=\"s{}\" width=\"10\" height=\"10\"/></svg>{}</li>",
            j % 9,
            esc(s)
        );
    }
    body.push_str("</ul><h2>Anomalies</h2>");
    if v.anomalies.is_empty() {
        body.push_str("<p class=\"empty\">None found.</p>");
    } else {
        body.push_str("<table id=\"anomalies\"><thead><tr><th>day</th><th>account</th><th>service</th><th>cost</th><th>expected</th><th>impact</th></tr></thead><tbody>");
        for a in &v.anomalies {
            let percent = a
                .impact_percent
                .map(|n| format!("{n:.2}"))
                .unwrap_or_default();
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{:.2}</td><td class=\"num\">{:.2}</td><td class=\"num\">{:.2} ({percent}%)</td></tr>",
                esc(&a.day),
                esc(&a.account),
                esc(&a.service),
                a.cost,
                a.expected,
                a.impact,
            );
        }
        body.push_str("</tbody></table>");
    }
    body
}


/// What `tugboat cur costs` prints: the period's total, each day's, and the anomalies.
fn text(v: &CostsView) -> String {
    let Some(table) = &v.table else {
        return "no [cur] section: cur_ingest is not set up\n".into();
    };
    let mut out = String::new();
    if let Some(e) = &v.error {
        let _ = writeln!(out, "error: {e}");
    }
    let Some(period) = &v.period else {
        let _ = writeln!(out, "no cost report has been ingested into {table} yet");
        return out;
    };
    let currency = v.currency.as_deref().unwrap_or("");
    let _ = writeln!(
        out,
        "{period}: {:.2} {currency} over {} day(s), from {table}",
        v.total,
        v.days.len()
    );
    if !v.days.is_empty() {
        let _ = writeln!(out, "\nday         total");
        for d in &v.days {
            let _ = writeln!(out, "{:<11} {:.2}", d.day, d.total);
        }
    }
    if !v.anomalies.is_empty() {
        let _ = writeln!(out, "\nanomalies");
        for a in &v.anomalies {
            let _ = writeln!(
                out,
                "{} {} {}: {:.2} (expected {:.2})",
                a.day, a.account, a.service, a.cost, a.expected
            );
        }
    }
    out
}
