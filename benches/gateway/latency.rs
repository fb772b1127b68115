//! Section 1: added latency. One call at a time, interleaved: a direct
//! reqwest import to the sandbox, the same import through the gateway, a
//! bare tonic echo of the same message, and every 25th call that echo
//! without TCP_NODELAY.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::format::{ratio, signed_us, us, verdict};
use crate::harness::{self, import_request};
use crate::measure::Samples;
use crate::results::{Better, Results};
use crate::{Env, Plan};

/// Section 1. Returns the p50 of one import through the gateway.
pub async fn run(out: &mut String, results: &mut Results, plan: &Plan, env: &Env) -> Duration {
    let n = plan.latency_samples + plan.latency_warmup;
    let direct_tokens = harness::mint_tokens(&env.http, &env.base, n).await;
    let gateway_tokens = harness::mint_tokens(&env.http, &env.base, n).await;
    let url = harness::direct_import_url(&env.base);
    let gateway = harness::connect(env.gateway.grpc_addr).await;
    let echo = harness::connect(env.echo.addr).await;
    let echo_nagle = harness::connect(env.echo_nagle.addr).await;
    let echo_request = import_request(&env.replay_token);
    let (mut a, mut b, mut c, mut d) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Interleaved, so that drift and noise land on every row alike.
    for i in 0..n {
        let t = Instant::now();
        harness::direct_import(&env.http, &url, &direct_tokens[i]).await;
        let direct = t.elapsed();
        let request = import_request(&gateway_tokens[i]);
        let t = Instant::now();
        let imported = harness::gateway_import(&gateway, &request).await;
        let through = t.elapsed();
        assert!(!imported.replayed, "a fresh token is a miss");
        let t = Instant::now();
        harness::gateway_import(&echo, &echo_request).await;
        let bare = t.elapsed();
        if i >= plan.latency_warmup {
            a.push(direct);
            b.push(through);
            c.push(bare);
        }
        // Every 25th only: each of these calls stalls ~40 ms.
        if i >= plan.latency_warmup && i % 25 == 0 {
            let t = Instant::now();
            harness::gateway_import(&echo_nagle, &echo_request).await;
            d.push(t.elapsed());
        }
    }
    let (a, b, c, d) = (
        Samples::new(a),
        Samples::new(b),
        Samples::new(c),
        Samples::new(d),
    );
    let ps = [0.5, 0.99, 0.999];
    let _ = writeln!(
        out,
        "### 1. Latency, one call at a time ({} interleaved samples per row)\n",
        a.len()
    );
    let _ = writeln!(
        out,
        "| call | p50 | p99 | p99.9 |\n| --- | ---: | ---: | ---: |"
    );
    for (name, s) in [
        ("(a) direct reqwest import to the sandbox", &a),
        ("(b) the same import through the gateway (tonic client)", &b),
        ("(c) bare tonic echo, same message, no upstream", &c),
        (
            "(c') the same echo without TCP_NODELAY, Nagle's algorithm on (every 25th call)",
            &d,
        ),
    ] {
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} |",
            us(s.pct(ps[0])),
            us(s.pct(ps[1])),
            us(s.pct(ps[2]))
        );
    }
    let added = ps.map(|p| b.pct(p).as_secs_f64() - a.pct(p).as_secs_f64());
    let _ = writeln!(
        out,
        "| gateway's added cost (b) − (a) | {} | {} | {} |",
        signed_us(b.pct(ps[0]), a.pct(ps[0])),
        signed_us(b.pct(ps[1]), a.pct(ps[1])),
        signed_us(b.pct(ps[2]), a.pct(ps[2]))
    );
    let _ = writeln!(
        out,
        "| added cost as a multiple of (c) | {} | {} | {} |",
        ratio(added[0], c.pct(ps[0]).as_secs_f64()),
        ratio(added[1], c.pct(ps[1]).as_secs_f64()),
        ratio(added[2], c.pct(ps[2]).as_secs_f64())
    );
    let _ = writeln!(
        out,
        "\nGoal: added p50 ≤ 1.2x a bare tonic round trip: {}.\n",
        verdict(added[0] <= 1.2 * c.pct(0.5).as_secs_f64())
    );
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    for (name, samples) in [("direct", &a), ("gateway", &b), ("echo", &c)] {
        for (label, p) in [("p50", 0.5), ("p99", 0.99)] {
            results.record(
                format!("latency.{name}.{label}"),
                micros(samples.pct(p)),
                "us",
                Better::Lower,
            );
        }
    }
    results.record("latency.added.p50", added[0] * 1e6, "us", Better::Lower);
    results.record(
        "latency.added_over_echo.p50",
        added[0] / c.pct(0.5).as_secs_f64().max(1e-9),
        "x",
        Better::Lower,
    );
    b.pct(0.5)
}
