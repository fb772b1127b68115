//! In-process budgets: `governor`'s GCRA per tenant, with the semantics of
//! the Redis script. A charge arrives at `max(now, paused_until)`; if it
//! does not conform then, governor names the instant it would, and a
//! charge that fits in `max_wait` is made *at that instant* (governor's
//! own arithmetic then reserves exactly that slot), which is why the
//! limiter reads a clock we set just before each check. A refused charge
//! leaves the state as it was.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{NotKeyed, StateStore};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

use crate::state::{Budget, Charge};

/// Governor's clock: the instant we are asking about, as time since the
/// tenant's limiter was made. Set under the tenant's lock before a check.
#[derive(Default)]
struct SlotClock(AtomicU64);

impl Clock for SlotClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

/// Governor's state (the theoretical arrival time), shared with us so a
/// check can be undone. `u64::MAX` means "never charged".
#[derive(Clone)]
struct Tat(Arc<AtomicU64>);

impl StateStore for Tat {
    type Key = NotKeyed;

    fn measure_and_replace<T, F, E>(&self, _: &NotKeyed, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // Only called under the tenant's lock: a load and a store suffice.
        let old = match self.0.load(Ordering::Relaxed) {
            u64::MAX => None,
            nanos => Some(Nanos::from(nanos)),
        };
        let (outcome, new) = f(old)?;
        self.0.store(new.as_u64(), Ordering::Relaxed);
        Ok(outcome)
    }
}

/// Governor's direct limiter over our state and clock.
type Limiter = RateLimiter<NotKeyed, Tat, SlotClock, NoOpMiddleware<Duration>>;

/// One tenant's limiter.
struct TenantBudget {
    budget: Budget,
    /// When the limiter was made; governor's instants count from here.
    origin: Instant,
    limiter: Limiter,
    tat: Tat,
    paused_until: Option<Instant>,
}

impl TenantBudget {
    fn new(budget: Budget, paused_until: Option<Instant>) -> Self {
        let tat = Tat(Arc::new(AtomicU64::new(u64::MAX)));
        Self {
            budget,
            origin: Instant::now(),
            limiter: limiter(budget, &tat),
            tat,
            paused_until,
        }
    }

    /// Applies a changed budget, keeping the state (as Redis does).
    fn rebudget(&mut self, budget: Budget) {
        self.limiter = limiter(budget, &self.tat);
        self.budget = budget;
    }

    /// Asks governor about a charge arriving at `at`; charges it if it
    /// conforms. Returns the instant it conforms from.
    fn check_at(&self, at: Instant) -> Result<(), Instant> {
        let since = at.saturating_duration_since(self.origin);
        let nanos = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX - 1);
        self.limiter.clock().0.store(nanos, Ordering::Relaxed);
        self.limiter
            .check()
            .map_err(|not_until| at + not_until.wait_time_from(since))
    }

    fn charge(&self, now: Instant, max_wait: Duration) -> Charge {
        let arrival = self.paused_until.map_or(now, |until| until.max(now));
        let before = self.tat.0.load(Ordering::Relaxed);
        let slot = match self.check_at(arrival) {
            Ok(()) => arrival,
            Err(conforms_at) => conforms_at,
        };
        let wait = slot.saturating_duration_since(now);
        if wait > max_wait {
            // Refused: whatever the check changed is undone.
            self.tat.0.store(before, Ordering::Relaxed);
            return Charge::Refused { retry_after: wait };
        }
        if slot != arrival && self.check_at(slot).is_err() {
            // Cannot happen (the slot conforms by governor's own answer);
            // refuse rather than let a call through uncharged.
            return Charge::Refused { retry_after: wait };
        }
        if wait.is_zero() {
            Charge::Now
        } else {
            Charge::After(wait)
        }
    }
}

/// A limiter over `tat` with the same interval and burst as the Redis
/// script: T = 60 s / per_minute, `burst` at once.
fn limiter(budget: Budget, tat: &Tat) -> Limiter {
    let quota = Quota::with_period(budget.emission_interval())
        .unwrap_or_else(|| Quota::per_minute(budget.per_minute))
        .allow_burst(budget.burst);
    // The clock reads 0 now, so governor's instants count from `origin`.
    RateLimiter::new(quota, tat.clone(), SlotClock::default())
}

/// Every tenant's limiter.
#[derive(Default)]
pub(super) struct Budgets {
    tenants: Mutex<HashMap<String, TenantBudget>>,
}

impl Budgets {
    /// Charges one call; a changed budget applies from this charge on.
    pub(super) fn charge(&self, tenant: &str, budget: Budget, max_wait: Duration) -> Charge {
        let now = Instant::now();
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let entry = tenants
            .entry(tenant.to_owned())
            .or_insert_with(|| TenantBudget::new(budget, None));
        if entry.budget != budget {
            entry.rebudget(budget);
        }
        entry.charge(now, max_wait)
    }

    /// Pauses the tenant until `duration` from now, unless already paused longer.
    pub(super) fn pause(&self, tenant: &str, duration: Duration) {
        let until = Instant::now() + duration;
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        match tenants.get_mut(tenant) {
            Some(entry) => {
                entry.paused_until = Some(entry.paused_until.map_or(until, |p| p.max(until)));
            }
            None => {
                // No budget known yet: any will do until the first charge
                // names the real one.
                let placeholder = Budget::new(1, 1).map(|b| TenantBudget::new(b, Some(until)));
                if let Some(placeholder) = placeholder {
                    tenants.insert(tenant.to_owned(), placeholder);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(per_minute: u32, burst: u32) -> Budget {
        Budget::new(per_minute, burst).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn exactly_burst_charges_pass_at_once_then_one_per_interval() {
        let budgets = Budgets::default();
        let b = budget(60, 5);
        for _ in 0..5 {
            assert_eq!(budgets.charge("t", b, Duration::ZERO), Charge::Now);
        }
        assert_eq!(
            budgets.charge("t", b, Duration::ZERO),
            Charge::Refused {
                retry_after: Duration::from_secs(1)
            }
        );
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(
            budgets.charge("t", b, Duration::ZERO),
            Charge::Refused {
                retry_after: Duration::from_millis(1)
            }
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(budgets.charge("t", b, Duration::ZERO), Charge::Now);
        assert!(matches!(
            budgets.charge("t", b, Duration::ZERO),
            Charge::Refused { .. }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_charge_reserves_its_slot_and_a_refusal_reserves_nothing() {
        let budgets = Budgets::default();
        let b = budget(60, 1);
        let wait = Duration::from_millis(2500);
        assert_eq!(budgets.charge("t", b, wait), Charge::Now);
        assert_eq!(
            budgets.charge("t", b, wait),
            Charge::After(Duration::from_secs(1))
        );
        assert_eq!(
            budgets.charge("t", b, wait),
            Charge::After(Duration::from_secs(2))
        );
        for _ in 0..3 {
            assert_eq!(
                budgets.charge("t", b, wait),
                Charge::Refused {
                    retry_after: Duration::from_secs(3)
                }
            );
        }
        assert_eq!(budgets.charge("other", b, wait), Charge::Now);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_moves_every_slot_past_it() {
        let budgets = Budgets::default();
        let b = budget(60, 2);
        budgets.pause("t", Duration::from_secs(30));
        budgets.pause("t", Duration::from_secs(5));
        assert_eq!(
            budgets.charge("t", b, Duration::ZERO),
            Charge::Refused {
                retry_after: Duration::from_secs(30)
            }
        );
        let long = Duration::from_secs(60);
        assert_eq!(
            budgets.charge("t", b, long),
            Charge::After(Duration::from_secs(30))
        );
        assert_eq!(
            budgets.charge("t", b, long),
            Charge::After(Duration::from_secs(30))
        );
        assert_eq!(
            budgets.charge("t", b, long),
            Charge::After(Duration::from_secs(31))
        );
        tokio::time::advance(Duration::from_secs(40)).await;
        assert_eq!(budgets.charge("t", b, Duration::ZERO), Charge::Now);
    }
}
