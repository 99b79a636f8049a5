//! Ingress throughput: events/s put on an SQS queue of the local emulator through tugboat's
//! ingress (`PutEvents`, 10 entries a request, a bearer token, over loopback HTTP), beside a
//! plain `SendMessageBatch` loop of 10 on the same emulator, same concurrency, in one run.
//! moto bounds both; the ratio speaks about the ingress.
//!
//!     cargo bench --bench ingress -- --events 500 --concurrency 4 --rounds 4

#[path = "common.rs"]
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use tugboat::aws::sqs::SqsQueue;
use tugboat::ingress::{Ingress, IngressConfig};
use tugboat::ports::clock::SystemClock;
use tugboat::ports::{OutgoingMessage, Queue};

const TOKEN: &str = "bench-ingress-token-0123456789";

fn event(i: usize) -> serde_json::Value {
    json!({"Source": "bench", "DetailType": "b", "Detail": format!("{{\"n\":{i}}}")})
}

/// `requests` batches of 10, `concurrency` at a time, each by `send`.
async fn run<F, Fut>(requests: usize, concurrency: usize, send: F) -> f64
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let next = next.clone();
        let send = send.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= requests {
                    return;
                }
                send(i).await;
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    (requests * 10) as f64 / start.elapsed().as_secs_f64()
}

/// One round: `events` through the ingress onto a fresh queue, and `events` by a plain loop
/// onto another fresh queue; (ingress, plain) events/s. `plain_first` alternates the order.
async fn round(events: usize, concurrency: usize, plain_first: bool) -> (f64, f64) {
    let clients = support::clients().await;
    let plain_name = support::unique("bench-plain");
    let ingress_name = support::unique("bench-ingress");
    for name in [&plain_name, &ingress_name] {
        clients
            .sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .unwrap();
    }
    let plain = Arc::new(SqsQueue::resolve(&clients.sqs, &plain_name).await.unwrap());
    let target = Arc::new(
        SqsQueue::resolve(&clients.sqs, &ingress_name)
            .await
            .unwrap(),
    );
    let requests = events / 10;

    let config: IngressConfig = toml::from_str(&format!(
        "listen = \"127.0.0.1:0\"\ntokens = [\"{TOKEN}\"]\nrate_limit = 0\n"
    ))
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let ingress = Ingress::new(
        config,
        target.clone() as Arc<dyn Queue>,
        Arc::new(SystemClock),
        "us-east-1".into(),
    );
    tokio::spawn(ingress.serve(listener, shutdown));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://{addr}/");
    let through_ingress = || {
        let http = http.clone();
        let url = url.clone();
        run(requests, concurrency, move |i| {
            let http = http.clone();
            let url = url.clone();
            async move {
                let body =
                    json!({"Entries": (0..10).map(|k| event(i * 10 + k)).collect::<Vec<_>>()});
                let r = http
                    .post(&url)
                    .header("x-amz-target", "AWSEvents.PutEvents")
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .header("content-type", "application/x-amz-json-1.1")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{}", r.status());
            }
        })
    };
    let plain_loop = || {
        let plain = plain.clone();
        run(requests, concurrency, move |i| {
            let plain = plain.clone();
            async move {
                let messages: Vec<OutgoingMessage> = (0..10)
                    .map(|k| OutgoingMessage {
                        body: event(i * 10 + k).to_string(),
                        ..Default::default()
                    })
                    .collect();
                plain.send_batch(&messages).await.unwrap();
            }
        })
    };
    let rates = if plain_first {
        let p = plain_loop().await;
        (through_ingress().await, p)
    } else {
        let i = through_ingress().await;
        (i, plain_loop().await)
    };
    let _ = stop.send(true);
    rates
}

async fn bench(events: usize, concurrency: usize, rounds: usize) {
    println!(
        "{events} events a round, batches of 10, {concurrency} at a time, same emulator, fresh queues each round, the order alternating:"
    );
    let (mut sum_i, mut sum_p) = (0.0, 0.0);
    for r in 0..rounds {
        let (i, p) = round(events, concurrency, r % 2 == 1).await;
        println!(
            "  round {}: ingress {i:>7.1} events/s, plain SendMessageBatch {p:>7.1} events/s, ratio {:.2}",
            r + 1,
            i / p
        );
        sum_i += i;
        sum_p += p;
    }
    println!(
        "  ratio of the means, ingress / plain: {:.2}",
        sum_i / sum_p
    );
}

fn main() {
    let events = common::arg("--events", 500);
    let concurrency = common::arg("--concurrency", 4);
    let rounds = common::arg("--rounds", 4);
    println!("machine: {}", common::machine());
    support::emulator();
    common::in_system(bench(events, concurrency, rounds));
}
