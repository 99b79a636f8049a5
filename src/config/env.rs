//! Environment overrides: `TUGBOAT__AWS__ENDPOINT_URL=http://…` sets `aws.endpoint_url`.
//!
//! Segments are separated by `__` and lower-cased; a numeric segment indexes an array
//! (`TUGBOAT__QUEUES__0__CONCURRENCY=4`). The value keeps the type of the value it replaces
//! (a string stays a string even if it looks like a number); a new key takes the TOML literal
//! if the value parses as one (`true`, `4`, `["a","b"]`), else the text as a string.

use toml::Value;

/// Variables starting with this prefix override config keys.
pub const ENV_PREFIX: &str = "TUGBOAT__";

pub struct OverrideError {
    pub key: String,
    pub message: String,
}

/// Applies every `TUGBOAT__…` variable of `env` to `root`; returns (variable, key path) pairs.
pub fn apply_overrides(
    root: &mut Value,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>, OverrideError> {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    // Sorted so that the outcome does not depend on the order of the process environment.
    vars.sort();
    let mut applied = Vec::new();
    for (var, raw) in vars {
        let segments: Vec<String> = var[ENV_PREFIX.len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(OverrideError {
                key: var.clone(),
                message: "environment variable has an empty key segment".into(),
            });
        }
        let path = display_path(&segments);
        set(root, &segments, &raw).map_err(|message| OverrideError {
            key: path.clone(),
            message: format!("{message} (set by environment variable {var})"),
        })?;
        applied.push((var, path));
    }
    Ok(applied)
}

fn display_path(segments: &[String]) -> String {
    let mut out = String::new();
    for s in segments {
        if s.parse::<usize>().is_ok() {
            out.push_str(&format!("[{s}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(s);
        }
    }
    out
}

fn set(node: &mut Value, segments: &[String], raw: &str) -> Result<(), String> {
    let (head, rest) = segments.split_first().expect("segments is not empty");
    let child = match node {
        Value::Table(table) => {
            if rest.is_empty() {
                let new = typed_like(table.get(head), raw)?;
                table.insert(head.clone(), new);
                return Ok(());
            }
            table
                .entry(head.clone())
                .or_insert_with(|| Value::Table(Default::default()))
        }
        Value::Array(items) => {
            let index: usize = head
                .parse()
                .map_err(|_| format!("{head:?} is not an index into an array"))?;
            let len = items.len();
            let item = items
                .get_mut(index)
                .ok_or_else(|| format!("index {index} is out of range (the array has {len})"))?;
            if rest.is_empty() {
                *item = typed_like(Some(item), raw)?;
                return Ok(());
            }
            item
        }
        _ => {
            return Err(format!(
                "cannot set {head:?} inside a value that is not a table"
            ));
        }
    };
    set(child, rest, raw)
}

fn typed_like(old: Option<&Value>, raw: &str) -> Result<Value, String> {
    let literal = || {
        toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
    };
    Ok(match old {
        Some(Value::String(_)) | None => match old {
            None => literal().unwrap_or_else(|| Value::String(raw.to_owned())),
            _ => Value::String(raw.to_owned()),
        },
        Some(Value::Integer(_)) => Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| format!("expected an integer, got {raw:?}"))?,
        ),
        Some(Value::Float(_)) => Value::Float(
            raw.trim()
                .parse()
                .map_err(|_| format!("expected a number, got {raw:?}"))?,
        ),
        Some(Value::Boolean(_)) => Value::Boolean(match raw.trim() {
            "true" => true,
            "false" => false,
            _ => return Err(format!("expected true or false, got {raw:?}")),
        }),
        Some(_) => literal().ok_or_else(|| format!("expected a TOML value, got {raw:?}"))?,
    })
}
