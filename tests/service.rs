//! The `tugboat serve` binary against the local AWS emulator: crash safety under `kill -9` at
//! every step boundary, graceful shutdown with work in flight, DLQ handoff and redrive, and
//! visibility extension of a long step.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::service::{Service, create_queue, depth, drain, send, succeeded, topic_into, until};
use support::{clients, emulator, run, tugboat, unique};

/// The resources of one test: a work queue with its DLQ, a success topic and a queue that
/// receives its notifications.
struct Fixture {
    dir: tempfile::TempDir,
    queue: String,
    queue_url: String,
    dlq_url: String,
    topic_arn: String,
    notifications_url: String,
    config: PathBuf,
}

async fn fixture(prefix: &str, visibility: &str, route_params: &str, deadline: &str) -> Fixture {
    let p = unique(prefix);
    let queue = format!("{p}-q");
    let queue_url = create_queue(&queue).await;
    let dlq_url = create_queue(&format!("{p}-dlq")).await;
    let notifications_url = create_queue(&format!("{p}-n")).await;
    let topic_arn = topic_into(&format!("{p}-ok"), &notifications_url, true).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[[routes]]\nname = \"r\"\npattern = {{ source = [\"test\"] }}\nworkflow = \"log\"\nparams = {{ {route_params} }}\n\n\
         [notify]\nsuccess_topic = \"{topic_arn}\"\n\n[journal]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[shutdown]\ndeadline = \"{deadline}\"\n",
        dir.path().join("journal").display()
    );
    let config = support::write_config(dir.path(), &[], &extra);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replacen(
        "[[routes]]",
        &format!("[[queues]]\nname = \"{queue}\"\ndlq = \"{p}-dlq\"\nvisibility_timeout = \"{visibility}\"\nreceive_wait = \"1s\"\n\n[[routes]]"),
        1,
    );
    std::fs::write(&config, text).unwrap();
    Fixture {
        dir,
        queue,
        queue_url,
        dlq_url,
        topic_arn,
        notifications_url,
        config,
    }
}

fn event(id: &str) -> String {
    json!({"version": "0", "id": id, "source": "test", "detail-type": "t", "detail": {}})
        .to_string()
}

/// Kills the service with SIGKILL at `failpoint`'s `n`-th pass, restarts it on the same
/// journal, and checks that every event completed, nothing was lost or dead-lettered, and
/// each notification was published once, or, where the kill can fall between a publish and
/// its journal write, at most twice with the same deduplication id.
///
/// With one event in flight the kill falls exactly on the named boundary: only
/// `step-called` may repeat the publish. With several in flight, the other workflows are
/// stopped wherever they are, so any of them may repeat its last call once.
async fn crash_and_recover(failpoint: &str, n: u32, events: usize) {
    let f = fixture("crash", "2s", "", "5s").await;
    let ids: Vec<String> = (0..events).map(|_| unique("ev")).collect();
    for id in &ids {
        send(&f.queue_url, &event(id)).await;
    }
    Service::killed_at(&f.config, &format!("{failpoint}:{n}"));

    let service = Service::start(&f.config, None);
    until(
        "every workflow succeeds",
        Duration::from_secs(30),
        async || succeeded(&service) == events,
    )
    .await;
    until("the queue is empty", Duration::from_secs(30), async || {
        depth(&f.queue_url).await == (0, 0)
    })
    .await;
    let (code, log) = service.terminate();
    assert_eq!(code, 0, "{log}");

    let notes = drain(&f.notifications_url).await;
    let mut by_dedup: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (body, attrs) in &notes {
        let dedup = attrs.get("tugboat-dedup-id").cloned().unwrap_or_default();
        by_dedup.entry(dedup).or_default().push(body.clone());
    }
    let case = format!("{failpoint}:{n} with {events} event(s): {notes:?}");
    assert_eq!(
        by_dedup.len(),
        events,
        "one deduplication id per event; {case}"
    );
    let most = if events == 1 && failpoint != "step-called" {
        1
    } else {
        2
    };
    for copies in by_dedup.values() {
        assert!(copies.len() <= most, "{case}");
        assert!(
            copies.iter().all(|b| *b == copies[0]),
            "copies of one publish are identical; {case}"
        );
    }
    for id in &ids {
        assert!(
            notes.iter().any(|(b, _)| b.contains(id.as_str())),
            "{id} was lost; {case}"
        );
    }
    assert_eq!(
        depth(&f.dlq_url).await,
        (0, 0),
        "nothing was dead-lettered; {case}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_every_step_boundary_loses_nothing_and_repeats_no_effect() {
    emulator();
    // The three failpoints in parallel, each on its own thread and runtime. One event: each
    // failpoint is passed twice (two steps); two events: four times.
    let mut runs = Vec::new();
    for failpoint in ["step-journaled", "step-called", "transition-journaled"] {
        runs.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            for n in 1..=2 {
                rt.block_on(crash_and_recover(failpoint, n, 1));
            }
            for n in 1..=4 {
                rt.block_on(crash_and_recover(failpoint, n, 2));
            }
        }));
    }
    for r in runs {
        r.join().expect("a crash run failed");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_work_in_flight_releases_it_and_the_next_process_resumes() {
    // A 30 s visibility timeout: only a release makes the message visible again at once.
    let f = fixture("term", "30s", "delay = \"4s\"", "1s").await;
    let id = unique("ev");
    send(&f.queue_url, &event(&id)).await;
    let service = Service::start(&f.config, None);
    service.wait_for_line(|l| l.contains("event received"), Duration::from_secs(20));
    let started = Instant::now();
    let (code, log) = service.terminate();
    assert_eq!(code, 0, "{log}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the 1 s deadline bounds the shutdown"
    );
    assert!(log.contains("intake stopped"), "{log}");
    assert_eq!(
        depth(&f.queue_url).await,
        (1, 0),
        "the message is visible again at once"
    );

    let service = Service::start(&f.config, None);
    until(
        "the workflow succeeds",
        Duration::from_secs(20),
        async || succeeded(&service) == 1,
    )
    .await;
    let w = &service.workflows()[0];
    assert_eq!(w["steps"][0]["name"], "log");
    assert_eq!(
        w["steps"][0]["attempts"], 1,
        "the log step did not run again"
    );
    until("the queue is empty", Duration::from_secs(10), async || {
        depth(&f.queue_url).await == (0, 0)
    })
    .await;
    assert_eq!(service.terminate().0, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_workflow_is_dead_lettered_with_attributes_and_redrive_makes_it_succeed() {
    let f = fixture("dlq", "10s", "", "5s").await;
    let c = clients().await;
    // Break the workflow: its notification topic is gone (SNS answers NotFound: permanent).
    c.sns
        .delete_topic()
        .topic_arn(&f.topic_arn)
        .send()
        .await
        .unwrap();
    let id = unique("ev");
    send(&f.queue_url, &event(&id)).await;
    let service = Service::start(&f.config, None);
    until(
        "the message reaches the DLQ",
        Duration::from_secs(20),
        async || depth(&f.dlq_url).await.0 == 1,
    )
    .await;
    until(
        "the original is deleted",
        Duration::from_secs(10),
        async || depth(&f.queue_url).await == (0, 0),
    )
    .await;

    let listed = run(tugboat(&f.config).args(["dlq", "list", "--queue", &f.queue]));
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    for part in [
        format!("r:{id}, run 0"),
        "route/step:  r / notify".into(),
        "NotFound".into(),
        "1 dead letter(s)".into(),
    ] {
        assert!(
            listed.stdout.contains(&part),
            "{part:?} missing:\n{}",
            listed.stdout
        );
    }
    let workflow_id = format!("r:{id}");
    let shown = run(tugboat(&f.config)
        .args(["workflows", "show", &workflow_id, "--json"])
        .env("TUGBOAT__ADMIN__LISTEN", service.admin.clone().unwrap()));
    let record: Value = serde_json::from_str(&shown.stdout)
        .unwrap_or_else(|_| panic!("{}{}", shown.stdout, shown.stderr));
    assert_eq!(record["status"], "dead_lettered");

    // The fix: the topic exists again (same name, same ARN). Redrive, and it succeeds.
    let name = f.topic_arn.rsplit(':').next().unwrap();
    let arn = c
        .sns
        .create_topic()
        .name(name)
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    assert_eq!(arn, f.topic_arn);
    let redrive = run(tugboat(&f.config).args(["dlq", "redrive", "--queue", &f.queue]));
    assert_eq!(redrive.code, 0, "{}", redrive.stderr);
    assert!(
        redrive.stdout.contains("redrove 1 message(s)"),
        "{}",
        redrive.stdout
    );
    until(
        "the redriven workflow succeeds",
        Duration::from_secs(20),
        async || succeeded(&service) == 1,
    )
    .await;
    let w = &service.workflows()[0];
    assert_eq!(
        w["generation"], 1,
        "the redrive ran the instance's second generation"
    );
    assert_eq!(w["earlier"][0]["generation"], 0);
    assert_eq!(depth(&f.dlq_url).await, (0, 0));
    until("the queue is empty", Duration::from_secs(10), async || {
        depth(&f.queue_url).await == (0, 0)
    })
    .await;
    let (code, _) = service.terminate();
    assert_eq!(code, 0);

    // With the service stopped, `workflows list` reads the journal file.
    let listed = run(tugboat(&f.config).args(["workflows", "list", "--status", "succeeded"]));
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(
        listed.stdout.contains(&workflow_id) && listed.stdout.contains("1 workflow(s)"),
        "{}",
        listed.stdout
    );
    drop(f.dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_longer_than_the_visibility_timeout_is_not_redelivered_meanwhile() {
    let f = fixture("vis", "2s", "delay = \"6s\"", "5s").await;
    send(&f.queue_url, &event(&unique("ev"))).await;
    let service = Service::start(&f.config, None);
    service.wait_for_line(|l| l.contains("event received"), Duration::from_secs(20));
    // For three visibility timeouts, nobody else can receive the message.
    let c = clients().await;
    let watch_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < watch_until {
        let got = c
            .sqs
            .receive_message()
            .queue_url(&f.queue_url)
            .wait_time_seconds(1)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
        assert!(
            got.messages.unwrap_or_default().is_empty(),
            "the message was redelivered while its step ran"
        );
    }
    until(
        "the workflow succeeds",
        Duration::from_secs(20),
        async || succeeded(&service) == 1,
    )
    .await;
    assert_eq!(drain(&f.notifications_url).await.len(), 1);
    assert_eq!(service.terminate().0, 0);
}
