//! `auto_stop` against the in-memory EC2: each instance driven step by step, the report
//! recorded instead of published.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::contract::{Action as Planned, Call, Workflow};
use crate::ports::memory::{MemoryInventory, RegionInventory};
use crate::ports::resources::EcsService;

const R: &str = "eu-west-1";

fn instance(id: &str, state: &str, tags: &[(&str, &str)]) -> Instance {
    Instance {
        id: id.into(),
        instance_type: "t3.micro".into(),
        state: state.into(),
        launched_ms: None,
        volumes: vec![],
        tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

fn service(name: &str, desired: u32, tags: &[(&str, &str)]) -> EcsService {
    EcsService {
        arn: format!("arn:aws:ecs:{R}:123456789012:service/apps/{name}"),
        name: name.into(),
        cluster: format!("arn:aws:ecs:{R}:123456789012:cluster/apps"),
        desired,
        tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

fn database(id: &str, status: &str, tags: &[(&str, &str)]) -> crate::ports::resources::Database {
    crate::ports::resources::Database {
        id: id.into(),
        arn: format!("arn:aws:rds:{R}:123456789012:db:{id}"),
        class: "db.t3.micro".into(),
        engine: "postgres".into(),
        status: status.into(),
        storage_gib: 20,
        storage_type: "gp3".into(),
        multi_az: false,
        created_ms: None,
        tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

fn ec2() -> MemoryInventory {
    let ec2 = MemoryInventory::default();
    ec2.set(R, RegionInventory {
        databases: vec![
            database("db-dev", "available", &[("environment", "dev")]),
            database("db-dev-off", "stopped", &[("environment", "dev")]),
            database("db-prod", "available", &[("environment", "prod")]),
        ],
        services: vec![
            service("web", 3, &[("environment", "dev")]),
            service("worker", 1, &[("environment", "dev")]),
            service("idle", 0, &[("environment", "dev")]),
            service("shop", 2, &[("environment", "prod")]),
        ],
        instances: vec![
            instance("i-dev-1", "running", &[("environment", "dev")]),
            instance("i-dev-2", "running", &[("environment", "dev"), ("Name", "b")]),
            instance("i-dev-off", "stopped", &[("environment", "dev")]),
            instance("i-prod", "running", &[("environment", "prod")]),
            instance("i-none", "running", &[]),
        ],
        ..Default::default()
    });
    ec2
}

/// The workflow, and the journal's completed records (id → output) its reads see.
struct Harness {
    w: Typed<AutoStop>,
    records: std::sync::Mutex<BTreeMap<String, Value>>,
    runs: std::sync::atomic::AtomicUsize,
}

fn workflow(ec2: &MemoryInventory) -> Harness {
    Harness {
        w: Typed(AutoStop {
            regions: vec![R.into()],
            power: Arc::new(ec2.clone()),
            services: Arc::new(ec2.clone()),
            databases: Arc::new(ec2.clone()),
            accounts: Arc::new(crate::ports::memory::MemoryAccounts::default()),
            settings: None,
        }),
        records: Default::default(),
        runs: Default::default(),
    }
}

/// Runs an instance (a new id each run) to its end and keeps its output as its record;
/// `perform_twice` performs each handler step twice, as a resume after a crash before its
/// outcome was journaled does.
async fn run(h: &Harness, params: Value, perform_twice: bool) -> (Next, Vec<Planned>) {
    let id = format!("auto-stop:e{}", h.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    let (end, published) = run_as(h, &id, params, perform_twice).await;
    if let Next::Complete(out) = &end {
        h.records.lock().unwrap().insert(id, out.clone());
    }
    (end, published)
}

async fn run_as(h: &Harness, id: &str, params: Value, perform_twice: bool) -> (Next, Vec<Planned>) {
    let w = &h.w;
    let t = w.start(&json!({}), &params).unwrap();
    let (mut state, mut next) = (t.state, t.next);
    let mut published = Vec::new();
    loop {
        let action = match next {
            Next::Run(a) => a,
            other => return (other, published),
        };
        let outcome = match &action.call {
            Call::Handler => {
                let ctx = StepContext { workflow_id: id, step: &action.name, attempt: 1, generation: 0, continued: 0, event: &Value::Null };
                if perform_twice {
                    w.perform(ctx, &action.step).await.unwrap();
                }
                w.perform(ctx, &action.step).await
            }
            Call::Publish { .. } => {
                published.push(action.clone());
                Ok(json!({"message_id": "m"}))
            }
            Call::ReadWorkflow { id } => {
                let records = h.records.lock().unwrap();
                Ok(match records.get(id) {
                    Some(out) => json!({"found": true, "workflow": KIND, "status": crate::journal::Status::Succeeded.name(), "output": out}),
                    None => json!({"found": false}),
                })
            }
            other => panic!("{other:?}"),
        };
        let t = w.advance(state, &action, outcome);
        state = t.state;
        next = t.next;
    }
}

fn states(ec2: &MemoryInventory) -> BTreeMap<String, (String, bool)> {
    ec2.instances(R)
        .into_iter()
        .map(|i| (i.id, (i.state, i.tags.contains_key(STOPPED_MARK))))
        .collect()
}

fn calls(ec2: &MemoryInventory, call: &str) -> usize {
    ec2.calls().iter().filter(|c| c.ends_with(call)).count()
}

#[tokio::test]
async fn a_dry_run_is_the_default_and_changes_nothing() {
    let ec2 = ec2();
    let before = states(&ec2);
    let (end, published) = run(&workflow(&ec2), json!({"action": "stop", "tags": {"environment": "dev"}}), false).await;
    let Next::Complete(out) = end else { panic!("{end:?}") };
    assert_eq!(out["dry_run"], true);
    assert_eq!(out["regions"][0]["instances"], json!(["i-dev-1", "i-dev-2"]));
    assert_eq!(out["regions"][0]["left"]["i-dev-off"], "not running");
    assert_eq!(states(&ec2), before, "nothing changed");
    for call in ["StopInstances", "CreateTags", "StartInstances", "DeleteTags"] {
        assert_eq!(calls(&ec2, call), 0, "{call}");
    }
    let Call::Publish { subject, attributes, .. } = &published[0].call else { panic!() };
    assert!(subject.contains("would stop 2"), "{subject}");
    assert_eq!(attributes.get("action").map(String::as_str), Some("stop"));
}

#[tokio::test]
async fn stop_touches_only_tagged_instances_and_start_brings_back_only_what_it_stopped() {
    let ec2 = ec2();
    let w = workflow(&ec2);
    let (end, _) = run(&w, json!({"action": "stop", "tags": {"environment": "dev"}, "dry_run": false}), false).await;
    assert!(matches!(end, Next::Complete(_)), "{end:?}");
    let s = states(&ec2);
    assert_eq!(s["i-dev-1"], ("stopped".into(), true));
    assert_eq!(s["i-dev-2"], ("stopped".into(), true));
    assert_eq!(s["i-dev-off"], ("stopped".into(), false), "already stopped: not marked");
    assert_eq!(s["i-prod"], ("running".into(), false));
    assert_eq!(s["i-none"], ("running".into(), false));
    let (end, published) = run(&w, json!({"action": "start", "tags": {"environment": "dev"}, "dry_run": false}), false).await;
    let Next::Complete(out) = end else { panic!("{end:?}") };
    assert_eq!(out["regions"][0]["instances"], json!(["i-dev-1", "i-dev-2"]));
    assert!(out["regions"][0]["left"]["i-dev-off"].as_str().unwrap().contains("by hand"));
    let s = states(&ec2);
    assert_eq!(s["i-dev-1"], ("running".into(), false));
    assert_eq!(s["i-dev-2"], ("running".into(), false));
    assert_eq!(s["i-dev-off"], ("stopped".into(), false), "stopped by hand: left stopped");
    let Call::Publish { subject, .. } = &published[0].call else { panic!() };
    assert!(subject.contains("started 2"), "{subject}");
}

#[tokio::test]
async fn a_step_run_again_after_a_crash_stops_and_starts_nothing_twice() {
    let ec2 = ec2();
    let w = workflow(&ec2);
    let (end, _) = run(&w, json!({"action": "stop", "tags": {"environment": "dev"}, "dry_run": false}), true).await;
    assert_eq!(calls(&ec2, "StopInstances"), 1, "{:?}", ec2.calls());
    let Next::Complete(out) = end else { panic!("{end:?}") };
    assert_eq!(out["regions"][0]["instances"], json!(["i-dev-1", "i-dev-2"]), "the earlier attempt's stops are counted");
    let (end, _) = run(&w, json!({"action": "start", "tags": {"environment": "dev"}, "dry_run": false}), true).await;
    assert_eq!(calls(&ec2, "StartInstances"), 1, "{:?}", ec2.calls());
    assert!(matches!(end, Next::Complete(_)), "{end:?}");
    assert_eq!(states(&ec2)["i-dev-1"], ("running".into(), false));
    // A start whose mark was already removed leaves no trace on the instance: the repeated
    // step reports none (the crash-between-start-and-unmark case is counted).
    let ec2 = self::ec2();
    let w = workflow(&ec2);
    run(&w, json!({"action": "stop", "tags": {"environment": "dev"}, "dry_run": false}), false).await;
    ec2.start(R, &["i-dev-1".to_string()]).await.unwrap();
    let (end, _) = run(&w, json!({"action": "start", "tags": {"environment": "dev"}, "dry_run": false}), false).await;
    let Next::Complete(out) = end else { panic!("{end:?}") };
    assert_eq!(out["regions"][0]["instances"], json!(["i-dev-1", "i-dev-2"]), "started before, marked: counted");
    assert_eq!(calls(&ec2, "StartInstances"), 2, "i-dev-2 only, the second time: {:?}", ec2.calls());
    assert_eq!(states(&ec2)["i-dev-1"], ("running".into(), false), "unmarked");
}

/// Each service's desired count and mark, by name.
fn services(ec2: &MemoryInventory) -> BTreeMap<String, (u32, Option<String>)> {
    ec2.services(R)
        .into_iter()
        .map(|s| (s.name, (s.desired, s.tags.get(STOPPED_MARK).cloned())))
        .collect()
}

fn arn(name: &str) -> String {
    service(name, 0, &[]).arn
}

const DEV_STOP: &str = r#"{"action": "stop", "tags": {"environment": "dev"}, "dry_run": false}"#;
const DEV_START: &str = r#"{"action": "start", "tags": {"environment": "dev"}, "dry_run": false}"#;

fn params(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[tokio::test]
async fn services_go_to_zero_with_their_counts_journaled_and_come_back_to_them() {
    let ec2 = ec2();
    let w = workflow(&ec2);
    let (end, published) = run(&w, params(DEV_STOP), false).await;
    let Next::Complete(out) = end else { panic!("{end:?}") };
    assert_eq!(out["services"], 2);
    assert_eq!(
        out["regions"][0]["services"],
        json!([
            {"service": arn("web"), "cluster": service("web", 0, &[]).cluster, "desired": 3},
            {"service": arn("worker"), "cluster": service("web", 0, &[]).cluster, "desired": 1},
        ]),
        "the counts before, remembered in the stop's record"
    );
    assert_eq!(out["regions"][0]["left"][arn("idle")], "desired count already 0");
    let s = services(&ec2);
    assert_eq!(s["web"], (0, Some("auto-stop:e0".into())));
    assert_eq!(s["worker"], (0, Some("auto-stop:e0".into())));
    assert_eq!(s["idle"], (0, None), "already at 0: not marked, not scaled");
    assert_eq!(s["shop"], (2, None), "untagged for this route: untouched");
    let Call::Publish { subject, .. } = &published[0].call else { panic!() };
    assert!(subject.contains("2 service(s)"), "{subject}");

    let (end, _) = run(&w, params(DEV_START), false).await;
    let Next::Complete(out) = end else { panic!("{end:?}") };
    assert_eq!(out["regions"][0]["services"][0]["desired"], 3, "{out}");
    let s = services(&ec2);
    assert_eq!(s["web"], (3, None));
    assert_eq!(s["worker"], (1, None));
    assert_eq!(s["idle"], (0, None), "not stopped by auto_stop: left at 0");
    assert_eq!(s["shop"], (2, None));
    assert!(out["regions"][0]["left"][arn("idle")].as_str().unwrap().contains("no mark"), "{out}");
}

#[tokio::test]
async fn a_service_step_run_again_after_a_crash_keeps_the_counts() {
    let ec2 = ec2();
    let w = workflow(&ec2);
    run(&w, params(DEV_STOP), true).await;
    let s = services(&ec2);
    assert_eq!((s["web"].0, s["worker"].0), (0, 0));
    let (end, _) = run(&w, params(DEV_START), true).await;
    assert!(matches!(end, Next::Complete(_)), "{end:?}");
    let s = services(&ec2);
    assert_eq!(s["web"], (3, None), "the count read before the first scale, not the 0 after it");
    assert_eq!(s["worker"], (1, None));
}

#[tokio::test]
async fn a_second_stop_keeps_the_first_stops_counts_for_the_start() {
    let ec2 = ec2();
    let w = workflow(&ec2);
    run(&w, params(DEV_STOP), false).await;
    let (end, _) = run(&w, params(DEV_STOP), false).await;
    let Next::Complete(out) = end else { panic!("{end:?}") };
    assert_eq!(out["services"], 0, "{out}");
    assert!(out["regions"][0]["left"][arn("web")].as_str().unwrap().contains("stopped by auto-stop:e0"), "{out}");
    assert_eq!(services(&ec2)["web"], (0, Some("auto-stop:e0".into())), "the mark still names the first stop");
    run(&w, params(DEV_START), false).await;
    assert_eq!(services(&ec2)["web"], (3, None));
}

#[tokio::test]
async fn a_service_scaled_up_by_hand_keeps_its_count_and_one_without_a_record_stays_marked() {
    let ec2 = ec2();
    let w = workflow(&ec2);
    run(&w, params(DEV_STOP), false).await;
    ec2.scale(R, "", &arn("web"), 5).await.unwrap();
    // The record of the stop that marked `worker` is gone (another journal).
    ec2.mark_service(R, &arn("worker"), STOPPED_MARK, "auto-stop:elsewhere").await.unwrap();
    let (end, _) = run(&w, params(DEV_START), false).await;
    let Next::Complete(out) = end else { panic!("{end:?}") };
    let s = services(&ec2);
    assert_eq!(s["web"], (5, None), "kept the hand-set count; unmarked");
    assert_eq!(s["worker"], (0, Some("auto-stop:elsewhere".into())), "left for a person");
    let why = out["regions"][0]["left"][arn("worker")].as_str().unwrap();
    assert!(why.contains("no succeeded record") && why.contains("by hand"), "{why}");
    assert!(out["regions"][0]["left"][arn("web")].as_str().unwrap().contains("scaled up since"), "{out}");
}

#[tokio::test]
async fn a_dry_run_start_reads_the_counts_and_changes_nothing() {
    let ec2 = ec2();
    let w = workflow(&ec2);
    run(&w, params(DEV_STOP), false).await;
    let before = services(&ec2);
    let updates = calls(&ec2, "UpdateService");
    let (end, _) = run(&w, json!({"action": "start", "tags": {"environment": "dev"}}), false).await;
    let Next::Complete(out) = end else { panic!("{end:?}") };
    assert_eq!(out["regions"][0]["services"][0]["desired"], 3, "would restore 3: {out}");
    assert_eq!(services(&ec2), before);
    assert_eq!(calls(&ec2, "UpdateService"), updates);
}

#[tokio::test]
async fn resources_choose_what_is_touched() {
    let ec2 = ec2();
    let w = workflow(&ec2);
    let (end, _) =
        run(&w, json!({"action": "stop", "tags": {"environment": "dev"}, "dry_run": false, "resources": ["services"]}), false).await;
    let Next::Complete(out) = end else { panic!("{end:?}") };
    assert_eq!((out["instances"].as_u64(), out["services"].as_u64()), (Some(0), Some(2)), "{out}");
    assert_eq!(calls(&ec2, "DescribeInstances"), 0, "{:?}", ec2.calls());
    assert_eq!(states(&ec2)["i-dev-1"].0, "running");
    let (end, _) =
        run(&w, json!({"action": "start", "tags": {"environment": "dev"}, "dry_run": false, "resources": ["instances"]}), false).await;
    assert!(matches!(end, Next::Complete(_)), "{end:?}");
    assert_eq!(services(&ec2)["web"].0, 0, "instances only: the services stay down");
}

/// Each DB instance's status and whether it carries the mark, by id.
fn dbs(ec2: &MemoryInventory) -> BTreeMap<String, (String, bool)> {
    ec2.databases_now(R)
        .into_iter()
        .map(|d| (d.id, (d.status, d.tags.contains_key(STOPPED_MARK))))
        .collect()
}

#[tokio::test]
async fn databases_are_stopped_and_started_like_instances_once_each_even_when_a_step_repeats() {
    let ec2 = ec2();
    let w = workflow(&ec2);
    let (end, published) = run(&w, params(DEV_STOP), true).await;
    let Next::Complete(out) = end else { panic!("{end:?}") };
    assert_eq!((out["databases"].as_u64(), &out["regions"][0]["databases"]), (Some(1), &json!(["db-dev"])), "{out}");
    assert!(out["regions"][0]["left"]["db-dev-off"].as_str().unwrap().contains("not available"), "{out}");
    assert_eq!(calls(&ec2, "StopDBInstance"), 1, "{:?}", ec2.calls());
    let d = dbs(&ec2);
    assert_eq!(d["db-dev"], ("stopped".into(), true));
    assert_eq!(d["db-dev-off"], ("stopped".into(), false));
    assert_eq!(d["db-prod"], ("available".into(), false));
    let Call::Publish { subject, .. } = &published[0].call else { panic!() };
    assert!(subject.contains("1 database(s)"), "{subject}");
    let (end, _) = run(&w, params(DEV_START), true).await;
    assert!(matches!(end, Next::Complete(_)), "{end:?}");
    assert_eq!(calls(&ec2, "StartDBInstance"), 1, "{:?}", ec2.calls());
    let d = dbs(&ec2);
    assert_eq!(d["db-dev"], ("available".into(), false));
    assert_eq!(d["db-dev-off"], ("stopped".into(), false), "stopped by hand: left stopped");
}

#[test]
fn params_are_checked_and_name_what_is_wrong() {
    for (params, says) in [
        (json!({"tags": {"environment": "dev"}}), "action"),
        (json!({"action": "pause", "tags": {"environment": "dev"}}), "action"),
        (json!({"action": "stop"}), "tags"),
        (json!({"action": "stop", "tags": {}}), "at least one tag"),
        (json!({"action": "stop", "tags": {"tugboat:auto-stopped": "x"}}), "cannot select"),
        (json!({"action": "stop", "tags": {"aws:cloudformation:stack-name": "x"}}), "cannot select"),
        (json!({"action": "stop", "tags": {"environment": "dev"}, "dry_run": "no"}), "dry_run"),
        (json!({"action": "stop", "tags": {"environment": "dev"}, "regions": ["eu-west-1.attacker.example"]}), "not a region"),
        (json!({"action": "stop", "tags": {"environment": "dev"}, "force": true}), "force"),
        (json!({"action": "stop", "tags": {"environment": "dev"}, "resources": []}), "resources"),
        (json!({"action": "stop", "tags": {"environment": "dev"}, "resources": ["queues"]}), "resources"),
        (json!({"action": "stop", "tags": {"environment": "dev"}, "clusters": [""]}), "clusters"),
        (json!({"action": "stop", "tags": {"environment": "dev"}, "clusters": "apps"}), "clusters"),
    ] {
        let e = Params::parse(&params).unwrap_err();
        assert!(e.contains(says), "{params}: {e}");
    }
    assert!(Params::parse(&json!({"action": "start", "tags": {"environment": "dev"}})).unwrap().dry_run);
}

#[tokio::test]
async fn another_account_is_stopped_and_started_through_its_role_and_the_own_is_not_touched() {
    let own = ec2();
    let dev = ec2();
    let role = "arn:aws:iam::222222222222:role/tugboat-resources";
    let accounts = crate::ports::memory::MemoryAccounts::default();
    accounts.add(role, dev.clone());
    let mut h = workflow(&own);
    h.w.0.accounts = Arc::new(accounts);
    h.w.0.settings = Some(
        toml::from_str(&format!(
            "table = \"findings\"\n[[accounts]]\nname = \"dev\"\nrole_arn = \"{role}\"\n[[accounts]]\nname = \"gone\"\nrole_arn = \"arn:aws:iam::333333333333:role/x\""
        ))
        .unwrap(),
    );
    let (end, _) =
        run(&h, json!({"action": "stop", "tags": {"environment": "dev"}, "dry_run": false, "account": "dev"}), false).await;
    let Next::Complete(out) = end else { panic!("{end:?}") };
    assert_eq!((out["account"].as_str(), out["instances"].as_u64(), out["services"].as_u64()), (Some("dev"), Some(2), Some(2)), "{out}");
    assert_eq!(states(&dev)["i-dev-1"], ("stopped".into(), true));
    assert_eq!(services(&dev)["web"].0, 0);
    assert!(own.calls().is_empty(), "the own account untouched: {:?}", own.calls());
    let (end, _) =
        run(&h, json!({"action": "start", "tags": {"environment": "dev"}, "dry_run": false, "account": "dev"}), false).await;
    assert!(matches!(end, Next::Complete(_)), "{end:?}");
    assert_eq!(services(&dev)["web"], (3, None), "the count from the stop's record");
    assert_eq!(states(&dev)["i-dev-1"], ("running".into(), false));

    // A role that cannot be assumed fails the run saying so; an unknown account is refused.
    let (end, _) = run(&h, json!({"action": "stop", "tags": {"environment": "dev"}, "account": "gone"}), false).await;
    let Next::Fail(reason) = end else { panic!("{end:?}") };
    assert!(reason.contains("AssumeRole"), "{reason}");
    let e = h.w.start(&json!({}), &json!({"action": "stop", "tags": {"environment": "dev"}, "account": "prod"})).unwrap_err();
    assert!(e.contains("\"prod\"") && e.contains("dev, gone"), "{e}");
    h.w.0.settings = None;
    let e = h.w.start(&json!({}), &json!({"action": "stop", "tags": {"environment": "dev"}, "account": "dev"})).unwrap_err();
    assert!(e.contains("[resources]"), "{e}");
}
