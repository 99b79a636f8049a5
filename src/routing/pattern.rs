//! The EventBridge event pattern language: compiled once, matched per event.
//!
//! Supported, as EventBridge (and aws/event-ruler, quamina) define them: exact values (strings,
//! numbers compared by value, booleans, null, the empty string), `prefix`, `suffix` (each also
//! with `equals-ignore-case`), `equals-ignore-case`, `wildcard`, `anything-but` (a value, a list,
//! `prefix`, `suffix`, `equals-ignore-case`, `wildcard`), `numeric` (equality and ranges),
//! `exists`, `cidr` (IPv4 and IPv6), `$or`, nested objects, several fields (AND), several
//! values (OR).
//!
//! Matching is structural: an event array matches when any of its elements matches, and the
//! fields of a pattern object are matched *within one element* of an array of objects (array
//! consistency). A leaf is a string, number, boolean or null; `exists` looks at leaves only.

use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::events::doc::{Doc, Leaf, Num};

/// EventBridge refuses patterns longer than this (characters of the JSON text).
pub const MAX_PATTERN_LEN: usize = 4096;

/// A compiled event pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    root: Obj,
}

/// Why a pattern was refused; `path` is where inside the pattern, such as `detail.state[0]`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid pattern at {path}: {message}")]
pub struct PatternError {
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
struct Obj {
    fields: Vec<(String, Field)>,
    /// Each `$or` is a list of alternatives; one of them must match.
    ors: Vec<Vec<Obj>>,
    /// Whether anything in it asks for a value (anything but `exists: false`).
    positive: bool,
    /// The fields that only ask for absences and come, in key order, before every field
    /// that asks for a value. Matched against an array of objects they are the array's
    /// absences, not one element's: no element may have them. aws/event-ruler walks an
    /// event's fields in key order and an element is chosen (array consistency) only by a
    /// field that matched a value, so `{"a":{"b":[{"exists":false}]}}` does not match
    /// `{"a":[{"b":1},{}]}`, nor does `{"a":{"b":[{"exists":false}],"c":["x"]}}` match
    /// `{"a":[{"c":"x"},{"b":1}]}`, while `{"a":{"c":["x"],"z":[{"exists":false}]}}` matches
    /// `{"a":[{"c":"x"},{"z":1}]}` (the element with `c` lacks `z`).
    array_absences: Vec<usize>,
    /// The fields that ask for a value or an absence (`[{"exists": false}, "x"]`) with no
    /// field asking for a value before them in key order: in an element of an array, their
    /// absence counts only if no element has them (the same rule, for the absence half).
    unanchored_absences: Vec<usize>,
}

/// What a pattern asks of the value at one path ([`Pattern::checks`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Check(Field);

impl Check {
    /// Whether the value at the path (`None`: absent, or not reached through objects)
    /// passes.
    pub fn matches<D: Doc>(&self, value: Option<&D>) -> bool {
        match_field(&self.0, value)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Field {
    Nested(Obj),
    /// The value matches if any of these matches.
    Leaf {
        matchers: Vec<Matcher>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Matcher {
    Exact(Value),
    Prefix(String),
    PrefixIgnoreCase(Caseless),
    Suffix(String),
    SuffixIgnoreCase(Caseless),
    EqualsIgnoreCase(Caseless),
    Wildcard(Wildcard),
    AnythingBut(AnythingBut),
    Numeric(Vec<(Cmp, f64)>),
    Exists(bool),
    Cidr(Cidr),
}

#[derive(Debug, Clone, PartialEq)]
enum AnythingBut {
    Values(Vec<Value>),
    Prefix(Vec<String>),
    Suffix(Vec<String>),
    EqualsIgnoreCase(Vec<Caseless>),
    Wildcard(Vec<Wildcard>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
struct Cidr {
    network: IpAddr,
    bits: u8,
}

/// A wildcard pattern split at its unescaped `*`s: `a*b*c` → ["a", "b", "c"].
#[derive(Debug, Clone, PartialEq)]
struct Wildcard {
    parts: Vec<String>,
}

fn err(path: &str, message: impl Into<String>) -> PatternError {
    PatternError {
        path: if path.is_empty() {
            "(top)".into()
        } else {
            path.into()
        },
        message: message.into(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl Pattern {
    /// Compiles a pattern, refusing what EventBridge would refuse, with the place and reason.
    pub fn compile(pattern: &Value) -> Result<Pattern, PatternError> {
        let len = pattern.to_string().chars().count();
        if len > MAX_PATTERN_LEN {
            return Err(err(
                "",
                format!("the pattern is {len} characters; EventBridge allows {MAX_PATTERN_LEN}"),
            ));
        }
        let Value::Object(map) = pattern else {
            return Err(err(
                "",
                format!("a pattern must be a JSON object, got {pattern}"),
            ));
        };
        if map.is_empty() {
            return Err(err("", "a pattern needs at least one field"));
        }
        Ok(Pattern {
            root: compile_obj(map, "")?,
        })
    }

    /// Parses and compiles pattern text.
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| err("", format!("not valid JSON: {e}")))?;
        Pattern::compile(&value)
    }

    /// Whether `event` matches.
    pub fn matches<D: Doc>(&self, event: &D) -> bool {
        match_obj(&self.root, Some(event))
    }

    /// The strings a top-level field must equal exactly for the pattern to match, if the
    /// pattern constrains that field to exact strings only (used to index routes).
    pub fn required_strings(&self, field: &str) -> Option<Vec<&str>> {
        let (_, Field::Leaf { matchers, .. }) =
            self.root.fields.iter().find(|(k, _)| k == field)?
        else {
            return None;
        };
        matchers
            .iter()
            .map(|m| match m {
                Matcher::Exact(Value::String(s)) => Some(s.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Every field path the pattern reads (`["detail", "state"]`), `$or` alternatives
    /// included: nothing else of an event can change whether it matches.
    pub fn paths(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        each_leaf(&self.root, &mut Vec::new(), &mut |path, _| {
            out.push(path.to_vec())
        });
        out
    }

    /// The pattern as checks of the values at single paths, when it is a plain conjunction
    /// (no `$or`): on an event with no array on the way to any of those paths (the value
    /// at a path may be one), it matches exactly when every check does. The router matches
    /// many routes this way, each path looked up once per event.
    pub fn checks(&self) -> Option<Vec<(Vec<String>, Check)>> {
        fn has_or(obj: &Obj) -> bool {
            !obj.ors.is_empty()
                || obj.fields.iter().any(|(_, f)| match f {
                    Field::Nested(inner) => has_or(inner),
                    Field::Leaf { .. } => false,
                })
        }
        if has_or(&self.root) {
            return None;
        }
        let mut out = Vec::new();
        each_leaf(&self.root, &mut Vec::new(), &mut |path, field| {
            out.push((path.to_vec(), Check(field.clone())))
        });
        Some(out)
    }

    /// `None` if `event` matches, else the path of the first pattern field that did not.
    pub fn first_mismatch(&self, event: &Value) -> Option<String> {
        first_mismatch(&self.root, Some(event), "")
    }
}

/// Calls `visit` with the path (from the pattern's top) and field of every leaf below `obj`:
/// its fields in key order, then its `$or` alternatives'.
fn each_leaf(obj: &Obj, prefix: &mut Vec<String>, visit: &mut dyn FnMut(&[String], &Field)) {
    for (key, field) in &obj.fields {
        prefix.push(key.clone());
        match field {
            Field::Nested(inner) => each_leaf(inner, prefix, visit),
            Field::Leaf { .. } => visit(prefix, field),
        }
        prefix.pop();
    }
    for alt in obj.ors.iter().flatten() {
        each_leaf(alt, prefix, visit);
    }
}

fn compile_obj(map: &Map<String, Value>, path: &str) -> Result<Obj, PatternError> {
    let mut obj = Obj {
        fields: Vec::new(),
        ors: Vec::new(),
        positive: false,
        array_absences: Vec::new(),
        unanchored_absences: Vec::new(),
    };
    for (key, value) in map {
        let here = join(path, key);
        if key == "$or" {
            let Value::Array(alternatives) = value else {
                return Err(err(&here, "$or must be a list of patterns"));
            };
            if alternatives.len() < 2 {
                return Err(err(&here, "$or needs at least two alternatives"));
            }
            let mut alts = Vec::with_capacity(alternatives.len());
            for (i, alt) in alternatives.iter().enumerate() {
                let alt_path = format!("{here}[{i}]");
                match alt {
                    Value::Object(m) if !m.is_empty() => {
                        // Errors inside an alternative name it: `$or[1].detail.state`.
                        alts.push(compile_obj(m, &alt_path)?)
                    }
                    _ => {
                        return Err(err(
                            &alt_path,
                            "each $or alternative must be a non-empty object",
                        ));
                    }
                }
            }
            obj.ors.push(alts);
            continue;
        }
        let field = match value {
            Value::Object(inner) => {
                if inner.is_empty() {
                    return Err(err(&here, "an empty object matches nothing"));
                }
                Field::Nested(compile_obj(inner, &here)?)
            }
            Value::Array(values) => {
                if values.is_empty() {
                    return Err(err(&here, "an empty list matches nothing"));
                }
                let mut matchers = Vec::with_capacity(values.len());
                for (i, v) in values.iter().enumerate() {
                    matchers.push(compile_matcher(v, &format!("{here}[{i}]"))?);
                }
                Field::Leaf { matchers }
            }
            other => {
                return Err(err(
                    &here,
                    format!("match values must be in a list, such as [{other}]"),
                ));
            }
        };
        obj.fields.push((key.clone(), field));
    }
    obj.positive = obj.fields.iter().any(|(_, f)| match f {
        Field::Nested(inner) => inner.positive,
        Field::Leaf { matchers } => matchers
            .iter()
            .any(|m| !matches!(m, Matcher::Exists(false))),
    }) || obj
        .ors
        .iter()
        .any(|alts| alts.iter().any(|alt| alt.positive));
    let field_positive = |f: &Field| match f {
        Field::Nested(inner) => inner.positive,
        Field::Leaf { matchers } => matchers
            .iter()
            .any(|m| !matches!(m, Matcher::Exists(false))),
    };
    let first_positive = obj
        .fields
        .iter()
        .filter(|(_, f)| field_positive(f))
        .map(|(k, _)| k.as_str())
        .min();
    obj.array_absences = obj
        .fields
        .iter()
        .enumerate()
        .filter(|(_, (k, f))| !field_positive(f) && first_positive.is_none_or(|p| k.as_str() < p))
        .map(|(i, _)| i)
        .collect();
    let positive_before = |key: &str| {
        obj.fields
            .iter()
            .any(|(k, f)| k.as_str() < key && field_positive(f))
    };
    obj.unanchored_absences = obj
        .fields
        .iter()
        .enumerate()
        .filter(|(_, (k, f))| {
            field_positive(f)
                && matches!(f, Field::Leaf { matchers } if matchers.iter().any(|m| matches!(m, Matcher::Exists(false))))
                && !positive_before(k)
        })
        .map(|(i, _)| i)
        .collect();
    Ok(obj)
}

fn string_arg<'a>(v: &'a Value, path: &str, op: &str) -> Result<&'a str, PatternError> {
    v.as_str()
        .ok_or_else(|| err(path, format!("{op} needs a string, got {v}")))
}

/// `"x"` or `{"equals-ignore-case": "x"}` as the operand of prefix/suffix.
fn affix(v: &Value, path: &str, op: &str) -> Result<(String, bool), PatternError> {
    match v {
        Value::String(s) => Ok((s.clone(), false)),
        Value::Object(m) if m.len() == 1 && m.contains_key("equals-ignore-case") => Ok((
            string_arg(&m["equals-ignore-case"], path, op)?.to_owned(),
            true,
        )),
        _ => Err(err(
            path,
            format!("{op} needs a string or {{\"equals-ignore-case\": string}}, got {v}"),
        )),
    }
}

fn compile_matcher(v: &Value, path: &str) -> Result<Matcher, PatternError> {
    let op_map = match v {
        Value::Object(m) => m,
        Value::Array(_) => return Err(err(path, "a match value cannot be a list")),
        scalar => return Ok(Matcher::Exact(scalar.clone())),
    };
    if op_map.len() != 1 {
        return Err(err(
            path,
            format!(
                "a matcher object has exactly one operator, got {}",
                op_map.len()
            ),
        ));
    }
    let (op, arg) = op_map.iter().next().expect("one entry");
    let here = format!("{path}.{op}");
    Ok(match op.as_str() {
        "prefix" => match affix(arg, &here, "prefix")? {
            (s, false) => Matcher::Prefix(s),
            (s, true) => Matcher::PrefixIgnoreCase(Caseless::new(&s)),
        },
        "suffix" => match affix(arg, &here, "suffix")? {
            (s, false) => Matcher::Suffix(s),
            (s, true) => Matcher::SuffixIgnoreCase(Caseless::new(&s)),
        },
        "equals-ignore-case" => {
            Matcher::EqualsIgnoreCase(Caseless::new(string_arg(arg, &here, "equals-ignore-case")?))
        }
        "wildcard" => Matcher::Wildcard(Wildcard::compile(
            string_arg(arg, &here, "wildcard")?,
            &here,
        )?),
        "anything-but" => Matcher::AnythingBut(compile_anything_but(arg, &here)?),
        "numeric" => Matcher::Numeric(compile_numeric(arg, &here)?),
        "exists" => match arg {
            Value::Bool(b) => Matcher::Exists(*b),
            other => {
                return Err(err(
                    &here,
                    format!("exists needs true or false, got {other}"),
                ));
            }
        },
        "cidr" => Matcher::Cidr(Cidr::parse(string_arg(arg, &here, "cidr")?, &here)?),
        other => return Err(err(path, format!("unknown operator {other:?}"))),
    })
}

fn compile_anything_but(arg: &Value, path: &str) -> Result<AnythingBut, PatternError> {
    // A number must be one a `numeric` matcher could compare: aws/event-ruler turns both into
    // its ComparableNumber and refuses 2^53 + 1 and 2^60 alike ("Cannot compare number").
    let values = match arg {
        Value::Array(values) => values.as_slice(),
        other => std::slice::from_ref(other),
    };
    let inexact = values.iter().find(|v| match v {
        Value::Number(n) => number(Leaf::Num(n.into())).is_none(),
        _ => false,
    });
    if let Some(n) = inexact {
        return Err(err(
            path,
            format!(
                "anything-but number {n} is not exactly a double (EventBridge compares numbers as doubles)"
            ),
        ));
    }
    match arg {
        Value::String(_) | Value::Number(_) => Ok(AnythingBut::Values(vec![arg.clone()])),
        Value::Array(values) => {
            if values.is_empty() {
                return Err(err(path, "anything-but needs at least one value"));
            }
            let all_strings = values.iter().all(Value::is_string);
            let all_numbers = values.iter().all(Value::is_number);
            if !all_strings && !all_numbers {
                return Err(err(
                    path,
                    "anything-but takes a list of strings or a list of numbers",
                ));
            }
            Ok(AnythingBut::Values(values.clone()))
        }
        Value::Object(m) if m.len() == 1 => {
            let (op, v) = m.iter().next().expect("one entry");
            let here = format!("{path}.{op}");
            match op.as_str() {
                // An empty prefix or suffix would exclude everything; event-ruler refuses it.
                "prefix" | "suffix" => {
                    let affixes = strings(v, &here, op)?;
                    if affixes.iter().any(String::is_empty) {
                        return Err(err(&here, format!("anything-but {op} cannot be empty")));
                    }
                    Ok(if op == "prefix" {
                        AnythingBut::Prefix(affixes)
                    } else {
                        AnythingBut::Suffix(affixes)
                    })
                }
                "equals-ignore-case" => Ok(AnythingBut::EqualsIgnoreCase(
                    strings(v, &here, "equals-ignore-case")?
                        .into_iter()
                        .map(|s| Caseless::new(&s))
                        .collect(),
                )),
                "wildcard" => Ok(AnythingBut::Wildcard(
                    strings(v, &here, "wildcard")?
                        .iter()
                        .map(|s| Wildcard::compile(s, &here))
                        .collect::<Result<_, _>>()?,
                )),
                other => Err(err(
                    path,
                    format!("anything-but does not take operator {other:?}"),
                )),
            }
        }
        other => Err(err(
            path,
            format!(
                "anything-but needs a value, a list, or one of prefix, suffix, equals-ignore-case, wildcard; got {other}"
            ),
        )),
    }
}

/// A string or a non-empty list of strings.
fn strings(v: &Value, path: &str, op: &str) -> Result<Vec<String>, PatternError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| err(path, format!("{op} takes strings, got {i}")))
            })
            .collect(),
        other => Err(err(
            path,
            format!("{op} needs a string or a list of strings, got {other}"),
        )),
    }
}

fn compile_numeric(arg: &Value, path: &str) -> Result<Vec<(Cmp, f64)>, PatternError> {
    let Value::Array(items) = arg else {
        return Err(err(
            path,
            format!("numeric needs a list such as [\">\", 0, \"<=\", 5], got {arg}"),
        ));
    };
    if items.len() != 2 && items.len() != 4 {
        return Err(err(
            path,
            "numeric takes one comparison or a range: [op, number] or [op, number, op, number]",
        ));
    }
    let mut out = Vec::new();
    for pair in items.chunks(2) {
        let op = match pair[0].as_str() {
            Some("=") => Cmp::Eq,
            Some("<") => Cmp::Lt,
            Some("<=") => Cmp::Le,
            Some(">") => Cmp::Gt,
            Some(">=") => Cmp::Ge,
            _ => {
                return Err(err(
                    path,
                    format!(
                        "numeric operator must be one of = < <= > >=, got {}",
                        pair[0]
                    ),
                ));
            }
        };
        let Some(Value::Number(bound)) = pair.get(1) else {
            return Err(err(path, format!("numeric {} needs a number", pair[0])));
        };
        // Any double, as aws/event-ruler takes it (its README: "the same precision and range
        // as Java's double"); a bound that is not exactly one it refuses ("Cannot compare
        // number").
        let Some(n) = number(Leaf::Num(bound.into())) else {
            return Err(err(
                path,
                format!("numeric value {bound} is not exactly a double"),
            ));
        };
        out.push((op, n));
    }
    if out.len() == 2 {
        let (lo, hi) = (out[0], out[1]);
        if !matches!(lo.0, Cmp::Gt | Cmp::Ge) || !matches!(hi.0, Cmp::Lt | Cmp::Le) {
            return Err(err(
                path,
                "a numeric range is a lower bound (> or >=) then an upper bound (< or <=)",
            ));
        }
        if lo.1 >= hi.1 {
            return Err(err(
                path,
                format!(
                    "the numeric range's lower bound {} is not below its upper bound {}",
                    lo.1, hi.1
                ),
            ));
        }
    }
    Ok(out)
}

impl Wildcard {
    /// `*` matches any run of characters; `\*` is a literal star and `\\` a backslash.
    fn compile(text: &str, path: &str) -> Result<Wildcard, PatternError> {
        let mut parts = vec![String::new()];
        let mut chars = text.chars().peekable();
        let mut previous_star = false;
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e @ ('*' | '\\')) => {
                        parts.last_mut().expect("non-empty").push(e);
                        previous_star = false;
                    }
                    _ => {
                        return Err(err(
                            path,
                            format!("wildcard {text:?}: a backslash escapes only * or \\"),
                        ));
                    }
                },
                '*' => {
                    if previous_star {
                        return Err(err(
                            path,
                            format!("wildcard {text:?}: consecutive * are not allowed"),
                        ));
                    }
                    parts.push(String::new());
                    previous_star = true;
                }
                other => {
                    parts.last_mut().expect("non-empty").push(other);
                    previous_star = false;
                }
            }
        }
        Ok(Wildcard { parts })
    }

    fn matches(&self, s: &str) -> bool {
        let parts = &self.parts;
        if parts.len() == 1 {
            return s == parts[0];
        }
        let (first, last) = (&parts[0], &parts[parts.len() - 1]);
        if !s.starts_with(first.as_str())
            || s.len() < first.len() + last.len()
            || !s.ends_with(last.as_str())
        {
            return false;
        }
        // Greedy left-to-right placement of the middle parts is exact for `*` globs.
        let mut rest = &s[first.len()..s.len() - last.len()];
        for part in &parts[1..parts.len() - 1] {
            match rest.find(part.as_str()) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        true
    }
}

impl Cidr {
    /// An address and a prefix length, as aws/event-ruler takes them: one `/` required,
    /// the length below the address's width (`/32` of an IPv4 address is refused there).
    fn parse(text: &str, path: &str) -> Result<Cidr, PatternError> {
        let malformed = |why: String| err(path, format!("cidr {text:?}: {why}"));
        let Some((addr, bits)) = text.split_once('/') else {
            return Err(malformed(
                "an address, a '/' and a prefix length are needed".into(),
            ));
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| err(path, format!("cidr {text:?} is not an IP network")))?;
        let width = if network.is_ipv4() { 32 } else { 128 };
        let bits = bits
            .parse::<u8>()
            .ok()
            .filter(|b| *b < width)
            .ok_or_else(|| malformed(format!("the prefix length must be 0 to {}", width - 1)))?;
        Ok(Cidr { network, bits })
    }

    fn contains(&self, s: &str) -> bool {
        let Ok(ip) = s.parse::<IpAddr>() else {
            return false;
        };
        let (a, b, width) = match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (u32::from(n) as u128, u32::from(i) as u128, 32),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        if self.bits == 0 {
            return true;
        }
        let shift = width - self.bits as u32;
        (a >> shift) == (b >> shift)
    }
}

// ---- matching ----

fn match_obj<D: Doc>(obj: &Obj, value: Option<&D>) -> bool {
    match value.and_then(D::items) {
        Some(items)
            if !items.is_empty()
                && obj.array_absences.is_empty()
                && obj.unanchored_absences.is_empty() =>
        {
            items.iter().any(|i| match_obj(obj, Some(i)))
        }
        Some(items) if !items.is_empty() => {
            // The array's absences hold in every element; the rest in one element.
            obj.array_absences.iter().all(|&f| {
                let (key, field) = &obj.fields[f];
                items
                    .iter()
                    .all(|i| match_field(field, lookup(Some(i), key)))
            }) && items
                .iter()
                .any(|i| match_fields(obj, Some(i), Some(items)))
        }
        // An empty array holds nothing: the fields below it are absent.
        Some(_) => match_obj::<D>(obj, None),
        None => {
            obj.fields
                .iter()
                .all(|(key, field)| match_field(field, lookup(value, key)))
                && obj
                    .ors
                    .iter()
                    .all(|alts| alts.iter().any(|alt| match_obj(alt, value)))
        }
    }
}

/// The object's fields and `$or`s against one element of `array` (whose absences were
/// checked already; an unanchored absence is the array's).
fn match_fields<D: Doc>(obj: &Obj, value: Option<&D>, array: Option<&[D]>) -> bool {
    if value.and_then(D::items).is_some() {
        return match_obj(obj, value);
    }
    obj.fields
        .iter()
        .enumerate()
        .filter(|(i, _)| array.is_none() || !obj.array_absences.contains(i))
        .all(|(i, (key, field))| {
            let here = lookup(value, key);
            match array {
                Some(items) if !has_leaf(here) && obj.unanchored_absences.contains(&i) => {
                    items.iter().all(|e| !has_leaf(lookup(Some(e), key)))
                }
                _ => match_field(field, here),
            }
        })
        && obj
            .ors
            .iter()
            .all(|alts| alts.iter().any(|alt| match_obj(alt, value)))
}

fn lookup<'a, D: Doc>(value: Option<&'a D>, key: &str) -> Option<&'a D> {
    value?.field(key)
}

fn match_field<D: Doc>(field: &Field, value: Option<&D>) -> bool {
    match field {
        Field::Nested(obj) => match_obj(obj, value),
        Field::Leaf { matchers } => {
            // The common case: one value, not an array.
            if let Some(leaf) = value.and_then(D::leaf) {
                return matchers.iter().any(|m| match_leaf(m, leaf));
            }
            if !has_leaf(value) {
                return matchers.iter().any(|m| matches!(m, Matcher::Exists(false)));
            }
            any_leaf(value, &|leaf| matchers.iter().any(|m| match_leaf(m, leaf)))
        }
    }
}

/// Whether there is a leaf value at a field: the value itself, or one inside its arrays.
fn has_leaf<D: Doc>(value: Option<&D>) -> bool {
    let Some(value) = value else {
        return false;
    };
    match value.items() {
        Some(items) => items.iter().any(|i| has_leaf(Some(i))),
        None => value.leaf().is_some(),
    }
}

/// Whether `f` holds for any leaf at a field (arrays, nested ones too, are looked into).
fn any_leaf<D: Doc>(value: Option<&D>, f: &dyn Fn(Leaf) -> bool) -> bool {
    let Some(value) = value else {
        return false;
    };
    match value.items() {
        Some(items) => items.iter().any(|i| any_leaf(Some(i), f)),
        None => value.leaf().is_some_and(f),
    }
}

/// Whether a pattern's value (a scalar) is the event's leaf; numbers compare exactly
/// ([`Num::same`]).
fn same_value(a: &Value, b: Leaf) -> bool {
    match (a, b) {
        (Value::String(x), Leaf::Str(y)) => x == y,
        (Value::Number(x), Leaf::Num(y)) => Num::from(x).same(y),
        (Value::Bool(x), Leaf::Bool(y)) => *x == y,
        (Value::Null, Leaf::Null) => true,
        _ => false,
    }
}

/// A string matched ignoring case as aws/event-ruler matches it: each character of the
/// pattern may stand in the event as its lower-case or its upper-case form (Unicode,
/// locale-neutral, whole mappings), so `µ` matches `µ` and `Μ`, `ſ` matches `ſ` and `S`, `ς`
/// matches `Σ`, and `ß` matches `ß` and `SS` — the event's text is not transformed, so `Μ`
/// (whose lower case is `μ`, not `µ`) does not match `µ`. An ASCII pattern is an ASCII
/// comparison.
#[derive(Debug, Clone, PartialEq)]
struct Caseless {
    text: String,
    /// Per character: its lower and upper case forms (`None` for an ASCII pattern).
    forms: Option<Vec<[String; 2]>>,
}

impl Caseless {
    fn new(text: &str) -> Caseless {
        let forms = (!text.is_ascii()).then(|| {
            text.chars()
                .map(|c| [c.to_lowercase().collect(), c.to_uppercase().collect()])
                .collect()
        });
        Caseless {
            text: text.to_owned(),
            forms,
        }
    }

    fn equals(&self, s: &str) -> bool {
        match &self.forms {
            None => s.eq_ignore_ascii_case(&self.text),
            Some(forms) => ends(forms, s, false).contains(&s.len()),
        }
    }

    fn is_prefix_of(&self, s: &str) -> bool {
        match &self.forms {
            None => s
                .as_bytes()
                .get(..self.text.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(self.text.as_bytes())),
            Some(forms) => !ends(forms, s, false).is_empty(),
        }
    }

    fn is_suffix_of(&self, s: &str) -> bool {
        match &self.forms {
            None => s
                .len()
                .checked_sub(self.text.len())
                .and_then(|at| s.as_bytes().get(at..))
                .is_some_and(|tail| tail.eq_ignore_ascii_case(self.text.as_bytes())),
            Some(forms) => !ends(forms, s, true).is_empty(),
        }
    }
}

/// The byte offsets of `s` where the characters' forms, read one after another from the
/// start (or, `backwards`, from the end), can end. At most a few offsets are alive at once:
/// a character's two forms differ in length only for a handful of letters.
fn ends(forms: &[[String; 2]], s: &str, backwards: bool) -> Vec<usize> {
    let mut at = vec![if backwards { s.len() } else { 0 }];
    let chars: Box<dyn Iterator<Item = &[String; 2]>> = if backwards {
        Box::new(forms.iter().rev())
    } else {
        Box::new(forms.iter())
    };
    for pair in chars {
        let mut next = Vec::with_capacity(2);
        for &o in &at {
            for form in pair {
                let reached = if backwards {
                    s[..o].ends_with(form.as_str()).then(|| o - form.len())
                } else {
                    s[o..].starts_with(form.as_str()).then(|| o + form.len())
                };
                if let Some(r) = reached
                    && !next.contains(&r)
                {
                    next.push(r);
                }
            }
        }
        if next.is_empty() {
            return next;
        }
        at = next;
    }
    at
}

/// The value a `numeric` matcher compares: the number as a double, when aws/event-ruler
/// can compare it. It refuses ("Cannot compare number") a number that is not exactly the
/// shortest decimal reading back as its double, so `2^53 + 1` and `2^60` match no `numeric`
/// there, while `2^53` and `2^54` do; tugboat follows it for integers. (A float written with
/// more digits than its double holds is taken as that double: `serde_json` keeps no text.)
fn number(leaf: Leaf) -> Option<f64> {
    let Leaf::Num(n) = leaf else {
        return None;
    };
    match n.integer() {
        Some(i) if i.unsigned_abs() > 1 << 53 && !shortest_is_exact(i) => None,
        _ => Some(n.as_f64()),
    }
}

/// Whether the shortest decimal that reads back as `i`'s nearest double is `i` itself.
fn shortest_is_exact(i: i128) -> bool {
    let text = format!("{:e}", i as f64);
    let Some((mantissa, exponent)) = text.split_once('e') else {
        return false;
    };
    let (Ok(exponent), negative) = (exponent.parse::<i32>(), mantissa.starts_with('-')) else {
        return false;
    };
    let decimals = mantissa.split_once('.').map_or(0, |(_, f)| f.len()) as i32;
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let value = u32::try_from(exponent - decimals)
        .ok()
        .and_then(|shift| 10i128.checked_pow(shift))
        .zip(digits.parse::<i128>().ok())
        .and_then(|(scale, m)| m.checked_mul(scale));
    value.map(|v| if negative { -v } else { v }) == Some(i)
}

fn match_leaf(m: &Matcher, leaf: Leaf) -> bool {
    let text = match leaf {
        Leaf::Str(s) => Some(s),
        _ => None,
    };
    match m {
        Matcher::Exact(v) => same_value(v, leaf),
        Matcher::Prefix(p) => text.is_some_and(|s| s.starts_with(p.as_str())),
        Matcher::PrefixIgnoreCase(p) => text.is_some_and(|s| p.is_prefix_of(s)),
        Matcher::Suffix(p) => text.is_some_and(|s| s.ends_with(p.as_str())),
        Matcher::SuffixIgnoreCase(p) => text.is_some_and(|s| p.is_suffix_of(s)),
        Matcher::EqualsIgnoreCase(p) => text.is_some_and(|s| p.equals(s)),
        Matcher::Wildcard(w) => text.is_some_and(|s| w.matches(s)),
        Matcher::Exists(present) => *present,
        Matcher::Cidr(c) => text.is_some_and(|s| c.contains(s)),
        Matcher::Numeric(cmps) => number(leaf).is_some_and(|n| {
            cmps.iter().all(|(op, bound)| match op {
                Cmp::Eq => n == *bound,
                Cmp::Lt => n < *bound,
                Cmp::Le => n <= *bound,
                Cmp::Gt => n > *bound,
                Cmp::Ge => n >= *bound,
            })
        }),
        // "Anything but" what is given: a number, null or boolean is not a string with that
        // prefix (suffix, spelling, shape), so it matches.
        Matcher::AnythingBut(ab) => match ab {
            AnythingBut::Values(values) => !values.iter().any(|v| same_value(v, leaf)),
            AnythingBut::Prefix(ps) => {
                text.is_none_or(|s| !ps.iter().any(|p| s.starts_with(p.as_str())))
            }
            AnythingBut::Suffix(ps) => {
                text.is_none_or(|s| !ps.iter().any(|p| s.ends_with(p.as_str())))
            }
            AnythingBut::EqualsIgnoreCase(values) => {
                text.is_none_or(|s| !values.iter().any(|v| v.equals(s)))
            }
            AnythingBut::Wildcard(ws) => text.is_none_or(|s| !ws.iter().any(|w| w.matches(s))),
        },
    }
}

fn first_mismatch(obj: &Obj, value: Option<&Value>, path: &str) -> Option<String> {
    if match_obj(obj, value) {
        return None;
    }
    if let Some(Value::Array(items)) = value
        && !items.is_empty()
    {
        return Some(format!(
            "{} (no element of the array matches every field)",
            if path.is_empty() { "(top)" } else { path }
        ));
    }
    for (key, field) in &obj.fields {
        let here = join(path, key);
        let v = lookup(value, key);
        if match_field(field, v) {
            continue;
        }
        return match field {
            Field::Nested(inner) => first_mismatch(inner, v, &here).or(Some(here)),
            Field::Leaf { .. } => Some(match v {
                None => format!("{here} (absent)"),
                Some(v) => format!("{here} (value {v})"),
            }),
        };
    }
    Some(format!(
        "{} ($or: no alternative matches)",
        if path.is_empty() { "(top)" } else { path }
    ))
}
