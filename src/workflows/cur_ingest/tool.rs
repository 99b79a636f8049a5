//! `tugboat cur summarize|anomalies`: cost reports on the operator's disk, read and summed
//! exactly as the workflow reads them (the same parser and aggregation), through the
//! [`LocalFiles`] port a [`Desk`] carries.

use std::collections::BTreeSet;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

use clap::{FromArgMatches, Subcommand, ValueEnum};

use super::manifest::Manifest;
use super::report::{CSV_HEADER, Gunzip, Summary, csv_record, is_gzip};
use crate::ports::files::{Entry, LocalFiles};
use crate::workflows::surface::{Desk, Tool};

/// The tool `tugboat cur` carries beside its pages.
pub const TOOL: Tool = Tool {
    subcommands: || {
        CurCommand::augment_subcommands(clap::Command::new("cur"))
            .get_subcommands()
            .cloned()
            .collect()
    },
    run,
};

#[derive(Debug, Subcommand)]
enum CurCommand {
    /// Sum cost reports per day, payer, account, service, region and currency. PATHs are
    /// reports (`.csv`, `.csv.gz`: gzip is recognised by its bytes), manifests
    /// (`*-Manifest.json`: every part once) or folders (their manifests, or their reports when
    /// they hold none). Legacy CUR, its Athena column names, CUR 2.0 and FOCUS 1.x are told
    /// apart by their header. A report that cannot be read exits 1 naming file, line and column.
    Summarize {
        /// Reports, manifests or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// JSON lines `{"day","payer","account","service","region","cost","currency"}`, or CSV
        /// with that header.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// The anomalies the cur_ingest workflow would raise over these reports (same PATHs as
    /// summarize): per (account, service), each day against its trailing 14 days (median +
    /// K × MAD-scaled spread, an excess of at least FLOOR, after 10 days of history). JSON
    /// lines `{"account","service","day","cost","expected","impact","impact_percent"}`.
    Anomalies {
        /// Reports, manifests or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Spreads above the median that count as unusual.
        #[arg(long, default_value_t = 3.0, value_parser = positive)]
        k: f64,
        /// The smallest excess over the expected daily cost worth an alert (money).
        #[arg(long, default_value_t = 10.0, value_parser = not_negative)]
        floor: f64,
    },
}

fn positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{text:?} is not a number above 0")),
    }
}

fn not_negative(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{text:?} is not a number of 0 or more")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Csv,
}

fn run(matches: &clap::ArgMatches, desk: &mut Desk<'_>) -> Result<(), String> {
    match CurCommand::from_arg_matches(matches).map_err(|e| e.to_string())? {
        CurCommand::Summarize { paths, format } => summarize(desk, &paths, format),
        CurCommand::Anomalies { paths, k, floor } => anomalies(desk, &paths, k, floor),
    }
}

/// Reads every report `paths` stand for; returns how many.
fn read_all(desk: &Desk<'_>, paths: &[PathBuf]) -> Result<(Summary, usize), String> {
    let files = desk.files;
    let mut reports = Vec::new();
    for path in paths {
        reports_in(files, path, &mut reports)?;
    }
    // A part named by two manifests (a report re-delivered under another folder) counts once.
    let mut seen = BTreeSet::new();
    reports.retain(|p| seen.insert(files.canonical(p)));
    let mut summary = Summary::default();
    // Progress for a person watching: one line per report, only on a terminal.
    for (i, report) in reports.iter().enumerate() {
        let name = report.display().to_string();
        if desk.progress {
            let size = match files.entry(report) {
                Ok(Entry::File(size)) => size,
                _ => 0,
            };
            eprintln!(
                "[{}/{}] {name} ({:.1} MB)",
                i + 1,
                reports.len(),
                size as f64 / 1e6
            );
        }
        let input = open(files, report)?;
        summary
            .add_report(input, &name)
            ?;
    }
    Ok((summary, reports.len()))
}

fn anomalies(desk: &mut Desk<'_>, paths: &[PathBuf], k: f64, floor: f64) -> Result<(), String> {
    use super::anomaly::{self, Series, Settings};
    let (summary, _) = read_all(desk, paths)?;
    let mut series = Series::new();
    for (key, cost) in &summary.totals {
        let day = anomaly::day(&key.day)?;
        let cost: f64 = cost.to_string().parse().unwrap_or(0.0);
        *series
            .entry((key.account.clone(), key.service.clone()))
            .or_default()
            .entry(day)
            .or_default() += cost;
    }
    let settings = Settings {
        k,
        floor,
        ..Settings::default()
    };
    let found = anomaly::detect(&series, &settings, None);
    let mut out = std::io::BufWriter::new(&mut *desk.out);
    for a in &found {
        let line = serde_json::json!({
            "account": a.account, "service": a.service, "day": a.day.to_string(),
            "cost": a.cost, "expected": a.expected, "impact": a.impact, "impact_percent": a.impact_percent,
        });
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    let _ = out.flush();
    eprintln!("{} series, {} anomalies", series.len(), found.len());
    Ok(())
}

fn summarize(desk: &mut Desk<'_>, paths: &[PathBuf], format: Format) -> Result<(), String> {
    let (summary, reports) = read_all(desk, paths)?;
    let mut out = std::io::BufWriter::new(&mut *desk.out);
    let write = |out: &mut dyn Write| -> std::io::Result<()> {
        if format == Format::Csv {
            writeln!(out, "{CSV_HEADER}")?;
        }
        for (k, cost) in &summary.totals {
            match format {
                Format::Json => writeln!(
                    out,
                    "{{\"day\":{},\"payer\":{},\"account\":{},\"service\":{},\"region\":{},\"cost\":{cost},\"currency\":{}}}",
                    json(&k.day),
                    json(&k.payer),
                    json(&k.account),
                    json(&k.service),
                    json(&k.region),
                    json(&k.currency)
                )?,
                Format::Csv => {
                    let cost = cost.to_string();
                    out.write_all(
                        csv_record(&[
                            &k.day,
                            &k.payer,
                            &k.account,
                            &k.service,
                            &k.region,
                            &cost,
                            &k.currency,
                        ])
                        .as_bytes(),
                    )?
                }
            }
        }
        out.flush()
    };
    match write(&mut out) {
        Ok(()) => {}
        // `| head` closing the pipe is not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(format!("writing the summary: {e}")),
    }
    eprintln!(
        "{} report(s), {} line items, {} sums",
        reports,
        summary.rows,
        summary.totals.len()
    );
    Ok(())
}

/// A JSON string. The lines are written by hand so that `cost` stays the exact decimal the
/// report summed (serde_json would round it through f64).
fn json(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// The report files `path` stands for, appended to `out`.
fn reports_in(files: &dyn LocalFiles, path: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entry = files
        .entry(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if entry == Entry::Dir {
        let mut manifests = Vec::new();
        let mut found = Vec::new();
        walk(files, path, &mut |p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if Manifest::is_manifest_key(name) {
                manifests.push(p.to_path_buf());
            } else if name.ends_with(".csv") || name.ends_with(".csv.gz") {
                found.push(p.to_path_buf());
            }
        })
        .map_err(|e| format!("{}: {e}", path.display()))?;
        if manifests.is_empty() {
            out.extend(found);
        } else {
            for m in manifests {
                parts(files, &m, out)?;
            }
        }
        return Ok(());
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if Manifest::is_manifest_key(name) {
        parts(files, path, out)
    } else {
        out.push(path.to_path_buf());
        Ok(())
    }
}

/// Every file below `dir`, in name order.
fn walk(
    files: &dyn LocalFiles,
    dir: &Path,
    found: &mut dyn FnMut(&Path),
) -> std::io::Result<()> {
    for (p, entry) in files.list(dir)? {
        if entry == Entry::Dir {
            walk(files, &p, found)?;
        } else {
            found(&p);
        }
    }
    Ok(())
}

/// The parts of manifest `path`: each key is looked for below the manifest's folder and each
/// folder above it (the manifest sits inside the bucket the keys are relative to).
fn parts(files: &dyn LocalFiles, path: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let name = path.display().to_string();
    let text = files.read(path).map_err(|e| format!("{name}: {e}"))?;
    let manifest = Manifest::parse(&text, &name)?;
    for key in manifest.keys() {
        let found = path
            .ancestors()
            .skip(1)
            .map(|dir| dir.join(key))
            .find(|p| matches!(files.entry(p), Ok(Entry::File(_))))
            .ok_or_else(|| {
                format!(
                    "{name}: the manifest names a part {key:?} that is not in any folder above it"
                )
            })?;
        out.push(found);
    }
    Ok(())
}

/// A report's text: gunzipped when its first bytes are gzip's.
fn open(files: &dyn LocalFiles, path: &Path) -> Result<Box<dyn Read + Send>, String> {
    let name = path.display();
    let mut reader = files.open(path).map_err(|e| format!("{name}: {e}"))?;
    let head = reader.fill_buf().map_err(|e| format!("{name}: {e}"))?;
    if is_gzip(head) {
        Ok(Box::new(Pipelined::start(Gunzip::new(reader))))
    } else {
        Ok(Box::new(reader))
    }
}

/// Reads `inner` on a thread of its own, a few MiB ahead: inflating and parsing then use two
/// cores instead of taking turns on one.
struct Pipelined {
    chunks: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    current: std::io::Cursor<Vec<u8>>,
    done: bool,
}

impl Pipelined {
    const CHUNK: usize = 1 << 20;

    fn start(mut inner: impl Read + Send + 'static) -> Pipelined {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        std::thread::spawn(move || {
            loop {
                let mut chunk = vec![0u8; Pipelined::CHUNK];
                let mut filled = 0;
                let result = loop {
                    match inner.read(&mut chunk[filled..]) {
                        Ok(0) => break Ok(()),
                        Ok(n) => {
                            filled += n;
                            if filled == chunk.len() {
                                break Ok(());
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                chunk.truncate(filled);
                let last = filled == 0 || result.is_err();
                let sent = match result {
                    Err(e) => tx.send(Err(e)),
                    Ok(()) if filled > 0 => tx.send(Ok(chunk)),
                    Ok(()) => Ok(()),
                };
                if last || sent.is_err() {
                    return;
                }
            }
        });
        Pipelined {
            chunks: rx,
            current: std::io::Cursor::new(Vec::new()),
            done: false,
        }
    }
}

impl Read for Pipelined {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 || buf.is_empty() || self.done {
                return Ok(n);
            }
            match self.chunks.recv() {
                Ok(Ok(chunk)) => self.current = std::io::Cursor::new(chunk),
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                // The reading thread finished: end of input.
                Err(_) => self.done = true,
            }
        }
    }
}
