//! The `[services]` section: how each named service is started. Shared by `ecs_start` and
//! `ecs_stop`, which take the same services out of service again.
//!
//! ```toml
//! [services.auth]
//! cluster = "apps"
//! task_definition = "auth:3"
//! target_group = "auth-tg"        # name or ARN; a name is resolved when the service starts
//! container_name = "auth"
//! container_port = 8080
//! subnets = ["subnet-0abc"]
//! security_groups = ["sg-0abc"]   # default: none (the VPC's default group)
//! assign_public_ip = false        # default false
//!
//! # What a Start event may change (anyone who may put events on the bus could otherwise run
//! # code of their choosing with the task's role): nothing unless listed.
//! allow_environment = ["LOG_LEVEL"]   # variables an event may set, by name; default none
//! allow_command = false               # may an event replace the command; default false
//! allow_revisions = [3, 4]            # task definition revisions an event may ask for
//! allow_tags = ["team"]               # tag keys an event may set (never `tugboat:…`)
//! max_count = 1                       # most tasks one event may start, 1 to 10; default 1
//! stop_any_task = false               # may a Stop event stop a task tugboat did not start
//! ```

use crate::config::BadKey;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::{Config, parse_section};
use crate::ports::{Ecs, TargetGroups};
use crate::workflows::{Section, Setup};

/// The section's name in the configuration file.
pub const NAME: &str = "services";

/// The section, checked while the configuration loads.
pub const SECTION: Section = Section {
    name: NAME,
    check: |value| parse(value).map(|_| ()),
};

/// The service mappings, keyed by service name.
pub type Services = BTreeMap<String, ServiceMapping>;

/// How one ECS service is started by the `ecs_start` workflow.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceMapping {
    /// Cluster name or ARN. Required.
    pub cluster: String,
    /// Task definition `family[:revision]` or ARN. Required.
    pub task_definition: String,
    /// Target group ARN, or its name (resolved at start). Required.
    pub target_group: String,
    /// The container that receives traffic. Required.
    pub container_name: String,
    /// The port registered in the target group, 1 to 65535. Required.
    pub container_port: u16,
    /// Subnet ids for the task's ENI; at least one. Required.
    pub subnets: Vec<String>,
    /// Security group ids for the task's ENI. Default: none (the VPC's default group).
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Give the task a public IP. Default false.
    #[serde(default)]
    pub assign_public_ip: bool,
    /// The environment variables a Start event may set, by name. Default: none (an event
    /// setting any other, `LD_PRELOAD` say, is refused and dead-lettered).
    #[serde(default)]
    pub allow_environment: Vec<String>,
    /// Whether a Start event may replace the container's command. Default false.
    #[serde(default)]
    pub allow_command: bool,
    /// The task definition revisions a Start event may ask for. Default: none (the
    /// configured `task_definition` only).
    #[serde(default)]
    pub allow_revisions: Vec<u64>,
    /// The tag keys a Start event may set; tugboat's own `tugboat:` keys never. Default: none.
    #[serde(default)]
    pub allow_tags: Vec<String>,
    /// The most tasks one Start event may ask for (`detail.count`), 1 to 10. Default 1.
    #[serde(default = "one")]
    pub max_count: u32,
    /// Whether a Stop event may stop a task that tugboat did not start for this service (one
    /// whose `startedBy` is not `tugboat/<service>/…`). Default false.
    #[serde(default)]
    pub stop_any_task: bool,
}

fn one() -> u32 {
    1
}

/// What both ECS workflows are built from: the services (target groups resolved to ARNs) and
/// the ports their handlers call.
#[derive(Debug, Clone)]
pub struct EcsParts {
    pub services: Services,
    pub ecs: Arc<dyn Ecs>,
    pub targets: Arc<dyn TargetGroups>,
}

impl EcsParts {
    pub async fn build(setup: Setup<'_>) -> Result<EcsParts, String> {
        Ok(EcsParts {
            services: resolved(setup.config, setup.ports.targets.as_ref()).await?,
            ecs: setup.ports.ecs.clone(),
            targets: setup.ports.targets.clone(),
        })
    }
}

/// Parses and checks the section; errors name the key (`services.auth.subnets`).
pub fn parse(value: &toml::Value) -> Result<Services, BadKey> {
    let services: Services = parse_section(NAME, value)?;
    for (name, s) in &services {
        let key = |field: &str| format!("{NAME}.{name}.{field}");
        for (field, v) in [
            ("cluster", &s.cluster),
            ("task_definition", &s.task_definition),
            ("target_group", &s.target_group),
            ("container_name", &s.container_name),
        ] {
            if v.trim().is_empty() {
                return Err(BadKey::at(key(field), "must not be empty".into()));
            }
        }
        if s.container_port == 0 {
            return Err(BadKey::at(key("container_port"), "must be 1 to 65535, got 0".into()));
        }
        if s.subnets.is_empty() {
            return Err(BadKey::at(key("subnets"), "needs at least one subnet id".into()));
        }
        if !(1..=10).contains(&s.max_count) {
            return Err(BadKey::at(
                key("max_count"),
                format!("must be 1 to 10 (RunTask's limit), got {}", s.max_count),
            ));
        }
        if let Some(t) = s.allow_tags.iter().find(|t| t.starts_with("tugboat:")) {
            return Err(BadKey::at(
                key("allow_tags"),
                format!("{t:?}: the tugboat: tags are tugboat's own"),
            ));
        }
        if s.allow_revisions.contains(&0) {
            return Err(BadKey::at(key("allow_revisions"), "revisions start at 1".into()));
        }
    }
    Ok(services)
}

/// The configured services with every target group resolved to its ARN, so that a typo is
/// found when the service starts and not at the first event.
pub async fn resolved(config: &Config, targets: &dyn TargetGroups) -> Result<Services, String> {
    let mut services: Services = config
        .section(NAME)
        .map_err(|b| b.to_string())?;
    for (name, mapping) in services.iter_mut() {
        mapping.target_group = targets
            .resolve(&mapping.target_group)
            .await
            .map_err(|e| format!("{NAME}.{name}.target_group: {e}"))?;
    }
    Ok(services)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> toml::Value {
        toml::from_str::<toml::Table>(text).unwrap()["services"].clone()
    }

    const AUTH: &str = r#"
[services.auth]
cluster = "c"
task_definition = "auth:1"
target_group = "tg"
container_name = "auth"
container_port = 8080
subnets = ["subnet-1"]
"#;

    #[test]
    fn a_mapping_loads_with_its_defaults() {
        let s = parse(&section(AUTH)).unwrap();
        assert!(!s["auth"].assign_public_ip);
        assert!(s["auth"].security_groups.is_empty());
    }

    #[test]
    fn wrong_shapes_name_the_key() {
        let cases = [
            (
                AUTH.replace("target_group = \"tg\"\n", ""),
                "services.auth",
                "missing field `target_group`",
            ),
            (
                AUTH.replace("[\"subnet-1\"]", "[]"),
                "services.auth.subnets",
                "at least one",
            ),
            (
                AUTH.replace("8080", "0"),
                "services.auth.container_port",
                "1 to 65535",
            ),
            (
                AUTH.replace("8080", "70000"),
                "services.auth.container_port",
                "",
            ),
            (
                AUTH.replace("\"c\"", "\" \""),
                "services.auth.cluster",
                "must not be empty",
            ),
            (
                AUTH.replace("cluster =", "clustr ="),
                "services.auth.clustr",
                "unknown field `clustr`",
            ),
            (
                AUTH.replace("\"auth:1\"", "7"),
                "services.auth.task_definition",
                "invalid type",
            ),
            (
                "[services]\nauth = 5\n".to_owned(),
                "services.auth",
                "invalid type",
            ),
        ];
        for (text, key, message) in cases {
            let BadKey { key: k, message: m } = parse(&section(&text)).unwrap_err();
            assert_eq!(k, key, "{m}");
            assert!(m.contains(message), "{k}: {m}");
        }
    }
}
