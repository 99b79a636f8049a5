//! `tugboat spot history`: interruptions per pool (instance type and zone) and hour of day,
//! from the running service's admin listener (`/spot/history`), or from the journal file when
//! no service runs.

use std::path::Path;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::workflows::{from_service, open_journal};
use super::{CliError, load_config};
use crate::journal::ListFilter;
use crate::workflows::spot_drain::history::{self, History};

#[derive(Debug, Args)]
pub struct SpotArgs {
    #[command(subcommand)]
    pub command: SpotCommand,
}

#[derive(Debug, Subcommand)]
pub enum SpotCommand {
    /// Interruptions per instance type, availability zone and hour of day (UTC), with a
    /// recommendation where one pool dominates.
    History {
        /// How far back: `30d`, `12h`, `90m`.
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        since: Duration,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: &Path, args: SpotArgs) -> Result<(), CliError> {
    let SpotCommand::History { since, json } = args.command;
    let config = load_config(config)?;
    let since_ms = crate::journal::now_ms().saturating_sub(since.as_millis() as u64);
    let path = format!("/spot/history?since_ms={since_ms}");
    let found = match from_service::<History>(&config, &path).await? {
        Some(answer) => answer.ok_or_else(|| {
            CliError::Runtime("the running service serves no /spot/history".into())
        })?,
        None => {
            let records = open_journal(&config)
                .await?
                .list(&ListFilter::default())
                .await
                .map_err(|e| CliError::Runtime(e.to_string()))?;
            history::from_states(
                records
                    .iter()
                    .filter(|r| r.workflow == crate::workflows::spot_drain::KIND)
                    .map(|r| &r.state),
                since_ms,
            )
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&found).map_err(|e| CliError::Runtime(e.to_string()))?
        );
    } else {
        print!("{}", found.text());
    }
    Ok(())
}
