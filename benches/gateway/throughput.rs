//! Section 2: replay throughput, closed loop, against a bare tonic echo of
//! the same response at 1/16/64/256 in flight.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use didit_share_gateway::proto::import_service_client::ImportServiceClient;
use tonic::transport::Channel;

use crate::format::verdict;
use crate::harness::{self, import_request, with_tenant};
use crate::measure::{self, Load, closed_loop, median};
use crate::results::{Better, Results};
use crate::{Env, Plan};

/// Connections the load generator opens: one per in-flight call up to 4.
pub fn connections(concurrency: usize) -> usize {
    concurrency.clamp(1, 4)
}

pub type Clients = Arc<Vec<ImportServiceClient<Channel>>>;

/// Replays of `token` (or echoes) from `concurrency` workers over `clients`.
pub async fn replay_load(
    clients: &Clients,
    token: &str,
    concurrency: usize,
    duration: Duration,
    must_replay: bool,
) -> Load {
    let clients = Arc::clone(clients);
    let request = Arc::new(import_request(token));
    closed_loop(concurrency, duration, move |worker| {
        let mut client = clients[worker % clients.len()].clone();
        let request = with_tenant((*request).clone());
        async move {
            match client.import_shared_session(request).await {
                Ok(answer) => answer.get_ref().replayed || !must_replay,
                Err(_) => false,
            }
        }
    })
    .await
}

/// Section 2. Returns our client's replay throughput at 64 in flight.
pub async fn run(out: &mut String, results: &mut Results, plan: &Plan, env: &Env) -> f64 {
    let _ = writeln!(
        out,
        "### 2. Throughput, closed loop (median of {} alternating runs of {:.1} s; up to 4 connections)\n",
        plan.rounds,
        plan.round.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| in flight | replayed imports via gateway (calls/s) | bare tonic echo (calls/s) | ratio (median of pairs) | goal ≥ 0.95x |\n| ---: | ---: | ---: | ---: | --- |"
    );
    let mut at_64 = 0.0;
    for &concurrency in &plan.levels {
        let conns = connections(concurrency);
        let gateway: Clients = Arc::new(harness::connect_many(env.gateway.grpc_addr, conns).await);
        let echo: Clients = Arc::new(harness::connect_many(env.echo.addr, conns).await);
        let warm = plan.round / 3;
        replay_load(&gateway, &env.replay_token, concurrency, warm, true).await;
        replay_load(&echo, &env.replay_token, concurrency, warm, false).await;
        let (mut g, mut e, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        // Each round measures both back to back; the ratio of a pair is
        // less exposed to the other engineers' builds than a ratio of medians.
        for _ in 0..plan.rounds {
            let echoed =
                replay_load(&echo, &env.replay_token, concurrency, plan.round, false).await;
            let replayed =
                replay_load(&gateway, &env.replay_token, concurrency, plan.round, true).await;
            ratios.push(replayed.per_second() / echoed.per_second().max(1e-9));
            e.push(echoed);
            g.push(replayed);
        }
        let errors: u64 = g.iter().chain(&e).map(|l| l.errors).sum();
        let (g, e, r) = (median(g), median(e), measure::median_f64(ratios));
        if concurrency == 64 {
            at_64 = g.per_second();
        }
        let key = format!("throughput.{concurrency}");
        results.record(format!("{key}.ratio"), r, "x", Better::Higher);
        results.record(
            format!("{key}.gateway"),
            g.per_second(),
            "calls/s",
            Better::Higher,
        );
        results.record(
            format!("{key}.echo"),
            e.per_second(),
            "calls/s",
            Better::Higher,
        );
        let _ = writeln!(
            out,
            "| {concurrency} | {:.0} | {:.0} | {r:.2}x | {}{} |",
            g.per_second(),
            e.per_second(),
            verdict(r >= 0.95),
            if errors > 0 {
                format!(" ({errors} failed calls!)")
            } else {
                String::new()
            }
        );
    }
    out.push('\n');
    at_64
}
