//! Step retry policy: serde data, full jitter, attempt counts that survive restarts.
//!
//! The defaults follow Temporal's activity retry policy (initial interval 1 s, coefficient 2,
//! maximum interval 100 s = 100 × initial); Restate's defaults are 500 ms × 2 up to 60 s, a
//! reasonable alternative for latency-sensitive steps. Temporal retries without limit by
//! default; tugboat stops after 10 attempts or 10 minutes, whichever comes first, because a
//! failed event should reach a human through the DLQ rather than retry forever.
//!
//! The delay before attempt n+1 is drawn uniformly from `[0, min(max_interval, initial ×
//! coefficient^(n-1))]` ("full jitter", AWS Architecture Blog, "Exponential Backoff And
//! Jitter"), which spreads retries of many workflows that failed together.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Upper bound of the first back-off. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub initial_interval: Duration,
    /// Growth of the bound per attempt. Default 2.0.
    pub coefficient: f64,
    /// Largest bound. Default 100 s.
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
    /// Attempts in all, the first included. Default 10.
    pub max_attempts: u32,
    /// No attempt starts later than this after the first one. Default 10 min.
    #[serde(with = "humantime_serde")]
    pub deadline: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_interval: Duration::from_secs(1),
            coefficient: 2.0,
            max_interval: Duration::from_secs(100),
            max_attempts: 10,
            deadline: Some(Duration::from_secs(600)),
        }
    }
}

impl RetryPolicy {
    /// One attempt only.
    pub fn never() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The upper bound of the back-off after `attempts` failed attempts (1 = after the first).
    pub fn bound(&self, attempts: u32) -> Duration {
        let exponent = attempts.saturating_sub(1).min(64) as i32;
        let secs = self.initial_interval.as_secs_f64() * self.coefficient.max(1.0).powi(exponent);
        Duration::from_secs_f64(secs.min(self.max_interval.as_secs_f64()).max(0.0))
    }

    /// A full-jitter back-off after `attempts` failed attempts.
    pub fn backoff(&self, attempts: u32, rng: &mut impl Rng) -> Duration {
        let bound = self.bound(attempts);
        if bound.is_zero() {
            return bound;
        }
        Duration::from_secs_f64(rng.random_range(0.0..=bound.as_secs_f64()))
    }

    /// Whether another attempt may start, `elapsed` after the first one began.
    pub fn allows_another(&self, attempts: u32, elapsed: Duration) -> bool {
        attempts < self.max_attempts && self.deadline.is_none_or(|d| elapsed < d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    #[test]
    fn bounds_grow_then_cap() {
        let p = RetryPolicy::default();
        let bounds: Vec<u64> = (1..=9).map(|n| p.bound(n).as_secs()).collect();
        assert_eq!(bounds, [1, 2, 4, 8, 16, 32, 64, 100, 100]);
    }

    #[test]
    fn attempts_and_deadline_end_retries() {
        let p = RetryPolicy::default();
        assert!(p.allows_another(9, Duration::from_secs(1)));
        assert!(!p.allows_another(10, Duration::from_secs(1)));
        assert!(!p.allows_another(1, Duration::from_secs(601)));
        assert!(!RetryPolicy::never().allows_another(1, Duration::ZERO));
    }

    #[test]
    fn policy_is_serde_data_with_defaults() {
        let p: RetryPolicy =
            toml::from_str("initial_interval = \"500ms\"\nmax_interval = \"60s\"").unwrap();
        assert_eq!(p.initial_interval, Duration::from_millis(500));
        assert_eq!(p.max_attempts, 10);
        assert!(toml::from_str::<RetryPolicy>("initial = \"1s\"").is_err());
    }

    proptest! {
        #[test]
        fn backoff_stays_within_its_bound(attempts in 1u32..200, seed in any::<u64>()) {
            let p = RetryPolicy::default();
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let d = p.backoff(attempts, &mut rng);
            prop_assert!(d <= p.bound(attempts));
            prop_assert!(d <= p.max_interval);
        }
    }
}
