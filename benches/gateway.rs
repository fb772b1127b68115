//! What the gateway costs, measured side by side in one run (issue 9).
//!
//! `cargo bench --bench gateway` starts the Didit sandbox (latency
//! injection off), the gateway (built like `--sandbox` mode, with the
//! per-tenant rate limit and the global concurrency limit raised so that
//! they never throttle) and a bare tonic echo server, all in this process
//! on `127.0.0.1:0`, and prints a markdown table:
//!
//! 1. latency of a direct reqwest import to the sandbox, the same import
//!    through the gateway, and a bare tonic echo of the same message;
//! 2. throughput of replayed imports against the echo at 1/16/64/256 in flight;
//! 3. de-duplication of 1,000 and 10,000 concurrent identical imports;
//! 4. memory and 5. CPU per miss-path import, with the gateway alone in a
//!    child process (this binary re-run) so the numbers are its own;
//! 6. an `h2load` cross-check of the replay path, when h2load is installed;
//! 7. session events: webhook-to-subscriber latency at 1,000 events/s with
//!    100 subscribers, and memory per idle subscriber.
//!
//! `DSG_BENCH_SMOKE=1` runs the same code paths with tiny counts in seconds
//! (CI). Nothing here asserts on time. Progress goes to stderr, the table
//! to stdout. See the README, Performance.

#[path = "gateway/child.rs"]
mod child;
#[path = "gateway/events.rs"]
mod events;
#[path = "gateway/harness.rs"]
mod harness;
#[path = "gateway/measure.rs"]
mod measure;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use didit_sandbox::Sandbox;
use didit_share_gateway::metrics::EndpointLabels;
use didit_share_gateway::proto::ImportSharedSessionResponse;
use didit_share_gateway::proto::import_service_client::ImportServiceClient;
use futures::StreamExt as _;
use prost::Message as _;
use tonic::transport::Channel;

use child::{CHILD_ENV, GatewayChild};
use harness::{EchoHandle, GatewayHandle, bench_config, import_request, with_tenant};
use measure::{Load, Samples, closed_loop, cpu_time, median, rss};

/// How much of everything to do.
struct Plan {
    smoke: bool,
    /// Timed sequential samples per latency row.
    latency_samples: usize,
    /// Untimed calls before them.
    latency_warmup: usize,
    /// In-flight calls of the throughput rows.
    levels: [usize; 4],
    /// Length of one throughput run.
    round: Duration,
    /// Alternating runs per target and level (the median is reported).
    rounds: usize,
    /// Concurrent identical imports.
    dedup: [usize; 2],
    /// Distinct imports for the memory and CPU rows.
    distinct: usize,
    /// Replay load on the child while its memory is watched.
    memory_load: Duration,
    /// Requests per h2load run.
    h2load_requests: usize,
}

impl Plan {
    fn new(smoke: bool) -> Self {
        if smoke {
            Self {
                smoke,
                latency_samples: 40,
                latency_warmup: 5,
                levels: [1, 16, 64, 256],
                round: Duration::from_millis(100),
                rounds: 1,
                dedup: [50, 200],
                distinct: 100,
                memory_load: Duration::from_millis(200),
                h2load_requests: 200,
            }
        } else {
            Self {
                smoke,
                latency_samples: 5_000,
                latency_warmup: 200,
                levels: [1, 16, 64, 256],
                round: Duration::from_millis(1_000),
                rounds: 5,
                dedup: [1_000, 10_000],
                distinct: 10_000,
                memory_load: Duration::from_secs(3),
                h2load_requests: 30_000,
            }
        }
    }
}

/// Connections the load generator opens: one per in-flight call up to 4.
fn connections(concurrency: usize) -> usize {
    concurrency.clamp(1, 4)
}

fn main() {
    if let Ok(upstream) = std::env::var(CHILD_ENV) {
        return child::serve(upstream);
    }
    let smoke = std::env::var("DSG_BENCH_SMOKE").is_ok_and(|v| !v.is_empty() && v != "0");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if std::env::var_os("DSG_BENCH_SERVE").is_some() {
        return runtime.block_on(serve_for_profiling());
    }
    let started = Instant::now();
    let report = runtime.block_on(run(Plan::new(smoke)));
    print!("{report}");
    println!(
        "\nTotal benchmark time: {:.1} s.",
        started.elapsed().as_secs_f64()
    );
}

/// Everything the in-process sections share.
struct Env {
    http: reqwest::Client,
    sandbox: Sandbox,
    base: String,
    gateway: GatewayHandle,
    echo: EchoHandle,
    /// The same echo without TCP_NODELAY (Nagle on).
    echo_nagle: EchoHandle,
    /// A real replayed import response, the echo's message.
    response: ImportSharedSessionResponse,
    /// The import that request replays.
    replay_token: String,
}

async fn run(plan: Plan) -> String {
    didit_share_gateway::install_crypto_provider();
    let http = reqwest::Client::new();
    let sandbox = harness::start_sandbox(&http).await;
    let base = sandbox.base_url();
    let gateway = GatewayHandle::start(&bench_config(&base)).await;
    let client = harness::connect(gateway.grpc_addr).await;
    let replay_token = harness::mint_tokens(&http, &base, 1).await.remove(0);
    let first = harness::gateway_import(&client, &import_request(&replay_token)).await;
    let response = harness::gateway_import(&client, &import_request(&replay_token)).await;
    assert!(
        !first.replayed && response.replayed,
        "the second import replays"
    );
    let echo = EchoHandle::start(response.clone(), true).await;
    let echo_nagle = EchoHandle::start(response.clone(), false).await;
    let env = Env {
        http,
        sandbox,
        base,
        gateway,
        echo,
        echo_nagle,
        response,
        replay_token,
    };

    let mut out = String::new();
    header(&mut out, &plan, &env);
    eprintln!("[1/6] latency");
    let single_import = latency(&mut out, &plan, &env).await;
    eprintln!("[2/6] throughput");
    let own_64 = throughput(&mut out, &plan, &env).await;
    eprintln!("[3/6] de-duplication");
    dedup(&mut out, &plan, &env, single_import).await;
    eprintln!("[4/6] memory and [5/6] CPU (gateway child process)");
    memory_and_cpu(&mut out, &plan, &env).await;
    eprintln!("[6/6] h2load cross-check");
    h2load(&mut out, &plan, &env, own_64).await;
    eprintln!("[7] session events");
    let events_plan = events::EventsPlan {
        subscribers: if plan.smoke { 10 } else { 100 },
        per_second: 1_000,
        duration: if plan.smoke {
            Duration::from_millis(300)
        } else {
            Duration::from_secs(5)
        },
    };
    events::events(&mut out, &events_plan).await;

    let Env {
        sandbox,
        gateway,
        echo,
        echo_nagle,
        ..
    } = env;
    echo.stop().await;
    echo_nagle.stop().await;
    gateway.stop().await;
    sandbox.stop().await;
    out
}

/// `DSG_BENCH_SERVE=1`: the sandbox, the gateway (one import stored for
/// replay) and the echo, serving until stdin closes, with the h2load
/// commands printed, for `perf record -p` or a manual h2load run.
async fn serve_for_profiling() {
    didit_share_gateway::install_crypto_provider();
    let http = reqwest::Client::new();
    let sandbox = harness::start_sandbox(&http).await;
    let gateway = GatewayHandle::start(&bench_config(&sandbox.base_url())).await;
    let client = harness::connect(gateway.grpc_addr).await;
    let token = harness::mint_tokens(&http, &sandbox.base_url(), 1)
        .await
        .remove(0);
    let response = harness::gateway_import(&client, &import_request(&token)).await;
    let echo = EchoHandle::start(response, true).await;
    let body = write_h2load_body(&token);
    for (name, addr) in [("gateway", gateway.grpc_addr), ("echo", echo.addr)] {
        let args = measure::h2load_args(addr, &body, 100_000, 4, 16);
        println!("{name}: h2load {}", shell_words(&args));
    }
    println!("pid {}; close stdin (Ctrl-D) to stop", std::process::id());
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink)
    })
    .await;
    echo.stop().await;
    gateway.stop().await;
    sandbox.stop().await;
}

/// Writes the h2load request body for an import of `token`: a 5-byte gRPC
/// frame header (uncompressed, big-endian length) and the encoded request.
fn write_h2load_body(token: &str) -> std::path::PathBuf {
    let body = std::env::temp_dir().join("dsg-bench-import-request.bin");
    let message = import_request(token).encode_to_vec();
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0);
    frame.extend_from_slice(&u32::try_from(message.len()).expect("small").to_be_bytes());
    frame.extend_from_slice(&message);
    std::fs::write(&body, &frame).expect("write the h2load body");
    body
}

fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.contains(' ') {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn header(out: &mut String, plan: &Plan, env: &Env) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let _ = writeln!(
        out,
        "## didit-share-gateway benchmark{}\n",
        if plan.smoke {
            " (SMOKE: tiny counts, numbers meaningless)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "Machine: {cores} cores, {cpu}, Linux {}. All on loopback; sections 1-3 and 6 in this \
         process, one tokio runtime ({cores} workers) for sandbox, gateway, echo and clients; \
         sections 4-5 with the gateway alone in a child process. Sandbox latency injection off; \
         the gateway's per-tenant rate limit and max_concurrent_requests raised. Import \
         response: {} bytes encoded (raw_json {} bytes, 9 KYC check arrays as Struct).\n",
        kernel.trim(),
        env.response.encoded_len(),
        env.response.raw_json.len(),
    );
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn signed_us(a: Duration, b: Duration) -> String {
    format!("{:.0} µs", (a.as_secs_f64() - b.as_secs_f64()) * 1e6)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "n/a".into()
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Section 1. Returns the p50 of one import through the gateway.
async fn latency(out: &mut String, plan: &Plan, env: &Env) -> Duration {
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
            "(c') the same echo without TCP_NODELAY, as the gateway's listener was before e20ffb3 (every 25th call)",
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
        "\nGoal: added p50 ≤ 1.5x a bare tonic round trip: {}.\n",
        verdict(added[0] <= 1.5 * c.pct(0.5).as_secs_f64())
    );
    b.pct(0.5)
}

type Clients = Arc<Vec<ImportServiceClient<Channel>>>;

/// Replays of `token` (or echoes) from `concurrency` workers over `clients`.
async fn replay_load(
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
async fn throughput(out: &mut String, plan: &Plan, env: &Env) -> f64 {
    let _ = writeln!(
        out,
        "### 2. Throughput, closed loop (median of {} alternating runs of {:.1} s; up to 4 connections)\n",
        plan.rounds,
        plan.round.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| in flight | replayed imports via gateway (calls/s) | bare tonic echo (calls/s) | ratio (median of pairs) | goal ≥ 0.7x |\n| ---: | ---: | ---: | ---: | --- |"
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
        let _ = writeln!(
            out,
            "| {concurrency} | {:.0} | {:.0} | {r:.2}x | {}{} |",
            g.per_second(),
            e.per_second(),
            verdict(r >= 0.7),
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

/// Section 3.
async fn dedup(out: &mut String, plan: &Plan, env: &Env, single_import: Duration) {
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
    }
    let _ = writeln!(out, "\nGoal: exactly 1 upstream call per row.\n");
}

/// The value of counter `name` in a Prometheus text exposition.
fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Sections 4 and 5, against a gateway child process.
async fn memory_and_cpu(out: &mut String, plan: &Plan, env: &Env) {
    let child = GatewayChild::spawn(&env.base);
    let pid = child.pid.clone();
    let clients: Clients = Arc::new(harness::connect_many(child.grpc_addr, 4).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = rss(&pid);

    // The token the first replay load repeats.
    let hot = harness::mint_tokens(&env.http, &env.base, 1)
        .await
        .remove(0);
    harness::gateway_import(&clients[0], &import_request(&hot)).await;

    // 5. CPU on the miss path: every import is a fresh token. The first
    // batch is the issue's 10,000 (the store is not full yet: the
    // sandbox's answers are 4 KB); then the replay load; then a second
    // batch that fills the store past its byte bound, and a second load.
    let first = import_batch(env, &clients, &pid, plan.distinct).await;
    let first_rss = rss(&pid);
    let first_store = store_counters(env, &child).await;
    let first_load = watched_load(&clients, &pid, &hot, plan.memory_load).await;

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

    let _ = writeln!(
        out,
        "### 4. Memory of the gateway alone (child process; sandbox and load generator in the parent)\n"
    );
    let _ = writeln!(
        out,
        "| moment, in order | VmRSS | VmHWM (peak so far) |\n| --- | ---: | ---: |"
    );
    let _ = writeln!(
        out,
        "| idle, connected | {} | {} |",
        mib(idle.rss),
        mib(idle.hwm)
    );
    let row = |out: &mut String, n: usize, after: measure::Rss, (stored, evicted): (u64, u64)| {
        let _ = writeln!(
            out,
            "| after {n} distinct imports in all, default 64 MiB store bound ({stored} stored, {evicted} evicted for size) | {} | {} |",
            mib(after.rss),
            mib(after.hwm)
        );
    };
    let load_row = |out: &mut String, load: &WatchedLoad| {
        let _ = writeln!(
            out,
            "| replay load, 256 in flight, {:.0} calls/s ({} failed) | {} (peak sampled) | {} |",
            load.load.per_second(),
            load.load.errors,
            mib(load.peak_rss),
            mib(load.after.hwm)
        );
    };
    row(out, plan.distinct, first_rss, first_store);
    load_row(out, &first_load);
    row(out, 2 * plan.distinct, second_rss, second_store);
    let _ = writeln!(
        out,
        "| then: of the last {probe} imports, {} still replay | | |",
        replayable.len()
    );
    match &second_load {
        Some(load) => load_row(out, load),
        None => {
            let _ = writeln!(
                out,
                "| second replay load: skipped, nothing replayable | | |"
            );
        }
    }
    let _ = writeln!(out, "| end | {} | {} |", mib(end.rss), mib(end.hwm));
    let _ = writeln!(
        out,
        "\nGoal: peak (VmHWM at the end) under 100 MiB at the 64 MiB store bound: {}.\n",
        verdict(end.hwm < 100 * 1024 * 1024)
    );

    let _ = writeln!(
        out,
        "### 5. CPU per imported call on the miss path (fresh token each, 16 in flight)\n"
    );
    let _ = writeln!(
        out,
        "| process, batch | calls | wall | user+sys | CPU per call |\n| --- | ---: | ---: | ---: | ---: |"
    );
    for (name, batch) in [("first", &first), ("second", &second)] {
        let per_call = |cpu: Duration| {
            format!(
                "{:.0} µs",
                cpu.as_secs_f64() * 1e6 / (batch.ok.max(1) as f64)
            )
        };
        let _ = writeln!(
            out,
            "| gateway (child, /proc/PID/stat), {name} {} | {} | {:.2} s | {:.2} s | {} |",
            plan.distinct,
            batch.ok,
            batch.wall.as_secs_f64(),
            batch.child_cpu.as_secs_f64(),
            per_call(batch.child_cpu)
        );
        let _ = writeln!(
            out,
            "| for scale: sandbox + tonic client (this process, /proc/self/stat), {name} {} | {} | {:.2} s | {:.2} s | {} |",
            plan.distinct,
            batch.ok,
            batch.wall.as_secs_f64(),
            batch.own_cpu.as_secs_f64(),
            per_call(batch.own_cpu)
        );
    }
    out.push('\n');
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

/// One batch of miss-path imports against the gateway child.
struct Batch {
    /// The tokens imported, in order.
    tokens: Vec<String>,
    /// Imports answered OK and not replayed.
    ok: usize,
    wall: Duration,
    /// The child's user+sys time over the batch.
    child_cpu: Duration,
    /// This process's (sandbox + client) user+sys time over the batch.
    own_cpu: Duration,
}

/// Imports `n` fresh tokens, 16 in flight, timing the child's CPU.
async fn import_batch(env: &Env, clients: &Clients, pid: &str, n: usize) -> Batch {
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

/// Section 6: h2load against the replay path and the echo, same shape as
/// our own client's 64-in-flight row (4 connections × 16 streams).
async fn h2load(out: &mut String, plan: &Plan, env: &Env, own_64: f64) {
    let _ = writeln!(
        out,
        "### 6. Cross-check with h2load (4 connections × 16 streams = 64 in flight)\n"
    );
    let body = write_h2load_body(&env.replay_token);
    if !measure::have_h2load() {
        let _ = writeln!(
            out,
            "h2load is not installed (`apt-get install nghttp2-client`, or run `benches/h2load.sh`); skipped.\n"
        );
        return;
    }
    let gateway_args =
        measure::h2load_args(env.gateway.grpc_addr, &body, plan.h2load_requests, 4, 16);
    let echo_args = measure::h2load_args(env.echo.addr, &body, plan.h2load_requests, 4, 16);
    let replays_before = env.gateway.state.metrics.replays.get();
    let gateway = measure::h2load(&gateway_args).await;
    let replayed = env.gateway.state.metrics.replays.get() - replays_before;
    let echo = measure::h2load(&echo_args).await;
    let (Some(gateway), Some(echo)) = (gateway, echo) else {
        let _ = writeln!(out, "h2load output could not be read; skipped.\n");
        return;
    };
    let _ = writeln!(
        out,
        "| target | h2load calls/s | mean latency | succeeded | our client at 64 (section 2) |\n| --- | ---: | ---: | ---: | ---: |"
    );
    let _ = writeln!(
        out,
        "| gateway replay path | {:.0} | {} | {} ok, {} failed ({replayed} replays counted by the gateway) | {own_64:.0} |",
        gateway.per_second, gateway.mean_latency, gateway.succeeded, gateway.failed
    );
    let _ = writeln!(
        out,
        "| bare tonic echo | {:.0} | {} | {} ok, {} failed | |",
        echo.per_second, echo.mean_latency, echo.succeeded, echo.failed
    );
    let _ = writeln!(
        out,
        "| ratio gateway ÷ echo | {} | | | |",
        ratio(gateway.per_second, echo.per_second)
    );
    let _ = writeln!(
        out,
        "\nCommand (gateway run; the body file is a 5-byte gRPC frame header and the encoded request):\n\n```\nh2load {}\n```",
        shell_words(&gateway_args)
    );
}
