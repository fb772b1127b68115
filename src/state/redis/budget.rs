//! The tenants' Didit budgets in Redis: one GCRA script per charge and
//! one per pause, both on Redis `TIME`, so every replica shares one budget
//! per tenant whatever its clock ([`crate::budget`] decides what to charge).

use std::time::Duration;

use super::RedisStore;
use crate::state::{Budget, Charge, StateError};

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn from_micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

impl RedisStore {
    /// Charges one call to `tenant`'s deployment-wide budget (GCRA script).
    pub async fn charge(
        &self,
        tenant: &str,
        budget: Budget,
        max_wait: Duration,
    ) -> Result<Charge, StateError> {
        let mut conn = self.conn();
        let mut call = self
            .inner
            .scripts
            .charge
            .key(self.inner.keys.budget(tenant));
        // The script counts whole microseconds; a rate above 60,000,000 a
        // minute (an interval under 1 µs) is charged as 1 µs, never as 0.
        call.key(self.inner.keys.pause(tenant))
            .arg(micros(budget.emission_interval()).max(1))
            .arg(micros(budget.tolerance()))
            .arg(micros(max_wait));
        let (charged, wait_us): (i64, i64) = self
            .run("charge budget", call.invoke_async(&mut conn))
            .await?;
        let wait = from_micros(wait_us);
        Ok(match (charged, wait.is_zero()) {
            (1, true) => Charge::Now,
            (1, false) => Charge::After(wait),
            _ => Charge::Refused { retry_after: wait },
        })
    }

    /// Pauses `tenant`'s budget on every replica for `duration` from now
    /// (Redis time); a longer pause already in place stays.
    pub async fn pause(&self, tenant: &str, duration: Duration) -> Result<(), StateError> {
        if duration.is_zero() {
            return Ok(());
        }
        let mut conn = self.conn();
        let mut call = self.inner.scripts.pause.key(self.inner.keys.pause(tenant));
        call.arg(micros(duration));
        self.run("pause budget", call.invoke_async::<i64>(&mut conn))
            .await
            .map(drop)
    }
}
