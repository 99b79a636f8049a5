//! `tugboat dlq list|redrive`: look at dead letters and move them back after a fix.
//!
//! Redrive is receive + send + delete (the emulator has no StartMessageMoveTask; in AWS it
//! also keeps tugboat's marker on the message, which a move task would not add).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::{CliError, load_config};
use crate::aws::Clients;
use crate::aws::sqs::SqsQueue;
use crate::intake::attributes;
use crate::ports::{OutgoingMessage, Queue};

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

async fn queues(config: &Path, name: &str) -> Result<(SqsQueue, SqsQueue), CliError> {
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
    Ok((source, dlq))
}

fn runtime(e: impl std::fmt::Display) -> CliError {
    CliError::Runtime(e.to_string())
}

pub async fn run(config: &Path, args: DlqArgs) -> Result<(), CliError> {
    match args.command {
        DlqCommand::List { queue, max } => {
            let (_, dlq) = queues(config, &queue).await?;
            let mut seen = BTreeSet::new();
            let mut handles = Vec::new();
            // Hidden briefly while read, so that each is listed once; released at the end.
            while seen.len() < max {
                let batch = dlq
                    .receive(10, Duration::from_secs(1), Duration::from_secs(30))
                    .await
                    .map_err(runtime)?;
                if batch.is_empty() {
                    break;
                }
                for m in batch {
                    if !seen.insert(m.message_id.clone()) {
                        continue;
                    }
                    print_dead_letter(&m.message_id, &m.attributes, &m.body);
                    handles.push(m.receipt_handle);
                }
            }
            for chunk in handles.chunks(10) {
                dlq.change_visibility_batch(chunk, Duration::ZERO)
                    .await
                    .map_err(runtime)?;
            }
            println!("{} dead letter(s) in {}", seen.len(), dlq.name());
        }
        DlqCommand::Redrive { queue, max } => {
            let (source, dlq) = queues(config, &queue).await?;
            let mut moved = 0;
            while moved < max {
                let want = (max - moved).min(10) as u32;
                let batch = dlq
                    .receive(want, Duration::from_secs(1), Duration::from_secs(60))
                    .await
                    .map_err(runtime)?;
                if batch.is_empty() {
                    break;
                }
                let outgoing: Vec<OutgoingMessage> = batch
                    .iter()
                    .map(|m| {
                        // Marked with the run that failed, so that a duplicate of this copy
                        // cannot start the instance a second time.
                        let attributes = attributes::redriven(&m.attributes, &m.message_id);
                        OutgoingMessage {
                            body: m.body.clone(),
                            attributes,
                            ..Default::default()
                        }
                    })
                    .collect();
                let results = source.send_batch(&outgoing).await.map_err(runtime)?;
                // Delete from the DLQ only what arrived in the queue: nothing is lost.
                let sent: Vec<String> = batch
                    .iter()
                    .zip(&results)
                    .filter(|(_, r)| r.is_ok())
                    .map(|(m, _)| m.receipt_handle.clone())
                    .collect();
                for (m, r) in batch.iter().zip(&results) {
                    if let Err(f) = r {
                        eprintln!("not moved {}: {}: {}", m.message_id, f.code, f.message);
                    }
                }
                let failed = dlq.delete_batch(&sent).await.map_err(runtime)?;
                if !failed.is_empty() {
                    eprintln!(
                        "{} message(s) were sent back but could not be deleted from the DLQ; they may be redriven twice (tugboat acknowledges the duplicate from its journal)",
                        failed.len()
                    );
                }
                moved += sent.len();
                if sent.is_empty() {
                    return Err(CliError::Runtime("no message could be moved".into()));
                }
            }
            println!(
                "redrove {moved} message(s) from {} to {}",
                dlq.name(),
                source.name()
            );
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
