//! The store's availability as a watch signal, for gRPC health: share and
//! import go NOT_SERVING while Redis is unreachable (readiness stays up, so
//! one Redis hiccup never makes every pod unready at once). Each
//! transition is logged once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// Whether the shared state can be used now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// The last operation or health check succeeded.
    Available,
    /// The last operation or health check could not reach the store.
    Unavailable,
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub(crate) struct HealthSignal {
    tx: watch::Sender<Health>,
    /// Whether any state was reported yet: the first report is logged even
    /// when it equals the initial state.
    reported: Arc<AtomicBool>,
}

impl HealthSignal {
    /// A signal starting at `initial`.
    pub(crate) fn new(initial: Health) -> Self {
        let (tx, _) = watch::channel(initial);
        Self {
            tx,
            reported: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A receiver seeing the current state and every change.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Health> {
        self.tx.subscribe()
    }

    /// Records a success; logs if the store was unavailable.
    pub(crate) fn up(&self) {
        if self.set(Health::Available) {
            tracing::info!("shared state (redis) available: share and import serving");
        }
    }

    /// Records a failure to reach the store; logs if it was available.
    pub(crate) fn down(&self, reason: &str) {
        if self.set(Health::Unavailable) {
            tracing::warn!(
                %reason,
                "shared state (redis) unavailable: share and import answer STATE_UNAVAILABLE"
            );
        }
    }

    /// Sets the state; true when it changed or is the first report.
    fn set(&self, health: Health) -> bool {
        let changed = self
            .tx
            .send_if_modified(|now| std::mem::replace(now, health) != health);
        let first = !self.reported.swap(true, Ordering::Relaxed);
        changed || first
    }
}
