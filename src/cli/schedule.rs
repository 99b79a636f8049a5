//! `tugboat schedule list|test|pause|resume`: the configured schedules and their next fire
//! times. `list` asks the running service (`/schedules`), or reads the journal when none
//! runs; `test` needs only the configuration; `pause` and `resume` act through the service.

use std::path::Path;

use clap::{Args, Subcommand};

use super::workflows::{from_service, open_journal};
use super::{CliError, load_config};
use crate::schedule::runner::{ScheduleView, rfc3339, state_of, view};

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    #[command(subcommand)]
    pub command: ScheduleCommand,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Every configured schedule: its expression, zone, queue, state and next fire times.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The next fire times of schedule NAME, in UTC and in its zone (the configuration only).
    Test {
        name: String,
        /// How many.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
        next: u16,
        /// From this instant (RFC 3339) instead of now.
        #[arg(long)]
        from: Option<String>,
    },
    /// Pause schedule NAME in the running service: it fires nothing until resumed.
    Pause { name: String },
    /// Resume schedule NAME: its next tick fires (not the ones it passed over while paused).
    Resume { name: String },
}

pub async fn run(config: &Path, args: ScheduleArgs) -> Result<(), CliError> {
    let config = load_config(config)?;
    let schedules = config
        .compiled_schedules()
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let find = |name: &str| {
        schedules.iter().find(|s| s.name == name).ok_or_else(|| {
            let known: Vec<_> = schedules.iter().map(|s| s.name.as_str()).collect();
            CliError::Usage(format!(
                "no schedule named {name:?}; configured: {}",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ))
        })
    };
    match args.command {
        ScheduleCommand::List { json } => {
            let views = match from_service::<Vec<ScheduleView>>(&config, "/schedules").await? {
                Some(Some(views)) => views,
                Some(None) => {
                    return Err(CliError::Runtime(
                        "the running service serves no /schedules (an older build?)".into(),
                    ));
                }
                // No service; no journal yet either: as the schedules would be first seen.
                None if config.journal.kind == crate::config::JournalKind::Sled
                    && !config.journal.path.exists() =>
                {
                    let now = crate::ports::clock::system_ms() as i64;
                    schedules
                        .iter()
                        .map(|s| view(s, &s.first_state(now), now))
                        .collect()
                }
                None => {
                    let journal = open_journal(&config).await?;
                    let now = crate::ports::clock::system_ms() as i64;
                    let mut views = Vec::new();
                    for s in &schedules {
                        let (state, _) = state_of(journal.as_ref(), s, now)
                            .await
                            .map_err(|e| CliError::Runtime(e.to_string()))?;
                        views.push(view(s, &state, now));
                    }
                    views
                }
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&views).unwrap_or_default()
                );
            } else if views.is_empty() {
                println!("no schedules configured");
            } else {
                for v in &views {
                    let state = if !v.enabled {
                        "disabled"
                    } else if v.paused {
                        "paused"
                    } else {
                        "running"
                    };
                    println!(
                        "{}  {}  {}  -> {}  {state}  next: {}",
                        v.name,
                        v.expression,
                        v.timezone,
                        v.queue,
                        if v.next.is_empty() {
                            "none".into()
                        } else {
                            v.next.join(", ")
                        }
                    );
                }
            }
            Ok(())
        }
        ScheduleCommand::Test { name, next, from } => {
            let s = find(&name)?;
            let from_ms = match &from {
                Some(t) => t
                    .parse::<jiff::Timestamp>()
                    .map_err(|_| {
                        CliError::Usage(format!(
                            "--from must be an RFC 3339 time such as 2026-12-24T08:00:00Z, got {t:?}"
                        ))
                    })?
                    .as_millisecond(),
                None => crate::ports::clock::system_ms() as i64,
            };
            // As a schedule first seen then: a rate without a start counts from it.
            let mut state = s.first_state(from_ms);
            let mut printed = 0;
            while printed < next {
                let Some(t) = s.next_after(state.last_ms, state.anchor_ms) else {
                    break;
                };
                let fire = t + s.offset_ms(t);
                let local = jiff::Timestamp::from_millisecond(t)
                    .map(|ts| {
                        ts.to_zoned(s.timezone.clone())
                            .strftime("%Y-%m-%d %H:%M %Z")
                            .to_string()
                    })
                    .unwrap_or_default();
                if fire == t {
                    println!("{}  ({local})", rfc3339(t));
                } else {
                    println!("{}  ({local}; fires at {})", rfc3339(t), rfc3339(fire));
                }
                state.last_ms = t;
                printed += 1;
            }
            if printed == 0 {
                println!(
                    "{name} fires no more (its end has passed, or its expression names no time to come)"
                );
            }
            Ok(())
        }
        ScheduleCommand::Pause { name } => {
            find(&name)?;
            let path = format!("/schedules/{}/pause", crate::admin::encode(&name));
            println!("{}", super::act::post(&config, &path).await?);
            Ok(())
        }
        ScheduleCommand::Resume { name } => {
            find(&name)?;
            let path = format!("/schedules/{}/resume", crate::admin::encode(&name));
            println!("{}", super::act::post(&config, &path).await?);
            Ok(())
        }
    }
}
