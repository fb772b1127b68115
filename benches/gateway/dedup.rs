//! Section 3: de-duplication. Many concurrent identical imports of one
//! fresh token, released together; how many reach Didit.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use didit_share_gateway::metrics::EndpointLabels;

use crate::format::ratio;
use crate::harness::{self, import_request, with_tenant};
use crate::results::{Better, Results};
use crate::{Env, Plan};

/// Section 3.
pub async fn run(
    out: &mut String,
    results: &mut Results,
    plan: &Plan,
    env: &Env,
    single_import: Duration,
) {
    let _ = writeln!(
        out,
        "### 3. De-duplication: concurrent identical imports of one fresh token\n"
    );
    let _ = writeln!(
        out,
        "| concurrent calls | connections | upstream import calls | joined in flight | answered by replay | failed | wall time | ÷ one import (p50 of 1b) |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let metrics = &env.gateway.state.metrics;
    let coalesced = || {
        metrics
            .coalesced_waiters
            .get_or_create(&EndpointLabels { endpoint: "import" })
            .get()
    };
    for &n in &plan.dedup {
        let token = harness::mint_tokens(&env.http, &env.base, 1)
            .await
            .remove(0);
        // hyper's HTTP/2 server allows 200 streams per connection.
        let conns = n.div_ceil(200);
        let clients = harness::connect_many(env.gateway.grpc_addr, conns).await;
        let request = import_request(&token);
        let upstream_before = env.sandbox.stats().import_calls;
        let (coalesced_before, replays_before) = (coalesced(), metrics.replays.get());
        let gate = Arc::new(tokio::sync::Barrier::new(n + 1));
        let calls: Vec<_> = (0..n)
            .map(|i| {
                let mut client = clients[i % clients.len()].clone();
                let request = with_tenant(request.clone());
                let gate = Arc::clone(&gate);
                tokio::spawn(async move {
                    gate.wait().await;
                    client
                        .import_shared_session(request)
                        .await
                        .map(|r| r.into_inner().session_id)
                })
            })
            .collect();
        gate.wait().await;
        let started = Instant::now();
        let mut sessions = std::collections::HashSet::new();
        let mut failed = 0;
        for call in calls {
            match call.await.expect("import task") {
                Ok(session) => {
                    sessions.insert(session);
                }
                Err(_) => failed += 1,
            }
        }
        let wall = started.elapsed();
        let upstream = env.sandbox.stats().import_calls - upstream_before;
        assert!(sessions.len() <= 1, "every caller got the same session");
        let _ = writeln!(
            out,
            "| {n} | {conns} | {upstream} | {} | {} | {failed} | {:.1} ms | {} |",
            coalesced() - coalesced_before,
            metrics.replays.get() - replays_before,
            wall.as_secs_f64() * 1e3,
            ratio(wall.as_secs_f64(), single_import.as_secs_f64()),
        );
        let key = format!("dedup.{n}");
        results.record(
            format!("{key}.upstream_calls"),
            upstream as f64,
            "calls",
            Better::Same,
        );
        results.record(
            format!("{key}.failed"),
            f64::from(failed),
            "calls",
            Better::Same,
        );
        results.record(
            format!("{key}.wall"),
            wall.as_secs_f64() * 1e3,
            "ms",
            Better::Lower,
        );
    }
    let _ = writeln!(out, "\nGoal: exactly 1 upstream call per row.\n");
}
