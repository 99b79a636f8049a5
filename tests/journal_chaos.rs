//! Several tugboat processes on one queue and one shared journal, killed with SIGKILL over and
//! over: three `tugboat serve`, a few dozen events of a workflow with several steps and a
//! sleep (`log`: log → delay → notify), one process killed every few seconds and started
//! again. At the end every event has succeeded once in the journal, nothing is lost or
//! dead-lettered, and the step recorder (`TUGBOAT_STEP_LOG`) shows that no step of any
//! instance ran in two processes at overlapping times.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde_json::json;
use support::service::{Service, create_journal_table, create_queue, depth, scan_items};
use support::{clients, unique};

/// One run of a step: the process, and when it started and ended (µs).
type Run = (u32, u128, u128);

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

async fn succeeded(table: &str) -> Vec<String> {
    scan_items(table)
        .await
        .iter()
        .filter(|item| {
            item.get("status")
                .and_then(|s| s.as_s().ok())
                .map(String::as_str)
                == Some("succeeded")
        })
        .map(|item| item["id"].as_s().unwrap().clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_killed_over_and_over_run_every_event_once_and_never_a_step_twice_at_once()
{
    // 60 keeps CI short; `TUGBOAT_CHAOS_EVENTS=500` is the scale.
    let events: usize = std::env::var("TUGBOAT_CHAOS_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let p = unique("chaos");
    let queue = format!("{p}-q");
    let queue_url = create_queue(&queue).await;
    let dlq_url = create_queue(&format!("{p}-dlq")).await;
    let table = format!("{p}-journal");
    create_journal_table(&table).await;
    let dir = tempfile::tempdir().unwrap();
    let steps = dir.path().join("steps.log");
    let extra = format!(
        "[[queues]]\nname = \"{queue}\"\ndlq = \"{p}-dlq\"\nvisibility_timeout = \"4s\"\nreceive_wait = \"1s\"\n\n\
         [[routes]]\nname = \"r\"\npattern = {{ source = [\"test\"] }}\nworkflow = \"log\"\nparams = {{ delay = \"1s\" }}\n\n\
         [journal]\nkind = \"dynamodb\"\ntable = \"{table}\"\nlease = \"3s\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[shutdown]\ndeadline = \"3s\"\n"
    );
    let config = support::write_config(dir.path(), &[], &extra);
    let env = [("TUGBOAT_STEP_LOG", steps.to_str().unwrap())];
    let mut processes: Vec<Service> = (0..3)
        .map(|_| Service::start_with_env(&config, None, &env))
        .collect();
    let sqs = clients().await.sqs;
    for chunk in (0..events).collect::<Vec<_>>().chunks(10) {
        let mut batch = sqs.send_message_batch().queue_url(&queue_url);
        for i in chunk {
            let body = json!({"version": "0", "id": format!("chaos-{i}"), "source": "test",
                "detail-type": "t", "detail": {}});
            batch = batch.entries(
                SendMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .message_body(body.to_string())
                    .build()
                    .unwrap(),
            );
        }
        batch.send().await.unwrap();
    }

    // Kill one process every 3 s (round robin) and start it again, eight times; then let the
    // survivors finish.
    let mut deaths: HashMap<u32, u128> = HashMap::new();
    let started = Instant::now();
    for round in 0..8 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let victim = round % processes.len();
        let pid = processes[victim].pid();
        let old = std::mem::replace(
            &mut processes[victim],
            Service::start_with_env(&config, None, &env),
        );
        old.kill9();
        deaths.insert(pid, now_us());
    }
    let left = Duration::from_secs(240).saturating_sub(started.elapsed());
    let finished = std::sync::Mutex::new(0);
    support::wait::until_explained(
        "every event succeeded in the journal",
        left,
        async || {
            let n = succeeded(&table).await.len();
            *finished.lock().unwrap() = n;
            n >= events
        },
        || format!("{} of {events} succeeded", finished.lock().unwrap()),
    )
    .await;
    let done = succeeded(&table).await;
    assert_eq!(
        done.len(),
        events,
        "every event succeeded once in the journal"
    );
    let mut ids = done.clone();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), events);
    // Nothing lost or dead-lettered: the DLQ is empty, the queue drains.
    assert_eq!(depth(&dlq_url).await, (0, 0), "nothing dead-lettered");
    support::wait::until("the queue drains", Duration::from_secs(60), async || {
        depth(&queue_url).await == (0, 0)
    })
    .await;
    for p in &processes {
        deaths.insert(p.pid(), now_us());
    }
    drop(processes);

    // No step of an instance ran in two processes at overlapping times. A step cut short by a
    // kill lasted until the kill.
    let log = std::fs::read_to_string(&steps).unwrap();
    let mut open: HashMap<(u32, String, String), u128> = HashMap::new();
    let mut spans: HashMap<(String, String), Vec<Run>> = HashMap::new();
    for line in log.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let [phase, at, pid, id, step] = f[..] else {
            panic!("a bad recorder line {line:?}")
        };
        let (at, pid): (u128, u32) = (at.parse().unwrap(), pid.parse().unwrap());
        let key = (pid, id.to_owned(), step.to_owned());
        match phase {
            "start" => {
                open.insert(key, at);
            }
            _ => {
                let began = open.remove(&key).expect("an end without a start");
                spans
                    .entry((id.to_owned(), step.to_owned()))
                    .or_default()
                    .push((pid, began, at));
            }
        }
    }
    let cut_short = open.len();
    for ((pid, id, step), began) in open {
        let end = deaths[&pid];
        spans.entry((id, step)).or_default().push((pid, began, end));
    }
    let mut checked = 0;
    for ((id, step), runs) in &spans {
        for (i, a) in runs.iter().enumerate() {
            for b in &runs[i + 1..] {
                checked += 1;
                if a.0 != b.0 {
                    assert!(
                        a.2 <= b.1 || b.2 <= a.1,
                        "{id} {step} ran in processes {} and {} at once: {a:?} {b:?}",
                        a.0,
                        b.0
                    );
                }
            }
        }
    }
    eprintln!(
        "{events} events, 8 kills, {} step runs recorded, {cut_short} cut short by a kill, {checked} pairs checked",
        spans.values().map(Vec::len).sum::<usize>()
    );
    assert!(spans.len() >= events * 2, "the recorder saw the steps");
}
