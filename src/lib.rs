//! tugboat consumes AWS SQS queues and runs every event as a supervised, durable workflow.
//!
//! The layout, outside in (ARCHITECTURE.md has the invariants):
//!
//! - [`cli`] parses the command line and maps failures to exit codes.
//! - [`config`] is the one typed configuration tree, validated once at start.
//! - [`migrate`] reads the declarative migrations; [`aws::migrate`] applies them.
//! - [`routing`] compiles EventBridge patterns and matches events against routes.
//! - [`workflows`] holds one folder per workflow: pure state machines, no I/O.
//! - [`ports`] are the narrow traits over outside services, with in-memory fakes.
//! - [`aws`] implements the ports over the AWS SDK; it is the only module that names SDK types.

pub mod actors;
pub mod admin;
pub mod app;
pub mod aws;
pub mod cli;
pub mod config;
pub mod engine;
pub mod events;
pub mod failpoint;
pub mod migrate;
pub mod ports;
pub mod routing;
pub mod workflows;

pub mod journal;
pub mod retry;
