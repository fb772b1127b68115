//! What the gateway costs, measured side by side in one run.
//!
//! `cargo bench --bench gateway` starts the Didit sandbox (latency
//! injection off), the gateway (built like `--sandbox` mode, with the
//! per-tenant rate limit and the global concurrency limit raised so that
//! they never throttle) and a bare tonic echo server, all in this process
//! on `127.0.0.1:0`, and prints a markdown table, one module per section:
//!
//! 1. [`latency`]: a direct reqwest import to the sandbox, the same import
//!    through the gateway, and a bare tonic echo of the same message;
//! 2. [`throughput`]: replayed imports against the echo at 1/16/64/256 in
//!    flight;
//! 3. [`dedup`]: 1,000 and 10,000 concurrent identical imports;
//! 4. [`memory`] and 5. [`cpu`] per miss-path import, with the gateway alone
//!    in a child process (this binary re-run) so the numbers are its own;
//! 6. [`h2load`]: a cross-check of the replay path, when h2load is installed;
//! 7. [`coalescer`]: the in-flight coalescer alone, moka's entry API beside
//!    a plain locked map;
//! 8. [`events`]: webhook-to-subscriber latency at 1,000 events/s with
//!    100 subscribers beside the webhook POST's own round trip, and memory
//!    per idle subscriber, with the memory and the Redis event log;
//! 9. [`redis_backend`]: the Redis state beside the memory state (replay
//!    p50 and throughput, miss-path cost, Redis round trips per call) and
//!    a bare Redis `GET`, on a `redis-server` of its own (skipped without
//!    one).
//!
//! `--only latency,redis,...` runs only the named sections (names:
//! latency, throughput, dedup, memory, h2load, coalescer, events, redis).
//!
//! The headline numbers are also written as JSON ([`results`]) to
//! `target/bench/gateway.json` and to `--save PATH`; `--compare
//! BASELINE.json` prints them beside a saved run's with the change in
//! percent. `DSG_BENCH_SMOKE=1` runs the same code paths with tiny counts in
//! seconds (CI). Nothing here asserts on time or fails on a number.
//! Progress goes to stderr, the tables to stdout. See benches/README.md.
//!
//! ```text
//! cargo bench --bench gateway -- --compare benches/baseline.json --save /tmp/run.json
//! ```

#[path = "gateway/child.rs"]
mod child;
#[path = "gateway/coalescer.rs"]
mod coalescer;
#[path = "gateway/cpu.rs"]
mod cpu;
#[path = "gateway/dedup.rs"]
mod dedup;
#[path = "gateway/events.rs"]
mod events;
#[path = "gateway/format.rs"]
mod format;
#[path = "gateway/h2load.rs"]
mod h2load;
#[path = "gateway/harness.rs"]
mod harness;
#[path = "gateway/latency.rs"]
mod latency;
#[path = "gateway/measure.rs"]
mod measure;
#[path = "gateway/memory.rs"]
mod memory;
#[path = "gateway/redis.rs"]
mod redis_backend;
#[path = "gateway/results.rs"]
mod results;
#[path = "gateway/throughput.rs"]
mod throughput;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use didit_sandbox::Sandbox;
use didit_share_gateway::proto::ImportSharedSessionResponse;
use prost::Message as _;

use child::{CHILD_ENV, PROXY_CHILD_ENV};

/// mimalloc when the `mimalloc` feature is on (the gateway binary's
/// default), so that the gateway measured here, in this process and in the
/// child, allocates as the binary does.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The allocator in use, for the header.
const ALLOCATOR: &str = if cfg!(feature = "mimalloc") {
    "mimalloc"
} else {
    "the system's (glibc)"
};
use harness::{EchoHandle, GatewayHandle, bench_config, import_request};
use results::Results;

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

/// What the command line asks for, after `cargo bench --bench gateway --`.
struct Args {
    /// Also write the run's JSON here.
    save: Option<PathBuf>,
    /// Print the run beside this saved run.
    compare: Option<PathBuf>,
    /// `--only a,b`: run only these sections (all when empty).
    only: Vec<String>,
}

impl Args {
    fn parse() -> Result<Self, String> {
        let mut args = std::env::args().skip(1);
        let mut parsed = Self {
            save: None,
            compare: None,
            only: Vec::new(),
        };
        while let Some(arg) = args.next() {
            let mut path = |flag: &str| {
                args.next()
                    .map(PathBuf::from)
                    .ok_or_else(|| format!("{flag} needs a path"))
            };
            match arg.as_str() {
                // cargo passes --bench to every bench target.
                "--bench" => {}
                "--save" => parsed.save = Some(path("--save")?),
                "--compare" => parsed.compare = Some(path("--compare")?),
                "--only" => {
                    let list = args.next().ok_or("--only needs a list of sections")?;
                    for name in list.split(',').filter(|n| !n.is_empty()) {
                        if !SECTIONS.contains(&name) {
                            return Err(format!(
                                "--only: unknown section {name:?}; one of {}",
                                SECTIONS.join(",")
                            ));
                        }
                        parsed.only.push(name.to_owned());
                    }
                }
                other => {
                    return Err(format!(
                        "unknown argument {other:?}; expected --save PATH, --compare BASELINE.json, --only SECTIONS"
                    ));
                }
            }
        }
        Ok(parsed)
    }
}

fn main() {
    if let Ok(upstream) = std::env::var(CHILD_ENV) {
        return child::serve(upstream);
    }
    if let Ok(upstream) = std::env::var(PROXY_CHILD_ENV) {
        return child::serve_bare_proxy(upstream);
    }
    if std::env::var_os(events::EVENTS_CHILD_ENV).is_some() {
        return events::serve_child();
    }
    let args = match Args::parse() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("benches/gateway: {message}");
            std::process::exit(2);
        }
    };
    // Read the baseline first: a bad path should not cost a whole run.
    let baseline = match args.compare.as_deref().map(results::load).transpose() {
        Ok(baseline) => baseline,
        Err(message) => {
            eprintln!("benches/gateway: --compare {message}");
            std::process::exit(2);
        }
    };
    let smoke = std::env::var("DSG_BENCH_SMOKE").is_ok_and(|v| !v.is_empty() && v != "0");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if std::env::var_os("DSG_BENCH_SERVE").is_some() {
        return runtime.block_on(serve_for_profiling());
    }
    let started = Instant::now();
    let mut results = Results::new(smoke);
    let report = runtime.block_on(run(Plan::new(smoke), &args.only, &mut results));
    print!("{report}");
    let run = results.finish();
    println!(
        "\nTotal benchmark time: {:.1} s; load average {} at the end.",
        started.elapsed().as_secs_f64(),
        run.machine.load_average_end,
    );
    for path in std::iter::once(results::default_path()).chain(args.save) {
        match results::save(&run, &path) {
            Ok(()) => eprintln!("results written to {}", path.display()),
            Err(message) => eprintln!("benches/gateway: could not write the results: {message}"),
        }
    }
    if let (Some(baseline), Some(path)) = (baseline, args.compare) {
        print!("\n{}", results::compare(&run, &baseline, &path));
    }
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

/// The section names `--only` takes, in run order.
const SECTIONS: [&str; 8] = [
    "latency",
    "throughput",
    "dedup",
    "memory",
    "h2load",
    "coalescer",
    "events",
    "redis",
];

async fn run(plan: Plan, only: &[String], results: &mut Results) -> String {
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
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
    // Sections skipped by --only leave these at zero for the later ones.
    let (mut single_import, mut own_64) = (Duration::ZERO, 0.0);
    if wanted("latency") {
        eprintln!("[1/9] latency");
        single_import = latency::run(&mut out, results, &plan, &env).await;
    }
    if wanted("throughput") {
        eprintln!("[2/9] throughput");
        own_64 = throughput::run(&mut out, results, &plan, &env).await;
    }
    if wanted("dedup") {
        eprintln!("[3/9] de-duplication");
        dedup::run(&mut out, results, &plan, &env, single_import).await;
    }
    if wanted("memory") {
        eprintln!("[4/9] memory and [5/9] CPU (gateway child process)");
        memory::run(&mut out, results, &plan, &env).await;
    }
    if wanted("h2load") {
        eprintln!("[6/9] h2load cross-check");
        h2load::run(&mut out, results, &plan, &env, own_64).await;
    }
    if wanted("coalescer") {
        eprintln!("[7/9] in-flight coalescer alone");
        coalescer::run(&mut out, results, &plan).await;
    }
    let redis_server = if wanted("events") || wanted("redis") {
        redis_backend::RedisServer::start()
    } else {
        None
    };
    let events_plan = events::EventsPlan {
        subscribers: if plan.smoke { 10 } else { 100 },
        per_second: 1_000,
        duration: if plan.smoke {
            Duration::from_millis(300)
        } else {
            Duration::from_secs(5)
        },
    };
    if wanted("events") {
        eprintln!("[8/9] session events");
        events::events(&mut out, results, &events_plan, redis_server.as_ref()).await;
    }
    if wanted("redis") {
        eprintln!("[9/9] Redis backend");
        redis_backend::run(&mut out, results, &plan, &env, redis_server.as_ref()).await;
    }
    drop(redis_server);

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
    let body = h2load::write_h2load_body(&token);
    for (name, addr) in [("gateway", gateway.grpc_addr), ("echo", echo.addr)] {
        let args = measure::h2load_args(addr, &body, 100_000, 4, 16);
        println!("{name}: h2load {}", format::shell_words(&args));
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

fn header(out: &mut String, plan: &Plan, env: &Env) {
    let (cores, cpu, kernel) = results::machine();
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
        "Machine: {cores} cores, {cpu}, Linux {kernel}, load average {} at the start. All on loopback; sections 1-3, 6 and 7 in this \
         process, one tokio runtime ({cores} workers) for sandbox, gateway, echo and clients; \
         sections 4-5 with the gateway alone in a child process. Sandbox latency injection off; \
         the gateway's per-tenant rate limit and max_concurrent_requests raised. Import \
         response: {} bytes encoded (raw_json {} bytes, 9 KYC check arrays as Struct). \
         Allocator: {ALLOCATOR}.\n",
        results::load_average(),
        env.response.encoded_len(),
        env.response.raw_json.len(),
    );
}
