//! Section 8: session events. A gateway with its webhook port,
//! `subscribers` idle `WatchSessionEvents` streams of one tenant (the
//! memory they cost, per stream, from this process's RSS and, with Redis,
//! the server's), then signed webhooks posted to the port at a fixed rate:
//! the delay from the POST being sent to each subscriber receiving the
//! event, p50 and p99, beside the POST's own HTTP round trip (sent to
//! `200` received). Run twice side by side: with the memory event log and,
//! when `redis-server` is installed, with the Redis state (whose event log
//! is the Redis Streams one). The gateway's own memory per idle subscriber
//! (memory log) is measured once more with the gateway alone in a child
//! process (this binary re-run with [`EVENTS_CHILD_ENV`]), since in one
//! process the client's end of each stream counts too.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use didit_share_gateway::app::{self, StartOptions};
use didit_share_gateway::config::Config;
use didit_share_gateway::proto::session_service_client::SessionServiceClient;
use didit_share_gateway::proto::{SessionEvent, WatchSessionEventsRequest};
use didit_share_gateway::state::StateConfig;
use didit_share_gateway::webhooks::signature::sign;
use didit_share_gateway::webhooks::{WebhookSecret, WebhookSecretSource};
use tonic::transport::Channel;

use crate::format::verdict;
use crate::measure::{Samples, rss};
use crate::redis_backend::RedisServer;
use crate::results::{Better, Results};

/// Subscribers, events per second and how long the sender runs.
pub struct EventsPlan {
    pub subscribers: usize,
    pub per_second: u64,
    pub duration: Duration,
}

/// What one run measured.
struct Measured {
    total: usize,
    rate: f64,
    delivery: Samples,
    post: Samples,
    refused: usize,
    short: usize,
    /// This process's RSS delta per idle subscriber (client and server ends).
    per_subscriber: u64,
    /// This process's heap in use (glibc `mallinfo2`) per idle subscriber,
    /// client and server ends; `None` off glibc.
    heap_per_subscriber: Option<u64>,
    /// redis-server's RSS delta per idle subscriber, with Redis.
    redis_per_subscriber: Option<u64>,
}

/// Runs the section (memory, then Redis when `redis` is given) and writes
/// its table to `out`.
pub async fn events(
    out: &mut String,
    results: &mut Results,
    plan: &EventsPlan,
    redis: Option<&RedisServer>,
) {
    let memory = run_once(plan, None).await;
    let alone = gateway_alone_per_subscriber(plan).await;
    let redis = match redis {
        Some(server) => Some(run_once(plan, Some(server)).await),
        None => None,
    };
    let _ = writeln!(
        out,
        "### 8. Session events (webhook port to WatchSessionEvents)\n\n\
         {} subscribers of one tenant, {} signed webhooks posted at {:.0}/s (target {}/s) over \
         {:.1} s per run; the memory event log, then {}. The webhook's HTTP round trip is the \
         POST as its sender sees it (sent to `200` received, reqwest on loopback).\n",
        plan.subscribers,
        memory.total,
        memory.rate,
        plan.per_second,
        plan.duration.as_secs_f64(),
        if redis.is_some() {
            "the Redis state (Redis Streams event log, sealed) on the section 9 redis-server"
        } else {
            "no Redis run (redis-server not on PATH)"
        },
    );
    let _ = writeln!(out, "| metric | memory | Redis |\n| --- | ---: | ---: |");
    let ms = |s: &Samples, p: f64| format!("{:.2} ms", s.pct(p).as_secs_f64() * 1e3);
    let row = |out: &mut String, name: &str, f: &dyn Fn(&Measured) -> String| {
        let _ = writeln!(
            out,
            "| {name} | {} | {} |",
            f(&memory),
            redis.as_ref().map_or_else(|| "—".to_owned(), f)
        );
    };
    row(out, "webhook to subscriber p50", &|m: &Measured| {
        ms(&m.delivery, 0.5)
    });
    row(out, "webhook to subscriber p99", &|m: &Measured| {
        ms(&m.delivery, 0.99)
    });
    row(out, "webhook POST round trip p50", &|m: &Measured| {
        ms(&m.post, 0.5)
    });
    row(out, "webhook POST round trip p99", &|m: &Measured| {
        ms(&m.post, 0.99)
    });
    row(out, "posting rate reached", &|m: &Measured| {
        format!("{:.0}/s", m.rate)
    });
    row(out, "deliveries measured", &|m: &Measured| {
        m.delivery.len().to_string()
    });
    row(out, "posts not answered 200", &|m: &Measured| {
        m.refused.to_string()
    });
    row(out, "subscribers that missed events", &|m: &Measured| {
        m.short.to_string()
    });
    let kib = |b: u64| format!("{:.1} KiB", b as f64 / 1024.0);
    let _ = writeln!(
        out,
        "| heap per idle subscriber, gateway alone (child process; glibc mallinfo2 in-use delta / n) | {} | — |",
        alone
            .and_then(|(_, heap)| heap)
            .map_or_else(|| "—".to_owned(), kib)
    );
    let _ = writeln!(
        out,
        "| RSS per idle subscriber, gateway alone (child process; delta / n) | {} | — |",
        alone.map_or_else(|| "—".to_owned(), |(rss, _)| kib(rss))
    );
    row(
        out,
        "heap per idle subscriber, this process (client and server ends; glibc mallinfo2 in-use delta / n)",
        &|m: &Measured| {
            m.heap_per_subscriber.map_or_else(
                || "—".to_owned(),
                |b| format!("{:.1} KiB", b as f64 / 1024.0),
            )
        },
    );
    row(
        out,
        "memory per idle subscriber, this process (client and server ends; RSS delta / n)",
        &|m: &Measured| format!("{:.1} KiB", m.per_subscriber as f64 / 1024.0),
    );
    row(
        out,
        "memory per idle subscriber, redis-server (RSS delta / n)",
        &|m: &Measured| {
            m.redis_per_subscriber.map_or_else(
                || "—".to_owned(),
                |b| format!("{:.1} KiB", b as f64 / 1024.0),
            )
        },
    );
    let p99_ms = memory.delivery.pct(0.99).as_secs_f64() * 1e3;
    // The gateway alone when the child reported it, else both ends: the
    // heap delta when glibc reports it (an RSS delta is absorbed by heap
    // that earlier sections freed and reads 0).
    let (per, whose) = match alone {
        Some((rss, heap)) => (heap.unwrap_or(rss), "the gateway alone"),
        None => (
            memory.heap_per_subscriber.unwrap_or(memory.per_subscriber),
            "client and server ends together",
        ),
    };
    let kib = per as f64 / 1024.0;
    let _ = writeln!(
        out,
        "\nGoals (memory mode): p99 under 10 ms on loopback: {} ({p99_ms:.2} ms); under 1 KiB per \
         idle subscriber: {} ({kib:.1} KiB, {whose}).\n",
        verdict(p99_ms < 10.0),
        verdict(kib < 1.0),
    );
    if let Some((rss, heap)) = alone {
        results.record(
            "events.memory.idle_subscriber.gateway_alone",
            heap.unwrap_or(rss) as f64 / 1024.0,
            "KiB",
            Better::Lower,
        );
    }
    for (backend, m) in
        std::iter::once(("memory", &memory)).chain(redis.as_ref().map(|r| ("redis", r)))
    {
        for (label, p) in [("p50", 0.5), ("p99", 0.99)] {
            results.record(
                format!("events.{backend}.delivery.{label}"),
                m.delivery.pct(p).as_secs_f64() * 1e3,
                "ms",
                Better::Lower,
            );
            results.record(
                format!("events.{backend}.post.{label}"),
                m.post.pct(p).as_secs_f64() * 1e3,
                "ms",
                Better::Lower,
            );
        }
        results.record(
            format!("events.{backend}.idle_subscriber"),
            m.heap_per_subscriber.unwrap_or(m.per_subscriber) as f64 / 1024.0,
            "KiB",
            Better::Lower,
        );
    }
}

/// The events gateway's config (memory state, or the Redis state of
/// `redis` under a fresh prefix) and service-x's webhook secret.
fn events_config(redis: Option<&RedisServer>) -> (Config, WebhookSecret) {
    let loopback = "127.0.0.1:0".parse().expect("loopback");
    // The upstream is never called here.
    let mut config = app::sandbox_config("http://127.0.0.1:9");
    config.server.listen = loopback;
    config.server.admin_listen = loopback;
    config.server.max_concurrent_requests = 1_000_000;
    for tenant in &mut config.tenants {
        tenant.rate_limit_per_minute = u32::MAX;
    }
    if let Some(server) = redis {
        // A prefix of its own per run: a fresh stream.
        let prefix = format!("bench-events-{}", rand::random::<u32>());
        config.state = server.state_config(&prefix);
    } else {
        config.state = StateConfig::default();
    }
    app::sandbox_webhooks(&mut config, loopback);
    if let Some(webhooks) = &mut config.webhooks {
        webhooks.subscriber_buffer = 65_536;
    }
    let secret = config
        .tenants
        .iter()
        .find(|t| t.id == "service-x")
        .and_then(|t| match &t.webhook_secret {
            Some(WebhookSecretSource::Inline(secret)) => Some(secret.clone()),
            _ => None,
        })
        .expect("service-x has a webhook secret");
    (config, secret)
}

/// One run: a gateway with the memory state, or the Redis state of `redis`.
async fn run_once(plan: &EventsPlan, redis: Option<&RedisServer>) -> Measured {
    let (config, secret) = events_config(redis);
    let running = app::start(config, StartOptions::default())
        .await
        .expect("gateway");
    let hooks = running.webhooks_addr.expect("webhook port");
    let channel = Channel::from_shared(format!("http://{}", running.grpc_addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    // The Redis store connects lazily: let it come up before counting.
    if redis.is_some() {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // A few streams first, not counted: the first ones pay for one-time
    // allocations (connection buffers, the tenant's fan-out) that are no
    // subscriber's own cost.
    let mut warmup = Vec::new();
    for _ in 0..plan.subscribers.min(5) {
        warmup.push(watch(&channel).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Idle subscribers, and what they cost.
    let before = rss("self").rss;
    let heap_before = heap_in_use();
    let redis_before = redis.map(|s| rss(&s.pid()).rss);
    let mut streams = Vec::with_capacity(plan.subscribers);
    for _ in 0..plan.subscribers {
        streams.push(watch(&channel).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let n = plan.subscribers.max(1) as u64;
    let per_subscriber = rss("self").rss.saturating_sub(before) / n;
    let heap_per_subscriber = heap_before
        .zip(heap_in_use())
        .map(|(before, after)| after.saturating_sub(before) / n);
    let redis_per_subscriber = redis
        .zip(redis_before)
        .map(|(s, before)| rss(&s.pid()).rss.saturating_sub(before) / n);
    drop(warmup);
    // The load: `total` events at `per_second`, each sent at a known instant.
    let total = usize::try_from(plan.per_second * plan.duration.as_millis() as u64 / 1000)
        .unwrap_or(0)
        .max(1);
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let receivers: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            let sent = Arc::clone(&sent);
            tokio::spawn(async move {
                let mut delays = Vec::with_capacity(total);
                while delays.len() < total {
                    let Ok(Some(event)) = stream.message().await else {
                        break;
                    };
                    let at = sent
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get(&event.session_id)
                        .copied();
                    if let Some(at) = at {
                        delays.push(at.elapsed());
                    }
                }
                delays
            })
        })
        .collect();
    let http = reqwest::Client::new();
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / plan.per_second));
    let mut posts = Vec::with_capacity(total);
    let started = Instant::now();
    for i in 0..total {
        tick.tick().await;
        posts.push(tokio::spawn(post(
            http.clone(),
            hooks,
            secret.clone(),
            format!("bench-{i}"),
            Arc::clone(&sent),
        )));
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let mut refused = 0;
    let mut round_trips = Vec::with_capacity(total);
    for post in posts {
        match post.await.ok().flatten() {
            Some(took) => round_trips.push(took),
            None => refused += 1,
        }
    }
    let mut delays = Vec::new();
    let mut short = 0;
    for receiver in receivers {
        let got = tokio::time::timeout(Duration::from_secs(30), receiver)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        if got.len() < total {
            short += 1;
        }
        delays.extend(got);
    }
    drop(channel);
    let _ = running.shutdown().await;
    Measured {
        total,
        rate,
        delivery: Samples::new(delays),
        post: Samples::new(round_trips),
        refused,
        short,
        per_subscriber,
        heap_per_subscriber,
        redis_per_subscriber,
    }
}

/// Set in the environment of the events gateway child (memory state).
pub const EVENTS_CHILD_ENV: &str = "DSG_BENCH_EVENTS_CHILD";

/// The child's side: an events gateway alone in this process, printing
/// `READY <grpc>`, then answering each `HEAP` line on stdin with its heap
/// in use in bytes; stops when stdin closes.
pub fn serve_child() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        didit_share_gateway::install_crypto_provider();
        let (config, _) = events_config(None);
        let running = app::start(config, StartOptions::default())
            .await
            .expect("events gateway child");
        println!("READY {}", running.grpc_addr);
        std::io::stdout().flush().expect("stdout");
        let _ = tokio::task::spawn_blocking(|| {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if line.trim() == "HEAP" {
                    println!("{}", heap_in_use().unwrap_or(0));
                    let _ = std::io::stdout().flush();
                }
            }
        })
        .await;
        let _ = running.shutdown().await;
    });
}

/// The gateway's own cost per idle subscriber: (RSS, heap) deltas per
/// stream of an events gateway alone in a child process, the subscribers
/// in this one. `None` if the child does not start.
async fn gateway_alone_per_subscriber(plan: &EventsPlan) -> Option<(u64, Option<u64>)> {
    let exe = std::env::current_exe().ok()?;
    let mut child = Command::new(exe)
        .env(EVENTS_CHILD_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .ok()?;
    let pid = child.id().to_string();
    let mut stdin = child.stdin.take()?;
    let mut stdout = BufReader::new(child.stdout.take()?);
    let mut line = String::new();
    stdout.read_line(&mut line).ok()?;
    let addr = line.strip_prefix("READY ")?.trim().to_owned();
    // Tiny blocking pipe reads: the child answers at once.
    let mut heap = move || -> Option<u64> {
        stdin.write_all(b"HEAP\n").ok()?;
        stdin.flush().ok()?;
        let mut answer = String::new();
        stdout.read_line(&mut answer).ok()?;
        answer.trim().parse::<u64>().ok().filter(|b| *b > 0)
    };
    let channel = Channel::from_shared(format!("http://{addr}"))
        .ok()?
        .connect()
        .await
        .ok()?;
    let mut warmup = Vec::new();
    for _ in 0..plan.subscribers.min(5) {
        warmup.push(watch(&channel).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (rss_before, heap_before) = (rss(&pid).rss, heap());
    let mut streams = Vec::with_capacity(plan.subscribers);
    for _ in 0..plan.subscribers {
        streams.push(watch(&channel).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let n = plan.subscribers.max(1) as u64;
    let rss_per = rss(&pid).rss.saturating_sub(rss_before) / n;
    let heap_per = heap_before
        .zip(heap())
        .map(|(before, after)| after.saturating_sub(before) / n);
    // Closing stdin (dropped with `heap`) stops the child.
    drop((streams, warmup, channel, heap));
    let _ = child.wait();
    Some((rss_per, heap_per))
}

/// glibc's `struct mallinfo2` (all fields `size_t`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[repr(C)]
#[derive(Default)]
struct MallInfo2 {
    arena: usize,
    ordblks: usize,
    smblks: usize,
    hblks: usize,
    hblkhd: usize,
    usmblks: usize,
    fsmblks: usize,
    uordblks: usize,
    fordblks: usize,
    keepcost: usize,
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe extern "C" {
    fn mallinfo2() -> MallInfo2;
}

/// Bytes of heap in use in this process, all arenas: allocated chunks
/// (`uordblks`) plus mmapped ones (`hblkhd`). Unlike RSS it does not hide
/// new allocations in heap freed earlier.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap_in_use() -> Option<u64> {
    // SAFETY: mallinfo2 (glibc ≥ 2.33) takes no arguments and returns a
    // plain struct by value.
    let info = unsafe { mallinfo2() };
    u64::try_from(info.uordblks + info.hblkhd).ok()
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn heap_in_use() -> Option<u64> {
    None
}

/// One `WatchSessionEvents` stream of service-x.
async fn watch(channel: &Channel) -> tonic::Streaming<SessionEvent> {
    let mut client = SessionServiceClient::new(channel.clone());
    let mut request = tonic::Request::new(WatchSessionEventsRequest::default());
    request
        .metadata_mut()
        .insert("x-tenant-id", "service-x".parse().expect("ascii"));
    client
        .watch_session_events(request)
        .await
        .expect("watch")
        .into_inner()
}

/// Posts one signed `status.updated` for `session_id`; its round trip
/// (sent to `200` received), `None` unless answered 200.
async fn post(
    http: reqwest::Client,
    hooks: std::net::SocketAddr,
    secret: WebhookSecret,
    session_id: String,
    sent: Arc<Mutex<HashMap<String, Instant>>>,
) -> Option<Duration> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let body = serde_json::json!({
        "webhook_type": "status.updated", "session_id": session_id,
        "status": "Approved", "timestamp": now,
    })
    .to_string();
    let signature = sign(&secret, body.as_bytes());
    let at = Instant::now();
    sent.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(session_id, at);
    let answered = http
        .post(format!("http://{hooks}/webhooks/didit/service-x"))
        .header("x-timestamp", now.to_string())
        .header("x-signature", signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .is_ok_and(|r| r.status().as_u16() == 200);
    answered.then(|| at.elapsed())
}
