//! The `Databases` port over RDS: DB instances of any region (DescribeDBInstances paged
//! through, tags included), stopped, started and tagged; a client per region.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_rds::types::Tag;

use super::classify;
use super::regional::Regional;
use crate::contract::StepError;
use crate::ports::resources::{Database, Databases};

#[derive(Debug)]
pub struct RdsDatabases {
    clients: Regional<aws_sdk_rds::Client>,
}

impl RdsDatabases {
    pub fn new(sdk: SdkConfig) -> RdsDatabases {
        RdsDatabases {
            clients: Regional::new(sdk, |sdk| {
                aws_sdk_rds::Client::from_conf(
                    aws_sdk_rds::config::Builder::from(sdk)
                        .interceptor(super::call_spans::CallSpans)
                        .build(),
                )
            }),
        }
    }
}

fn database(d: &aws_sdk_rds::types::DbInstance) -> Database {
    Database {
        id: d.db_instance_identifier().unwrap_or_default().to_string(),
        arn: d.db_instance_arn().unwrap_or_default().to_string(),
        class: d.db_instance_class().unwrap_or_default().to_string(),
        engine: d.engine().unwrap_or_default().to_string(),
        status: d.db_instance_status().unwrap_or_default().to_string(),
        storage_gib: d
            .allocated_storage()
            .and_then(|g| u32::try_from(g).ok())
            .unwrap_or(0),
        storage_type: d.storage_type().unwrap_or("gp2").to_string(),
        multi_az: d.multi_az().unwrap_or(false),
        created_ms: d
            .instance_create_time()
            .and_then(|t| t.to_millis().ok())
            .and_then(|m| u64::try_from(m).ok()),
        tags: d
            .tag_list()
            .iter()
            .filter_map(|t| {
                Some((
                    t.key()?.to_string(),
                    t.value().unwrap_or_default().to_string(),
                ))
            })
            .collect::<BTreeMap<_, _>>(),
    }
}

#[async_trait]
impl Databases for RdsDatabases {
    async fn databases(&self, region: &str) -> Result<Vec<Database>, StepError> {
        let found = self
            .clients
            .get(region)
            .describe_db_instances()
            .max_records(100)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| classify("DescribeDBInstances", e))?;
        Ok(found.iter().map(database).collect())
    }

    async fn mark_database(
        &self,
        region: &str,
        arn: &str,
        key: &str,
        value: &str,
    ) -> Result<(), StepError> {
        let client = self.clients.get(region);
        client
            .add_tags_to_resource()
            .resource_name(arn)
            .tags(Tag::builder().key(key).value(value).build())
            .send()
            .await
            .map(drop)
            .map_err(|e| classify("AddTagsToResource", e).into())
    }

    async fn unmark_database(&self, region: &str, arn: &str, key: &str) -> Result<(), StepError> {
        let client = self.clients.get(region);
        client
            .remove_tags_from_resource()
            .resource_name(arn)
            .tag_keys(key)
            .send()
            .await
            .map(drop)
            .map_err(|e| classify("RemoveTagsFromResource", e).into())
    }

    async fn stop_database(&self, region: &str, id: &str) -> Result<(), StepError> {
        let client = self.clients.get(region);
        client
            .stop_db_instance()
            .db_instance_identifier(id)
            .send()
            .await
            .map(drop)
            .map_err(|e| classify("StopDBInstance", e).into())
    }

    async fn start_database(&self, region: &str, id: &str) -> Result<(), StepError> {
        let client = self.clients.get(region);
        client
            .start_db_instance()
            .db_instance_identifier(id)
            .send()
            .await
            .map(drop)
            .map_err(|e| classify("StartDBInstance", e).into())
    }
}
