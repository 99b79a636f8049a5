//! `tugboat dlq list|redrive`: look at dead letters and move them back after a fix.
//!
//! The listing and the redrive are `operate::dead_letters`, which the console uses too.

use std::collections::BTreeMap;
use std::path::Path;

use clap::{Args, Subcommand};

use super::{CliError, load_config};
use crate::aws::Clients;
use crate::aws::sqs::SqsQueue;
use crate::operate::dead_letters;
use crate::ports::Queue;
use crate::signing::SigningKey;

#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub command: DlqCommand,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Show the dead letters of a configured queue with their reasons.
    List {
        /// The configured queue whose DLQ to read.
        #[arg(long)]
        queue: String,
        /// At most this many messages.
        #[arg(long, default_value_t = 100)]
        max: usize,
    },
    /// Move dead letters back to their queue, where they run again.
    Redrive {
        #[arg(long)]
        queue: String,
        /// At most this many messages.
        #[arg(long, default_value_t = 1000)]
        max: usize,
    },
}

/// The queue `name` and its DLQ, with the signing key redriven copies are signed with.
async fn queues(
    config: &Path,
    name: &str,
) -> Result<(SqsQueue, SqsQueue, Option<SigningKey>), CliError> {
    let config = load_config(config)?;
    let q = config.queue(name).map_err(CliError::Usage)?;
    let dlq_name = q
        .dlq
        .as_deref()
        .ok_or_else(|| CliError::Usage(format!("queue {name:?} has no dlq configured")))?;
    let clients = Clients::new(&config.aws).await;
    let source = SqsQueue::resolve(&clients.sqs, q.url.as_deref().unwrap_or(&q.name))
        .await
        .map_err(|e| CliError::Runtime(format!("queue {name}: {e}")))?;
    let dlq = SqsQueue::resolve(&clients.sqs, dlq_name)
        .await
        .map_err(|e| CliError::Runtime(format!("dlq {dlq_name}: {e}")))?;
    Ok((source, dlq, config.security.signing_key.clone()))
}

pub async fn run(config: &Path, args: DlqArgs) -> Result<(), CliError> {
    match args.command {
        DlqCommand::List { queue, max } => {
            let (_, dlq, _) = queues(config, &queue).await?;
            let letters = dead_letters::list(&dlq, max)
                .await
                .map_err(CliError::Runtime)?;
            for l in &letters {
                print_dead_letter(&l.message_id, &l.attributes, &l.body);
            }
            println!("{} dead letter(s) in {}", letters.len(), dlq.name());
        }
        DlqCommand::Redrive { queue, max } => {
            let (source, dlq, key) = queues(config, &queue).await?;
            if key.is_none() {
                return Err(CliError::Usage(crate::operate::NO_KEY.into()));
            }
            let done = dead_letters::redrive(&source, &dlq, None, max, key.as_ref())
                .await
                .map_err(CliError::Runtime)?;
            for why in &done.not_moved {
                eprintln!("not moved {why}");
            }
            if done.not_deleted > 0 {
                eprintln!(
                    "{} message(s) were sent back but could not be deleted from the DLQ; they may be redriven twice (tugboat acknowledges the duplicate from its journal)",
                    done.not_deleted
                );
            }
            if done.moved == 0 && !done.not_moved.is_empty() {
                return Err(CliError::Runtime("no message could be moved".into()));
            }
            println!("{}", done.summary(dlq.name(), source.name()));
        }
    }
    Ok(())
}

fn print_dead_letter(id: &str, attributes: &BTreeMap<String, String>, body: &str) {
    let get = |k: &str| attributes.get(k).map(String::as_str).unwrap_or("-");
    println!("{id}");
    println!("  failed at:   {}", get("tugboat-failed-at"));
    println!(
        "  workflow:    {} ({}, run {})",
        get("tugboat-workflow"),
        get("tugboat-workflow-id"),
        get("tugboat-generation")
    );
    println!(
        "  route/step:  {} / {} after {} attempt(s)",
        get("tugboat-route"),
        get("tugboat-step"),
        get("tugboat-attempts")
    );
    println!("  error:       {}", get("tugboat-error"));
    if let Some(c) = attributes.get("tugboat-compensation") {
        println!("  cleaned up:  {c}");
    }
    println!("  original:    {}", get("tugboat-original-message-id"));
    let preview: String = body.chars().take(160).collect();
    println!(
        "  body:        {preview}{}",
        if body.len() > preview.len() {
            "…"
        } else {
            ""
        }
    );
}
