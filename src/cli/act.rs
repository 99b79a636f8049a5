//! The CLI's side of the actions on a running service — `tugboat workflows cancel|retry`,
//! `tugboat route pause|resume|list` — through the admin listener's API, the same handlers
//! the console's buttons use (one code path: the service's state is changed by the service).

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::pattern::RouteCommand;
use super::{CliError, load_config};
use crate::config::Config;

fn client() -> Result<reqwest::Client, CliError> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("tugboat-cli/", env!("CARGO_PKG_VERSION")))
        .no_proxy()
        .build()
        .map_err(|e| CliError::Runtime(e.to_string()))
}

fn unreachable(config: &Config, e: reqwest::Error) -> CliError {
    if e.is_connect() {
        CliError::Runtime(format!(
            "no tugboat answers at {} ([admin] listen): this acts on the running service",
            config.admin.listen
        ))
    } else {
        CliError::Runtime(format!("admin listener {}: {e}", config.admin.listen))
    }
}

#[derive(Debug, Deserialize)]
struct Session {
    token: String,
}

#[derive(Debug, Deserialize)]
struct Answer {
    message: Option<String>,
    error: Option<String>,
}

/// The running service's admin address, from the configuration.
fn base(config: &Config) -> Result<String, CliError> {
    if config.admin.listen.port() == 0 {
        return Err(CliError::Usage(
            "[admin] listen has port 0 (the service picks one at start): give the address it logged, as TUGBOAT__ADMIN__LISTEN=127.0.0.1:PORT".into(),
        ));
    }
    Ok(format!("http://{}", config.admin.listen))
}

/// POSTs an action with the console's token; the service's message, or its refusal.
pub(super) async fn post(config: &Config, path: &str) -> Result<String, CliError> {
    let base = base(config)?;
    let client = client()?;
    let session: Session = client
        .get(format!("{base}/api/session"))
        .send()
        .await
        .map_err(|e| unreachable(config, e))?
        .json()
        .await
        .map_err(|e| CliError::Runtime(format!("admin listener: {e}")))?;
    let response = client
        .post(format!("{base}{path}"))
        .header("x-tugboat-token", session.token)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| unreachable(config, e))?;
    let status = response.status();
    let answer: Answer = response
        .json()
        .await
        .map_err(|e| CliError::Runtime(format!("admin listener: {status}: {e}")))?;
    match (status.is_success(), answer) {
        (true, Answer { message, .. }) => Ok(message.unwrap_or_default()),
        (false, Answer { error, .. }) => Err(CliError::Runtime(
            error.unwrap_or_else(|| status.to_string()),
        )),
    }
}

#[derive(Debug, Deserialize, serde::Serialize)]
struct RouteState {
    name: String,
    workflow: String,
    paused: bool,
}

pub(super) async fn routes(config: &Path, command: RouteCommand) -> Result<(), CliError> {
    let config = load_config(config)?;
    match command {
        RouteCommand::Explain { .. } => unreachable!("explained by pattern::explain"),
        RouteCommand::List { json } => {
            let routes: Vec<RouteState> = client()?
                .get(format!("{}/routes", base(&config)?))
                .header("accept", "application/json")
                .send()
                .await
                .map_err(|e| unreachable(&config, e))?
                .json()
                .await
                .map_err(|e| CliError::Runtime(format!("admin listener: {e}")))?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&routes).unwrap_or_default()
                );
                return Ok(());
            }
            let width = routes
                .iter()
                .map(|r| r.name.len())
                .max()
                .unwrap_or(5)
                .max(5);
            println!("{:<width$} {:<16} STATE", "ROUTE", "WORKFLOW");
            for r in &routes {
                let state = if r.paused { "paused" } else { "running" };
                println!("{:<width$} {:<16} {state}", r.name, r.workflow);
            }
        }
        RouteCommand::Pause { name } => {
            println!(
                "{}",
                post(
                    &config,
                    &format!("/routes/{}/pause", crate::admin::encode(&name))
                )
                .await?
            );
        }
        RouteCommand::Resume { name } => {
            println!(
                "{}",
                post(
                    &config,
                    &format!("/routes/{}/resume", crate::admin::encode(&name))
                )
                .await?
            );
        }
    }
    Ok(())
}
