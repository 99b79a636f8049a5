//! The `Clock` port: the time of day and waiting, for handlers that must know how much of a
//! deadline is left (`spot_drain`). A port rather than a direct call so that a workflow folder
//! stays free of the runtime and tests can hold a clock still.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

#[async_trait]
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Resolves after `duration`.
    async fn sleep(&self, duration: Duration);
}

/// Milliseconds since the Unix epoch by the system's clock, for code that has no `Clock` of
/// its own to ask (the agent's notices).
pub fn system_ms() -> u64 {
    SystemClock.now_ms()
}

/// The system's clock and tokio's timer.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// Wall time that follows tokio's timer: it starts at the system's time and moves as
/// `tokio::time::Instant` does. Under a paused runtime (`#[tokio::test(start_paused = true)]`)
/// that is virtual time, which jumps to the next timer whenever every task waits, so that
/// the engine's back-offs, a drain's deadline or a lease run in no real time and the time
/// every decision is taken at agrees with the timers.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    /// The wall time at `start`, to the nanosecond: rounded to milliseconds once, on reading,
    /// so that the clock never reads behind the system's (two roundings could, by 1 ms).
    base: Duration,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading the system's time now.
    pub fn new() -> TokioClock {
        // The instant first: the wall time taken after it can only be later, so the clock
        // runs at most a few microseconds ahead of the system's, never behind.
        let start = tokio::time::Instant::now();
        let base = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        TokioClock { base, start }
    }

    /// A clock reading `ms` (Unix ms) now.
    pub fn starting_at(ms: u64) -> TokioClock {
        TokioClock {
            base: Duration::from_millis(ms),
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock::new()
    }
}

#[async_trait]
impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        (self.base + self.start.elapsed()).as_millis() as u64
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_moves_with_paused_time_and_nothing_else() {
        let clock = TokioClock::starting_at(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        // An hour of virtual time (in real time the test would not end).
        clock.sleep(Duration::from_secs(3600)).await;
        assert_eq!(clock.now_ms(), 1_000 + 3_600_000);
    }

    #[tokio::test]
    async fn a_tokio_clock_never_reads_behind_the_system_clock() {
        for _ in 0..1_000 {
            let clock = TokioClock::new();
            let system = SystemClock.now_ms();
            assert!(clock.now_ms() >= system, "behind the system clock");
        }
    }
}
