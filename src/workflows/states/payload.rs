//! Payload templates (`Parameters`, `ResultSelector`, `ItemSelector`): JSON whose fields
//! ending in `.$` take their value from a path or an intrinsic call, evaluated against the
//! state's input and the context object; everything else is copied as written.

use serde_json::{Map, Value};

use super::intrinsic::{Call, Draw, is_call};
use super::path::Path;

/// A template, checked when the definition loads.
#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    Literal(Value),
    Object(Vec<(String, Field)>),
    Array(Vec<Template>),
}

/// One field of an object template.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Template(Template),
    Path(Path),
    Call(Call),
}

impl Template {
    /// Parses `v` found at JSON pointer `at`; an error names the field's pointer.
    pub fn parse(v: &Value, at: &str) -> Result<Template, String> {
        Ok(match v {
            Value::Object(o) => {
                let mut fields = Vec::with_capacity(o.len());
                for (k, value) in o {
                    let here = format!("{at}/{}", pointer_escape(k));
                    match k.strip_suffix(".$") {
                        Some(name) => {
                            let text = value.as_str().ok_or_else(|| format!("{here}: a field ending in .$ must be a path or an intrinsic call"))?;
                            let field = if is_call(text) {
                                Field::Call(Call::parse(text).map_err(|e| format!("{here}: {e}"))?)
                            } else {
                                Field::Path(Path::parse(text).map_err(|e| format!("{here}: {e}"))?)
                            };
                            fields.push((name.to_string(), field));
                        }
                        None => fields.push((k.clone(), Field::Template(Template::parse(value, &here)?))),
                    }
                }
                Template::Object(fields)
            }
            Value::Array(a) => Template::Array(
                a.iter().enumerate().map(|(i, v)| Template::parse(v, &format!("{at}/{i}"))).collect::<Result<_, _>>()?,
            ),
            other => Template::Literal(other.clone()),
        })
    }

    /// The payload for `input`; an error is a `States.Runtime` (a path naming nothing) or a
    /// `States.IntrinsicFailure` message, with the field's name.
    pub fn render(&self, input: &Value, context: &Value, draw: Draw<'_>) -> Result<Value, Failure> {
        Ok(match self {
            Template::Literal(v) => v.clone(),
            Template::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for t in items {
                    out.push(t.render(input, context, draw)?);
                }
                Value::Array(out)
            }
            Template::Object(fields) => {
                let mut out = Map::new();
                for (name, field) in fields {
                    let value = match field {
                        Field::Template(t) => t.render(input, context, draw)?,
                        Field::Path(p) => p.select(input, context).ok_or_else(|| {
                            Failure::Runtime(format!("The JsonPath argument for the field '{name}.$' could not be found in the input: {}", p.text))
                        })?,
                        Field::Call(c) => c.eval(input, context, draw).map_err(|e| Failure::Intrinsic(format!("{name}.$: {e}")))?,
                    };
                    out.insert(name.clone(), value);
                }
                Value::Object(out)
            }
        })
    }
}

/// Why a template or path could not be evaluated, as the States Language names it.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// `States.Runtime`.
    Runtime(String),
    /// `States.IntrinsicFailure`.
    Intrinsic(String),
}

impl Failure {
    pub fn error(&self) -> &'static str {
        match self {
            Failure::Runtime(_) => "States.Runtime",
            Failure::Intrinsic(_) => "States.IntrinsicFailure",
        }
    }

    pub fn cause(&self) -> &str {
        match self {
            Failure::Runtime(c) | Failure::Intrinsic(c) => c,
        }
    }
}

/// A JSON pointer's escaping of one key (RFC 6901).
pub fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_copy_literals_and_fill_paths_and_calls() {
        let t = Template::parse(
            &json!({"static": {"a": [1, {"x.$": "$.n"}]}, "id.$": "$$.Execution.Id", "msg.$": "States.Format('n={}', $.n)"}),
            "/States/P/Parameters",
        )
        .unwrap();
        let mut draw = || 4u64;
        let out = t.render(&json!({"n": 3}), &json!({"Execution": {"Id": "e-1"}}), &mut draw).unwrap();
        assert_eq!(out, json!({"static": {"a": [1, {"x": 3}]}, "id": "e-1", "msg": "n=3"}));
        let missing = Template::parse(&json!({"a": [{"x.$": "$.n"}]}), "/P").unwrap();
        let e = missing.render(&json!({}), &json!({}), &mut draw).unwrap_err();
        assert_eq!(e.error(), "States.Runtime");
        assert!(e.cause().contains("'x.$'"), "{e:?}");
        let e = t.render(&json!({}), &json!({"Execution": {"Id": "e"}}), &mut draw).unwrap_err();
        assert_eq!(e.error(), "States.IntrinsicFailure");
        assert!(e.cause().starts_with("msg.$: States.Format"), "{e:?}");
    }

    #[test]
    fn bad_templates_name_the_field() {
        for (v, says) in [
            (json!({"a.$": 3}), "/P/a.$: a field ending in .$ must be"),
            (json!({"a": {"b/c.$": "nope"}}), "/P/a/b~1c.$: \"nope\" is not a path"),
            (json!({"a.$": "States.Nope()"}), "/P/a.$: \"States.Nope()\""),
            (json!([{"a.$": "$$$"}]), "/P/0/a.$"),
        ] {
            let e = Template::parse(&v, "/P").unwrap_err();
            assert!(e.contains(says), "{v}: {e}");
        }
    }
}
