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

fn ecs(sdk: &aws_config::SdkConfig) -> aws_sdk_ecs::Client {
    aws_sdk_ecs::Client::from_conf(
        aws_sdk_ecs::config::Builder::from(sdk)
            .region(aws_config::Region::new(REGION))
            .build(),
    )
}

/// A service `name` in `cluster` (created with a task definition of its own) with
/// `desired` tasks and `tags`; its ARN.
async fn ecs_service(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    name: &str,
    desired: i32,
    tags: &[(&str, &str)],
) -> String {
    ecs.register_task_definition()
        .family(name)
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("app")
                .image("public.ecr.aws/nginx/nginx:latest")
                .memory(512)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut create = ecs
        .create_service()
        .cluster(cluster)
        .service_name(name)
        .task_definition(name)
        .desired_count(desired);
    for (k, v) in tags {
        create = create.tags(aws_sdk_ecs::types::Tag::builder().key(*k).value(*v).build());
    }
    create
        .send()
        .await
        .unwrap()
        .service()
        .unwrap()
        .service_arn()
        .unwrap()
        .to_string()
}

/// A new ECS cluster `<p>-apps`; its name.
async fn new_cluster(ecs: &aws_sdk_ecs::Client, p: &str) -> String {
    let cluster = format!("{p}-apps");
    ecs.create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .unwrap();
    cluster
}

/// Each service's desired count and whether it carries tugboat's mark.
async fn counts(ecs: &aws_sdk_ecs::Client, cluster: &str, arns: &[&String]) -> Vec<(i32, bool)> {
    let out = ecs
        .describe_services()
        .cluster(cluster)
        .set_services(Some(arns.iter().map(|s| s.to_string()).collect()))
        .include(aws_sdk_ecs::types::ServiceField::Tags)
        .send()
        .await
        .unwrap();
    arns.iter()
        .map(|arn| {
            let s = out
                .services()
                .iter()
                .find(|s| s.service_arn() == Some(arn.as_str()))
                .unwrap();
            (
                s.desired_count(),
                s.tags()
                    .iter()
                    .any(|t| t.key() == Some("tugboat:auto-stopped")),
            )
        })
        .collect()
}

/// A DB instance `id` with `tags`.
async fn db_instance(rds: &aws_sdk_rds::Client, id: &str, tags: &[(&str, &str)]) {
    let mut create = rds
        .create_db_instance()
        .db_instance_identifier(id)
        .db_instance_class("db.t3.micro")
        .engine("postgres")
        .allocated_storage(20)
        .master_username("admin")
        .master_user_password("password123");
    for (k, v) in tags {
        create = create.tags(aws_sdk_rds::types::Tag::builder().key(*k).value(*v).build());
    }
    create.send().await.unwrap();
}

/// Each DB instance's status and whether it carries tugboat's mark.
async fn db_states(rds: &aws_sdk_rds::Client, ids: &[&str]) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for id in ids {
        let d = rds
            .describe_db_instances()
            .db_instance_identifier(*id)
            .send()
            .await
            .unwrap();
        let d = &d.db_instances()[0];
        out.push((
            d.db_instance_status().unwrap_or_default().to_string(),
            d.tag_list()
                .iter()
                .any(|t| t.key() == Some("tugboat:auto-stopped")),
        ));
    }
    out
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
    let ecs = ecs(&c.sdk);
    let cluster = new_cluster(&ecs, &p).await;
    let web = ecs_service(
        &ecs,
        &cluster,
        &format!("{p}-web"),
        2,
        &[("environment", "dev"), ("tugboat-auto-stop", "true")],
    )
    .await;
    let shop = ecs_service(
        &ecs,
        &cluster,
        &format!("{p}-shop"),
        1,
        &[("environment", "prod")],
    )
    .await;
    let services = [&web, &shop];
    let rds = aws_sdk_rds::Client::from_conf(
        aws_sdk_rds::config::Builder::from(&c.sdk)
            .region(aws_config::Region::new(REGION))
            .build(),
    );
    let (dev_db, prod_db) = (format!("{p}-dev-db"), format!("{p}-prod-db"));
    db_instance(
        &rds,
        &dev_db,
        &[("environment", "dev"), ("tugboat-auto-stop", "true")],
    )
    .await;
    db_instance(&rds, &prod_db, &[("environment", "prod")]).await;
    let dbs = [dev_db.as_str(), prod_db.as_str()];

    let tags = "{ environment = \"dev\", tugboat-auto-stop = \"true\" }";
    let env = Setup::new(
        &p,
        &[
            (
                "rehearse",
                "Rehearse",
                format!("{{ action = \"stop\", tags = {tags}, regions = [\"{REGION}\"] }}"),
            ),
            (
                "stop-dev",
                "Stop",
                format!(
                    "{{ action = \"stop\", tags = {tags}, regions = [\"{REGION}\"], dry_run = false }}"
                ),
            ),
            (
                "start-dev",
                "Start",
                format!(
                    "{{ action = \"start\", tags = {tags}, regions = [\"{REGION}\"], dry_run = false }}"
                ),
            ),
        ],
    )
    .await;
    let (config, queue_url, inbox) = (&env.config, &env.queue_url, &env.inbox);
    let service = Service::start(config, None);
    let mut reports: Vec<Value> = Vec::new();
    let next_report = async |reports: &mut Vec<Value>| next_report(inbox, reports).await;

    // A dry run: the report says what would be stopped; nothing changes.
    let before = states(&ec2, &all).await;
    send(queue_url, &event("rehearse-1", "Rehearse")).await;
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
    assert_eq!(
        r["regions"][0]["services"][0]["service"],
        web.as_str(),
        "{r}"
    );
    assert_eq!(
        counts(&ecs, &cluster, &services).await,
        [(2, false), (1, false)],
        "a dry run changed a service"
    );
    assert_eq!(r["regions"][0]["databases"], json!([dev_db]), "{r}");
    assert_eq!(
        db_states(&rds, &dbs).await,
        [("available".into(), false), ("available".into(), false)]
    );

    // Stop: only the tagged running instance, marked.
    send(queue_url, &event("stop-1", "Stop")).await;
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
    assert_eq!(
        r["regions"][0]["services"][0]["desired"], 2,
        "the count before, journaled: {r}"
    );
    assert_eq!(
        counts(&ecs, &cluster, &services).await,
        [(0, true), (1, false)],
        "only the tagged service scaled to 0"
    );
    assert_eq!(
        db_states(&rds, &dbs).await,
        [("stopped".into(), true), ("available".into(), false)],
        "only the tagged DB instance stopped"
    );

    // Start: only what the stop stopped.
    send(queue_url, &event("start-1", "Start")).await;
    let r = next_report(&mut reports).await;
    assert_eq!(r["regions"][0]["instances"], json!([dev]), "{r}");
    let s = states(&ec2, &all).await;
    assert_eq!(s[0], ("running".into(), false), "{s:?}");
    assert_eq!(
        s[1],
        ("stopped".into(), false),
        "stopped by hand, left stopped: {s:?}"
    );
    assert_eq!(
        counts(&ecs, &cluster, &services).await,
        [(2, false), (1, false)],
        "back to the remembered count"
    );
    assert_eq!(
        db_states(&rds, &dbs).await,
        [("available".into(), false), ("available".into(), false)]
    );
    until(
        "the events are settled",
        Duration::from_secs(30),
        async || depth(queue_url).await == (0, 0),
    )
    .await;
    drop(service);
}

/// A queue with its DLQ, success and error topics delivering into one inbox queue, and a
/// configuration routing `test.autostop` events of each `(name, detail-type, params)` to
/// `auto_stop`.
struct Setup {
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    queue_url: String,
    inbox: String,
}

impl Setup {
    async fn new(p: &str, routes: &[(&str, &str, String)]) -> Setup {
        Setup::with(p, routes, "").await
    }

    /// [`Setup::new`] with more configuration (`[resources]`).
    async fn with(p: &str, routes: &[(&str, &str, String)], more: &str) -> Setup {
        let queue = format!("{p}-q");
        let queue_url = create_queue(&queue).await;
        create_queue(&format!("{p}-dlq")).await;
        let inbox = create_queue(&format!("{p}-inbox")).await;
        let ok = topic_into(&format!("{p}-ok"), &inbox, false).await;
        let err = topic_into(&format!("{p}-err"), &inbox, false).await;
        let dir = tempfile::tempdir().unwrap();
        let routes: String = routes
            .iter()
            .map(|(name, kind, params)| {
                format!(
                    "[[routes]]\nname = \"{name}\"\npattern = {{ source = [\"test.autostop\"], detail-type = [\"{kind}\"] }}\nworkflow = \"auto_stop\"\nparams = {params}\n\n"
                )
            })
            .collect();
        let extra = format!(
            "[[queues]]\nname = \"{queue}\"\ndlq = \"{p}-dlq\"\nreceive_wait = \"1s\"\nvisibility_timeout = \"3s\"\n\n{routes}\
             [notify]\nsuccess_topic = \"{ok}\"\nerror_topic = \"{err}\"\n\n\
             [journal]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[shutdown]\ndeadline = \"5s\"\n\n{more}",
            dir.path().join("journal").display()
        );
        let config = support::write_config(dir.path(), &[], &extra);
        Setup {
            _dir: dir,
            config,
            queue_url,
            inbox,
        }
    }
}

/// An EventBridge-shaped event of `detail-type` `kind`.
fn event(id: &str, kind: &str) -> String {
    json!({"version": "0", "id": id, "source": "test.autostop", "detail-type": kind, "account": "123456789012",
        "time": "2026-12-07T19:00:00Z", "region": REGION, "resources": [], "detail": {}})
    .to_string()
}

/// Waits for the next report in `inbox` (an SNS envelope's message) and returns it.
async fn next_report(inbox: &str, reports: &mut Vec<Value>) -> Value {
    let seen = reports.len();
    until("a report arrives", Duration::from_secs(30), async || {
        for (body, _) in drain(inbox).await {
            let m: Value = serde_json::from_str(&body).unwrap();
            reports.push(serde_json::from_str(m["Message"].as_str().unwrap()).unwrap());
        }
        reports.len() > seen
    })
    .await;
    reports.last().unwrap().clone()
}

/// How often the emulator was asked to `call` (`ec2:StopInstances`) for `instance`.
fn power_calls(call: &str, instance: &str) -> usize {
    support::emulator_calls(call)
        .iter()
        .filter(|c| {
            c["instances"]
                .as_array()
                .is_some_and(|a| a.iter().any(|i| i == instance))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_between_the_stop_and_its_journaling_resumes_without_a_second_stop() {
    let c = clients().await;
    let ec2 = ec2(&c.sdk);
    let p = unique("autostopcrash");
    let image = ec2.describe_images().send().await.unwrap().images()[0]
        .image_id()
        .unwrap()
        .to_string();
    // Tags of this test's own: the other test's instances in the region are not selected.
    let target = launch(&ec2, &image, &[("crash-test", &p)]).await;
    let tags = format!("{{ crash-test = \"{p}\" }}");
    let env = Setup::new(
        &p,
        &[(
            "stop",
            "Stop",
            format!(
                "{{ action = \"stop\", tags = {tags}, regions = [\"{REGION}\"], dry_run = false }}"
            ),
        )],
    )
    .await;
    send(&env.queue_url, &event(&format!("{p}-stop"), "Stop")).await;

    // The first step's call runs (the mark, then StopInstances); its outcome is not journaled.
    Service::killed_at(&env.config, "step-called:1");
    assert_eq!(power_calls("ec2:StopInstances", &target), 1);
    let s = states(&ec2, &[&target]).await;
    assert!(s[0].1, "marked before stopped: {s:?}");
    assert_ne!(s[0].0, "running", "{s:?}");

    let service = Service::start(&env.config, None);
    let mut reports = Vec::new();
    let r = next_report(&env.inbox, &mut reports).await;
    assert_eq!(
        r["regions"][0]["instances"],
        json!([target]),
        "counted as stopped: {r}"
    );
    assert_eq!(
        power_calls("ec2:StopInstances", &target),
        1,
        "the resumed step stopped the instance a second time"
    );
    let w = service.workflows();
    let steps = w[0]["steps"].as_array().unwrap();
    assert_eq!(steps[0]["name"], format!("stop:{REGION}"), "{w:?}");
    assert_eq!(
        steps[0]["attempts"], 2,
        "the step ran again after the kill: {w:?}"
    );
    assert_eq!(service.terminate().0, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_after_a_service_is_scaled_to_zero_still_brings_it_back_to_its_count() {
    let c = clients().await;
    let ecs = ecs(&c.sdk);
    let p = unique("autostopsvc");
    let cluster = new_cluster(&ecs, &p).await;
    let web = ecs_service(
        &ecs,
        &cluster,
        &format!("{p}-web"),
        4,
        &[("crash-test", &p)],
    )
    .await;
    let tags = format!("{{ crash-test = \"{p}\" }}");
    let route = |action: &str| {
        format!(
            "{{ action = \"{action}\", tags = {tags}, regions = [\"{REGION}\"], resources = [\"services\"], clusters = [\"{cluster}\"], dry_run = false }}"
        )
    };
    let env = Setup::new(
        &p,
        &[
            ("stop", "Stop", route("stop")),
            ("start", "Start", route("start")),
        ],
    )
    .await;
    send(&env.queue_url, &event(&format!("{p}-stop"), "Stop")).await;

    // Steps: services (1, the counts journaled), scale-down (2): killed after its calls ran.
    Service::killed_at(&env.config, "step-called:2");
    assert_eq!(counts(&ecs, &cluster, &[&web]).await, [(0, true)]);

    let service = Service::start(&env.config, None);
    let mut reports = Vec::new();
    let r = next_report(&env.inbox, &mut reports).await;
    assert_eq!(
        r["regions"][0]["services"],
        json!([{"service": web, "cluster": format!("arn:aws:ecs:{REGION}:123456789012:cluster/{cluster}"), "desired": 4}]),
        "the count journaled before the scale, not the 0 the resumed step saw: {r}"
    );
    send(&env.queue_url, &event(&format!("{p}-start"), "Start")).await;
    let r = next_report(&env.inbox, &mut reports).await;
    assert_eq!(r["action"], "start", "{r}");
    assert_eq!(counts(&ecs, &cluster, &[&web]).await, [(4, false)], "{r}");
    let w = service.workflows();
    assert!(
        w.iter().any(|i| i["steps"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("read-stop:"))))),
        "the start read the stop's record: {w:?}"
    );
    assert_eq!(service.terminate().0, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn another_accounts_tagged_instance_is_stopped_through_its_role_and_the_own_is_not() {
    let c = clients().await;
    let p = unique("autostopacct");
    let role = "arn:aws:iam::222233335555:role/tugboat-resources";
    let provider = aws_config::sts::AssumeRoleProvider::builder(role)
        .session_name("tugboat-test")
        .configure(&c.sdk)
        .build()
        .await;
    let member_sdk = c
        .sdk
        .to_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(provider),
        )
        .build();
    let (own, member) = (ec2(&c.sdk), ec2(&member_sdk));
    let image = |e: aws_sdk_ec2::Client| async move {
        e.describe_images().send().await.unwrap().images()[0]
            .image_id()
            .unwrap()
            .to_string()
    };
    let tags = [("crash-test", p.as_str())];
    let theirs = launch(&member, &image(member.clone()).await, &tags).await;
    let ours = launch(&own, &image(own.clone()).await, &tags).await;
    let env = Setup::with(
        &p,
        &[(
            "stop-member",
            "Stop",
            format!("{{ action = \"stop\", tags = {{ crash-test = \"{p}\" }}, account = \"member\", resources = [\"instances\"], dry_run = false }}"),
        )],
        &format!(
            "[resources]\ntable = \"{p}-findings\"\n\n[[resources.accounts]]\nname = \"member\"\nrole_arn = \"{role}\"\nregions = [\"{REGION}\"]\n"
        ),
    )
    .await;
    let service = Service::start(&env.config, None);
    send(&env.queue_url, &event(&format!("{p}-stop"), "Stop")).await;
    let mut reports = Vec::new();
    let r = next_report(&env.inbox, &mut reports).await;
    assert_eq!(
        (r["account"].as_str(), &r["regions"][0]["instances"]),
        (Some("member"), &json!([theirs])),
        "{r}"
    );
    assert_eq!(
        states(&member, &[&theirs]).await,
        [("stopped".to_string(), true)]
    );
    assert_eq!(
        states(&own, &[&ours]).await,
        [("running".to_string(), false)],
        "the own account's twin untouched"
    );
    let w = service.workflows();
    assert_eq!(
        w[0]["steps"][0]["name"],
        format!("stop:member:{REGION}"),
        "{w:?}"
    );
    assert_eq!(service.terminate().0, 0);
}
