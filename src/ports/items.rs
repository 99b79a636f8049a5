//! The `Items` port: single items of a DynamoDB table, as Step Functions' DynamoDB tasks call
//! them (`states`: `dynamodb:putItem`, `getItem`, `updateItem`). Values are DynamoDB's typed
//! JSON (`{"pk": {"S": "a"}, "n": {"N": "3"}}`), read into [`Attr`] before any call, so that a
//! malformed one is refused naming where it is.

use std::collections::BTreeMap;

use async_trait::async_trait;
use base64::Engine;
use serde_json::{Map, Value, json};

use crate::contract::StepError;

/// One attribute value, as DynamoDB types it.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    S(String),
    /// A number, kept as its text (DynamoDB's precision is 38 digits).
    N(String),
    B(Vec<u8>),
    Bool(bool),
    Null,
    M(Item),
    L(Vec<Attr>),
    Ss(Vec<String>),
    Ns(Vec<String>),
    Bs(Vec<Vec<u8>>),
}

/// An item, or a key: attribute names to values.
pub type Item = BTreeMap<String, Attr>;

fn base64(text: &str, at: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| format!("{at}: B must be base64 text"))
}

fn number(text: &str, at: &str) -> Result<String, String> {
    let n = text.trim();
    if n.parse::<f64>().map(f64::is_finite).unwrap_or(false) {
        Ok(n.to_string())
    } else {
        Err(format!(
            "{at}: N must be a number written as a string, got {text:?}"
        ))
    }
}

impl Attr {
    /// Reads DynamoDB's JSON form of one value found at `at` (`Item.pk`).
    pub fn from_json(v: &Value, at: &str) -> Result<Attr, String> {
        let Value::Object(o) = v else {
            return Err(format!(
                "{at}: must be a typed value such as {{\"S\": \"text\"}}, got {v}"
            ));
        };
        let mut entries = o.iter();
        let (Some((kind, inner)), None) = (entries.next(), entries.next()) else {
            return Err(format!(
                "{at}: must have exactly one type (S, N, B, BOOL, NULL, M, L, SS, NS, BS)"
            ));
        };
        let strings = |what: &str| -> Result<Vec<String>, String> {
            match inner {
                Value::Array(a) if !a.is_empty() => a
                    .iter()
                    .map(|s| {
                        s.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| format!("{at}: {what} holds strings only"))
                    })
                    .collect(),
                _ => Err(format!("{at}: {what} must be a non-empty array of strings")),
            }
        };
        Ok(match (kind.as_str(), inner) {
            ("S", Value::String(s)) => Attr::S(s.clone()),
            ("N", Value::String(s)) => Attr::N(number(s, at)?),
            ("B", Value::String(s)) => Attr::B(base64(s, at)?),
            ("BOOL", Value::Bool(b)) => Attr::Bool(*b),
            ("NULL", Value::Bool(true)) => Attr::Null,
            ("M", Value::Object(_)) => Attr::M(item(inner, at)?),
            ("L", Value::Array(a)) => Attr::L(
                a.iter()
                    .enumerate()
                    .map(|(i, v)| Attr::from_json(v, &format!("{at}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            ("SS", _) => Attr::Ss(strings("SS")?),
            ("NS", _) => Attr::Ns(
                strings("NS")?
                    .iter()
                    .map(|n| number(n, at))
                    .collect::<Result<_, _>>()?,
            ),
            ("BS", _) => Attr::Bs(
                strings("BS")?
                    .iter()
                    .map(|b| base64(b, at))
                    .collect::<Result<_, _>>()?,
            ),
            (k, v) => return Err(format!("{at}: {k} cannot be {v}")),
        })
    }

    /// DynamoDB's JSON form.
    pub fn to_json(&self) -> Value {
        let b64 = |b: &[u8]| Value::String(base64::engine::general_purpose::STANDARD.encode(b));
        match self {
            Attr::S(s) => json!({"S": s}),
            Attr::N(n) => json!({"N": n}),
            Attr::B(b) => json!({"B": b64(b)}),
            Attr::Bool(b) => json!({"BOOL": b}),
            Attr::Null => json!({"NULL": true}),
            Attr::M(m) => json!({"M": item_json(m)}),
            Attr::L(l) => json!({"L": l.iter().map(Attr::to_json).collect::<Vec<_>>()}),
            Attr::Ss(s) => json!({"SS": s}),
            Attr::Ns(n) => json!({"NS": n}),
            Attr::Bs(b) => json!({"BS": b.iter().map(|b| b64(b)).collect::<Vec<_>>()}),
        }
    }
}

/// Reads an item (or a key, or expression values) in DynamoDB's JSON.
pub fn item(v: &Value, at: &str) -> Result<Item, String> {
    let Value::Object(o) = v else {
        return Err(format!("{at}: must be an object of typed values"));
    };
    o.iter()
        .map(|(k, v)| Ok((k.clone(), Attr::from_json(v, &format!("{at}.{k}"))?)))
        .collect()
}

/// An item in DynamoDB's JSON.
pub fn item_json(item: &Item) -> Value {
    Value::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect::<Map<_, _>>(),
    )
}

/// What a write returns (`ReturnValues`): nothing, or the item's attributes before or after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Returns {
    #[default]
    None,
    AllOld,
    UpdatedOld,
    AllNew,
    UpdatedNew,
}

impl Returns {
    pub fn parse(text: &str) -> Result<Returns, String> {
        Ok(match text {
            "NONE" => Returns::None,
            "ALL_OLD" => Returns::AllOld,
            "UPDATED_OLD" => Returns::UpdatedOld,
            "ALL_NEW" => Returns::AllNew,
            "UPDATED_NEW" => Returns::UpdatedNew,
            other => {
                return Err(format!(
                    "ReturnValues {other:?} is not NONE, ALL_OLD, UPDATED_OLD, ALL_NEW or UPDATED_NEW"
                ));
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Returns::None => "NONE",
            Returns::AllOld => "ALL_OLD",
            Returns::UpdatedOld => "UPDATED_OLD",
            Returns::AllNew => "ALL_NEW",
            Returns::UpdatedNew => "UPDATED_NEW",
        }
    }
}

/// The expression parts a request may carry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expressions {
    pub condition: Option<String>,
    pub names: BTreeMap<String, String>,
    pub values: Item,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Put {
    pub table: String,
    pub item: Item,
    pub expressions: Expressions,
    pub returns: Returns,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Get {
    pub table: String,
    pub key: Item,
    pub consistent: bool,
    pub projection: Option<String>,
    pub names: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub table: String,
    pub key: Item,
    pub update: String,
    pub expressions: Expressions,
    pub returns: Returns,
}

/// A write whose condition did not hold is DynamoDB's `ConditionalCheckFailedException`: the
/// message starts with that name, for a definition's `Catch` to match
/// (`DynamoDB.ConditionalCheckFailedException`).
pub const CONDITION_FAILED: &str = "ConditionalCheckFailedException";

#[async_trait]
pub trait Items: Send + Sync + std::fmt::Debug {
    /// PutItem; the attributes `ReturnValues` asks for.
    async fn put(&self, request: &Put) -> Result<Option<Item>, StepError>;
    /// GetItem; `None` when there is no such item.
    async fn get(&self, request: &Get) -> Result<Option<Item>, StepError>;
    /// UpdateItem; the attributes `ReturnValues` asks for.
    async fn update(&self, request: &Update) -> Result<Option<Item>, StepError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_reads_and_writes_back() {
        let v = json!({"s": {"S": "a"}, "n": {"N": "3.5"}, "b": {"B": "aGk="}, "t": {"BOOL": true}, "z": {"NULL": true},
            "m": {"M": {"x": {"S": "y"}}}, "l": {"L": [{"N": "1"}, {"S": "2"}]}, "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2"]}, "bs": {"BS": ["aGk="]}});
        let i = item(&v, "Item").unwrap();
        assert_eq!(i["b"], Attr::B(b"hi".to_vec()));
        assert_eq!(item_json(&i), v);
    }

    #[test]
    fn wrong_shapes_name_where_they_are() {
        for (v, says) in [
            (json!({"pk": "a"}), "Item.pk: must be a typed value"),
            (
                json!({"pk": {"S": "a", "N": "1"}}),
                "Item.pk: must have exactly one type",
            ),
            (json!({"pk": {"N": "x"}}), "Item.pk: N must be a number"),
            (json!({"pk": {"N": 3}}), "Item.pk: N cannot be 3"),
            (json!({"pk": {"B": "***"}}), "Item.pk: B must be base64"),
            (
                json!({"pk": {"SS": []}}),
                "Item.pk: SS must be a non-empty array",
            ),
            (
                json!({"pk": {"L": [{"Q": 1}]}}),
                "Item.pk[0]: Q cannot be 1",
            ),
            (
                json!({"pk": {"NULL": false}}),
                "Item.pk: NULL cannot be false",
            ),
            (json!([1]), "Item: must be an object"),
        ] {
            let e = item(&v, "Item").unwrap_err();
            assert!(e.starts_with(says), "{v}: {e}");
        }
        assert!(Returns::parse("ALL").is_err());
        assert_eq!(Returns::parse("ALL_NEW").unwrap().name(), "ALL_NEW");
    }
}
