//! `cur_ingest` against the in-memory stores: each delivery driven step by step, the engine's
//! publishes recorded instead of sent.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::contract::{Action, Call, Workflow};
use crate::ports::costs::CostStore;
use crate::ports::memory::{MemoryCosts, MemoryObjects};

fn workflow(objects: &MemoryObjects, costs: &MemoryCosts, budgets: &[(&str, f64)]) -> Typed<CurIngest> {
    let mut settings: CurSettings = toml::from_str("table = \"costs\"").unwrap();
    settings.budgets = budgets.iter().map(|(a, b)| (a.to_string(), *b)).collect();
    Typed(CurIngest {
        settings: Some(settings),
        objects: Arc::new(objects.clone()),
        costs: Arc::new(costs.clone()),
    })
}

fn created(bucket: &str, key: &str) -> Value {
    json!({"id": "e", "source": "aws.s3", "detail-type": "Object Created",
        "detail": {"bucket": {"name": bucket}, "object": {"key": key}}})
}

/// Runs an instance to its end: handler steps performed, publishes recorded.
async fn run(w: &Typed<CurIngest>, event: &Value) -> (Next, Vec<Action>) {
    let t = w.start(event, &json!({})).unwrap();
    let (mut state, mut next) = (t.state, t.next);
    let mut published = Vec::new();
    loop {
        let action = match next {
            Next::Run(a) => a,
            other => return (other, published),
        };
        let outcome = match &action.call {
            Call::Handler => {
                let ctx = StepContext { workflow_id: "r:e", step: &action.name, attempt: 1, generation: 0, continued: 0, event: &Value::Null };
                w.perform(ctx, &action.step).await
            }
            Call::Publish { .. } => {
                published.push(action.clone());
                Ok(json!({"message_id": "m"}))
            }
            other => panic!("{other:?}"),
        };
        let t = w.advance(state, &action, outcome);
        state = t.state;
        next = t.next;
    }
}

/// A legacy report of `days` days for payer 999: account 111 with EC2 (100 ± 3 a day, plus
/// `spike` on `spike_day`) and S3 (1.5 a day).
fn report(month: &str, days: u32, spike_day: u32, spike: f64) -> Vec<u8> {
    let mut text = String::from("bill/PayerAccountId,lineItem/UsageAccountId,lineItem/UsageStartDate,lineItem/ProductCode,product/region,lineItem/UnblendedCost\n");
    for d in 1..=days {
        let ec2 = 100.0 + f64::from(d % 7) - 3.0 + if d == spike_day { spike } else { 0.0 };
        text.push_str(&format!("999,111,{month}-{d:02}T00:00:00Z,AmazonEC2,us-east-1,{ec2}\n"));
        text.push_str(&format!("999,111,{month}-{d:02}T00:00:00Z,AmazonS3,us-east-1,1.5\n"));
    }
    text.into_bytes()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn attributes(a: &Action) -> BTreeMap<String, String> {
    match &a.call {
        Call::Publish { attributes, .. } => attributes.clone(),
        _ => BTreeMap::new(),
    }
}

#[tokio::test]
async fn a_report_lands_in_the_table_and_the_curated_object_and_is_announced() {
    let (objects, costs) = (MemoryObjects::default(), MemoryCosts::default());
    objects.insert("b", "cur/r/20240601-20240701/r-1.csv.gz", gzip(&report("2024-06", 12, 0, 0.0)));
    let w = workflow(&objects, &costs, &[]);
    let (end, published) = run(&w, &created("b", "cur/r/20240601-20240701/r-1.csv.gz")).await;
    assert!(matches!(end, Next::Complete(_)), "{end:?}");
    let rows = costs.period("costs", "999", "2024-06").await.unwrap();
    assert_eq!(rows.len(), 24);
    let (curated, kind) = objects.object("b", "curated/999/2024-06/daily.csv").unwrap();
    assert_eq!(kind, "text/csv");
    let curated = String::from_utf8(curated).unwrap();
    assert!(curated.starts_with("day,payer,account,service,region,cost,currency\n2024-06-01,999,111,AmazonEC2,us-east-1,98,USD\n"), "{curated}");
    assert_eq!(published.len(), 1);
    let Call::Publish { topic, message, .. } = &published[0].call else { panic!() };
    assert_eq!(*topic, Topic::Success);
    assert_eq!(message["payer"], "999");
    assert_eq!(message["rows"], 24);
    assert_eq!(message["top_services"][0]["service"], "AmazonEC2");
    assert_eq!(attributes(&published[0]), BTreeMap::from([("type".into(), "report".into()), ("payer".into(), "999".into())]));
}

#[tokio::test]
async fn a_manifest_reads_its_parts_and_a_restated_report_replaces_the_rows() {
    let (objects, costs) = (MemoryObjects::default(), MemoryCosts::default());
    let mut half = report("2024-06", 10, 0, 0.0);
    let rest = report("2024-06", 20, 0, 0.0);
    let second_half: Vec<u8> = String::from_utf8(rest.clone())
        .unwrap()
        .lines()
        .skip(21)
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .into_bytes();
    let header = String::from_utf8(half.clone()).unwrap().lines().next().unwrap().to_string() + "\n";
    objects.insert("b", "r/20240601-20240701/id/r-1.csv", std::mem::take(&mut half));
    objects.insert("b", "r/20240601-20240701/id/r-2.csv.gz", gzip(&[header.into_bytes(), second_half].concat()));
    let manifest = json!({"reportKeys": ["/r/20240601-20240701/id/r-1.csv", "r/20240601-20240701/id/r-2.csv.gz"]});
    objects.insert("b", "r/20240601-20240701/r-Manifest.json", manifest.to_string().into_bytes());
    let w = workflow(&objects, &costs, &[]);
    let (end, _) = run(&w, &created("b", "r/20240601-20240701/r-Manifest.json")).await;
    let Next::Complete(out) = end else { panic!("{end:?}") };
    assert_eq!(out["ingested"]["parts"], 2);
    assert_eq!(costs.period("costs", "999", "2024-06").await.unwrap().len(), 40);
    // The month restated: S3 credited away entirely.
    let restated: String = String::from_utf8(report("2024-06", 20, 0, 0.0))
        .unwrap()
        .lines()
        .filter(|l| !l.contains("AmazonS3"))
        .map(|l| format!("{l}\n"))
        .collect();
    objects.insert("b", "r2.csv", restated.into_bytes());
    let (end, _) = run(&w, &created("b", "r2.csv")).await;
    let Next::Complete(out) = end else { panic!("{end:?}") };
    assert_eq!(out["ingested"]["payers"][0]["deleted"], 20);
    let rows = costs.period("costs", "999", "2024-06").await.unwrap();
    assert_eq!(rows.len(), 20);
    assert!(rows.iter().all(|r| r.service == "AmazonEC2"));
}

#[tokio::test]
async fn a_spike_on_a_new_day_is_an_alert_per_account_and_a_budget_crossed_too() {
    let (objects, costs) = (MemoryObjects::default(), MemoryCosts::default());
    let w = workflow(&objects, &costs, &[("111", 3200.0)]);
    // The month up to the 20th, steady: delivered, only the report (no anomaly; the forecast
    // is under the budget).
    objects.insert("b", "d1.csv", report("2024-06", 20, 0, 0.0));
    let (_, published) = run(&w, &created("b", "d1.csv")).await;
    assert!(published.iter().all(|a| attributes(a)["type"] == "report"), "{published:?}");
    // The next delivery adds the 21st, with a spike.
    objects.insert("b", "d2.csv", report("2024-06", 21, 21, 400.0));
    let (_, published) = run(&w, &created("b", "d2.csv")).await;
    let anomaly = published.iter().find(|a| attributes(a)["type"] == "anomaly").expect("an anomaly alert");
    let Call::Publish { topic, message, .. } = &anomaly.call else { panic!() };
    assert_eq!(*topic, Topic::Anomaly);
    assert_eq!(message["day"], "2024-06-21");
    assert_eq!(attributes(anomaly)["account"], "111");
    assert_eq!(attributes(anomaly)["service"], "AmazonEC2");
    // The month forecast: ~3 050 after the 20th (under the 3 200 budget); the spike lifts the
    // last seven days' mean, and the forecast with it, over.
    let budget = published.iter().find(|a| attributes(a)["type"] == "budget").expect("a budget alert");
    let Call::Publish { message, .. } = &budget.call else { panic!() };
    assert!(message["forecast"].as_f64().unwrap() > 3200.0, "{message}");
    // Delivered again unchanged: no new day, no anomaly again, and the budget alert was
    // once for the month.
    let (_, published) = run(&w, &created("b", "d2.csv")).await;
    assert!(published.iter().all(|a| attributes(a)["type"] == "report"), "{published:?}");
}

#[tokio::test]
async fn other_keys_are_ignored_and_bad_reports_fail_naming_the_place_and_tell_the_error_topic() {
    let (objects, costs) = (MemoryObjects::default(), MemoryCosts::default());
    let w = workflow(&objects, &costs, &[]);
    let (end, _) = run(&w, &created("b", "cur/r/overview.parquet")).await;
    assert!(matches!(end, Next::Complete(ref v) if v["ignored"] == "cur/r/overview.parquet"));
    // A bad cost on line 3.
    let bad = String::from_utf8(report("2024-06", 3, 0, 0.0))
        .unwrap()
        .replacen(",1.5\n", ",lots\n", 1);
    objects.insert("b", "bad.csv", bad.into_bytes());
    let (end, _) = run(&w, &created("b", "bad.csv")).await;
    let Next::Fail(reason) = end else { panic!("{end:?}") };
    assert!(reason.contains("s3://b/bad.csv: line 3, column lineItem/UnblendedCost"), "{reason}");
    // A truncated gzip; a manifest naming a missing part.
    let gz = gzip(&report("2024-06", 30, 0, 0.0));
    objects.insert("b", "cut.csv.gz", gz[..gz.len() / 2].to_vec());
    let (end, _) = run(&w, &created("b", "cut.csv.gz")).await;
    assert!(matches!(end, Next::Fail(ref r) if r.contains("gzip")), "{end:?}");
    objects.insert("b", "m-Manifest.json", json!({"reportKeys": ["gone.csv"]}).to_string().into_bytes());
    let (end, _) = run(&w, &created("b", "m-Manifest.json")).await;
    assert!(matches!(end, Next::Fail(ref r) if r.contains("NoSuchKey")), "{end:?}");
    // The compensation tells the error topic.
    let state = json!({"bucket": "b", "key": "bad.csv", "result": null, "failure": "s3://b/bad.csv: line 3", "sent": 0});
    let undo = w.compensation(&state);
    assert_eq!(undo.len(), 1);
    let Call::Publish { topic, message, .. } = &undo[0].call else { panic!() };
    assert_eq!(*topic, Topic::Error);
    assert_eq!(message["error"], "s3://b/bad.csv: line 3");
    // An event that names no object.
    assert!(w.start(&json!({"detail": {}}), &json!({})).unwrap_err().contains("detail.bucket.name"));
}

#[tokio::test]
async fn the_rates_a_report_billed_are_kept_and_an_older_report_never_undoes_a_newer_rate() {
    let header = "bill/PayerAccountId,lineItem/UsageAccountId,lineItem/UsageStartDate,lineItem/ProductCode,product/region,lineItem/UnblendedCost,lineItem/UsageType,lineItem/UnblendedRate,pricing/unit\n";
    let july = format!("{header}999,111,2024-07-02T00:00:00Z,AmazonEC2,eu-west-1,8.8,EU-EBS:VolumeUsage.gp3,0.088,GB-Mo\n");
    let june = format!("{header}999,111,2024-06-02T00:00:00Z,AmazonEC2,eu-west-1,8.0,EU-EBS:VolumeUsage.gp3,0.08,GB-Mo\n\
                        999,111,2024-06-02T00:00:00Z,AmazonEC2,eu-west-1,2.3,EU-BoxUsage:t3.micro,0.0114,Hrs\n");
    let (objects, costs) = (MemoryObjects::default(), MemoryCosts::default());
    objects.insert("b", "cur/r/20240701-20240801/r-1.csv", july.into_bytes());
    objects.insert("b", "cur/r/20240601-20240701/r-1.csv", june.into_bytes());
    let w = workflow(&objects, &costs, &[]);
    let (end, _) = run(&w, &created("b", "cur/r/20240701-20240801/r-1.csv")).await;
    let Next::Complete(out) = end else { panic!("{end:?}") };
    assert_eq!((out["ingested"]["rates"].as_u64(), out["ingested"]["rates_written"].as_u64()), (Some(1), Some(1)), "{out}");
    // June delivered late (a restatement): its instance rate is new and kept, its volume
    // rate is older than July's and is not.
    let (end, _) = run(&w, &created("b", "cur/r/20240601-20240701/r-1.csv")).await;
    let Next::Complete(out) = end else { panic!("{end:?}") };
    assert_eq!((out["ingested"]["rates"].as_u64(), out["ingested"]["rates_written"].as_u64()), (Some(2), Some(1)), "{out}");
    let kept: Vec<(String, String, String)> = costs
        .rates("costs", "eu-west-1")
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.usage_type, r.rate, r.day))
        .collect();
    assert_eq!(
        kept,
        vec![
            ("BoxUsage:t3.micro".into(), "0.0114".into(), "2024-06-02".into()),
            ("EBS:VolumeUsage.gp3".into(), "0.088".into(), "2024-07-02".into()),
        ]
    );
}
