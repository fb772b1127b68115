//! In-flight de-duplication: identical calls that overlap in time share one
//! piece of work, run as a detached task that every caller awaits.
//!
//! The work is spawned, not run inside a caller's future: a caller that
//! disconnects or times out leaves the work running to completion. The
//! calls in flight are a plain locked map of shared task handles: `join`
//! looks the key up and, when it is absent, spawns the work and inserts
//! its handle under the same lock, so two calls can never start two runs,
//! and the spawn happens before `join` returns, so a caller dropped at any
//! point cannot leave work unstarted. The task removes its own entry when
//! it ends. (The benchmark's section 7 measured this map against moka's
//! future cache with its entry API, which this module used before: the map
//! costs about 0.7x per call; see benches/README.md.)

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::error::GatewayError;

/// The shared result of one detached task.
pub type SharedTask<V> = Shared<BoxFuture<'static, Result<V, GatewayError>>>;

/// The handles of the calls in flight, by key.
type Inflight<K, V> = Arc<Mutex<HashMap<K, SharedTask<V>>>>;

/// Calls in flight, by key.
pub struct Coalescer<K, V> {
    /// One entry per key while its task runs; the task removes it.
    inflight: Inflight<K, V>,
    /// Tracks the detached tasks, for draining on shutdown.
    tasks: TaskTracker,
}

/// The map, whatever a panicking holder left in it (every change is one
/// insert or one remove, so it is never half-done).
fn lock<K: Hash + Eq, V>(inflight: &Inflight<K, V>) -> MutexGuard<'_, HashMap<K, SharedTask<V>>> {
    inflight.lock().unwrap_or_else(|p| p.into_inner())
}

/// A task's entry, removed when the task ends.
struct Entry<K: Hash + Eq, V> {
    map: Inflight<K, V>,
    key: K,
}

impl<K: Hash + Eq, V> Drop for Entry<K, V> {
    fn drop(&mut self) {
        lock(&self.map).remove(&self.key);
    }
}

impl<K, V> Coalescer<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// An empty coalescer whose tasks are tracked by `tasks` (for draining
    /// on shutdown).
    pub fn new(tasks: TaskTracker) -> Self {
        Self {
            inflight: Arc::default(),
            tasks,
        }
    }

    /// Joins the call in flight for `key`, or starts `work` as a detached
    /// task. Returns the shared result and whether this call started it.
    /// `work` is dropped unpolled when another call already runs.
    pub async fn join<F>(&self, key: K, work: F) -> (SharedTask<V>, bool)
    where
        F: Future<Output = Result<V, GatewayError>> + Send + 'static,
    {
        let mut inflight = lock(&self.inflight);
        if let Some(task) = inflight.get(&key) {
            return (task.clone(), false);
        }
        let map = Arc::clone(&self.inflight);
        let task_key = key.clone();
        // The task keeps the leader's span (request id, tenant) in its
        // logs. If it ends before the insert below, its removal waits for
        // this lock, so it always removes its own entry.
        let handle = self.tasks.spawn(
            async move {
                // Removes the entry however the task ends (a panic too).
                let _entry = Entry { map, key: task_key };
                work.await
            }
            .in_current_span(),
        );
        let task = async move {
            handle.await.unwrap_or_else(|err| {
                tracing::error!(error = %err, "a detached upstream task failed");
                Err(GatewayError::Internal(
                    "a detached upstream task failed".into(),
                ))
            })
        }
        .boxed()
        .shared();
        inflight.insert(key, task.clone());
        (task, true)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn overlapping_calls_share_one_run() {
        let coalescer = Arc::new(Coalescer::<u8, usize>::new(TaskTracker::new()));
        let runs = Arc::new(AtomicUsize::new(0));
        let mut waiters = Vec::new();
        for _ in 0..100 {
            let (coalescer, runs) = (coalescer.clone(), runs.clone());
            waiters.push(tokio::spawn(async move {
                let work = async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(7)
                };
                let (task, _) = coalescer.join(1, work).await;
                task.await
            }));
        }
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap().unwrap(), 7);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_dropped_leader_does_not_stop_or_repeat_the_work() {
        let coalescer = Arc::new(Coalescer::<u8, usize>::new(TaskTracker::new()));
        let runs = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let counted = runs.clone();
        let work = async move {
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = released.await;
            Ok(1)
        };
        let (task, leader) = coalescer.join(9, work).await;
        assert!(leader);
        // The leader polls once (the work starts) and gives up.
        assert!(
            tokio::time::timeout(Duration::from_millis(10), task)
                .await
                .is_err()
        );
        let counted = runs.clone();
        let (again, leader) = coalescer
            .join(9, async move {
                counted.fetch_add(1, Ordering::SeqCst);
                Ok(2)
            })
            .await;
        assert!(!leader, "the first task is still in flight");
        release.send(()).unwrap();
        assert_eq!(again.await.unwrap(), 1);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_finished_or_panicked_task_leaves_no_entry() {
        let coalescer = Coalescer::<u8, usize>::new(TaskTracker::new());
        let (task, leader) = coalescer.join(1, async { Ok(1) }).await;
        assert!(leader);
        assert_eq!(task.await.unwrap(), 1);
        let (task, leader) = coalescer.join(2, async { panic!("work panicked") }).await;
        assert!(leader);
        assert!(matches!(task.await, Err(GatewayError::Internal(_))));
        assert!(lock(&coalescer.inflight).is_empty());
        let (task, leader) = coalescer.join(2, async { Ok(3) }).await;
        assert!(leader, "a new run after the panic");
        assert_eq!(task.await.unwrap(), 3);
    }
}
