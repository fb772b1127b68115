//! When and how long to wait before sending a request to Didit again:
//! which failed attempts may be re-sent (per endpoint), exponential backoff
//! with full jitter, bounded by the caller's deadline and by a budget that
//! caps retries at a fraction of first attempts.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use rand::Rng as _;

use super::classify::Endpoint;
use super::failure::DiditError;

/// One attempt's failure, with whether the request may have reached Didit.
pub(super) struct AttemptError {
    /// What went wrong.
    pub error: DiditError,
    /// False only when the connection was never established.
    pub maybe_sent: bool,
}

/// Whether a failed attempt may be sent again (attempt limit, deadline
/// and budget permitting).
pub(super) fn retryable(endpoint: Endpoint, err: &AttemptError) -> bool {
    // A request that never left (connect refused or timed out) can always
    // be sent again.
    if !err.maybe_sent {
        return true;
    }
    match endpoint {
        // Minting a token twice is harmless: retry outages and 429s that
        // say when to come back.
        Endpoint::Share => match &err.error {
            DiditError::Unavailable { reply, .. } => {
                reply.as_ref().is_none_or(|r| matches!(r.status, 502..=504))
            }
            DiditError::RateLimited { retry_after, .. } => retry_after.is_some(),
            _ => false,
        },
        // A second import POST would be refused as a duplicate.
        Endpoint::Import => false,
        // Reads change nothing: retry outages and timeouts.
        Endpoint::List | Endpoint::Decision => match &err.error {
            DiditError::Unavailable { .. } | DiditError::Timeout => true,
            DiditError::RateLimited { retry_after, .. } => retry_after.is_some(),
            _ => false,
        },
    }
}

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
    use crate::didit::UpstreamReply;

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

    fn sent(error: DiditError) -> AttemptError {
        AttemptError {
            error,
            maybe_sent: true,
        }
    }

    fn status(status: u16) -> DiditError {
        DiditError::Unavailable {
            cause: format!("HTTP {status}"),
            reply: Some(UpstreamReply {
                status,
                detail: String::new(),
                field: None,
                request_id: None,
            }),
        }
    }

    #[test]
    fn a_request_that_never_left_is_retried_for_both_endpoints() {
        // A connect timeout is classified as a timeout, not an outage.
        let connect_timeout = AttemptError {
            error: DiditError::Timeout,
            maybe_sent: false,
        };
        assert!(retryable(Endpoint::Share, &connect_timeout));
        assert!(retryable(Endpoint::Import, &connect_timeout));
    }

    #[test]
    fn share_retries_outages_and_timed_429s_import_nothing_sent() {
        for code in [502, 503, 504] {
            assert!(retryable(Endpoint::Share, &sent(status(code))), "{code}");
            assert!(!retryable(Endpoint::Import, &sent(status(code))), "{code}");
        }
        assert!(!retryable(Endpoint::Share, &sent(status(500))));
        let lost = DiditError::Unavailable {
            cause: "connection lost before a complete answer".into(),
            reply: None,
        };
        assert!(retryable(Endpoint::Share, &sent(lost.clone())));
        assert!(!retryable(Endpoint::Import, &sent(lost)));
        let rate_limited = |retry_after| DiditError::RateLimited {
            retry_after,
            reply: UpstreamReply {
                status: 429,
                detail: String::new(),
                field: None,
                request_id: None,
            },
        };
        let with_wait = rate_limited(Some(Duration::from_secs(1)));
        assert!(retryable(Endpoint::Share, &sent(with_wait.clone())));
        assert!(!retryable(Endpoint::Import, &sent(with_wait)));
        assert!(!retryable(Endpoint::Share, &sent(rate_limited(None))));
        assert!(!retryable(Endpoint::Share, &sent(DiditError::Timeout)));
        assert!(!retryable(Endpoint::Import, &sent(DiditError::Timeout)));
    }
}
