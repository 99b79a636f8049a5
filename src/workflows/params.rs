//! Checks shared by the workflows whose route params name things (`mqtt_publish`'s broker,
//! `http_deliver`'s destination): unknown params, and a name that must be one configured.

use std::time::Duration;

use serde_json::Value;

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
