//! The cost workflow's stores against the emulator: a gzip report streamed from S3 through
//! the report parser (no whole object in memory), a missing object, and a payer's period in
//! DynamoDB replaced by a restated report, beside another payer's; the unit rates kept beside
//! them, a newer day's never replaced by an older one's.

mod support;

use std::io::Write;

use serde_json::json;
use tugboat::aws::dynamodb::DynamoCosts;
use tugboat::aws::s3::S3Objects;
use tugboat::ports::costs::{CostStore, DailyCost, UnitRate};
use tugboat::ports::objects::ObjectStore;
use tugboat::workflows::cur_ingest::report::Summary;

async fn table() -> String {
    let name = support::unique("daily-cost");
    support::service::create_cost_table(&name).await;
    name
}

fn row(day: &str, payer: &str, account: &str, service: &str, cost: &str) -> DailyCost {
    DailyCost {
        day: day.into(),
        payer: payer.into(),
        account: account.into(),
        service: service.into(),
        region: "us-east-1".into(),
        currency: "USD".into(),
        cost: cost.into(),
    }
}

#[tokio::test]
async fn a_gzip_report_is_streamed_from_s3_through_the_parser() {
    let clients = support::clients().await;
    let bucket = support::unique("reports");
    clients
        .s3
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let part = support::root().join(
        "tests/fixtures/cur/legacy-cur/koku-local-bucket/koku-local/20180801-20180901/16e57707-f9e3-49be-8be6-b84e684b5194/koku-local-1.csv.gz",
    );
    let bytes = std::fs::read(&part).unwrap();
    let objects = S3Objects::new(clients.s3.clone());
    objects
        .put(&bucket, "cur/r-1.csv.gz", bytes, "application/gzip")
        .await
        .unwrap();
    let verdict = objects
        .read_with(
            &bucket,
            "cur/r-1.csv.gz",
            Box::new(|input| {
                let mut s = Summary::default();
                s.add_report(flate2::read::MultiGzDecoder::new(input), "r-1.csv.gz")?;
                Ok(json!({"rows": s.rows, "sums": s.totals.len()}))
            }),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(verdict, json!({"rows": 13380, "sums": 225}));
    // The consumer's verdict on a bad object is its own (inner) error.
    objects
        .put(&bucket, "cur/bad.csv", b"a,b\n1,2\n".to_vec(), "text/csv")
        .await
        .unwrap();
    let inner = objects
        .read_with(
            &bucket,
            "cur/bad.csv",
            Box::new(|input| {
                Summary::default()
                    .add_report(input, "bad.csv")
                    .map(|_| json!({}))
            }),
        )
        .await
        .unwrap();
    assert!(inner.unwrap_err().contains("not a cost report"));
    // No such key: S3's error, permanent.
    let e = objects
        .get(&bucket, "cur/missing-Manifest.json", 1 << 20)
        .await
        .unwrap_err();
    assert!(!e.retryable, "{e:?}");
    assert!(e.message.contains("NoSuchKey"), "{e:?}");
    // Small objects whole, large ones refused.
    let mut manifest = Vec::new();
    write!(manifest, "{}", json!({"reportKeys": ["cur/r-1.csv.gz"]})).unwrap();
    objects
        .put(
            &bucket,
            "cur/r-Manifest.json",
            manifest.clone(),
            "application/json",
        )
        .await
        .unwrap();
    assert_eq!(
        objects
            .get(&bucket, "cur/r-Manifest.json", 1 << 20)
            .await
            .unwrap(),
        manifest
    );
    assert!(
        !objects
            .get(&bucket, "cur/r-Manifest.json", 4)
            .await
            .unwrap_err()
            .retryable
    );
}

#[tokio::test]
async fn a_restated_period_replaces_the_old_rows_and_other_payers_stay() {
    let clients = support::clients().await;
    let table = table().await;
    let costs = DynamoCosts::new(clients.dynamodb.clone());
    // The first delivery: 30 days × 2 services (three batches of 25 and more).
    let first: Vec<DailyCost> = (1..=30)
        .flat_map(|d| {
            let day = format!("2024-06-{d:02}");
            [
                row(&day, "111", "222", "AmazonEC2", "10.5"),
                row(&day, "111", "222", "AmazonS3", "1.25"),
            ]
        })
        .collect();
    let done = costs
        .replace_period(&table, "111", "2024-06", &first)
        .await
        .unwrap();
    assert_eq!((done.written, done.deleted), (60, 0));
    // Another payer's period in the same table.
    let other = vec![row("2024-06-01", "999", "888", "AmazonRDS", "7")];
    costs
        .replace_period(&table, "999", "2024-06", &other)
        .await
        .unwrap();
    // The restated report: S3 is gone (credited away), EC2 restated.
    let restated: Vec<DailyCost> = (1..=30)
        .map(|d| {
            row(
                &format!("2024-06-{d:02}"),
                "111",
                "222",
                "AmazonEC2",
                "9.75",
            )
        })
        .collect();
    let done = costs
        .replace_period(&table, "111", "2024-06", &restated)
        .await
        .unwrap();
    assert_eq!((done.written, done.deleted), (30, 30));
    let stored = costs.period(&table, "111", "2024-06").await.unwrap();
    assert_eq!(stored.len(), 30);
    assert!(
        stored
            .iter()
            .all(|r| r.service == "AmazonEC2" && r.cost == "9.75"),
        "{stored:?}"
    );
    assert_eq!(costs.period(&table, "999", "2024-06").await.unwrap(), other);
    // Delivered again unchanged: nothing to delete.
    let done = costs
        .replace_period(&table, "111", "2024-06", &restated)
        .await
        .unwrap();
    assert_eq!(done.deleted, 0);
    // Markers: the first time only.
    assert!(
        costs
            .mark_once(&table, "BUDGET#111#222#2024-06")
            .await
            .unwrap()
    );
    assert!(
        !costs
            .mark_once(&table, "BUDGET#111#222#2024-06")
            .await
            .unwrap()
    );
    assert!(
        costs
            .mark_once(&table, "BUDGET#111#222#2024-07")
            .await
            .unwrap()
    );
    // A table that does not exist: permanent.
    let e = costs
        .period("no-such-table", "111", "2024-06")
        .await
        .unwrap_err();
    assert!(!e.retryable, "{e:?}");
}

/// Per-account alerts: a publish's attributes reach a subscriber as SNS message attributes,
/// so that a subscription filter policy can pick one account's anomalies.
#[tokio::test]
async fn publish_attributes_reach_the_subscriber() {
    use tugboat::aws::sns::SnsNotifier;
    use tugboat::contract::Topic;
    use tugboat::ports::Notifier;
    let clients = support::clients().await;
    let url = support::service::create_queue(&support::unique("anomaly-inbox")).await;
    let arn = support::service::topic_into(&support::unique("anomalies"), &url, false).await;
    let notifier = SnsNotifier::resolve(clients.sns.clone(), None, None, Some(&arn))
        .await
        .unwrap();
    let attributes = std::collections::BTreeMap::from([
        ("type".to_string(), "anomaly".to_string()),
        ("account".to_string(), "111122223333".to_string()),
        ("empty".to_string(), String::new()),
    ]);
    notifier
        .publish(
            Topic::Anomaly,
            "cost anomaly",
            &json!({"impact": 300}),
            "dedup-1",
            &attributes,
        )
        .await
        .unwrap()
        .expect("the anomaly topic is configured");
    let received = clients
        .sqs
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(5)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value =
        serde_json::from_str(received.messages.unwrap()[0].body.as_deref().unwrap()).unwrap();
    let attrs = &body["MessageAttributes"];
    assert_eq!(attrs["type"]["Value"], "anomaly");
    assert_eq!(attrs["account"]["Value"], "111122223333");
    assert!(attrs.get("empty").is_none(), "{attrs}");
    assert_eq!(attrs["tugboat-dedup-id"]["Value"], "dedup-1");
}

fn rate(region: &str, usage: &str, rate: &str, day: &str) -> UnitRate {
    UnitRate {
        region: region.into(),
        usage_type: usage.into(),
        rate: rate.into(),
        unit: "GB-Mo".into(),
        currency: "USD".into(),
        day: day.into(),
    }
}

#[tokio::test]
async fn unit_rates_are_kept_per_region_and_an_older_day_never_replaces_a_newer() {
    let clients = support::clients().await;
    let table = table().await;
    let costs = DynamoCosts::new(clients.dynamodb.clone());
    // A period's costs in the same table are not rates, and stay.
    costs
        .replace_period(
            &table,
            "111",
            "2024-07",
            &[row("2024-07-01", "111", "222", "AmazonEC2", "3")],
        )
        .await
        .unwrap();
    let july = [
        rate("eu-west-1", "EBS:VolumeUsage.gp3", "0.088", "2024-07-31"),
        rate("us-east-1", "EBS:VolumeUsage.gp3", "0.08", "2024-07-31"),
    ];
    assert_eq!(costs.put_rates(&table, &july).await.unwrap(), 2);
    // June, delivered again later: its gp3 rate is older and stays out; its snapshot rate is new.
    let june = [
        rate("eu-west-1", "EBS:VolumeUsage.gp3", "0.07", "2024-06-30"),
        rate("eu-west-1", "EBS:SnapshotUsage", "0.053", "2024-06-30"),
    ];
    assert_eq!(costs.put_rates(&table, &june).await.unwrap(), 1);
    // The same day again replaces (a restated report).
    assert_eq!(
        costs
            .put_rates(
                &table,
                &[rate(
                    "us-east-1",
                    "EBS:VolumeUsage.gp3",
                    "0.081",
                    "2024-07-31"
                )]
            )
            .await
            .unwrap(),
        1
    );
    let eu = costs.rates(&table, "eu-west-1").await.unwrap();
    assert_eq!(
        eu,
        vec![
            rate("eu-west-1", "EBS:SnapshotUsage", "0.053", "2024-06-30"),
            rate("eu-west-1", "EBS:VolumeUsage.gp3", "0.088", "2024-07-31"),
        ]
    );
    assert_eq!(
        costs.rates(&table, "us-east-1").await.unwrap()[0].rate,
        "0.081"
    );
    assert!(costs.rates(&table, "ap-south-1").await.unwrap().is_empty());
    assert_eq!(
        costs.period(&table, "111", "2024-07").await.unwrap().len(),
        1
    );
}
