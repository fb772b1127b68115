//! Section 5: CPU per imported call on the miss path (a fresh token each,
//! 16 in flight), the gateway's own CPU read from `/proc/PID/stat`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use futures::StreamExt as _;

use crate::harness::{self, import_request, with_tenant};
use crate::measure::cpu_time;
use crate::results::{Better, Results};
use crate::throughput::Clients;
use crate::{Env, Plan};

/// One batch of miss-path imports against the gateway child.
pub struct Batch {
    /// The tokens imported, in order.
    pub tokens: Vec<String>,
    /// Imports answered OK and not replayed.
    pub ok: usize,
    pub wall: Duration,
    /// The child's user+sys time over the batch.
    pub child_cpu: Duration,
    /// This process's (sandbox + client) user+sys time over the batch.
    pub own_cpu: Duration,
}

/// Imports `n` fresh tokens, 16 in flight, timing the child's CPU.
pub async fn import_batch(env: &Env, clients: &Clients, pid: &str, n: usize) -> Batch {
    let tokens = harness::mint_tokens(&env.http, &env.base, n).await;
    let (child_cpu, own_cpu, started) = (cpu_time(pid), cpu_time("self"), Instant::now());
    let imported: Vec<bool> = futures::stream::iter(tokens.iter().enumerate())
        .map(|(i, token)| {
            let mut client = clients[i % clients.len()].clone();
            let request = with_tenant(import_request(token));
            async move {
                client
                    .import_shared_session(request)
                    .await
                    .is_ok_and(|r| !r.get_ref().replayed)
            }
        })
        .buffered(16)
        .collect()
        .await;
    Batch {
        ok: imported.iter().filter(|ok| **ok).count(),
        wall: started.elapsed(),
        child_cpu: cpu_time(pid) - child_cpu,
        own_cpu: cpu_time("self") - own_cpu,
        tokens,
    }
}

/// Section 5's table from the two batches [`crate::memory`] ran against the
/// gateway and the one against the bare proxy.
pub fn report(
    out: &mut String,
    results: &mut Results,
    plan: &Plan,
    [first, second]: [&Batch; 2],
    floor: &Batch,
) {
    let _ = writeln!(
        out,
        "### 5. CPU per imported call on the miss path (fresh token each, 16 in flight)\n"
    );
    let _ = writeln!(
        out,
        "| process, batch | calls | wall | user+sys | CPU per call |\n| --- | ---: | ---: | ---: | ---: |"
    );
    let per_call =
        |batch: &Batch, cpu: Duration| cpu.as_secs_f64() * 1e6 / (batch.ok.max(1) as f64);
    let mut row = |name: String, batch: &Batch, cpu: Duration| {
        let _ = writeln!(
            out,
            "| {name} | {} | {:.2} s | {:.2} s | {:.0} µs |",
            batch.ok,
            batch.wall.as_secs_f64(),
            cpu.as_secs_f64(),
            per_call(batch, cpu)
        );
    };
    for (name, batch) in [("first", first), ("second", second)] {
        let n = plan.distinct;
        row(
            format!("gateway (child, /proc/PID/stat), {name} {n}"),
            batch,
            batch.child_cpu,
        );
        row(
            format!(
                "for scale: sandbox + tonic client (this process, /proc/self/stat), {name} {n}"
            ),
            batch,
            batch.own_cpu,
        );
        results.record(
            format!("cpu.{name}_batch.gateway_per_call"),
            per_call(batch, batch.child_cpu),
            "us",
            Better::Lower,
        );
    }
    row(
        format!(
            "floor: a bare tonic server making the one reqwest call (child), {}",
            plan.distinct
        ),
        floor,
        floor.child_cpu,
    );
    let (first_us, second_us) = (
        per_call(first, first.child_cpu),
        per_call(second, second.child_cpu),
    );
    let bare = per_call(floor, floor.child_cpu);
    let over_floor = (first_us + second_us) / 2.0 / bare.max(1.0);
    results.record("cpu.floor.per_call", bare, "us", Better::Lower);
    results.record("cpu.gateway_over_floor", over_floor, "x", Better::Lower);
    let _ = writeln!(
        out,
        "\nThe floor is a generated tonic `ImportService` whose handler makes the same \
         `POST /v3/session/import-shared/` with reqwest and answers its body as `raw_json`: \
         no tenant, auth, policy, budget, replay store or mapping. Gateway ÷ floor: {over_floor:.2}x.\n"
    );
    let _ = writeln!(
        out,
        "Goal: at most 60 µs of gateway CPU per miss-path import: {} (first batch {first_us:.0} µs, second {second_us:.0} µs; the floor alone {bare:.0} µs).\n",
        crate::format::verdict(first_us <= 60.0 && second_us <= 60.0),
    );
}
