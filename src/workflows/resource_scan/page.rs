//! The console's findings page (`/findings`, and `tugboat resources findings`): the idle
//! resources the scans found, from `[resources] table` through the `FindingStore` port;
//! sortable, filtered by account and kind, with the monthly waste per account and in all.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::findings::cents;
use crate::html::{esc, select};
use crate::ports::resources::{Finding, FindingKind, FindingStore};
use crate::workflows::Setup;
use crate::workflows::surface::{Page, PageInput};

/// The findings page, built with the table it reads (`None` without a `[resources]` section).
pub struct FindingsPage {
    table: Option<String>,
    store: Arc<dyn FindingStore>,
}

/// The orders a view can be sorted in.
pub const SORTS: &[&str] = &["cost", "age", "size", "region", "kind", "resource"];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FindingsQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// One of [`SORTS`]; default `cost` (costliest first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountTotal {
    pub account: String,
    pub findings: usize,
    pub monthly_cost: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FindingsView {
    /// Where the findings are read from; `None` when `resource_scan` is not set up.
    pub table: Option<String>,
    pub findings: Vec<Finding>,
    /// Every account in the table, with what the shown kind filter leaves of it.
    pub accounts: Vec<AccountTotal>,
    pub monthly_cost: f64,
    pub currency: Option<String>,
    pub query: FindingsQuery,
    pub error: Option<String>,
}

impl Page for FindingsPage {
    type View = FindingsView;
    const TITLE: &'static str = "Idle resources";
    const PATH: &'static str = "/findings";
    const SUBCOMMAND: &'static str = "findings";
    const ABOUT: &'static str = "The idle resources the scans found, with their monthly cost \
         (from the running service, or from `[resources] table`).";

    fn options() -> Vec<clap::Arg> {
        vec![
            clap::Arg::new("account").long("account").help("Only this account's findings."),
            clap::Arg::new("kind")
                .long("kind")
                .help(format!("Only this kind: {}.", FindingKind::names())),
            clap::Arg::new("sort")
                .long("sort")
                .help("cost (default: costliest first), age, size, region, kind or resource."),
        ]
    }

    fn build(setup: Setup<'_>) -> FindingsPage {
        FindingsPage {
            table: setup
                .config
                .sections
                .get(super::config::NAME)
                .and_then(|v| super::config::parse(v).ok())
                .map(|s| s.table),
            store: setup.ports.findings.clone(),
        }
    }

    fn view<'a>(&'a self, input: PageInput<'a>) -> BoxFuture<'a, Result<FindingsView, String>> {
        Box::pin(self.findings(input))
    }

    fn body(view: &FindingsView) -> String {
        body(view)
    }

    fn text(view: &FindingsView) -> String {
        text(view)
    }
}

/// The query, checked: a wrong value is a bad request naming it.
fn query(input: &PageInput<'_>) -> Result<FindingsQuery, String> {
    let q = FindingsQuery {
        account: input.query.get("account").filter(|a| !a.is_empty()).cloned(),
        kind: input.query.get("kind").filter(|k| !k.is_empty()).cloned(),
        sort: input.query.get("sort").filter(|s| !s.is_empty()).cloned(),
    };
    if let Some(k) = &q.kind
        && FindingKind::parse(k).is_none()
    {
        return Err(format!("kind {k:?} is not one of {}", FindingKind::names()));
    }
    if let Some(s) = &q.sort
        && !SORTS.contains(&s.as_str())
    {
        return Err(format!("sort {s:?} is not one of {}", SORTS.join(", ")));
    }
    Ok(q)
}

/// Sorts `findings` as `sort` says: costliest, oldest, largest first; names in order.
pub fn sort(findings: &mut [Finding], sort: &str) {
    findings.sort_by(|a, b| {
        let cost = b.monthly_cost.total_cmp(&a.monthly_cost);
        match sort {
            "age" => b.age_days.cmp(&a.age_days).then(cost),
            "size" => b.size_gib.cmp(&a.size_gib).then(cost),
            "region" => a.region.cmp(&b.region).then(cost),
            "kind" => a.kind.cmp(&b.kind).then(cost),
            "resource" => a.resource.cmp(&b.resource),
            _ => cost.then_with(|| a.resource.cmp(&b.resource)),
        }
    });
}

impl FindingsPage {
    async fn findings(&self, input: PageInput<'_>) -> Result<FindingsView, String> {
        let query = query(&input)?;
        let mut view = FindingsView {
            table: self.table.clone(),
            query: query.clone(),
            ..FindingsView::default()
        };
        let Some(table) = &self.table else {
            return Ok(view);
        };
        let all = match self.store.all(table).await {
            Ok(all) => all,
            Err(e) => {
                view.error = Some(e.message);
                return Ok(view);
            }
        };
        let kind = query.kind.as_deref().and_then(FindingKind::parse);
        let mut accounts: BTreeMap<String, AccountTotal> = BTreeMap::new();
        for f in &all {
            let a = accounts.entry(f.account.clone()).or_insert_with(|| AccountTotal {
                account: f.account.clone(),
                ..AccountTotal::default()
            });
            if kind.is_none_or(|k| k == f.kind) {
                a.findings += 1;
                a.monthly_cost = cents(a.monthly_cost + f.monthly_cost);
            }
        }
        view.accounts = accounts.into_values().collect();
        view.currency = all.first().map(|f| f.currency.clone());
        view.findings = all
            .into_iter()
            .filter(|f| kind.is_none_or(|k| k == f.kind))
            .filter(|f| query.account.as_ref().is_none_or(|a| *a == f.account))
            .collect();
        sort(&mut view.findings, query.sort.as_deref().unwrap_or("cost"));
        view.monthly_cost = cents(view.findings.iter().map(|f| f.monthly_cost).sum());
        Ok(view)
    }
}

fn body(view: &FindingsView) -> String {
    let mut html = String::new();
    let Some(table) = &view.table else {
        return "<p>No <code>[resources]</code> section is configured: the resource scan is off.</p>".into();
    };
    if let Some(e) = &view.error {
        let _ = write!(html, "<p class=\"error\">Reading {}: {}</p>", esc(table), esc(e));
    }
    let currency = view.currency.as_deref().unwrap_or("");
    let _ = write!(
        html,
        "<p><strong>{:.2} {}</strong> a month in {} finding(s) shown (table {}).</p>",
        view.monthly_cost,
        esc(currency),
        view.findings.len(),
        esc(table)
    );
    html.push_str("<table><thead><tr><th>account</th><th>findings</th><th>a month</th></tr></thead><tbody>");
    for a in &view.accounts {
        let _ = write!(
            html,
            "<tr><td><a href=\"?account={}\">{}</a></td><td>{}</td><td>{:.2}</td></tr>",
            esc(&a.account),
            esc(&a.account),
            a.findings,
            a.monthly_cost
        );
    }
    html.push_str("</tbody></table>");
    let accounts: Vec<String> = view.accounts.iter().map(|a| a.account.clone()).collect();
    let kinds: Vec<String> = FindingKind::ALL.map(|k| k.as_str().to_string()).to_vec();
    html.push_str("<form method=\"get\">");
    html.push_str(&select("account", "account", view.query.account.as_deref(), &accounts));
    html.push_str(&select("kind", "kind", view.query.kind.as_deref(), &kinds));
    if let Some(s) = &view.query.sort {
        let _ = write!(html, "<input type=\"hidden\" name=\"sort\" value=\"{}\">", esc(s));
    }
    html.push_str("<button type=\"submit\">show</button></form>");
    // Each column heading sorts by it, keeping the filters.
    let keep = |sort: &str| {
        let mut q = view.query.clone();
        q.sort = Some(sort.to_string());
        serde_urlencoded::to_string(&q).unwrap_or_default()
    };
    html.push_str("<table id=\"findings\"><thead><tr>");
    for (label, sort) in [
        ("a month", "cost"),
        ("kind", "kind"),
        ("region", "region"),
        ("resource", "resource"),
        ("size (GiB)", "size"),
        ("age (days)", "age"),
    ] {
        let _ = write!(html, "<th><a href=\"?{}\">{}</a></th>", esc(&keep(sort)), esc(label));
    }
    html.push_str("<th>account</th><th>what</th><th>price</th></tr></thead><tbody>");
    for f in &view.findings {
        let opt = |v: Option<u64>| v.map_or_else(String::new, |v| v.to_string());
        let name = f.name.as_deref().map_or_else(String::new, |n| format!(" ({})", esc(n)));
        let _ = write!(
            html,
            "<tr><td>{:.2}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            f.monthly_cost,
            esc(f.kind.as_str()),
            esc(&f.region),
            esc(&f.resource),
            name,
            opt(f.size_gib.map(u64::from)),
            opt(f.age_days),
            esc(&f.account),
            esc(&f.detail),
            esc(&f.price)
        );
    }
    html.push_str("</tbody></table>");
    html
}

fn text(view: &FindingsView) -> String {
    let Some(table) = &view.table else {
        return "no [resources] section is configured: the resource scan is off\n".into();
    };
    let mut out = String::new();
    if let Some(e) = &view.error {
        let _ = writeln!(out, "reading {table}: {e}");
    }
    for f in &view.findings {
        let _ = writeln!(out, "{}", super::operation::line(f));
    }
    for a in &view.accounts {
        let _ = writeln!(out, "account {}: {} finding(s), {:.2} a month", a.account, a.findings, a.monthly_cost);
    }
    let _ = writeln!(
        out,
        "{} finding(s), {:.2} {} a month",
        view.findings.len(),
        view.monthly_cost,
        view.currency.as_deref().unwrap_or("")
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::memory::MemoryFindings;

    fn finding(account: &str, kind: FindingKind, resource: &str, cost: f64, age: u64) -> Finding {
        Finding {
            account: account.into(),
            region: "eu-west-1".into(),
            kind,
            resource: resource.into(),
            detail: "<script>".into(),
            size_gib: Some(10),
            age_days: Some(age),
            monthly_cost: cost,
            currency: "USD".into(),
            price: "price table".into(),
            name: None,
        }
    }

    async fn page() -> FindingsPage {
        let store = MemoryFindings::default();
        store
            .replace("f", "111", "eu-west-1", &[
                finding("111", FindingKind::UnattachedVolume, "vol-a", 8.0, 3),
                finding("111", FindingKind::UnassociatedAddress, "eipalloc-a", 3.65, 0),
            ])
            .await
            .unwrap();
        store
            .replace("f", "222", "eu-west-1", &[finding("222", FindingKind::UnattachedVolume, "vol-b", 1.0, 90)])
            .await
            .unwrap();
        FindingsPage { table: Some("f".into()), store: Arc::new(store) }
    }

    async fn view(page: &FindingsPage, q: &[(&str, &str)]) -> Result<FindingsView, String> {
        let query: BTreeMap<String, String> = q.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        page.findings(PageInput { instances: vec![], query: &query, now_ms: 0 }).await
    }

    #[tokio::test]
    async fn findings_are_sorted_filtered_and_totalled_per_account() {
        let page = page().await;
        let v = view(&page, &[]).await.unwrap();
        let order: Vec<&str> = v.findings.iter().map(|f| f.resource.as_str()).collect();
        assert_eq!(order, ["vol-a", "eipalloc-a", "vol-b"]);
        assert_eq!(v.monthly_cost, 12.65);
        assert_eq!(v.accounts, vec![
            AccountTotal { account: "111".into(), findings: 2, monthly_cost: 11.65 },
            AccountTotal { account: "222".into(), findings: 1, monthly_cost: 1.0 },
        ]);
        let v = view(&page, &[("sort", "age")]).await.unwrap();
        assert_eq!(v.findings[0].resource, "vol-b");
        let v = view(&page, &[("account", "111"), ("kind", "unattached-volume")]).await.unwrap();
        assert_eq!(v.findings.len(), 1);
        assert_eq!(v.monthly_cost, 8.0);
        assert!(view(&page, &[("sort", "price; DROP")]).await.unwrap_err().contains("sort"));
        assert!(view(&page, &[("kind", "volume")]).await.unwrap_err().contains("kind"));
        // Every value escaped; the text names the total.
        let html = body(&view(&page, &[]).await.unwrap());
        assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"), "{html}");
        assert!(text(&view(&page, &[]).await.unwrap()).ends_with("3 finding(s), 12.65 USD a month\n"));
        let off = FindingsPage { table: None, store: page.store.clone() };
        assert!(text(&view(&off, &[]).await.unwrap()).contains("resource scan is off"));
    }
}
