//! The shared journal: one DynamoDB item per workflow instance, so that several tugboat
//! processes can consume one queue and a replacement task resumes what its predecessor began.
//!
//! Item: `id` (the partition key: instances spread over partitions by their ids), `record`
//! (the record's JSON, schema version kept: the sled journal's bytes), `version` (one more per
//! write), `owner` and `lease_until` (ms), and `status`, `route`, `updated_ms` for listing.
//!
//! Ownership and fencing: a process runs an instance only after [`Journal::claim`] made it the
//! owner — a conditional update that succeeds when the item is new, its lease has expired, or
//! the process already owns it. Every write of the record is conditional on `owner` being this
//! process and `version` being the one it last wrote (or claimed), so a process that paused
//! past its lease (or lost it any other way) cannot overwrite the new owner's progress: its
//! write fails with [`JournalError::Fenced`] and the instance stops in that process. Leases
//! are renewed while held (every third of their length) and given back at the end of a run.
//! A write is acknowledged only once DynamoDB has taken it; concurrent writes go in parallel
//! (one request each: conditions differ per item, and a transaction would fail as a whole).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::classify;
use crate::journal::{
    Claim, Journal, JournalError, ListFilter, Record, decode, encode, now_ms, sort_and_limit,
};

/// DynamoDB's item limit is 400 KB; the record leaves room for the other attributes.
pub const MAX_RECORD_BYTES: usize = 390 * 1024;

#[derive(Debug, Clone, Copy)]
struct Held {
    version: u64,
}

#[derive(Debug)]
pub struct DynamoJournal {
    client: aws_sdk_dynamodb::Client,
    table: String,
    owner: String,
    lease: Duration,
    held: Mutex<HashMap<String, Held>>,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn number(item: &HashMap<String, AttributeValue>, key: &str) -> u64 {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn storage(e: impl std::fmt::Display) -> JournalError {
    JournalError::Storage(e.to_string())
}

impl DynamoJournal {
    /// A journal over `table` for the process `owner` (unique per process: host, pid and a
    /// random part), holding leases of `lease`; renews them from a task of its own.
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: &str,
        owner: &str,
        lease: Duration,
    ) -> Arc<DynamoJournal> {
        let journal = Arc::new(DynamoJournal {
            client,
            table: table.to_owned(),
            owner: owner.to_owned(),
            lease,
            held: Mutex::new(HashMap::new()),
        });
        tokio::spawn(renew(Arc::downgrade(&journal)));
        journal
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The item with key `id`, read consistently.
    async fn item(
        &self,
        id: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, JournalError> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key("id", s(id))
            .consistent_read(true)
            .send()
            .await
            .map(|out| out.item)
            .map_err(|e| storage(classify("GetItem", e)))
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Extends the lease of `id` if this process still owns it; `false` when it does not any
    /// more. (Ownership only: a write of this process may land between the renewal's reading
    /// of the version and its request, and must not make the lease look lost.)
    async fn renew_one(&self, id: &str) -> Result<bool, JournalError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(id))
            .update_expression("SET lease_until = :until")
            .condition_expression("#o = :me")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":until", n(now_ms() + self.lease.as_millis() as u64))
            .expression_attribute_values(":me", s(&self.owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if super::condition_failed(&e) => Ok(false),
            Err(e) => Err(storage(classify("UpdateItem", e))),
        }
    }
}

/// Renews every held lease every third of its length, until the journal is dropped; a lease
/// found lost is forgotten (the next write of that instance is fenced).
async fn renew(journal: Weak<DynamoJournal>) {
    loop {
        let Some(period) = journal.upgrade().map(|j| j.lease / 3) else {
            return;
        };
        tokio::time::sleep(period).await;
        let Some(j) = journal.upgrade() else { return };
        let held: Vec<String> = j.held().keys().cloned().collect();
        for id in held {
            match j.renew_one(&id).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(workflow_id = %id, "lease lost to another process");
                    j.held().remove(&id);
                }
                Err(e) => tracing::warn!(workflow_id = %id, error = %e, "renewing a lease"),
            }
        }
    }
}

#[async_trait]
impl Journal for DynamoJournal {
    async fn get(&self, id: &str) -> Result<Option<Record>, JournalError> {
        let Some(item) = self.item(id).await? else {
            return Ok(None);
        };
        match item.get("record").and_then(|v| v.as_s().ok()) {
            Some(text) => decode(id, text.as_bytes()).map(Some),
            // Claimed, not yet written.
            None => Ok(None),
        }
    }

    async fn put(&self, record: &Record) -> Result<(), JournalError> {
        let id = &record.id;
        let Some(held) = self.held().get(id).copied() else {
            return Err(JournalError::Fenced {
                id: id.clone(),
                message: format!("{} does not hold its lease", self.owner),
            });
        };
        let bytes = encode(record)?;
        if bytes.len() > MAX_RECORD_BYTES {
            let biggest = record
                .steps
                .iter()
                .max_by_key(|s| s.output.as_ref().map_or(0, |o| o.to_string().len()))
                .map(|s| s.name.as_str())
                .unwrap_or("(none)");
            return Err(JournalError::TooLarge {
                id: id.clone(),
                message: format!(
                    "{} bytes, over DynamoDB's item limit ({MAX_RECORD_BYTES} for the record); the biggest step output is {biggest:?}",
                    bytes.len()
                ),
            });
        }
        let text = String::from_utf8(bytes).map_err(storage)?;
        let next = held.version + 1;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(id))
            .update_expression(
                "SET #r = :r, version = :next, #s = :s, route = :route, updated_ms = :u, lease_until = :until",
            )
            .condition_expression(
                "#o = :me AND (attribute_not_exists(version) OR version = :v)",
            )
            .expression_attribute_names("#r", "record")
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":r", s(text))
            .expression_attribute_values(":next", n(next))
            .expression_attribute_values(":v", n(held.version))
            .expression_attribute_values(":s", s(record.status.name()))
            .expression_attribute_values(":route", s(&record.route))
            .expression_attribute_values(":u", n(record.updated_ms))
            .expression_attribute_values(":until", n(now_ms() + self.lease.as_millis() as u64))
            .expression_attribute_values(":me", s(&self.owner))
            .send()
            .await;
        match result {
            Ok(_) => {
                if let Some(h) = self.held().get_mut(id) {
                    h.version = next;
                }
                Ok(())
            }
            Err(e) if super::condition_failed(&e) => {
                self.held().remove(id);
                Err(JournalError::Fenced {
                    id: id.clone(),
                    message: format!(
                        "another process owns it now (this one, {}, expected version {})",
                        self.owner, held.version
                    ),
                })
            }
            Err(e) => Err(storage(classify("UpdateItem", e))),
        }
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<Record>, JournalError> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| storage(classify("Scan", e)))?;
            for item in page.items.unwrap_or_default() {
                let (Some(id), Some(text)) = (
                    item.get("id").and_then(|v| v.as_s().ok()),
                    item.get("record").and_then(|v| v.as_s().ok()),
                ) else {
                    continue;
                };
                let r = decode(id, text.as_bytes())?;
                if filter.accepts(&r) {
                    out.push(r);
                }
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(sort_and_limit(out, filter))
    }

    fn flush(&self) -> Result<(), JournalError> {
        // Every write was acknowledged by DynamoDB before `put` returned.
        Ok(())
    }

    async fn claim(&self, id: &str) -> Result<Claim, JournalError> {
        let now = now_ms();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(id))
            .update_expression("SET #o = :me, lease_until = :until")
            .condition_expression("attribute_not_exists(id) OR #o = :me OR lease_until < :now")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":me", s(&self.owner))
            .expression_attribute_values(":until", n(now + self.lease.as_millis() as u64))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => {
                let version = out.attributes.as_ref().map_or(0, |a| number(a, "version"));
                self.held().insert(id.to_owned(), Held { version });
                Ok(Claim::Granted)
            }
            Err(e) if super::condition_failed(&e) => {
                let item = self.item(id).await?.unwrap_or_default();
                Ok(Claim::HeldBy {
                    owner: item
                        .get("owner")
                        .and_then(|v| v.as_s().ok())
                        .cloned()
                        .unwrap_or_default(),
                    until_ms: number(&item, "lease_until"),
                })
            }
            Err(e) => Err(storage(classify("UpdateItem", e))),
        }
    }

    fn is_shared(&self) -> bool {
        true
    }

    /// An item `wake:<key>` counting the signals (not a record: listing and reading records
    /// skip it).
    async fn signal(&self, key: &str) -> Result<(), JournalError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("id", s(format!("wake:{key}")))
            .update_expression("ADD signals :one")
            .expression_attribute_values(":one", n(1))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| storage(classify("UpdateItem", e)))
    }

    async fn signals(&self, key: &str) -> Result<u64, JournalError> {
        let item = self.item(&format!("wake:{key}")).await?;
        Ok(item.map_or(0, |i| number(&i, "signals")))
    }

    async fn setting(&self, key: &str) -> Result<Option<serde_json::Value>, JournalError> {
        let item = self.item(&format!("setting:{key}")).await?;
        let Some(text) = item
            .as_ref()
            .and_then(|i| i.get("value"))
            .and_then(|v| v.as_s().ok())
        else {
            return Ok(None);
        };
        serde_json::from_str(text)
            .map(Some)
            .map_err(|e| JournalError::Corrupt {
                id: format!("setting:{key}"),
                message: e.to_string(),
            })
    }

    async fn put_setting(&self, key: &str, value: &serde_json::Value) -> Result<(), JournalError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("id", s(format!("setting:{key}")))
            .item("value", s(value.to_string()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| storage(classify("PutItem", e)))
    }

    async fn release(&self, id: &str) {
        let Some(held) = self.held().remove(id) else {
            return;
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(id))
            .update_expression("SET lease_until = :zero")
            .condition_expression("#o = :me AND (attribute_not_exists(version) OR version = :v)")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":me", s(&self.owner))
            .expression_attribute_values(":v", n(held.version))
            .send()
            .await;
        if let Err(e) = result
            && !super::condition_failed(&e)
        {
            // The lease then simply runs out.
            tracing::warn!(workflow_id = %id, error = %classify("UpdateItem", e), "giving a lease back");
        }
    }
}
