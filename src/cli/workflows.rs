//! `tugboat workflows list|show`: what the journal knows, from the running service's admin
//! listener, or from the journal file when no service runs; `tugboat workflows
//! cancel|retry`: through the running service (`act`); `tugboat workflows kinds`: the
//! workflow kinds this build can run.

use std::path::Path;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::{CliError, load_config};
use crate::config::Config;
use crate::journal::sled::SledJournal;
use crate::journal::{ListFilter, Record, Summary};

#[derive(Debug, Args)]
pub struct WorkflowsArgs {
    #[command(subcommand)]
    pub command: WorkflowsCommand,
}

#[derive(Debug, Subcommand)]
pub enum WorkflowsCommand {
    /// List workflow instances, newest first.
    List {
        /// Only this status: running, waiting, compensating, succeeded, failed, dead_lettered,
        /// cancelled.
        #[arg(long, value_parser = crate::journal::Status::NAMES)]
        status: Option<String>,
        /// Only this route.
        #[arg(long)]
        route: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one instance: every step with attempts, timings, keys, outputs and errors, and its
    /// earlier runs.
    Show {
        id: String,
        /// Print the journal record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a running or waiting instance of the running service: its compensation runs,
    /// then it ends as cancelled and its message is deleted. Needs `[admin] allow_actions`.
    Cancel { id: String },
    /// Retry a dead-lettered or cancelled instance: its event runs again as the instance's
    /// next run (new idempotency keys), sent through its queue. Needs `[admin] allow_actions`.
    Retry { id: String },
    /// List the workflow kinds this build can run, and the configuration section each owns.
    Kinds,
}

pub async fn run(config: &Path, args: WorkflowsArgs) -> Result<(), CliError> {
    if let WorkflowsCommand::Kinds = args.command {
        // Needs no configuration: it describes the build.
        for r in crate::workflows::builtin() {
            match r.section {
                Some(s) => println!("{:<16} config section [{}]", r.kind, s.name),
                None => println!("{}", r.kind),
            }
        }
        return Ok(());
    }
    let config = load_config(config)?;
    match args.command {
        // Answered above, before the configuration was needed.
        WorkflowsCommand::Kinds => {}
        WorkflowsCommand::Cancel { id } => {
            let path = format!("/workflows/{}/cancel", crate::admin::encode(&id));
            println!("{}", super::act::post(&config, &path).await?);
        }
        WorkflowsCommand::Retry { id } => {
            let path = format!("/workflows/{}/retry", crate::admin::encode(&id));
            println!("{}", super::act::post(&config, &path).await?);
        }
        WorkflowsCommand::List {
            status,
            route,
            limit,
            json,
        } => {
            let filter = ListFilter {
                status,
                route,
                limit: Some(limit),
            };
            let records = list(&config, &filter).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&records).unwrap_or_default()
                );
                return Ok(());
            }
            // Columns as wide as their widest value, so that long ids and kinds stay aligned.
            let id_width = records.iter().map(|r| r.id.len()).max().unwrap_or(0).max(2);
            let kind_width = records
                .iter()
                .map(|r| r.workflow.len())
                .max()
                .unwrap_or(0)
                .max(8);
            println!(
                "{:<id_width$} {:<kind_width$} {:<14} {:>5}  {:<24} LAST ERROR",
                "ID", "WORKFLOW", "STATUS", "STEPS", "UPDATED"
            );
            for r in &records {
                println!(
                    "{:<id_width$} {:<kind_width$} {:<14} {:>5}  {:<24} {}",
                    r.id,
                    r.workflow,
                    r.status,
                    r.steps,
                    time_of(r.updated_ms),
                    r.last_error.as_deref().unwrap_or("-")
                );
            }
            println!("{} workflow(s)", records.len());
        }
        WorkflowsCommand::Show { id, json } => {
            let Some(r) = get(&config, &id).await? else {
                return Err(CliError::Runtime(format!(
                    "no workflow {id:?} in the journal"
                )));
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                print_record(&r);
            }
        }
    }
    Ok(())
}

fn admin_url(config: &Config, path: &str) -> String {
    format!("http://{}{path}", config.admin.listen)
}

/// The service's answer, or `None` when no service listens (then the file is read).
pub(super) async fn from_service<T: serde::de::DeserializeOwned>(
    config: &Config,
    path: &str,
) -> Result<Option<Option<T>>, CliError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .map_err(|e| CliError::Runtime(e.to_string()))?;
    let response = match client.get(admin_url(config, path)).send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Ok(None),
        Err(e) => {
            return Err(CliError::Runtime(format!(
                "admin listener {}: {e}",
                config.admin.listen
            )));
        }
    };
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(Some(None));
    }
    let response = response
        .error_for_status()
        .map_err(|e| CliError::Runtime(format!("admin listener {}: {e}", config.admin.listen)))?;
    let value = response
        .json::<T>()
        .await
        .map_err(|e| CliError::Runtime(format!("admin listener {}: {e}", config.admin.listen)))?;
    Ok(Some(Some(value)))
}

/// The journal itself, when no service answers: the sled folder (which a running service
/// holds), or the shared DynamoDB table (read from anywhere with credentials).
pub(super) async fn open_journal(
    config: &Config,
) -> Result<std::sync::Arc<dyn crate::journal::Journal>, CliError> {
    if config.journal.kind == crate::config::JournalKind::Dynamodb {
        let clients = crate::aws::Clients::new(&config.aws).await;
        return Ok(crate::aws::journal::DynamoJournal::new(
            clients.dynamodb,
            &config.journal.table,
            &crate::app::process_owner(),
            config.journal.lease,
        ));
    }
    if !config.journal.path.exists() {
        return Err(CliError::Runtime(format!(
            "no journal at {} (has tugboat run here?)",
            config.journal.path.display()
        )));
    }
    SledJournal::open(&config.journal.path)
        .map(|j| std::sync::Arc::new(j) as std::sync::Arc<dyn crate::journal::Journal>)
        .map_err(|e| {
            CliError::Runtime(format!(
                "{e} (a running tugboat holds the journal; is its admin listener {} reachable?)",
                config.admin.listen
            ))
        })
}

/// What the service's `/workflows` answers (the console's view; only the list is read).
#[derive(Debug, serde::Deserialize)]
struct Listed {
    instances: Vec<Summary>,
}

/// What the service's `/workflows/{id}` answers.
#[derive(Debug, serde::Deserialize)]
struct Shown {
    record: Record,
}

async fn list(config: &Config, filter: &ListFilter) -> Result<Vec<Summary>, CliError> {
    let mut query = format!("/workflows?limit={}", filter.limit.unwrap_or(100));
    if let Some(s) = &filter.status {
        query.push_str(&format!("&status={s}"));
    }
    if let Some(r) = &filter.route {
        query.push_str(&format!("&route={}", crate::admin::encode(r)));
    }
    if let Some(answer) = from_service::<Listed>(config, &query).await? {
        return Ok(answer.map(|l| l.instances).unwrap_or_default());
    }
    let records = open_journal(config)
        .await?
        .list(filter)
        .await
        .map_err(|e| CliError::Runtime(e.to_string()))?;
    Ok(records.iter().map(Record::summary).collect())
}

async fn get(config: &Config, id: &str) -> Result<Option<Record>, CliError> {
    if let Some(answer) =
        from_service::<Shown>(config, &format!("/workflows/{}", crate::admin::encode(id))).await?
    {
        return Ok(answer.map(|s| s.record));
    }
    open_journal(config)
        .await?
        .get(id)
        .await
        .map_err(|e| CliError::Runtime(e.to_string()))
}

fn time_of(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

fn print_record(r: &Record) {
    println!("id:        {}", r.id);
    println!(
        "workflow:  {} (route {}, queue {})",
        r.workflow, r.route, r.queue
    );
    println!(
        "status:    {}",
        serde_json::to_string(&r.status).unwrap_or_default()
    );
    println!("message:   {}", r.message_id);
    println!("created:   {}", time_of(r.created_ms));
    println!("updated:   {}", time_of(r.updated_ms));
    if r.panics > 0 || r.generation > 0 {
        println!("panics:    {}   run: {}", r.panics, r.generation);
    }
    if let Some(e) = &r.last_error {
        println!("error:     {e}");
    }
    if let Some(p) = &r.pending {
        println!(
            "pending:   {} {} ({})",
            p.name,
            p.step,
            serde_json::to_string(&p.call).unwrap_or_default()
        );
    }
    for u in &r.undo {
        println!("then undo: {} {}", u.name, u.step);
    }
    for e in &r.earlier {
        println!(
            "run {}:     {} at {}, {} step(s)",
            e.generation,
            e.ended,
            time_of(e.ended_ms),
            e.steps.len()
        );
    }
    // A definition's run lists the states it entered.
    let path = crate::contract::state_path(&r.state);
    if !path.is_empty() {
        println!("path:      {}", path.join(" → "));
    }
    println!("steps (run {}):", r.generation);
    for s in &r.steps {
        let took = s
            .finished_ms
            .map(|f| format!("{} ms", f.saturating_sub(s.first_started_ms)))
            .unwrap_or_else(|| "unfinished".into());
        let kind = if s.compensation {
            " (compensation)"
        } else {
            ""
        };
        println!(
            "  - {}{kind}: {} attempt(s), started {}, {took}, key {}",
            s.name,
            s.attempts,
            time_of(s.first_started_ms),
            s.key
        );
        if let Some(o) = &s.output {
            println!("      output: {o}");
        }
        if let Some(e) = &s.last_error {
            println!("      error:  {e}");
        }
    }
    if let Some(o) = &r.output {
        println!("output:    {o}");
    }
}
