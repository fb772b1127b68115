//! Turns the state store's availability into what operators and load
//! balancers see: while the store is unavailable the gRPC health of the
//! share and import services is NOT_SERVING (the overall `""` status and
//! `/readyz` stay up: the process is alive and will recover by itself, and
//! pulling every replica out of rotation when Redis blips would turn a
//! Redis outage into a full outage), and `dsg_state_available` is 0. The
//! store itself logs one line per transition.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::metrics::gauge::Gauge;
use tokio::task::JoinHandle;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::state::{Health, StateStore};

/// Follows `store`'s health until aborted: sets `services`' status on
/// `reporter` and `gauge`. Once `draining` is set it changes nothing (the
/// drain owns the health status from then on).
pub fn spawn(
    store: &StateStore,
    reporter: HealthReporter,
    services: &'static [&'static str],
    gauge: Gauge,
    draining: Arc<AtomicBool>,
) -> JoinHandle<()> {
    let mut health = store.health();
    tokio::spawn(async move {
        loop {
            let now = *health.borrow_and_update();
            if draining.load(Ordering::Acquire) {
                return;
            }
            let (status, value) = match now {
                Health::Available => (ServingStatus::Serving, 1),
                Health::Unavailable => (ServingStatus::NotServing, 0),
            };
            gauge.set(value);
            for name in services {
                reporter.set_service_status(*name, status).await;
            }
            if health.changed().await.is_err() {
                return;
            }
        }
    })
}
