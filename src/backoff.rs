//! Exponential backoff with jitter, for anything the crawl retries.
//!
//! Delays grow as `base × 2^retry`, capped at `max`, each multiplied by a
//! random factor in [0.5, 1.5) so that many clients retrying the same
//! failure do not hit the server in lockstep.

use std::time::Duration;

/// How often and how patiently to retry.
#[derive(Clone, Debug, PartialEq)]
pub struct Backoff {
    /// Retries after the first attempt (0 = try once).
    pub max_retries: u32,
    /// The delay before the first retry, before jitter.
    pub base: Duration,
    /// The longest delay, before jitter.
    pub max: Duration,
}

impl Default for Backoff {
    /// 4 retries, starting at 200 ms, at most 10 s apart.
    fn default() -> Self {
        Backoff {
            max_retries: 4,
            base: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The delay before retry number `retry` (0 for the first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        self.nominal(retry).mul_f64(0.5 + fastrand::f64())
    }

    /// The delay before retry number `retry`, without jitter.
    pub fn nominal(&self, retry: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32 << retry.min(20));
        exp.min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_within_jitter_and_cap() {
        let b = Backoff {
            max_retries: 5,
            base: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        for retry in 0..8 {
            let nominal = (100u64 << retry).min(1000) as f64;
            let d = b.delay(retry).as_secs_f64() * 1000.0;
            assert!(
                d >= nominal * 0.5 && d < nominal * 1.5,
                "retry {retry}: {d} ms"
            );
        }
    }
}
