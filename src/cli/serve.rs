//! `tugboat serve`: run the service.

use std::path::Path;

use super::{CliError, load_config};
use crate::app::{AppError, serve};

pub async fn run(config: &Path) -> Result<(), CliError> {
    let config = load_config(config)?;
    serve(config).await.map_err(|e| match e {
        AppError::Startup(m) => CliError::Runtime(format!("cannot start: {m}")),
        AppError::Runtime(m) => CliError::Runtime(m),
    })
}
