//! Reading only what routing needs: when a message body is an EventBridge event, the fields
//! some route names are parsed into a pruned event (objects keep only those fields, arrays
//! keep every element, pruned alike) and everything else is skipped unbuilt. A pattern reads
//! nothing else, so it matches the pruned event exactly when it matches the whole one
//! (arrays and absences included); a message that matches no route is then settled without
//! the full parse. Anything `decode` would not accept as a plain EventBridge event (another
//! envelope, a field of the wrong type, too big, not JSON) is left to `decode`.

use std::collections::HashMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The field paths to keep, as a tree of keys.
#[derive(Debug, Clone, Default)]
pub struct Paths {
    children: HashMap<String, Paths>,
    /// Keep the whole value here.
    whole: bool,
}

impl Paths {
    /// Keeps `path` (from the event's top), whole.
    pub fn add(&mut self, path: &[String]) {
        match path.split_first() {
            None => self.whole = true,
            Some((key, rest)) => self.children.entry(key.clone()).or_default().add(rest),
        }
    }

    /// The paths that tell `decode` which shape a body has and whether an EventBridge event
    /// is well formed, besides the routes'.
    fn with_shape(&self) -> Paths {
        let mut p = self.clone();
        for key in [
            "source",
            "detail-type",
            "id",
            "Event",
            "Records",
            "Type",
            "TopicArn",
        ] {
            p.add(&[key.to_owned()]);
        }
        // `detail` must be an object: its type is kept even if no route looks inside.
        p.children.entry("detail".to_owned()).or_default();
        p
    }
}

/// The pruned event of `body` when `decode` would take it as one EventBridge event as it
/// is; `None` when only `decode` can say (then nothing is decided here).
pub fn peek(body: &str, paths: &Paths) -> Option<Value> {
    if body.len() > super::MAX_BODY_BYTES {
        return None;
    }
    let keep = paths.with_shape();
    let mut de = serde_json::Deserializer::from_str(body);
    let value = Prune(&keep).deserialize(&mut de).ok()?;
    de.end().ok()?;
    let object = value.as_object()?;
    // Other shapes (S3's test event and records, SNS envelopes) are `decode`'s.
    if ["Event", "Records", "Type"]
        .iter()
        .any(|k| object.contains_key(*k))
    {
        return None;
    }
    if !(object.contains_key("source") || object.contains_key("detail-type")) {
        return None;
    }
    // What `decode` checks of an EventBridge event; a failure is its to report.
    let well_formed = object.get("source").is_some_and(Value::is_string)
        && object.get("detail-type").is_some_and(Value::is_string)
        && object.get("detail").is_none_or(Value::is_object)
        && object
            .get("id")
            .is_none_or(|id| id.as_str().is_some_and(|s| !s.is_empty()));
    well_formed.then_some(value)
}

struct Prune<'a>(&'a Paths);

impl<'de> DeserializeSeed<'de> for Prune<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.0.whole {
            return serde::Deserialize::deserialize(d);
        }
        d.deserialize_any(PruneVisitor(self.0))
    }
}

struct PruneVisitor<'a>(&'a Paths);

impl<'de> Visitor<'de> for PruneVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Prune(self.0))? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match self.0.children.get(key.as_ref()) {
                Some(below) => {
                    let v = map.next_value_seed(Prune(below))?;
                    out.insert(key.into_owned(), v);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }
}
