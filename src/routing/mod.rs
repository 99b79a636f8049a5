//! Routing: EventBridge event patterns, compiled once at config load, matched per event.
//!
//! [`pattern`] owns the pattern language; this file holds the compiled routes. Routing knows
//! nothing of the configuration: `config` compiles the patterns and hands over [`Route`]s.

pub mod pattern;

use serde_json::Value;

use crate::events::doc::{Doc, Leaf};

pub use pattern::{Check, Pattern, PatternError};

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
    /// Every route's index, in order.
    everything: Vec<usize>,
    /// Each route's pattern as checks on single paths (indices into `slots`), when it is a
    /// plain conjunction ([`Pattern::checks`]); `None` for one with `$or`.
    checks: Vec<Option<Vec<(usize, Check)>>>,
    /// For a route indexed by `source`: which of its checks is the `source` one, passed
    /// already when the route was found through the index.
    source_check: Vec<Option<usize>>,
    /// The paths the checks read: each looked up at most once per event.
    slots: Vec<Vec<String>>,
    /// Every field path some route reads, and those that tell an event's shape: what
    /// [`Router::matches_nothing`] parses.
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
        let mut paths = crate::events::peek::Paths::new();
        for r in &routes {
            for p in r.pattern.paths() {
                paths.add(&p);
            }
        }
        let mut slots: Vec<Vec<String>> = Vec::new();
        let checks = routes
            .iter()
            .map(|r| {
                let checks = r.pattern.checks()?;
                Some(
                    checks
                        .into_iter()
                        .map(|(path, check)| {
                            let slot = match slots.iter().position(|p| *p == path) {
                                Some(at) => at,
                                None => {
                                    slots.push(path);
                                    slots.len() - 1
                                }
                            };
                            (slot, check)
                        })
                        .collect(),
                )
            })
            .collect();
        let source = slots.iter().position(|p| p.len() == 1 && p[0] == "source");
        let source_check = routes
            .iter()
            .zip(&checks)
            .map(|(r, checks): (&Route, &Option<Vec<(usize, Check)>>)| {
                r.pattern.required_strings("source")?;
                checks
                    .as_ref()?
                    .iter()
                    .position(|(slot, _)| Some(*slot) == source)
            })
            .collect();
        Router {
            everything: (0..routes.len()).collect(),
            checks,
            source_check,
            slots,
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

    /// The routes on `queue` that the message `body` matches, judged from only the fields
    /// the routes read, when it is a plain EventBridge event (as `events::decode` takes
    /// it); `None` when not certain: then decode and route it whole. The event itself is
    /// not built: a workflow that starts parses it.
    pub fn matching_body(&self, queue: &str, body: &str) -> Option<Vec<&Route>> {
        let event = crate::events::peek::peek(body, &self.paths)?;
        Some(self.matching(queue, &event).collect())
    }

    /// The routes on `queue` whose pattern matches `event`, in configuration order.
    pub fn matching<'a: 'e, 'e, D: Doc>(
        &'a self,
        queue: &'e str,
        event: &'e D,
    ) -> impl Iterator<Item = &'a Route> + 'e {
        // Only the routes that can match this event's source are evaluated. An event whose
        // source is not a string (an array, say) is checked against every route.
        // Found through the index, a route's `source` check has passed.
        let (candidates, source_known): (&'a [usize], bool) =
            match event.field("source").map(Doc::leaf) {
                Some(Some(Leaf::Str(s))) => match self.by_source.get(s) {
                    Some(list) => (list, true),
                    None => (&self.unindexed, false),
                },
                None => (&self.unindexed, false),
                Some(_) => (&self.everything, false),
            };
        let mut found: Vec<Option<Slot<'e, D>>> = vec![None; self.slots.len()];
        candidates.iter().filter_map(move |&i| {
            let r = &self.routes[i];
            let on_queue = r
                .queues
                .as_ref()
                .is_none_or(|qs| qs.iter().any(|q| q == queue));
            (on_queue && self.route_matches(i, event, source_known, &mut found)).then_some(r)
        })
    }

    /// Whether route `i` matches `event`: by its checks, each path looked up once per event
    /// (`found`), unless an array lies on the way to one; then by its whole pattern.
    fn route_matches<'e, D: Doc>(
        &self,
        i: usize,
        event: &'e D,
        source_known: bool,
        found: &mut [Option<Slot<'e, D>>],
    ) -> bool {
        let Some(checks) = &self.checks[i] else {
            return self.routes[i].pattern.matches(event);
        };
        let passed = if source_known {
            self.source_check[i]
        } else {
            None
        };
        for (n, (slot, check)) in checks.iter().enumerate() {
            if passed == Some(n) {
                continue;
            }
            let value = *found[*slot].get_or_insert_with(|| Slot::find(event, &self.slots[*slot]));
            let passes = match value {
                Slot::Absent => check.matches::<D>(None),
                Slot::At(v) => check.matches(Some(v)),
                Slot::Crossed => return self.routes[i].pattern.matches(event),
            };
            if !passes {
                return false;
            }
        }
        true
    }
}

/// What is at a path of an event.
enum Slot<'e, D> {
    /// Nothing: a key is missing, or a value on the way is not an object.
    Absent,
    At(&'e D),
    /// An array on the way: the path's value depends on the element (array consistency).
    Crossed,
}

impl<D> Clone for Slot<'_, D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<D> Copy for Slot<'_, D> {}

impl<'e, D: Doc> Slot<'e, D> {
    fn find(event: &'e D, path: &[String]) -> Slot<'e, D> {
        let mut at = event;
        for key in path {
            if at.items().is_some() {
                return Slot::Crossed;
            }
            match at.field(key) {
                Some(v) => at = v,
                None => return Slot::Absent,
            }
        }
        Slot::At(at)
    }
}

#[cfg(test)]
mod tests;
