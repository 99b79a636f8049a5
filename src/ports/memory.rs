//! In-memory implementations of the ports, for unit tests and benchmarks.
//!
//! They model what the tests need to see: visibility timeouts and redelivery, receive counts,
//! a redrive policy that moves a message to the DLQ as SQS does, message delays, stale receipt
//! handles, and injected failures; ECS tasks started once per client token; target groups.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;

use super::{
    BatchFailure, ContainerInstance, Ecs, OutgoingMessage, Queue, QueueError, QueueSource,
    ReceivedMessage, RunTaskRequest, TargetGroups, TargetHealth, TaskStatus,
};
use crate::contract::{StepError, Topic};

#[derive(Debug)]
struct Stored {
    id: String,
    message: OutgoingMessage,
    receive_count: u32,
    visible_at: Instant,
    /// The handle of the latest receive; older handles are stale, as in SQS.
    handle: Option<String>,
}

/// An SQS-like queue in memory.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    name: String,
    state: Mutex<MemoryState>,
    /// SQS's redrive policy: a receive that would exceed the count moves the message here.
    redrive: Option<(u32, Arc<MemoryQueue>)>,
}

#[derive(Debug, Default)]
struct MemoryState {
    /// In send order, keyed by a sequence number.
    messages: BTreeMap<u64, Stored>,
    /// The current receipt handle of each in-flight message → its sequence number.
    handles: HashMap<String, u64>,
    next_id: u64,
    /// Whole-call failures to return before behaving normally again (throttling, outages).
    failures_to_inject: u32,
    deleted: u64,
    /// When a receive first returned messages (benchmarks time from there).
    first_delivered: Option<Instant>,
}

impl MemoryQueue {
    pub fn new(name: impl Into<String>) -> MemoryQueue {
        MemoryQueue {
            name: name.into(),
            state: Mutex::default(),
            redrive: None,
        }
    }

    /// A queue with a redrive policy, as SQS applies it: when a receive would make a message's
    /// receive count exceed `max_receive_count`, the message moves to `dlq` instead.
    pub fn with_redrive(
        name: impl Into<String>,
        max_receive_count: u32,
        dlq: Arc<MemoryQueue>,
    ) -> MemoryQueue {
        MemoryQueue {
            redrive: Some((max_receive_count, dlq)),
            ..MemoryQueue::new(name)
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // A test that panicked while holding the lock has already failed; keep the data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the next `n` calls fail with a retryable error.
    pub fn inject_failures(&self, n: u32) {
        self.lock().failures_to_inject = n;
    }

    /// Messages still in the queue, visible or in flight.
    pub fn len(&self) -> usize {
        self.lock().messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many messages have been deleted.
    pub fn deleted(&self) -> u64 {
        self.lock().deleted
    }

    /// When a receive first returned messages, if one has.
    pub fn first_delivered(&self) -> Option<Instant> {
        self.lock().first_delivered
    }

    /// Every stored message with its attributes.
    pub fn messages(&self) -> Vec<OutgoingMessage> {
        self.lock()
            .messages
            .values()
            .map(|m| m.message.clone())
            .collect()
    }

    /// Makes every in-flight message visible now, as if its visibility timeout had expired.
    pub fn expire_visibility(&self) {
        let now = Instant::now();
        for m in self.lock().messages.values_mut() {
            m.visible_at = now;
        }
    }

    fn fail_if_injected(state: &mut MemoryState) -> Result<(), QueueError> {
        if state.failures_to_inject > 0 {
            state.failures_to_inject -= 1;
            return Err(QueueError {
                message: "ThrottlingException: injected by the test".into(),
                retryable: true,
            });
        }
        Ok(())
    }

    fn handle_index(state: &MemoryState, handle: &str) -> Option<u64> {
        state.handles.get(handle).copied()
    }
}

impl MemoryState {
    /// Stores messages (visible after their delay); returns their ids.
    fn push_all(
        &mut self,
        queue: &str,
        messages: Vec<OutgoingMessage>,
        now: Instant,
    ) -> Vec<String> {
        let mut ids = Vec::with_capacity(messages.len());
        for m in messages {
            self.next_id += 1;
            let id = format!("{queue}-{:08}", self.next_id);
            let visible_at = now + m.delay.unwrap_or_default();
            self.messages.insert(
                self.next_id,
                Stored {
                    id: id.clone(),
                    message: m,
                    receive_count: 0,
                    visible_at,
                    handle: None,
                },
            );
            ids.push(id);
        }
        ids
    }
}

fn invalid_handle(index: usize) -> BatchFailure {
    BatchFailure {
        index,
        code: "ReceiptHandleIsInvalid".into(),
        message: "the receipt handle is stale or unknown".into(),
        retryable: false,
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn receive(
        &self,
        max: u32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let deadline = Instant::now() + wait;
        loop {
            {
                let mut state = self.lock();
                Self::fail_if_injected(&mut state)?;
                let now = Instant::now();
                let mut out = Vec::new();
                let mut moved = Vec::new();
                let MemoryState {
                    messages,
                    next_id,
                    handles,
                    ..
                } = &mut *state;
                for (seq, m) in messages.iter_mut() {
                    if out.len() as u32 >= max.clamp(1, 10) {
                        break;
                    }
                    if m.visible_at <= now
                        && let Some((max_count, _)) = &self.redrive
                        && m.receive_count >= *max_count
                    {
                        moved.push(*seq);
                        continue;
                    }
                    if m.visible_at <= now {
                        *next_id += 1;
                        let handle = format!("{}#{}", m.id, next_id);
                        if let Some(old) = m.handle.replace(handle.clone()) {
                            handles.remove(&old);
                        }
                        handles.insert(handle.clone(), *seq);
                        m.receive_count += 1;
                        m.visible_at = now + visibility;
                        out.push(ReceivedMessage {
                            message_id: m.id.clone(),
                            receipt_handle: handle,
                            body: m.message.body.clone(),
                            attributes: m.message.attributes.clone(),
                            receive_count: m.receive_count,
                            trace_header: None,
                            sent_ms: None,
                            sender_id: None,
                        });
                    }
                }
                let moved: Vec<OutgoingMessage> = moved
                    .into_iter()
                    .filter_map(|seq| messages.remove(&seq))
                    .map(|m| {
                        if let Some(h) = &m.handle {
                            handles.remove(h);
                        }
                        m.message
                    })
                    .collect();
                if let (false, Some((_, dlq))) = (moved.is_empty(), &self.redrive) {
                    dlq.lock().push_all(&dlq.name, moved, now);
                }
                if !out.is_empty() {
                    state.first_delivered.get_or_insert(now);
                    return Ok(out);
                }
                if Instant::now() >= deadline {
                    return Ok(out);
                }
            }
            tokio::time::sleep(Duration::from_millis(5).min(wait)).await;
        }
    }

    async fn send_batch(
        &self,
        messages: &[OutgoingMessage],
    ) -> Result<Vec<Result<String, BatchFailure>>, QueueError> {
        let mut state = self.lock();
        Self::fail_if_injected(&mut state)?;
        let ids = state.push_all(&self.name, messages.to_vec(), Instant::now());
        Ok(ids.into_iter().map(Ok).collect())
    }

    async fn delete_batch(
        &self,
        receipt_handles: &[String],
    ) -> Result<Vec<BatchFailure>, QueueError> {
        let mut state = self.lock();
        Self::fail_if_injected(&mut state)?;
        let mut failures = Vec::new();
        for (index, handle) in receipt_handles.iter().enumerate() {
            match Self::handle_index(&state, handle) {
                Some(seq) => {
                    state.handles.remove(handle);
                    state.messages.remove(&seq);
                    state.deleted += 1;
                }
                None => failures.push(invalid_handle(index)),
            }
        }
        Ok(failures)
    }

    async fn change_visibility_batch(
        &self,
        receipt_handles: &[String],
        timeout: Duration,
    ) -> Result<Vec<BatchFailure>, QueueError> {
        let mut state = self.lock();
        Self::fail_if_injected(&mut state)?;
        let now = Instant::now();
        let mut failures = Vec::new();
        for (index, handle) in receipt_handles.iter().enumerate() {
            match Self::handle_index(&state, handle) {
                Some(seq) => {
                    if let Some(m) = state.messages.get_mut(&seq) {
                        m.visible_at = now + timeout;
                    }
                }
                None => failures.push(invalid_handle(index)),
            }
        }
        Ok(failures)
    }

    async fn max_receive_count(&self) -> Result<Option<u32>, QueueError> {
        Ok(self.redrive.as_ref().map(|(n, _)| *n))
    }
}

/// Named in-memory queues, opened as the configuration names them.
#[derive(Debug, Default)]
pub struct MemoryQueues {
    queues: Mutex<BTreeMap<String, Arc<MemoryQueue>>>,
}

impl MemoryQueues {
    /// Adds `queue` under its name.
    pub fn add(&self, queue: Arc<MemoryQueue>) -> Arc<MemoryQueue> {
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(queue.name().to_owned(), queue.clone());
        queue
    }
}

#[async_trait]
impl QueueSource for MemoryQueues {
    async fn open(&self, name_or_url: &str) -> Result<Arc<dyn Queue>, QueueError> {
        let name = name_or_url.rsplit('/').next().unwrap_or(name_or_url);
        let queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        match queues.get(name) {
            Some(q) => Ok(q.clone()),
            None => Err(QueueError {
                message: format!("AWS.SimpleQueueService.NonExistentQueue: no queue {name:?}"),
                retryable: false,
            }),
        }
    }
}

/// A notifier that keeps what it was asked to publish.
#[derive(Debug, Default)]
pub struct MemoryNotifier {
    published: Mutex<Vec<(Topic, String, Value, String)>>,
    published_to: Mutex<Vec<PublishedTo>>,
}

/// A publish to a topic by ARN: (topic ARN, subject, message, attributes).
pub type PublishedTo = (String, String, Value, BTreeMap<String, String>);

impl MemoryNotifier {
    /// (topic ARN, subject, message, attributes) of every publish to a topic by ARN.
    pub fn published_to(&self) -> Vec<PublishedTo> {
        self.published_to
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// (topic, subject, message, deduplication id) of every publish, in order.
    pub fn published(&self) -> Vec<(Topic, String, Value, String)> {
        self.published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait]
impl super::Notifier for MemoryNotifier {
    async fn publish(
        &self,
        topic: Topic,
        subject: &str,
        message: &Value,
        deduplication_id: &str,
        _attributes: &BTreeMap<String, String>,
    ) -> Result<Option<String>, StepError> {
        let mut p = self.published.lock().unwrap_or_else(|e| e.into_inner());
        p.push((
            topic,
            subject.to_owned(),
            message.clone(),
            deduplication_id.to_owned(),
        ));
        Ok(Some(format!("memory-{}", p.len())))
    }

    async fn publish_to(
        &self,
        topic_arn: &str,
        subject: &str,
        message: &Value,
        _deduplication_id: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<String, StepError> {
        let mut p = self.published_to.lock().unwrap_or_else(|e| e.into_inner());
        p.push((
            topic_arn.to_owned(),
            subject.to_owned(),
            message.clone(),
            attributes.clone(),
        ));
        Ok(format!("m-{}", p.len()))
    }
}

/// ECS in memory: `RunTask` starts one task per client token (as ECS does), tasks run at once
/// with an IP, `StopTask` stops them. Every call is counted.
#[derive(Debug, Default)]
pub struct MemoryEcs {
    state: Mutex<EcsState>,
}

#[derive(Debug, Default)]
struct EcsState {
    /// client token → task ARN.
    by_token: HashMap<String, String>,
    /// task ARN → (last status, stop calls).
    tasks: BTreeMap<String, (String, u32)>,
    /// Each task's `startedBy`.
    started_by: HashMap<String, String>,
    /// (cluster, container instance), and the IPs of the tasks on each.
    container_instances: Vec<(String, ContainerInstance, Vec<String>)>,
    /// Container instances whose tasks stay when drained (standalone tasks), by ARN, with
    /// how many; every other one's tasks leave at the drain, as a service's tasks do.
    staying: HashMap<String, u32>,
    /// Every call, in order, as "Operation cluster arg".
    calls: Vec<String>,
}

impl EcsState {
    /// The ARNs of the container instances on EC2 instance `ec2_instance`.
    fn container_instances_on(&self, ec2_instance: &str) -> Vec<String> {
        self.container_instances
            .iter()
            .filter(|(_, ci, _)| ci.ec2_instance == ec2_instance)
            .map(|(_, ci, _)| ci.arn.clone())
            .collect()
    }
}

impl MemoryEcs {
    fn lock(&self) -> std::sync::MutexGuard<'_, EcsState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a container instance of `cluster` on EC2 instance `ec2_instance`, running
    /// awsvpc tasks with `task_ips`.
    pub fn add_container_instance(&self, cluster: &str, ec2_instance: &str, task_ips: &[&str]) {
        let mut s = self.lock();
        let arn = format!(
            "arn:aws:ecs:us-east-1:123456789012:container-instance/{cluster}/ci{}",
            s.container_instances.len() + 1
        );
        let ci = ContainerInstance {
            arn,
            ec2_instance: ec2_instance.to_owned(),
            status: "ACTIVE".into(),
        };
        let ips = task_ips.iter().map(|s| s.to_string()).collect();
        s.container_instances.push((cluster.to_owned(), ci, ips));
    }

    /// Makes the tasks on `ec2_instance`'s container instances stay when it is drained (as
    /// standalone tasks do), `count` of them, until [`MemoryEcs::tasks_leave`].
    pub fn tasks_stay(&self, ec2_instance: &str, count: u32) {
        let mut s = self.lock();
        for arn in s.container_instances_on(ec2_instance) {
            s.staying.insert(arn, count);
        }
    }

    /// The tasks that stayed on `ec2_instance` stop.
    pub fn tasks_leave(&self, ec2_instance: &str) {
        let mut s = self.lock();
        for arn in s.container_instances_on(ec2_instance) {
            s.staying.remove(&arn);
        }
    }

    /// The container instances with their status.
    pub fn container_instance_states(&self) -> Vec<ContainerInstance> {
        self.lock()
            .container_instances
            .iter()
            .map(|(_, ci, _)| ci.clone())
            .collect()
    }

    /// The container-instance calls made, in order ("DescribeContainerInstances cluster i-…",
    /// "UpdateContainerInstancesState cluster arn…").
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Every task started, with its last status and how often `StopTask` was called for it.
    pub fn tasks(&self) -> Vec<(String, String, u32)> {
        self.lock()
            .tasks
            .iter()
            .map(|(arn, (status, stops))| (arn.clone(), status.clone(), *stops))
            .collect()
    }
}

#[async_trait]
impl Ecs for MemoryEcs {
    async fn run_task(&self, request: &RunTaskRequest) -> Result<String, StepError> {
        let mut s = self.lock();
        if let Some(arn) = s.by_token.get(&request.client_token) {
            return Ok(arn.clone());
        }
        let arn = format!(
            "arn:aws:ecs:us-east-1:123456789012:task/{}/t{}",
            request.cluster,
            s.tasks.len() + 1
        );
        s.by_token.insert(request.client_token.clone(), arn.clone());
        s.tasks.insert(arn.clone(), ("RUNNING".into(), 0));
        s.started_by.insert(arn.clone(), request.started_by.clone());
        Ok(arn)
    }

    async fn describe_task(&self, _cluster: &str, task: &str) -> Result<TaskStatus, StepError> {
        let s = self.lock();
        let Some((status, _)) = s.tasks.get(task) else {
            return Err(StepError::permanent(format!("task {task} not found")));
        };
        let n = s.tasks.keys().position(|k| k == task).unwrap_or(0);
        Ok(TaskStatus {
            task_arn: task.to_owned(),
            last_status: status.clone(),
            stopped_reason: None,
            stop_code: None,
            container_reasons: vec![],
            private_ip: (status == "RUNNING").then(|| format!("10.0.0.{}", n + 1)),
            started_by: s.started_by.get(task).cloned(),
        })
    }

    async fn stop_task(&self, _cluster: &str, task: &str, _reason: &str) -> Result<(), StepError> {
        let mut s = self.lock();
        match s.tasks.get_mut(task) {
            Some(t) => {
                t.0 = "STOPPED".into();
                t.1 += 1;
                Ok(())
            }
            None => Err(StepError::permanent(format!("task {task} not found"))),
        }
    }

    async fn container_instances(
        &self,
        cluster: &str,
        ec2_instance: &str,
    ) -> Result<Vec<ContainerInstance>, StepError> {
        let mut s = self.lock();
        s.calls.push(format!(
            "DescribeContainerInstances {cluster} {ec2_instance}"
        ));
        Ok(s.container_instances
            .iter()
            .filter(|(c, ci, _)| c == cluster && ci.ec2_instance == ec2_instance)
            .map(|(_, ci, _)| ci.clone())
            .collect())
    }

    async fn drain(&self, cluster: &str, container_instances: &[String]) -> Result<(), StepError> {
        let mut s = self.lock();
        for arn in container_instances {
            s.calls
                .push(format!("UpdateContainerInstancesState {cluster} {arn}"));
            for (c, ci, _) in &mut s.container_instances {
                if c == cluster && &ci.arn == arn {
                    ci.status = "DRAINING".into();
                }
            }
        }
        Ok(())
    }

    async fn tasks_left(
        &self,
        cluster: &str,
        container_instances: &[String],
    ) -> Result<u32, StepError> {
        let mut s = self.lock();
        s.calls.push(format!(
            "DescribeContainerInstances {cluster} {}",
            container_instances.join(",")
        ));
        let mut left = 0;
        for (c, ci, ips) in &s.container_instances {
            if c == cluster && container_instances.contains(&ci.arn) {
                left += match s.staying.get(&ci.arn) {
                    Some(n) => *n,
                    None if ci.status == "DRAINING" => 0,
                    None => ips.len() as u32,
                };
            }
        }
        Ok(left)
    }

    async fn task_ips(
        &self,
        cluster: &str,
        container_instance: &str,
    ) -> Result<Vec<String>, StepError> {
        let s = self.lock();
        Ok(s.container_instances
            .iter()
            .filter(|(c, ci, _)| c == cluster && ci.arn == container_instance)
            .flat_map(|(_, _, ips)| ips.clone())
            .collect())
    }
}

/// Target groups in memory: registered targets are healthy at once; names resolve to
/// `arn:…:targetgroup/<name>/1`.
#[derive(Debug, Default)]
pub struct MemoryTargets {
    registered: Mutex<Vec<(String, String, u16)>>,
}

impl MemoryTargets {
    /// Every registered (target group, IP, port).
    pub fn registered(&self) -> Vec<(String, String, u16)> {
        self.registered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait]
impl TargetGroups for MemoryTargets {
    async fn resolve(&self, name_or_arn: &str) -> Result<String, StepError> {
        if name_or_arn.starts_with("arn:") {
            return Ok(name_or_arn.to_owned());
        }
        Ok(format!(
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/{name_or_arn}/1"
        ))
    }

    async fn register(&self, target_group: &str, ip: &str, port: u16) -> Result<(), StepError> {
        let mut r = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        let target = (target_group.to_owned(), ip.to_owned(), port);
        if !r.contains(&target) {
            r.push(target);
        }
        Ok(())
    }

    async fn deregister(&self, target_group: &str, ip: &str, port: u16) -> Result<(), StepError> {
        let mut r = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        r.retain(|t| *t != (target_group.to_owned(), ip.to_owned(), port));
        Ok(())
    }

    async fn targets(&self, target_group: &str) -> Result<Vec<(String, u16)>, StepError> {
        let r = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        Ok(r.iter()
            .filter(|(tg, _, _)| tg == target_group)
            .map(|(_, id, port)| (id.clone(), *port))
            .collect())
    }

    async fn health(
        &self,
        target_group: &str,
        ip: &str,
        port: u16,
    ) -> Result<TargetHealth, StepError> {
        let r = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        let known = r.contains(&(target_group.to_owned(), ip.to_owned(), port));
        Ok(TargetHealth {
            state: if known { "healthy" } else { "unregistered" }.into(),
            reason: None,
            description: None,
        })
    }
}

/// Attributes as a map, for building test messages.
pub fn attributes<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(body: &str) -> OutgoingMessage {
        OutgoingMessage {
            body: body.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn redelivers_after_visibility_and_rejects_stale_handles() {
        let q = MemoryQueue::new("q");
        q.send(&msg("a")).await.unwrap();
        let first = q
            .receive(10, Duration::ZERO, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(first.len(), 1);
        assert!(
            q.receive(10, Duration::ZERO, Duration::from_secs(30))
                .await
                .unwrap()
                .is_empty()
        );
        q.expire_visibility();
        let second = q
            .receive(10, Duration::ZERO, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(second[0].receive_count, 2);
        let stale = q
            .delete_batch(&[first[0].receipt_handle.clone()])
            .await
            .unwrap();
        assert_eq!(stale[0].code, "ReceiptHandleIsInvalid");
        assert!(
            q.delete_batch(&[second[0].receipt_handle.clone()])
                .await
                .unwrap()
                .is_empty()
        );
        assert!(q.is_empty());
        assert_eq!(q.deleted(), 1);
    }

    #[tokio::test]
    async fn injected_failures_are_retryable_then_clear() {
        let q = MemoryQueue::new("q");
        q.inject_failures(1);
        assert!(q.send(&msg("a")).await.unwrap_err().retryable);
        assert!(q.send(&msg("a")).await.is_ok());
    }
}

/// Records publications per broker; [`MemoryMqtt::set_down`] makes a broker refuse them
/// (retryable), as a stopped broker does.
#[derive(Debug, Default, Clone)]
pub struct MemoryMqtt {
    state: Arc<Mutex<MemoryMqttState>>,
}

#[derive(Debug, Default)]
struct MemoryMqttState {
    published: Vec<(String, super::mqtt::Publication)>,
    down: bool,
}

impl MemoryMqtt {
    /// Every publication so far, with its broker's name.
    pub fn published(&self) -> Vec<(String, super::mqtt::Publication)> {
        self.state.lock().unwrap().published.clone()
    }

    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }
}

#[derive(Debug)]
struct MemoryBroker {
    name: String,
    mqtt: MemoryMqtt,
}

#[async_trait]
impl super::mqtt::Broker for MemoryBroker {
    async fn publish(
        &self,
        publication: super::mqtt::Publication,
    ) -> Result<(), super::mqtt::MqttError> {
        let mut s = self.mqtt.state.lock().unwrap();
        if s.down {
            return Err(super::mqtt::MqttError {
                message: format!("broker {} is not connected", self.name),
                retryable: true,
            });
        }
        s.published.push((self.name.clone(), publication));
        Ok(())
    }
}

impl super::mqtt::Mqtt for MemoryMqtt {
    fn broker(
        &self,
        name: &str,
        _settings: &super::mqtt::BrokerSettings,
    ) -> Result<Arc<dyn super::mqtt::Broker>, String> {
        Ok(Arc::new(MemoryBroker {
            name: name.to_string(),
            mqtt: self.clone(),
        }))
    }
}

/// Answers requests from a script (one answer per request, then 200 once the script is
/// used up) and records every body it was sent, per destination.
#[derive(Debug, Default, Clone)]
pub struct MemoryHttp {
    state: Arc<Mutex<MemoryHttpState>>,
}

#[derive(Debug, Default)]
struct MemoryHttpState {
    script: std::collections::VecDeque<Result<super::http::Response, super::http::TransportError>>,
    sent: Vec<(String, Value)>,
}

impl MemoryHttp {
    /// Answers the next request with `status` (and `retry_after`).
    pub fn answer(&self, status: u16, retry_after: Option<Duration>, body: &str) {
        self.state
            .lock()
            .unwrap()
            .script
            .push_back(Ok(super::http::Response {
                status,
                retry_after,
                excerpt: body.to_string(),
            }));
    }

    /// Fails the next request as a connection error would.
    pub fn fail(&self, message: &str) {
        self.state
            .lock()
            .unwrap()
            .script
            .push_back(Err(super::http::TransportError(message.to_string())));
    }

    /// Every body sent so far, with its destination's name.
    pub fn sent(&self) -> Vec<(String, Value)> {
        self.state.lock().unwrap().sent.clone()
    }
}

#[derive(Debug)]
struct MemoryDestination {
    name: String,
    http: MemoryHttp,
}

#[async_trait]
impl super::http::Destination for MemoryDestination {
    async fn send(
        &self,
        body: &Value,
    ) -> Result<super::http::Response, super::http::TransportError> {
        let mut s = self.http.state.lock().unwrap();
        s.sent.push((self.name.clone(), body.clone()));
        s.script.pop_front().unwrap_or(Ok(super::http::Response {
            status: 200,
            retry_after: None,
            excerpt: String::new(),
        }))
    }
}

impl super::http::Http for MemoryHttp {
    fn destination(
        &self,
        name: &str,
        _settings: &super::http::DestinationSettings,
    ) -> Result<Arc<dyn super::http::Destination>, String> {
        Ok(Arc::new(MemoryDestination {
            name: name.to_string(),
            http: self.clone(),
        }))
    }
}

/// (bucket, key) → (body, content type).
type Objects = BTreeMap<(String, String), (Vec<u8>, String)>;

/// Objects by (bucket, key); a missing one is S3's `NoSuchKey` (permanent).
#[derive(Debug, Default, Clone)]
pub struct MemoryObjects {
    objects: Arc<Mutex<Objects>>,
}

impl MemoryObjects {
    pub fn insert(&self, bucket: &str, key: &str, body: Vec<u8>) {
        self.objects.lock().unwrap().insert(
            (bucket.to_string(), key.to_string()),
            (body, "application/octet-stream".into()),
        );
    }

    /// An object's bytes and content type.
    pub fn object(&self, bucket: &str, key: &str) -> Option<(Vec<u8>, String)> {
        self.objects
            .lock()
            .unwrap()
            .get(&(bucket.to_string(), key.to_string()))
            .cloned()
    }

    fn body(&self, bucket: &str, key: &str) -> Result<Vec<u8>, StepError> {
        self.object(bucket, key).map(|(b, _)| b).ok_or_else(|| {
            StepError::permanent(format!("GetObject: NoSuchKey: s3://{bucket}/{key}"))
        })
    }
}

#[async_trait]
impl super::objects::ObjectStore for MemoryObjects {
    async fn get(&self, bucket: &str, key: &str, limit: usize) -> Result<Vec<u8>, StepError> {
        let body = self.body(bucket, key)?;
        if body.len() > limit {
            return Err(StepError::permanent(format!(
                "s3://{bucket}/{key} is larger than {limit} bytes"
            )));
        }
        Ok(body)
    }

    async fn read_with(
        &self,
        bucket: &str,
        key: &str,
        consume: super::objects::Consume,
    ) -> Result<Result<Value, String>, StepError> {
        let body = self.body(bucket, key)?;
        Ok(consume(&mut std::io::Cursor::new(body)))
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), StepError> {
        self.objects.lock().unwrap().insert(
            (bucket.to_string(), key.to_string()),
            (body, content_type.to_string()),
        );
        Ok(())
    }
}

/// (table, payer, period) → its rows.
type Periods = BTreeMap<(String, String, String), Vec<super::costs::DailyCost>>;

/// (table, region, usage type, currency) → the rate.
type Rates = BTreeMap<(String, String, String, String), super::costs::UnitRate>;

/// Daily costs by (table, payer, period).
#[derive(Debug, Default, Clone)]
pub struct MemoryCosts {
    periods: Arc<Mutex<Periods>>,
    markers: Arc<Mutex<std::collections::BTreeSet<(String, String)>>>,
    rates: Arc<Mutex<Rates>>,
}

#[async_trait]
impl super::costs::CostStore for MemoryCosts {
    async fn replace_period(
        &self,
        table: &str,
        payer: &str,
        period: &str,
        rows: &[super::costs::DailyCost],
    ) -> Result<super::costs::Replaced, StepError> {
        let mut p = self.periods.lock().unwrap();
        let key = (table.to_string(), payer.to_string(), period.to_string());
        let old = p.remove(&key).unwrap_or_default();
        let same = |a: &super::costs::DailyCost, b: &super::costs::DailyCost| {
            (&a.day, &a.account, &a.service, &a.region, &a.currency)
                == (&b.day, &b.account, &b.service, &b.region, &b.currency)
        };
        let deleted = old
            .iter()
            .filter(|o| !rows.iter().any(|r| same(o, r)))
            .count();
        let previous_last_day = old.iter().map(|r| r.day.clone()).max();
        let mut new = rows.to_vec();
        new.sort();
        p.insert(key, new);
        Ok(super::costs::Replaced {
            written: rows.len(),
            deleted,
            previous_last_day,
        })
    }

    async fn mark_once(&self, table: &str, marker: &str) -> Result<bool, StepError> {
        Ok(self
            .markers
            .lock()
            .unwrap()
            .insert((table.to_string(), marker.to_string())))
    }

    async fn put_rates(
        &self,
        table: &str,
        rates: &[super::costs::UnitRate],
    ) -> Result<usize, StepError> {
        let mut stored = self.rates.lock().unwrap();
        let mut written = 0;
        for r in rates {
            let key = (
                table.to_string(),
                r.region.clone(),
                r.usage_type.clone(),
                r.currency.clone(),
            );
            if stored.get(&key).is_none_or(|old| old.day <= r.day) {
                stored.insert(key, r.clone());
                written += 1;
            }
        }
        Ok(written)
    }

    async fn rates(
        &self,
        table: &str,
        region: &str,
    ) -> Result<Vec<super::costs::UnitRate>, StepError> {
        Ok(self
            .rates
            .lock()
            .unwrap()
            .iter()
            .filter(|((t, r, _, _), _)| t == table && r == region)
            .map(|(_, rate)| rate.clone())
            .collect())
    }

    async fn period(
        &self,
        table: &str,
        payer: &str,
        period: &str,
    ) -> Result<Vec<super::costs::DailyCost>, StepError> {
        Ok(self
            .periods
            .lock()
            .unwrap()
            .get(&(table.to_string(), payer.to_string(), period.to_string()))
            .cloned()
            .unwrap_or_default())
    }
}

/// Lifecycle actions: every heartbeat and completion, in order ("heartbeat TOKEN",
/// "complete TOKEN").
#[derive(Debug, Default, Clone)]
pub struct MemoryLifecycle {
    calls: Arc<Mutex<Vec<String>>>,
}

impl MemoryLifecycle {
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait]
impl super::lifecycle::Lifecycle for MemoryLifecycle {
    async fn heartbeat(&self, a: &super::lifecycle::LifecycleAction) -> Result<(), StepError> {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("heartbeat {}", a.token));
        Ok(())
    }

    async fn complete(&self, a: &super::lifecycle::LifecycleAction) -> Result<(), StepError> {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("complete {}", a.token));
        Ok(())
    }
}

/// An EC2 inventory per region, as a test seeds it; `fail_next` makes the next calls fail as
/// a throttled API does.
#[derive(Debug, Default, Clone)]
pub struct MemoryInventory {
    regions: Arc<Mutex<BTreeMap<String, RegionInventory>>>,
    failures: Arc<Mutex<u32>>,
    calls: Arc<Mutex<Vec<String>>>,
}

/// What one region holds.
#[derive(Debug, Default, Clone)]
pub struct RegionInventory {
    pub volumes: Vec<super::resources::Volume>,
    pub addresses: Vec<super::resources::Address>,
    pub instances: Vec<super::resources::Instance>,
    pub snapshots: Vec<super::resources::Snapshot>,
    pub services: Vec<super::resources::EcsService>,
    pub databases: Vec<super::resources::Database>,
    /// CloudWatch's values by `<metric>:<dimension value>` (`CPUUtilization:i-1`).
    pub metrics: BTreeMap<String, Vec<f64>>,
}

impl MemoryInventory {
    pub fn set(&self, region: &str, inventory: RegionInventory) {
        self.regions
            .lock()
            .unwrap()
            .insert(region.to_string(), inventory);
    }

    /// The next `n` calls fail with a retryable throttling error.
    pub fn fail_next(&self, n: u32) {
        *self.failures.lock().unwrap() = n;
    }

    /// The calls made, as `region:call`.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn read<T>(
        &self,
        region: &str,
        call: &str,
        f: impl FnOnce(&RegionInventory) -> Vec<T>,
    ) -> Result<Vec<T>, StepError> {
        self.calls.lock().unwrap().push(format!("{region}:{call}"));
        let mut failures = self.failures.lock().unwrap();
        if *failures > 0 {
            *failures -= 1;
            return Err(StepError::retryable(format!(
                "{call}: ThrottlingException: Rate exceeded"
            )));
        }
        let regions = self.regions.lock().unwrap();
        Ok(regions.get(region).map(f).unwrap_or_default())
    }
}

#[async_trait]
impl super::resources::Inventory for MemoryInventory {
    async fn volumes(&self, region: &str) -> Result<Vec<super::resources::Volume>, StepError> {
        self.read(region, "DescribeVolumes", |r| r.volumes.clone())
    }
    async fn addresses(&self, region: &str) -> Result<Vec<super::resources::Address>, StepError> {
        self.read(region, "DescribeAddresses", |r| r.addresses.clone())
    }
    async fn instances(&self, region: &str) -> Result<Vec<super::resources::Instance>, StepError> {
        self.read(region, "DescribeInstances", |r| r.instances.clone())
    }
    async fn snapshots(&self, region: &str) -> Result<Vec<super::resources::Snapshot>, StepError> {
        self.read(region, "DescribeSnapshots", |r| r.snapshots.clone())
    }
}

/// (table, account, region): one scan's scope.
type Scope = (String, String, String);

/// Findings by (table, account, region).
#[derive(Debug, Default, Clone)]
pub struct MemoryFindings {
    scopes: Arc<Mutex<BTreeMap<Scope, Vec<super::resources::Finding>>>>,
}

#[async_trait]
impl super::resources::FindingStore for MemoryFindings {
    async fn replace(
        &self,
        table: &str,
        account: &str,
        region: &str,
        findings: &[super::resources::Finding],
    ) -> Result<super::resources::Replaced, StepError> {
        let mut scopes = self.scopes.lock().unwrap();
        let key = (table.to_string(), account.to_string(), region.to_string());
        let old = scopes.insert(key, findings.to_vec()).unwrap_or_default();
        let deleted = old
            .iter()
            .filter(|o| {
                !findings
                    .iter()
                    .any(|f| (f.kind, &f.resource) == (o.kind, &o.resource))
            })
            .count();
        Ok(super::resources::Replaced {
            written: findings.len(),
            deleted,
        })
    }

    async fn all(&self, table: &str) -> Result<Vec<super::resources::Finding>, StepError> {
        let scopes = self.scopes.lock().unwrap();
        Ok(scopes
            .iter()
            .filter(|((t, _, _), _)| t == table)
            .flat_map(|(_, f)| f.iter().cloned())
            .collect())
    }
}

#[async_trait]
impl super::resources::Power for MemoryInventory {
    async fn tagged(
        &self,
        region: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<Vec<super::resources::Instance>, StepError> {
        self.read(region, "DescribeInstances", |r| {
            r.instances
                .iter()
                .filter(|i| tags.iter().all(|(k, v)| i.tags.get(k) == Some(v)))
                .cloned()
                .collect()
        })
    }

    async fn mark(
        &self,
        region: &str,
        ids: &[String],
        key: &str,
        value: &str,
    ) -> Result<(), StepError> {
        self.change(region, "CreateTags", ids, |i| {
            i.tags.insert(key.to_string(), value.to_string());
        })
    }

    async fn unmark(&self, region: &str, ids: &[String], key: &str) -> Result<(), StepError> {
        self.change(region, "DeleteTags", ids, |i| {
            i.tags.remove(key);
        })
    }

    async fn stop(&self, region: &str, ids: &[String]) -> Result<(), StepError> {
        self.change(region, "StopInstances", ids, |i| i.state = "stopped".into())
    }

    async fn start(&self, region: &str, ids: &[String]) -> Result<(), StepError> {
        self.change(region, "StartInstances", ids, |i| {
            i.state = "running".into()
        })
    }
}

#[async_trait]
impl super::resources::ServicePower for MemoryInventory {
    async fn tagged_services(
        &self,
        region: &str,
        clusters: &[String],
        tags: &BTreeMap<String, String>,
    ) -> Result<Vec<super::resources::EcsService>, StepError> {
        self.read(region, "DescribeServices", |r| {
            r.services
                .iter()
                .filter(|s| {
                    clusters.is_empty()
                        || clusters
                            .iter()
                            .any(|c| *c == s.cluster || s.cluster.ends_with(&format!("/{c}")))
                })
                .filter(|s| tags.iter().all(|(k, v)| s.tags.get(k) == Some(v)))
                .cloned()
                .collect()
        })
    }

    async fn mark_service(
        &self,
        region: &str,
        arn: &str,
        key: &str,
        value: &str,
    ) -> Result<(), StepError> {
        self.change_service(region, "TagResource", arn, |s| {
            s.tags.insert(key.to_string(), value.to_string());
        })
    }

    async fn unmark_service(&self, region: &str, arn: &str, key: &str) -> Result<(), StepError> {
        self.change_service(region, "UntagResource", arn, |s| {
            s.tags.remove(key);
        })
    }

    async fn scale(
        &self,
        region: &str,
        _cluster: &str,
        arn: &str,
        desired: u32,
    ) -> Result<(), StepError> {
        self.change_service(region, "UpdateService", arn, |s| s.desired = desired)
    }
}

#[async_trait]
impl super::resources::Metrics for MemoryInventory {
    async fn series(
        &self,
        region: &str,
        queries: &[super::resources::MetricQuery],
        _start_ms: u64,
        _end_ms: u64,
        _period_s: u32,
    ) -> Result<Vec<Vec<f64>>, StepError> {
        self.read(region, "GetMetricData", |r| {
            queries
                .iter()
                .map(|q| {
                    r.metrics
                        .get(&format!("{}:{}", q.metric, q.value))
                        .cloned()
                        .unwrap_or_default()
                })
                .collect()
        })
    }
}

#[async_trait]
impl super::resources::Databases for MemoryInventory {
    async fn databases(&self, region: &str) -> Result<Vec<super::resources::Database>, StepError> {
        self.read(region, "DescribeDBInstances", |r| r.databases.clone())
    }

    async fn mark_database(
        &self,
        region: &str,
        arn: &str,
        key: &str,
        value: &str,
    ) -> Result<(), StepError> {
        self.change_database(
            region,
            "AddTagsToResource",
            |d| d.arn == arn,
            |d| {
                d.tags.insert(key.to_string(), value.to_string());
            },
        )
    }

    async fn unmark_database(&self, region: &str, arn: &str, key: &str) -> Result<(), StepError> {
        self.change_database(
            region,
            "RemoveTagsFromResource",
            |d| d.arn == arn,
            |d| {
                d.tags.remove(key);
            },
        )
    }

    async fn stop_database(&self, region: &str, id: &str) -> Result<(), StepError> {
        self.change_database(
            region,
            "StopDBInstance",
            |d| d.id == id,
            |d| d.status = "stopped".into(),
        )
    }

    async fn start_database(&self, region: &str, id: &str) -> Result<(), StepError> {
        self.change_database(
            region,
            "StartDBInstance",
            |d| d.id == id,
            |d| d.status = "available".into(),
        )
    }
}

impl MemoryInventory {
    /// Applies `f` to the DB instances of `region` that `which` picks, recording the call.
    fn change_database(
        &self,
        region: &str,
        call: &str,
        which: impl Fn(&super::resources::Database) -> bool,
        f: impl Fn(&mut super::resources::Database),
    ) -> Result<(), StepError> {
        self.apply(region, call, |r| &mut r.databases, which, f)
    }

    /// Records `call` on `region` (failing as `fail_next` says), then applies `f` to the
    /// region's items (of the list `items` picks) that `which` selects.
    fn apply<T>(
        &self,
        region: &str,
        call: &str,
        items: impl FnOnce(&mut RegionInventory) -> &mut Vec<T>,
        which: impl Fn(&T) -> bool,
        f: impl Fn(&mut T),
    ) -> Result<(), StepError> {
        self.read(region, call, |_| Vec::<()>::new())?;
        let mut regions = self.regions.lock().unwrap();
        if let Some(r) = regions.get_mut(region) {
            items(r).iter_mut().filter(|t| which(t)).for_each(f);
        }
        Ok(())
    }

    /// A copy of `region`'s items of the list `items` picks, as they are now.
    fn now<T: Clone>(
        &self,
        region: &str,
        items: impl FnOnce(&RegionInventory) -> &Vec<T>,
    ) -> Vec<T> {
        let regions = self.regions.lock().unwrap();
        regions
            .get(region)
            .map(|r| items(r).clone())
            .unwrap_or_default()
    }

    /// The DB instances of `region`, as they are now.
    pub fn databases_now(&self, region: &str) -> Vec<super::resources::Database> {
        self.now(region, |r| &r.databases)
    }
}

impl MemoryInventory {
    /// Applies `f` to service `arn` of `region`, recording the call as `region:call`.
    fn change_service(
        &self,
        region: &str,
        call: &str,
        arn: &str,
        f: impl Fn(&mut super::resources::EcsService),
    ) -> Result<(), StepError> {
        self.apply(region, call, |r| &mut r.services, |s| s.arn == arn, f)
    }

    /// The services of `region`, as they are now.
    pub fn services(&self, region: &str) -> Vec<super::resources::EcsService> {
        self.now(region, |r| &r.services)
    }
}

impl MemoryInventory {
    /// Applies `f` to instances `ids` of `region`, recording the call as `region:call`.
    fn change(
        &self,
        region: &str,
        call: &str,
        ids: &[String],
        f: impl Fn(&mut super::resources::Instance),
    ) -> Result<(), StepError> {
        self.apply(
            region,
            call,
            |r| &mut r.instances,
            |i| ids.contains(&i.id),
            f,
        )
    }

    /// The instances of `region` as they are now.
    pub fn instances(&self, region: &str) -> Vec<super::resources::Instance> {
        self.now(region, |r| &r.instances)
    }
}

/// Other accounts, as a test seeds them: each role's account an inventory of its own; a role
/// not added cannot be assumed (access denied, as STS answers).
#[derive(Debug, Default, Clone)]
pub struct MemoryAccounts {
    by_role: Arc<Mutex<BTreeMap<String, MemoryInventory>>>,
}

impl MemoryAccounts {
    pub fn add(&self, role_arn: &str, account: MemoryInventory) {
        self.by_role
            .lock()
            .unwrap()
            .insert(role_arn.to_string(), account);
    }
}

#[async_trait]
impl super::resources::Accounts for MemoryAccounts {
    async fn reach(
        &self,
        role: &super::resources::AccountRole,
    ) -> Result<super::resources::AccountPorts, StepError> {
        let by_role = self.by_role.lock().unwrap();
        let Some(account) = by_role.get(&role.role_arn) else {
            return Err(StepError::permanent(format!(
                "AssumeRole: AccessDenied: not authorized to perform sts:AssumeRole on {}",
                role.role_arn
            )));
        };
        Ok(super::resources::AccountPorts {
            inventory: Arc::new(account.clone()),
            power: Arc::new(account.clone()),
            services: Arc::new(account.clone()),
            databases: Arc::new(account.clone()),
            metrics: Arc::new(account.clone()),
        })
    }
}

/// DynamoDB items in memory (`states`' DynamoDB tasks in unit tests): puts and gets by the
/// whole key; an item's key is the attributes the request's `Key` names. Condition and update
/// expressions are not evaluated here (the emulator tests run them).
#[derive(Debug, Default)]
pub struct MemoryItems {
    tables: Mutex<BTreeMap<String, Vec<super::items::Item>>>,
}

impl MemoryItems {
    /// Every item of `table`.
    pub fn items(&self, table: &str) -> Vec<super::items::Item> {
        self.tables
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(table)
            .cloned()
            .unwrap_or_default()
    }
}

#[async_trait]
impl super::items::Items for MemoryItems {
    async fn put(
        &self,
        request: &super::items::Put,
    ) -> Result<Option<super::items::Item>, StepError> {
        if request.expressions.condition.is_some() {
            return Err(StepError::permanent(
                "PutItem: MemoryItems evaluates no condition expression",
            ));
        }
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        tables
            .entry(request.table.clone())
            .or_default()
            .push(request.item.clone());
        Ok(None)
    }

    async fn get(
        &self,
        request: &super::items::Get,
    ) -> Result<Option<super::items::Item>, StepError> {
        let tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        let found = tables.get(&request.table).and_then(|items| {
            items
                .iter()
                .rev()
                .find(|i| request.key.iter().all(|(k, v)| i.get(k) == Some(v)))
                .cloned()
        });
        Ok(found)
    }

    async fn update(
        &self,
        _request: &super::items::Update,
    ) -> Result<Option<super::items::Item>, StepError> {
        Err(StepError::permanent(
            "UpdateItem: MemoryItems evaluates no update expression",
        ))
    }
}
