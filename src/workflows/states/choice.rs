//! A `Choice` state's rules: the comparisons of the States Language (strings, numbers,
//! booleans, timestamps, each against a literal or another path; the type tests `IsNull`,
//! `IsPresent`, `IsNumeric`, `IsString`, `IsBoolean`, `IsTimestamp`; `StringMatches` with `*`)
//! and `And`, `Or`, `Not`.
//!
//! A comparison whose variable holds another type is false (a number is not `StringEquals`
//! anything); a variable that names nothing is a `States.Runtime` error, except for
//! `IsPresent`, which is false.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::path::Path;

/// What a comparison compares as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Numeric,
    Boolean,
    Timestamp,
}

/// How it compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Equals,
    LessThan,
    GreaterThan,
    LessThanEquals,
    GreaterThanEquals,
}

/// A test of one variable.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Compare { kind: Kind, op: Op, against: Operand },
    Matches(String),
    IsNull(bool),
    IsPresent(bool),
    IsNumeric(bool),
    IsString(bool),
    IsBoolean(bool),
    IsTimestamp(bool),
}

/// What a comparison's variable is compared with.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Literal(Value),
    Path(Path),
}

/// A rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    And(Vec<Rule>),
    Or(Vec<Rule>),
    Not(Box<Rule>),
    Test { variable: Path, test: Test },
}

const KINDS: &[(&str, Kind)] = &[
    ("String", Kind::String),
    ("Numeric", Kind::Numeric),
    ("Boolean", Kind::Boolean),
    ("Timestamp", Kind::Timestamp),
];
const OPS: &[(&str, Op)] = &[
    ("Equals", Op::Equals),
    ("LessThanEquals", Op::LessThanEquals),
    ("GreaterThanEquals", Op::GreaterThanEquals),
    ("LessThan", Op::LessThan),
    ("GreaterThan", Op::GreaterThan),
];

/// The comparison operator a field names (`NumericLessThanPath` → numeric, less than, by path).
fn operator(field: &str) -> Option<(Kind, Op, bool)> {
    let (field, by_path) = match field.strip_suffix("Path") {
        Some(f) => (f, true),
        None => (field, false),
    };
    let (kind, rest) = KINDS.iter().find_map(|(k, kind)| field.strip_prefix(k).map(|r| (*kind, r)))?;
    let op = OPS.iter().find(|(o, _)| *o == rest)?.1;
    // Booleans compare for equality only.
    (kind != Kind::Boolean || op == Op::Equals).then_some((kind, op, by_path))
}

impl Rule {
    /// Parses a rule at JSON pointer `at`; `top` rules carry `Next` (read by the caller), and
    /// nested ones must not. Errors name the pointer.
    pub fn parse(v: &Value, at: &str, top: bool) -> Result<Rule, String> {
        let Value::Object(o) = v else {
            return Err(format!("{at}: a choice rule must be an object"));
        };
        if !top && o.contains_key("Next") {
            return Err(format!("{at}/Next: only a top-level Choices rule has Next"));
        }
        let allowed_extra: &[&str] = if top { &["Next", "Comment"] } else { &["Comment"] };
        let mut rule = None;
        for (k, value) in o {
            if allowed_extra.contains(&k.as_str()) || k == "Variable" {
                continue;
            }
            if rule.is_some() {
                return Err(format!("{at}/{k}: a rule has one operator (And, Or, Not or one comparison)"));
            }
            rule = Some(Rule::operator(o, k, value, &format!("{at}/{k}"))?);
        }
        if top && !o.contains_key("Next") {
            return Err(format!("{at}: a Choices rule needs Next"));
        }
        rule.ok_or_else(|| format!("{at}: a rule needs an operator (And, Or, Not or a comparison)"))
    }

    fn operator(o: &Map<String, Value>, k: &str, value: &Value, at: &str) -> Result<Rule, String> {
        let list = |value: &Value| -> Result<Vec<Rule>, String> {
            let a = value.as_array().filter(|a| !a.is_empty()).ok_or_else(|| format!("{at}: must be a non-empty array of rules"))?;
            a.iter().enumerate().map(|(i, r)| Rule::parse(r, &format!("{at}/{i}"), false)).collect()
        };
        let boolean = o.contains_key("Variable");
        match k {
            "And" | "Or" | "Not" if boolean => Err(format!("{at}: And, Or and Not take no Variable")),
            "And" => Ok(Rule::And(list(value)?)),
            "Or" => Ok(Rule::Or(list(value)?)),
            "Not" => Ok(Rule::Not(Box::new(Rule::parse(value, at, false)?))),
            _ => {
                let variable = match o.get("Variable") {
                    Some(Value::String(s)) => Path::parse(s).map_err(|e| format!("{}/Variable: {e}", parent(at)))?,
                    Some(_) => return Err(format!("{}/Variable: must be a path", parent(at))),
                    None => return Err(format!("{}: a comparison needs Variable", parent(at))),
                };
                Ok(Rule::Test { variable, test: test(k, value, at)? })
            }
        }
    }

    /// Whether the rule holds for `input`; an error (a `States.Runtime`) when a variable or
    /// an operand path names nothing.
    pub fn holds(&self, input: &Value, context: &Value) -> Result<bool, String> {
        match self {
            Rule::And(rules) => {
                for r in rules {
                    if !r.holds(input, context)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Rule::Or(rules) => {
                for r in rules {
                    if r.holds(input, context)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Rule::Not(r) => Ok(!r.holds(input, context)?),
            Rule::Test { variable, test } => {
                let Some(value) = variable.select(input, context) else {
                    // Only IsPresent may ask of a variable that names nothing.
                    return match test {
                        Test::IsPresent(want) => Ok(!*want),
                        _ => Err(format!("Invalid path {}: the choice state's input has no such field", variable.text)),
                    };
                };
                Ok(match test {
                    Test::IsPresent(want) => *want,
                    Test::IsNull(w) => value.is_null() == *w,
                    Test::IsNumeric(w) => value.is_number() == *w,
                    Test::IsString(w) => value.is_string() == *w,
                    Test::IsBoolean(w) => value.is_boolean() == *w,
                    Test::IsTimestamp(w) => value.as_str().and_then(timestamp).is_some() == *w,
                    Test::Matches(pattern) => value.as_str().is_some_and(|s| matches(pattern, s)),
                    Test::Compare { kind, op, against } => {
                        let other = match against {
                            Operand::Literal(v) => v.clone(),
                            Operand::Path(p) => p
                                .select(input, context)
                                .ok_or_else(|| format!("Invalid path {}: the choice state's input has no such field", p.text))?,
                        };
                        compare(*kind, &value, &other).is_some_and(|ord| match op {
                            Op::Equals => ord == Ordering::Equal,
                            Op::LessThan => ord == Ordering::Less,
                            Op::GreaterThan => ord == Ordering::Greater,
                            Op::LessThanEquals => ord != Ordering::Greater,
                            Op::GreaterThanEquals => ord != Ordering::Less,
                        })
                    }
                })
            }
        }
    }
}

fn parent(at: &str) -> &str {
    at.rsplit_once('/').map_or(at, |(p, _)| p)
}

fn test(k: &str, value: &Value, at: &str) -> Result<Test, String> {
    let flag = |f: fn(bool) -> Test| value.as_bool().map(f).ok_or_else(|| format!("{at}: must be true or false"));
    match k {
        "IsNull" => return flag(Test::IsNull),
        "IsPresent" => return flag(Test::IsPresent),
        "IsNumeric" => return flag(Test::IsNumeric),
        "IsString" => return flag(Test::IsString),
        "IsBoolean" => return flag(Test::IsBoolean),
        "IsTimestamp" => return flag(Test::IsTimestamp),
        "StringMatches" => {
            return value.as_str().map(|s| Test::Matches(s.to_string())).ok_or_else(|| format!("{at}: must be a string"));
        }
        _ => {}
    }
    let (kind, op, by_path) = operator(k).ok_or_else(|| format!("{at}: {k:?} is not a comparison operator"))?;
    let against = if by_path {
        let p = value.as_str().ok_or_else(|| format!("{at}: must be a path"))?;
        Operand::Path(Path::parse(p).map_err(|e| format!("{at}: {e}"))?)
    } else {
        let ok = match kind {
            Kind::String => value.is_string(),
            Kind::Numeric => value.is_number(),
            Kind::Boolean => value.is_boolean(),
            Kind::Timestamp => value.as_str().and_then(timestamp).is_some(),
        };
        if !ok {
            let want = match kind {
                Kind::String => "a string",
                Kind::Numeric => "a number",
                Kind::Boolean => "true or false",
                Kind::Timestamp => "an RFC 3339 timestamp such as \"2026-01-01T00:00:00Z\"",
            };
            return Err(format!("{at}: must be {want}"));
        }
        Operand::Literal(value.clone())
    };
    Ok(Test::Compare { kind, op, against })
}

/// An RFC 3339 timestamp (Step Functions asks for the upper-case `T` and `Z`/offset).
pub fn timestamp(s: &str) -> Option<time::OffsetDateTime> {
    if s.contains('t') || s.ends_with('z') {
        return None;
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

fn compare(kind: Kind, a: &Value, b: &Value) -> Option<Ordering> {
    match kind {
        Kind::String => Some(a.as_str()?.cmp(b.as_str()?)),
        Kind::Numeric => a.as_f64()?.partial_cmp(&b.as_f64()?),
        Kind::Boolean => (a.as_bool()? == b.as_bool()?).then_some(Ordering::Equal).or(Some(Ordering::Less)),
        Kind::Timestamp => Some(timestamp(a.as_str()?)?.cmp(&timestamp(b.as_str()?)?)),
    }
}

/// `StringMatches`: `*` matches any run of characters; `\*` a star, `\\` a backslash.
fn matches(pattern: &str, s: &str) -> bool {
    // Tokens: literal characters and stars.
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => tokens.push(Some(chars.next().unwrap_or('\\'))),
            '*' => tokens.push(None),
            c => tokens.push(Some(c)),
        }
    }
    let s: Vec<char> = s.chars().collect();
    // Greedy matching with one backtrack point (the last star), linear in practice.
    let (mut t, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match tokens.get(t) {
            Some(Some(c)) if *c == s[i] => {
                t += 1;
                i += 1;
            }
            Some(None) => {
                star = Some((t, i));
                t += 1;
            }
            _ => match star {
                Some((st, si)) => {
                    t = st + 1;
                    i = si + 1;
                    star = Some((st, si + 1));
                }
                None => return false,
            },
        }
    }
    tokens[t..].iter().all(Option::is_none)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(v: Value) -> Rule {
        Rule::parse(&v, "/States/C/Choices/0", true).unwrap()
    }

    fn holds(v: Value, input: Value) -> Result<bool, String> {
        rule(v).holds(&input, &json!({}))
    }

    #[test]
    fn comparisons_of_each_kind() {
        let input = json!({"s": "b", "n": 5, "f": 2.5, "t": "2026-01-02T00:00:00Z", "b": true, "other": 5, "nil": null});
        for (r, want) in [
            (json!({"Variable": "$.s", "StringEquals": "b", "Next": "X"}), true),
            (json!({"Variable": "$.s", "StringLessThan": "c", "Next": "X"}), true),
            (json!({"Variable": "$.s", "StringGreaterThanEquals": "b", "Next": "X"}), true),
            (json!({"Variable": "$.n", "StringEquals": "5", "Next": "X"}), false),
            (json!({"Variable": "$.n", "NumericEquals": 5, "Next": "X"}), true),
            (json!({"Variable": "$.n", "NumericEquals": 5.0, "Next": "X"}), true),
            (json!({"Variable": "$.f", "NumericLessThanEquals": 2.5, "Next": "X"}), true),
            (json!({"Variable": "$.n", "NumericEqualsPath": "$.other", "Next": "X"}), true),
            (json!({"Variable": "$.n", "NumericGreaterThanPath": "$.other", "Next": "X"}), false),
            (json!({"Variable": "$.b", "BooleanEquals": true, "Next": "X"}), true),
            (json!({"Variable": "$.t", "TimestampGreaterThan": "2026-01-01T23:59:59+00:00", "Next": "X"}), true),
            (json!({"Variable": "$.t", "TimestampEquals": "2026-01-02T01:00:00+01:00", "Next": "X"}), true),
            (json!({"Variable": "$.s", "TimestampEquals": "2026-01-02T00:00:00Z", "Next": "X"}), false),
            (json!({"Variable": "$.nil", "IsNull": true, "Next": "X"}), true),
            (json!({"Variable": "$.nope", "IsPresent": false, "Next": "X"}), true),
            (json!({"Variable": "$.n", "IsNumeric": true, "Next": "X"}), true),
            (json!({"Variable": "$.s", "IsString": true, "Next": "X"}), true),
            (json!({"Variable": "$.b", "IsBoolean": false, "Next": "X"}), false),
            (json!({"Variable": "$.t", "IsTimestamp": true, "Next": "X"}), true),
            (json!({"And": [{"Variable": "$.n", "NumericGreaterThan": 1}, {"Not": {"Variable": "$.s", "StringEquals": "a"}}], "Next": "X"}), true),
            (json!({"Or": [{"Variable": "$.n", "NumericGreaterThan": 10}, {"Variable": "$.b", "BooleanEquals": false}], "Next": "X"}), false),
        ] {
            assert_eq!(holds(r.clone(), input.clone()).unwrap(), want, "{r}");
        }
        let e = holds(json!({"Variable": "$.nope", "StringEquals": "x", "Next": "X"}), input).unwrap_err();
        assert!(e.contains("Invalid path $.nope"), "{e}");
    }

    #[test]
    fn string_matches_with_stars_and_escapes() {
        for (p, s, want) in [
            ("log-*.txt", "log-2026.txt", true),
            ("log-*.txt", "log-2026.csv", false),
            ("*", "", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("\\*star", "*star", true),
            ("\\*star", "xstar", false),
            ("exact", "exact", true),
            ("exact", "exact!", false),
        ] {
            assert_eq!(matches(p, s), want, "{p} ~ {s}");
        }
    }

    #[test]
    fn malformed_rules_name_their_pointer() {
        for (r, says) in [
            (json!({"Variable": "$.a", "StringEquals": "x"}), "/States/C/Choices/0: a Choices rule needs Next"),
            (json!({"Variable": "$.a", "StringEquals": 1, "Next": "X"}), "/States/C/Choices/0/StringEquals: must be a string"),
            (json!({"Variable": "$.a", "StringEqualz": "x", "Next": "X"}), "/States/C/Choices/0/StringEqualz: \"StringEqualz\" is not a comparison"),
            (json!({"Variable": "$.a", "BooleanLessThan": true, "Next": "X"}), "is not a comparison"),
            (json!({"Variable": "a", "StringEquals": "x", "Next": "X"}), "/States/C/Choices/0/Variable"),
            (json!({"StringEquals": "x", "Next": "X"}), "needs Variable"),
            (json!({"Variable": "$.a", "StringEquals": "x", "NumericEquals": 1, "Next": "X"}), "one operator"),
            (json!({"And": [], "Next": "X"}), "/States/C/Choices/0/And: must be a non-empty array"),
            (json!({"And": [{"Variable": "$.a", "IsNull": true, "Next": "Y"}], "Next": "X"}), "/States/C/Choices/0/And/0/Next: only a top-level"),
            (json!({"Variable": "$.t", "TimestampEquals": "yesterday", "Next": "X"}), "RFC 3339"),
            (json!({"Variable": "$.a", "NumericEqualsPath": "x", "Next": "X"}), "starts with $"),
            (json!({"Next": "X"}), "needs an operator"),
            (json!("rule"), "must be an object"),
        ] {
            let e = Rule::parse(&r, "/States/C/Choices/0", true).unwrap_err();
            assert!(e.contains(says), "{r}: {e}");
        }
    }
}
