//! The price table a scan estimates with: AWS's published on-demand list prices for
//! us-east-1, in USD per month (the EBS pricing page for volumes, provisioned IOPS and
//! standard snapshots; the VPC pricing page for public IPv4 addresses, $0.005 an hour × 730
//! hours; the EC2 on-demand page for Linux instances and the RDS for MySQL page for
//! single-AZ DB instances and their storage, each hourly price × 730 hours). Other regions,
//! engines and currencies differ by a few to tens of percent: set `[resources.prices]` to
//! your own (each key given replaces the table's; `ec2:<type>` and `rds:<class>` may name
//! types the table lacks).

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
        assert!((prices.get("ec2:m5.large").unwrap().amount - 70.08).abs() < 1e-9);
        assert!(is_key("ec2:m8g.48xlarge") && is_key("rds:db.r7g.large") && is_key("rds-storage:gp3"));
        for bad in ["ec2:", "ec2:M5.large", "ec2:m5 large", "rds:m5.large", "ebs:gp9", "lambda"] {
            assert!(!is_key(bad), "{bad}");
        }
        assert!(TABLE.iter().all(|(k, _, _)| KEYS_HELP.contains(k.split(':').next().unwrap())));
    }
}
