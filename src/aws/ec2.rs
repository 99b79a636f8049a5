//! The `Inventory` port over EC2: volumes, Elastic IPs, instances and own snapshots of any
//! region, each call paged through to its end (DescribeVolumes, DescribeInstances and
//! DescribeSnapshots at their page maximum; DescribeAddresses has no pages), through a client
//! per region.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_ec2::types::{Filter, Tag};

use super::classify;
use super::regional::Regional;
use crate::contract::StepError;
use crate::ports::resources::{Address, Instance, Inventory, Power, Snapshot, Volume};

/// EC2 in every region asked for.
#[derive(Debug)]
pub struct Ec2Inventory {
    clients: Regional<aws_sdk_ec2::Client>,
}

impl Ec2Inventory {
    pub fn new(sdk: SdkConfig) -> Ec2Inventory {
        Ec2Inventory {
            clients: Regional::new(sdk, |sdk| {
                aws_sdk_ec2::Client::from_conf(
                    aws_sdk_ec2::config::Builder::from(sdk)
                        .interceptor(super::call_spans::CallSpans)
                        .build(),
                )
            }),
        }
    }

    fn client(&self, region: &str) -> aws_sdk_ec2::Client {
        self.clients.get(region)
    }
}

fn tags(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

fn ms(t: Option<&aws_smithy_types::DateTime>) -> Option<u64> {
    t.and_then(|t| t.to_millis().ok())
        .and_then(|m| u64::try_from(m).ok())
}

fn instance(i: &aws_sdk_ec2::types::Instance) -> Instance {
    Instance {
        id: i.instance_id().unwrap_or_default().to_string(),
        instance_type: i
            .instance_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        state: i
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string())
            .unwrap_or_default(),
        launched_ms: ms(i.launch_time()),
        volumes: i
            .block_device_mappings()
            .iter()
            .filter_map(|m| m.ebs()?.volume_id().map(str::to_string))
            .collect(),
        tags: tags(i.tags()),
    }
}

fn size(gib: Option<i32>) -> u32 {
    gib.and_then(|g| u32::try_from(g).ok()).unwrap_or(0)
}

#[async_trait]
impl Inventory for Ec2Inventory {
    async fn volumes(&self, region: &str) -> Result<Vec<Volume>, StepError> {
        let client = self.client(region);
        let pages = client
            .describe_volumes()
            .max_results(500)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| classify("DescribeVolumes", e))?;
        Ok(pages
            .into_iter()
            .map(|v| Volume {
                id: v.volume_id().unwrap_or_default().to_string(),
                size_gib: size(v.size()),
                volume_type: v
                    .volume_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                state: v
                    .state()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                iops: v.iops().and_then(|i| u32::try_from(i).ok()),
                created_ms: ms(v.create_time()),
                tags: tags(v.tags()),
            })
            .collect())
    }

    async fn addresses(&self, region: &str) -> Result<Vec<Address>, StepError> {
        let client = self.client(region);
        let out = client
            .describe_addresses()
            .send()
            .await
            .map_err(|e| classify("DescribeAddresses", e))?;
        Ok(out
            .addresses()
            .iter()
            .map(|a| Address {
                id: a
                    .allocation_id()
                    .or(a.public_ip())
                    .unwrap_or_default()
                    .to_string(),
                public_ip: a.public_ip().unwrap_or_default().to_string(),
                // (An empty field is an absent one: the emulator writes `""`.)
                associated: [
                    a.association_id(),
                    a.instance_id(),
                    a.network_interface_id(),
                ]
                .into_iter()
                .any(|id| id.is_some_and(|id| !id.is_empty())),
                tags: tags(a.tags()),
            })
            .collect())
    }

    async fn instances(&self, region: &str) -> Result<Vec<Instance>, StepError> {
        let live = Filter::builder()
            .name("instance-state-name")
            .set_values(Some(
                ["pending", "running", "stopping", "stopped", "shutting-down"]
                    .map(String::from)
                    .to_vec(),
            ))
            .build();
        let client = self.client(region);
        let reservations = client
            .describe_instances()
            .filters(live)
            .max_results(1000)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| classify("DescribeInstances", e))?;
        Ok(reservations
            .iter()
            .flat_map(|r| r.instances())
            .map(instance)
            .collect())
    }

    async fn snapshots(&self, region: &str) -> Result<Vec<Snapshot>, StepError> {
        let client = self.client(region);
        let pages = client
            .describe_snapshots()
            .owner_ids("self")
            .max_results(1000)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| classify("DescribeSnapshots", e))?;
        Ok(pages
            .into_iter()
            .map(|s| Snapshot {
                id: s.snapshot_id().unwrap_or_default().to_string(),
                volume_id: s.volume_id().map(str::to_string),
                size_gib: size(s.volume_size()),
                started_ms: ms(s.start_time()),
                tags: tags(s.tags()),
            })
            .collect())
    }
}

/// EC2's calls take at most this many instance ids each (a safe bound under every one's
/// limit).
const IDS_PER_CALL: usize = 500;

#[async_trait]
impl Power for Ec2Inventory {
    async fn tagged(
        &self,
        region: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<Vec<Instance>, StepError> {
        let mut filters = vec![
            Filter::builder()
                .name("instance-state-name")
                .set_values(Some(
                    ["pending", "running", "stopping", "stopped"]
                        .map(String::from)
                        .to_vec(),
                ))
                .build(),
        ];
        for (key, value) in tags {
            filters.push(
                Filter::builder()
                    .name(format!("tag:{key}"))
                    .values(value)
                    .build(),
            );
        }
        let client = self.client(region);
        let reservations = client
            .describe_instances()
            .set_filters(Some(filters))
            .max_results(1000)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| classify("DescribeInstances", e))?;
        Ok(reservations
            .iter()
            .flat_map(|r| r.instances())
            .map(instance)
            .collect())
    }

    async fn mark(
        &self,
        region: &str,
        ids: &[String],
        key: &str,
        value: &str,
    ) -> Result<(), StepError> {
        let client = self.client(region);
        let tag = Tag::builder().key(key).value(value).build();
        in_chunks(ids, |chunk| {
            let call = client
                .create_tags()
                .set_resources(Some(chunk))
                .tags(tag.clone());
            async move {
                call.send()
                    .await
                    .map(drop)
                    .map_err(|e| classify("CreateTags", e).into())
            }
        })
        .await
    }

    async fn unmark(&self, region: &str, ids: &[String], key: &str) -> Result<(), StepError> {
        let client = self.client(region);
        let tag = Tag::builder().key(key).build();
        in_chunks(ids, |chunk| {
            let call = client
                .delete_tags()
                .set_resources(Some(chunk))
                .tags(tag.clone());
            async move {
                call.send()
                    .await
                    .map(drop)
                    .map_err(|e| classify("DeleteTags", e).into())
            }
        })
        .await
    }

    async fn stop(&self, region: &str, ids: &[String]) -> Result<(), StepError> {
        let client = self.client(region);
        in_chunks(ids, |chunk| {
            let call = client.stop_instances().set_instance_ids(Some(chunk));
            async move {
                call.send()
                    .await
                    .map(drop)
                    .map_err(|e| classify("StopInstances", e).into())
            }
        })
        .await
    }

    async fn start(&self, region: &str, ids: &[String]) -> Result<(), StepError> {
        let client = self.client(region);
        in_chunks(ids, |chunk| {
            let call = client.start_instances().set_instance_ids(Some(chunk));
            async move {
                call.send()
                    .await
                    .map(drop)
                    .map_err(|e| classify("StartInstances", e).into())
            }
        })
        .await
    }
}

/// Makes `call` for each run of at most [`IDS_PER_CALL`] of `ids`, in turn.
async fn in_chunks<F, Fut>(ids: &[String], call: F) -> Result<(), StepError>
where
    F: Fn(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(), StepError>>,
{
    for chunk in ids.chunks(IDS_PER_CALL) {
        call(chunk.to_vec()).await?;
    }
    Ok(())
}
