//! The tenant's Didit write budget, charged once per request that goes to
//! Didit (every attempt, retries included) right before it is sent, through
//! the [`StateStore`]: deployment-wide GCRA in Redis, the same arithmetic
//! per process in memory. Replays and calls that join an identical call in
//! flight never reach the transport, so they are never charged; nor is a
//! call refused before it is authorized.
//!
//! A slot within `upstream.budget_wait` (and the caller's deadline) is
//! waited for; a later one refuses the attempt, with a retry time jittered
//! so that refused callers do not all come back at the same instant.
//! Didit's own 429 pauses the budget on every replica.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use tokio::time::Instant;

use crate::metrics::{Metrics, TenantLabels};
use crate::state::{Budget, Charge, StateStore};

/// Time kept back from the caller's deadline: a slot this close to it is
/// refused rather than waited for, so the request still has time to run.
const DEADLINE_MARGIN: Duration = Duration::from_millis(50);

/// The largest jitter added to a refusal's retry time, as a fraction of it.
const JITTER: f64 = 0.2;

/// Whose budget an upstream call is charged to: the tenant and its limits,
/// as the call's settings had them (a reload applies to later calls).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantBudget {
    /// The tenant id (the budget's key).
    pub tenant: Arc<str>,
    /// Its per-minute rate and burst.
    pub budget: Budget,
}

/// Why an attempt was not sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The next slot is further than the caller may wait; retry after this
    /// (the slot's distance plus jitter).
    Exhausted {
        /// When to try again.
        retry_after: Duration,
    },
    /// The shared state could not be asked; nothing was sent.
    Unavailable(String),
}

/// Charges attempts to tenants' budgets and pauses them on Didit's 429.
#[derive(Clone)]
pub struct DiditBudget {
    store: StateStore,
    max_wait: Duration,
    metrics: Metrics,
}

impl DiditBudget {
    /// Budgets kept in `store`; an attempt waits at most `max_wait`
    /// (`upstream.budget_wait`) for its slot.
    pub fn new(store: StateStore, max_wait: Duration, metrics: Metrics) -> Self {
        Self {
            store,
            max_wait,
            metrics,
        }
    }

    /// Charges one attempt to `who`'s budget and returns once it may be
    /// sent: at once, or after waiting for a slot that comes before both
    /// `budget_wait` and `deadline` are over.
    pub async fn take(&self, who: &TenantBudget, deadline: Option<Instant>) -> Result<(), Refusal> {
        let max_wait = match deadline {
            Some(deadline) => self.max_wait.min(
                deadline
                    .saturating_duration_since(Instant::now())
                    .saturating_sub(DEADLINE_MARGIN),
            ),
            None => self.max_wait,
        };
        let labels = TenantLabels {
            tenant: who.tenant.to_string(),
        };
        match self.store.charge(&who.tenant, who.budget, max_wait).await {
            Ok(Charge::Now) => Ok(()),
            Ok(Charge::After(wait)) => {
                self.metrics.budget_waits.get_or_create(&labels).inc();
                self.metrics
                    .budget_wait_seconds
                    .get_or_create(&labels)
                    .inc_by(wait.as_secs_f64());
                tokio::time::sleep(wait).await;
                Ok(())
            }
            Ok(Charge::Refused { retry_after }) => {
                self.metrics
                    .tenant_rate_limited
                    .get_or_create(&labels)
                    .inc();
                Err(Refusal::Exhausted {
                    retry_after: jittered(retry_after),
                })
            }
            Err(err) => {
                tracing::warn!(tenant = %who.tenant, error = %err, "cannot charge the tenant's Didit budget; nothing sent");
                Err(Refusal::Unavailable(err.to_string()))
            }
        }
    }

    /// Holds back `tenant`'s requests for `duration` on every replica
    /// (Didit answered 429). A failure is logged: the caller already has
    /// Didit's answer to report.
    pub async fn pause(&self, tenant: &str, duration: Duration) {
        tracing::info!(
            tenant,
            pause_ms = duration.as_millis() as u64,
            "Didit answered 429: pausing the tenant's budget"
        );
        if let Err(err) = self.store.pause(tenant, duration).await {
            tracing::warn!(tenant, error = %err, "cannot pause the tenant's Didit budget");
        }
    }
}

/// `wait` plus up to [`JITTER`] of it, at least 1 ms more.
fn jittered(wait: Duration) -> Duration {
    let extra = wait.mul_f64(rand::rng().random_range(0.0..=JITTER));
    wait + extra.max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;

    fn who(per_minute: u32, burst: u32) -> TenantBudget {
        TenantBudget {
            tenant: Arc::from("t"),
            budget: Budget::new(per_minute, burst).unwrap(),
        }
    }

    fn budget(max_wait: Duration) -> (DiditBudget, Metrics) {
        let metrics = Metrics::new();
        let store = StateStore::Memory(MemoryStore::new(1024));
        (DiditBudget::new(store, max_wait, metrics.clone()), metrics)
    }

    #[tokio::test]
    async fn the_burst_goes_at_once_then_refusals_say_when_with_jitter() {
        let (budget, metrics) = budget(Duration::ZERO);
        let who = who(60, 3);
        for _ in 0..3 {
            budget.take(&who, None).await.unwrap();
        }
        let mut waits = std::collections::HashSet::new();
        for _ in 0..5 {
            match budget.take(&who, None).await {
                Err(Refusal::Exhausted { retry_after }) => {
                    // The next slot is ~1 s away (T = 1 s), plus at most 20%.
                    assert!(
                        retry_after > Duration::from_millis(900)
                            && retry_after <= Duration::from_millis(1201),
                        "{retry_after:?}"
                    );
                    waits.insert(retry_after);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(waits.len() > 1, "refusals are jittered: {waits:?}");
        let text = metrics.encode();
        assert!(
            text.contains("dsg_tenant_rate_limited_total{tenant=\"t\"} 5"),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_near_slot_is_waited_for_but_not_past_the_deadline() {
        let (budget, metrics) = budget(Duration::from_secs(2));
        let who = who(60, 1);
        budget.take(&who, None).await.unwrap();
        let started = Instant::now();
        budget.take(&who, None).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(900));
        assert!(
            metrics
                .encode()
                .contains("dsg_budget_waits_total{tenant=\"t\"} 1")
        );
        // The next slot is 1 s away; a caller with 500 ms left is refused.
        let deadline = Instant::now() + Duration::from_millis(500);
        assert!(matches!(
            budget.take(&who, Some(deadline)).await,
            Err(Refusal::Exhausted { .. })
        ));
    }

    #[tokio::test]
    async fn a_pause_refuses_until_it_ends() {
        let (budget, _) = budget(Duration::from_secs(2));
        let who = who(600, 10);
        budget.pause("t", Duration::from_secs(30)).await;
        match budget.take(&who, None).await {
            Err(Refusal::Exhausted { retry_after }) => {
                assert!(retry_after >= Duration::from_secs(29), "{retry_after:?}");
            }
            other => panic!("{other:?}"),
        }
    }
}
