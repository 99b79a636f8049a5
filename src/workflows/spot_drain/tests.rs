//! `spot_drain` on in-memory ports: notices read from the repository's fixtures, then whole
//! drains driven step by step with the engine's publishes recorded.

use serde_json::{Value, json};

use super::*;
use crate::contract::{Action, Call, Workflow};
use crate::ports::Ports;
use crate::ports::clock::SystemClock;
use crate::ports::memory::{
    MemoryEcs, MemoryHttp, MemoryLifecycle, MemoryNotifier, MemoryQueue, MemoryQueues, MemoryTargets,
};

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/events/eventbridge/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn now_ms() -> u64 {
    SystemClock.now_ms()
}

fn at(mut event: Value, ms: u64) -> Value {
    event["time"] = json!(notice::rfc3339(ms));
    event
}

struct Rig {
    notifier: Arc<MemoryNotifier>,
    queue: Arc<MemoryQueue>,
    ecs: Arc<MemoryEcs>,
    targets: Arc<MemoryTargets>,
    http: MemoryHttp,
    lifecycle: MemoryLifecycle,
}

async fn workflow(spot: &str) -> (Typed<SpotDrain>, Rig) {
    let queues = MemoryQueues::default();
    let rig = Rig {
        notifier: Arc::new(MemoryNotifier::default()),
        queue: queues.add(Arc::new(MemoryQueue::new("agents"))),
        ecs: Arc::new(MemoryEcs::default()),
        targets: Arc::new(MemoryTargets::default()),
        http: MemoryHttp::default(),
        lifecycle: MemoryLifecycle::default(),
    };
    let ports = Ports {
        notifier: rig.notifier.clone(),
        queues: Arc::new(queues),
        ecs: rig.ecs.clone(),
        targets: rig.targets.clone(),
        http: Arc::new(rig.http.clone()),
        lifecycle: Arc::new(rig.lifecycle.clone()),
        ..Ports::memory()
    };
    let table: toml::Table = toml::from_str(spot).unwrap();
    let settings = config::parse(&table["spot"]).unwrap();
    let destinations: BTreeMap<String, DestinationSettings> =
        toml::from_str("pager = { url = \"http://127.0.0.1:9/p\" }\nlog = { url = \"http://127.0.0.1:9/l\" }").unwrap();
    let handlers = Handlers::build(&settings.handlers, &destinations, &BTreeMap::new(), &ports).await.unwrap();
    let w = Typed(SpotDrain {
        settings,
        handlers,
        ecs: ports.ecs.clone(),
        targets: ports.targets.clone(),
        clock: ports.clock.clone(),
        lifecycle: ports.lifecycle.clone(),
    });
    (w, rig)
}

const SPOT: &str = "[spot]\nclusters = [\"prod\"]\ntarget_groups = [\"web\"]\nmargin = \"5s\"\n\
    [[spot.handlers]]\nname = \"late\"\ntype = \"http\"\ndestination = \"log\"\npriority = 2\n\
    [[spot.handlers]]\nname = \"first\"\ntype = \"http\"\ndestination = \"pager\"\npriority = 1\n\
    body = { text = \"{instance} in {deadline}\" }\n";

/// Runs an instance to its end; returns the end, the actions run and the report published.
async fn run(w: &Typed<SpotDrain>, event: &Value, params: Value) -> (Next, Vec<String>, Option<Value>) {
    let t = w.start(event, &params).unwrap();
    let (mut state, mut next) = (t.state, t.next);
    let mut steps = Vec::new();
    let mut report = None;
    loop {
        let action: Action = match next {
            Next::Run(a) => a,
            other => return (other, steps, report),
        };
        steps.push(action.name.clone());
        let outcome = match &action.call {
            Call::Handler => {
                let ctx = StepContext { workflow_id: "spot", step: &action.name, attempt: 1, generation: 0, continued: 0, event: &Value::Null };
                w.perform(ctx, &action.step).await
            }
            Call::Publish { message, attributes, .. } => {
                assert_eq!(attributes["type"], "spot-drain");
                report = Some(message.clone());
                Ok(json!({"message_id": "m"}))
            }
            other => panic!("{other:?}"),
        };
        let t = w.advance(state, &action, outcome);
        state = t.state;
        next = t.next;
    }
}

#[test]
fn every_trigger_in_the_fixtures_is_read_and_others_are_refused_with_the_reason() {
    let itn = Notice::read(&fixture("ec2-spot-instance-interruption-warning.nth.json")).unwrap();
    assert_eq!(itn.kind, notice::Kind::SpotInterruption);
    assert_eq!(itn.instances, ["i-0b662ef9931388ba0"]);
    assert_eq!(itn.ends_ms, Some(itn.noticed_ms + 120_000));
    assert_eq!(itn.zone.as_deref(), Some("us-east-1b"));
    let docs = fixture("ec2-spot-instance-interruption-warning.awsdocs.json");
    // The documentation's sample keeps the placeholder "yyyy-mm-ddThh:mm:ssZ" as its time.
    assert!(Notice::read(&docs).unwrap_err().contains("not an RFC 3339 time"));
    let rebalance = Notice::read(&fixture("ec2-instance-rebalance-recommendation.nth.json")).unwrap();
    assert_eq!(rebalance.kind, notice::Kind::RebalanceRecommendation);
    assert_eq!(rebalance.ends_ms, None);
    for name in [
        "autoscaling-ec2-instance-terminate-lifecycle-action.nth.json",
        "autoscaling-ec2-instance-terminate-lifecycle-action.lambda-go.json",
        "autoscaling-ec2-instance-terminate-lifecycle-action.lambda-rust.json",
    ] {
        let n = Notice::read(&fixture(name)).unwrap();
        let l = n.lifecycle.unwrap();
        assert_eq!(n.instances, std::slice::from_ref(&l.instance), "{name}");
        assert!(!l.token.is_empty() && !l.hook.is_empty() && !l.group.is_empty());
    }
    let health = Notice::read(&fixture("aws-health-event-ec2-scheduled-maintenance.nth.json")).unwrap();
    assert_eq!(health.kind, notice::Kind::ScheduledMaintenance);
    assert_eq!(health.instances, ["i-12345678"]);
    // "Sat, 05 Jun 2016 15:10:09 GMT"
    assert_eq!(health.ends_ms, Some(1_465_139_409_000));
    // Fargate Spot: the documented shape (the sample in the fixtures is cut short with "...").
    let task = json!({"source": "aws.ecs", "detail-type": "ECS Task State Change", "time": "2026-11-29T10:00:00Z",
        "detail": {"clusterArn": "arn:aws:ecs:us-east-1:1:cluster/default", "stopCode": "SpotInterruption",
            "taskArn": "arn:aws:ecs:us-east-1:1:task/default/abc",
            "attachments": [{"type": "eni", "details": [{"name": "privateIPv4Address", "value": "10.0.0.7"}]}]}});
    let t = Notice::read(&task).unwrap();
    assert_eq!(t.task.unwrap().ip.as_deref(), Some("10.0.0.7"));

    for (event, why) in [
        (json!({"source": "aws.ec2", "detail-type": "EC2 Spot Instance Interruption Warning", "time": "2026-11-29T10:00:00Z", "detail": {}}), "detail.instance-id"),
        (json!({"source": "aws.ec2", "detail-type": "EC2 Spot Instance Interruption Warning", "detail": {"instance-id": "i-1"}}), "no time"),
        (json!({"source": "aws.ec2", "detail-type": "EC2 Spot Instance Interruption Warning", "time": 5, "detail": {"instance-id": "i-1"}}), "no time"),
        (json!({"source": "aws.ecs", "detail-type": "ECS Task State Change", "time": "2026-11-29T10:00:00Z", "detail": {"stopCode": "UserInitiated"}}), "no spot interruption"),
        (json!({"source": "aws.health", "detail-type": "AWS Health Event", "time": "2026-11-29T10:00:00Z", "detail": {"service": "RDS", "eventTypeCategory": "scheduledChange"}}), "only EC2"),
        (json!({"source": "aws.s3", "detail-type": "Object Created", "time": "2026-11-29T10:00:00Z"}), "not an interruption notice"),
        (json!("text"), "no time"),
    ] {
        let e = Notice::read(&event).unwrap_err();
        assert!(e.contains(why), "{event}: {e}");
    }
}

#[tokio::test]
async fn the_same_interruption_from_eventbridge_and_from_the_agent_is_one_identity() {
    let noticed = 1_764_410_400_000; // 2025-11-29T10:00:00Z
    let bridge = at(fixture("ec2-spot-instance-interruption-warning.nth.json"), noticed + 4_000);
    let agent = json!({"source": "tugboat.agent", "detail-type": "Interruption Notice",
        "time": notice::rfc3339(noticed + 9_000),
        "detail": {"instance-id": "i-0b662ef9931388ba0", "kind": "spot-interruption",
            "deadline": notice::rfc3339(noticed + 120_000), "instance-type": "m5.large"}});
    let (w, _) = workflow(SPOT).await;
    let a = Flow::identity(&w.0, &bridge, &json!({})).unwrap();
    assert_eq!(Some(a.clone()), Flow::identity(&w.0, &agent, &json!({})));
    assert_eq!(a, "i-0b662ef9931388ba0:spot-interruption:2025-11-29T10:00");
    // Another instance, or the next notice of the same one, is another drain.
    let other = at(fixture("ec2-spot-instance-interruption-warning.nth.json"), noticed + 3_600_000);
    assert_ne!(Some(a), Flow::identity(&w.0, &other, &json!({})));
}

#[tokio::test]
async fn a_warning_drains_the_container_instance_deregisters_its_targets_and_tells_the_handlers_in_priority_order() {
    let (w, rig) = workflow(SPOT).await;
    rig.ecs.add_container_instance("prod", "i-0b662ef9931388ba0", &["10.0.0.5", "10.0.0.6"]);
    rig.ecs.add_container_instance("prod", "i-other", &["10.0.0.9"]);
    let tg = rig.targets.resolve("web").await.unwrap();
    for ip in ["10.0.0.5", "10.0.0.6", "10.0.0.9"] {
        rig.targets.register(&tg, ip, 8080).await.unwrap();
    }
    let event = at(fixture("ec2-spot-instance-interruption-warning.nth.json"), now_ms());
    let (end, steps, report) = run(&w, &event, json!({})).await;
    assert!(matches!(end, Next::Complete(_)), "{end:?}");
    assert_eq!(steps, ["drain", "deregister", "handlers#1", "handlers#2", "wait-drained", "report"]);
    let states: Vec<String> = rig.ecs.container_instance_states().into_iter().map(|c| c.status).collect();
    assert_eq!(states, ["DRAINING", "ACTIVE"]);
    let left: Vec<String> = rig.targets.registered().into_iter().map(|(_, ip, _)| ip).collect();
    assert_eq!(left, ["10.0.0.9"]);
    let sent = rig.http.sent();
    assert_eq!(sent[0].0, "pager");
    assert!(sent[0].1["text"].as_str().unwrap().starts_with("i-0b662ef9931388ba0 in 20"), "{sent:?}");
    assert_eq!(sent[1].0, "log");
    assert_eq!(sent[1].1["kind"], "spot-interruption");
    let report = report.unwrap();
    let outcomes: Vec<(&str, &str)> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        [("drain", "ok"), ("deregister", "ok"), ("first", "ok"), ("late", "ok"), ("wait-drained", "ok")]
    );
    // The drained instance's tasks left with the drain (a service's tasks do): one poll.
    assert_eq!(report["steps"][4]["detail"]["polls"], 1, "{report}");
    let left_ms = report["left_ms"].as_i64().unwrap();
    assert!(left_ms > 100_000 && left_ms <= 115_000, "{left_ms}");
}

#[tokio::test]
async fn a_notice_past_its_deadline_skips_every_step_and_still_reports() {
    let (w, rig) = workflow(SPOT).await;
    rig.ecs.add_container_instance("prod", "i-0b662ef9931388ba0", &[]);
    let event = at(fixture("ec2-spot-instance-interruption-warning.nth.json"), now_ms() - 600_000);
    let (end, _, report) = run(&w, &event, json!({})).await;
    assert!(matches!(end, Next::Complete(_)));
    assert!(rig.ecs.calls().is_empty(), "{:?}", rig.ecs.calls());
    assert!(rig.http.sent().is_empty());
    let report = report.unwrap();
    for s in report["steps"].as_array().unwrap() {
        assert_eq!(s["outcome"], "skipped", "{s}");
        assert!(s["reason"].as_str().unwrap().contains("deadline passed"), "{s}");
    }
}

#[tokio::test]
async fn a_handler_that_keeps_failing_is_retried_then_reported_and_the_others_still_run() {
    let (w, rig) = workflow(
        "[spot]\nmargin = \"0s\"\n[[spot.handlers]]\nname = \"flaky\"\ntype = \"http\"\ndestination = \"pager\"\ntimeout = \"600ms\"\n\
         [[spot.handlers]]\nname = \"refused\"\ntype = \"http\"\ndestination = \"log\"\npriority = 1\n",
   ).await;
    rig.http.answer(503, None, "busy");
    rig.http.answer(200, None, "");
    rig.http.answer(403, None, "no");
    let event = at(fixture("ec2-instance-rebalance-recommendation.nth.json"), now_ms());
    let (_, steps, report) = run(&w, &event, json!({"mode": "notify"})).await;
    assert_eq!(steps, ["handlers#0", "handlers#1", "report"], "notify mode does not drain");
    let steps = report.unwrap()["steps"].clone();
    assert_eq!(steps[0]["outcome"], "ok");
    assert_eq!(steps[0]["detail"]["attempts"], 2);
    assert_eq!(steps[1]["outcome"], "failed");
    assert!(steps[1]["reason"].as_str().unwrap().contains("HTTP 403"));
}

#[tokio::test]
async fn a_handler_slower_than_its_timeout_is_cut_off() {
    let (w, rig) = workflow(
        "[spot]\nmargin = \"0s\"\n[[spot.handlers]]\nname = \"down\"\ntype = \"http\"\ndestination = \"pager\"\ntimeout = \"300ms\"\n",
   ).await;
    for _ in 0..20 {
        rig.http.fail("connection refused");
    }
    let event = at(fixture("ec2-instance-rebalance-recommendation.nth.json"), now_ms());
    let started = now_ms();
    let (_, _, report) = run(&w, &event, json!({"mode": "notify"})).await;
    let took = now_ms() - started;
    let step = report.unwrap()["steps"][0].clone();
    assert_eq!(step["outcome"], "failed");
    let reason = step["reason"].as_str().unwrap();
    assert!(reason.starts_with("cut off after 300 ms") && reason.contains("connection refused"), "{reason}");
    assert!(took < 3_000, "{took} ms");
}

#[tokio::test]
async fn a_lifecycle_action_is_heartbeated_before_the_drain_and_completed_after_the_handlers() {
    let (w, rig) = workflow(SPOT).await;
    let event = at(fixture("autoscaling-ec2-instance-terminate-lifecycle-action.nth.json"), now_ms());
    rig.ecs.add_container_instance("prod", "i-0633ac2b0d9769723", &["10.0.0.5"]);
    let (end, steps, report) = run(&w, &event, json!({})).await;
    assert!(matches!(end, Next::Complete(_)));
    assert_eq!(
        steps,
        ["heartbeat", "drain", "deregister", "handlers#1", "handlers#2", "wait-drained", "complete-lifecycle", "report"]
    );
    let token = "0befcbdb-6ecd-498a-9ff7-ae9b54447cd6";
    assert_eq!(rig.lifecycle.calls(), [format!("heartbeat {token}"), format!("complete {token}")]);
    let report = report.unwrap();
    assert_eq!(report["lifecycle_action"]["token"], token);
    assert_eq!(report["steps"][6]["name"], "complete-lifecycle", "{report}");
    assert_eq!(report["steps"][6]["outcome"], "ok", "{report}");
    // The window (2 min) less the margin (5 s) is the deadline of a notice without one.
    let left = report["left_ms"].as_i64().unwrap();
    assert!(left > 100_000 && left <= 115_000, "{left}");

    // Past its deadline the drain is skipped, but the hook is still completed: it waits for
    // the completion either way.
    let (w, rig) = workflow(SPOT).await;
    let late = at(fixture("autoscaling-ec2-instance-terminate-lifecycle-action.nth.json"), now_ms() - 600_000);
    let (_, _, report) = run(&w, &late, json!({})).await;
    let report = report.unwrap();
    assert_eq!(report["steps"][1]["outcome"], "skipped");
    assert_eq!(rig.lifecycle.calls().last().unwrap(), &format!("complete {token}"));
}

#[tokio::test]
async fn sns_and_sqs_handlers_carry_the_notice_with_filterable_attributes() {
    let (w, rig) = workflow(
        "[spot]\n[[spot.handlers]]\nname = \"topic\"\ntype = \"sns\"\ntopic = \"arn:aws:sns:us-east-1:1:ops\"\n\
         [[spot.handlers]]\nname = \"agent\"\ntype = \"sqs\"\nqueue = \"agents\"\nbody = { stop = \"{instance}\", by = \"{deadline}\" }\n",
    )
    .await;
    let event = at(fixture("ec2-spot-instance-interruption-warning.nth.json"), now_ms());
    let (_, _, report) = run(&w, &event, json!({"mode": "notify"})).await;
    let steps = report.unwrap()["steps"].clone();
    assert_eq!(steps[0]["outcome"], "ok", "{steps}");
    assert_eq!(steps[1]["outcome"], "ok", "{steps}");
    let published = rig.notifier.published_to();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].0, "arn:aws:sns:us-east-1:1:ops");
    assert_eq!(published[0].2["instance"], "i-0b662ef9931388ba0");
    assert_eq!(published[0].3["type"], "spot-interruption");
    assert_eq!(published[0].3["instance"], "i-0b662ef9931388ba0");
    let sent = rig.queue.messages();
    assert_eq!(sent.len(), 1);
    let body: Value = serde_json::from_str(&sent[0].body).unwrap();
    assert_eq!(body["stop"], "i-0b662ef9931388ba0");
    assert_eq!(sent[0].attributes["type"], "spot-interruption");
    // A queue that does not exist stops the service from starting, naming the handler.
    let settings = config::parse(&toml::from_str::<toml::Table>("[spot]\n[[spot.handlers]]\nname = \"x\"\ntype = \"sqs\"\nqueue = \"nowhere\"\n").unwrap()["spot"]).unwrap();
    let e = Handlers::build(&settings.handlers, &BTreeMap::new(), &BTreeMap::new(), &Ports::memory()).await.unwrap_err();
    assert!(e.contains("spot.handlers.0.queue") && e.contains("nowhere"), "{e}");
}

#[test]
fn params_and_the_section_are_checked() {
    assert!(Mode::parse(&json!({"mode": "sleep"})).unwrap_err().contains("params.mode"));
    assert!(Mode::parse(&json!({"other": 1})).is_err());
    assert_eq!(Mode::parse(&json!({})).unwrap(), Mode::Drain);
    let settings = config::parse(&toml::from_str::<toml::Table>("[spot]\n[[spot.handlers]]\nname = \"x\"\ntype = \"http\"\ndestination = \"nowhere\"\n").unwrap()["spot"]).unwrap();
    let e = futures::executor::block_on(Handlers::build(&settings.handlers, &BTreeMap::new(), &BTreeMap::new(), &Ports::memory()))
        .unwrap_err();
    assert!(e.contains("spot.handlers.0.destination"), "{e}");
}

#[test]
fn history_counts_pools_and_hours_and_recommends_where_one_pool_dominates() {
    let mk = |ty: &str, zone: &str, ms: u64, kind: notice::Kind| history::Interruption {
        notice: Notice {
            kind,
            source: "aws.ec2".into(),
            instances: vec!["i-1".into()],
            task: None,
            noticed_ms: ms,
            ends_ms: None,
            lifecycle: None,
            action: None,
            zone: Some(zone.into()),
            instance_type: Some(ty.into()),
        },
    };
    let h = 3_600_000;
    let all = vec![
        mk("m5.large", "us-east-1a", 10 * h, notice::Kind::SpotInterruption),
        mk("m5.large", "us-east-1a", 34 * h, notice::Kind::SpotInterruption),
        mk("m5.large", "us-east-1a", 35 * h, notice::Kind::SpotInterruption),
        mk("c5.xlarge", "us-east-1b", 36 * h, notice::Kind::SpotInterruption),
        mk("c5.xlarge", "us-east-1b", 37 * h, notice::Kind::RebalanceRecommendation),
        mk("r5.large", "us-east-1c", h, notice::Kind::SpotInterruption),
    ];
    let got = history::summarize(&all, 2 * h);
    assert_eq!(got.interruptions, 4);
    assert_eq!(got.other_notices, 1);
    assert_eq!((got.pools[0].instance_type.as_str(), got.pools[0].interruptions), ("m5.large", 3));
    assert_eq!(got.by_hour[10], 2);
    assert_eq!(got.by_hour[11], 1);
    assert_eq!(
        got.recommendation.as_deref(),
        Some("m5.large in us-east-1a: 3 of 4 interruptions; diversify instance types or zones")
    );
    assert!(got.text().contains("m5.large             us-east-1a        3"), "{}", got.text());
    // Spread over pools: no recommendation.
    let spread = history::summarize(&all[2..], 0);
    assert_eq!(spread.recommendation, None);
}

/// `[spot]` with a short poll, for the waits below.
const SPOT_POLLING: &str = "[spot]\nclusters = [\"prod\"]\nmargin = \"5s\"\ndrain_poll = \"100ms\"\n";

#[tokio::test]
async fn a_lifecycle_action_is_completed_only_once_the_drained_tasks_have_left() {
    let (w, rig) = workflow(SPOT_POLLING).await;
    let instance = "i-0633ac2b0d9769723";
    rig.ecs.add_container_instance("prod", instance, &["10.0.0.5", "10.0.0.6"]);
    rig.ecs.tasks_stay(instance, 2);
    let event = at(fixture("autoscaling-ec2-instance-terminate-lifecycle-action.nth.json"), now_ms());
    let ecs = rig.ecs.clone();
    let lifecycle = rig.lifecycle.clone();
    let leave = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        // Not completed while the tasks are still there.
        let completed_before = lifecycle.calls().iter().any(|c| c.starts_with("complete"));
        ecs.tasks_leave(instance);
        completed_before
    });
    let (end, steps, report) = run(&w, &event, json!({})).await;
    assert!(!leave.await.unwrap(), "the lifecycle action was completed with tasks still running");
    assert!(matches!(end, Next::Complete(_)));
    assert_eq!(steps, ["heartbeat", "drain", "deregister", "wait-drained", "complete-lifecycle", "report"]);
    let report = report.unwrap();
    let wait = &report["steps"][3];
    assert_eq!(wait["name"], "wait-drained", "{report}");
    assert_eq!(wait["outcome"], "ok", "{report}");
    assert_eq!(wait["detail"]["tasks_left"], 0, "{report}");
    assert!(wait["detail"]["polls"].as_u64().unwrap() >= 3, "{report}");
    assert_eq!(report["steps"][4]["outcome"], "ok", "{report}");
}

#[tokio::test]
async fn tasks_that_never_leave_end_the_wait_at_the_deadline_and_the_drain_goes_on() {
    let (w, rig) = workflow(SPOT_POLLING).await;
    let instance = "i-0633ac2b0d9769723";
    rig.ecs.add_container_instance("prod", instance, &["10.0.0.5"]);
    rig.ecs.tasks_stay(instance, 3);
    // Noticed so long ago that the deadline (2 min window less 5 s) is about a second away.
    let event = at(
        fixture("autoscaling-ec2-instance-terminate-lifecycle-action.nth.json"),
        now_ms() - 114_000,
    );
    let (end, steps, report) = run(&w, &event, json!({})).await;
    assert!(matches!(end, Next::Complete(_)));
    assert_eq!(steps, ["heartbeat", "drain", "deregister", "wait-drained", "complete-lifecycle", "report"]);
    let report = report.unwrap();
    let wait = &report["steps"][3];
    assert_eq!(wait["outcome"], "failed", "{report}");
    let reason = wait["reason"].as_str().unwrap();
    assert!(reason.contains("3 task(s) still running or pending") && reason.contains("at the deadline"), "{reason}");
    // The hook is completed all the same: the instance goes at the deadline either way.
    assert_eq!(report["steps"][4]["name"], "complete-lifecycle", "{report}");
    assert_eq!(report["steps"][4]["outcome"], "ok", "{report}");
}

#[tokio::test]
async fn drain_wait_false_or_notify_mode_does_not_wait() {
    let (w, rig) = workflow(&format!("{SPOT_POLLING}drain_wait = false\n")).await;
    rig.ecs.add_container_instance("prod", "i-0b662ef9931388ba0", &["10.0.0.5"]);
    rig.ecs.tasks_stay("i-0b662ef9931388ba0", 1);
    let event = at(fixture("ec2-spot-instance-interruption-warning.nth.json"), now_ms());
    let (_, steps, _) = run(&w, &event, json!({})).await;
    assert_eq!(steps, ["drain", "deregister", "report"]);
    let (w, _) = workflow(SPOT_POLLING).await;
    let (_, steps, _) = run(&w, &event, json!({"mode": "notify"})).await;
    assert_eq!(steps, ["report"]);
}
