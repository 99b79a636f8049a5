//! The resource ports: what a region holds (EC2's inventory, RDS's DB instances, CloudWatch's
//! metrics), what `auto_stop` acts on (instances, ECS services, DB instances), other accounts
//! reached through a role, and where the findings
//! of a scan are kept (the findings table, replaced per account and region as the cost table
//! is per period).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::contract::StepError;

/// An EBS volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    pub id: String,
    pub size_gib: u32,
    /// `gp2`, `gp3`, `io1`, `io2`, `st1`, `sc1`, `standard`.
    pub volume_type: String,
    /// `available` (attached to nothing), `in-use`, `creating`, …
    pub state: String,
    /// Provisioned IOPS (io1/io2; gp3 above its baseline).
    pub iops: Option<u32>,
    pub created_ms: Option<u64>,
    pub tags: BTreeMap<String, String>,
}

/// An Elastic IP address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Address {
    /// The allocation id (VPC), else the public IP (EC2-Classic).
    pub id: String,
    pub public_ip: String,
    /// Associated with an instance or a network interface.
    pub associated: bool,
    pub tags: BTreeMap<String, String>,
}

/// An EC2 instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub instance_type: String,
    /// `running`, `stopped`, `terminated`, …
    pub state: String,
    pub launched_ms: Option<u64>,
    /// The EBS volumes attached to it.
    pub volumes: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

/// An EBS snapshot this account owns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: String,
    pub volume_id: Option<String>,
    pub size_gib: u32,
    pub started_ms: Option<u64>,
    pub tags: BTreeMap<String, String>,
}

/// An RDS DB instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Database {
    /// The DB instance identifier.
    pub id: String,
    pub arn: String,
    /// `db.t3.micro`, …
    pub class: String,
    pub engine: String,
    /// `available`, `stopped`, `stopping`, `starting`, …
    pub status: String,
    pub storage_gib: u32,
    /// `gp2`, `gp3`, `io1`, `io2`, `standard`.
    pub storage_type: String,
    pub multi_az: bool,
    pub created_ms: Option<u64>,
    pub tags: BTreeMap<String, String>,
}

/// One region's EC2 inventory. Every call pages through the whole answer.
#[async_trait]
pub trait Inventory: Send + Sync + std::fmt::Debug {
    async fn volumes(&self, region: &str) -> Result<Vec<Volume>, StepError>;
    async fn addresses(&self, region: &str) -> Result<Vec<Address>, StepError>;
    /// Every instance but the terminated.
    async fn instances(&self, region: &str) -> Result<Vec<Instance>, StepError>;
    /// The snapshots the scanning account owns (`OwnerIds = self`).
    async fn snapshots(&self, region: &str) -> Result<Vec<Snapshot>, StepError>;
}

/// The statistic a [`MetricQuery`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stat {
    Average,
    Maximum,
}

/// One CloudWatch metric of one resource (`AWS/EC2` `CPUUtilization` of `InstanceId = i-…`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricQuery {
    pub namespace: String,
    pub metric: String,
    pub dimension: String,
    pub value: String,
    pub stat: Stat,
}

/// CloudWatch's metrics (`GetMetricData`, many queries a call).
#[async_trait]
pub trait Metrics: Send + Sync + std::fmt::Debug {
    /// For each query, in order, its values per `period_s` from `start_ms` to `end_ms`
    /// (empty when CloudWatch has no data points).
    async fn series(
        &self,
        region: &str,
        queries: &[MetricQuery],
        start_ms: u64,
        end_ms: u64,
        period_s: u32,
    ) -> Result<Vec<Vec<f64>>, StepError>;
}

/// RDS DB instances: listed (`resource_scan`), stopped and started (`auto_stop`).
#[async_trait]
pub trait Databases: Send + Sync + std::fmt::Debug {
    /// Every DB instance of `region`, with its tags.
    async fn databases(&self, region: &str) -> Result<Vec<Database>, StepError>;
    /// Tags DB instance `arn` with `key = value`.
    async fn mark_database(
        &self,
        region: &str,
        arn: &str,
        key: &str,
        value: &str,
    ) -> Result<(), StepError>;
    /// Removes tag `key` from DB instance `arn`.
    async fn unmark_database(&self, region: &str, arn: &str, key: &str) -> Result<(), StepError>;
    async fn stop_database(&self, region: &str, id: &str) -> Result<(), StepError>;
    async fn start_database(&self, region: &str, id: &str) -> Result<(), StepError>;
}

/// What a resource costs while nobody uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// An EBS volume attached to nothing.
    UnattachedVolume,
    /// An Elastic IP associated with nothing (public IPv4 is billed by the hour).
    UnassociatedAddress,
    /// A stopped instance: its volumes are still billed.
    StoppedInstance,
    /// A snapshot older than the configured age.
    OldSnapshot,
    /// A running instance whose daily average CPU stayed low for the configured days.
    LowCpuInstance,
    /// A DB instance with no connection for the configured days.
    IdleDatabase,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::UnattachedVolume => "unattached-volume",
            FindingKind::UnassociatedAddress => "unassociated-address",
            FindingKind::StoppedInstance => "stopped-instance",
            FindingKind::OldSnapshot => "old-snapshot",
            FindingKind::LowCpuInstance => "low-cpu-instance",
            FindingKind::IdleDatabase => "idle-database",
        }
    }

    /// Every kind, in the order pages list them.
    pub const ALL: [FindingKind; 6] = [
        FindingKind::UnattachedVolume,
        FindingKind::UnassociatedAddress,
        FindingKind::StoppedInstance,
        FindingKind::OldSnapshot,
        FindingKind::LowCpuInstance,
        FindingKind::IdleDatabase,
    ];

    pub fn parse(text: &str) -> Option<FindingKind> {
        FindingKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// The kinds' names, comma-separated, for help and errors.
    pub fn names() -> String {
        FindingKind::ALL.map(FindingKind::as_str).join(", ")
    }
}

/// One idle resource and what it is estimated to cost a month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub account: String,
    pub region: String,
    pub kind: FindingKind,
    /// The resource's id (`vol-…`, `eipalloc-…`, `i-…`, `snap-…`).
    pub resource: String,
    /// What was found, for a person (`gp3, 100 GiB, unattached for 12 days`).
    pub detail: String,
    pub size_gib: Option<u32>,
    pub age_days: Option<u64>,
    /// Estimated monthly cost, in `currency`.
    pub monthly_cost: f64,
    pub currency: String,
    /// Where the price came from (`price table: gp3 0.08/GiB-month`).
    pub price: String,
    /// The resource's `Name` tag, if any.
    pub name: Option<String>,
}

/// What a replace did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Replaced {
    pub written: usize,
    /// Findings of the earlier scan that this one no longer has (the waste was cleaned up).
    pub deleted: usize,
}

/// The findings table.
#[async_trait]
pub trait FindingStore: Send + Sync + std::fmt::Debug {
    /// Makes `findings` the whole of `account`'s `region` in `table`: writes them all, then
    /// deletes that scope's earlier findings that are not among them.
    async fn replace(
        &self,
        table: &str,
        account: &str,
        region: &str,
        findings: &[Finding],
    ) -> Result<Replaced, StepError>;

    /// Every finding in `table`.
    async fn all(&self, table: &str) -> Result<Vec<Finding>, StepError>;
}

/// The tag `auto_stop` puts on the instances it stopped (its value the stopping instance's
/// id), so that the paired start starts those and no others.
pub const STOPPED_MARK: &str = "tugboat:auto-stopped";

/// Stopping and starting EC2 instances (`auto_stop`). Every call names the instances; the
/// workflow chooses them from [`Power::tagged`] and never passes one without its tags.
#[async_trait]
pub trait Power: Send + Sync + std::fmt::Debug {
    /// The instances of `region` (but the terminated) that carry every tag of `tags`.
    async fn tagged(
        &self,
        region: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<Vec<Instance>, StepError>;
    /// Tags `ids` with `key = value`.
    async fn mark(
        &self,
        region: &str,
        ids: &[String],
        key: &str,
        value: &str,
    ) -> Result<(), StepError>;
    /// Removes tag `key` from `ids`.
    async fn unmark(&self, region: &str, ids: &[String], key: &str) -> Result<(), StepError>;
    async fn stop(&self, region: &str, ids: &[String]) -> Result<(), StepError>;
    async fn start(&self, region: &str, ids: &[String]) -> Result<(), StepError>;
}

/// An ECS service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EcsService {
    pub arn: String,
    pub name: String,
    /// The cluster's ARN.
    pub cluster: String,
    pub desired: u32,
    pub tags: BTreeMap<String, String>,
}

/// Scaling ECS services to zero and back (`auto_stop`). Every call names the service; the
/// workflow chooses them from [`ServicePower::tagged_services`] and never passes one without
/// its tags.
#[async_trait]
pub trait ServicePower: Send + Sync + std::fmt::Debug {
    /// The services of `region` that carry every tag of `tags`, in `clusters` (names or
    /// ARNs), or in every cluster of the region when `clusters` is empty.
    async fn tagged_services(
        &self,
        region: &str,
        clusters: &[String],
        tags: &BTreeMap<String, String>,
    ) -> Result<Vec<EcsService>, StepError>;
    /// Tags service `arn` with `key = value`.
    async fn mark_service(
        &self,
        region: &str,
        arn: &str,
        key: &str,
        value: &str,
    ) -> Result<(), StepError>;
    /// Removes tag `key` from service `arn`.
    async fn unmark_service(&self, region: &str, arn: &str, key: &str) -> Result<(), StepError>;
    /// Sets service `arn`'s desired count.
    async fn scale(
        &self,
        region: &str,
        cluster: &str,
        arn: &str,
        desired: u32,
    ) -> Result<(), StepError>;
}

/// Another account's role that tugboat assumes to reach its resources (`[[resources.accounts]]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccountRole {
    pub role_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

/// The resource ports of one account.
#[derive(Debug, Clone)]
pub struct AccountPorts {
    pub inventory: std::sync::Arc<dyn Inventory>,
    pub power: std::sync::Arc<dyn Power>,
    pub services: std::sync::Arc<dyn ServicePower>,
    pub databases: std::sync::Arc<dyn Databases>,
    pub metrics: std::sync::Arc<dyn Metrics>,
}

/// Other accounts, reached through an assumed role (the cost plan's multi-account section):
/// the same ports, acting with the role's credentials.
#[async_trait]
pub trait Accounts: Send + Sync + std::fmt::Debug {
    /// The ports of the account `role` belongs to. Credentials are fetched (and renewed) when
    /// a call needs them: a role that cannot be assumed fails that call, as access denied.
    async fn reach(&self, role: &AccountRole) -> Result<AccountPorts, StepError>;
}
