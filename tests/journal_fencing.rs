//! Fencing between processes on the shared journal: two `tugboat serve` on one queue and one
//! DynamoDB table. The process running an instance is paused (SIGSTOP) past its lease and the
//! message's visibility; the other takes the message, waits out the lease, claims the
//! instance and finishes it. Resumed (SIGCONT), the first process's next write is refused:
//! it does not overwrite the finished record, and says it was fenced off.

mod support;

use std::process::Command;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;
use support::service::{Service, create_queue, send, until};
use support::{clients, unique};

async fn item(table: &str, id: &str) -> Option<std::collections::HashMap<String, AttributeValue>> {
    clients()
        .await
        .dynamodb
        .get_item()
        .table_name(table)
        .key("id", AttributeValue::S(id.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
}

fn signal(pid: u32, sig: &str) {
    assert!(
        Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_does_not_write_over_the_process_that_took_its_instance() {
    let p = unique("fence");
    let queue = format!("{p}-q");
    let queue_url = create_queue(&queue).await;
    create_queue(&format!("{p}-dlq")).await;
    let table = format!("{p}-journal");
    support::service::create_journal_table(&table).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[[queues]]\nname = \"{queue}\"\ndlq = \"{p}-dlq\"\nvisibility_timeout = \"2s\"\nreceive_wait = \"1s\"\n\n\
         [[routes]]\nname = \"r\"\npattern = {{ source = [\"test\"] }}\nworkflow = \"log\"\nparams = {{ delay = \"6s\" }}\n\n\
         [journal]\nkind = \"dynamodb\"\ntable = \"{table}\"\nlease = \"3s\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[shutdown]\ndeadline = \"3s\"\n"
    );
    let config = support::write_config(dir.path(), &[], &extra);
    let first = Service::start(&config, None);
    send(
        &queue_url,
        &json!({"version": "0", "id": "fence-1", "source": "test", "detail-type": "t", "detail": {}})
            .to_string(),
    )
    .await;
    let id = "r:fence-1";
    // The first process is in the 6 s sleep: its record says so.
    until(
        "the first process sleeps",
        Duration::from_secs(30),
        async || {
            item(&table, id).await.is_some_and(|i| {
                i.get("record")
                    .and_then(|r| r.as_s().ok())
                    .is_some_and(|r| r.contains("\"delay\""))
            })
        },
    )
    .await;
    let owner =
        |i: &std::collections::HashMap<String, AttributeValue>| i["owner"].as_s().unwrap().clone();
    let first_owner = owner(&item(&table, id).await.unwrap());
    signal(first.pid(), "-STOP");

    // The second process takes it once the message is visible and the lease has run out.
    let second = Service::start(&config, None);
    until(
        "the second process finished it",
        Duration::from_secs(60),
        async || {
            item(&table, id)
                .await
                .is_some_and(|i| i["status"].as_s().unwrap() == "succeeded")
        },
    )
    .await;
    let done = item(&table, id).await.unwrap();
    let second_owner = owner(&done);
    assert_ne!(second_owner, first_owner);
    let version = done["version"].as_n().unwrap().clone();

    // The first resumes: its sleep has ended, its next write is refused.
    signal(first.pid(), "-CONT");
    // "fenced off" is logged once its write was refused: the record is looked at after it.
    first.wait_for_line(|l| l.contains("fenced off"), Duration::from_secs(30));
    let after = item(&table, id).await.unwrap();
    assert_eq!(after["status"].as_s().unwrap(), "succeeded");
    assert_eq!(
        owner(&after),
        second_owner,
        "the record is still the second's"
    );
    assert_eq!(
        after["version"].as_n().unwrap(),
        &version,
        "nothing written over it"
    );
    drop(second);
    drop(first);
}
