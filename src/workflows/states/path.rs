//! The paths of the States Language (JSONPath, as Step Functions reads it): `$` the state's
//! input, `$$` the context object, then `.name`, `['name']`, `[2]`, `[-1]` (from the end),
//! `[*]` and `.*`, `[1:3]` slices, `[0,2]` unions. A **reference path** (`ResultPath`, a Choice
//! rule's `Variable`, the `…Path` comparisons) may use only names and indexes: it names one
//! place. Filters (`[?(…)]`) and deep scans (`..`) are refused when the definition loads.

use serde_json::{Map, Value};

/// Where a path starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// `$`: the data.
    Input,
    /// `$$`: the context object (execution, state, map item).
    Context,
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    Name(String),
    Index(i64),
    Wildcard,
    Slice(Option<i64>, Option<i64>),
    Union(Vec<i64>),
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub root: Root,
    pub segments: Vec<Segment>,
    pub text: String,
}

impl Path {
    /// Parses `text`; an error says what is wrong and where.
    pub fn parse(text: &str) -> Result<Path, String> {
        let (root, mut rest) = if let Some(r) = text.strip_prefix("$$") {
            (Root::Context, r)
        } else if let Some(r) = text.strip_prefix('$') {
            (Root::Input, r)
        } else {
            return Err(format!("{text:?} is not a path: a path starts with $ (or $$ for the context object)"));
        };
        let mut segments = Vec::new();
        while !rest.is_empty() {
            if rest.starts_with("..") {
                return Err(format!("{text:?}: deep scan (..) is not supported"));
            }
            if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                let name = &r[..end];
                if name.is_empty() {
                    return Err(format!("{text:?}: an empty name after '.'"));
                }
                segments.push(if name == "*" { Segment::Wildcard } else { Segment::Name(name.to_string()) });
                rest = &r[end..];
            } else if let Some(r) = rest.strip_prefix('[') {
                let (segment, after) = bracket(r).map_err(|e| format!("{text:?}: {e}"))?;
                segments.push(segment);
                rest = after;
            } else {
                return Err(format!("{text:?}: expected '.' or '[' at {rest:?}"));
            }
        }
        Ok(Path { root, segments, text: text.to_string() })
    }

    /// Parses a reference path: names and indexes only.
    pub fn reference(text: &str) -> Result<Path, String> {
        let p = Path::parse(text)?;
        if p.segments.iter().any(|s| !matches!(s, Segment::Name(_) | Segment::Index(_))) {
            return Err(format!("{text:?} is not a reference path: only names and indexes may follow $ (no *, slices or unions)"));
        }
        Ok(p)
    }

    /// Whether the path names one value (no wildcard, slice or union).
    pub fn is_definite(&self) -> bool {
        self.segments.iter().all(|s| matches!(s, Segment::Name(_) | Segment::Index(_)))
    }

    /// The value(s) the path selects from `input` (or `context`, for `$$`): one value for a
    /// definite path, an array of the matches otherwise; `None` when a definite path names
    /// nothing.
    pub fn select(&self, input: &Value, context: &Value) -> Option<Value> {
        let start = match self.root {
            Root::Input => input,
            Root::Context => context,
        };
        if self.is_definite() {
            let mut at = start;
            for s in &self.segments {
                at = match s {
                    Segment::Name(n) => at.as_object()?.get(n)?,
                    Segment::Index(i) => {
                        let a = at.as_array()?;
                        a.get(index(*i, a.len())?)?
                    }
                    _ => return None,
                };
            }
            return Some(at.clone());
        }
        let mut current = vec![start];
        for s in &self.segments {
            let mut next = Vec::new();
            for v in current {
                match (s, v) {
                    (Segment::Name(n), Value::Object(o)) => next.extend(o.get(n)),
                    (Segment::Index(i), Value::Array(a)) => next.extend(index(*i, a.len()).and_then(|i| a.get(i))),
                    (Segment::Wildcard, Value::Array(a)) => next.extend(a.iter()),
                    (Segment::Wildcard, Value::Object(o)) => next.extend(o.values()),
                    (Segment::Slice(from, to), Value::Array(a)) => {
                        let len = a.len() as i64;
                        let clamp = |x: i64| if x < 0 { (len + x).max(0) } else { x.min(len) } as usize;
                        let (f, t) = (clamp(from.unwrap_or(0)), clamp(to.unwrap_or(len)));
                        if f < t {
                            next.extend(a[f..t].iter());
                        }
                    }
                    (Segment::Union(is), Value::Array(a)) => {
                        next.extend(is.iter().filter_map(|i| index(*i, a.len()).and_then(|i| a.get(i))))
                    }
                    _ => {}
                }
            }
            current = next;
        }
        Some(Value::Array(current.into_iter().cloned().collect()))
    }

    /// `target` with `value` placed where this reference path names (`$`: `value` itself),
    /// making the objects on the way; an error when something on the way is not an object (or
    /// an index past an array's end).
    pub fn place(&self, target: Value, value: Value) -> Result<Value, String> {
        if self.segments.is_empty() {
            return Ok(value);
        }
        let mut root = target;
        let mut at = &mut root;
        for (n, s) in self.segments.iter().enumerate() {
            let last = n + 1 == self.segments.len();
            at = match s {
                Segment::Name(name) => {
                    if at.is_null() {
                        *at = Value::Object(Map::new());
                    }
                    let Value::Object(o) = at else {
                        return Err(format!("{}: {} is not an object", self.text, prefix(self, n)));
                    };
                    if last {
                        o.insert(name.clone(), value);
                        return Ok(root);
                    }
                    o.entry(name.clone()).or_insert(Value::Null)
                }
                Segment::Index(i) => {
                    let Value::Array(a) = at else {
                        return Err(format!("{}: {} is not an array", self.text, prefix(self, n)));
                    };
                    let Some(i) = index(*i, a.len()) else {
                        return Err(format!("{}: index {i} is past the end of {}", self.text, prefix(self, n)));
                    };
                    if last {
                        a[i] = value;
                        return Ok(root);
                    }
                    &mut a[i]
                }
                _ => return Err(format!("{} is not a reference path", self.text)),
            };
        }
        Ok(root)
    }
}

/// The path up to (not including) segment `n`, for errors.
fn prefix(p: &Path, n: usize) -> String {
    let mut s = String::from(if p.root == Root::Context { "$$" } else { "$" });
    for seg in &p.segments[..n] {
        match seg {
            Segment::Name(name) => {
                s.push('.');
                s.push_str(name);
            }
            Segment::Index(i) => s.push_str(&format!("[{i}]")),
            _ => s.push_str("[…]"),
        }
    }
    s
}

fn index(i: i64, len: usize) -> Option<usize> {
    let i = if i < 0 { len as i64 + i } else { i };
    (0..len as i64).contains(&i).then_some(i as usize)
}

/// A bracket's segment and what follows its `]`.
fn bracket(r: &str) -> Result<(Segment, &str), String> {
    if let Some(q) = r.strip_prefix('\'').map(|s| ('\'', s)).or_else(|| r.strip_prefix('"').map(|s| ('"', s))) {
        let (quote, body) = q;
        let mut name = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e)) => name.push(e),
                    None => break,
                },
                c if c == quote => {
                    let after = &body[i + 1..];
                    let after = after.strip_prefix(']').ok_or("a quoted name must be followed by ']'")?;
                    return Ok((Segment::Name(name), after));
                }
                c => name.push(c),
            }
        }
        return Err("an unclosed quoted name".into());
    }
    let end = r.find(']').ok_or("an unclosed '['")?;
    let inner = r[..end].trim();
    let after = &r[end + 1..];
    if inner.starts_with('?') || inner.starts_with('(') {
        return Err("filter and script expressions ([?(…)]) are not supported".into());
    }
    let int = |t: &str| t.trim().parse::<i64>().map_err(|_| format!("{t:?} is not an index"));
    let segment = if inner == "*" {
        Segment::Wildcard
    } else if let Some((a, b)) = inner.split_once(':') {
        if b.contains(':') {
            return Err("slice steps ([a:b:c]) are not supported".into());
        }
        let opt = |t: &str| if t.trim().is_empty() { Ok(None) } else { int(t).map(Some) };
        Segment::Slice(opt(a)?, opt(b)?)
    } else if inner.contains(',') {
        Segment::Union(inner.split(',').map(int).collect::<Result<_, _>>()?)
    } else {
        Segment::Index(int(inner)?)
    };
    Ok((segment, after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_select_as_jsonpath_does() {
        let v = json!({"a": {"b": [1, 2, 3, 4]}, "x y": true, "list": [{"n": 1}, {"n": 2}]});
        let ctx = json!({"Execution": {"Id": "e1"}});
        let sel = |p: &str| Path::parse(p).unwrap().select(&v, &ctx);
        assert_eq!(sel("$"), Some(v.clone()));
        assert_eq!(sel("$.a.b[1]"), Some(json!(2)));
        assert_eq!(sel("$.a.b[-1]"), Some(json!(4)));
        assert_eq!(sel("$['x y']"), Some(json!(true)));
        assert_eq!(sel("$.a.b[1:3]"), Some(json!([2, 3])));
        assert_eq!(sel("$.a.b[:2]"), Some(json!([1, 2])));
        assert_eq!(sel("$.a.b[-2:]"), Some(json!([3, 4])));
        assert_eq!(sel("$.a.b[0,2]"), Some(json!([1, 3])));
        assert_eq!(sel("$.list[*].n"), Some(json!([1, 2])));
        assert_eq!(sel("$.list.*.n"), Some(json!([1, 2])));
        assert_eq!(sel("$$.Execution.Id"), Some(json!("e1")));
        assert_eq!(sel("$.missing"), None);
        assert_eq!(sel("$.a.b[9]"), None);
        assert_eq!(sel("$.missing[*]"), Some(json!([])));
    }

    #[test]
    fn bad_paths_say_why() {
        for (p, says) in [
            ("a.b", "starts with $"),
            ("$..a", "deep scan"),
            ("$.a[?(@.x)]", "filter"),
            ("$.a[", "unclosed"),
            ("$.a['b", "unclosed"),
            ("$.a[x]", "not an index"),
            ("$.", "empty name"),
            ("$a", "expected"),
            ("$.a[1:2:3]", "slice steps"),
        ] {
            let e = Path::parse(p).unwrap_err();
            assert!(e.contains(says), "{p}: {e}");
        }
        assert!(Path::reference("$.a[*]").unwrap_err().contains("reference path"));
        assert!(Path::reference("$.a[0].b").is_ok());
    }

    #[test]
    fn a_reference_path_places_a_value_making_objects_on_the_way() {
        let place = |p: &str, t: Value, v: Value| Path::reference(p).unwrap().place(t, v);
        assert_eq!(place("$", json!({"a": 1}), json!(7)).unwrap(), json!(7));
        assert_eq!(place("$.sum", json!({"a": 1}), json!(7)).unwrap(), json!({"a": 1, "sum": 7}));
        assert_eq!(place("$.x.y", json!({}), json!(7)).unwrap(), json!({"x": {"y": 7}}));
        assert_eq!(place("$.l[1]", json!({"l": [0, 0]}), json!(7)).unwrap(), json!({"l": [0, 7]}));
        assert!(place("$.a.b", json!({"a": 1}), json!(7)).unwrap_err().contains("$.a is not an object"));
        assert!(place("$.l[5]", json!({"l": []}), json!(7)).unwrap_err().contains("past the end"));
        assert!(place("$.a", json!([1]), json!(7)).unwrap_err().contains("$ is not an object"));
    }
}
