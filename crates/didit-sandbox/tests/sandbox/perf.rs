//! Throughput check (ignored by default; run in release):
//! `cargo test --release --test sandbox -- --ignored --nocapture throughput`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use didit_sandbox::Dialect;

use crate::common::{Env, seeded};

const CALLS: usize = 40_000;
const CONCURRENCY: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run in release"]
async fn throughput_of_shares_and_imports() {
    let env = Arc::new(Env::start(Dialect::Seeds).await);
    let session = seeded(&env.x, "user", "Approved");

    let started = Instant::now();
    let tokens = parallel(CALLS, {
        let env = Arc::clone(&env);
        move |_| {
            let env = Arc::clone(&env);
            async move { env.mint(&env.x, session, &env.y).await }
        }
    })
    .await;
    let share_rate = CALLS as f64 / started.elapsed().as_secs_f64();

    let tokens = Arc::new(tokens);
    let started = Instant::now();
    let statuses = parallel(CALLS, {
        let (env, tokens) = (Arc::clone(&env), Arc::clone(&tokens));
        move |i| {
            let (env, tokens) = (Arc::clone(&env), Arc::clone(&tokens));
            async move {
                env.import(&env.y.api_key, &env.y_import(&tokens[i]))
                    .await
                    .status
            }
        }
    })
    .await;
    let import_rate = CALLS as f64 / started.elapsed().as_secs_f64();
    assert!(statuses.iter().all(|s| *s == 201));
    assert_eq!(env.sandbox.stats().import_ok, CALLS as u64);
    println!(
        "shares/s: {share_rate:.0}  imports/s: {import_rate:.0}  \
         (reqwest client and sandbox in one process, 2 worker threads, {CONCURRENCY} in flight)"
    );
}

/// Runs `f(0..n)` on `CONCURRENCY` workers and collects the results.
async fn parallel<T, F, Fut>(n: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = T> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (next, f) = (Arc::clone(&next), f.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return out;
                    }
                    out.push(f(i).await);
                }
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for worker in workers {
        all.extend(worker.await.expect("worker"));
    }
    all
}
