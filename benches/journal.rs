//! The journals' durable writes: transitions/s and commit latency (p50/p99) of the shared
//! DynamoDB journal on the local emulator with 1, 2 and 3 processes (this bench started again
//! as workers, each a journal with its own owner, claims and leases, together on one table),
//! beside the sled journal. Each
//! instance is claimed, written `--steps` times (a transition each, with a step added), and
//! released; `--concurrency` instances per writer at once.
//!
//!     cargo bench --bench journal -- --instances 300 --steps 4 --concurrency 16
//!
//! The emulator is one Python process: it bounds the DynamoDB figures, whatever the number of
//! writers (they compete for it); real DynamoDB takes each partition's 1 000 writes/s, and
//! instances spread over partitions by id.

#[path = "common.rs"]
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use tugboat::journal::{Journal, Origin, Record};

fn record(id: &str) -> Record {
    Record::new(
        id,
        "bench",
        Origin {
            route: "r".into(),
            queue: "q".into(),
            message_id: "m".into(),
            trace: None,
        },
        json!({"id": id, "detail": {"padding": "x".repeat(512)}}),
        json!({}),
    )
}

/// Runs `instances` instances over `journals` (round robin); puts/s and every put's latency.
async fn run(
    journals: &[Arc<dyn Journal>],
    instances: usize,
    steps: usize,
    concurrency: usize,
    tag: &str,
) -> (f64, Vec<Duration>) {
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    futures::stream::iter(0..instances)
        .map(|i| {
            let journal = journals[i % journals.len()].clone();
            let latencies = latencies.clone();
            let id = format!("{tag}:{i}");
            async move {
                journal.claim(&id).await.unwrap();
                let mut r = record(&id);
                for s in 0..steps {
                    r.step_mut(&format!("step-{s}")).output = Some(json!({"ok": s}));
                    r.updated_ms = tugboat::journal::now_ms();
                    let t = Instant::now();
                    journal.put(&r).await.unwrap();
                    latencies.lock().unwrap().push(t.elapsed());
                }
                journal.release(&id).await;
            }
        })
        .buffer_unordered(concurrency * journals.len())
        .collect::<Vec<_>>()
        .await;
    let puts = (instances * steps) as f64;
    let rate = puts / start.elapsed().as_secs_f64();
    let l = std::mem::take(&mut *latencies.lock().unwrap());
    (rate, l)
}

fn report(what: &str, rate: f64, mut latencies: Vec<Duration>) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what:<44} {rate:>9.0} transitions/s   commit p50 {:>7.2} ms  p99 {:>7.2} ms",
        ms(common::percentile(&mut latencies, 50.0)),
        ms(common::percentile(&mut latencies, 99.0)),
    );
}

/// A worker process: `--worker TABLE OWNER FIRST COUNT STEPS CONCURRENCY ENDPOINT`; prints
/// its latencies (µs) as JSON.
fn worker(args: &[String]) {
    let [table, owner, first, count, steps, concurrency] = &args[..6] else {
        panic!("worker arguments: {args:?}")
    };
    let (first, count): (usize, usize) = (first.parse().unwrap(), count.parse().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let journal: Arc<dyn Journal> = tugboat::aws::journal::DynamoJournal::new(
            support::clients().await.dynamodb,
            table,
            owner,
            Duration::from_secs(30),
        );
        let tag = format!("{table}-{first}");
        let (_, latencies) = run(
            &[journal],
            count,
            steps.parse().unwrap(),
            concurrency.parse().unwrap(),
            &tag,
        )
        .await;
        let us: Vec<u128> = latencies.iter().map(Duration::as_micros).collect();
        println!("{}", serde_json::to_string(&us).unwrap());
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--worker") {
        return worker(&args[i + 1..]);
    }
    let instances = common::arg("--instances", 300);
    let steps = common::arg("--steps", 4);
    let concurrency = common::arg("--concurrency", 16);
    println!("machine: {}", common::machine());
    println!("{instances} instances × {steps} transitions, {concurrency} at once per process");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let endpoint = support::emulator().endpoint.clone();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let sled: Arc<dyn Journal> =
            Arc::new(tugboat::journal::sled::SledJournal::open(dir.path()).unwrap());
        let (rate, l) = run(&[sled], instances, steps, concurrency, "sled").await;
        report("sled (group commit), 1 process", rate, l);
        for processes in 1..=3usize {
            let table = support::unique("bench-journal");
            support::service::create_journal_table(&table).await;
            let share = instances / processes;
            let start = Instant::now();
            let children: Vec<_> = (0..processes)
                .map(|p| {
                    std::process::Command::new(std::env::current_exe().unwrap())
                        .arg("--worker")
                        .args([
                            table.clone(),
                            format!("process-{p}"),
                            (p * share).to_string(),
                            share.to_string(),
                            steps.to_string(),
                            concurrency.to_string(),
                        ])
                        .env("TUGBOAT_TEST_EMULATOR", &endpoint)
                        .stdout(std::process::Stdio::piped())
                        .spawn()
                        .unwrap()
                })
                .collect();
            let mut latencies = Vec::new();
            for c in children {
                let out = c.wait_with_output().unwrap();
                assert!(out.status.success(), "a worker failed");
                let us: Vec<u64> = serde_json::from_slice(
                    String::from_utf8_lossy(&out.stdout)
                        .trim()
                        .lines()
                        .last()
                        .unwrap()
                        .as_bytes(),
                )
                .unwrap();
                latencies.extend(us.into_iter().map(Duration::from_micros));
            }
            let rate = (share * processes * steps) as f64 / start.elapsed().as_secs_f64();
            report(
                &format!("DynamoDB (emulator), {processes} process(es)"),
                rate,
                latencies,
            );
        }
    });
}
