//! `resource_scan` against the in-memory inventory and findings table: each instance driven
//! step by step, the engine's publishes recorded instead of sent.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::contract::{Action, Call, Workflow};
use crate::ports::clock::TokioClock;
use crate::ports::memory::{MemoryAccounts, MemoryFindings, MemoryInventory, RegionInventory};
use crate::ports::resources::{Address, FindingKind, Volume};

const NOW: u64 = 1_800_000_000_000;
const DAY: u64 = 86_400_000;

fn workflow(inventory: &MemoryInventory, findings: &MemoryFindings, regions: &[&str]) -> Typed<ResourceScan> {
    let mut settings: ResourceSettings = toml::from_str("table = \"findings\"\naccount = \"111122223333\"").unwrap();
    settings.regions = regions.iter().map(|r| r.to_string()).collect();
    Typed(ResourceScan {
        settings: Some(settings),
        own_region: "eu-west-1".into(),
        inventory: Arc::new(inventory.clone()),
        databases: Arc::new(inventory.clone()),
        metrics: Arc::new(inventory.clone()),
        accounts: Arc::new(MemoryAccounts::default()),
        findings: Arc::new(findings.clone()),
        costs: Arc::new(crate::ports::memory::MemoryCosts::default()),
        clock: Arc::new(TokioClock::starting_at(NOW)),
    })
}

fn volume(id: &str, gib: u32, state: &str) -> Volume {
    Volume {
        id: id.into(),
        size_gib: gib,
        volume_type: "gp2".into(),
        state: state.into(),
        iops: None,
        created_ms: Some(NOW - 30 * DAY),
        tags: BTreeMap::new(),
    }
}

fn address(id: &str, associated: bool) -> Address {
    Address { id: id.into(), public_ip: "203.0.113.9".into(), associated, tags: BTreeMap::new() }
}

/// Runs an instance to its end: handler steps performed (a retryable error retried at
/// once), publishes recorded.
async fn run(w: &Typed<ResourceScan>, params: &Value) -> (Next, Vec<Action>) {
    let t = w.start(&json!({"source": "tugboat.schedule"}), params).unwrap();
    let (mut state, mut next) = (t.state, t.next);
    let mut published = Vec::new();
    loop {
        let action = match next {
            Next::Run(a) => a,
            other => return (other, published),
        };
        let outcome = match &action.call {
            Call::Handler => loop {
                let ctx = StepContext { workflow_id: "r:e", step: &action.name, attempt: 1, generation: 0, continued: 0, event: &Value::Null };
                match w.perform(ctx, &action.step).await {
                    Err(e) if e.retryable => continue,
                    other => break other,
                }
            },
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

#[tokio::test]
async fn each_region_is_scanned_its_findings_replaced_and_one_report_published() {
    let inventory = MemoryInventory::default();
    inventory.set("eu-west-1", RegionInventory {
        volumes: vec![volume("vol-a", 100, "available"), volume("vol-b", 10, "in-use")],
        addresses: vec![address("eipalloc-a", false), address("eipalloc-b", true)],
        ..Default::default()
    });
    inventory.set("us-east-1", RegionInventory { volumes: vec![volume("vol-c", 20, "available")], ..Default::default() });
    let findings = MemoryFindings::default();
    // An earlier scan's finding that is gone now.
    findings
        .replace("findings", "111122223333", "eu-west-1", &[Finding {
            account: "111122223333".into(), region: "eu-west-1".into(), kind: FindingKind::UnattachedVolume,
            resource: "vol-deleted".into(), detail: String::new(), size_gib: None, age_days: None,
            monthly_cost: 1.0, currency: "USD".into(), price: String::new(), name: None,
        }])
        .await
        .unwrap();
    let w = workflow(&inventory, &findings, &["eu-west-1", "us-east-1"]);
    // Throttled once: the step is retried.
    inventory.fail_next(1);
    let (end, published) = run(&w, &json!({})).await;
    let Next::Complete(output) = end else { panic!("{end:?}") };
    let report: ScanReport = serde_json::from_value(output).unwrap();
    assert_eq!((report.findings, report.monthly_cost), (3, 15.65), "10 + 3.65 + 2: {report:?}");
    assert_eq!(report.regions.len(), 2);
    let eu = &report.regions[0];
    assert_eq!((eu.region.as_str(), eu.read, eu.findings, eu.written, eu.deleted), ("eu-west-1", 4, 2, 2, 1));
    assert_eq!(eu.by_kind["unattached-volume"], KindTotal { count: 1, monthly_cost: 10.0 });
    assert_eq!(eu.by_kind["unassociated-address"], KindTotal { count: 1, monthly_cost: 3.65 });
    assert_eq!(eu.top[0].resource, "vol-a");
    let mut stored: Vec<String> = findings.all("findings").await.unwrap().into_iter().map(|f| f.resource).collect();
    stored.sort();
    assert_eq!(stored, vec!["eipalloc-a", "vol-a", "vol-c"]);
    assert_eq!(published.len(), 1);
    let Call::Publish { topic, message, attributes, .. } = &published[0].call else { panic!() };
    assert_eq!(*topic, Topic::Success);
    assert_eq!(message["type"], "resource-scan");
    assert_eq!(message["monthly_cost"], 15.65);
    assert_eq!(attributes.get("account").map(String::as_str), Some("111122223333"));
    assert!(inventory.calls().contains(&"us-east-1:DescribeSnapshots".to_string()));
}

#[tokio::test]
async fn route_params_choose_the_regions_and_wrong_ones_are_refused() {
    let inventory = MemoryInventory::default();
    let findings = MemoryFindings::default();
    let w = workflow(&inventory, &findings, &[]);
    let (end, _) = run(&w, &json!({"regions": ["ap-south-1"]})).await;
    let Next::Complete(output) = end else { panic!("{end:?}") };
    assert_eq!(output["regions"][0]["region"], "ap-south-1");
    assert_eq!(output["findings"], 0);
    // No regions anywhere: the service's own.
    let (end, _) = run(&w, &Value::Null).await;
    let Next::Complete(output) = end else { panic!("{end:?}") };
    assert_eq!(output["regions"][0]["region"], "eu-west-1");
    for (params, says) in [
        (json!({"regions": []}), "at least one region"),
        (json!({"regions": ["nowhere"]}), "not a region name"),
        // A region is part of the endpoint's host name: nothing else may get in.
        (json!({"regions": ["eu-west-1.attacker.example"]}), "not a region name"),
        (json!({"regions": ["eu-west-1/"]}), "not a region name"),
        (json!({"regions": "eu-west-1"}), "params.regions"),
    ] {
        let e = w.start(&json!({}), &params).unwrap_err();
        assert!(e.contains(says), "{params}: {e}");
    }
    let without = Typed(ResourceScan { settings: None, ..w.0.clone() });
    assert!(without.start(&json!({}), &json!({})).unwrap_err().contains("[resources]"));
}

#[tokio::test]
async fn a_permanent_inventory_error_fails_the_run_with_its_reason() {
    #[derive(Debug)]
    struct Denied;
    #[async_trait]
    impl Inventory for Denied {
        async fn volumes(&self, _: &str) -> Result<Vec<Volume>, StepError> {
            Err(StepError::permanent("DescribeVolumes: UnauthorizedOperation: not allowed"))
        }
        async fn addresses(&self, _: &str) -> Result<Vec<Address>, StepError> { Ok(vec![]) }
        async fn instances(&self, _: &str) -> Result<Vec<crate::ports::resources::Instance>, StepError> { Ok(vec![]) }
        async fn snapshots(&self, _: &str) -> Result<Vec<crate::ports::resources::Snapshot>, StepError> { Ok(vec![]) }
    }
    let findings = MemoryFindings::default();
    let mut w = workflow(&MemoryInventory::default(), &findings, &["eu-west-1"]);
    w.0.inventory = Arc::new(Denied);
    let (end, published) = run(&w, &json!({})).await;
    let Next::Fail(reason) = end else { panic!("{end:?}") };
    assert!(reason.contains("UnauthorizedOperation"), "{reason}");
    assert!(published.is_empty());
    assert!(findings.all("findings").await.unwrap().is_empty(), "nothing replaced");
}

#[tokio::test]
async fn another_account_is_scanned_through_its_role_and_its_findings_kept_apart() {
    let own = MemoryInventory::default();
    own.set("eu-west-1", RegionInventory { volumes: vec![volume("vol-own", 10, "available")], ..Default::default() });
    let prod = MemoryInventory::default();
    prod.set("eu-west-1", RegionInventory { volumes: vec![volume("vol-prod", 50, "available")], ..Default::default() });
    let accounts = MemoryAccounts::default();
    let role = "arn:aws:iam::222222222222:role/tugboat-resources";
    accounts.add(role, prod.clone());
    let findings = MemoryFindings::default();
    let mut w = workflow(&own, &findings, &["eu-west-1"]);
    w.0.accounts = Arc::new(accounts);
    let settings = w.0.settings.as_mut().unwrap();
    settings.accounts = vec![
        config::AccountSettings { name: "prod".into(), role_arn: role.into(), external_id: None, regions: vec![] },
        config::AccountSettings {
            name: "gone".into(),
            role_arn: "arn:aws:iam::333333333333:role/tugboat-resources".into(),
            external_id: None,
            regions: vec![],
        },
    ];

    let t = w.start(&json!({}), &json!({"account": "prod"})).unwrap();
    let Next::Run(first) = &t.next else { panic!("{:?}", t.next) };
    assert_eq!(first.name, "scan:prod:eu-west-1");
    let (end, published) = run(&w, &json!({"account": "prod"})).await;
    let Next::Complete(output) = end else { panic!("{end:?}") };
    assert_eq!((output["account"].as_str(), output["findings"].as_u64()), (Some("prod"), Some(1)), "{output}");
    assert_eq!(output["regions"][0]["top"][0]["resource"], "vol-prod");
    assert_eq!(output["regions"][0]["top"][0]["account"], "prod");
    let Call::Publish { attributes, .. } = &published[0].call else { panic!() };
    assert_eq!(attributes.get("account").map(String::as_str), Some("prod"));
    assert!(own.calls().is_empty(), "the own account was not read: {:?}", own.calls());

    // The own account's scan does not replace prod's findings, nor prod's the own.
    run(&w, &json!({})).await;
    let mut stored: Vec<(String, String)> =
        findings.all("findings").await.unwrap().into_iter().map(|f| (f.account, f.resource)).collect();
    stored.sort();
    assert_eq!(stored, vec![("111122223333".into(), "vol-own".into()), ("prod".into(), "vol-prod".into())]);

    // A role that cannot be assumed fails the run saying so; an account not configured is
    // refused at the start.
    let (end, _) = run(&w, &json!({"account": "gone"})).await;
    let Next::Fail(reason) = end else { panic!("{end:?}") };
    assert!(reason.contains("AssumeRole") && reason.contains("333333333333"), "{reason}");
    let e = w.start(&json!({}), &json!({"account": "staging"})).unwrap_err();
    assert!(e.contains("\"staging\"") && e.contains("prod"), "{e}");
}

#[tokio::test]
async fn findings_are_priced_at_the_rates_the_cost_reports_billed_in_their_region() {
    use crate::ports::costs::{CostStore, UnitRate};
    let inventory = MemoryInventory::default();
    inventory.set("eu-west-1", RegionInventory {
        volumes: vec![volume("vol-eu", 100, "available")],
        addresses: vec![address("eipalloc-eu", false)],
        ..Default::default()
    });
    inventory.set("us-east-1", RegionInventory { volumes: vec![volume("vol-us", 100, "available")], ..Default::default() });
    let costs = crate::ports::memory::MemoryCosts::default();
    let rate = |usage: &str, rate: &str, unit: &str| UnitRate {
        region: "eu-west-1".into(),
        usage_type: usage.into(),
        rate: rate.into(),
        unit: unit.into(),
        currency: "USD".into(),
        day: "2026-11-30".into(),
    };
    costs
        .put_rates("costs", &[rate("EBS:VolumeUsage.gp2", "0.11", "GB-Mo"), rate("PublicIPv4:IdleAddress", "0.006", "Hrs")])
        .await
        .unwrap();
    let findings = MemoryFindings::default();
    let mut w = workflow(&inventory, &findings, &["eu-west-1", "us-east-1"]);
    w.0.costs = Arc::new(costs.clone());
    w.0.settings.as_mut().unwrap().rates_table = Some("costs".into());
    let (end, _) = run(&w, &json!({})).await;
    let Next::Complete(_) = end else { panic!("{end:?}") };
    let stored = findings.all("findings").await.unwrap();
    let by = |id: &str| stored.iter().find(|f| f.resource == id).unwrap_or_else(|| panic!("{id}: {stored:?}"));
    // eu-west-1 at the report's rates; us-east-1 has none kept: the table's.
    assert_eq!(by("vol-eu").monthly_cost, 11.0, "{:?}", by("vol-eu"));
    assert!(by("vol-eu").price.starts_with("cost report EBS:VolumeUsage.gp2 0.11/GB-Mo"), "{}", by("vol-eu").price);
    assert_eq!(by("eipalloc-eu").monthly_cost, 4.38, "0.006 × 730");
    assert_eq!(by("vol-us").monthly_cost, 10.0);
    assert!(by("vol-us").price.starts_with("price table"), "{}", by("vol-us").price);

    // Without a rates table nothing is read from it.
    w.0.settings.as_mut().unwrap().rates_table = Some(String::new());
    run(&w, &json!({})).await;
    let stored = findings.all("findings").await.unwrap();
    assert_eq!(stored.iter().find(|f| f.resource == "vol-eu").unwrap().monthly_cost, 10.0);
}
