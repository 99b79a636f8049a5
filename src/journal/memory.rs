//! A journal in memory, for unit tests: the same contract as sled, nothing durable.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Journal, JournalError, ListFilter, Record, decode, encode, sort_and_limit};

#[derive(Debug, Default)]
pub struct MemoryJournal {
    // Stored encoded, so that a test sees exactly what a restart would read back.
    records: Mutex<BTreeMap<String, Vec<u8>>>,
    settings: Mutex<BTreeMap<String, serde_json::Value>>,
}

impl MemoryJournal {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Journal for MemoryJournal {
    async fn get(&self, id: &str) -> Result<Option<Record>, JournalError> {
        self.lock().get(id).map(|b| decode(id, b)).transpose()
    }

    async fn put(&self, record: &Record) -> Result<(), JournalError> {
        let bytes = encode(record)?;
        self.lock().insert(record.id.clone(), bytes);
        Ok(())
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<Record>, JournalError> {
        let mut out = Vec::new();
        for (id, bytes) in self.lock().iter() {
            let r = decode(id, bytes)?;
            if filter.accepts(&r) {
                out.push(r);
            }
        }
        Ok(sort_and_limit(out, filter))
    }

    async fn summaries(&self) -> Result<Vec<super::Summary>, JournalError> {
        let records = self.lock();
        records
            .iter()
            .map(|(id, bytes)| super::decode_summary(id, bytes))
            .collect()
    }

    fn flush(&self) -> Result<(), JournalError> {
        Ok(())
    }

    async fn setting(&self, key: &str) -> Result<Option<serde_json::Value>, JournalError> {
        let settings = self.settings.lock().unwrap_or_else(|e| e.into_inner());
        Ok(settings.get(key).cloned())
    }

    async fn put_setting(&self, key: &str, value: &serde_json::Value) -> Result<(), JournalError> {
        let mut settings = self.settings.lock().unwrap_or_else(|e| e.into_inner());
        settings.insert(key.to_owned(), value.clone());
        Ok(())
    }
}
