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

    /// Everything stored for `payer`'s `period`.
    async fn period(
        &self,
        table: &str,
        payer: &str,
        period: &str,
    ) -> Result<Vec<DailyCost>, StepError>;
}
