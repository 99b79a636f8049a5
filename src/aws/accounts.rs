//! The `Accounts` port: other accounts' EC2, ECS, RDS and CloudWatch, acting as a role there. Credentials come
//! from STS `AssumeRole` (aws-config's `AssumeRoleProvider`, called when a client first needs
//! them and again before they expire), through the service's own credentials and endpoint;
//! one set of clients per role, kept for the life of the process.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::provider::SharedCredentialsProvider;

use super::ec2::Ec2Inventory;
use super::ecs::EcsServices;
use crate::contract::StepError;
use crate::ports::resources::{AccountPorts, AccountRole, Accounts};

/// The session name the member account's CloudTrail shows for tugboat's calls.
pub const SESSION_NAME: &str = "tugboat";

#[derive(Debug)]
pub struct AssumedAccounts {
    sdk: SdkConfig,
    reached: tokio::sync::Mutex<HashMap<AccountRole, AccountPorts>>,
}

impl AssumedAccounts {
    pub fn new(sdk: SdkConfig) -> AssumedAccounts {
        AssumedAccounts {
            sdk,
            reached: tokio::sync::Mutex::default(),
        }
    }
}

#[async_trait]
impl Accounts for AssumedAccounts {
    async fn reach(&self, role: &AccountRole) -> Result<AccountPorts, StepError> {
        let mut reached = self.reached.lock().await;
        if let Some(ports) = reached.get(role) {
            return Ok(ports.clone());
        }
        let mut provider = AssumeRoleProvider::builder(&role.role_arn)
            .session_name(SESSION_NAME)
            .configure(&self.sdk);
        if let Some(id) = &role.external_id {
            provider = provider.external_id(id);
        }
        let provider = provider.build().await;
        let sdk = self
            .sdk
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(provider))
            .build();
        let ec2 = Arc::new(Ec2Inventory::new(sdk.clone()));
        let ports = AccountPorts {
            inventory: ec2.clone(),
            power: ec2,
            services: Arc::new(EcsServices::new(sdk.clone())),
            databases: Arc::new(super::rds::RdsDatabases::new(sdk.clone())),
            metrics: Arc::new(super::cloudwatch::CloudWatchMetrics::new(sdk)),
        };
        reached.insert(role.clone(), ports.clone());
        Ok(ports)
    }
}
