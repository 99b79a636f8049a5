//! Ports: one narrow trait per outside service. Only `src/aws/`, `src/mqtt/` and `src/http/`
//! implement them over real clients; [`memory`] has in-memory versions for unit
//! tests and benchmarks.
//!
//! [`Ports`] is the set a workflow's constructor takes its clients from: built over AWS by
//! `app`, or from fakes by tests, so that the same constructor runs in both.

pub mod clock;
pub mod costs;
pub mod ecs;
pub mod files;
pub mod http;
pub mod items;
pub mod lifecycle;
pub mod memory;
pub mod mqtt;
pub mod notifier;
pub mod objects;
pub mod queue;
pub mod resources;

use std::sync::Arc;

pub use ecs::{ContainerInstance, Ecs, RunTaskRequest, TargetGroups, TargetHealth, TaskStatus};
pub use http::{Destination, DestinationSettings, Http};
pub use mqtt::{Broker, BrokerSettings, Mqtt};
pub use notifier::Notifier;
pub use queue::{BatchFailure, OutgoingMessage, Queue, QueueError, QueueSource, ReceivedMessage};

/// The outside services that workflows reach, one port each.
#[derive(Clone)]
pub struct Ports {
    /// The configured SNS topics (the engine's generic `Publish`).
    pub notifier: Arc<dyn Notifier>,
    pub ecs: Arc<dyn Ecs>,
    pub targets: Arc<dyn TargetGroups>,
    /// MQTT broker connections (`mqtt_publish`).
    pub mqtt: Arc<dyn Mqtt>,
    /// HTTP destinations (`http_deliver`).
    pub http: Arc<dyn Http>,
    /// S3 objects (`cur_ingest` reads reports and writes curated summaries).
    pub objects: Arc<dyn objects::ObjectStore>,
    /// The daily-cost table (`cur_ingest`).
    pub costs: Arc<dyn costs::CostStore>,
    /// The time of day and timers (`spot_drain`'s deadlines).
    pub clock: Arc<dyn clock::Clock>,
    /// Auto Scaling lifecycle actions (`spot_drain`).
    pub lifecycle: Arc<dyn lifecycle::Lifecycle>,
    /// Queues a workflow sends to (`spot_drain`'s `sqs` handlers); the same source the
    /// intake opens its queues from.
    pub queues: Arc<dyn QueueSource>,
    /// EC2's inventory, read-only (`resource_scan`).
    pub inventory: Arc<dyn resources::Inventory>,
    /// The findings table (`resource_scan`).
    pub findings: Arc<dyn resources::FindingStore>,
    /// Stopping and starting EC2 instances (`auto_stop`).
    pub power: Arc<dyn resources::Power>,
    /// Scaling ECS services to zero and back (`auto_stop`).
    pub services: Arc<dyn resources::ServicePower>,
    /// RDS DB instances (`resource_scan`, `auto_stop`).
    pub databases: Arc<dyn resources::Databases>,
    /// CloudWatch metrics (`resource_scan`: CPU, connections).
    pub metrics: Arc<dyn resources::Metrics>,
    /// Other accounts' resource ports, through an assumed role (`resource_scan`, `auto_stop`).
    pub accounts: Arc<dyn resources::Accounts>,
    /// The operator's disk (`states` reads its definition files when the service starts).
    pub files: Arc<dyn files::LocalFiles>,
    /// Single items of any DynamoDB table (`states`' DynamoDB tasks).
    pub items: Arc<dyn items::Items>,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ports")
            .field("notifier", &self.notifier)
            .field("ecs", &self.ecs)
            .finish_non_exhaustive()
    }
}

impl Ports {
    /// In-memory versions of every port, for tests and benchmarks; replace the ones a test
    /// scripts with `Ports { ecs: …, ..Ports::memory() }`.
    pub fn memory() -> Ports {
        let inventory = Arc::new(memory::MemoryInventory::default());
        Ports {
            notifier: Arc::new(memory::MemoryNotifier::default()),
            ecs: Arc::new(memory::MemoryEcs::default()),
            targets: Arc::new(memory::MemoryTargets::default()),
            mqtt: Arc::new(memory::MemoryMqtt::default()),
            http: Arc::new(memory::MemoryHttp::default()),
            objects: Arc::new(memory::MemoryObjects::default()),
            costs: Arc::new(memory::MemoryCosts::default()),
            clock: Arc::new(clock::TokioClock::new()),
            lifecycle: Arc::new(memory::MemoryLifecycle::default()),
            queues: Arc::new(memory::MemoryQueues::default()),
            inventory: inventory.clone(),
            power: inventory.clone(),
            services: inventory.clone(),
            databases: inventory.clone(),
            metrics: inventory,
            accounts: Arc::new(memory::MemoryAccounts::default()),
            findings: Arc::new(memory::MemoryFindings::default()),
            files: Arc::new(files::Disk),
            items: Arc::new(memory::MemoryItems::default()),
        }
    }
}
