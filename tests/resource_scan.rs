//! `resource_scan` end to end against the emulator's EC2 and DynamoDB: seeded waste in a
//! region of its own (an unattached volume, an unassociated Elastic IP, a stopped instance, a
//! snapshot) beside resources in use (an attached volume, an associated address, a running
//! instance); an event on the queue; then the findings in the table with their costs, nothing
//! in use among them, and the report on the success topic. Then `tugboat resources scan
//! --dry-run` finds a new volume without writing it, and a scan without it writes it.

mod support;

use std::time::Duration;

use aws_sdk_ec2::types::{InstanceType, VolumeType};
use serde_json::{Value, json};
use support::service::{
    Service, create_cost_table, create_queue, depth, drain, send, topic_into, until,
};
use support::{clients, unique};
use tugboat::aws::dynamodb::DynamoFindings;
use tugboat::ports::resources::{Finding, FindingKind, FindingStore};

/// A region no other test uses: the scan reads all of it.
const REGION: &str = "ap-southeast-2";

fn ec2(sdk: &aws_config::SdkConfig) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::config::Builder::from(sdk)
            .region(aws_config::Region::new(REGION))
            .build(),
    )
}

async fn volume(ec2: &aws_sdk_ec2::Client, gib: i32, kind: VolumeType) -> String {
    ec2.create_volume()
        .availability_zone(format!("{REGION}a"))
        .size(gib)
        .volume_type(kind)
        .send()
        .await
        .unwrap()
        .volume_id
        .unwrap()
}

async fn instance(ec2: &aws_sdk_ec2::Client, image: &str) -> String {
    let out = ec2
        .run_instances()
        .image_id(image)
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap();
    out.instances()[0].instance_id().unwrap().to_string()
}

fn found<'a>(findings: &'a [Finding], resource: &str) -> Option<&'a Finding> {
    findings.iter().find(|f| f.resource == resource)
}

#[tokio::test]
async fn seeded_waste_is_found_with_its_costs_stored_and_reported_and_nothing_in_use_is() {
    let c = clients().await;
    let ec2 = ec2(&c.sdk);
    let p = unique("scan");

    // The waste.
    let unattached = volume(&ec2, 100, VolumeType::Gp3).await;
    let image = ec2.describe_images().send().await.unwrap().images()[0]
        .image_id()
        .unwrap()
        .to_string();
    let stopped = instance(&ec2, &image).await;
    ec2.stop_instances()
        .instance_ids(&stopped)
        .send()
        .await
        .unwrap();
    let free_ip = ec2
        .allocate_address()
        .send()
        .await
        .unwrap()
        .allocation_id
        .unwrap();
    let snapshot = ec2
        .create_snapshot()
        .volume_id(&unattached)
        .send()
        .await
        .unwrap()
        .snapshot_id
        .unwrap();
    // What is in use.
    let running = instance(&ec2, &image).await;
    let attached = volume(&ec2, 20, VolumeType::Gp2).await;
    ec2.attach_volume()
        .volume_id(&attached)
        .instance_id(&running)
        .device("/dev/sdf")
        .send()
        .await
        .unwrap();
    let used_ip = ec2
        .allocate_address()
        .send()
        .await
        .unwrap()
        .allocation_id
        .unwrap();
    ec2.associate_address()
        .allocation_id(&used_ip)
        .instance_id(&running)
        .send()
        .await
        .unwrap();
    // The stopped instance's root volume, billed while it is stopped.
    let described = ec2
        .describe_instances()
        .instance_ids(&stopped)
        .send()
        .await
        .unwrap();
    let root: Vec<String> = described.reservations()[0].instances()[0]
        .block_device_mappings()
        .iter()
        .filter_map(|m| m.ebs()?.volume_id().map(str::to_string))
        .collect();
    assert!(
        !root.is_empty(),
        "the emulator gives an instance a root volume"
    );
    let mut root_gib = 0;
    for v in ec2
        .describe_volumes()
        .set_volume_ids(Some(root.clone()))
        .send()
        .await
        .unwrap()
        .volumes()
    {
        assert_eq!(v.volume_type().map(|t| t.as_str()), Some("gp2"), "{v:?}");
        root_gib += v.size().unwrap();
    }

    let table = format!("{p}-findings");
    create_cost_table(&table).await;
    let queue = format!("{p}-q");
    let queue_url = create_queue(&queue).await;
    create_queue(&format!("{p}-dlq")).await;
    let inbox = create_queue(&format!("{p}-inbox")).await;
    let ok = topic_into(&format!("{p}-ok"), &inbox, false).await;
    let err = topic_into(&format!("{p}-err"), &inbox, false).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[[queues]]\nname = \"{queue}\"\ndlq = \"{p}-dlq\"\nreceive_wait = \"1s\"\n\n\
         [[routes]]\nname = \"scan\"\npattern = {{ source = [\"test.scan\"] }}\nworkflow = \"resource_scan\"\nparams = {{ regions = [\"{REGION}\"] }}\n\n\
         [resources]\ntable = \"{table}\"\naccount = \"123456789012\"\nunattached_days = 0\nsnapshot_days = 0\n\n\
         [notify]\nsuccess_topic = \"{ok}\"\nerror_topic = \"{err}\"\n\n\
         [journal]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[shutdown]\ndeadline = \"5s\"\n",
        dir.path().join("journal").display()
    );
    let config = support::write_config(dir.path(), &[], &extra);
    let service = Service::start(&config, None);
    let event = json!({"version": "0", "id": "scan-1", "source": "test.scan", "detail-type": "Scan",
        "account": "123456789012", "time": "2026-12-07T12:00:00Z", "region": REGION, "resources": [], "detail": {}});
    send(&queue_url, &event.to_string()).await;
    until(
        "the scan event is settled",
        Duration::from_secs(60),
        async || depth(&queue_url).await == (0, 0),
    )
    .await;

    let store = DynamoFindings::new(c.dynamodb.clone());
    let findings = store.all(&table).await.unwrap();
    let v = found(&findings, &unattached)
        .unwrap_or_else(|| panic!("{unattached} not found: {findings:?}"));
    assert_eq!(
        (v.kind, v.monthly_cost, v.size_gib),
        (FindingKind::UnattachedVolume, 8.0, Some(100)),
        "{v:?}"
    );
    assert_eq!(
        (v.account.as_str(), v.region.as_str()),
        ("123456789012", REGION)
    );
    let ip = found(&findings, &free_ip).expect("the free address");
    assert_eq!(
        (ip.kind, ip.monthly_cost),
        (FindingKind::UnassociatedAddress, 3.65)
    );
    let s = found(&findings, &stopped).expect("the stopped instance");
    assert_eq!(s.kind, FindingKind::StoppedInstance);
    assert_eq!(
        s.monthly_cost,
        f64::from(root_gib) * 0.10,
        "its gp2 root volume at 0.10/GiB: {s:?}"
    );
    let snap = found(&findings, &snapshot).expect("the snapshot");
    assert_eq!(
        (snap.kind, snap.monthly_cost),
        (FindingKind::OldSnapshot, 5.0)
    );
    for in_use in [&running, &attached, &used_ip] {
        assert!(
            found(&findings, in_use).is_none(),
            "{in_use} is in use: {findings:?}"
        );
    }
    for r in &root {
        assert!(
            found(&findings, r).is_none(),
            "{r} is the stopped instance's, counted with it"
        );
    }

    // The report.
    let mut messages: Vec<Value> = Vec::new();
    until("the report arrives", Duration::from_secs(20), async || {
        messages.extend(
            drain(&inbox)
                .await
                .into_iter()
                .map(|(body, _)| serde_json::from_str::<Value>(&body).unwrap()),
        );
        !messages.is_empty()
    })
    .await;
    let m = &messages[0];
    assert_eq!(m["TopicArn"], ok.as_str());
    assert_eq!(m["MessageAttributes"]["type"]["Value"], "resource-scan");
    let report: Value = serde_json::from_str(m["Message"].as_str().unwrap()).unwrap();
    assert_eq!(report["regions"][0]["region"], REGION);
    assert!(report["findings"].as_u64().unwrap() >= 4, "{report}");
    assert!(
        report["regions"][0]["by_kind"]["unattached-volume"]["count"]
            .as_u64()
            .unwrap()
            >= 1,
        "{report}"
    );
    drop(service);

    // The command line: a dry run sees a new volume and writes nothing; a scan writes it.
    let newer = volume(&ec2, 10, VolumeType::St1).await;
    let out = support::run(support::tugboat(&config).args([
        "resources",
        "scan",
        "--dry-run",
        "--json",
        "--region",
        REGION,
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let printed: Vec<Finding> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let n =
        found(&printed, &newer).unwrap_or_else(|| panic!("{newer} not printed: {}", out.stdout));
    assert_eq!(n.monthly_cost, 0.45, "10 GiB st1 at 0.045");
    assert!(out.stderr.contains("dry run"), "{}", out.stderr);
    assert!(
        found(&store.all(&table).await.unwrap(), &newer).is_none(),
        "a dry run wrote"
    );
    let out =
        support::run(support::tugboat(&config).args(["resources", "scan", "--region", REGION]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        found(&store.all(&table).await.unwrap(), &newer).is_some(),
        "the scan wrote it"
    );
    let out = support::run(support::tugboat(&config).args(["resources", "findings"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(&newer) && out.stdout.contains(&unattached),
        "{}",
        out.stdout
    );
    let out =
        support::run(support::tugboat(&config).args(["resources", "findings", "--kind", "volume"]));
    assert_eq!(out.code, 2, "a wrong kind is a usage error: {}", out.stderr);
    let out =
        support::run(support::tugboat(&config).args(["resources", "scan", "--region", "Mars"]));
    assert_eq!(
        out.code, 2,
        "a wrong region is a usage error: {}",
        out.stderr
    );
    assert!(out.stderr.contains("not a region name"), "{}", out.stderr);
}

/// The SDK configuration of another account of the emulator: the emulator keeps each
/// account's resources apart, by the account of the assumed role's credentials.
async fn other_account(sdk: &aws_config::SdkConfig, role_arn: &str) -> aws_config::SdkConfig {
    let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn)
        .session_name("tugboat-test")
        .configure(sdk)
        .build()
        .await;
    sdk.to_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(provider),
        )
        .build()
}

#[tokio::test]
async fn another_account_is_scanned_through_its_role_and_its_findings_named_by_it() {
    let c = clients().await;
    let p = unique("scanacct");
    let role = "arn:aws:iam::222233334444:role/tugboat-resources";
    let member = ec2(&other_account(&c.sdk, role).await);
    let theirs = volume(&member, 30, VolumeType::Gp3).await;
    let table = format!("{p}-findings");
    create_cost_table(&table).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[resources]\ntable = \"{table}\"\naccount = \"123456789012\"\nunattached_days = 0\nsnapshot_days = 0\n\n\
         [[resources.accounts]]\nname = \"member\"\nrole_arn = \"{role}\"\nregions = [\"{REGION}\"]\n"
    );
    let config = support::write_config(dir.path(), &[], &extra);

    let out = support::run(support::tugboat(&config).args([
        "resources",
        "scan",
        "--account",
        "member",
        "--json",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let printed: Vec<Finding> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let f =
        found(&printed, &theirs).unwrap_or_else(|| panic!("{theirs} not found: {}", out.stdout));
    assert_eq!(
        (f.account.as_str(), f.region.as_str(), f.monthly_cost),
        ("member", REGION, 2.4),
        "{f:?}"
    );
    assert!(
        printed.iter().all(|f| f.account == "member"),
        "only the member account's resources: {printed:?}"
    );
    let store = DynamoFindings::new(c.dynamodb.clone());
    let stored = store.all(&table).await.unwrap();
    assert!(
        found(&stored, &theirs).is_some_and(|f| f.account == "member"),
        "{stored:?}"
    );

    // The own account's scan of the same region does not see the member's volume.
    let own = support::run(support::tugboat(&config).args([
        "resources",
        "scan",
        "--dry-run",
        "--json",
        "--region",
        REGION,
    ]));
    assert_eq!(own.code, 0, "{}", own.stderr);
    assert!(!own.stdout.contains(&theirs), "{}", own.stdout);

    // An account not configured is refused, naming the ones that are.
    let bad =
        support::run(support::tugboat(&config).args(["resources", "scan", "--account", "staging"]));
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr.contains("--account") && bad.stderr.contains("member"),
        "{}",
        bad.stderr
    );
}

/// The scan's CloudWatch and RDS rules against the emulator: the scan runs in this process
/// with the real adapters and a clock 30 days ahead (the emulator's instances and DB
/// instances are created now, and the rules judge only those running for the whole window),
/// over daily metrics put into that window.
#[tokio::test]
async fn low_cpu_instances_and_idle_databases_are_found_from_cloudwatch() {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
    use tugboat::aws::cloudwatch::CloudWatchMetrics;
    use tugboat::aws::ec2::Ec2Inventory;
    use tugboat::aws::rds::RdsDatabases;
    use tugboat::workflows::resource_scan::{ResourceScan, config};

    const HERE: &str = "eu-north-1";
    const DAY_MS: u64 = 86_400_000;
    let c = clients().await;
    let regional = c
        .sdk
        .to_builder()
        .region(aws_config::Region::new(HERE))
        .build();
    let ec2 = aws_sdk_ec2::Client::new(&regional);
    let rds = aws_sdk_rds::Client::new(&regional);
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&regional);
    let image = ec2.describe_images().send().await.unwrap().images()[0]
        .image_id()
        .unwrap()
        .to_string();
    let idle = instance(&ec2, &image).await;
    let busy = instance(&ec2, &image).await;
    let silent = instance(&ec2, &image).await;
    let p = unique("db");
    for (id, class) in [
        (format!("{p}-idle"), "db.t3.micro"),
        (format!("{p}-used"), "db.t3.micro"),
    ] {
        rds.create_db_instance()
            .db_instance_identifier(&id)
            .db_instance_class(class)
            .engine("postgres")
            .allocated_storage(20)
            .storage_type("gp2")
            .master_username("admin")
            .master_user_password("password123")
            .send()
            .await
            .unwrap();
    }

    let now_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let later = now_ms + 30 * DAY_MS;
    let put = async |namespace: &str, metric: &str, dimension: &str, value: &str, reading: f64| {
        // A point in each of the last 14 days of the window.
        let data: Vec<MetricDatum> = (1..=14)
            .map(|d| {
                MetricDatum::builder()
                    .metric_name(metric)
                    .dimensions(Dimension::builder().name(dimension).value(value).build())
                    .timestamp(aws_smithy_types::DateTime::from_millis(
                        (later - d * DAY_MS + 3_600_000) as i64,
                    ))
                    .value(reading)
                    .build()
            })
            .collect();
        cloudwatch
            .put_metric_data()
            .namespace(namespace)
            .set_metric_data(Some(data))
            .send()
            .await
            .unwrap();
    };
    put("AWS/EC2", "CPUUtilization", "InstanceId", &idle, 1.5).await;
    put("AWS/EC2", "CPUUtilization", "InstanceId", &busy, 60.0).await;
    put(
        "AWS/RDS",
        "DatabaseConnections",
        "DBInstanceIdentifier",
        &format!("{p}-idle"),
        0.0,
    )
    .await;
    put(
        "AWS/RDS",
        "DatabaseConnections",
        "DBInstanceIdentifier",
        &format!("{p}-used"),
        4.0,
    )
    .await;

    let settings: config::ResourceSettings = toml::from_str(
        "table = \"unused\"\naccount = \"123456789012\"\nlow_cpu_days = 14\nidle_database_days = 7",
    )
    .unwrap();
    let scan = ResourceScan {
        settings: Some(settings.clone()),
        own_region: HERE.into(),
        inventory: std::sync::Arc::new(Ec2Inventory::new(c.sdk.clone())),
        databases: std::sync::Arc::new(RdsDatabases::new(c.sdk.clone())),
        metrics: std::sync::Arc::new(CloudWatchMetrics::new(c.sdk.clone())),
        accounts: std::sync::Arc::new(tugboat::ports::memory::MemoryAccounts::default()),
        findings: std::sync::Arc::new(tugboat::ports::memory::MemoryFindings::default()),
        costs: std::sync::Arc::new(tugboat::ports::memory::MemoryCosts::default()),
        clock: std::sync::Arc::new(tugboat::ports::clock::TokioClock::starting_at(later)),
    };
    let (findings, read) = scan.survey(&settings.account, None, HERE).await.unwrap();
    assert!(read >= 5, "{read}");
    let low = found(&findings, &idle).unwrap_or_else(|| panic!("{idle} not found: {findings:?}"));
    assert_eq!(
        (low.kind, low.monthly_cost),
        (FindingKind::LowCpuInstance, 7.59),
        "t3.micro at 0.0104 × 730: {low:?}"
    );
    assert!(low.detail.contains("at most 1.5%"), "{}", low.detail);
    assert!(
        found(&findings, &busy).is_none(),
        "60% is busy: {findings:?}"
    );
    assert!(
        found(&findings, &silent).is_none(),
        "no data points, no judgement: {findings:?}"
    );
    let db = found(&findings, &format!("{p}-idle"))
        .unwrap_or_else(|| panic!("idle DB not found: {findings:?}"));
    assert_eq!(
        (db.kind, db.monthly_cost, db.size_gib),
        (FindingKind::IdleDatabase, 14.71, Some(20)),
        "db.t3.micro 12.41 + 20 GiB gp2 at 0.115: {db:?}"
    );
    assert!(
        found(&findings, &format!("{p}-used")).is_none(),
        "connected: {findings:?}"
    );
}
