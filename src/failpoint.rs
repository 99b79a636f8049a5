//! Failpoints: named places where a crash test can stop the process.
//!
//! Inert unless `TUGBOAT_FAILPOINT=NAME:N` is set. Then, the N-th time the process passes
//! failpoint NAME, it prints `TUGBOAT_FAILPOINT NAME` on stderr and stops dead (it blocks the
//! whole process), so that the test can `kill -9` it at exactly that step boundary.
//!
//! The names, in the order a step passes them: `step-journaled` (the attempt is durable, the
//! call has not run), `step-called` (the call ran, its outcome is not journaled),
//! `transition-journaled` (the outcome and the next decision are durable).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

struct Armed {
    name: String,
    nth: u64,
    seen: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var("TUGBOAT_FAILPOINT").ok()?;
            let (name, nth) = spec.split_once(':').unwrap_or((&spec, "1"));
            Some(Armed {
                name: name.to_owned(),
                nth: nth.parse().unwrap_or(1),
                seen: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Passes failpoint `name`.
pub fn hit(name: &str) {
    let Some(a) = armed() else { return };
    if a.name != name || a.seen.fetch_add(1, Ordering::SeqCst) + 1 != a.nth {
        return;
    }
    eprintln!("TUGBOAT_FAILPOINT {name}");
    // Block every thread's progress that depends on this one; the test kills the process.
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// Where the step recorder writes, if `TUGBOAT_STEP_LOG=PATH` is set (crash tests).
fn step_log() -> Option<&'static std::sync::Mutex<std::fs::File>> {
    static LOG: OnceLock<Option<std::sync::Mutex<std::fs::File>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let path = std::env::var_os("TUGBOAT_STEP_LOG")?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
            .map(std::sync::Mutex::new)
    })
    .as_ref()
}

/// The step recorder: inert unless `TUGBOAT_STEP_LOG=PATH` is set. Then each step call's
/// start and end are appended to PATH as `start|end <unix µs> <pid> <workflow id> <step>`,
/// one line per write (O_APPEND: lines of several processes do not interleave), so that a
/// crash test can check no step ran in two processes at once.
pub fn record_step(phase: &str, workflow_id: &str, step: &str) {
    let Some(log) = step_log() else { return };
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    let line = format!(
        "{phase} {micros} {} {workflow_id} {step}\n",
        std::process::id()
    );
    use std::io::Write;
    if let Ok(mut f) = log.lock() {
        let _ = f.write_all(line.as_bytes());
    }
}
