//! The run's numbers as JSON, and the comparison with a saved run.
//!
//! Every section records its headline numbers here beside the markdown it
//! prints. The run is written to `target/bench/gateway.json` (and to
//! `--save PATH`); `--compare BASELINE.json` prints each number beside the
//! baseline's with the change in percent. Nothing here fails on a number:
//! the machine this runs on is usually shared, and a reviewer reads the
//! comparison, no threshold does.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Which way a number should move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
    /// A count that should stay what it is (e.g. 1 upstream call).
    Same,
}

/// One recorded number.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Metric {
    /// Stable key, e.g. `throughput.64.ratio`.
    pub name: String,
    pub value: f64,
    /// `x`, `calls/s`, `us`, `MiB`, `calls`, `ms`.
    pub unit: String,
    pub better: Better,
}

/// Where and when a run happened.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub kernel: String,
    /// `/proc/loadavg`'s 1, 5 and 15 minute averages at the start.
    pub load_average_start: String,
    /// The same at the end.
    pub load_average_end: String,
}

/// A whole run, as saved.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Run {
    /// UTC, `YYYY-MM-DD HH:MM`.
    pub date: String,
    /// True for `DSG_BENCH_SMOKE=1` runs, whose numbers mean nothing.
    pub smoke: bool,
    pub machine: Machine,
    /// Free text kept from a hand-edited baseline (not written by runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub metrics: Vec<Metric>,
}

/// The numbers being recorded during a run.
pub struct Results {
    smoke: bool,
    date: String,
    load_average_start: String,
    metrics: Vec<Metric>,
}

impl Results {
    pub fn new(smoke: bool) -> Self {
        Self {
            smoke,
            date: utc_now(),
            load_average_start: load_average(),
            metrics: Vec::new(),
        }
    }

    /// Records `value` under `name`.
    pub fn record(&mut self, name: impl Into<String>, value: f64, unit: &str, better: Better) {
        self.metrics.push(Metric {
            name: name.into(),
            value,
            unit: unit.to_owned(),
            better,
        });
    }

    /// The finished run.
    pub fn finish(self) -> Run {
        let (cores, cpu, kernel) = machine();
        Run {
            date: self.date,
            smoke: self.smoke,
            machine: Machine {
                cores,
                cpu,
                kernel,
                load_average_start: self.load_average_start,
                load_average_end: load_average(),
            },
            note: None,
            metrics: self.metrics,
        }
    }
}

/// The default place of the latest run.
pub fn default_path() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| "target".into(), PathBuf::from);
    target.join("bench").join("gateway.json")
}

/// Writes `run` to `path`, creating its directory.
pub fn save(run: &Run, path: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let json = serde_json::to_string_pretty(run).map_err(|e| e.to_string())?;
    std::fs::write(path, json + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads a saved run.
pub fn load(path: &Path) -> Result<Run, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a saved benchmark run: {e}", path.display()))
}

/// A markdown table of `run` beside `baseline`, one line per number.
pub fn compare(run: &Run, baseline: &Run, baseline_path: &Path) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Compared with {} ({}, {} cores, load {} at its start)\n",
        baseline_path.display(),
        baseline.date,
        baseline.machine.cores,
        baseline.machine.load_average_start,
    );
    let _ = writeln!(
        out,
        "This run: {}, {} cores, load {} at the start, {} at the end. Absolute numbers move with \
         the machine's load; the ratios (unit x) are measured side by side and move less. \
         \"worse\"/\"better\" marks a change of 10% or more in that direction; nothing fails.\n",
        run.date, run.machine.cores, run.machine.load_average_start, run.machine.load_average_end,
    );
    if let Some(note) = &baseline.note {
        let _ = writeln!(out, "Baseline's note: {note}\n");
    }
    if run.smoke != baseline.smoke {
        let _ = writeln!(
            out,
            "One of the two runs is a smoke run (tiny counts): the comparison means nothing.\n"
        );
    }
    let _ = writeln!(
        out,
        "| number | unit | baseline | this run | change |\n| --- | --- | ---: | ---: | --- |"
    );
    for metric in &run.metrics {
        let old = baseline.metrics.iter().find(|m| m.name == metric.name);
        let (old, change) = match old {
            Some(old) => (
                number(old.value),
                change(old.value, metric.value, metric.better),
            ),
            None => ("—".into(), "new".into()),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {old} | {} | {change} |",
            metric.name,
            metric.unit,
            number(metric.value)
        );
    }
    for gone in baseline
        .metrics
        .iter()
        .filter(|m| !run.metrics.iter().any(|n| n.name == m.name))
    {
        let _ = writeln!(
            out,
            "| {} | {} | {} | — | not measured |",
            gone.name,
            gone.unit,
            number(gone.value)
        );
    }
    out.push('\n');
    out
}

fn number(value: f64) -> String {
    if value.abs() >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// `+12.3%`, with worse/better beyond 10% when the direction is known.
fn change(old: f64, new: f64, better: Better) -> String {
    if old == new {
        return "0%".into();
    }
    if old == 0.0 {
        return "was 0".into();
    }
    let percent = (new - old) / old.abs() * 100.0;
    let word = match better {
        _ if percent.abs() < 10.0 => "",
        Better::Higher if percent > 0.0 => " better",
        Better::Lower if percent < 0.0 => " better",
        Better::Higher | Better::Lower | Better::Same => " worse",
    };
    format!("{percent:+.1}%{word}")
}

/// (cores, CPU model, kernel release).
pub fn machine() -> (usize, String, String) {
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
    (cores, cpu, kernel.trim().to_owned())
}

/// The 1, 5 and 15 minute load averages, e.g. `9.89 10.32 8.76`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Now in UTC as `YYYY-MM-DD HH:MM`.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rest / 3_600,
        rest % 3_600 / 60
    )
}
