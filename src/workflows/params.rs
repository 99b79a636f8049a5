//! Checks shared by the workflows whose route params name things (`mqtt_publish`'s broker,
//! `http_deliver`'s destination): unknown params, and a name that must be one configured.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// Route params parsed once: a workflow keeps the parse of each distinct params value it is
/// started with (a route's params do not change while the service runs), so that a delivery
/// does not parse its route's templates again for every event.
pub struct Parsed<T> {
    seen: Mutex<Vec<(Value, Arc<T>)>>,
}

/// More distinct params than this are parsed each time (they come from the routes: a
/// service has few).
const PARSED_KEPT: usize = 256;

impl<T> Default for Parsed<T> {
    fn default() -> Self {
        Parsed {
            seen: Mutex::new(Vec::new()),
        }
    }
}

impl<T> std::fmt::Debug for Parsed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parsed").finish_non_exhaustive()
    }
}

impl<T> Parsed<T> {
    /// The parse of `params`, from `parse` the first time.
    pub fn get_or(
        &self,
        params: &Value,
        parse: impl FnOnce() -> Result<T, String>,
    ) -> Result<Arc<T>, String> {
        let lock = || self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, p)) = lock().iter().find(|(v, _)| v == params) {
            return Ok(p.clone());
        }
        let parsed = Arc::new(parse()?);
        let mut seen = lock();
        if seen.len() < PARSED_KEPT {
            seen.push((params.clone(), parsed.clone()));
        }
        Ok(parsed)
    }
}

/// The default `poll_interval` of the ECS workflows' waits (5 s).
pub fn default_poll_interval() -> Duration {
    Duration::from_secs(5)
}

/// The default bound of an ECS wait (`running_timeout`, `healthy_timeout`,
/// `deregistration_timeout`): 5 minutes, the seed plan's figure.
pub fn default_wait_timeout() -> Duration {
    Duration::from_secs(300)
}

/// Refuses a param that `kind` does not take (a typo would otherwise be silently ignored).
pub fn only_known(params: &Value, kind: &str, known: &[&str]) -> Result<(), String> {
    if let Some(obj) = params.as_object()
        && let Some(unknown) = obj.keys().find(|k| !known.contains(&k.as_str()))
    {
        return Err(format!(
            "unknown param {unknown:?}; {kind} takes {}",
            known.join(", ")
        ));
    }
    Ok(())
}

/// `params.<key>`, which must name one of `configured` (the `[section.NAME]` tables); when
/// absent, the only configured one.
pub fn configured_name(
    params: &Value,
    key: &str,
    configured: &[String],
    section: &str,
) -> Result<String, String> {
    let listed = || {
        if configured.is_empty() {
            "none".to_string()
        } else {
            configured.join(", ")
        }
    };
    match params.get(key) {
        Some(Value::String(name)) if configured.contains(name) => Ok(name.clone()),
        Some(Value::String(name)) => Err(format!(
            "params.{key} {name:?} is not configured; configured {section}: {}",
            listed()
        )),
        Some(other) => Err(format!("params.{key} must be a name, got {other}")),
        None => match configured {
            [only] => Ok(only.clone()),
            _ => Err(format!(
                "params.{key} is required when there is not exactly one [{section}.NAME]; configured: {}",
                listed()
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_are_parsed_once_per_distinct_value() {
        let parsed: Parsed<String> = Parsed::default();
        let mut parses = 0;
        for _ in 0..3 {
            let p = parsed.get_or(&json!({"a": 1}), || {
                parses += 1;
                Ok("one".into())
            });
            assert_eq!(*p.unwrap(), "one");
        }
        assert_eq!(parses, 1);
        let other = parsed.get_or(&json!({"a": 2}), || Ok("two".to_string()));
        assert_eq!(*other.unwrap(), "two");
        // A refusal is not kept: the next asks again (and is refused again).
        assert!(
            parsed
                .get_or(&json!({"b": 1}), || Err("no".into()))
                .is_err()
        );
        assert!(
            parsed
                .get_or(&json!({"b": 1}), || Err("no".into()))
                .is_err()
        );
    }

    #[test]
    fn names_and_unknown_params() {
        let one = vec!["a".to_string()];
        assert_eq!(
            configured_name(&json!({}), "broker", &one, "brokers").unwrap(),
            "a"
        );
        let e = configured_name(&json!({"broker": "b"}), "broker", &one, "brokers").unwrap_err();
        assert!(
            e.contains("\"b\" is not configured; configured brokers: a"),
            "{e}"
        );
        assert!(configured_name(&json!({"broker": 1}), "broker", &one, "brokers").is_err());
        let e = configured_name(&json!({}), "broker", &[], "brokers").unwrap_err();
        assert!(e.contains("configured: none"), "{e}");
        assert!(only_known(&json!({"a": 1}), "k", &["a"]).is_ok());
        let e = only_known(&json!({"b": 1}), "k", &["a"]).unwrap_err();
        assert_eq!(e, "unknown param \"b\"; k takes a");
    }
}
