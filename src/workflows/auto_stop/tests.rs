//! `auto_stop` against the in-memory EC2: each instance driven step by step, the report
//! recorded instead of published.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::contract::{Action as Planned, Call, Workflow};
use crate::ports::memory::{MemoryInventory, RegionInventory};

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

fn ec2() -> MemoryInventory {
    let ec2 = MemoryInventory::default();
    ec2.set(R, RegionInventory {
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

fn workflow(ec2: &MemoryInventory) -> Typed<AutoStop> {
    Typed(AutoStop { regions: vec![R.into()], power: Arc::new(ec2.clone()) })
}

/// Runs an instance to its end; `perform_twice` performs each handler step twice, as a
/// resume after a crash before its outcome was journaled does.
async fn run(w: &Typed<AutoStop>, params: Value, perform_twice: bool) -> (Next, Vec<Planned>) {
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
                let ctx = StepContext { workflow_id: "stop-dev:e", step: &action.name, attempt: 1, generation: 0, continued: 0, event: &Value::Null };
                if perform_twice {
                    w.perform(ctx, &action.step).await.unwrap();
                }
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
    ] {
        let e = Params::parse(&params).unwrap_err();
        assert!(e.contains(says), "{params}: {e}");
    }
    assert!(Params::parse(&json!({"action": "start", "tags": {"environment": "dev"}})).unwrap().dry_run);
}
