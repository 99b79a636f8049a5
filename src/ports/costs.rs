//! The cost-store port (DynamoDB): a payer's daily costs for one billing period, replaced
//! whole, because a Cost and Usage Report is cumulative within its month.

use async_trait::async_trait;

use crate::contract::StepError;

/// One day's cost for one (payer, account, service, region, currency).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DailyCost {
    pub day: String,
    pub payer: String,
    pub account: String,
    pub service: String,
    pub region: String,
    pub currency: String,
    /// A decimal, as the report sums it (`12.5`, `-0.0000012`).
    pub cost: String,
}

impl DailyCost {
    /// The billing period (`YYYY-MM`) of the day.
    pub fn period(&self) -> &str {
        self.day.get(..7).unwrap_or(&self.day)
    }
}

/// A unit rate a cost report billed: the highest non-zero `lineItem/UnblendedRate` of a usage
/// type in a region (the on-demand rate wherever any usage was billed at it: discounted and
/// free-tier lines bill less), as of the latest day it was seen. The resource scan prices its
/// findings with these before its list-price table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UnitRate {
    /// `us-east-1`.
    pub region: String,
    /// Without the report's region prefix: `EBS:VolumeUsage.gp3`, `BoxUsage:m5.large`.
    pub usage_type: String,
    /// A decimal, as the report writes it (`0.08`, `1.2E-5` becomes `0.000012`).
    pub rate: String,
    /// The report's pricing unit: `GB-Mo`, `Hrs`, `IOPS-Mo`.
    pub unit: String,
    pub currency: String,
    /// `YYYY-MM-DD`: the latest day the rate was billed.
    pub day: String,
}

/// The usage types whose rates a cost report's ingest keeps (the families the resource scan
/// prices: EBS volumes, their IOPS, snapshots, public IPv4 addresses, EC2 instances, RDS
/// instances and storage); everything else a report bills is summed, never rated.
pub const RATED_USAGE: &[&str] = &[
    "EBS:VolumeUsage",
    "EBS:VolumeP-IOPS",
    "EBS:SnapshotUsage",
    "PublicIPv4:",
    "BoxUsage:",
    "InstanceUsage:",
    "Multi-AZUsage:",
    "RDS:",
];

/// A report's usage type without its region prefix (`USW2-EBS:VolumeUsage.gp3` →
/// `EBS:VolumeUsage.gp3`; us-east-1's have none), when it is one of [`RATED_USAGE`].
pub fn rated_usage(usage_type: &str) -> Option<&str> {
    let bare = match usage_type.split_once('-') {
        // A prefix is a region code's letters and digits, before the usage type's colon.
        Some((prefix, rest))
            if !prefix.is_empty()
                && prefix
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
                && !prefix.contains(':')
                && rest.contains(':') =>
        {
            rest
        }
        _ => usage_type,
    };
    RATED_USAGE
        .iter()
        .any(|p| bare.starts_with(p))
        .then_some(bare)
}

/// What a replace did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Replaced {
    pub written: usize,
    /// Rows of the period that the new report no longer has.
    pub deleted: usize,
    /// The latest day the period held before (`None` for a period new to the table): which
    /// days a delivery adds, read in the same query the replace needs anyway.
    pub previous_last_day: Option<String>,
}

#[async_trait]
pub trait CostStore: Send + Sync + std::fmt::Debug {
    /// Makes `rows` the whole of `payer`'s `period` (`YYYY-MM`) in `table`: writes them all,
    /// then deletes the period's rows that are not among them (never an empty period between).
    async fn replace_period(
        &self,
        table: &str,
        payer: &str,
        period: &str,
        rows: &[DailyCost],
    ) -> Result<Replaced, StepError>;

    /// Records `marker` in `table` the first time it is asked (true), never again (false):
    /// for alerts raised once per account and month.
    async fn mark_once(&self, table: &str, marker: &str) -> Result<bool, StepError>;

    /// Keeps `rates` (each replacing the stored rate of its region and usage type unless
    /// that one is from a later day: an older report delivered again never undoes a newer
    /// rate). Returns how many were written.
    async fn put_rates(&self, table: &str, rates: &[UnitRate]) -> Result<usize, StepError>;

    /// The rates stored for `region`.
    async fn rates(&self, table: &str, region: &str) -> Result<Vec<UnitRate>, StepError>;

    /// Everything stored for `payer`'s `period`.
    async fn period(
        &self,
        table: &str,
        payer: &str,
        period: &str,
    ) -> Result<Vec<DailyCost>, StepError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rated_usage_types_lose_their_region_prefix_and_others_are_not_rated() {
        for (given, bare) in [
            ("USW2-EBS:VolumeUsage.gp3", "EBS:VolumeUsage.gp3"),
            ("EBS:VolumeUsage.gp3", "EBS:VolumeUsage.gp3"),
            ("BoxUsage:m5.large", "BoxUsage:m5.large"),
            ("EUC1-BoxUsage:m5.large", "BoxUsage:m5.large"),
            ("APN1-PublicIPv4:IdleAddress", "PublicIPv4:IdleAddress"),
            ("CAN1-RDS:GP2-Storage", "RDS:GP2-Storage"),
            ("USE1-EBS:SnapshotUsage", "EBS:SnapshotUsage"),
        ] {
            assert_eq!(rated_usage(given), Some(bare), "{given}");
        }
        for other in [
            "USW2-TimedStorage-ByteHrs",
            "USE1-EBS-USW2-EBS-AWS-In-Bytes",
            "CAN1-CW:Requests",
            "DataTransfer-Out-Bytes",
            "",
            "-BoxUsage:m5.large",
            "usw2-BoxUsage:m5.large",
        ] {
            assert_eq!(rated_usage(other), None, "{other}");
        }
    }
}
