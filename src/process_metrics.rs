//! The standard `process_*` metrics (CPU seconds, memory, file
//! descriptors, start time), read from `/proc/self` on every scrape. On a
//! system without `/proc` the collector exports nothing.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second of `/proc/<pid>/stat` times: Linux's `USER_HZ`,
/// 100 on every architecture this runs on.
const USER_HZ: f64 = 100.0;

/// A prometheus-client collector of this process's own metrics.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// One reading of `/proc/self`.
#[derive(Debug, PartialEq)]
struct Reading {
    cpu_seconds: f64,
    resident_bytes: i64,
    virtual_bytes: i64,
    open_fds: i64,
    max_fds: Option<i64>,
    start_time_seconds: f64,
}

impl Reading {
    fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count();
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        Self::parse(&stat, &status, &boot, open_fds, &limits)
    }

    fn parse(stat: &str, status: &str, boot: &str, open_fds: usize, limits: &str) -> Option<Self> {
        // The command name (field 2) may hold spaces: fields count from
        // after its closing parenthesis, starting with field 3 (state).
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
        let kib = |key: &str| -> Option<i64> {
            let line = status.lines().find(|l| l.starts_with(key))?;
            let kib: i64 = line[key.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()?;
            Some(kib * 1024)
        };
        let boot_time: f64 = boot
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        let max_fds = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|soft| soft.parse().ok());
        Some(Self {
            cpu_seconds: (field(14)? + field(15)?) / USER_HZ,
            resident_bytes: kib("VmRSS:")?,
            virtual_bytes: kib("VmSize:")?,
            open_fds: i64::try_from(open_fds).ok()?,
            max_fds,
            start_time_seconds: boot_time + field(22)? / USER_HZ,
        })
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(r) = Reading::now() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(r.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let mut gauge = |name: &str, help: &str, value: f64| {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
        };
        gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            r.resident_bytes as f64,
        )?;
        gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            r.virtual_bytes as f64,
        )?;
        gauge(
            "process_open_fds",
            "Number of open file descriptors",
            r.open_fds as f64,
        )?;
        if let Some(max) = r.max_fds {
            gauge(
                "process_max_fds",
                "Maximum number of open file descriptors",
                max as f64,
            )?;
        }
        gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            r.start_time_seconds,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_self() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 8 0 12345 100000000 2000 18446744073709551615";
        let status = "Name:\tx\nVmSize:\t  102400 kB\nVmRSS:\t    8192 kB\n";
        let boot = "cpu  1 2 3\nbtime 1700000000\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \nMax open files            1024                 4096                 files     \n";
        let r = Reading::parse(stat, status, boot, 9, limits).unwrap();
        assert_eq!(
            r,
            Reading {
                cpu_seconds: 3.0,
                resident_bytes: 8192 * 1024,
                virtual_bytes: 102400 * 1024,
                open_fds: 9,
                max_fds: Some(1024),
                start_time_seconds: 1_700_000_123.45,
            }
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let r = Reading::now().unwrap();
        assert!(r.resident_bytes > 0 && r.open_fds > 0 && r.start_time_seconds > 1e9);
    }
}
