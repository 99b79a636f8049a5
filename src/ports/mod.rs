//! Ports: one narrow trait per outside service. Only `src/aws/` (and later the MQTT and HTTP
//! adapters) implement them over real clients; [`memory`] has in-memory versions for unit
//! tests and benchmarks.

pub mod ecs;
pub mod memory;
pub mod notifier;
pub mod queue;

pub use ecs::{Ecs, RunTaskRequest, TargetGroups, TargetHealth, TaskStatus};
pub use notifier::Notifier;
pub use queue::{BatchFailure, OutgoingMessage, Queue, QueueError, ReceivedMessage};
