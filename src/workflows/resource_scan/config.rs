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
//! low_cpu_days = 14            # a running instance whose daily average CPU stayed below
//! low_cpu_percent = 5.0        #   this percentage for this many days (CloudWatch)
//! idle_database_days = 7       # a DB instance with no connection for this many days
//! currency = "USD"
//! rates_table = "tugboat-costs" # unit rates your cost reports billed, kept by cur_ingest;
//!                              #   default: [cur] table when configured; "" for none
//!
//! [[resources.accounts]]       # other accounts, reached by assuming a role there
//! name = "prod"                # how findings, reports and routes' `account` name it
//! role_arn = "arn:aws:iam::222222222222:role/tugboat-resources"
//! external_id = "…"            # if the role's trust policy asks for one
//! regions = ["eu-west-1"]      # default: resources.regions
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
use crate::ports::resources::AccountRole;
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
    #[serde(default = "default_low_cpu_days")]
    pub low_cpu_days: u64,
    #[serde(default = "default_low_cpu_percent")]
    pub low_cpu_percent: f64,
    #[serde(default = "default_idle_database_days")]
    pub idle_database_days: u64,
    #[serde(default = "default_currency")]
    pub currency: String,
    #[serde(default)]
    pub prices: BTreeMap<String, f64>,
    #[serde(default)]
    pub accounts: Vec<AccountSettings>,
    /// The table `cur_ingest` keeps the reports' unit rates in (`None` before
    /// [`ResourceSettings::rates_from`]; `Some("")`: none).
    #[serde(default)]
    pub rates_table: Option<String>,
}

/// Another account (`[[resources.accounts]]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSettings {
    pub name: String,
    pub role_arn: String,
    #[serde(default)]
    pub external_id: Option<String>,
    /// Empty: `[resources] regions`.
    #[serde(default)]
    pub regions: Vec<String>,
}

/// Where a run acts: the service's own account, or another through its role.
#[derive(Debug, Clone, PartialEq)]
pub struct Reach {
    /// How findings and reports name the account.
    pub account: String,
    pub role: Option<AccountRole>,
    pub regions: Vec<String>,
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
fn default_low_cpu_days() -> u64 {
    14
}
fn default_low_cpu_percent() -> f64 {
    5.0
}
fn default_idle_database_days() -> u64 {
    7
}
fn default_currency() -> String {
    "USD".into()
}

impl ResourceSettings {
    /// Takes `rates_table` from the `[cur]` section's `table` where the section does not say.
    pub fn rates_from(mut self, sections: &BTreeMap<String, toml::Value>) -> ResourceSettings {
        if self.rates_table.is_none() {
            self.rates_table = sections.get("cur").and_then(|c| c.get("table")).and_then(|t| t.as_str()).map(str::to_string);
        }
        self
    }

    /// The table to read report rates from, if any.
    pub fn rates_table(&self) -> Option<&str> {
        self.rates_table.as_deref().filter(|t| !t.is_empty())
    }

    /// The regions to scan: the configured ones, else `own`.
    pub fn regions_or(&self, own: &str) -> Vec<String> {
        match self.regions.is_empty() {
            true => vec![own.to_string()],
            false => self.regions.clone(),
        }
    }

    /// The `[[resources.accounts]]` entry a route's `account` names: `None` for the service's
    /// own account (no name, or `resources.account`'s); an error naming the configured ones
    /// for any other name.
    pub fn other_account(&self, name: Option<&str>) -> Result<Option<&AccountSettings>, String> {
        let Some(name) = name.filter(|n| *n != self.account) else { return Ok(None) };
        match self.accounts.iter().find(|a| a.name == name) {
            Some(a) => Ok(Some(a)),
            None => {
                let mut known: Vec<&str> = vec![self.account.as_str()];
                known.extend(self.accounts.iter().map(|a| a.name.as_str()));
                Err(format!("params.account: {name:?} is not a configured account; one of {}", known.join(", ")))
            }
        }
    }

    /// The account a route's `account` names (`None`: the service's own), with its role and
    /// default regions (`own_region` when nothing names any).
    pub fn reach(&self, account: Option<&str>, own_region: &str) -> Result<Reach, String> {
        let regions = self.regions_or(own_region);
        Ok(match self.other_account(account)? {
            None => Reach { account: self.account.clone(), role: None, regions },
            Some(a) => Reach { account: a.name.clone(), role: Some(a.role()), regions: a.regions_or(regions) },
        })
    }
}

impl AccountSettings {
    /// The role tugboat assumes to act in this account.
    pub fn role(&self) -> AccountRole {
        AccountRole { role_arn: self.role_arn.clone(), external_id: self.external_id.clone() }
    }

    /// The account's own regions, else `otherwise`.
    pub fn regions_or(&self, otherwise: Vec<String>) -> Vec<String> {
        match self.regions.is_empty() {
            true => otherwise,
            false => self.regions.clone(),
        }
    }
}

/// Whether `text` is an IAM role's ARN (`arn:aws:iam::222222222222:role/name`).
pub fn is_role_arn(text: &str) -> bool {
    let parts: Vec<&str> = text.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, "iam", "", account, resource]
        if partition.starts_with("aws")
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && resource.strip_prefix("role/").is_some_and(|n| !n.is_empty() && !n.ends_with('/')))
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

/// The `[resources]` section of a configuration's sections, parsed and checked, with its
/// rates table taken from `[cur]` where it does not name one; `None` without the section.
pub fn load(sections: &BTreeMap<String, toml::Value>) -> Result<Option<ResourceSettings>, String> {
    match sections.get(NAME) {
        Some(v) => Ok(Some(parse(v).map_err(|b| b.to_string())?.rates_from(sections))),
        None => Ok(None),
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
    // CloudWatch keeps daily data points for 455 days; a window of at least a day.
    for (field, days) in [("low_cpu_days", s.low_cpu_days), ("idle_database_days", s.idle_database_days)] {
        if !(1..=455).contains(&days) {
            return Err(BadKey::at(key(field), format!("must be 1 to 455 days (CloudWatch keeps daily points 455 days), got {days}")));
        }
    }
    if !s.low_cpu_percent.is_finite() || s.low_cpu_percent <= 0.0 || s.low_cpu_percent > 100.0 {
        return Err(BadKey::at(key("low_cpu_percent"), format!("must be above 0 and at most 100, got {}", s.low_cpu_percent)));
    }
    let mut names = std::collections::BTreeSet::from([s.account.as_str()]);
    for (i, a) in s.accounts.iter().enumerate() {
        let at = |field: &str| format!("{NAME}.accounts[{i}].{field}");
        if a.name.trim().is_empty() || a.name.contains('#') {
            return Err(BadKey::at(at("name"), format!("must be a name without '#', got {:?}", a.name)));
        }
        if !names.insert(a.name.as_str()) {
            return Err(BadKey::at(at("name"), format!("{:?} names two accounts (resources.account is the service's own)", a.name)));
        }
        if !is_role_arn(&a.role_arn) {
            return Err(BadKey::at(
                at("role_arn"),
                format!("must be an IAM role's ARN such as \"arn:aws:iam::222222222222:role/tugboat-resources\", got {:?}", a.role_arn),
            ));
        }
        if a.external_id.as_ref().is_some_and(|e| e.len() < 2 || e.len() > 1224) {
            return Err(BadKey::at(at("external_id"), "must be 2 to 1224 characters (STS's limits)".into()));
        }
        for (j, r) in a.regions.iter().enumerate() {
            if !is_region(r) {
                return Err(BadKey::at(format!("{}[{j}]", at("regions")), format!("{r:?} is not a region name such as \"eu-west-1\"")));
            }
        }
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
        // Report rates: from [cur] table unless the section says, "" for none.
        let cur = BTreeMap::from([("cur".to_string(), toml::Value::Table(toml::from_str("table = \"costs\"").unwrap()))]);
        assert_eq!(parsed("[resources]\ntable = \"t\"").unwrap().rates_from(&cur).rates_table(), Some("costs"));
        assert_eq!(parsed("[resources]\ntable = \"t\"").unwrap().rates_from(&BTreeMap::new()).rates_table(), None);
        assert_eq!(parsed("[resources]\ntable = \"t\"\nrates_table = \"\"").unwrap().rates_from(&cur).rates_table(), None);
        assert_eq!(parsed("[resources]\ntable = \"t\"\nrates_table = \"r\"").unwrap().rates_from(&cur).rates_table(), Some("r"));
        for (text, key) in [
            ("[resources]\ntable = \"t\"\nrates_table = 3", "resources.rates_table"),
            ("[resources]\naccount = \"x\"", "resources"),
            ("[resources]\ntable = \"\"", "resources.table"),
            ("[resources]\ntable = \"t\"\naccount = \" \"", "resources.account"),
            ("[resources]\ntable = \"t\"\nregions = [\"eu-west-1\", \"Mars\"]", "resources.regions[1]"),
            ("[resources]\ntable = \"t\"\nregions = \"eu-west-1\"", "resources.regions"),
            ("[resources]\ntable = \"t\"\nsnapshot_days = -1", "resources.snapshot_days"),
            ("[resources]\ntable = \"t\"\ncurrency = \"usd\"", "resources.currency"),
            ("[resources]\ntable = \"t\"\nlow_cpu_days = 0", "resources.low_cpu_days"),
            ("[resources]\ntable = \"t\"\nidle_database_days = 1000", "resources.idle_database_days"),
            ("[resources]\ntable = \"t\"\nlow_cpu_percent = 0.0", "resources.low_cpu_percent"),
            ("[resources]\ntable = \"t\"\nlow_cpu_percent = 101.0", "resources.low_cpu_percent"),
            ("[resources]\ntable = \"t\"\nlow_cpu_percent = \"low\"", "resources.low_cpu_percent"),
            ("[resources]\ntable = \"t\"\n[resources.prices]\n\"ebs:gp9\" = 1.0", "resources.prices.ebs:gp9"),
            ("[resources]\ntable = \"t\"\n[resources.prices]\nipv4 = -1.0", "resources.prices.ipv4"),
            ("[resources]\ntable = \"t\"\n[resources.prices]\nipv4 = \"cheap\"", "resources.prices.ipv4"),
            ("[resources]\ntable = \"t\"\ntabel = \"u\"", "resources.tabel"),
            ("[resources]\ntable = \"t\"\n[[resources.accounts]]\nrole_arn = \"arn:aws:iam::222222222222:role/r\"", "resources.accounts[0]"),
            ("[resources]\ntable = \"t\"\n[[resources.accounts]]\nname = \"self\"\nrole_arn = \"arn:aws:iam::222222222222:role/r\"", "resources.accounts[0].name"),
            ("[resources]\ntable = \"t\"\n[[resources.accounts]]\nname = \"a#b\"\nrole_arn = \"arn:aws:iam::222222222222:role/r\"", "resources.accounts[0].name"),
            ("[resources]\ntable = \"t\"\n[[resources.accounts]]\nname = \"p\"\nrole_arn = \"arn:aws:iam::2222:role/r\"", "resources.accounts[0].role_arn"),
            ("[resources]\ntable = \"t\"\n[[resources.accounts]]\nname = \"p\"\nrole_arn = \"arn:aws:s3:::bucket\"", "resources.accounts[0].role_arn"),
            ("[resources]\ntable = \"t\"\n[[resources.accounts]]\nname = \"p\"\nrole_arn = \"arn:aws:iam::222222222222:user/u\"", "resources.accounts[0].role_arn"),
            ("[resources]\ntable = \"t\"\n[[resources.accounts]]\nname = \"p\"\nrole_arn = \"arn:aws:iam::222222222222:role/r\"\nexternal_id = \"x\"", "resources.accounts[0].external_id"),
            ("[resources]\ntable = \"t\"\n[[resources.accounts]]\nname = \"p\"\nrole_arn = \"arn:aws:iam::222222222222:role/r\"\nregions = [\"moon-1\"]", "resources.accounts[0].regions[0]"),
            ("[resources]\ntable = \"t\"\n[[resources.accounts]]\nname = \"p\"\nrole_arn = \"arn:aws:iam::222222222222:role/r\"\nrole = \"x\"", "resources.accounts[0].role"),
            ("[resources]\ntable = \"t\"\n[[resources.accounts]]\nname = \"p\"\nrole_arn = \"arn:aws:iam::222222222222:role/r\"\n[[resources.accounts]]\nname = \"p\"\nrole_arn = \"arn:aws:iam::333333333333:role/r\"", "resources.accounts[1].name"),
        ] {
            let BadKey { key: k, message: m } = parsed(text).unwrap_err();
            assert_eq!(k, key, "{text}: {m}");
        }
    }

    #[test]
    fn a_route_reaches_the_own_account_or_a_configured_one_and_nothing_else() {
        let s = parsed(
            "[resources]\ntable = \"t\"\naccount = \"main\"\nregions = [\"eu-west-1\"]\n\
             [[resources.accounts]]\nname = \"prod\"\nrole_arn = \"arn:aws:iam::222222222222:role/tugboat-resources\"\nexternal_id = \"xyz\"\n\
             [[resources.accounts]]\nname = \"eu\"\nrole_arn = \"arn:aws-cn:iam::333333333333:role/path/r\"\nregions = [\"cn-north-1\"]",
        )
        .unwrap();
        let own = s.reach(None, "us-east-1").unwrap();
        assert_eq!((own.account.as_str(), own.role.as_ref(), own.regions.clone()), ("main", None, vec!["eu-west-1".to_string()]));
        assert_eq!(s.reach(Some("main"), "us-east-1").unwrap(), own);
        let prod = s.reach(Some("prod"), "us-east-1").unwrap();
        assert_eq!(prod.role.as_ref().unwrap().external_id.as_deref(), Some("xyz"));
        assert_eq!(prod.regions, vec!["eu-west-1"], "the section's regions");
        assert_eq!(s.reach(Some("eu"), "us-east-1").unwrap().regions, vec!["cn-north-1"]);
        let e = s.reach(Some("other"), "us-east-1").unwrap_err();
        assert!(e.contains("\"other\"") && e.contains("main, prod, eu"), "{e}");
    }
}
