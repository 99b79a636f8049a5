//! The price table a scan estimates with: AWS's published on-demand list prices for
//! us-east-1, in USD per month (the EBS pricing page for volumes, provisioned IOPS and
//! standard snapshots; the VPC pricing page for public IPv4 addresses, $0.005 an hour × 730
//! hours). Other regions and currencies differ by a few to tens of percent: set
//! `[resources.prices]` to your own (each key given replaces the table's).

use std::collections::BTreeMap;

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
];

/// The keys, for an error that names them.
pub const KEYS_HELP: &str = "ebs:<gp3|gp2|io1|io2|st1|sc1|standard>, ebs-iops:<gp3|io1|io2>, snapshot, ipv4";

/// gp3's IOPS included in its storage price.
pub const GP3_BASELINE_IOPS: u32 = 3000;

pub fn is_key(key: &str) -> bool {
    TABLE.iter().any(|(k, _, _)| *k == key)
}

/// The prices in force: the table's, with the configured ones in their place.
#[derive(Debug, Clone, PartialEq)]
pub struct Prices {
    configured: BTreeMap<String, f64>,
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
        }
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
        assert!(TABLE.iter().all(|(k, _, _)| KEYS_HELP.contains(k.split(':').next().unwrap())));
    }
}
