//! The shared journal against the emulator's DynamoDB: the journal contract (records round
//! trip, schema version kept, listing filtered and newest first), ownership (a claim held by
//! another process is refused until its lease ends or it is given back), fencing (a process
//! whose lease was taken over cannot write over the new owner, and forgets the instance), the
//! item size limit (a clear error naming the biggest step).

mod support;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;
use support::{clients, unique};
use tugboat::aws::journal::DynamoJournal;
use tugboat::journal::{Claim, Journal, JournalError, ListFilter, Origin, Record, Status};

async fn table() -> String {
    let name = unique("journal");
    support::service::create_journal_table(&name).await;
    name
}

async fn journal(table: &str, owner: &str, lease: Duration) -> Arc<DynamoJournal> {
    DynamoJournal::new(clients().await.dynamodb, table, owner, lease)
}

fn record(id: &str, route: &str) -> Record {
    Record::new(
        id,
        "log",
        Origin {
            route: route.into(),
            queue: "q".into(),
            message_id: "m".into(),
            trace: None,
        },
        json!({"id": id}),
        json!({}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_round_trip_and_list_filtered_newest_first() {
    let t = table().await;
    let j = journal(&t, "a", Duration::from_secs(30)).await;
    assert!(j.get("r:none").await.unwrap().is_none());
    for (i, route) in ["r1", "r2", "r1"].iter().enumerate() {
        let id = format!("{route}:e-{i}");
        assert_eq!(j.claim(&id).await.unwrap(), Claim::Granted);
        // Claimed, not written: still nothing to read.
        assert!(j.get(&id).await.unwrap().is_none());
        let mut r = record(&id, route);
        r.updated_ms = 1_000 + i as u64;
        j.put(&r).await.unwrap();
        r.status = Status::Succeeded;
        r.updated_ms += 10;
        j.put(&r).await.unwrap();
        assert_eq!(j.get(&id).await.unwrap(), Some(r));
    }
    let all = j.list(&ListFilter::default()).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["r1:e-2", "r2:e-1", "r1:e-0"], "newest first");
    let r1 = j
        .list(&ListFilter {
            route: Some("r1".into()),
            limit: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r1.len(), 1);
    assert_eq!(r1[0].id, "r1:e-2");
    // What the sled journal writes is what this one stores: the same schema version.
    let item = clients()
        .await
        .dynamodb
        .get_item()
        .table_name(&t)
        .key("id", AttributeValue::S("r1:e-0".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let stored: serde_json::Value = serde_json::from_str(item["record"].as_s().unwrap()).unwrap();
    assert_eq!(stored["schema"], tugboat::journal::SCHEMA_VERSION);
    assert_eq!(item["version"].as_n().unwrap(), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_is_exclusive_until_released_and_a_taken_over_owner_is_fenced_off() {
    let t = table().await;
    let a = journal(&t, "process-a", Duration::from_secs(30)).await;
    let b = journal(&t, "process-b", Duration::from_secs(30)).await;
    let id = "r:shared";
    assert_eq!(a.claim(id).await.unwrap(), Claim::Granted);
    a.put(&record(id, "r")).await.unwrap();
    match b.claim(id).await.unwrap() {
        Claim::HeldBy { owner, until_ms } => {
            assert_eq!(owner, "process-a");
            assert!(until_ms > tugboat::journal::now_ms());
        }
        other => panic!("{other:?}"),
    }
    // Writing without the claim is refused.
    let e = b.put(&record(id, "r")).await.unwrap_err();
    assert!(matches!(e, JournalError::Fenced { .. }), "{e}");
    // Given back: b takes it at once.
    a.release(id).await;
    assert_eq!(b.claim(id).await.unwrap(), Claim::Granted);
    let mut r = record(id, "r");
    r.status = Status::Waiting { until_ms: 1 };
    b.put(&r).await.unwrap();

    // a claims again after b's lease "ran out" (a pause: the lease set in the past), then b,
    // resumed, tries to write: fenced, and its write did not land.
    clients()
        .await
        .dynamodb
        .update_item()
        .table_name(&t)
        .key("id", AttributeValue::S(id.into()))
        .update_expression("SET lease_until = :past")
        .expression_attribute_values(":past", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(a.claim(id).await.unwrap(), Claim::Granted);
    let mut mine = a.get(id).await.unwrap().unwrap();
    mine.status = Status::Succeeded;
    a.put(&mine).await.unwrap();
    let mut stale = r.clone();
    stale.status = Status::Failed {
        reason: "late".into(),
    };
    let e = b.put(&stale).await.unwrap_err();
    assert!(matches!(e, JournalError::Fenced { .. }), "{e}");
    assert_eq!(a.get(id).await.unwrap().unwrap().status, Status::Succeeded);
    // b forgot it: a second try is refused too, without a request that could land.
    assert!(b.put(&stale).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_the_item_limit_is_refused_naming_its_biggest_step() {
    let t = table().await;
    let j = journal(&t, "a", Duration::from_secs(30)).await;
    let id = "r:big";
    j.claim(id).await.unwrap();
    let mut r = record(id, "r");
    r.step_mut("small").output = Some(json!("x"));
    r.step_mut("huge").output = Some(json!("y".repeat(500 * 1024)));
    let e = j.put(&r).await.unwrap_err();
    assert!(matches!(e, JournalError::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("\"huge\""), "{e}");
    assert!(j.get(id).await.unwrap().is_none(), "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lease_is_renewed_while_its_process_lives() {
    let t = table().await;
    let lease = Duration::from_secs(1);
    let a = journal(&t, "process-a", lease).await;
    let b = journal(&t, "process-b", lease).await;
    a.claim("r:long").await.unwrap();
    a.put(&record("r:long", "r")).await.unwrap();
    // Two lease lengths later, a still owns it (renewed every third of a lease): b is told
    // so at every look until its own clock is past the end of a's first lease by a whole
    // lease; a claim granted on the way fails the test at once.
    let Claim::HeldBy {
        until_ms: first, ..
    } = b.claim("r:long").await.unwrap()
    else {
        panic!("b was granted what a holds")
    };
    let looked = std::time::Instant::now();
    while tugboat::journal::now_ms() <= first + lease.as_millis() as u64 {
        assert!(
            matches!(b.claim("r:long").await.unwrap(), Claim::HeldBy { .. }),
            "b took over while a lived"
        );
        assert!(looked.elapsed() < lease * 10, "the lease test ran too long");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(matches!(
        b.claim("r:long").await.unwrap(),
        Claim::HeldBy { .. }
    ));
    a.put(&record("r:long", "r")).await.unwrap();
    // a gone (its renewals stop): b takes over once the lease runs out.
    drop(a);
    let gone = std::time::Instant::now();
    loop {
        if b.claim("r:long").await.unwrap() == Claim::Granted {
            break;
        }
        assert!(gone.elapsed() < lease * 10, "b never took the lease over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
