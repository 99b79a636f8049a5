//! A workflow's own command, as its registration declares it (`workflows::surface`): a page's
//! subcommand asks the running service's admin listener for the page's view, or, when no
//! service answers, builds the view itself from the journal; a tool's subcommand runs on the
//! operator's files.

use std::io::{IsTerminal, Write};
use std::path::Path;

use super::workflows::{from_service, open_journal};
use super::{CliError, load_config};
use crate::journal::ListFilter;
use crate::ports::files::Disk;
use crate::workflows::surface::{CommandSpec, Desk, Instance, PageInput, PageSpec, query_of};

/// A parsed workflow command: its declaration and the matches below its name.
#[derive(Debug, Clone)]
pub struct WorkflowCommand {
    pub spec: CommandSpec,
    pub matches: clap::ArgMatches,
}

pub async fn run(config: &Path, command: WorkflowCommand) -> Result<(), CliError> {
    let Some((name, sub)) = command.matches.subcommand() else {
        return Err(CliError::Usage(format!(
            "`tugboat {}` needs a subcommand (see --help)",
            command.spec.name
        )));
    };
    if let Some(page) = command.spec.page(name) {
        return print_page(config, command.spec.kind, page, sub).await;
    }
    if let Some(operation) = command.spec.operation.filter(|o| o.has(name)) {
        let config = load_config(config)?;
        let ports = crate::app::Dependencies::aws_ports_for_reading(&config)
            .await
            .map_err(|e| CliError::Runtime(e.to_string()))?;
        let setup = crate::workflows::Setup {
            config: &config,
            ports: &ports,
        };
        let printed = (operation.run)(&command.matches, setup)
            .await
            .map_err(CliError::Runtime)?;
        eprint!("{}", printed.err);
        let mut out = std::io::stdout().lock();
        return match out
            .write_all(printed.out.as_bytes())
            .and_then(|()| out.flush())
        {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(CliError::Runtime(format!("writing the output: {e}")))
            }
            _ => Ok(()),
        };
    }
    let Some(tool) = command.spec.tool else {
        return Err(CliError::Usage(format!(
            "no subcommand {name} of tugboat {}",
            command.spec.name
        )));
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut desk = Desk {
        files: &Disk,
        out: &mut out,
        progress: std::io::stderr().is_terminal(),
    };
    (tool.run)(&command.matches, &mut desk).map_err(CliError::Runtime)
}

async fn print_page(
    config: &Path,
    kind: &'static str,
    page: &PageSpec,
    matches: &clap::ArgMatches,
) -> Result<(), CliError> {
    let config = load_config(config)?;
    let query = query_of(page, matches);
    let path = format!(
        "{}?{}",
        page.path,
        serde_urlencoded::to_string(&query).map_err(|e| CliError::Usage(e.to_string()))?
    );
    let view = match from_service::<serde_json::Value>(&config, &path).await? {
        Some(answer) => answer.ok_or_else(|| {
            CliError::Runtime(format!("the running service serves no {}", page.path))
        })?,
        None => {
            // No service: the view from the journal, through this machine's ports.
            let records = open_journal(&config)
                .await?
                .list(&ListFilter::default())
                .await
                .map_err(|e| CliError::Runtime(e.to_string()))?;
            let ports = crate::app::Dependencies::aws_ports_for_reading(&config)
                .await
                .map_err(|e| CliError::Runtime(e.to_string()))?;
            let built = (page.build)(crate::workflows::Setup {
                config: &config,
                ports: &ports,
            });
            let input = PageInput {
                instances: records
                    .iter()
                    .filter(|r| r.workflow == kind)
                    .map(|r| Instance {
                        state: &r.state,
                        output: r.output.as_ref(),
                    })
                    .collect(),
                query: &query,
                now_ms: crate::ports::clock::system_ms(),
            };
            built.view(input).await.map_err(CliError::Usage)?
        }
    };
    let text = if matches.get_flag("json") {
        serde_json::to_string_pretty(&view).map_err(|e| CliError::Runtime(e.to_string()))? + "\n"
    } else {
        (page.text)(&view).map_err(CliError::Runtime)?
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        // `| head` closing the pipe is not a failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::Runtime(format!("writing the page: {e}")))
        }
        _ => Ok(()),
    }
}
