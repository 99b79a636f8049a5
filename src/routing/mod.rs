//! Routing: EventBridge event patterns, compiled once at config load, matched per event.
//!
//! [`pattern`] owns the pattern language; this file holds the compiled routes. Routing knows
//! nothing of the configuration: `config` compiles the patterns and hands over [`Route`]s.

pub mod pattern;

use serde_json::Value;

pub use pattern::{Pattern, PatternError};

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
    /// A route on every queue, with no params.
    pub fn new(name: &str, pattern: Pattern, workflow: &str) -> Route {
        Route {
            name: name.to_owned(),
            workflow: workflow.to_owned(),
            params: Value::Object(Default::default()),
            queues: None,
            pattern,
        }
    }

    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }
}

/// Every configured route, compiled, and indexed by the exact `source` values they require.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
    /// For each `source` some route requires exactly: the routes that can match an event of
    /// that source (those requiring it, and those not constrained by source), in order.
    by_source: std::collections::HashMap<String, Vec<usize>>,
    /// The routes that do not require an exact `source`.
    unindexed: Vec<usize>,
    /// Every field path some route reads: what [`Router::matches_nothing`] parses.
    paths: crate::events::peek::Paths,
}

impl Router {
    /// The router of `routes`, in their order.
    pub fn new(routes: Vec<Route>) -> Router {
        Router::index(routes)
    }

    fn index(routes: Vec<Route>) -> Router {
        let mut by_source: std::collections::HashMap<String, Vec<usize>> = Default::default();
        let mut unindexed = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            match r.pattern.required_strings("source") {
                Some(sources) => {
                    for s in sources {
                        by_source.entry(s.to_owned()).or_default().push(i);
                    }
                }
                None => unindexed.push(i),
            }
        }
        for list in by_source.values_mut() {
            list.extend(&unindexed);
            list.sort_unstable();
            list.dedup();
        }
        let mut paths = crate::events::peek::Paths::default();
        for r in &routes {
            for p in r.pattern.paths() {
                paths.add(&p);
            }
        }
        Router {
            routes,
            by_source,
            unindexed,
            paths,
        }
    }

    /// Every route, in configuration order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Whether the message `body` certainly starts nothing on `queue`: it is a plain
    /// EventBridge event (as `events::decode` takes it) and no route matches it, judged from
    /// only the fields the routes read ([`crate::events::peek`]), without parsing the rest.
    /// `false` when not certain: then decode and route it whole.
    pub fn matches_nothing(&self, queue: &str, body: &str) -> bool {
        crate::events::peek::peek(body, &self.paths)
            .is_some_and(|event| self.matching(queue, &event).next().is_none())
    }

    /// The routes on `queue` whose pattern matches `event`, in configuration order.
    pub fn matching<'a>(
        &'a self,
        queue: &'a str,
        event: &'a Value,
    ) -> impl Iterator<Item = &'a Route> + 'a {
        // Only the routes that can match this event's source are evaluated. An event whose
        // source is not a string (an array, say) is checked against every route.
        let candidates: Box<dyn Iterator<Item = usize> + 'a> = match event.get("source") {
            Some(Value::String(s)) => match self.by_source.get(s) {
                Some(list) => Box::new(list.iter().copied()),
                None => Box::new(self.unindexed.iter().copied()),
            },
            None => Box::new(self.unindexed.iter().copied()),
            Some(_) => Box::new(0..self.routes.len()),
        };
        candidates.map(|i| &self.routes[i]).filter(move |r| {
            r.queues
                .as_ref()
                .is_none_or(|qs| qs.iter().any(|q| q == queue))
                && r.pattern.matches(event)
        })
    }
}

#[cfg(test)]
mod tests;
