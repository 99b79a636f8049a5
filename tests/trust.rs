//! The trust boundaries (docs/security.md), each checked by performing the attack against the
//! service in process (built by `App::build`, in-memory queue and ports): what someone who can
//! write to the bus or the queue sends, and what tugboat must refuse or must still do.

mod support;

use std::sync::Arc;

use serde_json::{Value, json};

use support::app::{MemoryApp, spawn_memory_app, until};
use tugboat::ports::memory::MemoryEcs;

use support::eventbridge as fixture;

/// The service's configuration around `routes` (and the sections they need): the in-memory
/// queue `work` and its DLQ.
fn config(routes: &str) -> String {
    format!(
        "unmatched = \"acknowledge\"\n[aws]\nregion = \"us-east-1\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[shutdown]\ndeadline = \"2s\"\n\
         [[queues]]\nname = \"work\"\ndlq = \"work-dlq\"\nreceive_wait = \"100ms\"\n{routes}"
    )
}

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

const SPOT: &str = r#"
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
"#;

/// The attack: a `notify`-mode rebalance recommendation sent in the same minute as the spot
/// warning. With the drain's identity instance + minute alone, the warning was a duplicate of
/// the finished notify-only run and nothing was drained.
#[actix_rt::test]
async fn a_rebalance_in_the_same_minute_does_not_swallow_the_warnings_drain() {
    let ecs = Arc::new(MemoryEcs::default());
    ecs.add_container_instance("prod", "i-0b662ef9931388ba0", &["10.0.0.5"]);
    let h: MemoryApp = spawn_memory_app(&config(SPOT), |deps| deps.ports.ecs = ecs.clone()).await;
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

const FORGERIES: &str = r#"
[[routes]]
name = "start"
pattern = { source = ["custom.app"] }
workflow = "ecs_start"

[[routes]]
name = "drain"
pattern = { source = ["tugboat.agent"] }
workflow = "spot_drain"

[spot]
clusters = ["prod"]
drain_wait = false
"#;

async fn send_with(h: &MemoryApp, body: &str, attributes: &[(&str, String)]) {
    use tugboat::ports::{OutgoingMessage, Queue};
    let m = OutgoingMessage {
        body: body.into(),
        attributes: attributes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        ..Default::default()
    };
    h.queue.send(&m).await.unwrap();
}

fn key() -> tugboat::signing::SigningKey {
    tugboat::signing::SigningKey::parse(support::SIGNING_KEY).unwrap()
}

/// The attack: anyone who may send to the queue writes `tugboat-retry-of` (and a redrive
/// marker) naming a dead-lettered instance, to run it again past `allow_actions` and the
/// console's token. Refused to the DLQ, the instance untouched; the same retry signed by
/// tugboat (what `tugboat workflows retry` sends) runs it.
#[actix_rt::test]
async fn a_forged_retry_attribute_is_refused_and_a_signed_one_is_believed() {
    use tugboat::intake::attributes::{self, ORIGIN, REDRIVE, RETRY};
    let h = spawn_memory_app(&config(FORGERIES), |_| {}).await;
    let event = json!({"version": "0", "id": "ev-1", "source": "custom.app",
        "detail-type": "Start ECS Task", "detail": {"service": "billing"}})
    .to_string();
    h.send(&event).await;
    until("dead-lettered", 10, || h.dlq.len() == 1).await;
    let id = "start:ev-1";
    assert_eq!(h.app.record(id).status.name(), "dead_lettered");
    let forged = [
        (RETRY, id.to_owned()),
        (REDRIVE, "g0".to_owned()),
        (ORIGIN, "m-0".to_owned()),
    ];
    send_with(&h, &event, &forged).await;
    until("the forgery is dead-lettered", 10, || h.dlq.len() == 2).await;
    let dead = h.dlq.messages().remove(1);
    assert!(
        dead.attributes["tugboat-error"].contains(
            "tugboat-retry-of/tugboat-redrive attributes are not believed: it carries no signature"
        ),
        "{:?}",
        dead.attributes
    );
    assert_eq!(
        h.app.record(id).generation,
        0,
        "the instance did not run again"
    );
    // Signed as tugboat signs a retry: believed (the next generation runs, and fails again).
    let mut signed = attributes::retry(id, 0, "m-0");
    attributes::sign_control(&mut signed, &event, &key(), tugboat::journal::now_ms());
    let signed: Vec<(&str, String)> = signed
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    send_with(&h, &event, &signed).await;
    until("the retry ran", 10, || h.app.record(id).generation == 1).await;
    h.app.stop().await;
}

/// The attack: any workload that may send to the queue forges the agent's notice about an
/// instance, to drain it. Unsigned: refused, nothing drained. A real signed notice replayed
/// an hour later: refused. A fresh signed one: drained.
#[actix_rt::test]
async fn forged_and_replayed_agent_notices_drain_nothing() {
    use tugboat::intake::attributes::SIGNATURE;
    use tugboat::intake::trust::sign_notice;
    let ecs = Arc::new(MemoryEcs::default());
    ecs.add_container_instance("prod", "i-0victim", &["10.0.0.5"]);
    let h = spawn_memory_app(&config(FORGERIES), |deps| deps.ports.ecs = ecs.clone()).await;
    let notice = |minute: u8| {
        let now = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap();
        let deadline = now + time::Duration::minutes(2);
        let f = &time::format_description::well_known::Rfc3339;
        json!({"version": "0", "id": format!("n-{minute}"), "source": "tugboat.agent", "detail-type": "Interruption Notice",
            "time": now.format(f).unwrap(),
            "detail": {"instance-id": "i-0victim", "kind": "spot-interruption", "deadline": deadline.format(f).unwrap()}})
        .to_string()
    };
    let forged = notice(1);
    h.send(&forged).await;
    until("the forgery is dead-lettered", 10, || h.dlq.len() == 1).await;
    let reason = h.dlq.messages()[0].attributes["tugboat-error"].clone();
    assert!(
        reason.contains("an agent notice not believed: it carries no signature"),
        "{reason}"
    );
    // A real notice, signed an hour ago, sent again now.
    let replayed = notice(2);
    let an_hour_ago = tugboat::journal::now_ms() - 3_600_000;
    send_with(
        &h,
        &replayed,
        &[(SIGNATURE, sign_notice(&replayed, &key(), an_hour_ago))],
    )
    .await;
    until("the replay is dead-lettered", 10, || h.dlq.len() == 2).await;
    let reason = h.dlq.messages()[1].attributes["tugboat-error"].clone();
    assert!(reason.contains("freshness window"), "{reason}");
    assert_eq!(
        ecs.container_instance_states()[0].status,
        "ACTIVE",
        "nothing was drained"
    );
    let refused = &h.app.stats("work").refused;
    assert_eq!(
        refused.load(std::sync::atomic::Ordering::Relaxed),
        2,
        "counted"
    );
    // The agent's own, signed now: drained.
    let real = notice(3);
    send_with(
        &h,
        &real,
        &[(
            SIGNATURE,
            sign_notice(&real, &key(), tugboat::journal::now_ms()),
        )],
    )
    .await;
    until("drained", 10, || {
        ecs.container_instance_states()[0].status == "DRAINING"
    })
    .await;
    h.app.stop().await;
}

/// On a queue that carries only the agents' notices, an `aws.ec2` event (which whoever holds an
/// instance role could forge there) is dead-lettered naming the rule, whether or not a route
/// would take it.
#[actix_rt::test]
async fn a_queue_refuses_sources_it_does_not_carry() {
    let routes = format!("sources = [\"tugboat.agent\"]\n{FORGERIES}");
    let h = spawn_memory_app(&config(&routes), |_| {}).await;
    let warning = at("ec2-spot-instance-interruption-warning.nth.json", 0);
    h.send(&warning).await;
    let state_change = fixture("ec2-instance-state-change-pending.nth.json");
    h.send(&state_change).await;
    until("both are dead-lettered", 10, || h.dlq.len() == 2).await;
    for dead in h.dlq.messages() {
        let reason = &dead.attributes["tugboat-error"];
        assert!(
            reason.contains("source \"aws.ec2\" is not one this queue carries"),
            "{reason}"
        );
    }
    h.app.stop().await;
}
