//! `tugboat migrate` and `tugboat send` against the local AWS emulator, read back with the SDK
//! and with the real AWS CLI.

mod support;

use std::path::Path;

use aws_sdk_sqs::types::QueueAttributeName;
use support::service::create_queue;
use support::{aws_cli, clients, run, tugboat, unique, write_config};

/// Migrations like the shipped ones, with names unique to this test.
fn write_migrations(dir: &Path, p: &str) {
    std::fs::write(
        dir.join("0001_queues.toml"),
        format!(
            "description = \"work queue\"\n[[queues]]\nname = \"{p}-events\"\nvisibility_timeout = \"60s\"\n\
             [queues.dead_letter]\nname = \"{p}-events-dlq\"\nmax_receive_count = 3\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("0002_tables.toml"),
        format!("[[tables]]\nname = \"{p}-daily-cost\"\npartition_key = {{ name = \"pk\", type = \"S\" }}\nsort_key = {{ name = \"sk\", type = \"S\" }}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("0003_topics.toml"),
        format!(
            "[[topics]]\nname = \"{p}-success\"\n[[topics]]\nname = \"{p}-error\"\n[[topics]]\nname = \"{p}-anomaly\"\n\
             [[queues]]\nname = \"{p}-notifications\"\n\
             [[subscriptions]]\ntopic = \"{p}-success\"\nprotocol = \"sqs\"\nendpoint = \"{p}-notifications\"\nraw_message_delivery = true\n"
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_creates_everything_then_reports_no_changes() {
    let root = tempfile::tempdir().unwrap();
    let config = write_config(root.path(), &[], "");
    let dir = tempfile::tempdir_in(root.path()).unwrap();
    let p = unique("mig");
    write_migrations(dir.path(), &p);

    let first = run(tugboat(&config).args(["migrate", "--dir"]).arg(dir.path()));
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    for line in [
        format!("created    dead-letter   {p}-events-dlq"),
        format!("created    queue         {p}-events"),
        format!("created    table         {p}-daily-cost"),
        format!("created    topic         {p}-success"),
        format!("created    subscription  {p}-success → sqs {p}-notifications"),
    ] {
        assert!(
            first.stdout.contains(&line),
            "missing {line:?} in:\n{}",
            first.stdout
        );
    }
    assert!(
        first
            .stdout
            .contains("migrate: 8 created, 0 updated, 0 unchanged"),
        "{}",
        first.stdout
    );

    let second = run(tugboat(&config).args(["migrate", "--dir"]).arg(dir.path()));
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second
            .stdout
            .contains("migrate: no changes; all 8 resources are up to date"),
        "{}",
        second.stdout
    );
    assert!(!second.stdout.contains("created "), "{}", second.stdout);

    // What was created is what was declared.
    let c = clients().await;
    let url = c
        .sqs
        .get_queue_url()
        .queue_name(format!("{p}-events"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let attrs = c
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(attrs[&QueueAttributeName::VisibilityTimeout], "60");
    let redrive: serde_json::Value =
        serde_json::from_str(&attrs[&QueueAttributeName::RedrivePolicy]).unwrap();
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "3"
    );
    assert!(
        redrive["deadLetterTargetArn"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{p}-events-dlq"))
    );
    let dlq_url = c
        .sqs
        .get_queue_url()
        .queue_name(format!("{p}-events-dlq"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let dlq = c
        .sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::MessageRetentionPeriod)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(
        dlq[&QueueAttributeName::MessageRetentionPeriod],
        (14 * 86_400).to_string()
    );
    let table = c
        .dynamodb
        .describe_table()
        .table_name(format!("{p}-daily-cost"))
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    assert_eq!(table.key_schema().len(), 2);

    // A changed declaration is applied as an update, and only that.
    std::fs::write(
        dir.path().join("0004_longer.toml"),
        format!("[[queues]]\nname = \"{p}-events\"\nvisibility_timeout = \"120s\"\n[queues.dead_letter]\nname = \"{p}-events-dlq\"\nmax_receive_count = 3\n"),
    )
    .unwrap();
    let third = run(tugboat(&config).args(["migrate", "--dir"]).arg(dir.path()));
    assert_eq!(third.code, 0, "{}", third.stderr);
    assert!(
        third.stdout.contains(&format!(
            "updated    queue         {p}-events (VisibilityTimeout)"
        )),
        "{}",
        third.stdout
    );
    assert!(
        third.stdout.contains("0 created, 1 updated, 7 unchanged"),
        "{}",
        third.stdout
    );
}

#[test]
fn migrate_refuses_a_malformed_or_unknown_migration() {
    let root = tempfile::tempdir().unwrap();
    let config = write_config(root.path(), &[], "");
    let dir = tempfile::tempdir_in(root.path()).unwrap();
    std::fs::write(
        dir.path().join("0001_bad.toml"),
        "[[queues]]\nname = \"q\"\nvisiblity_timeout = \"1s\"\n",
    )
    .unwrap();
    let out = run(tugboat(&config).args(["migrate", "--dir"]).arg(dir.path()));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("0001_bad.toml") && out.stderr.contains("visiblity_timeout"),
        "{}",
        out.stderr
    );

    std::fs::write(
        dir.path().join("0001_bad.toml"),
        "[[queues]]\nname = \"q\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("queues.toml"), "").unwrap();
    let out = run(tugboat(&config).args(["migrate", "--dir"]).arg(dir.path()));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("unknown migration file \"queues.toml\""),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn send_puts_a_message_that_the_aws_cli_reads_back_with_its_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let q = unique("send");
    let url = create_queue(&q).await;
    let config = write_config(dir.path(), &[&q], "");
    let event = dir.path().join("event.json");
    std::fs::write(
        &event,
        r#"{"source":"custom.app","detail-type":"Start ECS Task","detail":{"service":"auth"}}"#,
    )
    .unwrap();

    let out = run(tugboat(&config)
        .args([
            "send",
            "--queue",
            &q,
            "--attribute",
            "traceparent=00-abc-def-01",
            "-a",
            "origin=test",
        ])
        .arg(&event));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("sent 1: "), "{}", out.stdout);

    let got = run(aws_cli().args([
        "sqs",
        "receive-message",
        "--queue-url",
        &url,
        "--message-attribute-names",
        "All",
        "--wait-time-seconds",
        "1",
    ]));
    assert_eq!(got.code, 0, "{}", got.stderr);
    let reply: serde_json::Value = serde_json::from_str(&got.stdout).unwrap();
    let message = &reply["Messages"][0];
    let body: serde_json::Value = serde_json::from_str(message["Body"].as_str().unwrap()).unwrap();
    assert_eq!(body["detail"]["service"], "auth");
    assert_eq!(
        message["MessageAttributes"]["traceparent"]["StringValue"],
        "00-abc-def-01"
    );
    assert_eq!(
        message["MessageAttributes"]["origin"]["StringValue"],
        "test"
    );
    assert_eq!(message["MessageAttributes"]["origin"]["DataType"], "String");
}

#[tokio::test(flavor = "multi_thread")]
async fn send_batch_sends_json_lines_in_batches_of_ten() {
    let dir = tempfile::tempdir().unwrap();
    let q = unique("batch");
    let url = create_queue(&q).await;
    let config = write_config(dir.path(), &[&q], "");
    let lines: String = (0..23).map(|i| format!("{{\"n\":{i}}}\n\n")).collect();
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, lines).unwrap();

    let out = run(tugboat(&config)
        .args(["send", "--batch", "--queue", &q])
        .arg(&file));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!("sent 23 messages to {q}")),
        "{}",
        out.stdout
    );
    let attrs = clients()
        .await
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(
        attrs[&QueueAttributeName::ApproximateNumberOfMessages],
        "23"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn send_refuses_bad_input_with_exit_2_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let q = unique("bad");
    let url = create_queue(&q).await;
    let config = write_config(dir.path(), &[&q], "");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let not_json = write("a.json", "{not json");
    let bad_line = write("b.jsonl", "{\"ok\":1}\n{broken\n");
    let too_big = write(
        "c.json",
        &format!("{{\"x\":\"{}\"}}", "a".repeat(300 * 1024)),
    );
    let good = write("d.json", "{}");
    for (args, part) in [
        (
            vec!["send", "--queue", &q, not_json.to_str().unwrap()],
            "not valid JSON",
        ),
        (
            vec!["send", "--batch", "--queue", &q, bad_line.to_str().unwrap()],
            "line 2",
        ),
        (
            vec!["send", "--queue", &q, too_big.to_str().unwrap()],
            "over SQS's limit",
        ),
        (
            vec!["send", "--queue", "nope", good.to_str().unwrap()],
            "no queue named \"nope\"",
        ),
        (
            vec![
                "send",
                "--queue",
                &q,
                "--attribute",
                "novalue",
                good.to_str().unwrap(),
            ],
            "KEY=VALUE",
        ),
        (
            vec!["send", "--queue", &q, "/nonexistent.json"],
            "cannot read",
        ),
    ] {
        let out = run(tugboat(&config).args(&args));
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(part), "{args:?}: {}", out.stderr);
    }
    let attrs = clients()
        .await
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(attrs[&QueueAttributeName::ApproximateNumberOfMessages], "0");
}

#[test]
fn an_unreachable_aws_is_a_runtime_failure_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &["q"], "");
    let event = dir.path().join("e.json");
    std::fs::write(&event, "{}").unwrap();
    // Port 9 on loopback: nothing listens there, so the connection is refused at once.
    let out = run(tugboat(&config)
        .env("TUGBOAT__AWS__ENDPOINT_URL", "http://127.0.0.1:9")
        .args(["send", "--queue", "q"])
        .arg(&event));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("queue q"), "{}", out.stderr);
}
