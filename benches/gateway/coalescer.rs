//! Section 7: the in-flight coalescer's own cost, two designs side by
//! side: moka's future cache with its entry API (what `src/coalesce.rs`
//! used until this section measured it) and a plain `Mutex<HashMap>` of
//! shared futures (what it uses now), both copies kept here so that the
//! comparison does not move when that file does. Both spawn the work as a detached task that removes its
//! own entry, as the gateway does; the work itself returns at once, so
//! what is timed is join + spawn + await + removal.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use didit_share_gateway::error::GatewayError;
use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use tokio_util::task::TaskTracker;

use crate::Plan;
use crate::measure;
use crate::results::{Better, Results};

type SharedTask<V> = Shared<BoxFuture<'static, Result<V, GatewayError>>>;

fn detached<V, F>(tasks: &TaskTracker, work: F) -> BoxFuture<'static, Result<V, GatewayError>>
where
    V: Send + 'static,
    F: Future<Output = Result<V, GatewayError>> + Send + 'static,
{
    let tasks = tasks.clone();
    async move {
        tasks
            .spawn(work)
            .await
            .unwrap_or_else(|_| Err(GatewayError::Internal("task failed".into())))
    }
    .boxed()
}

/// moka's future cache, entry API (the gateway's design before).
struct Moka<K, V> {
    inflight: moka::future::Cache<K, SharedTask<V>>,
    tasks: TaskTracker,
}

impl<K, V> Moka<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn new() -> Self {
        Self {
            inflight: moka::future::Cache::builder().build(),
            tasks: TaskTracker::new(),
        }
    }

    async fn join<F>(&self, key: K, work: F) -> (SharedTask<V>, bool)
    where
        F: Future<Output = Result<V, GatewayError>> + Send + 'static,
    {
        let (inflight, tasks, task_key) = (self.inflight.clone(), self.tasks.clone(), key.clone());
        #[allow(clippy::async_yields_async)]
        let entry = self
            .inflight
            .entry(key)
            .or_insert_with(async move {
                detached(&tasks, async move {
                    let result = work.await;
                    inflight.invalidate(&task_key).await;
                    result
                })
                .shared()
            })
            .await;
        let leader = entry.is_fresh();
        (entry.into_value(), leader)
    }
}

/// A plain locked map of shared futures (the gateway's design).
struct Locked<K, V> {
    inflight: Arc<Mutex<HashMap<K, SharedTask<V>>>>,
    tasks: TaskTracker,
}

impl<K, V> Locked<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn new() -> Self {
        Self {
            inflight: Arc::default(),
            tasks: TaskTracker::new(),
        }
    }

    fn join<F>(&self, key: K, work: F) -> (SharedTask<V>, bool)
    where
        F: Future<Output = Result<V, GatewayError>> + Send + 'static,
    {
        let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(task) = map.get(&key) {
            return (task.clone(), false);
        }
        let (inflight, task_key) = (Arc::clone(&self.inflight), key.clone());
        let task = detached(&self.tasks, async move {
            let result = work.await;
            inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&task_key);
            result
        })
        .shared();
        map.insert(key, task.clone());
        (task, true)
    }
}

/// `calls` joins of fresh keys, one at a time, each awaited; time per call.
async fn moka_round(calls: u64, base: u64) -> Duration {
    let coalescer = Moka::<u64, u64>::new();
    let started = Instant::now();
    for key in base..base + calls {
        let (task, leader) = coalescer.join(key, async move { Ok(key) }).await;
        assert!(leader && task.await.is_ok_and(|v| v == key));
    }
    started.elapsed() / u32::try_from(calls).unwrap_or(u32::MAX)
}

async fn locked_round(calls: u64, base: u64) -> Duration {
    let coalescer = Locked::<u64, u64>::new();
    let started = Instant::now();
    for key in base..base + calls {
        let (task, leader) = coalescer.join(key, async move { Ok(key) });
        assert!(leader && task.await.is_ok_and(|v| v == key));
    }
    started.elapsed() / u32::try_from(calls).unwrap_or(u32::MAX)
}

pub async fn run(out: &mut String, results: &mut Results, plan: &Plan) {
    let (calls, rounds) = if plan.smoke { (200, 3) } else { (20_000, 9) };
    moka_round(calls / 4, 0).await;
    locked_round(calls / 4, 0).await;
    let (mut moka, mut locked, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    // Alternating rounds; the ratio of a pair is less exposed to the
    // machine's other load than a ratio of medians.
    for round in 0..rounds {
        let base = (round as u64 + 1) * calls;
        let m = moka_round(calls, base).await;
        let l = locked_round(calls, base).await;
        ratios.push(l.as_secs_f64() / m.as_secs_f64().max(1e-12));
        moka.push(m.as_secs_f64() * 1e6);
        locked.push(l.as_secs_f64() * 1e6);
    }
    let (m, l, r) = (
        measure::median_f64(moka),
        measure::median_f64(locked),
        measure::median_f64(ratios),
    );
    let _ = writeln!(
        out,
        "### 7. In-flight coalescer alone: join + detached task + await + removal, one call at a time ({calls} fresh keys per round, median of {rounds} alternating rounds)\n"
    );
    let _ = writeln!(
        out,
        "| design | per call |\n| --- | ---: |\n| moka future cache, entry API (the gateway's until 2026-12-01) | {m:.2} µs |\n| `Mutex<HashMap>` of shared futures (the gateway's now) | {l:.2} µs |\n| ratio locked ÷ moka (median of pairs) | {r:.2}x |\n"
    );
    results.record("coalescer.moka", m, "us", Better::Lower);
    results.record("coalescer.locked", l, "us", Better::Lower);
    results.record("coalescer.locked_over_moka", r, "x", Better::Lower);
}
