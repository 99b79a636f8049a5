//! One journal contract, run against every journal: the in-memory one (unit tests), sled (the
//! default) and the shared DynamoDB journal (on the emulator). A record reads back as written;
//! a later write replaces it; listing filters by status and route, newest first, cut to the
//! limit; a claim is granted to the process that runs the instance; flushing succeeds.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tugboat::journal::{Claim, Journal, ListFilter, Origin, Record, Status};

fn record(id: &str, route: &str, at: u64) -> Record {
    let mut r = Record::new(
        id,
        "log",
        Origin {
            route: route.into(),
            queue: "q".into(),
            message_id: "m".into(),
            trace: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        },
        json!({"id": id, "detail": {"nested": [1, 2, {"x": null}]}}),
        json!({"param": true}),
    );
    r.updated_ms = at;
    r
}

async fn contract(j: Arc<dyn Journal>) {
    assert!(j.get("r1:missing").await.unwrap().is_none());
    let mut written = Vec::new();
    for (i, route) in ["r1", "r2", "r1", "r2"].iter().enumerate() {
        let id = format!("{route}:e-{i}");
        assert_eq!(j.claim(&id).await.unwrap(), Claim::Granted);
        let mut r = record(&id, route, 1_000 + i as u64);
        j.put(&r).await.unwrap();
        assert_eq!(j.get(&id).await.unwrap().as_ref(), Some(&r));
        // A later write replaces the record.
        r.step_mut("log").output = Some(json!({"logged": i}));
        r.status = if i % 2 == 0 {
            Status::Succeeded
        } else {
            Status::Waiting { until_ms: 5 }
        };
        r.updated_ms += 100;
        j.put(&r).await.unwrap();
        assert_eq!(j.get(&id).await.unwrap().as_ref(), Some(&r));
        j.release(&id).await;
        written.push(r);
    }
    let ids = |rs: Vec<Record>| rs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(j.list(&ListFilter::default()).await.unwrap()),
        ["r2:e-3", "r1:e-2", "r2:e-1", "r1:e-0"],
        "newest first"
    );
    let by = |status: Option<&str>, route: Option<&str>, limit: Option<usize>| ListFilter {
        status: status.map(str::to_owned),
        route: route.map(str::to_owned),
        limit,
    };
    assert_eq!(
        ids(j.list(&by(Some("succeeded"), None, None)).await.unwrap()),
        ["r1:e-2", "r1:e-0"]
    );
    assert_eq!(
        ids(j.list(&by(None, Some("r2"), Some(1))).await.unwrap()),
        ["r2:e-3"]
    );
    assert!(
        j.list(&by(Some("failed"), None, None))
            .await
            .unwrap()
            .is_empty()
    );
    j.flush().unwrap();
}

#[tokio::test]
async fn the_in_memory_journal_keeps_the_contract() {
    contract(Arc::new(tugboat::journal::memory::MemoryJournal::default())).await;
}

#[tokio::test]
async fn the_sled_journal_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(Arc::new(
        tugboat::journal::sled::SledJournal::open(dir.path()).unwrap(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_dynamodb_journal_keeps_the_contract() {
    let table = support::unique("contract");
    support::service::create_journal_table(&table).await;
    contract(tugboat::aws::journal::DynamoJournal::new(
        support::clients().await.dynamodb,
        &table,
        "contract",
        Duration::from_secs(30),
    ))
    .await;
}
