//! Templates with `{…}` holes filled from an event, shared by the delivering workflows
//! (`mqtt_publish` topics and bodies, `http_deliver` bodies).
//!
//! A hole is a path into the event, dot-separated, a number indexing an array
//! (`{detail.instance-id}`, `{resources.0}`), followed by filters:
//!
//! | filter | does |
//! |---|---|
//! | `map:NAME` | looks the value up in the route's value map `NAME` (`"_"` is its default); a value the map lacks fails the event |
//! | `basename` | keeps what follows the last `/` (an ARN's resource id: `spot-fleet-request/sfr-1` → `sfr-1`) |
//! | `lower`, `upper` | changes case |
//!
//! `{{` and `}}` are literal braces. A template that does not parse, or names a map the route
//! does not define, is refused while the configuration loads; a hole the event cannot fill
//! fails that event for good, naming the field.
//!
//! A body template is JSON whose string leaves are templates; a leaf that is exactly one hole
//! (`"{detail}"`) takes the event's value as it is (an object stays an object).

use std::collections::BTreeMap;

use serde_json::Value;

/// Value maps by name: `maps.state = { running = "up", _ = "other" }`.
pub type Maps = BTreeMap<String, BTreeMap<String, String>>;

/// A parsed text template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Hole(Hole),
}

#[derive(Debug, Clone, PartialEq)]
struct Hole {
    /// As written between the braces, for messages.
    written: String,
    path: Vec<String>,
    filters: Vec<Filter>,
}

#[derive(Debug, Clone, PartialEq)]
enum Filter {
    Map(String),
    Basename,
    Lower,
    Upper,
}

impl Template {
    /// Parses `text`; `maps` are the value maps the route defines (a `map:` filter must name
    /// one of them).
    pub fn parse(text: &str, maps: &Maps) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|&(_, c)| c) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|&(_, c)| c) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => {
                    return Err(format!(
                        "unmatched '}}' at byte {at} of {text:?} (write '}}}}' for a brace)"
                    ));
                }
                '{' => {
                    let mut inner = String::new();
                    let mut closed = false;
                    for (_, c) in chars.by_ref() {
                        match c {
                            '}' => {
                                closed = true;
                                break;
                            }
                            '{' => {
                                return Err(format!("a hole inside a hole in {text:?}"));
                            }
                            c => inner.push(c),
                        }
                    }
                    if !closed {
                        return Err(format!("unclosed '{{' at byte {at} of {text:?}"));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Hole(Hole::parse(&inner, maps)?));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// The text with every hole filled from `event`, or why it cannot be (a field the event
    /// lacks, a value that is not text, a value a map does not know).
    pub fn render(&self, event: &Value, maps: &Maps) -> Result<String, String> {
        self.render_with(event, maps, |_, v| Ok(v))
    }

    /// Like [`Template::render`], with `check(hole, value)` vetting each filled value (an MQTT
    /// topic refuses values that would add levels).
    pub fn render_with(
        &self,
        event: &Value,
        maps: &Maps,
        check: impl Fn(&str, String) -> Result<String, String>,
    ) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Hole(h) => out.push_str(&check(&h.written, h.fill(event, maps)?)?),
            }
        }
        Ok(out)
    }

    /// The template when it is exactly one hole without filters: its path.
    fn single_path(&self) -> Option<&[String]> {
        match self.parts.as_slice() {
            [Part::Hole(h)] if h.filters.is_empty() => Some(&h.path),
            _ => None,
        }
    }
}

impl Hole {
    fn parse(inner: &str, maps: &Maps) -> Result<Hole, String> {
        let written = inner.to_string();
        let mut pieces = inner.split('|');
        let path_text = pieces.next().unwrap_or_default().trim();
        if path_text.is_empty() {
            return Err(format!(
                "empty hole {{{inner}}}: name a field such as {{detail.state}}"
            ));
        }
        let path: Vec<String> = path_text.split('.').map(|s| s.trim().to_string()).collect();
        if path.iter().any(|s| s.is_empty()) {
            return Err(format!("hole {{{inner}}} has an empty path segment"));
        }
        let mut filters = Vec::new();
        for f in pieces {
            let f = f.trim();
            filters.push(match f.split_once(':') {
                Some(("map", name)) => {
                    let name = name.trim();
                    if !maps.contains_key(name) {
                        return Err(format!(
                            "hole {{{inner}}} names value map {name:?}, which the route does not define (params.maps.{name})"
                        ));
                    }
                    Filter::Map(name.to_string())
                }
                None if f == "basename" => Filter::Basename,
                None if f == "lower" => Filter::Lower,
                None if f == "upper" => Filter::Upper,
                _ => {
                    return Err(format!(
                        "hole {{{inner}}}: unknown filter {f:?} (filters: map:NAME, basename, lower, upper)"
                    ));
                }
            });
        }
        Ok(Hole {
            written,
            path,
            filters,
        })
    }

    fn fill(&self, event: &Value, maps: &Maps) -> Result<String, String> {
        let field = self.path.join(".");
        let value = lookup(event, &self.path).ok_or_else(|| format!("the event has no {field}"))?;
        let mut text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => return Err(format!("the event's {field} is null")),
            other => {
                return Err(format!(
                    "the event's {field} is {}, not a text",
                    if other.is_object() {
                        "an object"
                    } else {
                        "an array"
                    }
                ));
            }
        };
        for filter in &self.filters {
            text = match filter {
                Filter::Basename => text.rsplit('/').next().unwrap_or_default().to_string(),
                Filter::Lower => text.to_lowercase(),
                Filter::Upper => text.to_uppercase(),
                Filter::Map(name) => {
                    let map = maps
                        .get(name)
                        .ok_or_else(|| format!("no value map {name:?}"))?;
                    match map.get(&text).or_else(|| map.get("_")) {
                        Some(v) => v.clone(),
                        None => {
                            return Err(format!(
                                "the event's {field} is {text:?}, which value map {name:?} does not list"
                            ));
                        }
                    }
                }
            };
        }
        Ok(text)
    }
}

/// The value at `path` (keys, or indexes into arrays).
fn lookup<'a>(event: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(event, |v, seg| match v {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// A JSON body whose string leaves are templates.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyTemplate {
    Text(Template),
    Array(Vec<BodyTemplate>),
    Object(Vec<(String, BodyTemplate)>),
    /// Numbers, booleans and null, as written.
    Literal(Value),
    /// `"{secret:NAME}"`, a whole string value: `[secrets] NAME`, put in only when the body is
    /// sent ([`fill_secrets`]), so that neither the journal nor the console ever holds it.
    Secret(String),
}

/// What a secret's place holds until the body is sent.
fn secret_placeholder(name: &str) -> String {
    format!("[secret {name}]")
}

/// Puts each secret (`(JSON pointer, name)`, from [`BodyTemplate::secrets`]) into `body`,
/// from `values`. The places come from the route's template, never from the event, so an
/// event cannot ask for a secret.
pub fn fill_secrets(
    body: &mut Value,
    places: &[(String, String)],
    values: &BTreeMap<String, secrecy::SecretString>,
) -> Result<(), String> {
    use secrecy::ExposeSecret;
    for (pointer, name) in places {
        let value = values
            .get(name)
            .ok_or_else(|| format!("secret {name:?} is not configured ([secrets] {name})"))?;
        let slot = body
            .pointer_mut(pointer)
            .ok_or_else(|| format!("the body has no {pointer} for secret {name:?}"))?;
        *slot = Value::String(value.expose_secret().to_owned());
    }
    Ok(())
}

impl BodyTemplate {
    /// Parses every string leaf of `body` as a template; errors name the leaf (`body.text`).
    pub fn parse(body: &Value, maps: &Maps) -> Result<BodyTemplate, String> {
        Self::parse_at(body, maps, "body", false)
    }

    /// [`BodyTemplate::parse`], taking `"{secret:NAME}"` values (for a sender that puts them in
    /// with [`fill_secrets`] as it sends).
    pub fn parse_with_secrets(body: &Value, maps: &Maps) -> Result<BodyTemplate, String> {
        Self::parse_at(body, maps, "body", true)
    }

    fn parse_at(
        body: &Value,
        maps: &Maps,
        at: &str,
        secrets: bool,
    ) -> Result<BodyTemplate, String> {
        Ok(match body {
            Value::String(s) => {
                match s.strip_prefix("{secret:").and_then(|r| r.strip_suffix('}')) {
                    Some(name) if secrets && !name.is_empty() && !name.contains(['{', '}']) => {
                        BodyTemplate::Secret(name.to_owned())
                    }
                    Some(_) if !secrets => {
                        return Err(format!(
                            "{at}: secrets (\"{{secret:NAME}}\") are taken in http_deliver bodies only"
                        ));
                    }
                    _ if s.contains("{secret:") => {
                        return Err(format!(
                            "{at}: a secret is a whole value, \"{{secret:NAME}}\", not part of a text"
                        ));
                    }
                    _ => BodyTemplate::Text(
                        Template::parse(s, maps).map_err(|e| format!("{at}: {e}"))?,
                    ),
                }
            }
            Value::Array(items) => BodyTemplate::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Self::parse_at(v, maps, &format!("{at}[{i}]"), secrets))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(m) => BodyTemplate::Object(
                m.iter()
                    .map(|(k, v)| {
                        Ok((
                            k.clone(),
                            Self::parse_at(v, maps, &format!("{at}.{k}"), secrets)?,
                        ))
                    })
                    .collect::<Result<_, String>>()?,
            ),
            other => BodyTemplate::Literal(other.clone()),
        })
    }

    /// The body for `event`.
    pub fn render(&self, event: &Value, maps: &Maps) -> Result<Value, String> {
        Ok(match self {
            BodyTemplate::Text(t) => match t.single_path() {
                Some(path) => lookup(event, path)
                    .cloned()
                    .ok_or_else(|| format!("the event has no {}", path.join(".")))?,
                None => Value::String(t.render(event, maps)?),
            },
            BodyTemplate::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|t| t.render(event, maps))
                    .collect::<Result<_, _>>()?,
            ),
            BodyTemplate::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, t)| Ok((k.clone(), t.render(event, maps)?)))
                    .collect::<Result<_, String>>()?,
            ),
            BodyTemplate::Literal(v) => v.clone(),
            BodyTemplate::Secret(name) => Value::String(secret_placeholder(name)),
        })
    }

    /// Where the rendered body holds secrets: (JSON pointer, secret name).
    pub fn secrets(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        self.collect_secrets(String::new(), &mut out);
        out
    }

    fn collect_secrets(&self, at: String, out: &mut Vec<(String, String)>) {
        let escape = |k: &str| k.replace('~', "~0").replace('/', "~1");
        match self {
            BodyTemplate::Secret(name) => out.push((at, name.clone())),
            BodyTemplate::Array(items) => {
                for (i, t) in items.iter().enumerate() {
                    t.collect_secrets(format!("{at}/{i}"), out);
                }
            }
            BodyTemplate::Object(fields) => {
                for (k, t) in fields {
                    t.collect_secrets(format!("{at}/{}", escape(k)), out);
                }
            }
            BodyTemplate::Text(_) | BodyTemplate::Literal(_) => {}
        }
    }
}

/// A value filled into an MQTT topic may not add levels or wildcards, nor hold a NUL (MQTT
/// 3.1.1 §4.7; a NUL makes the broker drop the connection every route shares): the check
/// `mqtt_publish` and `spot_drain`'s mqtt handlers pass to [`Template::render_with`].
pub fn topic_level(hole: &str, value: String) -> Result<String, String> {
    if value.is_empty() {
        return Err(format!(
            "{{{hole}}} is empty, which would leave an empty topic level"
        ));
    }
    if let Some(c) = value.chars().find(|c| matches!(c, '/' | '+' | '#' | '\0')) {
        return Err(format!(
            "{{{hole}}} is {value:?}; its {c:?} would change the topic's levels"
        ));
    }
    Ok(value)
}

/// The value maps of a route's params (`params.maps`), checked.
pub fn maps_param(params: &Value) -> Result<Maps, String> {
    match params.get("maps") {
        None => Ok(Maps::new()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
            format!("params.maps must be tables of text to text (maps.state = {{ running = \"up\" }}): {e}")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Value {
        json!({
            "source": "aws.ec2spotfleet", "region": "us-east-1", "count": 3,
            "resources": ["arn:aws:ec2:us-east-1:123456789012:spot-fleet-request/sfr-4b6d"],
            "detail": {"sub-type": "submitted", "instance-id": "i-1", "state": "running", "tags": {"a": 1}}
        })
    }

    fn maps() -> Maps {
        serde_json::from_value(
            json!({"state": {"running": "up", "_": "other"}, "strict": {"running": "up"}}),
        )
        .unwrap()
    }

    fn render(t: &str) -> Result<String, String> {
        Template::parse(t, &maps())?.render(&event(), &maps())
    }

    #[test]
    fn holes_are_filled_from_paths_indexes_and_filters() {
        assert_eq!(
            render("fluxer/aws/spot-fleet/{resources.0|basename}/{detail.sub-type}").unwrap(),
            "fluxer/aws/spot-fleet/sfr-4b6d/submitted"
        );
        assert_eq!(render("{detail.state|map:state}").unwrap(), "up");
        assert_eq!(render("{detail.sub-type|map:state}").unwrap(), "other");
        assert_eq!(render("{region|upper}/{count}").unwrap(), "US-EAST-1/3");
        assert_eq!(
            render("{{literal}} {source}").unwrap(),
            "{literal} aws.ec2spotfleet"
        );
        assert_eq!(render("no holes").unwrap(), "no holes");
    }

    #[test]
    fn a_hole_the_event_lacks_names_the_field() {
        let e = render("x/{detail.instance-id}/{detail.missing}").unwrap_err();
        assert!(e.contains("detail.missing"), "{e}");
        let e = render("{detail.tags}").unwrap_err();
        assert!(e.contains("detail.tags is an object"), "{e}");
        let e = render("{resources.7}").unwrap_err();
        assert!(e.contains("resources.7"), "{e}");
        let e = render("{detail.sub-type|map:strict}").unwrap_err();
        assert!(e.contains("\"submitted\"") && e.contains("strict"), "{e}");
    }

    #[test]
    fn bad_syntax_is_refused_at_parse() {
        for (t, says) in [
            ("a/{detail.state", "unclosed"),
            ("a/}b", "unmatched"),
            ("{}", "empty hole"),
            ("{detail..state}", "empty path segment"),
            ("{detail.state|reverse}", "unknown filter"),
            ("{detail.state|map:nope}", "does not define"),
            ("{a{b}}", "inside a hole"),
        ] {
            let e = Template::parse(t, &maps()).unwrap_err();
            assert!(e.contains(says), "{t}: {e}");
        }
    }

    #[test]
    fn body_templates_keep_json_values_and_fill_text() {
        let body = json!({"text": "{detail.instance-id} is {detail.state}", "detail": "{detail}", "n": 1, "list": ["{region}"]});
        let t = BodyTemplate::parse(&body, &maps()).unwrap();
        assert_eq!(
            t.render(&event(), &maps()).unwrap(),
            json!({"text": "i-1 is running", "detail": event()["detail"], "n": 1, "list": ["us-east-1"]})
        );
        let e = BodyTemplate::parse(&json!({"a": {"b": "{x"}}), &maps()).unwrap_err();
        assert!(e.starts_with("body.a.b:"), "{e}");
        let t = BodyTemplate::parse(&json!("{nothing}"), &maps()).unwrap();
        assert!(t.render(&event(), &maps()).unwrap_err().contains("nothing"));
    }

    #[test]
    fn maps_param_must_be_tables_of_text() {
        assert_eq!(maps_param(&json!({})).unwrap(), Maps::new());
        assert!(maps_param(&json!({"maps": {"s": {"a": 1}}})).is_err());
        assert!(maps_param(&json!({"maps": "x"})).is_err());
    }
}
