//! The `Ecs` port over Amazon ECS, the `TargetGroups` port over ELBv2, and the
//! `ServicePower` port over ECS services in any region.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ContainerInstanceStatus, ContainerOverride, KeyValuePair,
    LaunchType, NetworkConfiguration, Tag, TaskOverride,
};
use aws_sdk_elasticloadbalancingv2::types::TargetDescription;

use super::{classify, incomplete, not_found, reported};
use crate::contract::StepError;
use crate::ports::resources::{EcsService, ServicePower};
use crate::ports::{
    ContainerInstance, Ecs, RunTaskRequest, TargetGroups, TargetHealth, TaskStatus,
};

#[derive(Debug, Clone)]
pub struct EcsClient {
    client: aws_sdk_ecs::Client,
}

impl EcsClient {
    pub fn new(client: aws_sdk_ecs::Client) -> EcsClient {
        EcsClient { client }
    }
}

#[async_trait]
impl Ecs for EcsClient {
    async fn run_task(&self, r: &RunTaskRequest) -> Result<String, StepError> {
        let vpc = AwsVpcConfiguration::builder()
            .set_subnets(Some(r.subnets.clone()))
            .set_security_groups(Some(r.security_groups.clone()))
            .assign_public_ip(if r.assign_public_ip {
                AssignPublicIp::Enabled
            } else {
                AssignPublicIp::Disabled
            })
            .build()
            .map_err(|e| reported("RunTask", "InvalidParameter", e.to_string(), None))?;
        let mut container = ContainerOverride::builder().name(&r.container_name);
        for (k, v) in &r.environment {
            container = container.environment(KeyValuePair::builder().name(k).value(v).build());
        }
        if let Some(command) = &r.command {
            container = container.set_command(Some(command.clone()));
        }
        let mut request = self
            .client
            .run_task()
            .cluster(&r.cluster)
            .task_definition(&r.task_definition)
            .launch_type(LaunchType::Fargate)
            .count(1)
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(vpc)
                    .build(),
            )
            .overrides(
                TaskOverride::builder()
                    .container_overrides(container.build())
                    .build(),
            )
            .started_by(&r.started_by)
            .client_token(&r.client_token);
        for (k, v) in &r.tags {
            request = request.tags(Tag::builder().key(k).value(v).build());
        }
        let out = request.send().await.map_err(|e| classify("RunTask", e))?;
        if let Some(arn) = out.tasks().first().and_then(|t| t.task_arn()) {
            return Ok(arn.to_owned());
        }
        // ECS reports why it started nothing in `failures[]`: capacity (retryable), a missing
        // resource or a bad attribute (permanent). The first one decides.
        let failures: Vec<(String, String)> = out
            .failures()
            .iter()
            .map(|f| {
                (
                    f.reason().unwrap_or("unknown").to_owned(),
                    f.detail().unwrap_or("").to_owned(),
                )
            })
            .collect();
        let Some((reason, _)) = failures.first() else {
            return Err(
                incomplete("RunTask", "RunTask returned neither a task nor a failure").into(),
            );
        };
        let text: Vec<String> = failures.iter().map(|(r, d)| format!("{r}: {d}")).collect();
        Err(reported(
            "RunTask",
            reason,
            format!("RunTask failed: {}", text.join("; ")),
            None,
        )
        .into())
    }

    async fn describe_task(&self, cluster: &str, task: &str) -> Result<TaskStatus, StepError> {
        let out = self
            .client
            .describe_tasks()
            .cluster(cluster)
            .tasks(task)
            .send()
            .await
            .map_err(|e| classify("DescribeTasks", e))?;
        let Some(t) = out.tasks().first() else {
            let why = out
                .failures()
                .first()
                .and_then(|f| f.reason())
                .unwrap_or("MISSING");
            return Err(
                not_found("DescribeTasks", format!("task {task} not found ({why})")).into(),
            );
        };
        let private_ip = private_ips(t).next();
        Ok(TaskStatus {
            task_arn: t.task_arn().unwrap_or(task).to_owned(),
            last_status: t.last_status().unwrap_or("UNKNOWN").to_owned(),
            stopped_reason: t.stopped_reason().map(str::to_owned),
            stop_code: t.stop_code().map(|c| c.as_str().to_owned()),
            container_reasons: t
                .containers()
                .iter()
                .filter(|c| c.reason().is_some() || c.exit_code().is_some_and(|x| x != 0))
                .map(|c| {
                    format!(
                        "{}: {}{}",
                        c.name().unwrap_or("container"),
                        c.reason().unwrap_or("exited"),
                        c.exit_code()
                            .map(|x| format!(" (exit {x})"))
                            .unwrap_or_default()
                    )
                })
                .collect(),
            private_ip,
            started_by: t.started_by().map(str::to_owned),
        })
    }

    async fn stop_task(&self, cluster: &str, task: &str, reason: &str) -> Result<(), StepError> {
        self.client
            .stop_task()
            .cluster(cluster)
            .task(task)
            .reason(reason.chars().take(255).collect::<String>())
            .send()
            .await
            .map_err(|e| classify("StopTask", e))?;
        Ok(())
    }

    async fn container_instances(
        &self,
        cluster: &str,
        ec2_instance: &str,
    ) -> Result<Vec<ContainerInstance>, StepError> {
        // ListContainerInstances cannot filter by EC2 instance id (its cluster query language
        // knows attributes, not the id), so every page is described and matched here.
        let mut found = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .client
                .list_container_instances()
                .cluster(cluster)
                .set_next_token(next.take())
                .max_results(100)
                .send()
                .await
                .map_err(|e| classify("ListContainerInstances", e))?;
            let arns: Vec<String> = page.container_instance_arns().to_vec();
            if !arns.is_empty() {
                let described = self
                    .client
                    .describe_container_instances()
                    .cluster(cluster)
                    .set_container_instances(Some(arns))
                    .send()
                    .await
                    .map_err(|e| classify("DescribeContainerInstances", e))?;
                for ci in described.container_instances() {
                    if ci.ec2_instance_id() == Some(ec2_instance) {
                        found.push(ContainerInstance {
                            arn: ci.container_instance_arn().unwrap_or_default().to_owned(),
                            ec2_instance: ec2_instance.to_owned(),
                            status: ci.status().unwrap_or("UNKNOWN").to_owned(),
                        });
                    }
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(found)
    }

    async fn drain(&self, cluster: &str, container_instances: &[String]) -> Result<(), StepError> {
        // At most 10 per call.
        for chunk in container_instances.chunks(10) {
            let out = self
                .client
                .update_container_instances_state()
                .cluster(cluster)
                .set_container_instances(Some(chunk.to_vec()))
                .status(ContainerInstanceStatus::Draining)
                .send()
                .await
                .map_err(|e| classify("UpdateContainerInstancesState", e))?;
            if let Some(f) = out.failures().first() {
                let reason = f.reason().unwrap_or("unknown");
                return Err(reported(
                    "UpdateContainerInstancesState",
                    reason,
                    format!(
                        "UpdateContainerInstancesState failed for {}: {reason}",
                        f.arn().unwrap_or("?")
                    ),
                    None,
                )
                .into());
            }
        }
        Ok(())
    }

    async fn tasks_left(
        &self,
        cluster: &str,
        container_instances: &[String],
    ) -> Result<u32, StepError> {
        let mut left = 0;
        // At most 100 per call; one that is gone comes back in `failures` (MISSING): no tasks.
        for chunk in container_instances.chunks(100) {
            let out = self
                .client
                .describe_container_instances()
                .cluster(cluster)
                .set_container_instances(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| classify("DescribeContainerInstances", e))?;
            for ci in out.container_instances() {
                left += (ci.running_tasks_count() + ci.pending_tasks_count()).max(0) as u32;
            }
        }
        Ok(left)
    }

    async fn task_ips(
        &self,
        cluster: &str,
        container_instance: &str,
    ) -> Result<Vec<String>, StepError> {
        let mut arns = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .client
                .list_tasks()
                .cluster(cluster)
                .container_instance(container_instance)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| classify("ListTasks", e))?;
            arns.extend(page.task_arns().iter().cloned());
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => break,
            }
        }
        let mut ips = Vec::new();
        for chunk in arns.chunks(100) {
            let out = self
                .client
                .describe_tasks()
                .cluster(cluster)
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| classify("DescribeTasks", e))?;
            for t in out.tasks() {
                ips.extend(private_ips(t));
            }
        }
        Ok(ips)
    }
}

#[derive(Debug, Clone)]
pub struct ElbTargets {
    client: aws_sdk_elasticloadbalancingv2::Client,
}

impl ElbTargets {
    pub fn new(client: aws_sdk_elasticloadbalancingv2::Client) -> ElbTargets {
        ElbTargets { client }
    }
}

/// The private IPs of a task's ENI attachments (awsvpc).
fn private_ips(task: &aws_sdk_ecs::types::Task) -> impl Iterator<Item = String> + '_ {
    task.attachments()
        .iter()
        .filter(|a| a.r#type() == Some("ElasticNetworkInterface"))
        .flat_map(|a| a.details())
        .filter(|d| d.name() == Some("privateIPv4Address"))
        .filter_map(|d| d.value())
        .map(str::to_owned)
}

fn target(ip: &str, port: u16) -> TargetDescription {
    TargetDescription::builder()
        .id(ip)
        .port(port as i32)
        .build()
}

#[async_trait]
impl TargetGroups for ElbTargets {
    async fn resolve(&self, name_or_arn: &str) -> Result<String, StepError> {
        if name_or_arn.starts_with("arn:") {
            return Ok(name_or_arn.to_owned());
        }
        let out = self
            .client
            .describe_target_groups()
            .names(name_or_arn)
            .send()
            .await
            .map_err(|e| classify("DescribeTargetGroups", e))?;
        let arn = out
            .target_groups()
            .first()
            .and_then(|g| g.target_group_arn())
            .map(str::to_owned);
        arn.ok_or_else(|| {
            not_found(
                "DescribeTargetGroups",
                format!("no target group named {name_or_arn:?}"),
            )
            .into()
        })
    }

    async fn register(&self, target_group: &str, ip: &str, port: u16) -> Result<(), StepError> {
        self.client
            .register_targets()
            .target_group_arn(target_group)
            .targets(target(ip, port))
            .send()
            .await
            .map_err(|e| classify("RegisterTargets", e))?;
        Ok(())
    }

    async fn deregister(&self, target_group: &str, ip: &str, port: u16) -> Result<(), StepError> {
        match self
            .client
            .deregister_targets()
            .target_group_arn(target_group)
            .targets(target(ip, port))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = classify("DeregisterTargets", e);
                // Not registered (any more): what deregistration wants is already true.
                if e.code == "InvalidTarget" {
                    Ok(())
                } else {
                    Err(e.into())
                }
            }
        }
    }

    async fn targets(&self, target_group: &str) -> Result<Vec<(String, u16)>, StepError> {
        let out = self
            .client
            .describe_target_health()
            .target_group_arn(target_group)
            .send()
            .await
            .map_err(|e| classify("DescribeTargetHealth", e))?;
        Ok(out
            .target_health_descriptions()
            .iter()
            .filter_map(|d| d.target())
            .filter_map(|t| Some((t.id()?.to_owned(), t.port().unwrap_or(0).max(0) as u16)))
            .collect())
    }

    async fn health(
        &self,
        target_group: &str,
        ip: &str,
        port: u16,
    ) -> Result<TargetHealth, StepError> {
        let out = self
            .client
            .describe_target_health()
            .target_group_arn(target_group)
            .targets(target(ip, port))
            .send()
            .await;
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                let e = classify("DescribeTargetHealth", e);
                if e.code == "InvalidTarget" {
                    return Ok(TargetHealth {
                        state: "unregistered".into(),
                        reason: None,
                        description: None,
                    });
                }
                return Err(e.into());
            }
        };
        let found = out
            .target_health_descriptions()
            .iter()
            .find(|d| d.target().and_then(|t| t.id()) == Some(ip));
        Ok(match found.and_then(|d| d.target_health()) {
            Some(h) => TargetHealth {
                state: h
                    .state()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_else(|| "unknown".into()),
                reason: h.reason().map(|r| r.as_str().to_owned()),
                description: h.description().map(str::to_owned),
            },
            None => TargetHealth {
                state: "unregistered".into(),
                reason: None,
                description: None,
            },
        })
    }
}

/// The `ServicePower` port over ECS in every region asked for (`auto_stop`): the services of
/// the named clusters, or of every cluster (ListClusters), read with ListServices and
/// DescribeServices (ten at a time, with their tags).
#[derive(Debug)]
pub struct EcsServices {
    clients: super::regional::Regional<aws_sdk_ecs::Client>,
}

impl EcsServices {
    pub fn new(sdk: aws_config::SdkConfig) -> EcsServices {
        EcsServices {
            clients: super::regional::Regional::new(sdk, |sdk| {
                aws_sdk_ecs::Client::from_conf(
                    aws_sdk_ecs::config::Builder::from(sdk)
                        .interceptor(super::call_spans::CallSpans)
                        .build(),
                )
            }),
        }
    }
}

/// DescribeServices' limit per call.
const DESCRIBE_SERVICES_MAX: usize = 10;

#[async_trait]
impl ServicePower for EcsServices {
    async fn tagged_services(
        &self,
        region: &str,
        clusters: &[String],
        tags: &BTreeMap<String, String>,
    ) -> Result<Vec<EcsService>, StepError> {
        let client = self.clients.get(region);
        let clusters = match clusters.is_empty() {
            false => clusters.to_vec(),
            true => client
                .list_clusters()
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .map_err(|e| classify("ListClusters", e))?,
        };
        let mut found = Vec::new();
        for cluster in &clusters {
            let arns = client
                .list_services()
                .cluster(cluster)
                .max_results(100)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .map_err(|e| classify("ListServices", e))?;
            for chunk in arns.chunks(DESCRIBE_SERVICES_MAX) {
                let out = client
                    .describe_services()
                    .cluster(cluster)
                    .set_services(Some(chunk.to_vec()))
                    .include(aws_sdk_ecs::types::ServiceField::Tags)
                    .send()
                    .await
                    .map_err(|e| classify("DescribeServices", e))?;
                for s in out.services() {
                    let service_tags: BTreeMap<String, String> = s
                        .tags()
                        .iter()
                        .filter_map(|t| {
                            Some((
                                t.key()?.to_string(),
                                t.value().unwrap_or_default().to_string(),
                            ))
                        })
                        .collect();
                    // The tags are checked here (ECS filters by none); the workflow checks again.
                    if !tags.iter().all(|(k, v)| service_tags.get(k) == Some(v)) {
                        continue;
                    }
                    // A service being deleted (DRAINING, INACTIVE) is not scaled.
                    if s.status() != Some("ACTIVE") {
                        continue;
                    }
                    found.push(EcsService {
                        arn: s.service_arn().unwrap_or_default().to_string(),
                        name: s.service_name().unwrap_or_default().to_string(),
                        cluster: s.cluster_arn().unwrap_or(cluster).to_string(),
                        desired: u32::try_from(s.desired_count()).unwrap_or(0),
                        tags: service_tags,
                    });
                }
            }
        }
        Ok(found)
    }

    async fn mark_service(
        &self,
        region: &str,
        arn: &str,
        key: &str,
        value: &str,
    ) -> Result<(), StepError> {
        let client = self.clients.get(region);
        client
            .tag_resource()
            .resource_arn(arn)
            .tags(Tag::builder().key(key).value(value).build())
            .send()
            .await
            .map(drop)
            .map_err(|e| classify("TagResource", e).into())
    }

    async fn unmark_service(&self, region: &str, arn: &str, key: &str) -> Result<(), StepError> {
        let client = self.clients.get(region);
        client
            .untag_resource()
            .resource_arn(arn)
            .tag_keys(key)
            .send()
            .await
            .map(drop)
            .map_err(|e| classify("UntagResource", e).into())
    }

    async fn scale(
        &self,
        region: &str,
        cluster: &str,
        arn: &str,
        desired: u32,
    ) -> Result<(), StepError> {
        let client = self.clients.get(region);
        client
            .update_service()
            .cluster(cluster)
            .service(arn)
            .desired_count(i32::try_from(desired).unwrap_or(i32::MAX))
            .send()
            .await
            .map(drop)
            .map_err(|e| classify("UpdateService", e).into())
    }
}
