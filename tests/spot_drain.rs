//! `spot_drain` end to end against the emulator: a spot warning (and the same notice from the
//! instance's agent) drains the instance's ECS container instance, takes its targets out of
//! the target group, tells the handlers — a local HTTP receiver that records order and time —
//! in priority order, cuts off the slow one and skips what the deadline leaves no room for,
//! and reports on the success topic; a Fargate Spot task stop takes the task's IP out at once.
//! A terminate lifecycle action is heartbeated, drained and completed with CONTINUE (moto has
//! no lifecycle actions: `scripts/moto_launcher.py` restores the two calls as AWS documents
//! them, for hooks that exist).

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use serde_json::{Value, json};
use support::service::{
    Service, create_queue, depth, drain, send, send_agent_notice, topic_into, until,
};
use support::{clients, unique};

/// Requests as the receiver saw them: (path, when, body).
type Seen = Arc<Mutex<Vec<(String, Instant, Value)>>>;

async fn receive(State(seen): State<Seen>, Path(path): Path<String>, body: String) -> &'static str {
    seen.lock().unwrap().push((
        path.clone(),
        Instant::now(),
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    ));
    if path == "slow" {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    "ok"
}

async fn receiver() -> (Seen, u16) {
    let seen = Seen::default();
    let app = axum::Router::new()
        .route("/{path}", axum::routing::post(receive))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (seen, port)
}

fn now_rfc3339(offset: Duration, later: bool) -> String {
    let now = time::OffsetDateTime::now_utc();
    let t = if later { now + offset } else { now - offset };
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

struct Rig {
    _dir: tempfile::TempDir,
    service: Service,
    queue_url: String,
    inbox: String,
    cluster: String,
    target_group: String,
    seen: Seen,
}

async fn rig(handlers: &str) -> Rig {
    let p = unique("spot");
    let cluster = format!("{p}-cluster");
    support::ecs_cluster(&cluster).await;
    let tg_name = format!("tg{}", p.replace("spot-", "").replace('-', ""));
    let target_group = support::ip_target_group(&tg_name, &support::default_vpc()).await;
    let queue = format!("{p}-q");
    let queue_url = create_queue(&queue).await;
    create_queue(&format!("{p}-dlq")).await;
    let inbox = create_queue(&format!("{p}-inbox")).await;
    let topic = topic_into(&format!("{p}-ok"), &inbox, false).await;
    let (seen, port) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[[queues]]\nname = \"{queue}\"\ndlq = \"{p}-dlq\"\nreceive_wait = \"1s\"\n\n\
         [[routes]]\nname = \"spot\"\nworkflow = \"spot_drain\"\n\
         pattern = {{ source = [\"aws.ec2\", \"aws.ecs\", \"aws.autoscaling\", \"tugboat.agent\"] }}\n\n\
         [spot]\nclusters = [\"{cluster}\"]\ntarget_groups = [\"{tg_name}\"]\nmargin = \"0s\"\n{handlers}\n\
         [destinations.first]\nurl = \"http://127.0.0.1:{port}/first\"\n\
         [destinations.second]\nurl = \"http://127.0.0.1:{port}/second\"\n\
         [destinations.slow]\nurl = \"http://127.0.0.1:{port}/slow\"\ntimeout = \"10s\"\n\
         [destinations.after]\nurl = \"http://127.0.0.1:{port}/after\"\n\n\
         [notify]\nsuccess_topic = \"{topic}\"\n\n\
         [journal]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[shutdown]\ndeadline = \"5s\"\n",
        dir.path().join("journal").display()
    );
    let config = support::write_config(dir.path(), &[], &extra);
    let service = Service::start(&config, None);
    Rig {
        _dir: dir,
        service,
        queue_url,
        inbox,
        cluster,
        target_group,
        seen,
    }
}

/// Registers a container instance for EC2 instance `instance` in `cluster`.
async fn container_instance(cluster: &str, instance: &str) -> String {
    let c = clients().await;
    let doc = json!({"instanceId": instance, "region": "us-east-1"}).to_string();
    c.ecs
        .register_container_instance()
        .cluster(cluster)
        .instance_identity_document(doc)
        .send()
        .await
        .unwrap()
        .container_instance()
        .unwrap()
        .container_instance_arn()
        .unwrap()
        .to_owned()
}

async fn status_of(cluster: &str, arn: &str) -> String {
    let c = clients().await;
    c.ecs
        .describe_container_instances()
        .cluster(cluster)
        .container_instances(arn)
        .send()
        .await
        .unwrap()
        .container_instances()[0]
        .status()
        .unwrap()
        .to_owned()
}

async fn targets(tg: &str) -> Vec<String> {
    let c = clients().await;
    let out = c
        .elbv2
        .describe_target_health()
        .target_group_arn(tg)
        .send()
        .await
        .unwrap();
    let mut ids: Vec<String> = out
        .target_health_descriptions()
        .iter()
        .filter_map(|d| d.target().and_then(|t| t.id()).map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

async fn register(tg: &str, id: &str) {
    let c = clients().await;
    c.elbv2
        .register_targets()
        .target_group_arn(tg)
        .targets(
            aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
                .id(id)
                .port(8080)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// The report messages in the inbox, as JSON.
async fn reports(inbox: &str, want: usize) -> Vec<Value> {
    let mut got = Vec::new();
    until("the reports arrive", Duration::from_secs(30), async || {
        for (body, _) in drain(inbox).await {
            let envelope: Value = serde_json::from_str(&body).unwrap();
            got.push(serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap());
        }
        got.len() >= want
    })
    .await;
    got
}

fn outcomes(report: &Value) -> Vec<(String, String)> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_spot_warning_and_the_agents_notice_of_it_run_one_drain_with_handlers_in_priority_order()
{
    let r = rig(
        "[[spot.handlers]]\nname = \"first\"\ntype = \"http\"\ndestination = \"first\"\npriority = 1\n\
         [[spot.handlers]]\nname = \"second\"\ntype = \"http\"\ndestination = \"second\"\npriority = 1\n\
         [[spot.handlers]]\nname = \"slow\"\ntype = \"http\"\ndestination = \"slow\"\npriority = 2\ntimeout = \"1s\"\n\
         [[spot.handlers]]\nname = \"after\"\ntype = \"http\"\ndestination = \"after\"\npriority = 3\n\
         body = { text = \"{instance} goes in {left_s} s\" }\n",
    )
    .await;
    let instance = support::ec2_instance();
    let drained = container_instance(&r.cluster, &instance).await;
    let other = container_instance(&r.cluster, &support::ec2_instance()).await;
    for ip in ["10.9.0.1", "10.9.0.2"] {
        register(&r.target_group, ip).await;
    }
    // The instance as a target (in AWS an instance-type group holds it; moto's ip-type group
    // takes any id, and tugboat deregisters by id either way).
    register(&r.target_group, &instance).await;

    let noticed = now_rfc3339(Duration::ZERO, true);
    let warning = json!({"version": "0", "id": unique("itn"), "source": "aws.ec2",
        "detail-type": "EC2 Spot Instance Interruption Warning", "account": "123456789012",
        "time": noticed, "region": "us-east-1", "resources": [format!("arn:aws:ec2:us-east-1b:instance/{instance}")],
        "detail": {"instance-id": instance, "instance-action": "terminate"}});
    // What `tugboat agent` sends for the same notice: the termination time from the metadata.
    let termination = now_rfc3339(Duration::from_secs(120), true);
    let agent = json!({"version": "0", "id": unique("agent"), "source": "tugboat.agent",
        "detail-type": "Interruption Notice", "time": now_rfc3339(Duration::ZERO, true),
        "detail": {"instance-id": instance, "kind": "spot-interruption", "deadline": termination,
            "instance-type": "m5.large", "availability-zone": "us-east-1b"}});
    send(&r.queue_url, &warning.to_string()).await;
    send(&r.queue_url, &agent.to_string()).await;

    let report = reports(&r.inbox, 1).await.remove(0);
    assert_eq!(
        outcomes(&report),
        [
            ("drain", "ok"),
            ("deregister", "ok"),
            ("first", "ok"),
            ("second", "ok"),
            ("slow", "failed"),
            ("after", "ok"),
            ("wait-drained", "ok")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert_eq!(status_of(&r.cluster, &drained).await, "DRAINING");
    assert_eq!(status_of(&r.cluster, &other).await, "ACTIVE");
    assert_eq!(targets(&r.target_group).await, ["10.9.0.1", "10.9.0.2"]);
    let slow = &report["steps"][4];
    assert!(
        slow["reason"]
            .as_str()
            .unwrap()
            .starts_with("cut off after 1000 ms"),
        "{slow}"
    );
    let left = report["left_ms"].as_i64().unwrap();
    assert!(left > 100_000 && left < 120_000, "{left}");

    // The receiver: one call each (one drain for both notices), priorities in order, the
    // equal ones before the next priority started.
    until(
        "both notices are settled",
        Duration::from_secs(30),
        async || depth(&r.queue_url).await == (0, 0),
    )
    .await;
    let seen = r.seen.lock().unwrap().clone();
    let order: Vec<&str> = seen.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(order.len(), 4, "{order:?}");
    assert_eq!(order[2..], ["slow", "after"]);
    assert!(order[..2].contains(&"first") && order[..2].contains(&"second"));
    let at = |name: &str| seen.iter().find(|(p, _, _)| p == name).unwrap().1;
    let cut = at("after").duration_since(at("slow"));
    assert!(
        cut >= Duration::from_millis(900) && cut < Duration::from_secs(4),
        "{cut:?}"
    );
    let text = seen[3].2["text"].as_str().unwrap();
    assert!(text.starts_with(&format!("{instance} goes in 1")), "{text}");
    let runs: Vec<Value> = r
        .service
        .workflows()
        .into_iter()
        .filter(|w| w["workflow"] == "spot_drain")
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    // The admin listener's history counts it.
    let admin = r.service.admin.clone().unwrap();
    let out = std::process::Command::new("curl")
        .args(["-fsS", &format!("http://{admin}/spot/history")])
        .output()
        .unwrap();
    let history: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(history["interruptions"], 1, "{history}");
    let (code, _) = r.service.terminate();
    assert_eq!(code, 0);
}

#[tokio::test]
async fn what_cannot_start_before_the_deadline_is_skipped_and_a_fargate_spot_stop_deregisters_the_task()
 {
    let r = rig(
        "[[spot.handlers]]\nname = \"slow\"\ntype = \"http\"\ndestination = \"slow\"\npriority = 1\ntimeout = \"30s\"\n\
         [[spot.handlers]]\nname = \"after\"\ntype = \"http\"\ndestination = \"after\"\npriority = 2\n",
    )
    .await;
    // A notice from the agent with three seconds left: the slow handler takes them all.
    let instance = "i-00000000000000aaa";
    let agent = json!({"version": "0", "id": unique("agent"), "source": "tugboat.agent",
        "detail-type": "Interruption Notice", "time": now_rfc3339(Duration::ZERO, true),
        "detail": {"instance-id": instance, "kind": "rebalance-recommendation",
            "deadline": now_rfc3339(Duration::from_secs(3), true)}});
    send_agent_notice(&r.queue_url, &agent.to_string()).await;
    let report = reports(&r.inbox, 1).await.remove(0);
    let steps = outcomes(&report);
    assert_eq!(
        steps[2],
        ("slow".to_owned(), "failed".to_owned()),
        "{report}"
    );
    assert_eq!(
        steps[3],
        ("after".to_owned(), "skipped".to_owned()),
        "{report}"
    );
    assert!(report["left_ms"].as_i64().unwrap() <= 0, "{report}");
    assert!(
        !r.seen.lock().unwrap().iter().any(|(p, _, _)| p == "after"),
        "a skipped handler is not called"
    );

    // Fargate Spot: the stopping task's IP leaves the target group.
    register(&r.target_group, "10.9.1.7").await;
    register(&r.target_group, "10.9.1.8").await;
    let task = json!({"version": "0", "id": unique("task"), "source": "aws.ecs",
        "detail-type": "ECS Task State Change", "time": now_rfc3339(Duration::ZERO, true),
        "region": "us-east-1", "resources": [],
        "detail": {"clusterArn": format!("arn:aws:ecs:us-east-1:123456789012:cluster/{}", r.cluster),
            "taskArn": format!("arn:aws:ecs:us-east-1:123456789012:task/{}/{}", r.cluster, unique("t")),
            "desiredStatus": "STOPPED", "lastStatus": "RUNNING", "stopCode": "SpotInterruption",
            "stoppedReason": "Your Spot Task was interrupted.",
            "attachments": [{"type": "eni", "status": "ATTACHED",
                "details": [{"name": "privateIPv4Address", "value": "10.9.1.7"}]}]}});
    send(&r.queue_url, &task.to_string()).await;
    let report = reports(&r.inbox, 1).await.remove(0);
    assert_eq!(report["kind"], "fargate-spot-task");
    assert_eq!(
        outcomes(&report)[0],
        ("deregister".to_owned(), "ok".to_owned())
    );
    assert_eq!(targets(&r.target_group).await, ["10.9.1.8"]);
    let (code, _) = r.service.terminate();
    assert_eq!(code, 0);
}

#[tokio::test]
async fn a_terminate_lifecycle_action_is_heartbeated_drained_and_completed() {
    let r = rig("drain_poll = \"300ms\"\n").await;
    let instance = support::ec2_instance();
    let drained = container_instance(&r.cluster, &instance).await;
    // A standalone task on it: a drain does not move it; the hook must wait until it stops.
    let family = unique("standalone");
    let c = clients().await;
    c.ecs
        .register_task_definition()
        .family(&family)
        .network_mode(aws_sdk_ecs::types::NetworkMode::Bridge)
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("app")
                .image("public.ecr.aws/nginx/nginx:latest")
                .memory(128)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let task = c
        .ecs
        .start_task()
        .cluster(&r.cluster)
        .task_definition(&family)
        .container_instances(&drained)
        .send()
        .await
        .unwrap()
        .tasks()[0]
        .task_arn()
        .unwrap()
        .to_owned();
    let p = unique("asg");
    let image = {
        let out = support::run(support::aws_cli().args([
            "ec2",
            "describe-images",
            "--query",
            "Images[0].ImageId",
            "--output",
            "text",
        ]));
        out.stdout.trim().to_owned()
    };
    for args in [
        vec![
            "autoscaling",
            "create-launch-configuration",
            "--launch-configuration-name",
            &p,
            "--image-id",
            &image,
            "--instance-type",
            "m5.large",
        ],
        vec![
            "autoscaling",
            "create-auto-scaling-group",
            "--auto-scaling-group-name",
            &p,
            "--launch-configuration-name",
            &p,
            "--min-size",
            "0",
            "--max-size",
            "1",
            "--availability-zones",
            "us-east-1a",
        ],
        vec![
            "autoscaling",
            "put-lifecycle-hook",
            "--lifecycle-hook-name",
            "drain",
            "--auto-scaling-group-name",
            &p,
            "--lifecycle-transition",
            "autoscaling:EC2_INSTANCE_TERMINATING",
        ],
    ] {
        let out = support::run(support::aws_cli().args(&args));
        assert_eq!(out.code, 0, "aws {args:?}: {}", out.stderr);
    }
    let token = unique("token");
    let event = json!({"version": "0", "id": unique("lc"), "source": "aws.autoscaling",
        "detail-type": "EC2 Instance-terminate Lifecycle Action", "account": "123456789012",
        "time": now_rfc3339(Duration::ZERO, true), "region": "us-east-1", "resources": [],
        "detail": {"LifecycleActionToken": token, "AutoScalingGroupName": p, "LifecycleHookName": "drain",
            "EC2InstanceId": instance, "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING"}});
    // The route takes aws.autoscaling too.
    send(&r.queue_url, &event.to_string()).await;
    // Drained, and waiting: the hook is not completed while the task runs.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while status_of(&r.cluster, &drained).await != "DRAINING" {
        assert!(std::time::Instant::now() < deadline, "never drained");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The wait polls the drained instance's tasks inside one attempt: two more polls after
    // the drain, with the task still running, and the hook must still be open.
    let polls = || {
        support::emulator_calls("ecs:DescribeContainerInstances")
            .into_iter()
            .filter(|c| {
                c["cluster"]
                    .as_str()
                    .is_some_and(|n| n == r.cluster || n.ends_with(&format!("/{}", r.cluster)))
            })
            .count()
    };
    let drained_at = polls();
    support::wait::until_explained(
        "the drain's wait polled twice while the task ran",
        Duration::from_secs(30),
        async || polls() >= drained_at + 2,
        || format!("{} polls", polls() - drained_at),
    )
    .await;
    let completed_early = support::emulator_calls("autoscaling:CompleteLifecycleAction")
        .into_iter()
        .any(|c| c["token"] == token.as_str());
    assert!(!completed_early, "completed while a task was still running");
    c.ecs
        .stop_task()
        .cluster(&r.cluster)
        .task(&task)
        .send()
        .await
        .unwrap();
    let report = reports(&r.inbox, 1).await.remove(0);
    let wait = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "wait-drained")
        .cloned()
        .unwrap_or_default();
    assert!(
        wait["detail"]["polls"].as_u64().unwrap_or(0) >= 3,
        "{report}"
    );
    assert_eq!(
        outcomes(&report),
        [
            ("heartbeat", "ok"),
            ("drain", "ok"),
            ("deregister", "ok"),
            ("wait-drained", "ok"),
            ("complete-lifecycle", "ok")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned())),
        "{report}"
    );
    assert_eq!(status_of(&r.cluster, &drained).await, "DRAINING");
    let completed: Vec<Value> = support::emulator_calls("autoscaling:CompleteLifecycleAction")
        .into_iter()
        .filter(|c| c["token"] == token.as_str())
        .collect();
    assert_eq!(completed.len(), 1, "{completed:?}");
    assert_eq!(completed[0]["result"], "CONTINUE");
    assert_eq!(completed[0]["group"], p.as_str());
    let heartbeats = support::emulator_calls("autoscaling:RecordLifecycleActionHeartbeat");
    assert!(heartbeats.iter().any(|c| c["token"] == token.as_str()));
    // Completing it again (a resumed step) is fine: the action is no longer pending. A hook
    // that does not exist is an error.
    use tugboat::ports::lifecycle::{Lifecycle, LifecycleAction};
    let lifecycle =
        tugboat::aws::autoscaling::AutoScalingLifecycle::new(clients().await.autoscaling);
    let mut action = LifecycleAction {
        group: p.clone(),
        hook: "drain".into(),
        token: token.clone(),
        instance,
    };
    lifecycle.complete(&action).await.unwrap();
    action.hook = "missing".into();
    let e = lifecycle.complete(&action).await.unwrap_err();
    assert!(
        !e.retryable && e.message.contains("No Lifecycle Hook found"),
        "{e:?}"
    );
    let (code, _) = r.service.terminate();
    assert_eq!(code, 0);
}
