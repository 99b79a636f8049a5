//! The price table a scan estimates with: AWS's published on-demand list prices for
//! us-east-1, in USD per month (the EBS pricing page for volumes, provisioned IOPS and
//! standard snapshots; the VPC pricing page for public IPv4 addresses, $0.005 an hour × 730
//! hours; the EC2 on-demand page for Linux instances and the RDS for MySQL page for
//! single-AZ DB instances and their storage, each hourly price × 730 hours). Other regions,
//! engines and currencies differ by a few to tens of percent: set `[resources.prices]` to
//! your own (each key given replaces the table's; `ec2:<type>` and `rds:<class>` may name
//! types the table lacks).
//!
//! Before the table come the rates your own cost reports billed (`cur_ingest` keeps them per
//! region and usage type, [`UnitRate`]): a key's usage type ([`usage_type`]) priced at the
//! report's rate, hourly rates × 730. A configured price still comes first.

use std::collections::BTreeMap;

use crate::ports::costs::UnitRate;

/// Each price: key, amount per month, unit.
pub const TABLE: &[(&str, f64, &str)] = &[
    ("ebs:gp3", 0.08, "GiB-month"),
    ("ebs:gp2", 0.10, "GiB-month"),
    ("ebs:io1", 0.125, "GiB-month"),
    ("ebs:io2", 0.125, "GiB-month"),
    ("ebs:st1", 0.045, "GiB-month"),
    ("ebs:sc1", 0.015, "GiB-month"),
    ("ebs:standard", 0.05, "GiB-month"),
    // gp3 is billed for IOPS above its 3 000 baseline; io1 and io2 for all they provision.
    ("ebs-iops:gp3", 0.005, "IOPS-month"),
    ("ebs-iops:io1", 0.065, "IOPS-month"),
    ("ebs-iops:io2", 0.065, "IOPS-month"),
    ("snapshot", 0.05, "GiB-month"),
    ("ipv4", 3.65, "address-month"),
    // EC2, Linux on demand.
    ("ec2:t3.nano", 0.0052 * HOURS, "instance-month"),
    ("ec2:t3.micro", 0.0104 * HOURS, "instance-month"),
    ("ec2:t3.small", 0.0208 * HOURS, "instance-month"),
    ("ec2:t3.medium", 0.0416 * HOURS, "instance-month"),
    ("ec2:t3.large", 0.0832 * HOURS, "instance-month"),
    ("ec2:t3.xlarge", 0.1664 * HOURS, "instance-month"),
    ("ec2:t4g.micro", 0.0084 * HOURS, "instance-month"),
    ("ec2:t4g.small", 0.0168 * HOURS, "instance-month"),
    ("ec2:t4g.medium", 0.0336 * HOURS, "instance-month"),
    ("ec2:m5.large", 0.096 * HOURS, "instance-month"),
    ("ec2:m5.xlarge", 0.192 * HOURS, "instance-month"),
    ("ec2:m5.2xlarge", 0.384 * HOURS, "instance-month"),
    ("ec2:m6i.large", 0.096 * HOURS, "instance-month"),
    ("ec2:m6g.large", 0.077 * HOURS, "instance-month"),
    ("ec2:m7g.large", 0.0816 * HOURS, "instance-month"),
    ("ec2:c5.large", 0.085 * HOURS, "instance-month"),
    ("ec2:c5.xlarge", 0.17 * HOURS, "instance-month"),
    ("ec2:r5.large", 0.126 * HOURS, "instance-month"),
    ("ec2:r5.xlarge", 0.252 * HOURS, "instance-month"),
    // RDS for MySQL, single-AZ (multi-AZ doubles it).
    ("rds:db.t3.micro", 0.017 * HOURS, "instance-month"),
    ("rds:db.t3.small", 0.034 * HOURS, "instance-month"),
    ("rds:db.t3.medium", 0.068 * HOURS, "instance-month"),
    ("rds:db.t3.large", 0.136 * HOURS, "instance-month"),
    ("rds:db.t4g.micro", 0.016 * HOURS, "instance-month"),
    ("rds:db.t4g.small", 0.032 * HOURS, "instance-month"),
    ("rds:db.t4g.medium", 0.065 * HOURS, "instance-month"),
    ("rds:db.m5.large", 0.171 * HOURS, "instance-month"),
    ("rds:db.m5.xlarge", 0.342 * HOURS, "instance-month"),
    ("rds:db.m6g.large", 0.152 * HOURS, "instance-month"),
    ("rds:db.r5.large", 0.25 * HOURS, "instance-month"),
    ("rds-storage:gp2", 0.115, "GiB-month"),
    ("rds-storage:gp3", 0.115, "GiB-month"),
    ("rds-storage:io1", 0.125, "GiB-month"),
    ("rds-storage:io2", 0.125, "GiB-month"),
    ("rds-storage:standard", 0.10, "GiB-month"),
];

/// Hours in AWS's billing month.
pub const HOURS: f64 = 730.0;

/// The keys, for an error that names them.
pub const KEYS_HELP: &str = "ebs:<gp3|gp2|io1|io2|st1|sc1|standard>, ebs-iops:<gp3|io1|io2>, snapshot, ipv4, \
     ec2:<instance type>, rds:<DB instance class>, rds-storage:<gp2|gp3|io1|io2|standard>";

/// gp3's IOPS included in its storage price.
pub const GP3_BASELINE_IOPS: u32 = 3000;

pub fn is_key(key: &str) -> bool {
    // Instance types and DB classes are many, and new ones come: any that looks like one.
    let typed = |rest: &str| {
        rest.contains('.') && rest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    };
    TABLE.iter().any(|(k, _, _)| *k == key)
        || key.strip_prefix("ec2:").is_some_and(typed)
        || key.strip_prefix("rds:").is_some_and(|r| r.starts_with("db.") && typed(r))
}

/// The usage type a cost report bills a price key under (without its region prefix), the
/// pricing unit its rate is in, and what makes that rate a monthly price.
pub fn usage_type(key: &str) -> Option<(String, &'static str, f64)> {
    let (family, rest) = key.split_once(':').unwrap_or((key, ""));
    Some(match (family, rest) {
        ("ebs", "standard") => ("EBS:VolumeUsage".into(), "GB-Mo", 1.0),
        // io1 is billed as "piops" (provisioned IOPS SSD), for its storage and its IOPS.
        ("ebs", "io1") => ("EBS:VolumeUsage.piops".into(), "GB-Mo", 1.0),
        ("ebs", t) if !t.is_empty() => (format!("EBS:VolumeUsage.{t}"), "GB-Mo", 1.0),
        ("ebs-iops", "io1") => ("EBS:VolumeP-IOPS.piops".into(), "IOPS-Mo", 1.0),
        ("ebs-iops", t) if !t.is_empty() => (format!("EBS:VolumeP-IOPS.{t}"), "IOPS-Mo", 1.0),
        ("snapshot", "") => ("EBS:SnapshotUsage".into(), "GB-Mo", 1.0),
        ("ipv4", "") => ("PublicIPv4:IdleAddress".into(), "Hrs", HOURS),
        ("ec2", t) if !t.is_empty() => (format!("BoxUsage:{t}"), "Hrs", HOURS),
        ("rds", c) if !c.is_empty() => (format!("InstanceUsage:{c}"), "Hrs", HOURS),
        ("rds-storage", "standard") => ("RDS:StorageUsage".into(), "GB-Mo", 1.0),
        ("rds-storage", "io1") => ("RDS:PIOPS-Storage".into(), "GB-Mo", 1.0),
        ("rds-storage", t) if !t.is_empty() => (format!("RDS:{}-Storage", t.to_ascii_uppercase()), "GB-Mo", 1.0),
        _ => return None,
    })
}

/// The prices in force: the configured ones, then the cost reports' rates, then the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Prices {
    configured: BTreeMap<String, f64>,
    /// Report rates by usage type (one region's, in the scan's currency).
    rates: BTreeMap<String, UnitRate>,
}

/// A price and where it came from, for the finding's `price` field.
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    pub amount: f64,
    pub source: String,
}

impl Prices {
    pub fn new(configured: &BTreeMap<String, f64>) -> Prices {
        Prices {
            configured: configured.clone(),
            rates: BTreeMap::new(),
        }
    }

    /// With one region's report rates (those in another currency are left out: a finding's
    /// cost is in the scan's currency).
    pub fn with_rates(mut self, rates: &[UnitRate], currency: &str) -> Prices {
        self.rates = rates
            .iter()
            .filter(|r| r.currency == currency)
            .map(|r| (r.usage_type.clone(), r.clone()))
            .collect();
        self
    }

    /// `key`'s monthly price from a report rate, when one is kept in the unit expected (an
    /// empty unit is taken as that one).
    fn rated(&self, key: &str) -> Option<Price> {
        let (usage, unit, monthly) = usage_type(key)?;
        let r = self.rates.get(&usage)?;
        if !(r.unit.is_empty() || r.unit.eq_ignore_ascii_case(unit)) {
            return None;
        }
        let rate: f64 = r.rate.parse().ok().filter(|v: &f64| v.is_finite() && *v > 0.0)?;
        Some(Price {
            amount: rate * monthly,
            source: format!("cost report {usage} {}/{unit} ({}, {})", r.rate, r.region, r.day),
        })
    }

    /// The price of `key`; `None` when neither the configuration nor the table has one (a
    /// volume type newer than this table).
    pub fn get(&self, key: &str) -> Option<Price> {
        let unit = TABLE.iter().find(|(k, _, _)| *k == key).map(|(_, _, u)| *u);
        if let Some(amount) = self.configured.get(key) {
            let unit = unit.unwrap_or("month");
            return Some(Price {
                amount: *amount,
                source: format!("configured {key} {amount}/{unit}"),
            });
        }
        if let Some(price) = self.rated(key) {
            return Some(price);
        }
        let (_, amount, unit) = TABLE.iter().find(|(k, _, _)| *k == key)?;
        Some(Price {
            amount: *amount,
            source: format!("price table {key} {amount}/{unit}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_prices_replace_the_tables_and_unknown_keys_have_none() {
        let prices = Prices::new(&BTreeMap::from([("ebs:gp3".to_string(), 0.0924)]));
        assert_eq!(prices.get("ebs:gp3").unwrap().amount, 0.0924);
        assert!(prices.get("ebs:gp3").unwrap().source.starts_with("configured"));
        assert_eq!(prices.get("ebs:gp2").unwrap().amount, 0.10);
        assert!(prices.get("ebs:gp2").unwrap().source.starts_with("price table"));
        assert_eq!(prices.get("ebs:gp9"), None);
        assert!((prices.get("ec2:m5.large").unwrap().amount - 70.08).abs() < 1e-9);
        assert!(is_key("ec2:m8g.48xlarge") && is_key("rds:db.r7g.large") && is_key("rds-storage:gp3"));
        for bad in ["ec2:", "ec2:M5.large", "ec2:m5 large", "rds:m5.large", "ebs:gp9", "lambda"] {
            assert!(!is_key(bad), "{bad}");
        }
        assert!(TABLE.iter().all(|(k, _, _)| KEYS_HELP.contains(k.split(':').next().unwrap())));
    }

    fn rate(usage: &str, rate: &str, unit: &str, currency: &str) -> UnitRate {
        UnitRate {
            region: "eu-west-1".into(),
            usage_type: usage.into(),
            rate: rate.into(),
            unit: unit.into(),
            currency: currency.into(),
            day: "2026-11-30".into(),
        }
    }

    #[test]
    fn report_rates_come_between_the_configured_prices_and_the_table() {
        let rates = [
            rate("EBS:VolumeUsage.gp3", "0.088", "GB-Mo", "USD"),
            rate("BoxUsage:m5.large", "0.107", "Hrs", "USD"),
            rate("PublicIPv4:IdleAddress", "0.005", "Hrs", "USD"),
            rate("EBS:VolumeUsage.piops", "0.138", "GB-Mo", "USD"),
            rate("RDS:GP2-Storage", "0.127", "GB-Mo", "USD"),
            // Not usable: another currency, a unit not the expected one, not a positive number.
            rate("EBS:SnapshotUsage", "0.04", "GB-Mo", "EUR"),
            rate("EBS:VolumeUsage.gp2", "0.11", "Hrs", "USD"),
            rate("InstanceUsage:db.t3.micro", "-1", "Hrs", "USD"),
        ];
        let configured = BTreeMap::from([("ebs:io1".to_string(), 0.2)]);
        let prices = Prices::new(&configured).with_rates(&rates, "USD");
        let gp3 = prices.get("ebs:gp3").unwrap();
        assert_eq!(gp3.amount, 0.088);
        assert_eq!(gp3.source, "cost report EBS:VolumeUsage.gp3 0.088/GB-Mo (eu-west-1, 2026-11-30)");
        assert!((prices.get("ec2:m5.large").unwrap().amount - 0.107 * HOURS).abs() < 1e-9);
        assert!((prices.get("ipv4").unwrap().amount - 3.65).abs() < 1e-9);
        assert!((prices.get("rds-storage:gp2").unwrap().amount - 0.127).abs() < 1e-9);
        // The configured price wins over the report's io1 rate.
        assert_eq!(prices.get("ebs:io1").unwrap().amount, 0.2);
        for table in ["snapshot", "ebs:gp2", "rds:db.t3.micro"] {
            assert!(prices.get(table).unwrap().source.starts_with("price table"), "{table}");
        }
    }

    #[test]
    fn every_tables_key_has_a_usage_type() {
        for (key, _, unit) in TABLE {
            let (usage, report_unit, _) = usage_type(key).unwrap_or_else(|| panic!("{key}"));
            assert!(crate::ports::costs::rated_usage(&usage).is_some(), "{key}: {usage}");
            assert_eq!(unit.contains("instance") || *key == "ipv4", report_unit == "Hrs", "{key}");
        }
        assert_eq!(usage_type("ebs:io1").unwrap().0, "EBS:VolumeUsage.piops");
        assert_eq!(usage_type("rds-storage:gp3").unwrap().0, "RDS:GP3-Storage");
        assert_eq!(usage_type("lambda"), None);
        assert_eq!(usage_type("ec2:"), None);
    }
}
