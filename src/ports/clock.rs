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
