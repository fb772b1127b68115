//! In-flight de-duplication: identical calls that overlap in time share one
//! piece of work, run as a detached task that every caller awaits.
//!
//! The work is spawned, not run inside a caller's future: a caller that
//! disconnects or times out leaves the work running to completion, and
//! moka's habit of re-running an init whose leader was dropped can never
//! start a second upstream call, because the init only builds a lazy handle
//! (no side effect) and the spawn happens on the first poll of the handle
//! stored in the cache.

use std::future::Future;
use std::hash::Hash;

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::error::GatewayError;

/// The shared result of one detached task.
pub type SharedTask<V> = Shared<BoxFuture<'static, Result<V, GatewayError>>>;

/// Calls in flight, by key.
pub struct Coalescer<K, V> {
    inflight: moka::future::Cache<K, SharedTask<V>>,
    tasks: TaskTracker,
}

impl<K, V> Coalescer<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// An empty coalescer whose tasks are tracked by `tasks` (for draining
    /// on shutdown).
    pub fn new(tasks: TaskTracker) -> Self {
        // No expiry: a task removes its own entry when it ends, and callers
        // poll the handle (which spawns the task) in the same poll that
        // `join` returns in. A leader dropped inside `join` can at worst
        // leave an unstarted handle, which the next identical call starts.
        // Expiry bookkeeping would cost every miss-path call for nothing.
        let inflight = moka::future::Cache::builder().build();
        Self { inflight, tasks }
    }

    /// Joins the call in flight for `key`, or starts `work` as a detached
    /// task. Returns the shared result and whether this call started it.
    /// `work` is dropped unpolled when another call already runs.
    pub async fn join<F>(&self, key: K, work: F) -> (SharedTask<V>, bool)
    where
        F: Future<Output = Result<V, GatewayError>> + Send + 'static,
    {
        let inflight = self.inflight.clone();
        let tasks = self.tasks.clone();
        let task_key = key.clone();
        // The init yields a future on purpose: the shared handle is the value.
        #[allow(clippy::async_yields_async)]
        let entry = self
            .inflight
            .entry(key)
            .or_insert_with(async move {
                // Lazy: nothing runs until the stored handle is first polled.
                let run = async move {
                    // The task keeps the leader's span (request id, tenant) in its logs.
                    let handle = tasks.spawn(
                        async move {
                            let result = work.await;
                            inflight.invalidate(&task_key).await;
                            result
                        }
                        .in_current_span(),
                    );
                    handle.await.unwrap_or_else(|err| {
                        tracing::error!(error = %err, "a detached upstream task failed");
                        Err(GatewayError::Internal(
                            "a detached upstream task failed".into(),
                        ))
                    })
                };
                run.boxed().shared()
            })
            .await;
        let leader = entry.is_fresh();
        (entry.into_value(), leader)
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
}
