//! How the table prints numbers: microseconds, ratios, MiB, goal verdicts,
//! shell words.

use std::time::Duration;

/// Microseconds, rounded.
pub fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// `a − b` in microseconds (may be negative).
pub fn signed_us(a: Duration, b: Duration) -> String {
    format!("{:.0} µs", (a.as_secs_f64() - b.as_secs_f64()) * 1e6)
}

/// `a ÷ b` as `1.23x`, or n/a when `b` is zero.
pub fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "n/a".into()
    }
}

/// A goal's verdict.
pub fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// Bytes in MiB.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Arguments joined for a shell, quoting those with spaces.
pub fn shell_words(args: &[String]) -> String {
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
