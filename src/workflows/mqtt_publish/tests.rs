//! The `mqtt_publish` state machine and handler against the in-memory broker, with the
//! README's seed-plan routes and the shared sample events (tests/fixtures).

use super::*;
use crate::contract::{Call, Workflow};
use crate::ports::memory::MemoryMqtt;
use crate::ports::mqtt::Mqtt;

use crate::workflows::eventbridge_fixture as fixture;

fn settings() -> crate::ports::BrokerSettings {
    toml::from_str("host = \"127.0.0.1\"").unwrap()
}

fn workflow(mqtt: &MemoryMqtt) -> MqttPublish {
    let local = mqtt.broker("local", &settings()).unwrap();
    MqttPublish::new(BTreeMap::from([("local".to_string(), local)]))
}

fn instances() -> Value {
    json!({"topic": "fluxer/aws/instances/{detail.instance-id}/{detail.state}"})
}

fn spot_fleet() -> Value {
    json!({"topic": "fluxer/aws/spot-fleet/{resources.0|basename}/{detail.sub-type}"})
}

fn publication(next: Decision<Step>) -> (Act<Step>, Publication) {
    match next {
        Next::Run(a) => {
            let Step::Publish { publication, .. } = a.step.clone();
            (a, publication)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_instance_state_change_goes_to_its_instance_and_state_topic() {
    let mqtt = MemoryMqtt::default();
    let w = workflow(&mqtt);
    let event = fixture("ec2-instance-state-change-pending.awsdocs.json");
    let (_, next) = w.start(&event, &instances()).unwrap();
    let (act, p) = publication(next);
    assert_eq!(act.call, Call::Handler);
    assert_eq!(p.topic, "fluxer/aws/instances/i-abcd1111/pending");
    assert_eq!(p.qos, Qos::AtLeastOnce);
    assert!(!p.retain);
    let body: Value = serde_json::from_str(&p.payload).unwrap();
    assert_eq!(
        body,
        json!({"timestamp": event["time"], "region": event["region"], "source": "aws.ec2", "detail": event["detail"]})
    );
    assert_eq!(act.retry, default_retry());
}

#[test]
fn every_spot_fleet_detail_type_goes_under_its_fleet() {
    let w = workflow(&MemoryMqtt::default());
    for (file, topic) in [
        ("ec2-spot-fleet-state-change.awsdocs.json", "fluxer/aws/spot-fleet/sfr-4b6d274d-0cea-4b2c-b3be-9dc627ad1f55/submitted"),
        ("ec2-spot-fleet-instance-change.awsdocs.json", "fluxer/aws/spot-fleet/sfr-c8a764a4-bedc-4b62-af9c-0095e6e3ba61/launched"),
    ] {
        let (_, next) = w.start(&fixture(file), &spot_fleet()).unwrap();
        assert_eq!(publication(next).1.topic, topic, "{file}");
    }
    for file in [
        "ec2-spot-fleet-spot-instance-request-change.awsdocs.json",
        "ec2-spot-fleet-information.awsdocs.json",
        "ec2-spot-fleet-error.awsdocs.json",
    ] {
        let (_, next) = w.start(&fixture(file), &spot_fleet()).unwrap();
        let topic = publication(next).1.topic;
        assert!(topic.starts_with("fluxer/aws/spot-fleet/sfr-"), "{file}: {topic}");
        assert_eq!(topic.split('/').count(), 5, "{file}: {topic}");
    }
}

#[test]
fn value_maps_qos_retain_and_a_body_template() {
    let w = workflow(&MemoryMqtt::default());
    let params = json!({
        "topic": "fluxer/aws/instances/{detail.instance-id}/{detail-type|map:kind}",
        "maps": {"kind": {"EC2 Spot Instance Interruption Warning": "spot-interruption"}},
        "qos": 0, "retain": true,
        "body": {"instance": "{detail.instance-id}", "action": "{detail.instance-action}"},
    });
    let (_, next) = w
        .start(&fixture("ec2-spot-instance-interruption-warning.awsdocs.json"), &params)
        .unwrap();
    let (_, p) = publication(next);
    assert_eq!(p.topic, "fluxer/aws/instances/i-1234567890abcdef0/spot-interruption");
    assert_eq!((p.qos, p.retain), (Qos::AtMostOnce, true));
    assert_eq!(
        serde_json::from_str::<Value>(&p.payload).unwrap(),
        json!({"instance": "i-1234567890abcdef0", "action": "action"})
    );
}

#[test]
fn a_hole_the_event_lacks_fails_the_event_naming_the_field() {
    let w = workflow(&MemoryMqtt::default());
    // The Powertools replay sample spells the field instance_id.
    let e = w
        .start(&fixture("ec2-instance-state-change-terminated.powertools-replay.json"), &instances())
        .unwrap_err();
    assert!(e.contains("detail.instance-id"), "{e}");
    let e = w
        .start(&json!({"detail": {"instance-id": "a/b", "state": "x"}}), &instances())
        .unwrap_err();
    assert!(e.contains("change the topic's levels"), "{e}");
    let e = w
        .start(&json!({"detail": {"instance-id": "i-1", "state": "#"}}), &instances())
        .unwrap_err();
    assert!(e.contains("'#'"), "{e}");
}

#[test]
fn params_that_no_event_could_fill_are_refused() {
    let brokers = vec!["local".to_string()];
    for (params, says) in [
        (json!({}), "params.topic is required"),
        (json!({"topic": 3}), "must be a text"),
        (json!({"topic": "a/{detail.state"}), "unclosed"),
        (json!({"topic": "a/{detail.state|map:nope}"}), "does not define"),
        (json!({"topic": "a", "broker": "elsewhere"}), "not configured"),
        (json!({"topic": "a", "qos": 2}), "QoS 2"),
        (json!({"topic": "a", "qos": "1"}), "params.qos"),
        (json!({"topic": "a", "retain": "yes"}), "params.retain"),
        (json!({"topic": "a", "body": {"x": "{"}}), "params.body.x"),
        (json!({"topic": "a", "retry": {"attempts": 3}}), "params.retry"),
        (json!({"topic": "a", "tpoic": "b"}), "unknown param \"tpoic\""),
        (json!({"topic": "a", "maps": {"m": {"a": 1}}}), "params.maps"),
    ] {
        let e = Params::parse(&params, &brokers).unwrap_err();
        assert!(e.contains(says), "{params}: {e}");
    }
    let e = Params::parse(&json!({"topic": "a"}), &[]).unwrap_err();
    assert!(e.contains("configured: none"), "{e}");
    let two = vec!["a".to_string(), "b".to_string()];
    assert!(Params::parse(&json!({"topic": "a"}), &two).is_err());
    assert_eq!(Params::parse(&json!({"topic": "a", "broker": "b"}), &two).unwrap().broker, "b");
}

#[tokio::test]
async fn a_publish_counts_once_acknowledged_and_a_broker_down_is_retryable() {
    let mqtt = MemoryMqtt::default();
    let w = Typed(workflow(&mqtt));
    let t = w
        .start(&fixture("ec2-instance-state-change-pending.awsdocs.json"), &instances())
        .unwrap();
    let Next::Run(action) = t.next else { panic!() };
    let ctx = StepContext {
        workflow_id: "r:e",
        step: "publish",
        attempt: 1,
        generation: 0, continued: 0,
        event: &Value::Null,
    };
    mqtt.set_down(true);
    let e = w.perform(ctx, &action.step).await.unwrap_err();
    assert!(e.retryable, "{e:?}");
    assert!(mqtt.published().is_empty());
    mqtt.set_down(false);
    w.perform(ctx, &action.step).await.unwrap();
    let published = mqtt.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].0, "local");
    assert_eq!(published[0].1.topic, "fluxer/aws/instances/i-abcd1111/pending");
    let done = w.advance(t.state.clone(), &action, Ok(json!({})));
    assert!(matches!(done.next, Next::Complete(ref o) if o["topic"] == "fluxer/aws/instances/i-abcd1111/pending"));
    let failed = w.advance(t.state, &action, Err(StepError::permanent("gave up after 120 attempts")));
    assert!(matches!(failed.next, Next::Fail(ref m) if m.contains("broker local") && m.contains("gave up")));
}
