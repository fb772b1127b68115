//! Waiting for another caller's import: one loop for both backends. The
//! waiter registers for a wake-up first, then checks (atomically) whether
//! the record exists or the lease is still held, then sleeps until a
//! wake-up, the next poll, or its deadline. A lost notification therefore
//! costs at most one poll interval, never a wrong answer.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{StateError, WaitOutcome};

/// What one check of an import found.
#[derive(Debug)]
pub(crate) enum Probe {
    /// The record is stored.
    Record(Bytes),
    /// No record, and someone holds the lease.
    Leased,
    /// No record and no lease: the leader finished without storing, or died.
    Free,
}

/// Local wake-ups by name (a channel name, or any key string).
#[derive(Clone, Default)]
pub(crate) struct Waiters {
    by_name: Arc<Mutex<HashMap<String, Weak<Notify>>>>,
}

impl Waiters {
    /// The wake-up for `name`, shared by every local waiter of it.
    fn register(&self, name: &str) -> Arc<Notify> {
        let mut map = self.by_name.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(live) = map.get(name).and_then(Weak::upgrade) {
            return live;
        }
        if map.len() >= 1024 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let notify = Arc::new(Notify::new());
        map.insert(name.to_owned(), Arc::downgrade(&notify));
        notify
    }

    /// Wakes every local waiter of `name`.
    pub(crate) fn wake(&self, name: &str) {
        let notify = {
            let mut map = self.by_name.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(name).map(Weak::upgrade) {
                Some(Some(live)) => Some(live),
                Some(None) => {
                    map.remove(name);
                    None
                }
                None => None,
            }
        };
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }

    /// Wakes every local waiter (after a lost subscription, say).
    pub(crate) fn wake_all(&self) {
        let live: Vec<_> = {
            let map = self.by_name.lock().unwrap_or_else(|p| p.into_inner());
            map.values().filter_map(Weak::upgrade).collect()
        };
        for notify in live {
            notify.notify_waiters();
        }
    }
}

/// Waits on `name` until `probe` finds a record or a free lease, or the
/// deadline passes; re-probes on every wake-up and every `poll`.
pub(crate) async fn wait_for<P, F>(
    waiters: &Waiters,
    name: &str,
    deadline: Instant,
    poll: Duration,
    mut probe: P,
) -> Result<WaitOutcome, StateError>
where
    P: FnMut() -> F,
    F: Future<Output = Result<Probe, StateError>>,
{
    let notify = waiters.register(name);
    loop {
        let woken = notify.notified();
        tokio::pin!(woken);
        // Registered before the check: a wake-up between the check and the
        // sleep is not lost.
        woken.as_mut().enable();
        match probe().await? {
            Probe::Record(record) => return Ok(WaitOutcome::Record(record)),
            Probe::Free => return Ok(WaitOutcome::LeaseGone),
            Probe::Leased => {}
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(WaitOutcome::TimedOut);
        }
        let next_poll = (now + poll).min(deadline);
        tokio::select! {
            () = &mut woken => {}
            () = tokio::time::sleep_until(next_poll) => {}
        }
    }
}
