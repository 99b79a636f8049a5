//! `tugboat journal export|import`: moves a journal's records between kinds — from the sled
//! journal of one task into the shared DynamoDB journal when a user switches over (export with
//! the old configuration, import with the new). The records keep their schema version: the
//! same code reads them in either store.
//!
//! Export writes one record per line (JSON). Import writes each into the configured journal:
//! an instance the target already has with a newer `updated_ms` is kept, one another process
//! runs (a shared journal's claim refused) is skipped and said so; a line that is no record of
//! this schema stops the import naming the line, before anything after it is written.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::workflows::open_journal;
use super::{CliError, load_config};
use crate::journal::{Claim, ListFilter, decode, encode};

#[derive(Debug, Args)]
pub struct JournalArgs {
    #[command(subcommand)]
    pub command: JournalCommand,
}

#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Write every record of the configured journal as JSON lines (the sled journal: with the
    /// service stopped).
    Export {
        /// The file to write; default standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write the records of a JSON-lines file (an export) into the configured journal.
    Import {
        /// The export to read, or `-` for standard input.
        file: PathBuf,
    },
}

pub async fn run(config: &Path, args: JournalArgs) -> Result<(), CliError> {
    let config = load_config(config)?;
    let journal = open_journal(&config).await?;
    match args.command {
        JournalCommand::Export { out } => {
            let records = journal
                .list(&ListFilter::default())
                .await
                .map_err(|e| CliError::Runtime(e.to_string()))?;
            let mut sink: Box<dyn Write> = match &out {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .map_err(|e| CliError::Runtime(format!("{}: {e}", path.display())))?,
                )),
                None => Box::new(std::io::stdout().lock()),
            };
            for r in &records {
                let bytes = encode(r).map_err(|e| CliError::Runtime(e.to_string()))?;
                sink.write_all(&bytes)
                    .and_then(|()| sink.write_all(b"\n"))
                    .map_err(|e| CliError::Runtime(e.to_string()))?;
            }
            sink.flush().map_err(|e| CliError::Runtime(e.to_string()))?;
            eprintln!("exported {} record(s)", records.len());
            Ok(())
        }
        JournalCommand::Import { file } => {
            let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(std::io::BufReader::new(
                    std::fs::File::open(&file)
                        .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?,
                ))
            };
            // Read and check everything first: a bad line writes nothing.
            let mut records = Vec::new();
            for (n, line) in reader.lines().enumerate() {
                let line = line.map_err(|e| CliError::Runtime(e.to_string()))?;
                if line.trim().is_empty() {
                    continue;
                }
                let id = serde_json::from_str::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|v| v["id"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                let record = decode(&id, line.as_bytes()).map_err(|e| {
                    CliError::Usage(format!("{} line {}: {e}", file.display(), n + 1))
                })?;
                records.push(record);
            }
            let (mut written, mut kept, mut skipped) = (0, 0, 0);
            for r in &records {
                match journal.claim(&r.id).await {
                    Ok(Claim::Granted) => {}
                    Ok(Claim::HeldBy { owner, .. }) => {
                        eprintln!("{}: skipped, {owner} runs it", r.id);
                        skipped += 1;
                        continue;
                    }
                    Err(e) => return Err(CliError::Runtime(e.to_string())),
                }
                let newer = journal
                    .get(&r.id)
                    .await
                    .map_err(|e| CliError::Runtime(e.to_string()))?
                    .is_some_and(|there| there.updated_ms > r.updated_ms);
                let result = if newer {
                    kept += 1;
                    Ok(())
                } else {
                    written += 1;
                    journal.put(r).await
                };
                journal.release(&r.id).await;
                result.map_err(|e| CliError::Runtime(e.to_string()))?;
            }
            journal
                .flush()
                .map_err(|e| CliError::Runtime(e.to_string()))?;
            eprintln!(
                "imported {written} record(s); kept {kept} newer already there; skipped {skipped} running elsewhere"
            );
            Ok(())
        }
    }
}
