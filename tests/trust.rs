//! The trust boundaries (docs/security.md), each checked by performing the attack against the
//! service in process (built by `App::build`, in-memory queue and ports): what someone who can
//! write to the bus or the queue sends, and what tugboat must refuse or must still do.

mod support;

use std::sync::Arc;

use serde_json::{Value, json};

use support::app::{MemoryApp, spawn_memory_app, until};
use tugboat::ports::memory::MemoryEcs;

use support::eventbridge as fixture;

/// An event from a fixture, its time `second` seconds into the current minute.
fn at(name: &str, second: u8) -> String {
    let now = time::OffsetDateTime::now_utc();
    let t = now
        .replace_second(second)
        .unwrap()
        .replace_nanosecond(0)
        .unwrap();
    let mut e: Value = serde_json::from_str(&fixture(name)).unwrap();
    e["time"] = json!(
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    );
    e.to_string()
}

const SPOT: &str = r#"unmatched = "acknowledge"

[aws]
region = "us-east-1"

[[queues]]
name = "work"
dlq = "work-dlq"
receive_wait = "100ms"

[[routes]]
name = "rebalance"
pattern = { source = ["aws.ec2"], detail-type = ["EC2 Instance Rebalance Recommendation"] }
workflow = "spot_drain"
params = { mode = "notify" }

[[routes]]
name = "warning"
pattern = { source = ["aws.ec2"], detail-type = ["EC2 Spot Instance Interruption Warning"] }
workflow = "spot_drain"

[spot]
clusters = ["prod"]
drain_wait = false

[admin]
listen = "127.0.0.1:0"

[shutdown]
deadline = "2s"
"#;

/// The attack: a `notify`-mode rebalance recommendation sent in the same minute as the spot
/// warning. With the drain's identity instance + minute alone, the warning was a duplicate of
/// the finished notify-only run and nothing was drained.
#[actix_rt::test]
async fn a_rebalance_in_the_same_minute_does_not_swallow_the_warnings_drain() {
    let ecs = Arc::new(MemoryEcs::default());
    ecs.add_container_instance("prod", "i-0b662ef9931388ba0", &["10.0.0.5"]);
    let h: MemoryApp = spawn_memory_app(SPOT, |deps| deps.ports.ecs = ecs.clone()).await;
    h.send(&at("ec2-instance-rebalance-recommendation.nth.json", 1))
        .await;
    until("the rebalance is settled", 10, || h.queue.deleted() == 1).await;
    assert_eq!(
        ecs.container_instance_states()[0].status,
        "ACTIVE",
        "notify mode drains nothing"
    );
    h.send(&at("ec2-spot-instance-interruption-warning.nth.json", 2))
        .await;
    until("the warning is settled", 10, || h.queue.deleted() == 2).await;
    assert_eq!(
        ecs.container_instance_states()[0].status,
        "DRAINING",
        "the warning drains the instance"
    );
    h.app.stop().await;
}
