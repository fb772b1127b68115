//! When and how long to wait before sending a request to Didit again:
//! exponential backoff with full jitter, bounded by the caller's deadline
//! and by a budget that caps retries at a fraction of first attempts.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use rand::Rng as _;

/// Backoff settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 disables retries).
    pub max_attempts: u32,
    /// The backoff cap of the first retry; doubled for each further one.
    pub base_delay: Duration,
    /// The largest backoff cap.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based): uniformly random in
    /// `[0, min(max_delay, base_delay * 2^(retry-1))]` ("full jitter"), and
    /// never less than what Didit asked for in `Retry-After`.
    pub fn backoff(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        let cap = exp.min(self.max_delay);
        let jitter = Duration::from_nanos(rand::rng().random_range(0..=cap.as_nanos() as u64));
        retry_after.map_or(jitter, |min| min.max(jitter))
    }
}

/// A shared budget: every first attempt deposits `ratio` of a retry, every
/// retry withdraws one, so that sustained retries add at most `ratio` extra
/// load on Didit; a small reserve lets isolated failures retry at once.
#[derive(Debug)]
pub struct RetryBudget {
    /// Balance in thousandths of a retry.
    balance: AtomicI64,
    deposit: i64,
    cap: i64,
}

const UNIT: i64 = 1000;

impl RetryBudget {
    /// `ratio` of first attempts may be retried; `reserve` retries are
    /// available before any deposit and the balance never exceeds
    /// `reserve` plus 100 retries.
    pub fn new(ratio: f64, reserve: u32) -> Self {
        let reserve = i64::from(reserve) * UNIT;
        Self {
            balance: AtomicI64::new(reserve),
            deposit: (ratio.clamp(0.0, 1.0) * UNIT as f64) as i64,
            cap: reserve + 100 * UNIT,
        }
    }

    /// Records a first attempt.
    pub fn deposit(&self) {
        let _ = self
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((b + self.deposit).min(self.cap))
            });
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn try_withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b >= UNIT).then_some(b - UNIT)
            })
            .is_ok()
    }
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self::new(0.2, 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_capped_and_respects_retry_after() {
        let policy = RetryPolicy::default();
        for retry in 1..10 {
            let d = policy.backoff(retry, None);
            assert!(d <= policy.max_delay, "{d:?}");
        }
        assert!(policy.backoff(1, None) <= Duration::from_millis(50));
        assert!(policy.backoff(1, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
    }

    #[test]
    fn budget_allows_a_fifth_of_first_attempts_after_the_reserve() {
        let budget = RetryBudget::new(0.2, 2);
        assert!(budget.try_withdraw());
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw(), "reserve spent");
        for _ in 0..10 {
            budget.deposit();
        }
        assert!(budget.try_withdraw());
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw(), "10 attempts earn 2 retries");
    }
}
