//! The `ecs_start` workflow through `tugboat serve` against the local AWS emulator: a Fargate
//! task started from an SQS message, its IP read from the ENI attachment and registered in the
//! target group; dedupe, unknown services, compensation, and a crash after RunTask.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use support::service::{Service, create_queue, depth, drain, succeeded, until};
use support::{aws_cli, clients, run, unique};

/// A cluster, a Fargate task definition, an IP target group in the default VPC, a work queue
/// with its DLQ, and a config mapping service `svc` to them.
struct Ecs {
    _dir: tempfile::TempDir,
    config: PathBuf,
    cluster: String,
    target_group: String,
    queue: String,
    queue_url: String,
    dlq_url: String,
    family: String,
    subnet: String,
    security_group: String,
}

async fn setup(target_group_override: Option<&str>, failpoint_safe_poll: &str) -> Ecs {
    let support::Network {
        vpc,
        subnet,
        security_group: sg,
    } = support::network();
    let p = unique("ecs");
    let cluster = format!("{p}-cluster");
    support::ecs_cluster(&cluster).await;
    let family = format!("{p}-svc");
    support::fargate_task_definition(&family, "app").await;
    let tg_name = format!("tg{}", p.replace("ecs-", "").replace('-', ""));
    let target_group = support::ip_target_group(&tg_name, &vpc).await;
    let queue = format!("{p}-q");
    let queue_url = create_queue(&queue).await;
    let dlq_url = create_queue(&format!("{p}-dlq")).await;
    let dir = tempfile::tempdir().unwrap();
    let mapping_tg = target_group_override.unwrap_or(&tg_name);
    let extra = format!(
        "[[queues]]\nname = \"{queue}\"\ndlq = \"{p}-dlq\"\nvisibility_timeout = \"10s\"\nreceive_wait = \"1s\"\n\n\
         [[routes]]\nname = \"start\"\npattern = {{ source = [\"custom.app\"], detail-type = [\"Start ECS Task\"] }}\n\
         workflow = \"ecs_start\"\nparams = {{ poll_interval = \"{failpoint_safe_poll}\", running_timeout = \"10s\", healthy_timeout = \"10s\" }}\n\n\
         [[routes]]\nname = \"stop\"\npattern = {{ source = [\"custom.app\"], detail-type = [\"Stop ECS Task\"] }}\n\
         workflow = \"ecs_stop\"\nparams = {{ poll_interval = \"1s\", deregistration_timeout = \"5s\" }}\n\n\
         [services.svc]\ncluster = \"{cluster}\"\ntask_definition = \"{family}\"\ntarget_group = \"{mapping_tg}\"\n\
         container_name = \"app\"\ncontainer_port = 8080\nsubnets = [\"{subnet}\"]\nsecurity_groups = [\"{sg}\"]\n\n\
         [journal]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        dir.path().join("journal").display()
    );
    let config = support::write_config(dir.path(), &[], &extra);
    Ecs {
        _dir: dir,
        config,
        cluster,
        target_group,
        queue,
        queue_url,
        dlq_url,
        family,
        subnet,
        security_group: sg,
    }
}

fn start_event(id: Option<&str>, service: &str) -> String {
    let mut e = json!({"source": "custom.app", "detail-type": "Start ECS Task", "detail": {"service": service}});
    if let Some(id) = id {
        e["id"] = json!(id);
        e["version"] = json!("0");
    }
    e.to_string()
}

/// Sends with the real AWS CLI, as a producer would.
fn send_with_cli(queue_url: &str, body: &str) {
    let out = run(aws_cli().args([
        "sqs",
        "send-message",
        "--queue-url",
        queue_url,
        "--message-body",
        body,
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// Waits (up to `secs`) for the one DLQ entry and returns its attributes.
async fn dead_letter(env: &Ecs, secs: u64) -> std::collections::HashMap<String, String> {
    until("the DLQ has it", Duration::from_secs(secs), async || {
        depth(&env.dlq_url).await.0 == 1
    })
    .await;
    drain(&env.dlq_url).await.remove(0).1
}

async fn task_arns(cluster: &str) -> Vec<String> {
    let c = clients().await;
    let mut all = Vec::new();
    for status in [
        aws_sdk_ecs::types::DesiredStatus::Running,
        aws_sdk_ecs::types::DesiredStatus::Stopped,
    ] {
        let out = c
            .ecs
            .list_tasks()
            .cluster(cluster)
            .desired_status(status)
            .send()
            .await
            .unwrap();
        all.extend(out.task_arns().iter().cloned());
    }
    all.sort();
    all.dedup();
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_starts_a_task_registers_its_ip_and_waits_until_healthy() {
    let env = setup(None, "1s").await;
    let service = Service::start(&env.config, None);
    send_with_cli(&env.queue_url, &start_event(None, "svc"));
    until(
        "the workflow succeeds",
        Duration::from_secs(30),
        async || succeeded(&service) == 1,
    )
    .await;
    let w = &service.workflows()[0];
    let out = &w["output"];
    let task_arn = out["task_arn"].as_str().unwrap().to_owned();
    assert_eq!(out["health"], "healthy");
    assert_eq!(out["port"], 8080);
    assert_eq!(out["target_group"], env.target_group.as_str());

    // The IP came from the task's ENI attachment, and that IP:port is in the target group.
    let c = clients().await;
    let task = c
        .ecs
        .describe_tasks()
        .cluster(&env.cluster)
        .tasks(&task_arn)
        .send()
        .await
        .unwrap();
    let attachment_ip = task.tasks()[0].attachments()[0]
        .details()
        .iter()
        .find(|d| d.name() == Some("privateIPv4Address"))
        .and_then(|d| d.value())
        .unwrap()
        .to_owned();
    assert_eq!(out["ip"], attachment_ip.as_str());
    let health = c
        .elbv2
        .describe_target_health()
        .target_group_arn(&env.target_group)
        .send()
        .await
        .unwrap();
    let t = &health.target_health_descriptions()[0];
    assert_eq!(t.target().unwrap().id(), Some(attachment_ip.as_str()));
    assert_eq!(t.target().unwrap().port(), Some(8080));
    // The task says which workflow started it.
    assert!(
        task.tasks()[0]
            .started_by()
            .unwrap()
            .starts_with("tugboat/svc/")
    );
    until("the queue is empty", Duration::from_secs(10), async || {
        depth(&env.queue_url).await == (0, 0)
    })
    .await;
    assert_eq!(service.terminate().0, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_event_delivered_twice_starts_one_task() {
    let env = setup(None, "1s").await;
    let id = unique("ev");
    send_with_cli(&env.queue_url, &start_event(Some(&id), "svc"));
    send_with_cli(&env.queue_url, &start_event(Some(&id), "svc"));
    let service = Service::start(&env.config, None);
    until(
        "the workflow succeeds",
        Duration::from_secs(30),
        async || succeeded(&service) == 1,
    )
    .await;
    until(
        "both messages are settled",
        Duration::from_secs(20),
        async || depth(&env.queue_url).await == (0, 0),
    )
    .await;
    assert_eq!(task_arns(&env.cluster).await.len(), 1);
    assert_eq!(service.workflows().len(), 1);
    assert_eq!(service.terminate().0, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_service_goes_to_the_dlq_with_the_reason_and_starts_nothing() {
    let env = setup(None, "1s").await;
    let service = Service::start(&env.config, None);
    send_with_cli(&env.queue_url, &start_event(None, "billing"));
    let dead = dead_letter(&env, 20).await;
    let error = &dead["tugboat-error"];
    assert!(
        error.contains("unknown service \"billing\"; configured services: svc"),
        "{error}"
    );
    assert_eq!(
        dead["tugboat-attempts"], "0",
        "refused at start, not retried"
    );
    assert!(task_arns(&env.cluster).await.is_empty());
    assert_eq!(service.terminate().0, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_target_group_is_compensated_by_stopping_the_task() {
    let missing =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/gone/0123456789abcdef";
    let env = setup(Some(missing), "1s").await;
    let service = Service::start(&env.config, None);
    send_with_cli(&env.queue_url, &start_event(None, "svc"));
    let attrs = &dead_letter(&env, 30).await;
    assert_eq!(attrs["tugboat-step"], "register-target");
    assert!(
        attrs["tugboat-error"].contains("TargetGroupNotFound"),
        "{attrs:?}"
    );
    assert!(
        attrs["tugboat-compensation"].contains("compensate:stop-task: done"),
        "{attrs:?}"
    );
    let tasks = task_arns(&env.cluster).await;
    assert_eq!(tasks.len(), 1);
    let c = clients().await;
    let described = c
        .ecs
        .describe_tasks()
        .cluster(&env.cluster)
        .tasks(&tasks[0])
        .send()
        .await
        .unwrap();
    let task = &described.tasks()[0];
    assert_eq!(
        task.last_status(),
        Some("STOPPED"),
        "nothing is left running and billed"
    );
    assert!(
        task.stopped_reason()
            .unwrap_or("")
            .contains("tugboat: ecs_start failed"),
        "{:?}",
        task.stopped_reason()
    );
    let w: Vec<Value> = service.workflows();
    assert_eq!(w[0]["status"], "dead_lettered");
    assert_eq!(service.terminate().0, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_run_task_and_register_targets_resumes_without_a_second_task() {
    let env = setup(None, "1s").await;
    send_with_cli(&env.queue_url, &start_event(Some(&unique("ev")), "svc"));
    // The first step call is RunTask: the task is started, its ARN not yet journaled.
    Service::killed_at(&env.config, "step-called:1");
    assert_eq!(task_arns(&env.cluster).await.len(), 1);

    let service = Service::start(&env.config, None);
    until(
        "the workflow succeeds",
        Duration::from_secs(40),
        async || succeeded(&service) == 1,
    )
    .await;
    assert_eq!(
        task_arns(&env.cluster).await.len(),
        1,
        "the resumed RunTask reused the clientToken"
    );
    let w = &service.workflows()[0];
    assert_eq!(w["steps"][0]["name"], "run-task");
    assert_eq!(w["steps"][0]["attempts"], 2);
    assert_eq!(service.terminate().0, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_event_deregisters_the_target_then_stops_the_task() {
    let env = setup(None, "1s").await;
    let service = Service::start(&env.config, None);
    send_with_cli(&env.queue_url, &start_event(None, "svc"));
    until("the task is up", Duration::from_secs(30), async || {
        succeeded(&service) == 1
    })
    .await;
    let task_arn = service.workflows()[0]["output"]["task_arn"]
        .as_str()
        .unwrap()
        .to_owned();
    let task_id = task_arn.rsplit('/').next().unwrap().to_owned();
    let stop = json!({"source": "custom.app", "detail-type": "Stop ECS Task", "detail": {"service": "svc", "task": task_id}});
    send_with_cli(&env.queue_url, &stop.to_string());
    until(
        "the stop workflow succeeds",
        Duration::from_secs(30),
        async || succeeded(&service) == 2,
    )
    .await;
    let c = clients().await;
    let health = c
        .elbv2
        .describe_target_health()
        .target_group_arn(&env.target_group)
        .send()
        .await
        .unwrap();
    assert!(health.target_health_descriptions().is_empty(), "{health:?}");
    let described = c
        .ecs
        .describe_tasks()
        .cluster(&env.cluster)
        .tasks(&task_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(described.tasks()[0].last_status(), Some("STOPPED"));
    let stopped = service
        .workflows()
        .into_iter()
        .find(|w| w["workflow"] == "ecs_stop")
        .unwrap();
    assert_eq!(stopped["output"]["deregistered"], true);
    assert_eq!(service.terminate().0, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_event_may_name_the_ecs_start_workflow_instead_of_the_task() {
    let env = setup(None, "1s").await;
    let service = Service::start(&env.config, None);
    send_with_cli(&env.queue_url, &start_event(None, "svc"));
    until("the task is up", Duration::from_secs(30), async || {
        succeeded(&service) == 1
    })
    .await;
    let started = service.workflows()[0].clone();
    let stop = json!({"source": "custom.app", "detail-type": "Stop ECS Task", "detail": {"workflow_id": started["id"]}});
    send_with_cli(&env.queue_url, &stop.to_string());
    until(
        "the stop workflow succeeds",
        Duration::from_secs(30),
        async || succeeded(&service) == 2,
    )
    .await;
    let task_arn = started["output"]["task_arn"].as_str().unwrap();
    let c = clients().await;
    let described = c
        .ecs
        .describe_tasks()
        .cluster(&env.cluster)
        .tasks(task_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(described.tasks()[0].last_status(), Some("STOPPED"));
    let stopped = service
        .workflows()
        .into_iter()
        .find(|w| w["workflow"] == "ecs_stop")
        .unwrap();
    assert_eq!(stopped["steps"][0]["name"], "find-workflow");
    assert_eq!(service.terminate().0, 0);
}

/// The one started task of `cluster`: its status and stop reason.
async fn the_task(cluster: &str) -> (String, String, String) {
    let tasks = task_arns(cluster).await;
    assert_eq!(tasks.len(), 1, "one task was started: {tasks:?}");
    let c = clients().await;
    let described = c
        .ecs
        .describe_tasks()
        .cluster(cluster)
        .tasks(&tasks[0])
        .send()
        .await
        .unwrap();
    let t = &described.tasks()[0];
    (
        tasks[0].clone(),
        t.last_status().unwrap_or_default().to_owned(),
        t.stopped_reason().unwrap_or_default().to_owned(),
    )
}

/// A `kill -9` at every boundary of `ecs_start`'s compensation (register-target fails for
/// good: the target group does not exist): after the restart the compensation finishes where
/// it stopped, the task is stopped, one DLQ entry lists what was cleaned up, and nothing is
/// left running.
#[tokio::test(flavor = "multi_thread")]
async fn a_kill_at_every_compensation_boundary_stops_the_task_once_and_dead_letters_once() {
    let missing =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/gone/0123456789abcdef";
    // (failpoint, StopTask calls expected): only a kill between StopTask and journaling its
    // outcome repeats the call, which ECS answers for a stopped task without doing anything.
    let boundaries = [
        ("fail-journaled:1", 1),
        ("undo-journaled:1", 1),
        ("undo-called:1", 2),
        ("undo-recorded:1", 1),
        ("undo-journaled:2", 1),
        ("undo-called:2", 1),
        ("undo-recorded:2", 1),
    ];
    for (failpoint, stop_calls) in boundaries {
        let env = setup(Some(missing), "1s").await;
        // The restarted service receives the message once the killed one's visibility
        // lapses: keep that short.
        let text = std::fs::read_to_string(&env.config).unwrap();
        let text = text.replace(
            "visibility_timeout = \"10s\"",
            "visibility_timeout = \"3s\"",
        );
        std::fs::write(&env.config, text).unwrap();
        send_with_cli(&env.queue_url, &start_event(Some(&unique("ev")), "svc"));
        Service::killed_at(&env.config, failpoint);

        let service = Service::start(&env.config, None);
        until(
            &format!("{failpoint}: the DLQ has it"),
            Duration::from_secs(30),
            async || depth(&env.dlq_url).await.0 == 1,
        )
        .await;
        until(
            &format!("{failpoint}: the original is deleted"),
            Duration::from_secs(10),
            async || depth(&env.queue_url).await == (0, 0),
        )
        .await;
        let (task, status, reason) = the_task(&env.cluster).await;
        assert_eq!(status, "STOPPED", "{failpoint}: nothing is left running");
        assert!(reason.contains("tugboat: ecs_start failed"), "{reason}");
        assert_eq!(
            support::stop_task_calls(&task),
            stop_calls,
            "{failpoint}: StopTask calls"
        );
        let dead = drain(&env.dlq_url).await;
        assert_eq!(dead.len(), 1, "{failpoint}: one DLQ entry");
        let cleaned = &dead[0].1["tugboat-compensation"];
        assert!(
            cleaned.contains("compensate:stop-task: done")
                && cleaned.contains("compensate:notify-error: done"),
            "{failpoint}: {cleaned}"
        );
        let w = &service.workflows()[0];
        assert_eq!(w["status"], "dead_lettered", "{failpoint}");
        let stop = w["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "compensate:stop-task")
            .unwrap();
        assert_eq!(stop["compensation"], true);
        assert_eq!(service.terminate().0, 0, "{failpoint}");
    }
}

/// After a fix, a redriven `ecs_start` is a new run: its `RunTask` carries a new
/// `clientToken`, so ECS starts a new task instead of returning the one the failed run's
/// compensation stopped.
#[tokio::test(flavor = "multi_thread")]
async fn a_redriven_start_starts_a_new_task() {
    let missing =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/gone/0123456789abcdef";
    let env = setup(Some(missing), "1s").await;
    let broken = Service::start(&env.config, None);
    send_with_cli(&env.queue_url, &start_event(Some(&unique("ev")), "svc"));
    until("the DLQ has it", Duration::from_secs(30), async || {
        depth(&env.dlq_url).await.0 == 1
    })
    .await;
    let (first, status, _) = the_task(&env.cluster).await;
    assert_eq!(status, "STOPPED");
    assert_eq!(broken.terminate().0, 0);

    // The fix: the service's target group is the real one.
    let text = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, text.replace(missing, &env.target_group)).unwrap();
    let service = Service::start(&env.config, None);
    let redrive =
        run(support::tugboat(&env.config).args(["dlq", "redrive", "--queue", &env.queue]));
    assert_eq!(redrive.code, 0, "{}", redrive.stderr);
    until(
        "the redriven start succeeds",
        Duration::from_secs(30),
        async || succeeded(&service) == 1,
    )
    .await;
    let tasks = task_arns(&env.cluster).await;
    assert_eq!(tasks.len(), 2, "a new task, not the stopped one: {tasks:?}");
    let w = &service.workflows()[0];
    assert_eq!(w["generation"], 1);
    let second = w["output"]["task_arn"].as_str().unwrap();
    assert_ne!(second, first);
    let old_key = &w["earlier"][0]["steps"][0]["key"];
    let new_key = &w["steps"][0]["key"];
    assert_eq!(w["steps"][0]["name"], "run-task");
    assert_ne!(old_key, new_key, "the run-task step's clientToken changed");
    assert_eq!(service.terminate().0, 0);
}

/// The attack: anyone who may put events on the bus asks for a start with `LD_PRELOAD` (their
/// library runs with the task's role, registered in the production target group). The mapping
/// allows no environment key: dead-lettered with the reason, and no task is started.
#[tokio::test(flavor = "multi_thread")]
async fn a_start_with_an_environment_key_the_mapping_does_not_allow_starts_nothing() {
    let env = setup(None, "1s").await;
    let service = Service::start(&env.config, None);
    let forged = json!({"source": "custom.app", "detail-type": "Start ECS Task",
        "detail": {"service": "svc", "environment": {"LD_PRELOAD": "/tmp/evil.so"}}});
    send_with_cli(&env.queue_url, &forged.to_string());
    let error = &dead_letter(&env, 20).await["tugboat-error"];
    assert!(
        error.contains("detail.environment.LD_PRELOAD: environment key not allowed"),
        "{error}"
    );
    assert!(
        task_arns(&env.cluster).await.is_empty(),
        "RunTask was not called"
    );
    assert_eq!(service.terminate().0, 0);
}

/// The attack: a Stop event naming a task tugboat did not start (another team's, in the same
/// cluster). Refused with the reason; the task keeps running and stays registered.
#[tokio::test(flavor = "multi_thread")]
async fn a_stop_of_a_task_tugboat_did_not_start_is_refused() {
    let env = setup(None, "1s").await;
    let c = clients().await;
    use aws_sdk_ecs::types::{AwsVpcConfiguration, LaunchType, NetworkConfiguration};
    let run = c
        .ecs
        .run_task()
        .cluster(&env.cluster)
        .task_definition(&env.family)
        .launch_type(LaunchType::Fargate)
        .started_by("another-team")
        .network_configuration(
            NetworkConfiguration::builder()
                .awsvpc_configuration(
                    AwsVpcConfiguration::builder()
                        .subnets(&env.subnet)
                        .security_groups(&env.security_group)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let foreign = run.tasks()[0].task_arn().unwrap().to_owned();
    let service = Service::start(&env.config, None);
    let id = foreign.rsplit('/').next().unwrap();
    let stop = json!({"source": "custom.app", "detail-type": "Stop ECS Task", "detail": {"service": "svc", "task": id}});
    send_with_cli(&env.queue_url, &stop.to_string());
    let error = &dead_letter(&env, 20).await["tugboat-error"];
    assert!(
        error.contains("was not started by tugboat for service svc"),
        "{error}"
    );
    assert_eq!(
        support::stop_task_calls(&foreign) + support::stop_task_calls(id),
        0,
        "StopTask was not called"
    );
    let (_, status, _) = the_task(&env.cluster).await;
    assert_eq!(status, "RUNNING");
    assert_eq!(service.terminate().0, 0);
}
