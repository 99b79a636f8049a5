//! `cur_ingest` end to end against the emulator: a report's manifest and gzip part in S3, the
//! "Object Created" event on the queue, then the rows in DynamoDB, the curated object in S3
//! and the report notification (with its filterable attributes) in a subscribed queue; and a
//! report that cannot be read dead-lettered with the place named; a key that is no report
//! ignored; each counted by outcome in `/metrics`.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::service::{Service, create_queue, depth, drain, send, topic_into, until};
use support::{clients, unique};
use tugboat::aws::dynamodb::DynamoCosts;
use tugboat::ports::costs::CostStore;

const PART: &str =
    "koku-local/20180801-20180901/16e57707-f9e3-49be-8be6-b84e684b5194/koku-local-1.csv.gz";
const MANIFEST: &str = "koku-local/20180801-20180901/koku-local-Manifest.json";

fn created(bucket: &str, key: &str, id: &str) -> String {
    json!({"version": "0", "id": id, "source": "aws.s3", "detail-type": "Object Created",
        "account": "123456789012", "time": "2018-08-03T12:00:00Z", "region": "us-east-1",
        "resources": [format!("arn:aws:s3:::{bucket}")],
        "detail": {"bucket": {"name": bucket}, "object": {"key": key}}})
    .to_string()
}

#[tokio::test]
async fn a_manifest_event_fills_the_table_writes_the_curated_object_and_announces_the_report() {
    let c = clients().await;
    let p = unique("cur");
    let bucket = format!("{p}-reports");
    c.s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let root = support::root().join("tests/fixtures/cur/legacy-cur/koku-local-bucket");
    for key in [PART, MANIFEST] {
        let body = std::fs::read(root.join(key)).unwrap();
        c.s3.put_object()
            .bucket(&bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .unwrap();
    }
    let table = format!("{p}-daily-cost");
    support::service::create_cost_table(&table).await;
    let queue = format!("{p}-q");
    let queue_url = create_queue(&queue).await;
    let dlq_url = create_queue(&format!("{p}-dlq")).await;
    let inbox = create_queue(&format!("{p}-inbox")).await;
    let mut topics = Vec::new();
    for t in ["ok", "err", "anomaly"] {
        topics.push(topic_into(&format!("{p}-{t}"), &inbox, false).await);
    }
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[[queues]]\nname = \"{queue}\"\ndlq = \"{p}-dlq\"\nreceive_wait = \"1s\"\n\n\
         [[routes]]\nname = \"cur\"\npattern = {{ source = [\"aws.s3\"], detail-type = [\"Object Created\"] }}\nworkflow = \"cur_ingest\"\n\n\
         [cur]\ntable = \"{table}\"\n\n\
         [notify]\nsuccess_topic = \"{}\"\nerror_topic = \"{}\"\nanomaly_topic = \"{}\"\n\n\
         [journal]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[shutdown]\ndeadline = \"5s\"\n",
        topics[0],
        topics[1],
        topics[2],
        dir.path().join("journal").display()
    );
    let config = support::write_config(dir.path(), &[], &extra);
    let service = Service::start(&config, None);
    send(&queue_url, &created(&bucket, MANIFEST, "ev-manifest")).await;
    // A part that is not a report: a bad cost on line 2.
    let bad = "bill/PayerAccountId,lineItem/UsageAccountId,lineItem/UsageStartDate,lineItem/ProductCode,lineItem/UnblendedCost\n1,2,2018-08-01T00:00:00Z,AmazonEC2,lots\n";
    c.s3.put_object()
        .bucket(&bucket)
        .key("bad/r-1.csv")
        .body(bad.as_bytes().to_vec().into())
        .send()
        .await
        .unwrap();
    send(&queue_url, &created(&bucket, "bad/r-1.csv", "ev-bad")).await;
    // A key that is neither a report nor a manifest: acknowledged, ignored and counted.
    send(
        &queue_url,
        &created(&bucket, "notes/README.txt", "ev-other"),
    )
    .await;
    until(
        "the three events are settled",
        Duration::from_secs(60),
        async || depth(&queue_url).await == (0, 0),
    )
    .await;

    // The table: every payer's periods, as the summary of the same part says.
    let costs = DynamoCosts::new(c.dynamodb.clone());
    let mut stored = 0;
    for period in ["2018-06", "2018-07", "2018-08"] {
        for payer in ["6568388779672"] {
            stored += costs.period(&table, payer, period).await.unwrap().len();
        }
    }
    assert!(stored > 0, "no rows stored");
    let curated =
        c.s3.get_object()
            .bucket(&bucket)
            .key("curated/6568388779672/2018-07/daily.csv")
            .send()
            .await
            .unwrap();
    let curated =
        String::from_utf8(curated.body.collect().await.unwrap().into_bytes().to_vec()).unwrap();
    assert!(
        curated.starts_with(
            "day,payer,account,service,region,cost,currency\n2018-07-01,6568388779672,"
        ),
        "{curated}"
    );

    // The notifications: a report per payer and period, and the failure on the error topic.
    let mut messages: Vec<Value> = Vec::new();
    until(
        "the notifications arrive",
        Duration::from_secs(20),
        async || {
            messages.extend(
                drain(&inbox)
                    .await
                    .into_iter()
                    .map(|(body, _)| serde_json::from_str::<Value>(&body).unwrap()),
            );
            messages.iter().any(|m| m["TopicArn"] == topics[1].as_str())
        },
    )
    .await;
    let reports: Vec<&Value> = messages
        .iter()
        .filter(|m| m["MessageAttributes"]["type"]["Value"] == "report")
        .collect();
    assert!(!reports.is_empty(), "{messages:?}");
    let first: Value = serde_json::from_str(reports[0]["Message"].as_str().unwrap()).unwrap();
    assert_eq!(first["parts"], 1);
    assert_eq!(
        reports[0]["MessageAttributes"]["payer"]["Value"],
        first["payer"]
    );
    let failed = messages
        .iter()
        .find(|m| m["TopicArn"] == topics[1].as_str())
        .unwrap();
    let failed: Value = serde_json::from_str(failed["Message"].as_str().unwrap()).unwrap();
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("bad/r-1.csv: line 2, column lineItem/UnblendedCost"),
        "{failed}"
    );
    // And the bad report's event is in the DLQ with the reason.
    let dead = drain(&dlq_url).await;
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].1["tugboat-error"].contains("line 2"),
        "{:?}",
        dead[0].1
    );
    // Each instance counted once, by how it ended.
    let metrics = service.metrics();
    for (outcome, n) in [("succeeded", 1), ("failed", 1), ("ignored", 1)] {
        let labels = format!("workflow=\"cur_ingest\",outcome=\"{outcome}\"}} {n}");
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("tugboat_workflows_finished_total{") && l.ends_with(&labels)),
            "no {labels:?} in\n{metrics}"
        );
    }
    let (code, _) = service.terminate();
    assert_eq!(code, 0);
}
