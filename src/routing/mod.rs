//! Routing: EventBridge event patterns, compiled once at config load, matched per event.
//!
//! This module owns the pattern language. It supports today exact matching of strings,
//! numbers, booleans and null, any-of value lists, nested objects, several fields (AND), and
//! array-valued event fields (match when any element matches). The full language (prefix,
//! suffix, anything-but, numeric, exists, cidr, wildcard, `$or`, …) is issue 4's.

use serde_json::Value;

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

/// A compiled event pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    fields: Vec<(String, Matcher)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Matcher {
    /// The event's value (or any element of it, if it is an array) equals one of these.
    AnyOf(Vec<Value>),
    Nested(Pattern),
}

/// Why a pattern was refused; `path` is where inside the pattern, such as `detail.state`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid pattern at {path}: {message}")]
pub struct PatternError {
    pub path: String,
    pub message: String,
}

impl Pattern {
    /// Compiles a pattern, refusing what EventBridge would refuse.
    pub fn compile(pattern: &Value) -> Result<Pattern, PatternError> {
        Self::compile_at(pattern, "")
    }

    fn compile_at(pattern: &Value, path: &str) -> Result<Pattern, PatternError> {
        let here = |message: String| PatternError {
            path: if path.is_empty() {
                "(top)".into()
            } else {
                path.into()
            },
            message,
        };
        let Value::Object(map) = pattern else {
            return Err(here(format!(
                "a pattern must be a JSON object, got {pattern}"
            )));
        };
        if map.is_empty() && path.is_empty() {
            return Err(here("a pattern needs at least one field".into()));
        }
        let mut fields = Vec::with_capacity(map.len());
        for (key, value) in map {
            let child = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            let matcher = match value {
                Value::Object(_) => Matcher::Nested(Self::compile_at(value, &child)?),
                Value::Array(values) => {
                    if values.is_empty() {
                        return Err(PatternError {
                            path: child,
                            message: "an empty list matches nothing".into(),
                        });
                    }
                    if let Some(op) = values.iter().find(|v| v.is_object() || v.is_array()) {
                        return Err(PatternError {
                            path: child,
                            message: format!(
                                "unsupported matcher {op} (only exact values are supported)"
                            ),
                        });
                    }
                    Matcher::AnyOf(values.clone())
                }
                other => {
                    return Err(PatternError {
                        path: child,
                        message: format!("match values must be in a list, got {other}"),
                    });
                }
            };
            fields.push((key.clone(), matcher));
        }
        Ok(Pattern { fields })
    }

    /// Whether `event` matches every field of the pattern.
    pub fn matches(&self, event: &Value) -> bool {
        self.fields.iter().all(|(key, matcher)| {
            let Some(value) = event.get(key) else {
                return false;
            };
            match matcher {
                Matcher::Nested(inner) => match value {
                    Value::Array(items) => items.iter().any(|i| inner.matches(i)),
                    other => inner.matches(other),
                },
                Matcher::AnyOf(wanted) => match value {
                    Value::Array(items) => items.iter().any(|i| wanted.iter().any(|w| same(w, i))),
                    other => wanted.iter().any(|w| same(w, other)),
                },
            }
        })
    }
}

/// Equality as EventBridge sees it: numbers compare by value (`5` matches `5.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(pattern: Value, event: Value, expected: bool) {
        let p = Pattern::compile(&pattern).expect("pattern compiles");
        assert_eq!(
            p.matches(&event),
            expected,
            "pattern {pattern} on event {event}"
        );
    }

    #[test]
    fn exact_fields_nested_and_arrays() {
        let event = json!({"source":"custom.app","detail-type":"Start ECS Task",
            "detail":{"service":"auth","n":5,"tags":["a","b"]},"resources":[]});
        check(json!({"source":["custom.app"]}), event.clone(), true);
        check(json!({"source":["other"]}), event.clone(), false);
        check(
            json!({"detail":{"service":["auth","web"]}}),
            event.clone(),
            true,
        );
        check(json!({"detail":{"n":[5.0]}}), event.clone(), true);
        check(json!({"detail":{"tags":["b"]}}), event.clone(), true);
        check(json!({"detail":{"missing":["x"]}}), event.clone(), false);
        check(
            json!({"source":["custom.app"],"detail-type":["Nope"]}),
            event,
            false,
        );
    }

    #[test]
    fn refuses_malformed_patterns_naming_the_path() {
        for (pattern, path) in [
            (json!([]), "(top)"),
            (json!({}), "(top)"),
            (json!({"source":"custom.app"}), "source"),
            (json!({"detail":{"state":[]}}), "detail.state"),
            (
                json!({"detail":{"state":[{"unknown-op":1}]}}),
                "detail.state",
            ),
        ] {
            let err = Pattern::compile(&pattern).unwrap_err();
            assert_eq!(err.path, path, "{pattern}");
        }
    }
}
