//! The spot seed plan's reaction time, end to end against the local emulator: from sending an
//! interruption warning to the queue until tugboat calls `UpdateContainerInstancesState`
//! (DRAINING), one notice at a time, for `--notices` notices (distinct instance and minute
//! each, so each is its own drain). Printed beside it: the emulator's own time for the calls
//! that must come first (`ListContainerInstances` + `DescribeContainerInstances`, timed
//! around the port), and what is left — tugboat's receive, route, journal and dispatch, plus
//! the emulator's SQS long poll handing the message over.
//!
//!     cargo bench --bench spot_emulator -- --notices 200 --instances 10

#[path = "common.rs"]
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::json;
use tokio::sync::mpsc;
use tugboat::contract::StepError;
use tugboat::ports::{ContainerInstance, Ecs, RunTaskRequest, TaskStatus};

/// The ECS port, timed: how long finding the container instances took, and when the DRAINING
/// call started.
#[derive(Debug)]
struct TimedEcs {
    inner: Arc<dyn Ecs>,
    find: Mutex<Duration>,
    drained: mpsc::UnboundedSender<(Instant, Duration)>,
}

#[async_trait]
impl Ecs for TimedEcs {
    async fn run_task(&self, r: &RunTaskRequest) -> Result<String, StepError> {
        self.inner.run_task(r).await
    }
    async fn describe_task(&self, c: &str, t: &str) -> Result<TaskStatus, StepError> {
        self.inner.describe_task(c, t).await
    }
    async fn stop_task(&self, c: &str, t: &str, r: &str) -> Result<(), StepError> {
        self.inner.stop_task(c, t, r).await
    }
    async fn container_instances(
        &self,
        c: &str,
        i: &str,
    ) -> Result<Vec<ContainerInstance>, StepError> {
        let start = Instant::now();
        let r = self.inner.container_instances(c, i).await;
        *self.find.lock().unwrap() = start.elapsed();
        r
    }
    async fn drain(&self, c: &str, arns: &[String]) -> Result<(), StepError> {
        let find = *self.find.lock().unwrap();
        let _ = self.drained.send((Instant::now(), find));
        self.inner.drain(c, arns).await
    }
    async fn tasks_left(&self, c: &str, cis: &[String]) -> Result<u32, StepError> {
        self.inner.tasks_left(c, cis).await
    }
    async fn task_ips(&self, c: &str, ci: &str) -> Result<Vec<String>, StepError> {
        self.inner.task_ips(c, ci).await
    }
}

async fn run(notices: usize, instances: usize) {
    let c = support::clients().await;
    let p = support::unique("spotbench");
    let cluster = format!("{p}-cluster");
    support::ecs_cluster(&cluster).await;
    let mut ids = Vec::new();
    for _ in 0..instances {
        let id = support::ec2_instance();
        c.ecs
            .register_container_instance()
            .cluster(&cluster)
            .instance_identity_document(json!({"instanceId": id}).to_string())
            .send()
            .await
            .unwrap();
        ids.push(id);
    }
    let queue = format!("{p}-q");
    let queue_url = support::service::create_queue(&queue).await;
    support::service::create_queue(&format!("{p}-dlq")).await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}[[queues]]\nname = \"{queue}\"\ndlq = \"{p}-dlq\"\nreceive_wait = \"20s\"\n\n\
         [[routes]]\nname = \"spot\"\npattern = {{ source = [\"aws.ec2\"] }}\nworkflow = \"spot_drain\"\n\n\
         [spot]\nclusters = [\"{cluster}\"]\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        support::aws_section()
    );
    let mut deps = support::app::emulator_deps(&text, &dir.path().join("journal")).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    deps.ports.ecs = Arc::new(TimedEcs {
        inner: deps.ports.ecs.clone(),
        find: Mutex::new(Duration::ZERO),
        drained: tx,
    });
    let app = support::app::spawn_app(&text, deps).await;
    // One warm-up notice (connections, first journal write), not counted.
    let base = time::OffsetDateTime::now_utc();
    let mut totals = Vec::new();
    let mut finds = Vec::new();
    let mut rests = Vec::new();
    for n in 0..=notices {
        let instance = &ids[n % ids.len()];
        // A minute apart: each notice is its own drain.
        let at = base + time::Duration::minutes(n as i64);
        let event = json!({"version": "0", "id": format!("{p}-{n}"), "source": "aws.ec2",
            "detail-type": "EC2 Spot Instance Interruption Warning", "account": "123456789012",
            "time": at.format(&time::format_description::well_known::Rfc3339).unwrap(),
            "region": "us-east-1", "resources": [],
            "detail": {"instance-id": instance, "instance-action": "terminate"}});
        let sent = Instant::now();
        support::service::send(&queue_url, &event.to_string()).await;
        let (called, find) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("no DRAINING call within 30 s")
            .unwrap();
        if n == 0 {
            continue;
        }
        let total = called.duration_since(sent);
        totals.push(total);
        finds.push(find);
        rests.push(total.saturating_sub(find));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let line = |name: &str, v: &mut Vec<Duration>| {
        println!(
            "{name:<58} p50 {:>7.1} ms   p99 {:>7.1} ms",
            ms(common::percentile(v, 50.0)),
            ms(common::percentile(v, 99.0))
        )
    };
    println!("{notices} notices, one at a time, {instances} container instances in the cluster:");
    line("notice sent -> DRAINING call", &mut totals);
    line(
        "  of which the emulator finding the container instance",
        &mut finds,
    );
    line(
        "  the rest (SQS hand-over, route, journal, dispatch)",
        &mut rests,
    );
    app.stop().await;
}

fn main() {
    let notices = common::arg("--notices", 200);
    let instances = common::arg("--instances", 10);
    println!("machine: {}", common::machine());
    common::in_system(run(notices, instances));
}
