//! Measuring tools: percentiles, a closed-loop load generator, `/proc`
//! readers for memory and CPU, and the `h2load` cross-check.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Sorted latency samples.
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Self(samples)
    }

    /// The nearest-rank percentile `p` (0 < p ≤ 1).
    pub fn pct(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = (p * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// Result of one closed-loop run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Load {
    pub calls: u64,
    pub errors: u64,
    pub elapsed: Duration,
}

impl Load {
    pub fn per_second(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// `concurrency` workers, each calling `call(worker)` back to back until
/// `duration` has passed; a call returning false counts as an error.
pub async fn closed_loop<F, Fut>(concurrency: usize, duration: Duration, call: F) -> Load
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let call = Arc::new(call);
    let calls = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (call, calls, errors) = (Arc::clone(&call), calls.clone(), errors.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    if call(worker).await {
                        calls.fetch_add(1, Ordering::Relaxed);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("load worker");
    }
    Load {
        calls: calls.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    }
}

/// The median of `values` (by throughput).
pub fn median(mut values: Vec<Load>) -> Load {
    values.sort_by(|a, b| a.per_second().total_cmp(&b.per_second()));
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// The median of `values`.
pub fn median_f64(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// VmRSS and VmHWM of a process, in bytes, and VmRSS's two parts:
/// anonymous (heap, stacks) and file-backed (the executable's pages).
#[derive(Clone, Copy, Debug, Default)]
pub struct Rss {
    pub rss: u64,
    pub hwm: u64,
    pub anon: u64,
    pub file: u64,
}

/// Reads `/proc/<pid>/status` (`pid` = "self" for this process).
pub fn rss(pid: &str) -> Rss {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kb| kb * 1024)
    };
    Rss {
        rss: field("VmRSS:"),
        hwm: field("VmHWM:"),
        anon: field("RssAnon:"),
        file: field("RssFile:"),
    }
}

/// User + system CPU time of a process (all threads), from `/proc/<pid>/stat`.
pub fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name start at field 3 (state);
    // utime and stime are fields 14 and 15, in clock ticks.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// What one h2load run reported.
#[derive(Clone, Debug, Default)]
pub struct H2load {
    pub per_second: f64,
    pub succeeded: u64,
    pub failed: u64,
    pub mean_latency: String,
}

/// The h2load command line for `n` POSTs of `body` to the import method at
/// `addr`, `conns` connections with `streams` streams each.
pub fn h2load_args(
    addr: SocketAddr,
    body: &Path,
    n: usize,
    conns: usize,
    streams: usize,
) -> Vec<String> {
    [
        "-n".to_owned(),
        n.to_string(),
        "-c".into(),
        conns.to_string(),
        "-m".into(),
        streams.to_string(),
        "-t".into(),
        "1".into(),
        "-d".into(),
        body.display().to_string(),
        "-H".into(),
        "content-type: application/grpc".into(),
        "-H".into(),
        "te: trailers".into(),
        "-H".into(),
        "x-tenant-id: service-y".into(),
        format!("http://{addr}/didit.share.v1.ImportService/ImportSharedSession"),
    ]
    .into()
}

/// Runs h2load (without blocking the runtime); `None` when it is not
/// installed or its output cannot be read.
pub async fn h2load(args: &[String]) -> Option<H2load> {
    let output = tokio::process::Command::new("h2load")
        .args(args)
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    // "finished in 2.01s, 9950.25 req/s, 300.00MB/s"
    let per_second = text
        .lines()
        .find(|l| l.starts_with("finished in"))?
        .split(", ")
        .find_map(|part| part.strip_suffix(" req/s"))?
        .parse()
        .ok()?;
    // "requests: 200 total, 200 started, 200 done, 200 succeeded, 0 failed, ..."
    let requests = text.lines().find(|l| l.starts_with("requests:"))?;
    let count = |word: &str| {
        requests
            .split(", ")
            .find_map(|p| p.trim().strip_suffix(word))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    // "time for request:   123us  4.56ms  789us  ..." (min max mean sd)
    let mean_latency = text
        .lines()
        .find(|l| l.starts_with("time for request:"))
        .and_then(|l| l.split_whitespace().nth(5))
        .unwrap_or("?")
        .to_owned();
    Some(H2load {
        per_second,
        succeeded: count(" succeeded"),
        failed: count(" failed"),
        mean_latency,
    })
}

/// Whether `h2load` is on the PATH.
pub fn have_h2load() -> bool {
    std::process::Command::new("h2load")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}
