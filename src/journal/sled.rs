//! The default journal: sled, embedded, with group commit.
//!
//! `put` inserts the record and then waits for the committer thread's next `flush()`; the
//! committer takes every waiter that queued up while the previous flush ran and answers them
//! all with one flush. Under load that turns thousands of writes into tens of flushes.
//!
//! Durability: sled's `flush` on Linux uses `sync_file_range`, which survives a process crash
//! (the data is in the page cache) but is not an fsync (STACK.md). A Fargate task's disk dies
//! with the task, so the journal protects against process crashes and restarts within a task;
//! the SQS message protects the work across tasks.

use std::path::Path;
use std::sync::mpsc;
use std::thread;

use async_trait::async_trait;
use tokio::sync::oneshot;

use super::{Journal, JournalError, ListFilter, Record, decode, encode, sort_and_limit};

#[derive(Debug)]
pub struct SledJournal {
    db: sled::Db,
    records: sled::Tree,
    settings: sled::Tree,
    committer: Option<mpsc::Sender<oneshot::Sender<Result<(), String>>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for SledJournal {
    /// Stops the commit thread and waits for it, so that the database (and its file lock) is
    /// released when the journal is dropped, and a reopen in the same process succeeds.
    fn drop(&mut self) {
        self.committer.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn storage(e: impl std::fmt::Display) -> JournalError {
    JournalError::Storage(e.to_string())
}

impl SledJournal {
    /// Opens (or creates) the journal in `dir`. Fails if another process has it open.
    pub fn open(dir: &Path) -> Result<SledJournal, JournalError> {
        let config = sled::Config::new()
            .path(dir)
            // The committer flushes; sled's own periodic flush would only add writes.
            .flush_every_ms(None);
        // sled's background threads may hold the file lock a moment after the last handle to
        // a database in this process was dropped: a reopen waits for that, briefly. Another
        // process holding it is still refused (after the wait).
        let mut waited = 0;
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock") && waited < 40 =>
                {
                    waited += 1;
                    thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => {
                    return Err(JournalError::Storage(format!(
                        "cannot open {}: {e}",
                        dir.display()
                    )));
                }
            }
        };
        let records = db.open_tree("workflows").map_err(storage)?;
        let settings = db.open_tree("settings").map_err(storage)?;
        let (tx, rx) = mpsc::channel::<oneshot::Sender<Result<(), String>>>();
        let flusher = db.clone();
        let thread = thread::Builder::new()
            .name("journal-commit".into())
            .spawn(move || {
                // Ends when every sender (the journal) is gone.
                while let Ok(first) = rx.recv() {
                    let mut waiters = vec![first];
                    waiters.extend(rx.try_iter());
                    let result = flusher.flush().map(|_| ()).map_err(|e| e.to_string());
                    for w in waiters {
                        let _ = w.send(result.clone());
                    }
                }
            })
            .map_err(storage)?;
        Ok(SledJournal {
            db,
            records,
            settings,
            committer: Some(tx),
            thread: Some(thread),
        })
    }
}

#[async_trait]
impl Journal for SledJournal {
    async fn get(&self, id: &str) -> Result<Option<Record>, JournalError> {
        match self.records.get(id.as_bytes()).map_err(storage)? {
            Some(bytes) => decode(id, &bytes).map(Some),
            None => Ok(None),
        }
    }

    async fn put(&self, record: &Record) -> Result<(), JournalError> {
        self.records
            .insert(record.id.as_bytes(), encode(record)?)
            .map_err(storage)?;
        self.commit().await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<Record>, JournalError> {
        let mut out = Vec::new();
        for item in self.records.iter() {
            let (key, bytes) = item.map_err(storage)?;
            let r = decode(&String::from_utf8_lossy(&key), &bytes)?;
            if filter.accepts(&r) {
                out.push(r);
            }
        }
        Ok(sort_and_limit(out, filter))
    }

    async fn summaries(&self) -> Result<Vec<super::Summary>, JournalError> {
        let mut out = Vec::new();
        for item in self.records.iter() {
            let (key, bytes) = item.map_err(storage)?;
            out.push(super::decode_summary(
                &String::from_utf8_lossy(&key),
                &bytes,
            )?);
        }
        Ok(out)
    }

    fn flush(&self) -> Result<(), JournalError> {
        self.db.flush().map(|_| ()).map_err(storage)
    }

    async fn setting(&self, key: &str) -> Result<Option<serde_json::Value>, JournalError> {
        match self.settings.get(key.as_bytes()).map_err(storage)? {
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| JournalError::Corrupt {
                        id: format!("setting {key}"),
                        message: e.to_string(),
                    })
            }
            None => Ok(None),
        }
    }

    async fn put_setting(&self, key: &str, value: &serde_json::Value) -> Result<(), JournalError> {
        let bytes = serde_json::to_vec(value).map_err(storage)?;
        self.settings
            .insert(key.as_bytes(), bytes)
            .map_err(storage)?;
        self.commit().await
    }
}

impl SledJournal {
    /// Waits for the group commit that makes every write so far durable.
    async fn commit(&self) -> Result<(), JournalError> {
        let (tx, rx) = oneshot::channel();
        self.committer
            .as_ref()
            .ok_or_else(|| JournalError::Storage("the journal is closing".into()))?
            .send(tx)
            .map_err(|_| JournalError::Storage("the commit thread has stopped".into()))?;
        rx.await
            .map_err(|_| JournalError::Storage("the commit thread has stopped".into()))?
            .map_err(JournalError::Storage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Origin, Status};
    use serde_json::json;

    pub(crate) fn record(id: &str) -> Record {
        Record::new(id, "log", Origin::default(), json!({}), json!({}))
    }

    #[tokio::test]
    async fn records_survive_reopening_and_concurrent_puts_commit() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = std::sync::Arc::new(SledJournal::open(dir.path()).unwrap());
            let mut tasks = Vec::new();
            for i in 0..200 {
                let j = j.clone();
                tasks.push(tokio::spawn(async move {
                    j.put(&record(&format!("w-{i}"))).await
                }));
            }
            for t in tasks {
                t.await.unwrap().unwrap();
            }
            let mut r = record("w-0");
            r.status = Status::Succeeded;
            j.put(&r).await.unwrap();
        }
        let j = SledJournal::open(dir.path()).unwrap();
        assert_eq!(j.list(&ListFilter::default()).await.unwrap().len(), 200);
        assert_eq!(
            j.get("w-0").await.unwrap().unwrap().status,
            Status::Succeeded
        );
        let done = ListFilter {
            status: Some("succeeded".into()),
            ..Default::default()
        };
        assert_eq!(j.list(&done).await.unwrap().len(), 1);
        assert!(j.get("missing").await.unwrap().is_none());
    }

    #[test]
    fn another_schema_version_is_refused_not_misread() {
        let mut v = serde_json::to_value(record("x")).unwrap();
        v["schema"] = json!(99);
        let err = decode("x", &serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(err.to_string().contains("schema version"), "{err}");
        assert!(decode("x", b"not json").is_err());
        let err = crate::journal::decode_summary("x", &serde_json::to_vec(&v).unwrap());
        assert!(err.unwrap_err().to_string().contains("schema version"));
        assert!(crate::journal::decode_summary("x", b"{\"schema\": 2}").is_err());
    }

    #[tokio::test]
    async fn summaries_read_lightly_equal_the_records_summaries() {
        let dir = tempfile::tempdir().unwrap();
        let j = SledJournal::open(dir.path()).unwrap();
        let mut failed = Record::new(
            "r:e-1",
            "log",
            Origin::default(),
            json!({"id": "e-1", "detail": {"big": [1, 2, 3]}}),
            json!({"p": 1}),
        );
        failed.step_mut("a").output = Some(json!({"x": "y"}));
        failed.step_mut("b").last_error = Some("no".into());
        failed.last_error = Some("no".into());
        failed.generation = 2;
        failed.status = Status::DeadLettered {
            reason: "b: no".into(),
        };
        let mut running = record("r:e-2");
        running.pending = Some(crate::contract::Action {
            name: "wait#3".into(),
            step: json!("wait").into(),
            call: crate::contract::Call::Handler,
            retry: Default::default(),
        });
        for r in [&failed, &running] {
            j.put(r).await.unwrap();
        }
        let mut light = j.summaries().await.unwrap();
        light.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(light, [failed.summary(), running.summary()]);
        assert_eq!(light[0].event_id.as_deref(), Some("e-1"));
        assert_eq!(light[0].reason.as_deref(), Some("b: no"));
        assert_eq!(light[1].step.as_deref(), Some("wait#3"));
    }
}
