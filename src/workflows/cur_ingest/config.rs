//! The `[cur]` section: where the cost workflow writes, and how it judges.
//!
//! ```toml
//! [cur]
//! table = "tugboat-daily-cost"   # the daily-cost table (migrations/0002). Required.
//! curated_prefix = "curated"     # curated/<payer>/<period>/daily.csv in the report's bucket
//! curated_bucket = "my-bucket"   # default: the report's own bucket
//! anomaly_k = 3.0                # spreads above the median that count as unusual
//! anomaly_floor = 10.0           # the smallest excess worth an alert, in the report's currency
//!
//! max_row_bytes = 1048576        # the longest row read; default 1 MiB
//! max_report_bytes = 68719476736 # the most one report may inflate to; default 64 GiB
//! max_keys = 1000000             # the most distinct daily sums a delivery may hold
//!
//! [cur.budgets]                  # monthly budget per account: a forecast above it alerts
//! "111122223333" = 1000.0
//! ```

use crate::config::BadKey;
use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::parse_section;
use crate::workflows::Section;

pub const NAME: &str = "cur";

pub const SECTION: Section = Section {
    name: NAME,
    check: |value| parse(value).map(|_| ()),
};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurSettings {
    pub table: String,
    #[serde(default = "default_prefix")]
    pub curated_prefix: String,
    #[serde(default)]
    pub curated_bucket: Option<String>,
    #[serde(default = "default_k")]
    pub anomaly_k: f64,
    #[serde(default = "default_floor")]
    pub anomaly_floor: f64,
    #[serde(default)]
    pub budgets: BTreeMap<String, f64>,
    /// A report is input from a bucket: each bound, reached, is a permanent error naming it.
    #[serde(default = "default_max_row")]
    pub max_row_bytes: usize,
    #[serde(default = "default_max_report")]
    pub max_report_bytes: u64,
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

impl CurSettings {
    pub fn limits(&self) -> super::report::Limits {
        super::report::Limits {
            max_row_bytes: self.max_row_bytes,
            max_report_bytes: self.max_report_bytes,
            max_keys: self.max_keys,
        }
    }
}

fn default_max_row() -> usize {
    super::report::Limits::default().max_row_bytes
}
fn default_max_report() -> u64 {
    super::report::Limits::default().max_report_bytes
}
fn default_max_keys() -> usize {
    super::report::Limits::default().max_keys
}

fn default_prefix() -> String {
    "curated".into()
}
fn default_k() -> f64 {
    3.0
}
fn default_floor() -> f64 {
    10.0
}

/// Parses and checks the section; errors name the key (`cur.anomaly_k`).
pub fn parse(value: &toml::Value) -> Result<CurSettings, BadKey> {
    let s: CurSettings = parse_section(NAME, value)?;
    let key = |field: &str| format!("{NAME}.{field}");
    if s.table.trim().is_empty() {
        return Err(BadKey::at(key("table"), "must not be empty".into()));
    }
    if s.curated_prefix.starts_with('/') || s.curated_prefix.is_empty() {
        return Err(BadKey::at(key("curated_prefix"), "must be a key prefix such as \"curated\"".into()));
    }
    if !s.anomaly_k.is_finite() || s.anomaly_k <= 0.0 {
        return Err(BadKey::at(key("anomaly_k"), format!("must be above 0, got {}", s.anomaly_k)));
    }
    if !s.anomaly_floor.is_finite() || s.anomaly_floor < 0.0 {
        return Err(BadKey::at(key("anomaly_floor"), format!("must be 0 or more, got {}", s.anomaly_floor)));
    }
    if !(64 << 10..=1 << 30).contains(&s.max_row_bytes) {
        return Err(BadKey::at(key("max_row_bytes"), format!("must be 64 KiB to 1 GiB, got {}", s.max_row_bytes)));
    }
    if s.max_report_bytes < 1 << 20 {
        return Err(BadKey::at(key("max_report_bytes"), format!("must be at least 1 MiB, got {}", s.max_report_bytes)));
    }
    if s.max_keys == 0 {
        return Err(BadKey::at(key("max_keys"), "must be at least 1".into()));
    }
    for (account, budget) in &s.budgets {
        if !budget.is_finite() || *budget <= 0.0 {
            return Err(BadKey::at(format!("{NAME}.budgets.{account}"), format!("must be above 0, got {budget}")));
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<CurSettings, BadKey> {
        parse(&toml::from_str::<toml::Table>(text).unwrap()["cur"])
    }

    #[test]
    fn the_section_loads_with_defaults_and_wrong_shapes_name_the_key() {
        let s = parsed("[cur]\ntable = \"t\"").unwrap();
        assert_eq!((s.curated_prefix.as_str(), s.anomaly_k, s.anomaly_floor), ("curated", 3.0, 10.0));
        for (text, key) in [
            ("[cur]\ncurated_prefix = \"x\"", "cur"),
            ("[cur]\ntable = \"\"", "cur.table"),
            ("[cur]\ntable = \"t\"\ncurated_prefix = \"/x\"", "cur.curated_prefix"),
            ("[cur]\ntable = \"t\"\nanomaly_k = 0", "cur.anomaly_k"),
            ("[cur]\ntable = \"t\"\nanomaly_k = \"3\"", "cur.anomaly_k"),
            ("[cur]\ntable = \"t\"\nanomaly_floor = -1", "cur.anomaly_floor"),
            ("[cur]\ntable = \"t\"\n[cur.budgets]\n\"111\" = -5", "cur.budgets.111"),
            ("[cur]\ntable = \"t\"\ntabel = \"u\"", "cur.tabel"),
        ] {
            let BadKey { key: k, message: m } = parsed(text).unwrap_err();
            assert_eq!(k, key, "{text}: {m}");
        }
    }
}
