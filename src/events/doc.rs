//! The read-only view of an event that route patterns match ([`Doc`]): a whole event as
//! `serde_json` builds it, or the pruned one [`super::peek`] reads straight from a message
//! body. Both give the same leaves, numbers included, so a pattern matches either alike.

use serde_json::Value;

/// A JSON value as a pattern reads it.
pub trait Doc: Sized {
    /// The value itself when it is not an array or an object.
    fn leaf(&self) -> Option<Leaf<'_>>;
    /// The elements, when it is an array.
    fn items(&self) -> Option<&[Self]>;
    /// The field `key`, when it is an object that has one.
    fn field(&self, key: &str) -> Option<&Self>;
}

/// A JSON scalar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Leaf<'a> {
    Null,
    Bool(bool),
    Num(Num),
    Str(&'a str),
}

/// A JSON number as `serde_json` holds it (without `arbitrary_precision`): an integer that
/// fits in 64 bits as that integer, anything else as the nearest `f64` (correctly rounded,
/// as with `float_roundtrip`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Pos(u64),
    Neg(i64),
    Float(f64),
}

impl Num {
    /// The integer, when the number is held as one.
    pub fn integer(self) -> Option<i128> {
        match self {
            Num::Pos(u) => Some(u.into()),
            Num::Neg(i) => Some(i.into()),
            Num::Float(_) => None,
        }
    }

    pub fn as_f64(self) -> f64 {
        match self {
            Num::Pos(u) => u as f64,
            Num::Neg(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    /// Whether two numbers are equal exactly: integers as integers (2^53 + 1 is not 2^53),
    /// an integer and a float only when the float is that integer, floats as floats.
    pub fn same(self, other: Num) -> bool {
        let is = |f: f64, i: i128| f.fract() == 0.0 && f.abs() < 1.7e38 && f as i128 == i;
        match (self.integer(), other.integer()) {
            (Some(a), Some(b)) => a == b,
            (Some(i), None) => is(other.as_f64(), i),
            (None, Some(i)) => is(self.as_f64(), i),
            (None, None) => self.as_f64() == other.as_f64(),
        }
    }
}

impl From<&serde_json::Number> for Num {
    fn from(n: &serde_json::Number) -> Num {
        if let Some(u) = n.as_u64() {
            Num::Pos(u)
        } else if let Some(i) = n.as_i64() {
            Num::Neg(i)
        } else {
            Num::Float(n.as_f64().unwrap_or(f64::NAN))
        }
    }
}

impl Doc for Value {
    fn leaf(&self) -> Option<Leaf<'_>> {
        Some(match self {
            Value::Null => Leaf::Null,
            Value::Bool(b) => Leaf::Bool(*b),
            Value::Number(n) => Leaf::Num(n.into()),
            Value::String(s) => Leaf::Str(s),
            Value::Array(_) | Value::Object(_) => return None,
        })
    }

    fn items(&self) -> Option<&[Value]> {
        self.as_array().map(Vec::as_slice)
    }

    fn field(&self, key: &str) -> Option<&Value> {
        self.as_object()?.get(key)
    }
}
