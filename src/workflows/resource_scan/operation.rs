//! `tugboat resources scan`: the scan from the operator's machine, through the same ports,
//! reads and rules as the workflow's `scan:<region>` step (`ResourceScan::survey`).

use std::fmt::Write;

use clap::{FromArgMatches, Subcommand};
use futures::future::BoxFuture;

use super::config::{self, ResourceSettings};
use super::{ResourceScan, summarize};
use crate::ports::resources::Finding;
use crate::workflows::Setup;
use crate::workflows::surface::{Operation, Printed};

/// The operation `tugboat resources` carries beside its page.
pub const OPERATION: Operation = Operation {
    subcommands: || {
        ResourcesCommand::augment_subcommands(clap::Command::new("resources"))
            .get_subcommands()
            .cloned()
            .collect()
    },
    run,
};

#[derive(Debug, Subcommand)]
enum ResourcesCommand {
    /// Scan for idle resources as the resource_scan workflow does (unattached volumes,
    /// unassociated Elastic IPs, stopped instances whose volumes are billed, old snapshots)
    /// and print each finding with its estimated monthly cost, costliest first; then replace
    /// those regions' findings in `[resources] table`, unless --dry-run.
    Scan {
        /// Print only: the findings table is not changed.
        #[arg(long)]
        dry_run: bool,
        /// Scan this region instead of the account's regions (repeat for several).
        #[arg(long = "region", value_parser = region)]
        regions: Vec<String>,
        /// Scan the `[[resources.accounts]]` account of this name, through its role, instead
        /// of the service's own.
        #[arg(long)]
        account: Option<String>,
        /// One JSON object per finding instead of a line of text.
        #[arg(long)]
        json: bool,
    },
}

fn region(text: &str) -> Result<String, String> {
    match config::is_region(text) {
        true => Ok(text.to_string()),
        false => Err(format!("{text:?} is not a region name such as \"eu-west-1\"")),
    }
}

/// A finding as a line of text.
pub fn line(f: &Finding) -> String {
    format!(
        "{:>10.2} {}/month  {:<20} {:<14} {:<22} {}{}",
        f.monthly_cost,
        f.currency,
        f.kind.as_str(),
        f.region,
        f.resource,
        f.detail,
        f.name.as_deref().map_or_else(String::new, |n| format!(" ({n})"))
    )
}

fn run<'a>(matches: &'a clap::ArgMatches, setup: Setup<'a>) -> BoxFuture<'a, Result<Printed, String>> {
    Box::pin(async move {
        let ResourcesCommand::Scan { dry_run, regions, account, json } =
            ResourcesCommand::from_arg_matches(matches).map_err(|e| e.to_string())?;
        let settings: ResourceSettings = match config::load(&setup.config.sections)? {
            Some(s) => s,
            None => return Err("no [resources] section in the configuration (resources.table names the findings table)".into()),
        };
        let reach = settings
            .reach(account.as_deref(), &setup.config.aws.region)
            .map_err(|e| e.replace("params.account", "--account"))?;
        let regions = match regions.is_empty() {
            true => reach.regions.clone(),
            false => regions,
        };
        let scan = ResourceScan::new(Some(settings.clone()), setup.config.aws.region.clone(), setup.ports);
        let mut printed = Printed::default();
        let (mut count, mut cost) = (0, 0.0);
        for r in &regions {
            let (found, read) = scan.survey(&reach.account, reach.role.as_ref(), r).await.map_err(|e| format!("{r}: {}", e.message))?;
            for f in &found {
                let text = match json {
                    true => serde_json::to_string(f).unwrap_or_default(),
                    false => line(f),
                };
                let _ = writeln!(printed.out, "{text}");
            }
            let summary = summarize(r, &found, read);
            (count, cost) = (count + summary.findings, cost + summary.monthly_cost);
            let _ = writeln!(
                printed.err,
                "{r}: {read} resource(s) read, {} finding(s), {:.2} {} a month",
                summary.findings, summary.monthly_cost, settings.currency
            );
            if !dry_run {
                let replaced = scan
                    .findings
                    .replace(&settings.table, &reach.account, r, &found)
                    .await
                    .map_err(|e| format!("{r}: {}", e.message))?;
                let _ = writeln!(
                    printed.err,
                    "{r}: {} finding(s) written to {}, {} earlier one(s) removed",
                    replaced.written, settings.table, replaced.deleted
                );
            }
        }
        let _ = writeln!(
            printed.err,
            "{count} finding(s) in {} region(s) of {}, {cost:.2} {} a month{}",
            regions.len(),
            reach.account,
            settings.currency,
            if dry_run { " (dry run: the findings table was not changed)" } else { "" }
        );
        Ok(printed)
    })
}
