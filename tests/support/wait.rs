//! The one way tests wait: poll a condition until it holds, and fail naming what was awaited
//! (and, where the caller can say it, the state seen) when it does not hold in time. Every
//! helper that waits (`TestApp::until`, the engine harness's, the agent's and the service's)
//! goes through these, so that they share one poll interval and one failure message.
//!
//! Standalone (no `super::`): benches include `app.rs`, which includes this file by path.

#![allow(dead_code)] // Each test binary uses a different part of it.

use std::time::{Duration, Instant};

/// How often a condition is looked at.
const POLL: Duration = Duration::from_millis(10);

/// Waits until `done` holds, for at most `timeout`.
pub async fn until(what: &str, timeout: Duration, done: impl AsyncFnMut() -> bool) {
    until_explained(what, timeout, done, String::new).await
}

/// [`until`], the failure also saying `seen()` (the journal's statuses, say).
pub async fn until_explained(
    what: &str,
    timeout: Duration,
    mut done: impl AsyncFnMut() -> bool,
    seen: impl Fn() -> String,
) {
    let start = Instant::now();
    while !done().await {
        if start.elapsed() >= timeout {
            panic!("{}", failure(what, timeout, &seen()));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`until`] for a test without a runtime: the thread sleeps between looks.
pub fn until_blocking(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        if start.elapsed() >= timeout {
            panic!("{}", failure(what, timeout, ""));
        }
        std::thread::sleep(POLL);
    }
}

fn failure(what: &str, timeout: Duration, seen: &str) -> String {
    if seen.is_empty() {
        format!("timed out after {timeout:?} waiting until {what}")
    } else {
        format!("timed out after {timeout:?} waiting until {what}; {seen}")
    }
}
