//! Bounds on import work that runs detached from its callers. An import
//! keeps running when its caller leaves (so that nothing Didit did is
//! lost), which also means a caller's concurrency permit no longer bounds
//! it: callers with short deadlines could otherwise pile up upstream work
//! without limit. Every import run takes a permit here, per tenant and in
//! total, and holds it until its upstream work ends; when none is free it
//! waits briefly, then is refused with `OVERLOADED`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::GatewayError;

/// How long a run waits for a free permit before it is refused.
const QUEUE_WAIT: Duration = Duration::from_millis(50);

/// The permits.
pub struct DetachedLimits {
    total: Arc<Semaphore>,
    per_tenant: usize,
    tenants: Mutex<HashMap<Arc<str>, Arc<Semaphore>>>,
    gauge: Gauge,
}

/// A run's permits; the gauge counts it until dropped.
pub struct DetachedPermit {
    _total: OwnedSemaphorePermit,
    _tenant: OwnedSemaphorePermit,
    gauge: Gauge,
}

impl Drop for DetachedPermit {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl DetachedLimits {
    /// At most `total` runs at once, at most `per_tenant` of one tenant.
    pub fn new(total: usize, per_tenant: usize, gauge: Gauge) -> Self {
        Self {
            total: Arc::new(Semaphore::new(total.max(1))),
            per_tenant: per_tenant.max(1),
            tenants: Mutex::default(),
            gauge,
        }
    }

    /// A permit for one run of `tenant`, waiting at most a moment.
    pub async fn acquire(&self, tenant: &str) -> Result<DetachedPermit, GatewayError> {
        let tenant_sem = {
            let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(
                tenants
                    .entry(Arc::from(tenant))
                    .or_insert_with(|| Arc::new(Semaphore::new(self.per_tenant))),
            )
        };
        let both = async {
            let tenant = tenant_sem.acquire_owned().await.ok()?;
            let total = Arc::clone(&self.total).acquire_owned().await.ok()?;
            Some((total, tenant))
        };
        match tokio::time::timeout(QUEUE_WAIT, both).await {
            Ok(Some((total, tenant))) => {
                self.gauge.inc();
                Ok(DetachedPermit {
                    _total: total,
                    _tenant: tenant,
                    gauge: self.gauge.clone(),
                })
            }
            _ => Err(GatewayError::Overloaded),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_are_bounded_per_tenant_and_in_total() {
        let gauge = Gauge::default();
        let limits = DetachedLimits::new(3, 2, gauge.clone());
        let a1 = limits.acquire("a").await.unwrap();
        let _a2 = limits.acquire("a").await.unwrap();
        assert!(matches!(
            limits.acquire("a").await,
            Err(GatewayError::Overloaded)
        ));
        let _b1 = limits.acquire("b").await.unwrap();
        assert!(matches!(
            limits.acquire("b").await,
            Err(GatewayError::Overloaded)
        ));
        assert_eq!(gauge.get(), 3);
        drop(a1);
        assert_eq!(gauge.get(), 2);
        let _b2 = limits.acquire("b").await.unwrap();
    }
}
