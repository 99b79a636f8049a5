//! tugboat consumes AWS SQS queues and runs every event as a supervised, durable workflow.
//!
//! The layout, outside in (ARCHITECTURE.md has the invariants):
//!
//! - [`cli`] parses the command line and maps failures to exit codes.
//! - [`config`] is the one typed configuration tree, validated once at start.
//! - [`migrate`] reads the declarative migrations; [`aws::migrate`] applies them.
//! - [`app`] builds the service from config and its dependencies and runs it (`serve`, tests
//!   and benchmarks all go through it).
//! - [`intake`] polls a queue, keeps its messages invisible while they run, and settles them.
//! - [`events`] decodes message bodies; [`routing`] matches events against routes.
//! - [`engine`] runs workflow instances durably: dispatcher and runner, over the [`journal`].
//! - [`contract`] is what a workflow and the engine agree on; it imports nothing of the crate.
//! - [`workflows`] holds one folder per workflow: a pure state machine and its handlers.
//! - [`ports`] are the narrow traits over outside services, with in-memory fakes.
//! - [`aws`] implements the ports over the AWS SDK; it is the only module that names SDK types.
//!   [`mqtt`] (rumqttc) and [`http`] (reqwest) implement the MQTT and HTTP destination ports.
//! - [`actors`] gives the intake and the instances their supervised actix lifecycle.
//! - [`admin`] is the admin listener: health, metrics, and the operators' console and its
//!   JSON API; [`operate`] holds what operators do (dead letters, retries) for the console
//!   and the CLI alike.
//! - [`signing`] signs and checks what only tugboat or its agent may say (control attributes,
//!   agent and peer notices).

pub mod actors;
pub mod admin;
pub mod agent;
pub mod app;
pub mod aws;
pub mod cli;
pub mod config;
pub mod contract;
pub mod engine;
pub mod events;
pub mod failpoint;
pub mod html;
pub mod http;
pub mod ingress;
pub mod intake;
pub mod journal;
pub mod metrics;
pub mod migrate;
pub mod mqtt;
pub mod operate;
pub mod ports;
pub mod routing;
pub mod schedule;
pub mod signing;
pub mod telemetry;
pub mod workflows;
