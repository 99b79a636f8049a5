//! `ecs_start` waits wake at once when an "ECS Task State Change" event for the task arrives
//! (routed to `ecs_task_event`), instead of at the next poll. In process, with fakes of the ECS
//! and target-group ports: the emulator has no PENDING phase to wake from.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::json;
use tokio::sync::watch;

use tugboat::actors::intake::{Intake, IntakeConfig, IntakeStats};
use tugboat::config::{PatternSource, RouteConfig, ServiceMapping, UnmatchedPolicy};
use tugboat::engine::{Dispatcher, Engine, EngineOptions, PortEffects};
use tugboat::journal::memory::MemoryJournal;
use tugboat::journal::{Journal, Status};
use tugboat::ports::memory::MemoryQueue;
use tugboat::ports::{
    Ecs, OutgoingMessage, Queue, RunTaskRequest, TargetGroups, TargetHealth, TaskStatus,
};
use tugboat::routing::Router;
use tugboat::workflows::{Registry, StepError};

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
        })
    }
    async fn stop_task(&self, _c: &str, _t: &str, _r: &str) -> Result<(), StepError> {
        Ok(())
    }
}

#[derive(Debug, Default)]
struct HealthyTargets;

#[async_trait]
impl TargetGroups for HealthyTargets {
    async fn register(&self, _tg: &str, _ip: &str, _port: u16) -> Result<(), StepError> {
        Ok(())
    }
    async fn deregister(&self, _tg: &str, _ip: &str, _port: u16) -> Result<(), StepError> {
        Ok(())
    }
    async fn health(&self, _tg: &str, _ip: &str, _port: u16) -> Result<TargetHealth, StepError> {
        Ok(TargetHealth {
            state: "healthy".into(),
            reason: None,
            description: None,
        })
    }
}

fn route(name: &str, pattern: &str, workflow: &str, params: &str) -> RouteConfig {
    RouteConfig {
        name: name.into(),
        pattern: PatternSource::Json(pattern.into()),
        workflow: workflow.into(),
        params: toml::from_str(params).unwrap(),
        queues: None,
    }
}

#[actix_rt::test]
async fn a_task_state_change_event_ends_the_running_wait_at_once() {
    let services = BTreeMap::from([(
        "auth".to_owned(),
        ServiceMapping {
            cluster: "apps".into(),
            task_definition: "auth:1".into(),
            target_group: "tg".into(),
            container_name: "auth".into(),
            container_port: 8080,
            subnets: vec!["s".into()],
            security_groups: vec![],
            assign_public_ip: false,
        },
    )]);
    let ecs = Arc::new(SlowEcs::default());
    let effects = PortEffects {
        ecs: Some(ecs.clone()),
        targets: Some(Arc::new(HealthyTargets)),
        ..Default::default()
    };
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::default());
    let (shutdown_tx, shutdown) = watch::channel(false);
    let engine = Arc::new(Engine::new(
        journal.clone(),
        Registry::with_services(services),
        Arc::new(effects),
        EngineOptions::default(),
        shutdown.clone(),
    ));
    let router = Router::from_config(&[
        route(
            "start",
            r#"{"detail-type":["Start ECS Task"]}"#,
            "ecs_start",
            "poll_interval = \"15s\"",
        ),
        route(
            "task-events",
            r#"{"source":["aws.ecs"],"detail-type":["ECS Task State Change"]}"#,
            "ecs_task_event",
            "",
        ),
    ])
    .unwrap();
    let queue = Arc::new(MemoryQueue::new("q"));
    let intake = Arc::new(Intake {
        config: IntakeConfig {
            queue: "q".into(),
            concurrency: 10,
            visibility_timeout: Duration::from_secs(60),
            wait: Duration::from_millis(20),
            unmatched: UnmatchedPolicy::Acknowledge,
            shutdown_deadline: Duration::from_secs(2),
        },
        queue: queue.clone(),
        dlq: None,
        router: Arc::new(router),
        dispatcher: Dispatcher::new(engine),
        stats: Arc::new(IntakeStats::default()),
    });
    let handle = actix_rt::spawn(intake.run(shutdown));
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
        .unwrap()
        .into_iter()
        .find(|r| r.workflow == "ecs_start")
        .unwrap();
    assert_eq!(started.status, Status::Succeeded);
    assert_eq!(
        started.step("sleep-running#1").unwrap().output,
        Some(json!({"woken": true}))
    );
    let event = journal.get("task-events:tsc-1").unwrap().unwrap();
    assert_eq!(event.output.unwrap()["woken"], true);
    shutdown_tx.send(true).unwrap();
    handle.await.unwrap();
}
