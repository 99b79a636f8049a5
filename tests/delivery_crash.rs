//! Deliveries whose message is their record (`http_deliver`, `Durability::Message`) through
//! `tugboat serve` on the emulator's SQS: killed with SIGKILL five times in the middle of
//! 1 000 deliveries, and against a receiver that is down while the events arrive. Nothing is
//! lost (every event arrives at least once, the DLQ stays empty, the queue drains); the
//! duplicates a kill causes are counted and reported.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde_json::{Value, json};
use support::service::{Service, create_queue, depth};
use support::wait::{until, until_explained};
use support::{clients, unique};

/// How many POSTs the receiver had per event id.
type Seen = Arc<Mutex<HashMap<String, usize>>>;

fn receiver_app(seen: Seen) -> axum::Router {
    axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let seen = seen.clone();
            async move {
                let event: Value = serde_json::from_str(&body).unwrap_or_default();
                let id = event["id"].as_str().unwrap_or("?").to_owned();
                *seen.lock().unwrap().entry(id).or_default() += 1;
                "ok"
            }
        }),
    )
}

struct Rig {
    _dir: tempfile::TempDir,
    queue_url: String,
    dlq_url: String,
    config: PathBuf,
}

async fn rig(port: u16) -> Rig {
    let p = unique("deliver");
    let queue_url = create_queue(&format!("{p}-q")).await;
    let dlq_url = create_queue(&format!("{p}-dlq")).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[[queues]]\nname = \"{p}-q\"\ndlq = \"{p}-dlq\"\nvisibility_timeout = \"5s\"\nreceive_wait = \"100ms\"\n\n\
         [[routes]]\nname = \"out\"\npattern = {{ source = [\"test\"] }}\nworkflow = \"http_deliver\"\nparams = {{ destination = \"d\" }}\n\n\
         [destinations.d]\nurl = \"http://127.0.0.1:{port}/hook\"\nrate_limit_per_second = 0\ntimeout = \"2s\"\n\n\
         [journal]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[shutdown]\ndeadline = \"2s\"\n",
        dir.path().join("journal").display()
    );
    let config = support::write_config(dir.path(), &[], &extra);
    Rig {
        _dir: dir,
        queue_url,
        dlq_url,
        config,
    }
}

async fn send_events(queue_url: &str, ids: &[String]) {
    let sqs = clients().await.sqs;
    for chunk in ids.chunks(10) {
        let mut batch = sqs.send_message_batch().queue_url(queue_url);
        for (i, id) in chunk.iter().enumerate() {
            let body = json!({"version": "0", "id": id, "source": "test", "detail-type": "t",
                "detail": {"n": id}});
            batch = batch.entries(
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body.to_string())
                    .build()
                    .unwrap(),
            );
        }
        batch.send().await.unwrap();
    }
}

fn delivered(seen: &Seen) -> (usize, usize) {
    let seen = seen.lock().unwrap();
    (seen.len(), seen.values().sum())
}

/// A counter's value on the service's /metrics (summed over its labels).
fn metric(service: &Service, name: &str) -> f64 {
    service
        .metrics()
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn drained(r: &Rig) {
    until("the queue drains", Duration::from_secs(60), async || {
        depth(&r.queue_url).await == (0, 0)
    })
    .await;
    assert_eq!(depth(&r.dlq_url).await, (0, 0), "nothing dead-lettered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_deliveries_killed_five_times_lose_nothing() {
    let seen = Seen::default();
    let port = support::serve_on_thread(receiver_app(seen.clone()));
    let r = rig(port).await;
    let events = 1_000;
    let ids: Vec<String> = (0..events)
        .map(|n| format!("{}-{n}", unique("ev")))
        .collect();
    send_events(&r.queue_url, &ids).await;

    // Killed five times, each once another 150 events have arrived since it started.
    let mut service = Service::start(&r.config, None);
    for kill in 1..=5 {
        let target = (kill * 150).min(events);
        until_explained(
            &format!("{target} events delivered before kill {kill}"),
            Duration::from_secs(120),
            async || delivered(&seen).0 >= target,
            || format!("{:?} (unique, posts)", delivered(&seen)),
        )
        .await;
        service.kill9();
        service = Service::start(&r.config, None);
    }
    until_explained(
        "every event delivered",
        Duration::from_secs(180),
        async || delivered(&seen).0 >= events,
        || format!("{:?} (unique, posts)", delivered(&seen)),
    )
    .await;
    drained(&r).await;
    let (unique_ids, posts) = delivered(&seen);
    let missing: Vec<String> = {
        let seen = seen.lock().unwrap();
        ids.iter()
            .filter(|id| !seen.contains_key(*id))
            .cloned()
            .collect()
    };
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    assert_eq!(unique_ids, events);
    // At least once: what a kill interrupted (received, maybe posted, not yet deleted) is
    // delivered again; nothing more than that.
    let duplicates = posts - unique_ids;
    eprintln!("5 kills, {events} events: {posts} POSTs, {duplicates} duplicates");
    assert!(
        duplicates <= 5 * 200,
        "{duplicates} duplicates: more than the in-flight messages of five kills"
    );
    // The deliveries that went well wrote nothing: the last process delivered some and
    // committed no journal record.
    let commits = metric(&service, "tugboat_journal_commit_seconds_count");
    assert_eq!(commits, 0.0, "journal writes on the message-as-record path");
    // They are shown all the same: the console's list (and `tugboat workflows list`, which
    // asks it) has the last process's deliveries, each succeeded, with no record behind them.
    let shown = service.workflows();
    assert!(!shown.is_empty(), "no delivery shown");
    assert!(
        shown.iter().all(|w| w["status"] == "succeeded"),
        "{shown:?}"
    );
    drop(service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_while_events_arrive_loses_nothing() {
    // The receiver's port, with nothing listening on it yet: connections are refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = rig(port).await;
    let events = 50;
    let ids: Vec<String> = (0..events)
        .map(|n| format!("{}-{n}", unique("ev")))
        .collect();
    send_events(&r.queue_url, &ids).await;
    let service = Service::start(&r.config, None);
    // Every event tried and failed at least once: each is journaled now, backing off.
    until_explained(
        "every event retried while the receiver is down",
        Duration::from_secs(60),
        async || metric(&service, "tugboat_step_retries_total") >= events as f64,
        || {
            service
                .metrics()
                .lines()
                .filter(|l| l.contains("retries"))
                .collect::<Vec<_>>()
                .join("\n")
        },
    )
    .await;
    let journaled = service
        .workflows()
        .iter()
        .filter(|w| w["status"] == "running" || w["status"] == "waiting")
        .count();
    assert!(
        journaled > 0,
        "failed attempts are journaled: {:?}",
        service.workflows()
    );
    // The receiver comes up on its port.
    let seen = Seen::default();
    let listener = std::net::TcpListener::bind(format!("127.0.0.1:{port}")).unwrap();
    support::serve_listener_on_thread(listener, receiver_app(seen.clone()));
    until_explained(
        "every event delivered once the receiver is up",
        Duration::from_secs(120),
        async || delivered(&seen).0 >= events,
        || format!("{:?} (unique, posts)", delivered(&seen)),
    )
    .await;
    drained(&r).await;
    let statuses: Vec<Value> = service.workflows();
    assert!(
        statuses.iter().all(|w| w["status"] == "succeeded"),
        "{statuses:?}"
    );
}
