//! `tugboat migrate`: converge the account on the migrations.

use std::path::{Path, PathBuf};

use clap::Args;

use super::{CliError, load_config};
use crate::aws::Clients;
use crate::aws::migrate::{Action, apply};
use crate::migrate::Plan;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The folder of numbered migration files.
    #[arg(long, default_value = "migrations")]
    pub dir: PathBuf,

    /// Check the migrations and print what they declare, without calling AWS.
    #[arg(long)]
    pub check: bool,
}

pub async fn run(config: &Path, args: MigrateArgs) -> Result<(), CliError> {
    let plan = Plan::load(&args.dir).map_err(|e| CliError::Usage(e.to_string()))?;
    for (file, description) in &plan.files {
        println!(
            "migration  {file}{}",
            if description.is_empty() {
                String::new()
            } else {
                format!(": {description}")
            }
        );
    }
    if args.check {
        println!(
            "migrate: {} migrations declare {} resources; not applied (--check)",
            plan.files.len(),
            plan.resource_count()
        );
        return Ok(());
    }
    let config = load_config(config)?;
    let clients = Clients::new(&config.aws).await;
    let report = apply(&clients, &plan, |change| println!("{change}"))
        .await
        .map_err(|e| CliError::Runtime(format!("migrate failed: {e}")))?;
    if report.changed_anything() {
        println!(
            "migrate: {} created, {} updated, {} unchanged",
            report.count(|a| *a == Action::Created),
            report.count(|a| matches!(a, Action::Updated(_))),
            report.count(|a| *a == Action::Unchanged),
        );
    } else {
        println!(
            "migrate: no changes; all {} resources are up to date",
            report.changes.len()
        );
    }
    Ok(())
}
