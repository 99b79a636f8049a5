//! `tugboat send`: a producer that puts JSON events on a configured queue.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Args;

use super::{CliError, load_config};
use crate::aws::Clients;
use crate::aws::sqs::{MAX_MESSAGE_BYTES, SqsQueue};
use crate::ports::{OutgoingMessage, Queue};

#[derive(Debug, Args)]
pub struct SendArgs {
    /// The configured queue to send to (its `name` in the config).
    #[arg(long)]
    pub queue: String,

    /// A string message attribute, KEY=VALUE; repeat for more (at most 10, SQS's limit).
    #[arg(long = "attribute", short = 'a', value_parser = parse_attribute)]
    pub attributes: Vec<(String, String)>,

    /// The input is JSON lines: send one message per non-blank line, in batches of 10.
    #[arg(long)]
    pub batch: bool,

    /// Message group id (FIFO queues only).
    #[arg(long)]
    pub group_id: Option<String>,

    /// Deduplication id (FIFO queues without content-based deduplication).
    #[arg(long)]
    pub dedup_id: Option<String>,

    /// The JSON file to send, or - for standard input.
    pub input: PathBuf,
}

/// `KEY=VALUE` → (KEY, VALUE), refusing what SQS would refuse.
fn parse_attribute(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))?;
    let valid_key = !key.is_empty()
        && key.len() <= 256
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        && !key.starts_with('.')
        && !key.ends_with('.')
        && !key.to_ascii_lowercase().starts_with("aws.")
        && !key.to_ascii_lowercase().starts_with("amazon.");
    if !valid_key {
        return Err(format!(
            "attribute name {key:?} must be 1 to 256 letters, digits, '_', '-' or '.', not start with AWS. or Amazon."
        ));
    }
    if value.is_empty() {
        return Err(format!(
            "attribute {key:?} has an empty value, which SQS refuses"
        ));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// The message bodies in the input, each checked to be JSON and within SQS's size limit.
fn read_bodies(args: &SendArgs) -> Result<Vec<String>, CliError> {
    let mut text = String::new();
    let source = args.input.display().to_string();
    let read = if source == "-" {
        std::io::stdin().read_to_string(&mut text)
    } else {
        std::fs::File::open(&args.input).and_then(|mut f| f.read_to_string(&mut text))
    };
    read.map_err(|e| CliError::Usage(format!("cannot read {source}: {e}")))?;
    let bodies: Vec<(usize, String)> = if args.batch {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i + 1, l.trim().to_owned()))
            .collect()
    } else {
        vec![(0, text.trim().to_owned())]
    };
    if bodies.is_empty() {
        return Err(CliError::Usage(format!("{source}: no messages to send")));
    }
    for (line, body) in &bodies {
        let place = if args.batch {
            format!("{source} line {line}")
        } else {
            source.clone()
        };
        serde_json::from_str::<serde_json::Value>(body)
            .map_err(|e| CliError::Usage(format!("{place}: not valid JSON: {e}")))?;
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(CliError::Usage(format!(
                "{place}: {} bytes is over SQS's limit of {MAX_MESSAGE_BYTES}",
                body.len()
            )));
        }
    }
    Ok(bodies.into_iter().map(|(_, b)| b).collect())
}

pub async fn run(config: &Path, args: SendArgs) -> Result<(), CliError> {
    if args.attributes.len() > 10 {
        return Err(CliError::Usage(
            "at most 10 attributes per message (SQS's limit)".into(),
        ));
    }
    let config = load_config(config)?;
    let queue_config = config.queue(&args.queue).map_err(CliError::Usage)?;
    let bodies = read_bodies(&args)?;
    let clients = Clients::new(&config.aws).await;
    let target = queue_config.url.as_deref().unwrap_or(&queue_config.name);
    let queue = SqsQueue::resolve(&clients.sqs, target)
        .await
        .map_err(|e| CliError::Runtime(format!("queue {}: {e}", args.queue)))?;
    let attributes: BTreeMap<String, String> = args.attributes.iter().cloned().collect();
    let messages: Vec<OutgoingMessage> = bodies
        .into_iter()
        .map(|body| OutgoingMessage {
            body,
            attributes: attributes.clone(),
            group_id: args.group_id.clone(),
            deduplication_id: args.dedup_id.clone(),
            delay: None,
        })
        .collect();
    let (mut sent, mut failed) = (0usize, 0usize);
    for (chunk_index, chunk) in messages.chunks(10).enumerate() {
        let results = queue
            .send_batch(chunk)
            .await
            .map_err(|e| CliError::Runtime(format!("send to {}: {e}", args.queue)))?;
        for (i, result) in results.into_iter().enumerate() {
            let n = chunk_index * 10 + i + 1;
            match result {
                Ok(id) => {
                    sent += 1;
                    println!("sent {n}: {id}");
                }
                Err(f) => {
                    failed += 1;
                    eprintln!("failed {n}: {}: {}", f.code, f.message);
                }
            }
        }
    }
    if failed > 0 {
        return Err(CliError::Runtime(format!(
            "{failed} of {} messages were not sent",
            sent + failed
        )));
    }
    if messages.len() > 1 {
        println!("sent {sent} messages to {}", args.queue);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_attribute;

    #[test]
    fn attributes_parse_and_bad_shapes_are_refused() {
        assert_eq!(
            parse_attribute("k=v=w").unwrap(),
            ("k".into(), "v=w".into())
        );
        for bad in ["novalue", "=v", "k=", "AWS.x=1", "bad key=1", ".k=1"] {
            assert!(parse_attribute(bad).is_err(), "{bad}");
        }
    }
}
