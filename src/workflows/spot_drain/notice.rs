//! Interruption notices: every trigger `spot_drain` takes, read into one shape.
//!
//! | event (`source` / `detail-type`) | instances | deadline |
//! |---|---|---|
//! | `aws.ec2` / EC2 Spot Instance Interruption Warning | `detail.instance-id` | event time + 2 min (AWS gives two minutes) |
//! | `aws.ec2` / EC2 Instance Rebalance Recommendation | `detail.instance-id` | event time + the configured window |
//! | `aws.autoscaling` / EC2 Instance-terminate Lifecycle Action | `detail.EC2InstanceId` | event time + the configured window |
//! | `aws.health` / AWS Health Event, category `scheduledChange`, service EC2 | `detail.affectedEntities[].entityValue` | `detail.startTime` |
//! | `aws.ecs` / ECS Task State Change, `stopCode` `SpotInterruption` (or the older `TerminationNotice`) | the task's IP | event time + 2 min |
//! | `tugboat.agent` / Interruption Notice (`tugboat agent` on the instance) | `detail.instance-id` | `detail.deadline`, else event time + the window |
//!
//! The identity of a notice is its instance, its kind and the minute it was given (for a spot
//! warning seen by the agent that is the termination time less two minutes, which is what
//! EventBridge stamps on its event), so the same interruption from EventBridge and from the
//! agent, or redelivered, is one drain, while a rebalance recommendation in the same minute as
//! the warning is another: it cannot make the warning a duplicate and swallow its drain.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// AWS's spot interruption notice period.
pub const SPOT_NOTICE_MS: u64 = 120_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    SpotInterruption,
    RebalanceRecommendation,
    LifecycleTerminate,
    ScheduledMaintenance,
    FargateSpotTask,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::SpotInterruption => "spot-interruption",
            Kind::RebalanceRecommendation => "rebalance-recommendation",
            Kind::LifecycleTerminate => "lifecycle-terminate",
            Kind::ScheduledMaintenance => "scheduled-maintenance",
            Kind::FargateSpotTask => "fargate-spot-task",
        }
    }
}

pub use crate::ports::lifecycle::LifecycleAction;

/// One notice, whatever sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub kind: Kind,
    pub source: String,
    /// EC2 instance ids (empty for a Fargate task).
    pub instances: Vec<String>,
    /// A Fargate Spot task: its ARN, cluster and IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<SpotTask>,
    /// When the notice was given, ms since the epoch.
    pub noticed_ms: u64,
    /// When the capacity goes away, if the notice says (ms since the epoch).
    pub ends_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<LifecycleAction>,
    /// `detail.instance-action` of a spot warning (terminate, stop, hibernate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The availability zone and instance type, where the event says (for the history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpotTask {
    pub arn: String,
    pub cluster: String,
    pub ip: Option<String>,
}

impl Notice {
    /// Reads an event; an error says why it is no interruption notice.
    pub fn read(event: &Value) -> Result<Notice, String> {
        let source = text(event, "/source").unwrap_or_default();
        let detail_type = text(event, "/detail-type").unwrap_or_default();
        let time = text(event, "/time").ok_or("the event has no time")?;
        let noticed_ms =
            rfc3339_ms(&time).ok_or_else(|| format!("time {time:?} is not an RFC 3339 time"))?;
        let zone = resource_zone(event);
        let mut notice = Notice {
            kind: Kind::SpotInterruption,
            source: source.clone(),
            instances: vec![],
            task: None,
            noticed_ms,
            ends_ms: None,
            lifecycle: None,
            action: None,
            zone,
            instance_type: text(event, "/detail/instance-type"),
        };
        match (source.as_str(), detail_type.as_str()) {
            ("aws.ec2", "EC2 Spot Instance Interruption Warning") => {
                notice.instances = vec![required(event, "/detail/instance-id")?];
                notice.action = text(event, "/detail/instance-action");
                notice.ends_ms = Some(noticed_ms + SPOT_NOTICE_MS);
            }
            ("aws.ec2", "EC2 Instance Rebalance Recommendation") => {
                notice.kind = Kind::RebalanceRecommendation;
                notice.instances = vec![required(event, "/detail/instance-id")?];
            }
            ("aws.autoscaling", "EC2 Instance-terminate Lifecycle Action") => {
                notice.kind = Kind::LifecycleTerminate;
                let instance = required(event, "/detail/EC2InstanceId")?;
                notice.lifecycle = Some(LifecycleAction {
                    group: required(event, "/detail/AutoScalingGroupName")?,
                    hook: required(event, "/detail/LifecycleHookName")?,
                    token: required(event, "/detail/LifecycleActionToken")?,
                    instance: instance.clone(),
                });
                notice.instances = vec![instance];
            }
            ("aws.health", _) => {
                notice.kind = Kind::ScheduledMaintenance;
                let service = text(event, "/detail/service").unwrap_or_default();
                let category = text(event, "/detail/eventTypeCategory").unwrap_or_default();
                if service != "EC2" || category != "scheduledChange" {
                    return Err(format!(
                        "an AWS Health event of service {service:?}, category {category:?}: only EC2 scheduled changes are interruptions"
                    ));
                }
                notice.instances = event
                    .pointer("/detail/affectedEntities")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.get("entityValue").and_then(Value::as_str))
                    .filter(|v| v.starts_with("i-"))
                    .map(str::to_owned)
                    .collect();
                if notice.instances.is_empty() {
                    return Err("the AWS Health event names no EC2 instance".into());
                }
                if let Some(start) = text(event, "/detail/startTime") {
                    notice.ends_ms = Some(any_time_ms(&start).ok_or_else(|| {
                        format!("detail.startTime {start:?} is not a time")
                    })?);
                }
            }
            ("aws.ecs", "ECS Task State Change") => {
                let code = text(event, "/detail/stopCode").unwrap_or_default();
                if code != "SpotInterruption" && code != "TerminationNotice" {
                    return Err(format!(
                        "an ECS task state change with stopCode {code:?} is no spot interruption"
                    ));
                }
                notice.kind = Kind::FargateSpotTask;
                notice.task = Some(SpotTask {
                    arn: required(event, "/detail/taskArn")?,
                    cluster: required(event, "/detail/clusterArn")?,
                    ip: task_ip(event),
                });
                notice.ends_ms = Some(noticed_ms + SPOT_NOTICE_MS);
            }
            ("tugboat.agent", _) => {
                notice.kind = match text(event, "/detail/kind").as_deref() {
                    Some("rebalance-recommendation") => Kind::RebalanceRecommendation,
                    Some("scheduled-maintenance") => Kind::ScheduledMaintenance,
                    _ => Kind::SpotInterruption,
                };
                notice.instances = vec![required(event, "/detail/instance-id")?];
                notice.action = text(event, "/detail/instance-action");
                if let Some(deadline) = text(event, "/detail/deadline") {
                    let ends = any_time_ms(&deadline)
                        .ok_or_else(|| format!("detail.deadline {deadline:?} is not a time"))?;
                    notice.ends_ms = Some(ends);
                    if notice.kind == Kind::SpotInterruption {
                        // The agent sees the termination time; EventBridge stamps the notice.
                        notice.noticed_ms = ends.saturating_sub(SPOT_NOTICE_MS);
                    }
                }
            }
            _ => {
                return Err(format!(
                    "{source:?} / {detail_type:?} is not an interruption notice spot_drain reads"
                ));
            }
        }
        Ok(notice)
    }

    /// What makes two notices one drain: instance (or task), kind and the minute of the notice.
    pub fn identity(&self) -> String {
        let what = match (&self.task, self.instances.first()) {
            (Some(t), _) => t.arn.rsplit('/').next().unwrap_or(&t.arn).to_owned(),
            (None, Some(i)) => i.clone(),
            (None, None) => "none".into(),
        };
        let minute = rfc3339(self.noticed_ms / 60_000 * 60_000);
        format!(
            "{what}:{}:{}",
            self.kind.as_str(),
            minute.get(..16).unwrap_or(&minute)
        )
    }
}

fn text(event: &Value, pointer: &str) -> Option<String> {
    event
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn required(event: &Value, pointer: &str) -> Result<String, String> {
    text(event, pointer).ok_or_else(|| {
        format!(
            "the event has no {} (a string)",
            pointer.trim_start_matches('/').replace('/', ".")
        )
    })
}

/// The zone from a resource ARN such as `arn:aws:ec2:us-east-1b:instance/i-…` (the spot
/// warning puts it there), or `detail.availability-zone`.
fn resource_zone(event: &Value) -> Option<String> {
    if let Some(z) = text(event, "/detail/availability-zone") {
        return Some(z);
    }
    let arn = text(event, "/resources/0")?;
    let region = arn.split(':').nth(3)?;
    region
        .chars()
        .last()
        .is_some_and(|c| c.is_ascii_lowercase())
        .then(|| region.to_owned())
}

fn task_ip(event: &Value) -> Option<String> {
    event
        .pointer("/detail/attachments")?
        .as_array()?
        .iter()
        .filter(|a| a.get("type").and_then(Value::as_str) == Some("eni"))
        .flat_map(|a| a.get("details").and_then(Value::as_array).into_iter().flatten())
        .find(|d| d.get("name").and_then(Value::as_str) == Some("privateIPv4Address"))
        .and_then(|d| d.get("value").and_then(Value::as_str))
        .map(str::to_owned)
}

/// An RFC 3339 time as ms since the epoch.
pub fn rfc3339_ms(text: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// RFC 3339, or an HTTP date (`Sat, 05 Jun 2016 15:10:09 GMT`, as AWS Health writes; its
/// weekday is not checked: that sample's 5 June 2016 was a Sunday).
fn any_time_ms(text: &str) -> Option<u64> {
    rfc3339_ms(text).or_else(|| {
        let date = text.split_once(", ").map_or(text, |(_, d)| d);
        let format = time::macros::format_description!(
            "[day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        );
        let t = time::PrimitiveDateTime::parse(date.trim(), &format).ok()?;
        u64::try_from(t.assume_utc().unix_timestamp_nanos() / 1_000_000).ok()
    })
}

/// `ms` since the epoch as RFC 3339 (UTC, milliseconds).
pub fn rfc3339(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
