//! `tugboat pattern test` and `tugboat route explain`: try patterns and routes on events
//! locally, before deploying a rule.

use std::path::Path;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::{CliError, load_config};
use crate::events::{self, Decoded};
use crate::routing::{Pattern, Router};

#[derive(Debug, Args)]
pub struct PatternArgs {
    #[command(subcommand)]
    pub command: PatternCommand,
}

#[derive(Debug, Subcommand)]
pub enum PatternCommand {
    /// Does an event match a pattern? Prints `match` (exit 0) or `no match` (exit 1); an
    /// invalid pattern or event exits 2 with the reason.
    Test {
        /// The pattern: a file path, or inline JSON.
        #[arg(long)]
        pattern: String,
        /// The event: a file path, or inline JSON.
        #[arg(long)]
        event: String,
    },
}

#[derive(Debug, Args)]
pub struct RouteArgs {
    #[command(subcommand)]
    pub command: RouteCommand,
}

#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// Which configured routes an SQS message body would start, and for each route that does
    /// not match, the first field that failed.
    Explain {
        /// The message body: a file path, or inline JSON. It is decoded as tugboat decodes
        /// SQS messages (EventBridge, S3, SNS, … envelopes).
        #[arg(long)]
        event: String,
        /// Only the routes of this configured queue.
        #[arg(long)]
        queue: Option<String>,
    },
    /// The configured routes of the running service, and which are paused.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Pause a route of the running service: its events wait in the queue until resumed
    /// (kept across restarts). Needs `[admin] allow_actions = true`.
    Pause { name: String },
    /// Resume a paused route: its waiting events run now.
    Resume { name: String },
}

/// Inline JSON if it looks like JSON, else the contents of the file it names.
fn json_arg(what: &str, arg: &str) -> Result<(String, Value), CliError> {
    let trimmed = arg.trim_start();
    let text = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        arg.to_owned()
    } else {
        std::fs::read_to_string(arg)
            .map_err(|e| CliError::Usage(format!("{what}: cannot read {arg}: {e}")))?
    };
    let value = serde_json::from_str(&text)
        .map_err(|e| CliError::Usage(format!("{what}: not valid JSON: {e}")))?;
    Ok((text, value))
}

pub async fn test(args: PatternArgs) -> Result<(), CliError> {
    let PatternCommand::Test { pattern, event } = args.command;
    let (_, pattern) = json_arg("pattern", &pattern)?;
    let pattern = Pattern::compile(&pattern).map_err(|e| CliError::Usage(e.to_string()))?;
    let (_, event) = json_arg("event", &event)?;
    if !event.is_object() {
        return Err(CliError::Usage("event: must be a JSON object".into()));
    }
    if pattern.matches(&event) {
        println!("match");
        Ok(())
    } else {
        println!("no match");
        if let Some(field) = pattern.first_mismatch(&event) {
            eprintln!("first field that failed: {field}");
        }
        Err(CliError::Quiet(1))
    }
}

pub async fn explain(config: &Path, args: RouteArgs) -> Result<(), CliError> {
    let RouteCommand::Explain { event, queue } = args.command else {
        return super::act::routes(config, args.command).await;
    };
    let config = load_config(config)?;
    if let Some(q) = &queue {
        config.queue(q).map_err(CliError::Usage)?;
    }
    let (text, _) = json_arg("event", &event)?;
    let events = match events::decode(&text, "(local)")
        .map_err(|e| CliError::Usage(format!("event: {e}")))?
    {
        Decoded::Ignore(why) => {
            println!("ignored: {why}; no route runs");
            return Ok(());
        }
        Decoded::Events(e) => e,
    };
    let router = Router::new(config.compiled_routes().map_err(CliError::Usage)?);
    for (i, e) in events.iter().enumerate() {
        if events.len() > 1 {
            println!("event {} of {} ({}):", i + 1, events.len(), e.identity);
        }
        let mut matched = 0;
        for route in router.routes() {
            if let Some(q) = &queue
                && route.queues.as_ref().is_some_and(|qs| !qs.contains(q))
            {
                println!("  skip     {:<24} (not on queue {q})", route.name);
                continue;
            }
            match route.pattern().first_mismatch(&e.body) {
                None => {
                    matched += 1;
                    println!(
                        "  match    {:<24} → workflow {}",
                        route.name, route.workflow
                    );
                }
                Some(field) => {
                    println!("  no match {:<24} first failing field: {field}", route.name)
                }
            }
        }
        if matched == 0 {
            println!(
                "  no route matches: the message would be {:?}",
                config.unmatched
            );
        }
    }
    Ok(())
}
