//! The AWS actions tugboat calls, by who calls them (the engine or a workflow kind), each
//! group with what the template scopes it to. This list is the source of truth for the task
//! role: `tests/deploy.rs` checks that `deploy/ecs/template.yaml`'s task-role policy grants
//! exactly these actions (no more, no less) in one statement per group (its `Sid`), on the
//! template's own resources unless AWS allows no resource scoping; and that every SDK
//! operation the adapters in `src/aws/` call has its action here. `tugboat migrate` and the
//! agent are left out: they run with other credentials (an operator's, an instance role).

/// What a group's actions may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The work queues and their DLQs.
    Queues,
    /// The success, error and anomaly topics.
    Topics,
    /// The ECS clusters tugboat starts tasks in or drains (their tasks and container
    /// instances).
    Clusters,
    /// The task definition families `ecs_start` runs, into the workload cluster only (an
    /// `ecs:cluster` condition).
    TaskDefinitions,
    /// The target groups tasks are registered in.
    TargetGroups,
    /// The roles tasks are started with (`iam:PassRole`).
    TaskRoles,
    /// The daily-cost table.
    CostTable,
    /// The shared journal's table (`[journal] kind = "dynamodb"`).
    JournalTable,
    /// The bucket Cost and Usage Reports arrive in.
    ReportBucket,
    /// The prefix of that bucket summaries are written under (`[cur] curated_prefix`).
    CuratedPrefix,
    /// The Auto Scaling groups whose terminate lifecycle actions `spot_drain` completes.
    AutoScalingGroups,
    /// The resource scan's findings table.
    FindingsTable,
    /// The EC2 instances that opted in to auto-stop (`tugboat-auto-stop = true`, an
    /// `aws:ResourceTag` condition).
    TaggedInstances,
    /// Every ECS service of the account, to read (a service's tags are known only once it is
    /// described).
    AccountServices,
    /// The ECS services that opted in to auto-stop (`tugboat-auto-stop = true`).
    TaggedServices,
    /// Every RDS DB instance of the account, to read.
    AccountDatabases,
    /// The RDS DB instances that opted in to auto-stop (`tugboat-auto-stop = true`).
    TaggedDatabases,
    /// The role of the agreed name in other accounts (`AccountRoleName`).
    AccountRoles,
    /// The SNS topics a States Language definition publishes to (`StatesTopicArns`).
    StatesTopics,
    /// The SQS queues a definition sends to (`StatesQueueArns`).
    StatesQueues,
    /// The DynamoDB tables a definition reads and writes items of (`StatesTableArns`).
    StatesTables,
    /// Nothing narrower exists: AWS allows no resource-level permission for these actions.
    Unscopable,
}

/// A group of actions one part of tugboat needs.
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    /// The statement's `Sid` in the template.
    pub sid: &'static str,
    /// `engine`, or the workflow kind.
    pub by: &'static str,
    pub scope: Scope,
    pub actions: &'static [&'static str],
}

pub const GRANTS: &[Grant] = &[
    Grant {
        sid: "StatesTopics",
        by: "states",
        scope: Scope::StatesTopics,
        // A definition's sns:publish Tasks.
        actions: &["sns:Publish"],
    },
    Grant {
        sid: "StatesQueues",
        by: "states",
        scope: Scope::StatesQueues,
        // A definition's sqs:sendMessage Tasks (a queue named, not given by URL, is looked up).
        actions: &["sqs:GetQueueUrl", "sqs:SendMessage"],
    },
    Grant {
        sid: "StatesTables",
        by: "states",
        scope: Scope::StatesTables,
        // A definition's dynamodb:getItem, putItem and updateItem Tasks.
        actions: &[
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
        ],
    },
    Grant {
        sid: "EngineQueues",
        by: "engine",
        scope: Scope::Queues,
        // Receive, settle (delete, release, refresh as a fresh copy), DLQ handoff, and
        // reading the redrive policy at start; the console reads and redrives the DLQ and
        // sends retry messages to the work queue; the schedules send their ticks to it. Batch
        // calls are authorised by these.
        actions: &[
            "sqs:ChangeMessageVisibility",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
            "sqs:GetQueueUrl",
            "sqs:ReceiveMessage",
            "sqs:SendMessage",
        ],
    },
    Grant {
        sid: "EngineTopics",
        by: "engine",
        scope: Scope::Topics,
        actions: &["sns:Publish"],
    },
    Grant {
        sid: "EngineFindTopics",
        by: "engine",
        scope: Scope::Unscopable,
        // Topic names in the configuration are resolved to ARNs at start.
        actions: &["sns:ListTopics"],
    },
    Grant {
        sid: "EngineJournal",
        by: "engine",
        scope: Scope::JournalTable,
        // The shared journal: records, claims (conditional updates) and listing.
        actions: &["dynamodb:GetItem", "dynamodb:Scan", "dynamodb:UpdateItem"],
    },
    Grant {
        sid: "EcsTasks",
        by: "ecs_start, ecs_stop, spot_drain",
        scope: Scope::Clusters,
        actions: &[
            "ecs:DescribeContainerInstances",
            "ecs:DescribeTasks",
            "ecs:ListContainerInstances",
            "ecs:ListTasks",
            "ecs:StopTask",
            "ecs:UpdateContainerInstancesState",
        ],
    },
    Grant {
        sid: "EcsRunTask",
        by: "ecs_start",
        scope: Scope::TaskDefinitions,
        actions: &["ecs:RunTask"],
    },
    Grant {
        sid: "PassTaskRoles",
        by: "ecs_start",
        scope: Scope::TaskRoles,
        actions: &["iam:PassRole"],
    },
    Grant {
        sid: "TargetGroups",
        by: "ecs_start, ecs_stop, spot_drain",
        scope: Scope::TargetGroups,
        actions: &[
            "elasticloadbalancing:DeregisterTargets",
            "elasticloadbalancing:RegisterTargets",
        ],
    },
    Grant {
        sid: "DescribeTargets",
        by: "ecs_start, ecs_stop, spot_drain",
        scope: Scope::Unscopable,
        actions: &[
            "elasticloadbalancing:DescribeTargetGroups",
            "elasticloadbalancing:DescribeTargetHealth",
        ],
    },
    Grant {
        sid: "CostTable",
        // resource_scan reads the unit rates cur_ingest keeps there (Query).
        by: "cur_ingest, resource_scan",
        scope: Scope::CostTable,
        actions: &[
            "dynamodb:BatchWriteItem",
            "dynamodb:PutItem",
            "dynamodb:Query",
        ],
    },
    Grant {
        sid: "CostReports",
        by: "cur_ingest",
        scope: Scope::ReportBucket,
        actions: &["s3:GetObject"],
    },
    Grant {
        sid: "CuratedSummaries",
        by: "cur_ingest",
        scope: Scope::CuratedPrefix,
        actions: &["s3:PutObject"],
    },
    Grant {
        sid: "LifecycleActions",
        by: "spot_drain",
        scope: Scope::AutoScalingGroups,
        actions: &[
            "autoscaling:CompleteLifecycleAction",
            "autoscaling:RecordLifecycleActionHeartbeat",
        ],
    },
    Grant {
        sid: "ResourceInventory",
        by: "resource_scan",
        // EC2's Describe calls take no resource-level permissions.
        scope: Scope::Unscopable,
        actions: &[
            "ec2:DescribeAddresses",
            "ec2:DescribeInstances",
            "ec2:DescribeSnapshots",
            "ec2:DescribeVolumes",
        ],
    },
    Grant {
        sid: "ResourceMetrics",
        by: "resource_scan",
        // CPU of running instances, connections of DB instances; CloudWatch allows no
        // resource-level permission for GetMetricData.
        scope: Scope::Unscopable,
        actions: &["cloudwatch:GetMetricData"],
    },
    Grant {
        sid: "ResourceDatabases",
        by: "resource_scan",
        // Also auto_stop's: it finds the tagged DB instances among them.
        scope: Scope::AccountDatabases,
        actions: &["rds:DescribeDBInstances"],
    },
    Grant {
        sid: "FindingsTable",
        by: "resource_scan",
        scope: Scope::FindingsTable,
        // Replace a region's findings (query its keys, batch writes and deletes); read them
        // all (`tugboat resources findings`).
        actions: &["dynamodb:BatchWriteItem", "dynamodb:Query", "dynamodb:Scan"],
    },
    Grant {
        sid: "AutoStopInstances",
        by: "auto_stop",
        scope: Scope::TaggedInstances,
        // Stop and start, and the mark that says which instances a stop stopped; only on
        // instances tagged tugboat-auto-stop = true. (Finding them is ec2:DescribeInstances,
        // granted to the inventory above.)
        actions: &[
            "ec2:CreateTags",
            "ec2:DeleteTags",
            "ec2:StartInstances",
            "ec2:StopInstances",
        ],
    },
    Grant {
        sid: "AutoStopListServices",
        by: "auto_stop",
        // Listing clusters and a cluster's services takes no resource-level permission.
        scope: Scope::Unscopable,
        actions: &["ecs:ListClusters", "ecs:ListServices"],
    },
    Grant {
        sid: "AutoStopReadServices",
        by: "auto_stop",
        scope: Scope::AccountServices,
        // With their tags: the workflow selects by tag itself.
        actions: &["ecs:DescribeServices"],
    },
    Grant {
        sid: "AutoStopServices",
        by: "auto_stop",
        scope: Scope::TaggedServices,
        // The desired count (0, and back), and the mark that names the stop that remembers the
        // count; only on services tagged tugboat-auto-stop = true.
        actions: &["ecs:TagResource", "ecs:UntagResource", "ecs:UpdateService"],
    },
    Grant {
        sid: "AutoStopDatabases",
        by: "auto_stop",
        scope: Scope::TaggedDatabases,
        // Stop and start, and the mark that says which a stop stopped; only DB instances
        // tagged tugboat-auto-stop = true.
        actions: &[
            "rds:AddTagsToResource",
            "rds:RemoveTagsFromResource",
            "rds:StartDBInstance",
            "rds:StopDBInstance",
        ],
    },
    Grant {
        sid: "AssumeAccountRoles",
        by: "resource_scan",
        // resource_scan and auto_stop in other accounts (aws-config's AssumeRoleProvider).
        scope: Scope::AccountRoles,
        actions: &["sts:AssumeRole"],
    },
];

/// The IAM action an SDK operation (the client method's name, `run_task`) is authorised by,
/// for the services the adapters use; batch operations map to their single form.
pub fn action_of(service: &str, operation: &str) -> Option<String> {
    let prefix = match service {
        "sqs" | "sns" | "ecs" | "dynamodb" | "s3" | "autoscaling" | "ec2" | "rds"
        | "cloudwatch" => service,
        "elbv2" | "elasticloadbalancingv2" => "elasticloadbalancing",
        _ => return None,
    };
    let single = match (prefix, operation) {
        ("sqs", "send_message_batch") => "send_message",
        ("sqs", "delete_message_batch") => "delete_message",
        ("sqs", "change_message_visibility_batch") => "change_message_visibility",
        // IAM spells RDS's DB in capitals.
        ("rds", op) if op.contains("_db_") => {
            let pascal: String = op
                .split('_')
                .map(|w| match w {
                    "db" => "DB".to_string(),
                    w => {
                        let mut c = w.chars();
                        c.next()
                            .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                            .unwrap_or_default()
                    }
                })
                .collect();
            return Some(format!("rds:{pascal}"));
        }
        (_, op) => op,
    };
    let pascal: String = single
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    Some(format!("{prefix}:{pascal}"))
}

/// Every action in [`GRANTS`].
pub fn all_actions() -> std::collections::BTreeSet<&'static str> {
    GRANTS
        .iter()
        .flat_map(|g| g.actions.iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_map_to_their_actions_and_no_grant_repeats_or_wildcards() {
        assert_eq!(action_of("ecs", "run_task").unwrap(), "ecs:RunTask");
        assert_eq!(
            action_of("sqs", "delete_message_batch").unwrap(),
            "sqs:DeleteMessage"
        );
        assert_eq!(
            action_of("elbv2", "describe_target_health").unwrap(),
            "elasticloadbalancing:DescribeTargetHealth"
        );
        assert_eq!(
            action_of("ec2", "describe_volumes").unwrap(),
            "ec2:DescribeVolumes"
        );
        assert_eq!(
            action_of("rds", "describe_db_instances").unwrap(),
            "rds:DescribeDBInstances"
        );
        assert_eq!(
            action_of("rds", "add_tags_to_resource").unwrap(),
            "rds:AddTagsToResource"
        );
        assert_eq!(
            action_of("cloudwatch", "get_metric_data").unwrap(),
            "cloudwatch:GetMetricData"
        );
        assert!(action_of("lambda", "invoke").is_none());
        // An action is granted once per scope (the cost and findings tables each have their
        // own statement for the same DynamoDB writes).
        let mut seen = std::collections::BTreeSet::new();
        for g in GRANTS {
            for a in g.actions {
                assert!(!a.contains('*'), "{a}");
                assert!(
                    seen.insert((format!("{:?}", g.scope), *a)),
                    "{a} granted twice on {:?}",
                    g.scope
                );
            }
        }
    }
}
