//! `mqtt_publish` against a real broker, with a real subscriber: the service in process (built
//! by `App::build` with the rumqttc adapter) over an in-memory queue, so that a test sees
//! exactly when each message is deleted.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::sync::Arc;

use serde_json::{Value, json};

use support::app::{MemoryApp, spawn_memory_app, until};
use support::broker::{Broker, Heard, subscribe};
use tugboat::mqtt::MqttConnector;

use support::eventbridge as fixture;

/// The README's seed routes for plan 4, against `brokers` (TOML) named `fluxer`.
fn config(brokers: &str, retry: &str) -> String {
    format!(
        r#"unmatched = "acknowledge"

[aws]
region = "us-east-1"

[[queues]]
name = "work"
dlq = "work-dlq"
receive_wait = "100ms"

[[routes]]
name = "instance-state"
pattern = {{ source = ["aws.ec2"], detail-type = ["EC2 Instance State-change Notification"] }}
workflow = "mqtt_publish"
params = {{ broker = "fluxer", topic = "fluxer/aws/instances/{{detail.instance-id}}/{{detail.state}}"{retry} }}

[[routes]]
name = "spot-interruption"
pattern = {{ source = ["aws.ec2"], detail-type = ["EC2 Spot Instance Interruption Warning"] }}
workflow = "mqtt_publish"
params = {{ broker = "fluxer", topic = "fluxer/aws/instances/{{detail.instance-id}}/spot-interruption"{retry} }}

[[routes]]
name = "spot-fleet"
pattern = {{ source = ["aws.ec2spotfleet"] }}
workflow = "mqtt_publish"
params = {{ broker = "fluxer", topic = "fluxer/aws/spot-fleet/{{resources.0|basename}}/{{detail.sub-type}}"{retry} }}

[admin]
listen = "127.0.0.1:0"

[shutdown]
deadline = "2s"

{brokers}
"#
    )
}

fn topics(heard: &Heard) -> BTreeSet<String> {
    heard
        .lock()
        .unwrap()
        .iter()
        .map(|(t, _)| t.clone())
        .collect()
}

#[actix_rt::test]
async fn the_sample_events_arrive_on_their_topics_and_wildcards_see_them() {
    let broker = Broker::shared();
    let all = subscribe(broker.port, &["fluxer/aws/#"], false).await;
    let instances = subscribe(broker.port, &["fluxer/aws/instances/+/+"], false).await;
    let h = start_mqtt(&config(&broker.section("fluxer"), "")).await;
    let samples = [
        (
            "ec2-instance-state-change-pending.awsdocs.json",
            "fluxer/aws/instances/i-abcd1111/pending",
        ),
        (
            "ec2-instance-state-change-terminated.awsdocs-eventbridge.json",
            "fluxer/aws/instances/i-1234567890abcdef0/terminated",
        ),
        (
            "ec2-spot-instance-interruption-warning.awsdocs.json",
            "fluxer/aws/instances/i-1234567890abcdef0/spot-interruption",
        ),
        (
            "ec2-spot-fleet-state-change.awsdocs.json",
            "fluxer/aws/spot-fleet/sfr-4b6d274d-0cea-4b2c-b3be-9dc627ad1f55/submitted",
        ),
        (
            "ec2-spot-fleet-instance-change.awsdocs.json",
            "fluxer/aws/spot-fleet/sfr-c8a764a4-bedc-4b62-af9c-0095e6e3ba61/launched",
        ),
        (
            "ec2-spot-fleet-spot-instance-request-change.awsdocs.json",
            "",
        ),
        ("ec2-spot-fleet-information.awsdocs.json", ""),
        ("ec2-spot-fleet-error.awsdocs.json", ""),
    ];
    for (file, _) in samples {
        h.send(&fixture(file)).await;
    }
    until("every sample is published and deleted", 20, || {
        h.queue.deleted() == samples.len() as u64
    })
    .await;
    until("the subscriber heard all eight", 10, || {
        topics(&all)
            .iter()
            .filter(|t| {
                t.starts_with("fluxer/aws/spot-fleet/sfr-")
                    || t.contains("i-abcd1111")
                    || t.contains("i-1234567890abcdef0")
            })
            .count()
            >= 8
    })
    .await;
    let heard = topics(&all);
    for (file, topic) in samples {
        if !topic.is_empty() {
            assert!(heard.contains(topic), "{file}: {topic} not in {heard:?}");
        }
    }
    let fleet: Vec<_> = heard
        .iter()
        .filter(|t| t.starts_with("fluxer/aws/spot-fleet/sfr-"))
        .collect();
    assert!(fleet.len() >= 5, "{fleet:?}");
    // The instance wildcard hears the instance topics and none of the fleet's.
    until("the instance subscriber heard the three", 10, || {
        topics(&instances).len() >= 3
    })
    .await;
    assert!(
        topics(&instances)
            .iter()
            .all(|t| t.starts_with("fluxer/aws/instances/"))
    );
    // The body is the default one.
    let (_, payload) = all
        .lock()
        .unwrap()
        .iter()
        .find(|(t, _)| t == "fluxer/aws/instances/i-abcd1111/pending")
        .cloned()
        .unwrap();
    let body: Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(body["region"], "us-east-1");
    assert_eq!(body["source"], "aws.ec2");
    assert_eq!(body["timestamp"], "2021-11-11T21:29:54Z");
    assert_eq!(
        body["detail"],
        json!({"instance-id": "i-abcd1111", "state": "pending"})
    );
    assert!(h.dlq.is_empty());
    h.app.stop().await;
}

/// A server that accepts MQTT connections (CONNACK) and never acknowledges a publish.
fn silent_broker() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                if s.read(&mut buf).unwrap_or(0) == 0 {
                    return;
                }
                // CONNACK, session not present, accepted (MQTT 3.1.1 §3.2).
                let _ = s.write_all(&[0x20, 0x02, 0x00, 0x00]);
                while s.read(&mut buf).unwrap_or(0) > 0 {}
            });
        }
    });
    port
}

#[actix_rt::test]
async fn a_qos1_publish_without_puback_does_not_delete_the_message() {
    let port = silent_broker();
    let brokers =
        format!("[brokers.fluxer]\nhost = \"127.0.0.1\"\nport = {port}\nack_timeout = \"1s\"\n");
    let retry =
        r#", retry = { initial_interval = "100ms", max_interval = "200ms", max_attempts = 100 }"#;
    let h = start_mqtt(&config(&brokers, retry)).await;
    h.send(&fixture("ec2-instance-state-change-pending.awsdocs.json"))
        .await;
    let id = "instance-state:7bf73129-1428-4cd3-a780-95db273d1602";
    until("a publish has gone unacknowledged", 15, || {
        h.app.try_record(id).is_some_and(|r| {
            r.steps.iter().any(|s| {
                s.name == "publish"
                    && s.last_error
                        .as_deref()
                        .is_some_and(|e| e.contains("no acknowledgement"))
            })
        })
    })
    .await;
    let record = h.app.record(id);
    let step = record.steps.iter().find(|s| s.name == "publish").unwrap();
    assert!(
        step.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("no acknowledgement within 1s"),
        "{step:?}"
    );
    assert_eq!(h.queue.deleted(), 0, "deleted without a PUBACK");
    assert!(h.dlq.is_empty());
    h.app.stop().await;
}

#[actix_rt::test]
async fn a_broker_stopped_and_restarted_mid_stream_loses_nothing() {
    let mut broker = Broker::own();
    let heard = subscribe(broker.port, &["fluxer/aws/instances/+/+"], true).await;
    let retry =
        r#", retry = { initial_interval = "200ms", max_interval = "1s", max_attempts = 200 }"#;
    let h = start_mqtt(&config(&broker.section("fluxer"), retry)).await;
    let event = |n: usize| {
        json!({"version": "0", "id": format!("ev-{n}"), "source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification",
            "time": "2026-11-29T10:00:00Z", "region": "us-east-1", "resources": [],
            "detail": {"instance-id": format!("i-{n:04}"), "state": "running"}})
        .to_string()
    };
    for n in 0..10 {
        h.send(&event(n)).await;
    }
    until("the first ten are delivered", 20, || {
        h.queue.deleted() == 10
    })
    .await;
    broker.stop();
    for n in 10..20 {
        h.send(&event(n)).await;
    }
    // Each of the ten was tried against the down broker (and failed) before the check.
    until(
        "the ten sent while the broker is down were tried",
        20,
        || {
            (10..20).all(|n| {
                h.app
                    .try_record(&format!("instance-state:ev-{n}"))
                    .is_some_and(|r| r.steps.iter().any(|s| s.last_error.is_some()))
            })
        },
    )
    .await;
    assert_eq!(
        h.queue.deleted(),
        10,
        "a message was deleted while the broker was down"
    );
    broker.start();
    for n in 20..30 {
        h.send(&event(n)).await;
    }
    until("all thirty are delivered", 40, || h.queue.deleted() == 30).await;
    until("the subscriber heard all thirty", 20, || {
        heard
            .lock()
            .unwrap()
            .iter()
            .map(|(t, _)| t.clone())
            .collect::<BTreeSet<_>>()
            .len()
            == 30
    })
    .await;
    let got: BTreeSet<String> = heard
        .lock()
        .unwrap()
        .iter()
        .map(|(t, _)| t.clone())
        .collect();
    let want: BTreeSet<String> = (0..30)
        .map(|n| format!("fluxer/aws/instances/i-{n:04}/running"))
        .collect();
    assert_eq!(got, want);
    assert!(h.dlq.is_empty());
    h.app.stop().await;
}

/// A publish too large for one MQTT packet fails for good on its own; the shared connection
/// and the events after it are not harmed (rumqttc would otherwise drop the connection, and
/// again on every retry).
#[actix_rt::test]
async fn an_oversized_publish_is_dead_lettered_and_the_connection_keeps_delivering() {
    let broker = Broker::shared();
    let heard = subscribe(broker.port, &["fluxer/aws/instances/+/+"], false).await;
    // The body template doubles the event's detail: a 200 KiB event (SQS allows 256) makes a
    // 400 KiB publish.
    let doubled = r#", body = { a = "{detail}", b = "{detail}" }"#;
    let h = start_mqtt(&config(&broker.section("fluxer"), doubled)).await;
    let event = |id: &str, instance: &str, filler: usize| {
        json!({"version": "0", "id": id, "source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification",
            "detail": {"instance-id": instance, "state": "running", "note": "x".repeat(filler)}})
        .to_string()
    };
    h.send(&event("big", "i-big", 200 * 1024)).await;
    h.send(&event("small", "i-small", 10)).await;
    until("both are settled", 15, || h.queue.deleted() == 2).await;
    assert_eq!(h.dlq.len(), 1);
    let dead = h.dlq.messages().remove(0);
    let error = &dead.attributes["tugboat-error"];
    assert!(error.contains("packet limit"), "{error}");
    until("the small one is heard", 10, || {
        heard
            .lock()
            .unwrap()
            .iter()
            .any(|(t, _)| t == "fluxer/aws/instances/i-small/running")
    })
    .await;
    h.app.stop().await;
}

#[actix_rt::test]
async fn a_template_hole_the_event_lacks_dead_letters_it_naming_the_field() {
    let broker = Broker::shared();
    let h = start_mqtt(&config(&broker.section("fluxer"), "")).await;
    // The Powertools replay sample spells it instance_id.
    h.send(&fixture(
        "ec2-instance-state-change-terminated.powertools-replay.json",
    ))
    .await;
    until("dead-lettered", 10, || {
        h.dlq.len() == 1 && h.queue.deleted() == 1
    })
    .await;
    let dead = h.dlq.messages().remove(0);
    let error = &dead.attributes["tugboat-error"];
    assert!(error.contains("detail.instance-id"), "{error}");
    h.app.stop().await;
}

#[test]
fn a_template_no_event_could_fill_is_a_config_error_at_load() {
    let catalog = tugboat::workflows::Catalog::builtin();
    let bad = config("[brokers.fluxer]\nhost = \"127.0.0.1\"\n", "")
        .replace("{detail.state}", "{detail.state");
    let e = tugboat::config::Config::from_toml_str(
        &bad,
        std::path::Path::new("t.toml"),
        std::iter::empty(),
        &catalog,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("routes[0].params") && e.contains("unclosed"),
        "{e}"
    );
    let nobroker = config("", "");
    let e = tugboat::config::Config::from_toml_str(
        &nobroker,
        std::path::Path::new("t.toml"),
        std::iter::empty(),
        &catalog,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("\"fluxer\" is not configured"), "{e}");
}

async fn start_mqtt(config: &str) -> MemoryApp {
    spawn_memory_app(config, |deps| {
        deps.ports.mqtt = Arc::new(MqttConnector::default())
    })
    .await
}

#[actix_rt::test]
async fn a_username_and_password_are_used_and_a_wrong_one_keeps_the_message() {
    let broker = Broker::own_with_password("tugboat", "s3cret");
    let section = |password: &str| {
        broker.section("fluxer") + &format!("username = \"tugboat\"\npassword = \"{password}\"\n")
    };
    let retry =
        r#", retry = { initial_interval = "100ms", max_interval = "300ms", max_attempts = 100 }"#;
    // Wrong password: the broker refuses the connection; the publish waits, retryable.
    let h = start_mqtt(&config(&section("wrong"), retry)).await;
    h.send(&fixture("ec2-instance-state-change-pending.awsdocs.json"))
        .await;
    let id = "instance-state:7bf73129-1428-4cd3-a780-95db273d1602";
    until("a publish was refused", 15, || {
        h.app
            .try_record(id)
            .is_some_and(|r| r.steps.iter().any(|s| s.attempts >= 2))
    })
    .await;
    let error = h.app.record(id).steps[0]
        .last_error
        .clone()
        .unwrap_or_default();
    assert!(error.contains("not connected"), "{error}");
    assert_eq!(h.queue.deleted(), 0);
    h.app.stop().await;
    // The right one: delivered.
    let h = start_mqtt(&config(&section("s3cret"), retry)).await;
    h.send(&fixture("ec2-instance-state-change-pending.awsdocs.json"))
        .await;
    until("delivered", 15, || h.queue.deleted() == 1).await;
    assert!(h.dlq.is_empty());
    h.app.stop().await;
}

/// The attack: an instance id with a `/` (or a NUL) in a forged interruption notice. Filled
/// into `spot_drain`'s mqtt handler topic, a `/` would add a level (a subscriber to
/// `…/instances/+/spot-interruption` misses it, one to `…/instances/i-a/#` hears a notice about
/// no instance), and a NUL would make the broker drop the connection every route shares. Both
/// are refused; the next notice is heard on its topic over the same connection.
#[actix_rt::test]
async fn spot_drain_topic_values_cannot_add_levels_or_break_the_connection() {
    let broker = Broker::shared();
    let heard = subscribe(broker.port, &["tugboat-spot/#"], false).await;
    let spot = r#"
[[routes]]
name = "spot-notify"
pattern = { source = ["aws.ec2"], detail-type = ["EC2 Spot Instance Interruption Warning"] }
workflow = "spot_drain"
params = { mode = "notify" }

[spot]
[[spot.handlers]]
name = "fluxer"
type = "mqtt"
broker = "fluxer"
topic = "tugboat-spot/{instance}/spot-interruption"
"#;
    let config = config(&broker.section("fluxer"), "")
        .replace("[[routes]]\nname = \"spot-interruption\"", "[[routes]]\nname = \"unused\"")
        .replace(
            "detail-type = [\"EC2 Spot Instance Interruption Warning\"] }\nworkflow = \"mqtt_publish\"",
            "detail-type = [\"unused\"] }\nworkflow = \"mqtt_publish\"",
        );
    let h = start_mqtt(&format!("{config}\n{spot}")).await;
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let warning = |id: &str, instance: &str| {
        json!({"version": "0", "id": id, "source": "aws.ec2", "detail-type": "EC2 Spot Instance Interruption Warning",
            "time": now, "region": "us-east-1", "resources": [],
            "detail": {"instance-id": instance, "instance-action": "terminate"}})
        .to_string()
    };
    h.send(&warning("slash", "i-a/b")).await;
    h.send(&warning("nul", "i-n\u{0}ul")).await;
    until("both forged notices are settled", 15, || {
        h.queue.deleted() == 2
    })
    .await;
    let records = {
        use futures::FutureExt;
        h.app
            .journal
            .list(&tugboat::journal::ListFilter::default())
            .now_or_never()
            .unwrap()
            .unwrap()
    };
    assert_eq!(records.len(), 2);
    for record in &records {
        let text = record.output.clone().unwrap_or_default().to_string();
        assert!(
            text.contains("would change the topic's levels"),
            "{}: the handler is refused with the reason: {text}",
            record.id
        );
    }
    h.send(&warning("ok", "i-0abc")).await;
    until("the next notice is heard on its own topic", 15, || {
        topics(&heard).contains("tugboat-spot/i-0abc/spot-interruption")
    })
    .await;
    let all = topics(&heard);
    assert_eq!(
        all,
        BTreeSet::from(["tugboat-spot/i-0abc/spot-interruption".to_owned()]),
        "no forged topic level was published"
    );
    h.app.stop().await;
}
