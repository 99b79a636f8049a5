//! Routing: EventBridge event patterns, compiled once at config load, matched per event.
//!
//! [`pattern`] owns the pattern language; this file holds the compiled routes.

pub mod pattern;

use serde_json::Value;

pub use pattern::{Pattern, PatternError};

use crate::config::RouteConfig;

/// A compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub workflow: String,
    pub params: Value,
    /// The queues it applies to; `None` for all.
    pub queues: Option<Vec<String>>,
    pattern: Pattern,
}

impl Route {
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }
}

/// Every configured route, compiled.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// Compiles the configured routes (already validated by config loading).
    pub fn from_config(routes: &[RouteConfig]) -> Result<Router, String> {
        let mut out = Vec::with_capacity(routes.len());
        for r in routes {
            let json = r
                .pattern
                .to_json()
                .map_err(|e| format!("route {:?}: {e}", r.name))?;
            let pattern =
                Pattern::compile(&json).map_err(|e| format!("route {:?}: {e}", r.name))?;
            out.push(Route {
                name: r.name.clone(),
                workflow: r.workflow.clone(),
                params: serde_json::to_value(&r.params)
                    .map_err(|e| format!("route {:?}: params: {e}", r.name))?,
                queues: r.queues.clone(),
                pattern,
            });
        }
        Ok(Router { routes: out })
    }

    /// Every route, in configuration order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The routes on `queue` whose pattern matches `event`, in configuration order.
    pub fn matching<'a>(
        &'a self,
        queue: &'a str,
        event: &'a Value,
    ) -> impl Iterator<Item = &'a Route> + 'a {
        self.routes.iter().filter(move |r| {
            r.queues
                .as_ref()
                .is_none_or(|qs| qs.iter().any(|q| q == queue))
                && r.pattern.matches(event)
        })
    }
}

#[cfg(test)]
mod tests;
