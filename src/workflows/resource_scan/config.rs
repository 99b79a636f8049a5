//! The `[resources]` section: where the scan keeps its findings, what it scans, how it judges
//! age, and the prices it estimates with.
//!
//! ```toml
//! [resources]
//! table = "tugboat-findings"   # the findings table (migrations/0005). Required.
//! account = "self"             # how findings name the scanned account
//! regions = ["eu-west-1"]      # default: [aws] region
//! unattached_days = 7          # a volume attached to nothing, created at least this long ago
//! snapshot_days = 90           # a snapshot at least this old
//! currency = "USD"
//!
//! [resources.prices]           # per month; each key given replaces the price table's
//! "ebs:gp3" = 0.0924           # per GiB-month of a volume type
//! "ebs-iops:io2" = 0.0715      # per provisioned IOPS-month
//! "snapshot" = 0.055           # per GiB-month of snapshot
//! "ipv4" = 3.65                # per public IPv4 address-month
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::{BadKey, parse_section};
use crate::workflows::Section;

pub const NAME: &str = "resources";

pub const SECTION: Section = Section {
    name: NAME,
    check: |value| parse(value).map(|_| ()),
};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSettings {
    pub table: String,
    #[serde(default = "default_account")]
    pub account: String,
    /// Empty: the service's own region.
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default = "default_unattached")]
    pub unattached_days: u64,
    #[serde(default = "default_snapshot")]
    pub snapshot_days: u64,
    #[serde(default = "default_currency")]
    pub currency: String,
    #[serde(default)]
    pub prices: BTreeMap<String, f64>,
}

fn default_account() -> String {
    "self".into()
}
fn default_unattached() -> u64 {
    7
}
fn default_snapshot() -> u64 {
    90
}
fn default_currency() -> String {
    "USD".into()
}

impl ResourceSettings {
    /// The regions to scan: the configured ones, else `own`.
    pub fn regions_or(&self, own: &str) -> Vec<String> {
        match self.regions.is_empty() {
            true => vec![own.to_string()],
            false => self.regions.clone(),
        }
    }
}

/// Whether `text` looks like an AWS region name (`eu-west-1`, `us-gov-east-1`).
pub fn is_region(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// Checks a route's `params.regions`, when given: at least one, each a region name.
pub fn check_param_regions(regions: Option<&Vec<String>>) -> Result<(), String> {
    let Some(regions) = regions else {
        return Ok(());
    };
    if regions.is_empty() {
        return Err("params.regions must name at least one region".into());
    }
    match regions.iter().find(|r| !is_region(r)) {
        Some(bad) => Err(format!("params.regions: {bad:?} is not a region name such as \"eu-west-1\"")),
        None => Ok(()),
    }
}

/// Parses and checks the section; errors name the key (`resources.snapshot_days`).
pub fn parse(value: &toml::Value) -> Result<ResourceSettings, BadKey> {
    let s: ResourceSettings = parse_section(NAME, value)?;
    let key = |field: &str| format!("{NAME}.{field}");
    if s.table.trim().is_empty() {
        return Err(BadKey::at(key("table"), "must not be empty".into()));
    }
    if s.account.trim().is_empty() {
        return Err(BadKey::at(key("account"), "must not be empty".into()));
    }
    for (i, r) in s.regions.iter().enumerate() {
        if !is_region(r) {
            return Err(BadKey::at(format!("{NAME}.regions[{i}]"), format!("{r:?} is not a region name such as \"eu-west-1\"")));
        }
    }
    if s.currency.len() != 3 || !s.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(BadKey::at(key("currency"), format!("must be a currency code such as \"USD\", got {:?}", s.currency)));
    }
    for (name, price) in &s.prices {
        if !super::prices::is_key(name) {
            return Err(BadKey::at(format!("{NAME}.prices.{name}"), format!("is not a price this scan uses; one of {}", super::prices::KEYS_HELP)));
        }
        if !price.is_finite() || *price < 0.0 {
            return Err(BadKey::at(format!("{NAME}.prices.{name}"), format!("must be 0 or more, got {price}")));
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<ResourceSettings, BadKey> {
        parse(&toml::from_str::<toml::Table>(text).unwrap()["resources"])
    }

    #[test]
    fn the_section_loads_with_defaults_and_wrong_shapes_name_the_key() {
        let s = parsed("[resources]\ntable = \"t\"").unwrap();
        assert_eq!((s.account.as_str(), s.unattached_days, s.snapshot_days, s.currency.as_str()), ("self", 7, 90, "USD"));
        assert_eq!(s.regions_or("eu-west-1"), vec!["eu-west-1"]);
        let s = parsed("[resources]\ntable = \"t\"\nregions = [\"us-east-1\", \"us-gov-west-1\"]\n[resources.prices]\n\"ebs:gp3\" = 0.1").unwrap();
        assert_eq!(s.regions_or("eu-west-1"), vec!["us-east-1", "us-gov-west-1"]);
        for (text, key) in [
            ("[resources]\naccount = \"x\"", "resources"),
            ("[resources]\ntable = \"\"", "resources.table"),
            ("[resources]\ntable = \"t\"\naccount = \" \"", "resources.account"),
            ("[resources]\ntable = \"t\"\nregions = [\"eu-west-1\", \"Mars\"]", "resources.regions[1]"),
            ("[resources]\ntable = \"t\"\nregions = \"eu-west-1\"", "resources.regions"),
            ("[resources]\ntable = \"t\"\nsnapshot_days = -1", "resources.snapshot_days"),
            ("[resources]\ntable = \"t\"\ncurrency = \"usd\"", "resources.currency"),
            ("[resources]\ntable = \"t\"\n[resources.prices]\n\"ebs:gp9\" = 1.0", "resources.prices.ebs:gp9"),
            ("[resources]\ntable = \"t\"\n[resources.prices]\nipv4 = -1.0", "resources.prices.ipv4"),
            ("[resources]\ntable = \"t\"\n[resources.prices]\nipv4 = \"cheap\"", "resources.prices.ipv4"),
            ("[resources]\ntable = \"t\"\ntabel = \"u\"", "resources.tabel"),
        ] {
            let BadKey { key: k, message: m } = parsed(text).unwrap_err();
            assert_eq!(k, key, "{text}: {m}");
        }
    }
}
