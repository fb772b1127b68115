//! Section 9: the Redis backend, beside the memory backend, in one run.
//!
//! A `redis-server` of our own (a free loopback port, a temporary
//! directory, no persistence) and a second gateway with
//! `[state] backend = "redis"` against the same in-process sandbox as the
//! other sections; the memory gateway is the one they use. Measured:
//!
//! - a bare Redis `GET` round trip (redis crate, multiplexed connection) of
//!   the stored import record itself, the unit the other rows are read in;
//! - replay p50/p99, one call at a time, interleaved: bare `GET`, memory
//!   replay, Redis replay;
//! - replay throughput at 64 in flight, memory and Redis alternating, the
//!   ratio as the median of pairs, with our tonic client and, when
//!   installed, with h2load (4 connections × 16 streams);
//! - miss-path import p50/p99 (a fresh token each), interleaved memory and
//!   Redis; the added cost in bare `GET` round trips;
//! - the Redis commands each replay and each miss-path import sends,
//!   counted with `MONITOR` on a connection of our own, with an `ECHO`
//!   marker between calls: round trips are the gateway's commands, a
//!   `MULTI`…`EXEC` block counting as one, commands run inside a Lua
//!   script not counted (they are listed separately), health `PING`s left
//!   out. A non-atomic pipeline would count one per command (the store
//!   sends none today). `MONITOR` slows Redis, so it runs in a phase of
//!   its own, after the timed rows.
//!
//! Without `redis-server` on PATH the section prints one line and is
//! skipped.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use didit_share_gateway::proto::import_service_client::ImportServiceClient;
use didit_share_gateway::state::{Backend, StateConfig};
use tonic::transport::Channel;

use crate::format::{us, verdict};
use crate::h2load;
use crate::harness::{self, GatewayHandle, bench_config, import_request, with_tenant};
use crate::measure::{self, Samples};
use crate::results::{Better, Results};
use crate::throughput::{Clients, connections, replay_load};
use crate::{Env, Plan};

/// The key prefix of the benchmark's gateways in Redis.
const PREFIX: &str = "bench-state";

/// A running `redis-server`, killed on drop, and the state key the
/// gateways seal with.
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server on a free port, or says in one line why not.
    pub fn start() -> Option<Self> {
        if !installed() {
            eprintln!("Redis section skipped: redis-server not on PATH");
            return None;
        }
        // A port that was free a moment ago can be taken meanwhile: retry.
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temp dir for redis-server");
            let port = free_port();
            if let Some(child) = launch(port, &dir) {
                let key =
                    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
                std::fs::write(dir.path().join("state-key"), key).expect("write the state key");
                return Some(Self { child, port, dir });
            }
        }
        eprintln!("Redis section skipped: redis-server did not start on a free port in 5 tries");
        None
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's pid, for its RSS.
    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// `[state]` for a gateway on this server, keys under `prefix`.
    pub fn state_config(&self, prefix: &str) -> StateConfig {
        StateConfig {
            backend: Backend::Redis,
            redis_url: Some(self.url()),
            encryption_key_file: Some(self.key_file()),
            key_prefix: prefix.into(),
            ..StateConfig::default()
        }
    }

    fn key_file(&self) -> PathBuf {
        self.dir.path().join("state-key")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn installed() -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("redis-server").is_file())
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Spawns the server and waits (at most 10 s) until it answers PING.
fn launch(port: u16, dir: &tempfile::TempDir) -> Option<Child> {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .args(["--logfile", "redis.log"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server");
    let give_up = Instant::now() + Duration::from_secs(10);
    while Instant::now() < give_up {
        if let Ok(Some(_)) = child.try_wait() {
            return None; // most likely the port was taken
        }
        if ping(port) {
            return Some(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut line = String::new();
    stream.write_all(b"PING\r\n").is_ok()
        && BufReader::new(stream).read_line(&mut line).is_ok()
        && line == "+PONG\r\n"
}

/// A per-tenant rate for the Redis gateway that never throttles the
/// benchmark (100,000 calls/s). Not `u32::MAX` as in [`bench_config`]: the
/// Redis budget script works in whole microseconds, and before the store
/// charged such rates at 1 µs, a rate above 60,000,000 a minute made its
/// emission interval 0 µs and its `SET ... PX` 0 ms, which Redis refuses
/// ("invalid expire time"): every miss-path import failed with
/// `STATE_UNAVAILABLE`. Kept so the section runs on either version.
const REDIS_RATE_PER_MINUTE: u32 = 6_000_000;

/// The gateway's bench config with the Redis state of `server`.
pub fn redis_config(base: &str, server: &RedisServer) -> didit_share_gateway::config::Config {
    let mut config = bench_config(base);
    config.state = server.state_config(PREFIX);
    for tenant in &mut config.tenants {
        tenant.rate_limit_per_minute = REDIS_RATE_PER_MINUTE;
    }
    config
}

/// Imports `token` through `client`, retrying while the Redis gateway's
/// store is not yet up (it connects lazily); panics after 10 s.
async fn first_import(client: &ImportServiceClient<Channel>, token: &str) -> bool {
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        match client
            .clone()
            .import_shared_session(with_tenant(import_request(token)))
            .await
        {
            Ok(answer) => return answer.get_ref().replayed,
            Err(status) if Instant::now() < give_up => {
                eprintln!("waiting for the Redis gateway: {}", status.message());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("import through the Redis gateway: {status:?}"),
        }
    }
}

/// The stored import record's key (the only one so far) and its sealed
/// length.
async fn record_key(conn: &mut redis::aio::MultiplexedConnection) -> (String, usize) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{PREFIX}:record:*"))
        .query_async(conn)
        .await
        .expect("KEYS");
    let mut best = (String::new(), 0);
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(conn)
            .await
            .expect("TYPE");
        if kind != "string" {
            continue;
        }
        let len: usize = redis::cmd("STRLEN")
            .arg(&key)
            .query_async(conn)
            .await
            .expect("STRLEN");
        if len > best.1 {
            best = (key, len);
        }
    }
    assert!(best.1 > 0, "the import record is in Redis");
    best
}

/// One timed bare `GET`.
async fn bare_get(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Duration {
    let t = Instant::now();
    let value: Option<Vec<u8>> = redis::cmd("GET")
        .arg(key)
        .query_async(conn)
        .await
        .expect("bare GET");
    let elapsed = t.elapsed();
    assert!(value.is_some(), "the record is still there");
    elapsed
}

/// One timed import; panics on an error or a wrong replay flag.
async fn timed_import(
    client: &ImportServiceClient<Channel>,
    token: &str,
    replay: bool,
) -> Duration {
    let request = import_request(token);
    let t = Instant::now();
    let answer = harness::gateway_import(client, &request).await;
    let elapsed = t.elapsed();
    assert_eq!(answer.replayed, replay, "replayed flag");
    elapsed
}

/// What `MONITOR` saw between two markers.
#[derive(Default, Debug)]
struct Commands {
    /// The gateway's round trips (a `MULTI`…`EXEC` block is one).
    round_trips: usize,
    /// Every command executed, those inside scripts and transactions too.
    executed: usize,
    /// The round trips in order, e.g. `GET`, `SET`, `MULTI(SET DEL PUBLISH)`.
    sequence: Vec<String>,
}

/// A `MONITOR` connection read by a thread of its own.
struct Monitor {
    lines: mpsc::Receiver<String>,
    stream: TcpStream,
}

impl Monitor {
    fn start(port: u16) -> Self {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect MONITOR");
        stream.write_all(b"MONITOR\r\n").expect("send MONITOR");
        let mut reader = BufReader::new(stream.try_clone().expect("clone MONITOR socket"));
        let mut ok = String::new();
        reader.read_line(&mut ok).expect("MONITOR answer");
        assert_eq!(ok, "+OK\r\n", "MONITOR");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { lines, stream }
    }

    fn stop(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Splits `MONITOR` lines at `ECHO marker` commands and counts what the
/// gateway sent between two markers.
fn count_between_markers(lines: &[String], marker: &str) -> Vec<Commands> {
    let mut parts = Vec::new();
    let mut current: Option<Commands> = None;
    let mut in_multi: Option<Vec<String>> = None;
    for line in lines {
        // +1796092208.433332 [0 127.0.0.1:53328] "SET" "a" "1"
        let Some((source, rest)) = line.split_once(" [").and_then(|(_, r)| r.split_once("] "))
        else {
            continue;
        };
        let name = rest
            .split('"')
            .nth(1)
            .unwrap_or_default()
            .to_ascii_uppercase();
        if name == "ECHO" && rest.contains(marker) {
            parts.extend(current.take());
            current = Some(Commands::default());
            continue;
        }
        let Some(part) = current.as_mut() else {
            continue;
        };
        if name == "PING" {
            continue; // the store's health check, not the call's
        }
        part.executed += 1;
        if source.ends_with(" lua") {
            if let Some(last) = part.sequence.last_mut() {
                last.push_str(&format!(" {name}"));
            }
            continue;
        }
        if let Some(inner) = in_multi.as_mut() {
            if name == "EXEC" {
                part.round_trips += 1;
                part.sequence.push(format!("MULTI({})", inner.join(" ")));
                in_multi = None;
            } else {
                inner.push(name);
            }
        } else if name == "MULTI" {
            in_multi = Some(Vec::new());
        } else {
            part.round_trips += 1;
            part.sequence.push(if name == "EVALSHA" || name == "EVAL" {
                format!("{name}:")
            } else {
                name
            });
        }
    }
    // The last part ends at the closing marker only.
    parts
}

/// Counts the Redis commands of `calls` sequential calls made by `call`,
/// with an `ECHO` marker before each and after the last.
async fn count_commands<F, Fut>(
    port: u16,
    conn: &mut redis::aio::MultiplexedConnection,
    calls: usize,
    mut call: F,
) -> Vec<Commands>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let marker = format!("dsg-bench-marker-{}", rand::random::<u32>());
    let monitor = Monitor::start(port);
    for i in 0..=calls {
        let _: String = redis::cmd("ECHO")
            .arg(&marker)
            .query_async(conn)
            .await
            .expect("ECHO marker");
        if i < calls {
            call(i).await;
        }
    }
    // MONITOR lines trail the commands a little.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines: Vec<String> = monitor.lines.try_iter().collect();
    monitor.stop();
    count_between_markers(&lines, &marker)
}

/// Mean round trips and commands per call, and the most common sequence.
fn summarize(parts: &[Commands]) -> (f64, f64, String) {
    let n = parts.len().max(1) as f64;
    let trips = parts.iter().map(|p| p.round_trips).sum::<usize>() as f64 / n;
    let executed = parts.iter().map(|p| p.executed).sum::<usize>() as f64 / n;
    let mut sequences: Vec<String> = parts
        .iter()
        .map(|p| {
            p.sequence
                .iter()
                .map(|s| s.trim_end_matches(':').to_owned())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect();
    sequences.sort();
    let most = sequences
        .chunk_by(|a, b| a == b)
        .max_by_key(|run| run.len())
        .and_then(|run| run.first().cloned())
        .unwrap_or_default();
    (trips, executed, most)
}

/// How much of the section to do.
struct Counts {
    replays: usize,
    misses: usize,
    warmup: usize,
    counted: usize,
}

/// Section 9.
pub async fn run(
    out: &mut String,
    results: &mut Results,
    plan: &Plan,
    env: &Env,
    server: Option<&RedisServer>,
) {
    let _ = writeln!(out, "### 9. Redis backend beside the memory backend\n");
    let Some(server) = server else {
        let _ = writeln!(out, "Skipped: redis-server not on PATH.\n");
        return;
    };
    let counts = if plan.smoke {
        Counts {
            replays: 40,
            misses: 20,
            warmup: 5,
            counted: 5,
        }
    } else {
        Counts {
            replays: 3_000,
            misses: 1_000,
            warmup: 100,
            counted: 50,
        }
    };
    let redis_gateway = GatewayHandle::start(&redis_config(&env.base, server)).await;
    let via_memory = harness::connect(env.gateway.grpc_addr).await;
    let via_redis = harness::connect(redis_gateway.grpc_addr).await;
    let redis_token = harness::mint_tokens(&env.http, &env.base, 1)
        .await
        .remove(0);
    assert!(
        !first_import(&via_redis, &redis_token).await,
        "first import misses"
    );
    let bare = redis::Client::open(server.url()).expect("redis URL");
    let mut conn = bare
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis-server");
    let (key, record_bytes) = record_key(&mut conn).await;

    // Replays, one at a time, interleaved with bare GETs.
    let (mut get, mut mem, mut red) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..counts.replays + counts.warmup {
        let g = bare_get(&mut conn, &key).await;
        let m = timed_import(&via_memory, &env.replay_token, true).await;
        let r = timed_import(&via_redis, &redis_token, true).await;
        if i >= counts.warmup {
            get.push(g);
            mem.push(m);
            red.push(r);
        }
    }
    let (get, mem, red) = (Samples::new(get), Samples::new(mem), Samples::new(red));
    let get_p50 = get.pct(0.5).as_secs_f64();

    // Replay throughput at 64 in flight, alternating.
    let level = 64;
    let conns = connections(level);
    let memory_clients: Clients =
        Arc::new(harness::connect_many(env.gateway.grpc_addr, conns).await);
    let redis_clients: Clients =
        Arc::new(harness::connect_many(redis_gateway.grpc_addr, conns).await);
    let warm = plan.round / 3;
    replay_load(&memory_clients, &env.replay_token, level, warm, true).await;
    replay_load(&redis_clients, &redis_token, level, warm, true).await;
    let (mut m_loads, mut r_loads, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..plan.rounds {
        let m = replay_load(&memory_clients, &env.replay_token, level, plan.round, true).await;
        let r = replay_load(&redis_clients, &redis_token, level, plan.round, true).await;
        ratios.push(r.per_second() / m.per_second().max(1e-9));
        m_loads.push(m);
        r_loads.push(r);
    }
    let failed: u64 = m_loads.iter().chain(&r_loads).map(|l| l.errors).sum();
    let (m_load, r_load) = (measure::median(m_loads), measure::median(r_loads));
    let throughput_ratio = measure::median_f64(ratios);

    // The same with h2load, which drives the servers harder than our
    // client (section 2's notes): alternating pairs, as above.
    let h2 = h2load_pairs(plan, env, &redis_gateway, &redis_token).await;

    // Miss path: a fresh token per import, interleaved.
    let n = counts.misses + counts.warmup;
    let memory_tokens = harness::mint_tokens(&env.http, &env.base, n).await;
    let redis_tokens = harness::mint_tokens(&env.http, &env.base, n).await;
    let (mut mem_miss, mut red_miss) = (Vec::new(), Vec::new());
    for i in 0..n {
        let m = timed_import(&via_memory, &memory_tokens[i], false).await;
        let r = timed_import(&via_redis, &redis_tokens[i], false).await;
        if i >= counts.warmup {
            mem_miss.push(m);
            red_miss.push(r);
        }
    }
    let (mem_miss, red_miss) = (Samples::new(mem_miss), Samples::new(red_miss));

    // The commands per call, MONITOR on (not timed).
    let replays = count_commands(server.port, &mut conn, counts.counted, |_| {
        let client = via_redis.clone();
        let token = redis_token.clone();
        async move {
            timed_import(&client, &token, true).await;
        }
    })
    .await;
    let count_tokens = harness::mint_tokens(&env.http, &env.base, counts.counted).await;
    let misses = count_commands(server.port, &mut conn, counts.counted, |i| {
        let client = via_redis.clone();
        let token = count_tokens[i].clone();
        async move {
            timed_import(&client, &token, false).await;
        }
    })
    .await;
    let (replay_trips, replay_cmds, replay_seq) = summarize(&replays);
    let (miss_trips, miss_cmds, miss_seq) = summarize(&misses);
    redis_gateway.stop().await;

    let secs = |d: Duration| d.as_secs_f64();
    let replay_added = secs(red.pct(0.5)) - secs(mem.pct(0.5));
    let miss_added = secs(red_miss.pct(0.5)) - secs(mem_miss.pct(0.5));
    let in_gets = |added: f64| added / get_p50.max(1e-9);
    let _ = writeln!(
        out,
        "One redis-server {} (loopback, no persistence) and a second gateway with \
         `[state] backend = \"redis\"` on the same sandbox; the memory gateway is the one of \
         sections 1-3. The bare `GET` reads the sealed import record ({record_bytes} bytes) on a \
         multiplexed connection of the redis crate. Latency rows: {} interleaved samples (bare \
         `GET`, memory replay, Redis replay), then {} interleaved miss-path imports (fresh token \
         each). Throughput: median of {} alternating runs of {:.1} s at {level} in flight \
         ({conns} connections). Commands: `MONITOR` during {} more calls of each kind, after \
         the timed rows; a round trip is one command of the gateway, a `MULTI`…`EXEC` block \
         counting as one; commands run inside a Lua script are counted in \"executed\" only; \
         health `PING`s are left out.\n",
        redis_version(),
        get.len(),
        mem_miss.len(),
        plan.rounds,
        plan.round.as_secs_f64(),
        counts.counted,
    );
    let _ = writeln!(
        out,
        "| row | memory | Redis | Redis − memory | in bare `GET` round trips |\n| --- | ---: | ---: | ---: | ---: |"
    );
    let _ = writeln!(
        out,
        "| bare Redis `GET` round trip p50 / p99 | | {} / {} | | 1 |",
        us(get.pct(0.5)),
        us(get.pct(0.99)),
    );
    let _ = writeln!(
        out,
        "| replay p50 | {} | {} | {:.0} µs | {:.2} |",
        us(mem.pct(0.5)),
        us(red.pct(0.5)),
        replay_added * 1e6,
        in_gets(replay_added),
    );
    let _ = writeln!(
        out,
        "| replay p99 | {} | {} | {:.0} µs | |",
        us(mem.pct(0.99)),
        us(red.pct(0.99)),
        (secs(red.pct(0.99)) - secs(mem.pct(0.99))) * 1e6,
    );
    let _ = writeln!(
        out,
        "| replay throughput at {level} in flight (calls/s) | {:.0} | {:.0} | ratio {throughput_ratio:.2}x (median of pairs) | |",
        m_load.per_second(),
        r_load.per_second(),
    );
    let _ = writeln!(
        out,
        "| miss-path import p50 | {} | {} | {:.0} µs | {:.2} |",
        us(mem_miss.pct(0.5)),
        us(red_miss.pct(0.5)),
        miss_added * 1e6,
        in_gets(miss_added),
    );
    let _ = writeln!(
        out,
        "| miss-path import p99 | {} | {} | {:.0} µs | |",
        us(mem_miss.pct(0.99)),
        us(red_miss.pct(0.99)),
        (secs(red_miss.pct(0.99)) - secs(mem_miss.pct(0.99))) * 1e6,
    );
    let _ = writeln!(
        out,
        "| Redis round trips per replay (commands executed) | 0 | {replay_trips:.2} ({replay_cmds:.2}) | | |"
    );
    let _ = writeln!(
        out,
        "| Redis round trips per miss-path import (commands executed) | 0 | {miss_trips:.2} ({miss_cmds:.2}) | | |"
    );
    if let Some(h2) = &h2 {
        let _ = writeln!(
            out,
            "| replay throughput at {level} in flight, h2load 4×16 (calls/s; replays counted / requests) | {:.0} ({}/{}) | {:.0} ({}/{}) | ratio {:.2}x (median of {} pairs) | |",
            h2.memory,
            h2.memory_replays,
            h2.requests,
            h2.redis,
            h2.redis_replays,
            h2.requests,
            h2.ratio,
            h2.pairs,
        );
    }
    if failed > 0 {
        let _ = writeln!(out, "\n{failed} failed calls in the throughput runs!");
    }
    let _ = writeln!(
        out,
        "\nA replay sends: {replay_seq}. A miss-path import sends: {miss_seq} \
         (inside a script: the commands after the colon).\n"
    );
    let _ = writeln!(
        out,
        "| goal | measured | verdict |\n| --- | --- | --- |\n\
         | a replay costs at most one Redis round trip more than in memory | {replay_trips:.2} round trips; p50 +{:.0} µs = {:.2}x a bare `GET` | {} |\n\
         | the miss path costs at most two Redis round trips | {miss_trips:.2} round trips; p50 +{:.0} µs = {:.2}x a bare `GET` | {} |\n\
         | replay throughput with Redis ≥ 0.6x memory at {level} in flight | {throughput_ratio:.2}x (our client){} | {} |\n",
        replay_added * 1e6,
        in_gets(replay_added),
        verdict(replay_trips <= 1.0),
        miss_added * 1e6,
        in_gets(miss_added),
        verdict(miss_trips <= 2.0),
        h2.as_ref()
            .map_or_else(String::new, |h2| format!("; {:.2}x (h2load)", h2.ratio)),
        verdict(throughput_ratio >= 0.6 && h2.as_ref().is_none_or(|h2| h2.ratio >= 0.6)),
    );

    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    results.record("redis.get.p50", micros(get.pct(0.5)), "us", Better::Lower);
    results.record(
        "redis.replay.memory.p50",
        micros(mem.pct(0.5)),
        "us",
        Better::Lower,
    );
    results.record(
        "redis.replay.redis.p50",
        micros(red.pct(0.5)),
        "us",
        Better::Lower,
    );
    results.record(
        "redis.replay.added_in_gets.p50",
        in_gets(replay_added),
        "x",
        Better::Lower,
    );
    results.record(
        "redis.throughput.64.memory",
        m_load.per_second(),
        "calls/s",
        Better::Higher,
    );
    results.record(
        "redis.throughput.64.redis",
        r_load.per_second(),
        "calls/s",
        Better::Higher,
    );
    results.record(
        "redis.throughput.64.ratio",
        throughput_ratio,
        "x",
        Better::Higher,
    );
    results.record(
        "redis.miss.memory.p50",
        micros(mem_miss.pct(0.5)),
        "us",
        Better::Lower,
    );
    results.record(
        "redis.miss.redis.p50",
        micros(red_miss.pct(0.5)),
        "us",
        Better::Lower,
    );
    results.record(
        "redis.miss.added_in_gets.p50",
        in_gets(miss_added),
        "x",
        Better::Lower,
    );
    results.record(
        "redis.replay.round_trips",
        replay_trips,
        "calls",
        Better::Lower,
    );
    results.record("redis.miss.round_trips", miss_trips, "calls", Better::Lower);
    if let Some(h2) = &h2 {
        results.record(
            "redis.h2load.64.memory",
            h2.memory,
            "calls/s",
            Better::Higher,
        );
        results.record("redis.h2load.64.redis", h2.redis, "calls/s", Better::Higher);
        results.record("redis.h2load.64.ratio", h2.ratio, "x", Better::Higher);
    }
}

/// h2load replay throughput, memory and Redis gateways.
struct H2Pairs {
    memory: f64,
    redis: f64,
    /// Median of the pairs' Redis ÷ memory.
    ratio: f64,
    pairs: usize,
    requests: usize,
    /// Replays the gateways counted in their last run (of `requests`).
    memory_replays: u64,
    redis_replays: u64,
}

/// Alternating h2load runs (4 connections × 16 streams) against the two
/// gateways' replay paths; `None` without h2load.
async fn h2load_pairs(
    plan: &Plan,
    env: &Env,
    redis_gateway: &GatewayHandle,
    redis_token: &str,
) -> Option<H2Pairs> {
    if !measure::have_h2load() {
        return None;
    }
    let (pairs, requests) = if plan.smoke {
        (1, plan.h2load_requests)
    } else {
        (3, plan.h2load_requests / 2)
    };
    let (mut memory, mut redis, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut memory_replays, mut redis_replays) = (0, 0);
    for _ in 0..pairs {
        // One body file for both: written before each run.
        let body = h2load::write_h2load_body(&env.replay_token);
        let before = env.gateway.state.metrics.replays.get();
        let m = measure::h2load(&measure::h2load_args(
            env.gateway.grpc_addr,
            &body,
            requests,
            4,
            16,
        ))
        .await?;
        memory_replays = env.gateway.state.metrics.replays.get() - before;
        let body = h2load::write_h2load_body(redis_token);
        let before = redis_gateway.state.metrics.replays.get();
        let r = measure::h2load(&measure::h2load_args(
            redis_gateway.grpc_addr,
            &body,
            requests,
            4,
            16,
        ))
        .await?;
        redis_replays = redis_gateway.state.metrics.replays.get() - before;
        ratios.push(r.per_second / m.per_second.max(1e-9));
        memory.push(m.per_second);
        redis.push(r.per_second);
    }
    Some(H2Pairs {
        memory: measure::median_f64(memory),
        redis: measure::median_f64(redis),
        ratio: measure::median_f64(ratios),
        pairs,
        requests,
        memory_replays,
        redis_replays,
    })
}

/// `v=7.0.15` from `redis-server --version`, or "".
fn redis_version() -> String {
    Command::new("redis-server")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| {
            v.split_whitespace()
                .find_map(|w| w.strip_prefix("v=").map(str::to_owned))
        })
        .unwrap_or_default()
}
