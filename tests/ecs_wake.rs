//! `ecs_start` waits wake at once when an "ECS Task State Change" event for the task arrives
//! (routed to `ecs_task_event`), instead of at the next poll. In process, with fakes of the ECS
//! and target-group ports: the emulator has no PENDING phase to wake from.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::json;

use support::app::spawn_app;
use tugboat::app::Dependencies;
use tugboat::contract::StepError;
use tugboat::journal::Status;
use tugboat::journal::memory::MemoryJournal;
use tugboat::ports::memory::{MemoryQueue, MemoryQueues};
use tugboat::ports::{
    ContainerInstance, Ecs, OutgoingMessage, Ports, Queue, RunTaskRequest, TargetGroups,
    TargetHealth, TaskStatus,
};

const TASK: &str = "arn:aws:ecs:us-east-1:123456789012:task/apps/abc";

#[derive(Debug, Default)]
struct SlowEcs {
    running: AtomicBool,
    describes: AtomicU32,
}

#[async_trait]
impl Ecs for SlowEcs {
    async fn run_task(&self, _r: &RunTaskRequest) -> Result<String, StepError> {
        Ok(TASK.into())
    }
    async fn describe_task(&self, _cluster: &str, _task: &str) -> Result<TaskStatus, StepError> {
        self.describes.fetch_add(1, Ordering::SeqCst);
        let running = self.running.load(Ordering::SeqCst);
        Ok(TaskStatus {
            task_arn: TASK.into(),
            last_status: if running { "RUNNING" } else { "PENDING" }.into(),
            stopped_reason: None,
            stop_code: None,
            container_reasons: vec![],
            private_ip: running.then(|| "10.0.0.5".to_owned()),
            started_by: Some("tugboat/auth/ev".into()),
        })
    }
    async fn stop_task(&self, _c: &str, _t: &str, _r: &str) -> Result<(), StepError> {
        Ok(())
    }
    async fn container_instances(
        &self,
        _c: &str,
        _i: &str,
    ) -> Result<Vec<ContainerInstance>, StepError> {
        Ok(vec![])
    }
    async fn drain(&self, _c: &str, _arns: &[String]) -> Result<(), StepError> {
        Ok(())
    }
    async fn tasks_left(&self, _c: &str, _cis: &[String]) -> Result<u32, StepError> {
        Ok(0)
    }
    async fn task_ips(&self, _c: &str, _ci: &str) -> Result<Vec<String>, StepError> {
        Ok(vec![])
    }
}

#[derive(Debug, Default)]
struct HealthyTargets;

#[async_trait]
impl TargetGroups for HealthyTargets {
    async fn resolve(&self, name: &str) -> Result<String, StepError> {
        Ok(format!(
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/{name}/1"
        ))
    }
    async fn register(&self, _tg: &str, _ip: &str, _port: u16) -> Result<(), StepError> {
        Ok(())
    }
    async fn deregister(&self, _tg: &str, _ip: &str, _port: u16) -> Result<(), StepError> {
        Ok(())
    }
    async fn targets(&self, _tg: &str) -> Result<Vec<(String, u16)>, StepError> {
        Ok(vec![])
    }
    async fn health(&self, _tg: &str, _ip: &str, _port: u16) -> Result<TargetHealth, StepError> {
        Ok(TargetHealth {
            state: "healthy".into(),
            reason: None,
            description: None,
        })
    }
}

const CONFIG: &str = r#"
[aws]
region = "us-east-1"

[[queues]]
name = "q"
receive_wait = "100ms"

[[routes]]
name = "start"
pattern = '{"detail-type":["Start ECS Task"]}'
workflow = "ecs_start"
params = { poll_interval = "15s" }

[[routes]]
name = "task-events"
pattern = '{"source":["aws.ecs"],"detail-type":["ECS Task State Change"]}'
workflow = "ecs_task_event"

[services.auth]
cluster = "apps"
task_definition = "auth:1"
target_group = "tg"
container_name = "auth"
container_port = 8080
subnets = ["s"]

[admin]
listen = "127.0.0.1:0"

[shutdown]
deadline = "2s"
"#;

#[actix_rt::test]
async fn a_task_state_change_event_ends_the_running_wait_at_once() {
    let ecs = Arc::new(SlowEcs::default());
    let queue = Arc::new(MemoryQueue::new("q"));
    let queues = Arc::new(MemoryQueues::default());
    queues.add(queue.clone());
    let mut deps = Dependencies::memory(queues);
    deps.ports = Ports {
        ecs: ecs.clone(),
        targets: Arc::new(HealthyTargets),
        ..Ports::memory()
    };
    deps.journal = Some(Arc::new(MemoryJournal::default()));
    let app = spawn_app(CONFIG, deps).await;
    let journal = app.journal.clone();
    let send = |body: serde_json::Value| {
        let q = queue.clone();
        async move {
            q.send(&OutgoingMessage {
                body: body.to_string(),
                ..Default::default()
            })
            .await
            .unwrap()
        }
    };
    send(json!({"source": "custom.app", "detail-type": "Start ECS Task", "detail": {"service": "auth"}})).await;
    let start = Instant::now();
    while ecs.describes.load(Ordering::SeqCst) < 1 {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The task is PENDING and the workflow sleeps for 15 s. ECS reports it RUNNING.
    tokio::time::sleep(Duration::from_millis(200)).await;
    ecs.running.store(true, Ordering::SeqCst);
    let woken_at = Instant::now();
    send(
        json!({"id": "tsc-1", "source": "aws.ecs", "detail-type": "ECS Task State Change",
        "detail": {"taskArn": TASK, "lastStatus": "RUNNING"}}),
    )
    .await;
    while queue.deleted() < 2 {
        assert!(
            woken_at.elapsed() < Duration::from_secs(10),
            "the wait was not cut short"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        woken_at.elapsed() < Duration::from_secs(5),
        "took {:?}",
        woken_at.elapsed()
    );
    assert_eq!(ecs.describes.load(Ordering::SeqCst), 2);
    let started = journal
        .list(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.workflow == "ecs_start")
        .unwrap();
    assert_eq!(started.status, Status::Succeeded);
    assert_eq!(
        started.step("sleep-running#1").unwrap().output,
        Some(json!({"woken": true}))
    );
    let event = journal.get("task-events:tsc-1").await.unwrap().unwrap();
    assert_eq!(event.output.unwrap()["woken"], true);
    app.stop().await;
}

/// Two processes on one shared journal (two apps here, each with its own queue, over one
/// DynamoDB table of the emulator): the "ECS Task State Change" event reaches the process that
/// does not run the waiting `ecs_start`; the wake goes through the journal and ends the wait
/// within about a second, not at the 15 s poll.
#[actix_rt::test]
async fn a_wake_reaches_the_instance_sleeping_in_another_process_of_a_shared_journal() {
    let table = support::unique("wake-journal");
    support::service::create_journal_table(&table).await;
    let ecs = Arc::new(SlowEcs::default());
    let mut apps = Vec::new();
    let mut queues_of = Vec::new();
    for owner in ["process-a", "process-b"] {
        let queue = Arc::new(MemoryQueue::new("q"));
        let queues = Arc::new(MemoryQueues::default());
        queues.add(queue.clone());
        let mut deps = Dependencies::memory(queues);
        deps.ports = Ports {
            ecs: ecs.clone(),
            targets: Arc::new(HealthyTargets),
            ..Ports::memory()
        };
        deps.journal = Some(tugboat::aws::journal::DynamoJournal::new(
            support::clients().await.dynamodb,
            &table,
            owner,
            Duration::from_secs(30),
        ));
        apps.push(spawn_app(CONFIG, deps).await);
        queues_of.push(queue);
    }
    let send = |q: &Arc<MemoryQueue>, body: serde_json::Value| {
        let q = q.clone();
        async move {
            q.send(&OutgoingMessage {
                body: body.to_string(),
                ..Default::default()
            })
            .await
            .unwrap()
        }
    };
    send(&queues_of[0], json!({"source": "custom.app", "detail-type": "Start ECS Task", "detail": {"service": "auth"}})).await;
    let start = Instant::now();
    while ecs.describes.load(Ordering::SeqCst) < 1 {
        assert!(start.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    ecs.running.store(true, Ordering::SeqCst);
    let woken_at = Instant::now();
    send(
        &queues_of[1],
        json!({"id": "tsc-2", "source": "aws.ecs", "detail-type": "ECS Task State Change",
        "detail": {"taskArn": TASK, "lastStatus": "RUNNING"}}),
    )
    .await;
    while queues_of[0].deleted() < 1 {
        assert!(
            woken_at.elapsed() < Duration::from_secs(10),
            "the wait was not cut short"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        woken_at.elapsed() < Duration::from_secs(3),
        "took {:?}",
        woken_at.elapsed()
    );
    let journal = apps[0].journal.clone();
    let started = journal
        .list(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.workflow == "ecs_start")
        .unwrap();
    assert_eq!(started.status, Status::Succeeded);
    assert_eq!(
        started.step("sleep-running#1").unwrap().output,
        Some(json!({"woken": true}))
    );
    let event = journal.get("task-events:tsc-2").await.unwrap().unwrap();
    assert!(
        event
            .steps
            .iter()
            .any(|s| s.output.as_ref().is_some_and(|o| o["signalled"] == true)),
        "{event:?}"
    );
    for app in apps {
        app.stop().await;
    }
}
