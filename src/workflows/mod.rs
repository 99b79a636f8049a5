//! Workflows: one folder each, holding its input and state types and its pure transition
//! function. This file is the registry of workflow kinds that routes can name.

use crate::config::KnownWorkflows;

/// The workflow kinds this build of tugboat can run, as routes name them.
pub const KINDS: &[&str] = &["log"];

/// The registry handed to config validation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Registry;

impl KnownWorkflows for Registry {
    fn is_known(&self, kind: &str) -> bool {
        KINDS.contains(&kind)
    }

    fn names(&self) -> Vec<&'static str> {
        KINDS.to_vec()
    }
}
