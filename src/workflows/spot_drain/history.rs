//! Interruption history: every `spot_drain` instance in the journal is one interruption. Counted
//! per pool (instance type and availability zone) and per hour of day (UTC), with a short
//! recommendation where one pool takes most of them. The console's `/interruptions` page (also
//! `/spot/history`), and `tugboat spot history`.
//!
//! EventBridge's spot warning names neither the instance type nor (in most regions) the zone;
//! `tugboat agent` sends both from the instance metadata. What no notice said is `unknown`.

use std::collections::BTreeMap;

use std::fmt::Write;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::html::esc;
use crate::workflows::Setup;
use crate::workflows::surface::{Page, PageInput};

use super::notice::{Kind, Notice};

/// The interruptions page.
pub struct InterruptionsPage;

impl Page for InterruptionsPage {
    type View = History;
    const TITLE: &'static str = "Interruptions";
    const PATH: &'static str = "/interruptions";
    const ALSO: &'static [&'static str] = &["/spot/history"];
    const SUBCOMMAND: &'static str = "history";
    const ABOUT: &'static str = "Interruptions per instance type, availability zone and hour of day (UTC), with a \
         recommendation where one pool dominates.";

    fn options() -> Vec<clap::Arg> {
        vec![
            clap::Arg::new("since")
                .long("since")
                .default_value("30d")
                .value_parser(|s: &str| {
                    humantime::parse_duration(s)
                        .map(|_| s.to_owned())
                        .map_err(|e| e.to_string())
                })
                .help("How far back: `30d`, `12h`, `90m`."),
        ]
    }

    fn build(_: Setup<'_>) -> InterruptionsPage {
        InterruptionsPage
    }

    fn view<'a>(&'a self, input: PageInput<'a>) -> BoxFuture<'a, Result<History, String>> {
        Box::pin(async move {
            let since_ms = since(input.query, input.now_ms)?;
            Ok(from_states(input.instances.iter().map(|i| i.state), since_ms))
        })
    }

    fn body(view: &History) -> String {
        view.body()
    }

    fn text(view: &History) -> String {
        view.text()
    }
}

/// The query's start: `since` (a duration back from now: `30d`) or `since_ms` (ms since the
/// epoch); all when neither is given.
fn since(query: &std::collections::BTreeMap<String, String>, now_ms: u64) -> Result<u64, String> {
    if let Some(back) = query.get("since").filter(|s| !s.is_empty()) {
        let back = humantime::parse_duration(back)
            .map_err(|e| format!("since must be a duration such as 30d or 12h, got {back:?}: {e}"))?;
        return Ok(now_ms.saturating_sub(back.as_millis().min(u64::MAX as u128) as u64));
    }
    match query.get("since_ms").filter(|s| !s.is_empty()) {
        Some(ms) => ms
            .parse()
            .map_err(|_| format!("since_ms must be ms since the epoch, got {ms:?}")),
        None => Ok(0),
    }
}

/// One interruption, as read from a journal record's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Interruption {
    pub notice: Notice,
}

impl Interruption {
    /// From a `spot_drain` record's state (`None` for another shape).
    pub fn from_state(state: &Value) -> Option<Interruption> {
        let notice: Notice = serde_json::from_value(state.get("notice")?.clone()).ok()?;
        Some(Interruption { notice })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    pub instance_type: String,
    pub zone: String,
    pub interruptions: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub since_ms: u64,
    /// Interruption warnings (spot, Fargate Spot) and other notices, counted apart.
    pub interruptions: u32,
    pub other_notices: u32,
    /// Most interrupted first.
    pub pools: Vec<Pool>,
    /// Interruptions per hour of day, UTC (index 0 = 00:00–00:59).
    pub by_hour: Vec<u32>,
    pub recommendation: Option<String>,
}

/// The history of the `spot_drain` records' states given (other shapes are passed over).
pub fn from_states<'a>(states: impl IntoIterator<Item = &'a Value>, since_ms: u64) -> History {
    let all: Vec<Interruption> = states
        .into_iter()
        .filter_map(Interruption::from_state)
        .collect();
    summarize(&all, since_ms)
}

/// The interruptions noticed at or after `since_ms`.
pub fn summarize(all: &[Interruption], since_ms: u64) -> History {
    let mut pools: BTreeMap<(String, String), u32> = BTreeMap::new();
    let mut by_hour = vec![0u32; 24];
    let (mut interruptions, mut other) = (0, 0);
    for i in all.iter().filter(|i| i.notice.noticed_ms >= since_ms) {
        let n = &i.notice;
        if !matches!(n.kind, Kind::SpotInterruption | Kind::FargateSpotTask) {
            other += 1;
            continue;
        }
        interruptions += 1;
        let key = (
            n.instance_type.clone().unwrap_or_else(|| "unknown".into()),
            n.zone.clone().unwrap_or_else(|| "unknown".into()),
        );
        *pools.entry(key).or_default() += 1;
        by_hour[((n.noticed_ms / 3_600_000) % 24) as usize] += 1;
    }
    let mut pools: Vec<Pool> = pools
        .into_iter()
        .map(|((instance_type, zone), interruptions)| Pool {
            instance_type,
            zone,
            interruptions,
        })
        .collect();
    pools.sort_by_key(|p| std::cmp::Reverse(p.interruptions));
    let recommendation = recommend(&pools, interruptions);
    History {
        since_ms,
        interruptions,
        other_notices: other,
        pools,
        by_hour,
        recommendation,
    }
}

/// Where one known pool has at least half of three or more interruptions.
fn recommend(pools: &[Pool], total: u32) -> Option<String> {
    let top = pools.first()?;
    if total < 3 || top.interruptions * 2 < total || top.instance_type == "unknown" {
        return None;
    }
    Some(format!(
        "{} in {}: {} of {} interruptions; diversify instance types or zones",
        top.instance_type, top.zone, top.interruptions, total
    ))
}

impl History {
    /// The console page's body.
    pub fn body(&self) -> String {
        let h = self;
        let mut body = String::from("<h1>Interruptions</h1>");
        let _ = write!(
            body,
            "<p class=\"meta\">{} interruption warning(s), {} other notice(s), from the <code>spot_drain</code> instances in the journal.</p>",
            h.interruptions, h.other_notices
        );
        if let Some(r) = &h.recommendation {
            let _ = write!(body, "<p class=\"notice\">{}</p>", esc(r));
        }
        body.push_str("<h2>Per instance type and zone</h2><table id=\"pools\"><thead><tr><th>instance type</th><th>zone</th><th>interruptions</th></tr></thead><tbody>");
        for p in &h.pools {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                esc(&p.instance_type),
                esc(&p.zone),
                p.interruptions
            );
        }
        body.push_str("</tbody></table><h2>Per hour of day (UTC)</h2>");
        let max = h.by_hour.iter().copied().max().unwrap_or(0).max(1) as f64;
        body.push_str("<svg class=\"chart\" viewBox=\"0 0 960 140\" role=\"img\" aria-label=\"interruptions per hour of day\">");
        for (hour, n) in h.by_hour.iter().enumerate() {
            let height = *n as f64 / max * 110.0;
            let _ = write!(
                body,
                "<rect class=\"s0\" x=\"{}\" y=\"{:.1}\" width=\"34\" height=\"{:.1}\"><title>{hour:02}:00 {n}</title></rect><text x=\"{}\" y=\"135\">{hour:02}</text>",
                hour * 40 + 3,
                115.0 - height,
                height,
                hour * 40 + 8
            );
        }
        body.push_str("</svg>");
        body
    }

    /// The text `tugboat spot history` prints.
    pub fn text(&self) -> String {
        let mut out = format!(
            "{} interruption(s), {} other notice(s)\n",
            self.interruptions, self.other_notices
        );
        if !self.pools.is_empty() {
            out.push_str("\ninstance type        zone              interruptions\n");
            for p in &self.pools {
                out.push_str(&format!(
                    "{:<20} {:<17} {}\n",
                    p.instance_type, p.zone, p.interruptions
                ));
            }
            out.push_str("\nhour (UTC)  interruptions\n");
            for (h, n) in self.by_hour.iter().enumerate().filter(|(_, n)| **n > 0) {
                out.push_str(&format!("{h:02}:00       {n}\n"));
            }
        }
        if let Some(r) = &self.recommendation {
            out.push_str(&format!("\n{r}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const DAY_MS: u64 = 86_400_000;

    #[test]
    fn since_is_a_duration_back_from_now_or_ms_since_the_epoch() {
        let q = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        let now = 40 * DAY_MS;
        assert_eq!(since(&q("since", "30d"), now), Ok(10 * DAY_MS));
        assert_eq!(since(&q("since_ms", "1234"), now), Ok(1234));
        assert_eq!(since(&BTreeMap::new(), now), Ok(0));
        // Longer ago than the epoch is everything.
        assert_eq!(since(&q("since", "100000d"), now), Ok(0));
        let e = since(&q("since", "a while"), now).unwrap_err();
        assert!(e.contains("since must be a duration"), "{e}");
        let e = since(&q("since_ms", "-1"), now).unwrap_err();
        assert!(e.contains("since_ms must be"), "{e}");
    }

    #[test]
    fn the_page_shows_hostile_pool_names_as_text() {
        let h = History {
            since_ms: 0,
            interruptions: 1,
            other_notices: 0,
            pools: vec![Pool {
                instance_type: "<script>alert(1)</script>".into(),
                zone: "\"><img src=x>".into(),
                interruptions: 1,
            }],
            by_hour: vec![0; 24],
            recommendation: Some("<b>x</b>".into()),
        };
        let body = h.body();
        assert!(
            !body.contains("<script>") && !body.contains("<img") && !body.contains("<b>"),
            "{body}"
        );
    }
}
