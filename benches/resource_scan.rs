//! The resource scan against the local emulator: a region seeded with `--volumes` unattached
//! volumes, `--instances` instances (half of them stopped; each with its root volume) and a
//! few free Elastic IPs and snapshots; then one region's scan as the workflow's step makes it
//! (`ResourceScan::survey` over the EC2, RDS and CloudWatch adapters: the five reads at once,
//! each paged through, then CloudWatch for the running instances' CPU, the clock 30 days on so
//! that every running instance is old enough to judge), and the replace of its findings in a
//! DynamoDB table (batches of 25). Prints the time of each and the calls made, from the
//! emulator launcher's log of them, per resource read.
//!
//!     cargo bench --bench resource_scan -- --volumes 10000 --instances 1000

#[path = "common.rs"]
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Instant;

use aws_sdk_ec2::types::{InstanceType, VolumeType};
use futures::StreamExt;
use tugboat::aws::dynamodb::DynamoFindings;
use tugboat::aws::ec2::Ec2Inventory;
use tugboat::ports::clock::{Clock, SystemClock, TokioClock};
use tugboat::ports::resources::FindingStore;
use tugboat::workflows::resource_scan::{ResourceScan, config};

const REGION: &str = "sa-east-1";

fn calls(call: &str) -> usize {
    support::emulator_calls(call)
        .iter()
        .filter(|c| c["region"] == REGION || call.starts_with("dynamodb"))
        .count()
}

async fn run(volumes: usize, instances: usize) {
    let c = support::clients().await;
    let ec2 = aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::config::Builder::from(&c.sdk)
            .region(aws_config::Region::new(REGION))
            .build(),
    );
    let seeding = Instant::now();
    futures::stream::iter(0..volumes)
        .map(|n| {
            let ec2 = ec2.clone();
            async move {
                ec2.create_volume()
                    .availability_zone(format!("{REGION}a"))
                    .size(10 + (n % 90) as i32)
                    .volume_type(if n % 2 == 0 {
                        VolumeType::Gp3
                    } else {
                        VolumeType::Gp2
                    })
                    .send()
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    let image = ec2.describe_images().send().await.unwrap().images()[0]
        .image_id()
        .unwrap()
        .to_string();
    let mut launched = Vec::new();
    for chunk in (0..instances).collect::<Vec<_>>().chunks(250) {
        let out = ec2
            .run_instances()
            .image_id(&image)
            .instance_type(InstanceType::T3Micro)
            .min_count(chunk.len() as i32)
            .max_count(chunk.len() as i32)
            .send()
            .await
            .unwrap();
        launched.extend(
            out.instances()
                .iter()
                .filter_map(|i| i.instance_id().map(str::to_string)),
        );
    }
    for chunk in launched
        .chunks(2)
        .map(|c| c[0].clone())
        .collect::<Vec<_>>()
        .chunks(100)
    {
        ec2.stop_instances()
            .set_instance_ids(Some(chunk.to_vec()))
            .send()
            .await
            .unwrap();
    }
    let mut addresses = 0;
    while addresses < 20 && ec2.allocate_address().send().await.is_ok() {
        addresses += 1;
    }
    let some_volume = ec2
        .describe_volumes()
        .max_results(5)
        .send()
        .await
        .unwrap()
        .volumes()[0]
        .volume_id()
        .unwrap()
        .to_string();
    for _ in 0..20 {
        ec2.create_snapshot()
            .volume_id(&some_volume)
            .send()
            .await
            .unwrap();
    }
    println!(
        "seeded {REGION}: {volumes} volumes, {instances} instances ({} stopped, each with a root volume), {addresses} free addresses, 20 snapshots, in {:.1} s",
        launched.len().div_ceil(2),
        seeding.elapsed().as_secs_f64()
    );

    let table = support::unique("scanbench-findings");
    support::service::create_cost_table(&table).await;
    let settings: config::ResourceSettings = toml::from_str(&format!(
        "table = \"{table}\"\naccount = \"123456789012\"\nunattached_days = 0\nsnapshot_days = 0"
    ))
    .unwrap();
    let inventory = Arc::new(Ec2Inventory::new(c.sdk.clone()));
    let store = Arc::new(DynamoFindings::new(c.dynamodb.clone()));
    let scan = ResourceScan {
        settings: Some(settings),
        own_region: REGION.into(),
        inventory,
        databases: Arc::new(tugboat::aws::rds::RdsDatabases::new(c.sdk.clone())),
        metrics: Arc::new(tugboat::aws::cloudwatch::CloudWatchMetrics::new(
            c.sdk.clone(),
        )),
        accounts: Arc::new(tugboat::ports::memory::MemoryAccounts::default()),
        findings: store.clone(),
        costs: Arc::new(tugboat::ports::memory::MemoryCosts::default()),
        clock: Arc::new(TokioClock::starting_at(
            SystemClock.now_ms() + 30 * 86_400_000,
        )),
    };
    let ec2_calls = [
        "ec2:DescribeVolumes",
        "ec2:DescribeAddresses",
        "ec2:DescribeInstances",
        "ec2:DescribeSnapshots",
        "rds:DescribeDBInstances",
        "cloudwatch:GetMetricData",
    ];
    let before: Vec<usize> = ec2_calls.iter().map(|c| calls(c)).collect();
    let (q0, w0) = (calls("dynamodb:Query"), calls("dynamodb:BatchWriteItem"));
    let started = Instant::now();
    let (found, read) = scan.survey("123456789012", None, REGION).await.unwrap();
    let surveyed = started.elapsed();
    let replacing = Instant::now();
    let replaced = store
        .replace(&table, "123456789012", REGION, &found)
        .await
        .unwrap();
    let stored = replacing.elapsed();
    let made: Vec<usize> = ec2_calls
        .iter()
        .zip(&before)
        .map(|(c, b)| calls(c) - b)
        .collect();
    let (queries, writes) = (
        calls("dynamodb:Query") - q0,
        calls("dynamodb:BatchWriteItem") - w0,
    );
    let total_cost: f64 = found.iter().map(|f| f.monthly_cost).sum();
    println!(
        "scan: {read} resources read in {:.2} s; {} findings ({total_cost:.2} USD a month)",
        surveyed.as_secs_f64(),
        found.len()
    );
    for (call, n) in ec2_calls.iter().zip(&made) {
        println!("  {call}: {n} call(s)");
    }
    let ec2_total: usize = made.iter().sum();
    println!(
        "  EC2, RDS and CloudWatch calls per resource read: {:.4} ({ec2_total} for {read})",
        ec2_total as f64 / read as f64
    );
    println!(
        "replace: {} findings written in {:.2} s: {queries} Query + {writes} BatchWriteItem = {:.4} DynamoDB calls per finding",
        replaced.written,
        stored.as_secs_f64(),
        (queries + writes) as f64 / replaced.written.max(1) as f64
    );
    println!(
        "scan and replace: {:.2} s for {read} resources",
        (surveyed + stored).as_secs_f64()
    );
}

fn main() {
    let volumes = common::arg("--volumes", 10_000);
    let instances = common::arg("--instances", 1000);
    println!("machine: {}", common::machine());
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(run(volumes, instances));
}
