//! Converges an AWS account on a migration [`Plan`]: creates what is missing, updates what
//! differs, and reports every resource as created, updated or unchanged. Running it twice
//! changes nothing the second time.

use std::collections::BTreeMap;
use std::fmt;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::json;

use super::{AwsError, Clients, classify};
use crate::migrate::{Plan, Protocol, QueueSpec, SubscriptionSpec, TableSpec};

/// What happened to one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Created,
    /// With the attributes that changed.
    Updated(Vec<String>),
    Unchanged,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: &'static str,
    pub name: String,
    pub action: Action,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (verb, detail) = match &self.action {
            Action::Created => ("created", String::new()),
            Action::Updated(what) => ("updated", format!(" ({})", what.join(", "))),
            Action::Unchanged => ("unchanged", String::new()),
        };
        write!(f, "{verb:<10} {:<13} {}{detail}", self.kind, self.name)
    }
}

/// The outcome of a whole run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub changes: Vec<Change>,
}

impl Report {
    pub fn count(&self, pick: fn(&Action) -> bool) -> usize {
        self.changes.iter().filter(|c| pick(&c.action)).count()
    }

    pub fn changed_anything(&self) -> bool {
        self.changes.iter().any(|c| c.action != Action::Unchanged)
    }
}

/// A failure that stops the run, with the resource it concerns.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{kind} {name}: {source}")]
    Aws {
        kind: &'static str,
        name: String,
        source: AwsError,
    },
    #[error("{kind} {name}: {message}")]
    Conflict {
        kind: &'static str,
        name: String,
        message: String,
    },
}

/// Applies `plan`; `on_change` sees every change as it is made (for progress output).
pub async fn apply(
    clients: &Clients,
    plan: &Plan,
    mut on_change: impl FnMut(&Change),
) -> Result<Report, MigrateError> {
    let mut report = Report::default();
    let mut record = |c: Change, report: &mut Report| {
        on_change(&c);
        report.changes.push(c);
    };

    let mut topic_arns = BTreeMap::new();
    for name in plan.topics.keys() {
        let (arn, action) = ensure_topic(clients, name).await?;
        topic_arns.insert(name.clone(), arn);
        record(change("topic", name, action), &mut report);
    }

    // Queues that receive from SNS need a policy that lets the topic send to them.
    let mut senders: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in plan.subscriptions.values() {
        if s.protocol == Protocol::Sqs && !s.endpoint.starts_with("arn:") {
            senders
                .entry(s.endpoint.as_str())
                .or_default()
                .push(topic_arns[&s.topic].as_str());
        }
    }

    let mut queue_arns = BTreeMap::new();
    for q in plan.queues.values() {
        let dlq_arn = match &q.dead_letter {
            Some(d) => {
                let attrs = BTreeMap::from([(
                    QueueAttributeName::MessageRetentionPeriod,
                    d.retention.as_secs().to_string(),
                )]);
                let (url, action) = ensure_queue(
                    clients,
                    &d.name,
                    q.fifo,
                    attrs,
                    senders.get(d.name.as_str()),
                )
                .await?;
                record(change("dead-letter", &d.name, action), &mut report);
                let arn = queue_arn(clients, &d.name, &url).await?;
                queue_arns.insert(d.name.clone(), arn.clone());
                Some((arn, d.max_receive_count))
            }
            None => None,
        };
        let attrs = queue_attributes(q, dlq_arn.as_ref());
        let (url, action) = ensure_queue(
            clients,
            &q.name,
            q.fifo,
            attrs,
            senders.get(q.name.as_str()),
        )
        .await?;
        record(change("queue", &q.name, action), &mut report);
        queue_arns.insert(q.name.clone(), queue_arn(clients, &q.name, &url).await?);
    }

    for t in plan.tables.values() {
        let action = ensure_table(clients, t).await?;
        record(change("table", &t.name, action), &mut report);
    }

    for s in plan.subscriptions.values() {
        let endpoint = match s.protocol {
            Protocol::Sqs if !s.endpoint.starts_with("arn:") => queue_arns[&s.endpoint].clone(),
            _ => s.endpoint.clone(),
        };
        let action = ensure_subscription(clients, &topic_arns[&s.topic], &endpoint, s).await?;
        let name = format!("{} → {} {}", s.topic, s.protocol.as_str(), s.endpoint);
        record(change("subscription", &name, action), &mut report);
    }
    Ok(report)
}

fn change(kind: &'static str, name: &str, action: Action) -> Change {
    Change {
        kind,
        name: name.to_owned(),
        action,
    }
}

fn aws(kind: &'static str, name: &str) -> impl FnOnce(AwsError) -> MigrateError {
    let name = name.to_owned();
    move |source| MigrateError::Aws { kind, name, source }
}

fn queue_attributes(
    q: &QueueSpec,
    dlq: Option<&(String, u32)>,
) -> BTreeMap<QueueAttributeName, String> {
    let mut attrs = BTreeMap::from([
        (
            QueueAttributeName::VisibilityTimeout,
            q.visibility_timeout.as_secs().to_string(),
        ),
        (
            QueueAttributeName::MessageRetentionPeriod,
            q.message_retention.as_secs().to_string(),
        ),
    ]);
    if let Some((arn, max)) = dlq {
        attrs.insert(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": arn, "maxReceiveCount": max}).to_string(),
        );
    }
    attrs
}

/// The policy that lets each topic in `topic_arns` send to the queue `queue_arn`.
fn sns_send_policy(queue_arn: &str, topic_arns: &[&str]) -> String {
    let statements: Vec<_> = topic_arns
        .iter()
        .map(|topic| {
            json!({
                "Sid": format!("tugboat-sns-{}", topic.rsplit(':').next().unwrap_or(topic)),
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic}},
            })
        })
        .collect();
    json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

/// Whether two attribute values mean the same (JSON-valued ones compare as JSON).
fn same_value(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(x), Ok(y)) if x.is_object() => normalise(&x) == normalise(&y),
        _ => false,
    }
}

/// SQS returns `maxReceiveCount` as a string although it was set as a number.
fn normalise(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), normalise(v))).collect(),
        serde_json::Value::Array(a) => a.iter().map(normalise).collect(),
        serde_json::Value::Number(n) => serde_json::Value::String(n.to_string()),
        other => other.clone(),
    }
}

async fn ensure_queue(
    clients: &Clients,
    name: &str,
    fifo: bool,
    mut attrs: BTreeMap<QueueAttributeName, String>,
    senders: Option<&Vec<&str>>,
) -> Result<(String, Action), MigrateError> {
    let sqs = &clients.sqs;
    let existing = match sqs.get_queue_url().queue_name(name).send().await {
        Ok(out) => out.queue_url,
        Err(e) => {
            let e = classify("GetQueueUrl", e);
            if e.code.contains("NonExistentQueue") || e.code == "QueueDoesNotExist" {
                None
            } else {
                return Err(aws("queue", name)(e));
            }
        }
    };
    let Some(url) = existing else {
        let mut create = sqs.create_queue().queue_name(name);
        if fifo {
            create = create.attributes(QueueAttributeName::FifoQueue, "true");
        }
        for (k, v) in &attrs {
            create = create.attributes(k.clone(), v);
        }
        let url = create
            .send()
            .await
            .map_err(|e| aws("queue", name)(classify("CreateQueue", e)))?
            .queue_url
            .unwrap_or_default();
        if let Some(topics) = senders {
            let arn = queue_arn(clients, name, &url).await?;
            set_queue_attributes(
                clients,
                name,
                &url,
                [(QueueAttributeName::Policy, sns_send_policy(&arn, topics))].into(),
            )
            .await?;
        }
        return Ok((url, Action::Created));
    };

    let current = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .map_err(|e| aws("queue", name)(classify("GetQueueAttributes", e)))?
        .attributes
        .unwrap_or_default();
    let is_fifo = current
        .get(&QueueAttributeName::FifoQueue)
        .map(String::as_str)
        == Some("true");
    if is_fifo != fifo {
        return Err(MigrateError::Conflict {
            kind: "queue",
            name: name.to_owned(),
            message: "exists with a different FIFO setting, which SQS cannot change; delete it or rename it".into(),
        });
    }
    if let Some(topics) = senders
        && let Some(arn) = current.get(&QueueAttributeName::QueueArn)
    {
        attrs.insert(QueueAttributeName::Policy, sns_send_policy(arn, topics));
    }
    let differing: BTreeMap<_, _> = attrs
        .into_iter()
        .filter(|(k, v)| !current.get(k).is_some_and(|c| same_value(c, v)))
        .collect();
    if differing.is_empty() {
        return Ok((url, Action::Unchanged));
    }
    let what = differing.keys().map(|k| k.as_str().to_owned()).collect();
    set_queue_attributes(clients, name, &url, differing).await?;
    Ok((url, Action::Updated(what)))
}

async fn set_queue_attributes(
    clients: &Clients,
    name: &str,
    url: &str,
    attrs: BTreeMap<QueueAttributeName, String>,
) -> Result<(), MigrateError> {
    clients
        .sqs
        .set_queue_attributes()
        .queue_url(url)
        .set_attributes(Some(attrs.into_iter().collect()))
        .send()
        .await
        .map_err(|e| aws("queue", name)(classify("SetQueueAttributes", e)))?;
    Ok(())
}

async fn queue_arn(clients: &Clients, name: &str, url: &str) -> Result<String, MigrateError> {
    let out = clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| aws("queue", name)(classify("GetQueueAttributes", e)))?;
    out.attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| MigrateError::Conflict {
            kind: "queue",
            name: name.to_owned(),
            message: "SQS returned no QueueArn".into(),
        })
}

async fn ensure_topic(clients: &Clients, name: &str) -> Result<(String, Action), MigrateError> {
    let mut token = None;
    loop {
        let out = clients
            .sns
            .list_topics()
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| aws("topic", name)(classify("ListTopics", e)))?;
        for t in out.topics.unwrap_or_default() {
            if let Some(arn) = t.topic_arn
                && arn.rsplit(':').next() == Some(name)
            {
                return Ok((arn, Action::Unchanged));
            }
        }
        token = out.next_token;
        if token.is_none() {
            break;
        }
    }
    let out = clients
        .sns
        .create_topic()
        .name(name)
        .send()
        .await
        .map_err(|e| aws("topic", name)(classify("CreateTopic", e)))?;
    Ok((out.topic_arn.unwrap_or_default(), Action::Created))
}

async fn ensure_table(clients: &Clients, t: &TableSpec) -> Result<Action, MigrateError> {
    let db = &clients.dynamodb;
    match db.describe_table().table_name(&t.name).send().await {
        Ok(out) => {
            let keys = out
                .table
                .map(|t| t.key_schema.unwrap_or_default())
                .unwrap_or_default();
            let key_of = |kind: KeyType| {
                keys.iter()
                    .find(|k| k.key_type == kind)
                    .map(|k| k.attribute_name.clone())
            };
            let want_sort = t.sort_key.as_ref().map(|k| k.name.clone());
            if key_of(KeyType::Hash).as_deref() != Some(t.partition_key.name.as_str())
                || key_of(KeyType::Range) != want_sort
            {
                return Err(MigrateError::Conflict {
                    kind: "table",
                    name: t.name.clone(),
                    message: format!(
                        "exists with key schema ({:?}, {:?}); the migration wants ({:?}, {:?}), and DynamoDB cannot change keys",
                        key_of(KeyType::Hash),
                        key_of(KeyType::Range),
                        t.partition_key.name,
                        want_sort
                    ),
                });
            }
            Ok(Action::Unchanged)
        }
        Err(e) => {
            let e = classify("DescribeTable", e);
            if e.code != "ResourceNotFoundException" {
                return Err(aws("table", &t.name)(e));
            }
            let mut create = db
                .create_table()
                .table_name(&t.name)
                .billing_mode(BillingMode::PayPerRequest);
            for (key, kind) in std::iter::once((&t.partition_key, KeyType::Hash))
                .chain(t.sort_key.iter().map(|k| (k, KeyType::Range)))
            {
                create = create
                    .attribute_definitions(
                        AttributeDefinition::builder()
                            .attribute_name(&key.name)
                            .attribute_type(ScalarAttributeType::from(key.kind.as_str()))
                            .build()
                            .expect("name and type are set"),
                    )
                    .key_schema(
                        KeySchemaElement::builder()
                            .attribute_name(&key.name)
                            .key_type(kind)
                            .build()
                            .expect("name and type are set"),
                    );
            }
            create
                .send()
                .await
                .map_err(|e| aws("table", &t.name)(classify("CreateTable", e)))?;
            Ok(Action::Created)
        }
    }
}

async fn ensure_subscription(
    clients: &Clients,
    topic_arn: &str,
    endpoint: &str,
    s: &SubscriptionSpec,
) -> Result<Action, MigrateError> {
    let sns = &clients.sns;
    let name = format!("{} → {}", s.topic, s.endpoint);
    let raw = if s.raw_message_delivery {
        "true"
    } else {
        "false"
    };
    let mut token = None;
    loop {
        let out = sns
            .list_subscriptions_by_topic()
            .topic_arn(topic_arn)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| aws("subscription", &name)(classify("ListSubscriptionsByTopic", e)))?;
        for sub in out.subscriptions.unwrap_or_default() {
            if sub.protocol.as_deref() != Some(s.protocol.as_str())
                || sub.endpoint.as_deref() != Some(endpoint)
            {
                continue;
            }
            let Some(arn) = sub.subscription_arn.filter(|a| a.starts_with("arn:")) else {
                // "PendingConfirmation": an email or HTTPS endpoint has not confirmed yet.
                return Ok(Action::Unchanged);
            };
            if !matches!(s.protocol, Protocol::Sqs | Protocol::Https | Protocol::Http) {
                return Ok(Action::Unchanged);
            }
            let attrs = sns
                .get_subscription_attributes()
                .subscription_arn(&arn)
                .send()
                .await
                .map_err(|e| aws("subscription", &name)(classify("GetSubscriptionAttributes", e)))?
                .attributes
                .unwrap_or_default();
            let current = attrs
                .get("RawMessageDelivery")
                .map(String::as_str)
                .unwrap_or("false");
            if current == raw {
                return Ok(Action::Unchanged);
            }
            sns.set_subscription_attributes()
                .subscription_arn(&arn)
                .attribute_name("RawMessageDelivery")
                .attribute_value(raw)
                .send()
                .await
                .map_err(|e| {
                    aws("subscription", &name)(classify("SetSubscriptionAttributes", e))
                })?;
            return Ok(Action::Updated(vec!["RawMessageDelivery".into()]));
        }
        token = out.next_token;
        if token.is_none() {
            break;
        }
    }
    let mut subscribe = sns
        .subscribe()
        .topic_arn(topic_arn)
        .protocol(s.protocol.as_str())
        .endpoint(endpoint)
        .return_subscription_arn(true);
    if s.raw_message_delivery {
        subscribe = subscribe.attributes("RawMessageDelivery", "true");
    }
    subscribe
        .send()
        .await
        .map_err(|e| aws("subscription", &name)(classify("Subscribe", e)))?;
    Ok(Action::Created)
}
