//! `auto_stop` end to end against the emulator's EC2: instances tagged for it and not, in a
//! region of its own; a dry run (the default) changes nothing; a stop stops only the tagged
//! running instances and marks them; a start starts only those (one stopped by hand stays
//! stopped); the reports arrive on the success topic.

mod support;

use std::time::Duration;

use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use serde_json::{Value, json};
use support::service::{Service, create_queue, depth, drain, send, topic_into, until};
use support::{clients, unique};

const REGION: &str = "ca-central-1";

fn ec2(sdk: &aws_config::SdkConfig) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::config::Builder::from(sdk)
            .region(aws_config::Region::new(REGION))
            .build(),
    )
}

async fn launch(ec2: &aws_sdk_ec2::Client, image: &str, tags: &[(&str, &str)]) -> String {
    let mut spec = TagSpecification::builder().resource_type(ResourceType::Instance);
    for (k, v) in tags {
        spec = spec.tags(Tag::builder().key(*k).value(*v).build());
    }
    let mut run = ec2
        .run_instances()
        .image_id(image)
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1);
    if !tags.is_empty() {
        run = run.tag_specifications(spec.build());
    }
    let out = run.send().await.unwrap();
    out.instances()[0].instance_id().unwrap().to_string()
}

/// Each instance's state and whether it carries tugboat's mark.
async fn states(ec2: &aws_sdk_ec2::Client, ids: &[&String]) -> Vec<(String, bool)> {
    let out = ec2
        .describe_instances()
        .set_instance_ids(Some(ids.iter().map(|s| s.to_string()).collect()))
        .send()
        .await
        .unwrap();
    let mut found: Vec<(String, String, bool)> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| {
            (
                i.instance_id().unwrap().to_string(),
                i.state()
                    .and_then(|s| s.name())
                    .unwrap()
                    .as_str()
                    .to_string(),
                i.tags()
                    .iter()
                    .any(|t| t.key() == Some("tugboat:auto-stopped")),
            )
        })
        .collect();
    found.sort();
    let mut by_order = Vec::new();
    for id in ids {
        let (_, state, marked) = found.iter().find(|(i, _, _)| i == *id).unwrap();
        by_order.push((state.clone(), *marked));
    }
    by_order
}

#[tokio::test]
async fn a_dry_run_changes_nothing_and_stop_and_start_touch_only_the_tagged_instances() {
    let c = clients().await;
    let ec2 = ec2(&c.sdk);
    let p = unique("autostop");
    let image = ec2.describe_images().send().await.unwrap().images()[0]
        .image_id()
        .unwrap()
        .to_string();
    let dev = launch(
        &ec2,
        &image,
        &[("environment", "dev"), ("tugboat-auto-stop", "true")],
    )
    .await;
    let dev_off = launch(
        &ec2,
        &image,
        &[("environment", "dev"), ("tugboat-auto-stop", "true")],
    )
    .await;
    ec2.stop_instances()
        .instance_ids(&dev_off)
        .send()
        .await
        .unwrap();
    let prod = launch(&ec2, &image, &[("environment", "prod")]).await;
    let bare = launch(&ec2, &image, &[]).await;
    let all = [&dev, &dev_off, &prod, &bare];

    let queue = format!("{p}-q");
    let queue_url = create_queue(&queue).await;
    create_queue(&format!("{p}-dlq")).await;
    let inbox = create_queue(&format!("{p}-inbox")).await;
    let ok = topic_into(&format!("{p}-ok"), &inbox, false).await;
    let err = topic_into(&format!("{p}-err"), &inbox, false).await;
    let dir = tempfile::tempdir().unwrap();
    let route = |name: &str, kind: &str, params: &str| {
        format!(
            "[[routes]]\nname = \"{name}\"\npattern = {{ source = [\"test.autostop\"], detail-type = [\"{kind}\"] }}\nworkflow = \"auto_stop\"\nparams = {params}\n\n"
        )
    };
    let tags = "{ environment = \"dev\", tugboat-auto-stop = \"true\" }";
    let extra = format!(
        "[[queues]]\nname = \"{queue}\"\ndlq = \"{p}-dlq\"\nreceive_wait = \"1s\"\n\n{}{}{}\
         [notify]\nsuccess_topic = \"{ok}\"\nerror_topic = \"{err}\"\n\n\
         [journal]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[shutdown]\ndeadline = \"5s\"\n",
        route(
            "rehearse",
            "Rehearse",
            &format!("{{ action = \"stop\", tags = {tags}, regions = [\"{REGION}\"] }}")
        ),
        route(
            "stop-dev",
            "Stop",
            &format!(
                "{{ action = \"stop\", tags = {tags}, regions = [\"{REGION}\"], dry_run = false }}"
            )
        ),
        route(
            "start-dev",
            "Start",
            &format!(
                "{{ action = \"start\", tags = {tags}, regions = [\"{REGION}\"], dry_run = false }}"
            )
        ),
        dir.path().join("journal").display()
    );
    let config = support::write_config(dir.path(), &[], &extra);
    let service = Service::start(&config, None);
    let event = |id: &str, kind: &str| {
        json!({"version": "0", "id": id, "source": "test.autostop", "detail-type": kind, "account": "123456789012",
            "time": "2026-12-07T19:00:00Z", "region": REGION, "resources": [], "detail": {}}).to_string()
    };
    let mut reports: Vec<Value> = Vec::new();
    let next_report = async |reports: &mut Vec<Value>| {
        let seen = reports.len();
        until("a report arrives", Duration::from_secs(30), async || {
            for (body, _) in drain(&inbox).await {
                let m: Value = serde_json::from_str(&body).unwrap();
                reports.push(serde_json::from_str(m["Message"].as_str().unwrap()).unwrap());
            }
            reports.len() > seen
        })
        .await;
        reports.last().unwrap().clone()
    };

    // A dry run: the report says what would be stopped; nothing changes.
    let before = states(&ec2, &all).await;
    send(&queue_url, &event("rehearse-1", "Rehearse")).await;
    let r = next_report(&mut reports).await;
    assert_eq!(
        (r["action"].as_str(), r["dry_run"].as_bool()),
        (Some("stop"), Some(true)),
        "{r}"
    );
    assert_eq!(r["regions"][0]["instances"], json!([dev]), "{r}");
    assert_eq!(
        states(&ec2, &all).await,
        before,
        "a dry run changed something"
    );

    // Stop: only the tagged running instance, marked.
    send(&queue_url, &event("stop-1", "Stop")).await;
    let r = next_report(&mut reports).await;
    assert_eq!(r["regions"][0]["instances"], json!([dev]), "{r}");
    let s = states(&ec2, &all).await;
    assert_eq!(s[0], ("stopped".into(), true), "{s:?}");
    assert_eq!(s[1], ("stopped".into(), false), "{s:?}");
    assert_eq!(
        (s[2].0.as_str(), s[3].0.as_str()),
        ("running", "running"),
        "{s:?}"
    );

    // Start: only what the stop stopped.
    send(&queue_url, &event("start-1", "Start")).await;
    let r = next_report(&mut reports).await;
    assert_eq!(r["regions"][0]["instances"], json!([dev]), "{r}");
    let s = states(&ec2, &all).await;
    assert_eq!(s[0], ("running".into(), false), "{s:?}");
    assert_eq!(
        s[1],
        ("stopped".into(), false),
        "stopped by hand, left stopped: {s:?}"
    );
    until(
        "the events are settled",
        Duration::from_secs(30),
        async || depth(&queue_url).await == (0, 0),
    )
    .await;
    drop(service);
}
