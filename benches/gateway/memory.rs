//! Section 4: memory of the gateway alone, in a child process (this
//! binary re-run), through two batches of miss-path imports (section 5's
//! CPU batches) and replay loads, past the replay store's byte bound.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::child::GatewayChild;
use crate::cpu::{self, import_batch};
use crate::format::{mib, verdict};
use crate::harness::{self, import_request, with_tenant};
use crate::measure::{self, Load, rss};
use crate::results::{Better, Results};
use crate::throughput::{Clients, replay_load};
use crate::{Env, Plan};

/// The value of counter `name` in a Prometheus text exposition.
fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Sections 4 and 5, against a gateway child process: the CPU batches are
/// the miss-path load whose memory this section watches.
pub async fn run(out: &mut String, results: &mut Results, plan: &Plan, env: &Env) {
    let child = GatewayChild::spawn(&env.base);
    let pid = child.pid.clone();
    let clients: Clients = Arc::new(harness::connect_many(child.grpc_addr, 4).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = rss(&pid);

    // Stored before anything else (replayed if no batch ran).
    let hot = harness::mint_tokens(&env.http, &env.base, 1)
        .await
        .remove(0);
    harness::gateway_import(&clients[0], &import_request(&hot)).await;

    // 5. CPU on the miss path: every import is a fresh token. The first
    // batch is the goal's 10,000 (the store is not full yet: the
    // sandbox's answers are 4 KB); then the replay load; then a second
    // batch that fills the store past its byte bound, and a second load.
    let first = import_batch(env, &clients, &pid, plan.distinct).await;
    let first_rss = rss(&pid);
    let first_store = store_counters(env, &child).await;
    // The latest import: the oldest ones may already be evicted for size.
    let latest = first.tokens.last().unwrap_or(&hot);
    let first_load = watched_load(&clients, &pid, latest, plan.memory_load).await;

    let second = import_batch(env, &clients, &pid, plan.distinct).await;
    let second_rss = rss(&pid);
    let second_store = store_counters(env, &child).await;
    // Which of the latest imports the full store can still replay.
    let probe = second.tokens.len().min(200);
    let mut replayable = Vec::new();
    for token in &second.tokens[second.tokens.len() - probe..] {
        let answer = clients[0]
            .clone()
            .import_shared_session(with_tenant(import_request(token)))
            .await;
        if answer.is_ok_and(|r| r.get_ref().replayed) {
            replayable.push(token.clone());
        }
    }
    let second_load = match replayable.last() {
        Some(token) => Some(watched_load(&clients, &pid, token, plan.memory_load).await),
        None => None,
    };
    let end = rss(&pid);
    child.stop();

    // 5's floor: the same batch through the bare proxy, alone in its child.
    let proxy = GatewayChild::spawn_bare_proxy(&env.base);
    let proxy_clients: Clients = Arc::new(harness::connect_many(proxy.grpc_addr, 4).await);
    let floor = import_batch(env, &proxy_clients, &proxy.pid, plan.distinct).await;
    proxy.stop();

    let _ = writeln!(
        out,
        "### 4. Memory of the gateway alone (child process; sandbox and load generator in the parent)\n"
    );
    let _ = writeln!(
        out,
        "| moment, in order | VmRSS | of which anonymous / file-backed | VmHWM (peak so far) |\n| --- | ---: | ---: | ---: |"
    );
    let parts = |r: measure::Rss| format!("{} / {}", mib(r.anon), mib(r.file));
    let _ = writeln!(
        out,
        "| idle, connected | {} | {} | {} |",
        mib(idle.rss),
        parts(idle),
        mib(idle.hwm)
    );
    let row = |out: &mut String, n: usize, after: measure::Rss, (stored, evicted): (u64, u64)| {
        let _ = writeln!(
            out,
            "| after {n} distinct imports in all, default 64 MiB store bound ({stored} stored, {evicted} evicted for size) | {} | {} | {} |",
            mib(after.rss),
            parts(after),
            mib(after.hwm)
        );
    };
    let load_row = |out: &mut String, load: &WatchedLoad| {
        let _ = writeln!(
            out,
            "| replay load, 256 in flight, {:.0} calls/s ({} failed) | {} (peak sampled) | {} (after) | {} |",
            load.load.per_second(),
            load.load.errors,
            mib(load.peak_rss),
            parts(load.after),
            mib(load.after.hwm)
        );
    };
    row(out, plan.distinct, first_rss, first_store);
    load_row(out, &first_load);
    row(out, 2 * plan.distinct, second_rss, second_store);
    let _ = writeln!(
        out,
        "| then: of the last {probe} imports, {} still replay | | | |",
        replayable.len()
    );
    match &second_load {
        Some(load) => load_row(out, load),
        None => {
            let _ = writeln!(
                out,
                "| second replay load: skipped, nothing replayable | | | |"
            );
        }
    }
    let _ = writeln!(
        out,
        "| end | {} | {} | {} |",
        mib(end.rss),
        parts(end),
        mib(end.hwm)
    );
    let in_mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    results.record("memory.idle.rss", in_mib(idle.rss), "MiB", Better::Lower);
    results.record(
        "memory.first_batch.rss",
        in_mib(first_rss.rss),
        "MiB",
        Better::Lower,
    );
    results.record("memory.end.hwm", in_mib(end.hwm), "MiB", Better::Lower);
    results.record("memory.end.anon", in_mib(end.anon), "MiB", Better::Lower);
    let _ = writeln!(
        out,
        "\nGoal: peak (VmHWM at the end) at most 80 MiB with the 64 MiB store full: {}.\n",
        verdict(end.hwm <= 80 * 1024 * 1024)
    );

    cpu::report(out, results, plan, [&first, &second], &floor);
}

/// A replay load on the child with its memory sampled every 50 ms.
struct WatchedLoad {
    load: Load,
    peak_rss: u64,
    after: measure::Rss,
}

async fn watched_load(
    clients: &Clients,
    pid: &str,
    token: &str,
    duration: Duration,
) -> WatchedLoad {
    let peak = Arc::new(AtomicU64::new(0));
    let (watch_stop, mut watch_stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = {
        let (peak, pid) = (Arc::clone(&peak), pid.to_owned());
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss(&pid).rss, Ordering::Relaxed);
                tokio::select! {
                    _ = &mut watch_stopped => break,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        })
    };
    let load = replay_load(clients, token, 256, duration, true).await;
    let _ = watch_stop.send(());
    let _ = watcher.await;
    WatchedLoad {
        load,
        peak_rss: peak.load(Ordering::Relaxed),
        after: rss(pid),
    }
}

/// (stored, evicted for size) from the child's `/metrics`.
async fn store_counters(env: &Env, child: &GatewayChild) -> (u64, u64) {
    let metrics = env
        .http
        .get(format!("http://{}/metrics", child.admin_addr))
        .send()
        .await
        .expect("child /metrics")
        .text()
        .await
        .expect("child /metrics text");
    (
        counter(&metrics, "dsg_import_replay_stored_total"),
        counter(&metrics, "dsg_import_replay_evictions_total"),
    )
}
