//! Interruption history: every `spot_drain` instance in the journal is one interruption. Counted
//! per pool (instance type and availability zone) and per hour of day (UTC), with a short
//! recommendation where one pool takes most of them. Served by `tugboat spot history` and the
//! admin listener's `/spot/history`.
//!
//! EventBridge's spot warning names neither the instance type nor (in most regions) the zone;
//! `tugboat agent` sends both from the instance metadata. What no notice said is `unknown`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::notice::{Kind, Notice};

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
