//! The `CostStore`, `FindingStore` and `Items` ports over DynamoDB.
//!
//! The daily-cost table (`migrations/0002_cost_tables.toml`): partition key
//! `pk = PAYER#<payer>#PERIOD#<YYYY-MM>`, sort key
//! `sk = DAY#<day>#ACCOUNT#<account>#SERVICE#<service>#REGION#<region>#CURRENCY#<currency>`,
//! and the fields as attributes (`cost` a number). One query reads a payer's whole period, so
//! replacing it is: query the keys, write every new row (batches of 25, unprocessed items
//! retried), delete the keys the new rows do not have.
//!
//! The same table keeps the unit rates the reports billed: `pk = RATES#<region>`,
//! `sk = <usage type>#<currency>`, one query per region scanned.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};

use super::{classify, incomplete, reported};
use crate::contract::StepError;
use crate::ports::costs::{CostStore, DailyCost, Replaced, UnitRate};
use crate::ports::items::{Attr, Get, Item, Items, Put, Returns, Update};
use crate::ports::resources::{Finding, FindingKind, FindingStore, Replaced as FindingsReplaced};

/// BatchWriteItem's limit.
const BATCH: usize = 25;
/// Rounds of retrying unprocessed items before the step is retried instead.
const UNPROCESSED_ROUNDS: u32 = 8;

#[derive(Debug, Clone)]
pub struct DynamoCosts {
    client: aws_sdk_dynamodb::Client,
}

impl DynamoCosts {
    pub fn new(client: aws_sdk_dynamodb::Client) -> DynamoCosts {
        DynamoCosts { client }
    }

    /// Writes `requests` in batches, retrying what DynamoDB leaves unprocessed.
    async fn write(&self, table: &str, requests: Vec<WriteRequest>) -> Result<(), StepError> {
        for batch in requests.chunks(BATCH) {
            let mut pending = batch.to_vec();
            let mut round = 0;
            while !pending.is_empty() {
                if round == UNPROCESSED_ROUNDS {
                    return Err(incomplete(
                        "BatchWriteItem",
                        format!(
                            "{} items still unprocessed after {round} rounds",
                            pending.len()
                        ),
                    )
                    .into());
                }
                if round > 0 {
                    // Unprocessed items mean the table is throttled: back off before resending.
                    tokio::time::sleep(Duration::from_millis(50 << round.min(6))).await;
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(table, pending)
                    .send()
                    .await
                    .map_err(|e| classify("BatchWriteItem", e))?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(table))
                    .unwrap_or_default();
                round += 1;
            }
        }
        Ok(())
    }

    async fn keys_and_rows(
        &self,
        table: &str,
        pk: &str,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, StepError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(pk.to_string()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| classify("Query", e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }
}

impl DynamoCosts {
    /// Makes `items` (each an item with its `pk` and `sk`) the whole of partition `pk`, whose
    /// earlier items are `existing`: writes them all, then deletes the earlier keys they do
    /// not have (never an empty partition between). Returns how many were deleted.
    async fn replace_partition(
        &self,
        table: &str,
        pk: &str,
        existing: &[HashMap<String, AttributeValue>],
        items: Vec<HashMap<String, AttributeValue>>,
    ) -> Result<usize, StepError> {
        let invalid = |e: aws_sdk_dynamodb::error::BuildError| {
            reported("BatchWriteItem", "ValidationError", e.to_string(), None)
        };
        let keep: BTreeSet<String> = items.iter().map(|i| text(i, "sk")).collect();
        let mut puts = Vec::with_capacity(items.len());
        for item in items {
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(invalid)?;
            puts.push(WriteRequest::builder().put_request(put).build());
        }
        self.write(table, puts).await?;
        let existing: BTreeSet<String> = existing.iter().map(|i| text(i, "sk")).collect();
        let mut deletes = Vec::new();
        for gone in existing.difference(&keep) {
            let delete = DeleteRequest::builder()
                .key("pk", AttributeValue::S(pk.to_string()))
                .key("sk", AttributeValue::S(gone.clone()))
                .build()
                .map_err(invalid)?;
            deletes.push(WriteRequest::builder().delete_request(delete).build());
        }
        let deleted = deletes.len();
        self.write(table, deletes).await?;
        Ok(deleted)
    }
}

fn pk(payer: &str, period: &str) -> String {
    format!("PAYER#{payer}#PERIOD#{period}")
}

fn rates_pk(region: &str) -> String {
    format!("RATES#{region}")
}

fn sk(r: &DailyCost) -> String {
    format!(
        "DAY#{}#ACCOUNT#{}#SERVICE#{}#REGION#{}#CURRENCY#{}",
        r.day, r.account, r.service, r.region, r.currency
    )
}

fn item(pk: &str, r: &DailyCost) -> HashMap<String, AttributeValue> {
    let s = |v: &str| AttributeValue::S(v.to_string());
    HashMap::from([
        ("pk".to_string(), s(pk)),
        ("sk".to_string(), s(&sk(r))),
        ("day".to_string(), s(&r.day)),
        ("payer".to_string(), s(&r.payer)),
        ("account".to_string(), s(&r.account)),
        ("service".to_string(), s(&r.service)),
        ("region".to_string(), s(&r.region)),
        ("currency".to_string(), s(&r.currency)),
        ("cost".to_string(), AttributeValue::N(r.cost.clone())),
    ])
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    match item.get(name) {
        Some(AttributeValue::S(s)) | Some(AttributeValue::N(s)) => s.clone(),
        _ => String::new(),
    }
}

#[async_trait]
impl CostStore for DynamoCosts {
    async fn replace_period(
        &self,
        table: &str,
        payer: &str,
        period: &str,
        rows: &[DailyCost],
    ) -> Result<Replaced, StepError> {
        let pk = pk(payer, period);
        let existing = self.keys_and_rows(table, &pk).await?;
        let previous_last_day = existing.iter().map(|i| text(i, "day")).max();
        let items = rows.iter().map(|r| item(&pk, r)).collect();
        let deleted = self.replace_partition(table, &pk, &existing, items).await?;
        Ok(Replaced {
            written: rows.len(),
            deleted,
            previous_last_day,
        })
    }

    async fn mark_once(&self, table: &str, marker: &str) -> Result<bool, StepError> {
        let result = self
            .client
            .put_item()
            .table_name(table)
            .item("pk", AttributeValue::S(format!("MARKER#{marker}")))
            .item("sk", AttributeValue::S("MARKER".into()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if super::condition_failed(&e) => Ok(false),
            Err(e) => Err(classify("PutItem", e).into()),
        }
    }

    async fn put_rates(&self, table: &str, rates: &[UnitRate]) -> Result<usize, StepError> {
        let s = |v: &str| AttributeValue::S(v.to_string());
        let mut written = 0;
        for r in rates {
            // A conditional put per rate (a report rates a few hundred usage types at most):
            // a batch write cannot keep a newer day's rate from an older report.
            let result = self
                .client
                .put_item()
                .table_name(table)
                .item("pk", s(&rates_pk(&r.region)))
                .item("sk", s(&format!("{}#{}", r.usage_type, r.currency)))
                .item("region", s(&r.region))
                .item("usage_type", s(&r.usage_type))
                .item("rate", AttributeValue::N(r.rate.clone()))
                .item("unit", s(&r.unit))
                .item("currency", s(&r.currency))
                .item("day", s(&r.day))
                .condition_expression("attribute_not_exists(pk) OR #day <= :day")
                .expression_attribute_names("#day", "day")
                .expression_attribute_values(":day", s(&r.day))
                .send()
                .await;
            match result {
                Ok(_) => written += 1,
                Err(e) if super::condition_failed(&e) => {}
                Err(e) => return Err(classify("PutItem", e).into()),
            }
        }
        Ok(written)
    }

    async fn rates(&self, table: &str, region: &str) -> Result<Vec<UnitRate>, StepError> {
        let mut rates: Vec<UnitRate> = self
            .keys_and_rows(table, &rates_pk(region))
            .await?
            .iter()
            .map(|i| UnitRate {
                region: text(i, "region"),
                usage_type: text(i, "usage_type"),
                rate: text(i, "rate"),
                unit: text(i, "unit"),
                currency: text(i, "currency"),
                day: text(i, "day"),
            })
            .collect();
        rates.sort();
        Ok(rates)
    }

    async fn period(
        &self,
        table: &str,
        payer: &str,
        period: &str,
    ) -> Result<Vec<DailyCost>, StepError> {
        let mut rows: Vec<DailyCost> = self
            .keys_and_rows(table, &pk(payer, period))
            .await?
            .iter()
            .map(|i| DailyCost {
                day: text(i, "day"),
                payer: text(i, "payer"),
                account: text(i, "account"),
                service: text(i, "service"),
                region: text(i, "region"),
                currency: text(i, "currency"),
                cost: text(i, "cost"),
            })
            .collect();
        rows.sort();
        Ok(rows)
    }
}

/// The `FindingStore` port over DynamoDB: the findings table
/// (`migrations/0005_findings_table.toml`), partition key
/// `pk = ACCOUNT#<account>#REGION#<region>`, sort key `sk = <kind>#<resource>`, the finding's
/// fields as attributes (`monthly_cost` a number). Replacing a scope is as for the cost
/// table: query its keys, write every finding, delete the keys the new ones do not have.
#[derive(Debug, Clone)]
pub struct DynamoFindings {
    tables: DynamoCosts,
}

impl DynamoFindings {
    pub fn new(client: aws_sdk_dynamodb::Client) -> DynamoFindings {
        DynamoFindings {
            tables: DynamoCosts::new(client),
        }
    }
}

fn finding_sk(f: &Finding) -> String {
    format!("{}#{}", f.kind.as_str(), f.resource)
}

fn finding_item(pk: &str, f: &Finding) -> HashMap<String, AttributeValue> {
    let s = |v: &str| AttributeValue::S(v.to_string());
    let mut item = HashMap::from([
        ("pk".to_string(), s(pk)),
        ("sk".to_string(), s(&finding_sk(f))),
        ("account".to_string(), s(&f.account)),
        ("region".to_string(), s(&f.region)),
        ("kind".to_string(), s(f.kind.as_str())),
        ("resource".to_string(), s(&f.resource)),
        ("detail".to_string(), s(&f.detail)),
        (
            "monthly_cost".to_string(),
            AttributeValue::N(f.monthly_cost.to_string()),
        ),
        ("currency".to_string(), s(&f.currency)),
        ("price".to_string(), s(&f.price)),
    ]);
    if let Some(size) = f.size_gib {
        item.insert("size_gib".into(), AttributeValue::N(size.to_string()));
    }
    if let Some(age) = f.age_days {
        item.insert("age_days".into(), AttributeValue::N(age.to_string()));
    }
    if let Some(name) = &f.name {
        item.insert("name".into(), s(name));
    }
    item
}

/// A stored finding; `None` for an item that is not one (another tool's, or damaged).
fn finding_of(item: &HashMap<String, AttributeValue>) -> Option<Finding> {
    let number = |name: &str| match item.get(name) {
        Some(AttributeValue::N(n)) => n.parse::<f64>().ok(),
        _ => None,
    };
    let optional = |name: &str| match item.get(name) {
        Some(AttributeValue::S(s)) => Some(s.clone()),
        _ => None,
    };
    Some(Finding {
        account: optional("account")?,
        region: optional("region")?,
        kind: FindingKind::parse(&optional("kind")?)?,
        resource: optional("resource")?,
        detail: text(item, "detail"),
        size_gib: number("size_gib").map(|n| n as u32),
        age_days: number("age_days").map(|n| n as u64),
        monthly_cost: number("monthly_cost")?,
        currency: text(item, "currency"),
        price: text(item, "price"),
        name: optional("name"),
    })
}

#[async_trait]
impl FindingStore for DynamoFindings {
    async fn replace(
        &self,
        table: &str,
        account: &str,
        region: &str,
        findings: &[Finding],
    ) -> Result<FindingsReplaced, StepError> {
        let pk = format!("ACCOUNT#{account}#REGION#{region}");
        let existing = self.tables.keys_and_rows(table, &pk).await?;
        let items = findings.iter().map(|f| finding_item(&pk, f)).collect();
        let deleted = self
            .tables
            .replace_partition(table, &pk, &existing, items)
            .await?;
        Ok(FindingsReplaced {
            written: findings.len(),
            deleted,
        })
    }

    async fn all(&self, table: &str) -> Result<Vec<Finding>, StepError> {
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .tables
                .client
                .scan()
                .table_name(table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| classify("Scan", e))?;
            found.extend(out.items.unwrap_or_default().iter().filter_map(finding_of));
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        found.sort_by(|a, b| b.monthly_cost.total_cmp(&a.monthly_cost));
        Ok(found)
    }
}

/// The `Items` port: PutItem, GetItem and UpdateItem on any table (`states`' DynamoDB tasks).
#[derive(Debug, Clone)]
pub struct DynamoItems {
    client: aws_sdk_dynamodb::Client,
}

impl DynamoItems {
    pub fn new(client: aws_sdk_dynamodb::Client) -> DynamoItems {
        DynamoItems { client }
    }
}

fn to_sdk(a: &Attr) -> AttributeValue {
    use aws_sdk_dynamodb::primitives::Blob;
    match a {
        Attr::S(s) => AttributeValue::S(s.clone()),
        Attr::N(n) => AttributeValue::N(n.clone()),
        Attr::B(b) => AttributeValue::B(Blob::new(b.clone())),
        Attr::Bool(b) => AttributeValue::Bool(*b),
        Attr::Null => AttributeValue::Null(true),
        Attr::M(m) => AttributeValue::M(to_sdk_item(m)),
        Attr::L(l) => AttributeValue::L(l.iter().map(to_sdk).collect()),
        Attr::Ss(s) => AttributeValue::Ss(s.clone()),
        Attr::Ns(n) => AttributeValue::Ns(n.clone()),
        Attr::Bs(b) => AttributeValue::Bs(b.iter().map(|b| Blob::new(b.clone())).collect()),
    }
}

fn to_sdk_item(item: &Item) -> HashMap<String, AttributeValue> {
    item.iter().map(|(k, v)| (k.clone(), to_sdk(v))).collect()
}

fn from_sdk(a: &AttributeValue) -> Attr {
    match a {
        AttributeValue::S(s) => Attr::S(s.clone()),
        AttributeValue::N(n) => Attr::N(n.clone()),
        AttributeValue::B(b) => Attr::B(b.as_ref().to_vec()),
        AttributeValue::Bool(b) => Attr::Bool(*b),
        AttributeValue::M(m) => Attr::M(from_sdk_item(m)),
        AttributeValue::L(l) => Attr::L(l.iter().map(from_sdk).collect()),
        AttributeValue::Ss(s) => Attr::Ss(s.clone()),
        AttributeValue::Ns(n) => Attr::Ns(n.clone()),
        AttributeValue::Bs(b) => Attr::Bs(b.iter().map(|b| b.as_ref().to_vec()).collect()),
        // NULL, and any type a later SDK adds.
        _ => Attr::Null,
    }
}

fn from_sdk_item(item: &HashMap<String, AttributeValue>) -> Item {
    item.iter().map(|(k, v)| (k.clone(), from_sdk(v))).collect()
}

fn return_value(r: Returns) -> aws_sdk_dynamodb::types::ReturnValue {
    aws_sdk_dynamodb::types::ReturnValue::from(r.name())
}

fn names(n: &std::collections::BTreeMap<String, String>) -> Option<HashMap<String, String>> {
    (!n.is_empty()).then(|| n.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

fn values(v: &Item) -> Option<HashMap<String, AttributeValue>> {
    (!v.is_empty()).then(|| to_sdk_item(v))
}

#[async_trait]
impl Items for DynamoItems {
    async fn put(&self, r: &Put) -> Result<Option<Item>, StepError> {
        let out = self
            .client
            .put_item()
            .table_name(&r.table)
            .set_item(Some(to_sdk_item(&r.item)))
            .set_condition_expression(r.expressions.condition.clone())
            .set_expression_attribute_names(names(&r.expressions.names))
            .set_expression_attribute_values(values(&r.expressions.values))
            .return_values(return_value(r.returns))
            .send()
            .await
            .map_err(|e| classify("PutItem", e))?;
        Ok(out.attributes.as_ref().map(from_sdk_item))
    }

    async fn get(&self, r: &Get) -> Result<Option<Item>, StepError> {
        let out = self
            .client
            .get_item()
            .table_name(&r.table)
            .set_key(Some(to_sdk_item(&r.key)))
            .consistent_read(r.consistent)
            .set_projection_expression(r.projection.clone())
            .set_expression_attribute_names(names(&r.names))
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        Ok(out.item.as_ref().map(from_sdk_item))
    }

    async fn update(&self, r: &Update) -> Result<Option<Item>, StepError> {
        let out = self
            .client
            .update_item()
            .table_name(&r.table)
            .set_key(Some(to_sdk_item(&r.key)))
            .update_expression(&r.update)
            .set_condition_expression(r.expressions.condition.clone())
            .set_expression_attribute_names(names(&r.expressions.names))
            .set_expression_attribute_values(values(&r.expressions.values))
            .return_values(return_value(r.returns))
            .send()
            .await
            .map_err(|e| classify("UpdateItem", e))?;
        Ok(out.attributes.as_ref().map(from_sdk_item))
    }
}
