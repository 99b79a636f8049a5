//! The routes of the four seed flows, written as their users would deploy them as EventBridge
//! rules, match the right samples in the fixtures (tests/fixtures) and none of the others.

use std::path::Path;

use serde_json::{Value, json};
use tugboat::events::{Decoded, decode};
use tugboat::routing::Pattern;

fn seed_routes() -> Vec<(&'static str, Value)> {
    vec![
        (
            "ecs_start",
            json!({"source": ["custom.app"], "detail-type": ["Start ECS Task"]}),
        ),
        (
            "ecs_task_events",
            json!({"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"]}),
        ),
        (
            "cur_ingest",
            json!({"source": ["aws.s3"], "detail-type": ["Object Created"],
            "detail": {"object": {"key": [{"suffix": "-Manifest.json"}, {"suffix": ".csv.gz"}, {"suffix": ".parquet"}]}}}),
        ),
        (
            "spot_drain",
            json!({"$or": [
                {"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning", "EC2 Instance Rebalance Recommendation"]},
                {"source": ["aws.autoscaling"], "detail-type": ["EC2 Instance-terminate Lifecycle Action"]},
                {"source": ["aws.health"], "detail": {"eventTypeCategory": ["scheduledChange"], "service": ["EC2"]}}
            ]}),
        ),
        (
            "forward_mqtt",
            json!({"$or": [
                {"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"]},
                {"source": ["aws.ec2spotfleet"]}
            ]}),
        ),
        (
            "forward_http_oom",
            json!({"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"],
            "detail": {"lastStatus": ["STOPPED"], "stoppedReason": [{"prefix": "OutOfMemory"}]}}),
        ),
    ]
}

fn matching(body: &str) -> Vec<&'static str> {
    let events = match decode(body, "m").unwrap() {
        Decoded::Events(e) => e,
        Decoded::Ignore(_) => return vec![],
    };
    let routes = seed_routes();
    let mut out = Vec::new();
    for e in &events {
        for (name, p) in &routes {
            if Pattern::compile(p).unwrap().matches(&e.body) && !out.contains(name) {
                out.push(*name);
            }
        }
    }
    out
}

#[test]
fn seed_flows_match_the_right_samples() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events");
    let expectations: &[(&str, &[&str])] = &[
        (
            "eventbridge/ec2-spot-instance-interruption-warning.awsdocs.json",
            &["spot_drain"],
        ),
        (
            "eventbridge/ec2-spot-instance-interruption-warning.nth.json",
            &["spot_drain"],
        ),
        (
            "eventbridge/ec2-instance-rebalance-recommendation.awsdocs.json",
            &["spot_drain"],
        ),
        (
            "eventbridge/autoscaling-ec2-instance-terminate-lifecycle-action.awsdocs.json",
            &["spot_drain"],
        ),
        (
            "eventbridge/aws-health-event-ec2-scheduled-maintenance.nth.json",
            &["spot_drain"],
        ),
        (
            "eventbridge/ec2-instance-state-change-pending.awsdocs.json",
            &["forward_mqtt"],
        ),
        (
            "eventbridge/ec2-instance-state-change-terminated.awsdocs-eventbridge.json",
            &["forward_mqtt"],
        ),
        (
            "eventbridge/ec2-spot-fleet-state-change.awsdocs.json",
            &["forward_mqtt"],
        ),
        (
            "eventbridge/ec2-spot-fleet-error.awsdocs.json",
            &["forward_mqtt"],
        ),
        (
            "eventbridge/ecs-task-state-change-running-fargate.awsdocs.json",
            &["ecs_task_events"],
        ),
        ("eventbridge/s3-object-created.awsdocs.json", &[]),
        ("eventbridge/s3-object-deleted.awsdocs.json", &[]),
        (
            "eventbridge/ecs-container-instance-state-change.awsdocs.json",
            &[],
        ),
        (
            "eventbridge/aws-health-event-ec2-issue.aws-health-tools.json",
            &[],
        ),
        ("sqs/s3-notification-test-event.awsdocs.json", &[]),
    ];
    for (file, expected) in expectations {
        let body = std::fs::read_to_string(dir.join(file)).unwrap();
        assert_eq!(matching(&body), *expected, "{file}");
    }
    assert_eq!(
        matching(
            r#"{"source":"custom.app","detail-type":"Start ECS Task","detail":{"service":"auth"}}"#
        ),
        ["ecs_start"]
    );
    // A CUR report landing in S3, delivered as a notification or through EventBridge.
    let cur = json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "billing"}, "object": {"key": "cur/report/20240101-20240201/report-Manifest.json", "sequencer": "1"}}}]});
    assert_eq!(matching(&cur.to_string()), ["cur_ingest"]);
    // An out-of-memory stop goes to the HTTP forward as well as to the ECS task events.
    let oom = json!({"id": "x", "source": "aws.ecs", "detail-type": "ECS Task State Change",
        "detail": {"lastStatus": "STOPPED", "stoppedReason": "OutOfMemoryError: Container killed due to memory usage"}});
    assert_eq!(
        matching(&oom.to_string()),
        ["ecs_task_events", "forward_http_oom"]
    );
}
