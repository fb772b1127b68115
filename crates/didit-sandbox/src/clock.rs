//! The sandbox clock: wall time plus an offset that `/_sandbox/clock`
//! moves, so tests check token expiry and rate-limit windows without
//! sleeping. It never runs backwards on its own (monotonic base) and stays
//! inside the range RFC 3339 can print.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Last millisecond the clock may show: 9999-12-30, one day short of the
/// RFC 3339 limit so `exp = now + 86400` still prints.
const MAX_MS: i64 = (253_402_300_800 - 2 * 86_400) * 1000;

/// Wall time as the sandbox sees it.
#[derive(Debug)]
pub(crate) struct Clock {
    /// Monotonic instant taken at start; elapsed time is added to it.
    origin: Instant,
    /// Unix time in ms at `origin`.
    origin_unix_ms: i64,
    /// Milliseconds added by `advance`; reset to 0 by `reset`.
    offset_ms: AtomicI64,
}

/// The requested advance would leave the printable range.
#[derive(Debug, thiserror::Error)]
#[error("the clock must stay between 1970-01-01 and 9999-12-30")]
pub(crate) struct OutOfRange;

impl Clock {
    pub(crate) fn new() -> Clock {
        let origin_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(MAX_MS));
        Clock {
            origin: Instant::now(),
            origin_unix_ms,
            offset_ms: AtomicI64::new(0),
        }
    }

    fn real_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.origin.elapsed().as_millis()).unwrap_or(MAX_MS);
        self.origin_unix_ms.saturating_add(elapsed)
    }

    /// Sandbox time in Unix milliseconds.
    pub(crate) fn now_ms(&self) -> i64 {
        let offset = self.offset_ms.load(Ordering::Relaxed);
        self.real_ms().saturating_add(offset).clamp(0, MAX_MS)
    }

    /// Sandbox time in Unix seconds (what JWT `iat`/`exp` use).
    pub(crate) fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Moves the clock by `seconds` (negative goes back); the moves add up.
    pub(crate) fn advance(&self, seconds: i64) -> Result<i64, OutOfRange> {
        let delta = seconds.checked_mul(1000).ok_or(OutOfRange)?;
        let real = self.real_ms();
        self.offset_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |offset| {
                let next = offset.checked_add(delta)?;
                let shown = real.checked_add(next)?;
                (0..=MAX_MS).contains(&shown).then_some(next)
            })
            .map_err(|_| OutOfRange)?;
        Ok(self.now_secs())
    }

    /// Back to wall time.
    pub(crate) fn reset(&self) {
        self.offset_ms.store(0, Ordering::Relaxed);
    }
}

/// RFC 3339 (UTC, seconds) for a sandbox timestamp in ms.
pub(crate) fn rfc3339(unix_ms: i64) -> String {
    let ms = unix_ms.clamp(0, MAX_MS).unsigned_abs();
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_adds_up_and_reset_returns_to_wall_time() {
        let clock = Clock::new();
        let start = clock.now_secs();
        let after = clock.advance(3600).unwrap_or_default();
        assert!((after - start - 3600).abs() <= 1, "{start} -> {after}");
        clock.advance(-1800).unwrap_or_default();
        assert!((clock.now_secs() - start - 1800).abs() <= 1);
        clock.reset();
        assert!((clock.now_secs() - start).abs() <= 1);
    }

    #[test]
    fn advance_out_of_range_is_refused_and_changes_nothing() {
        let clock = Clock::new();
        let start = clock.now_secs();
        assert!(clock.advance(i64::MAX).is_err());
        assert!(clock.advance(i64::MIN).is_err());
        assert!(clock.advance(-start - 10).is_err());
        assert!(clock.advance(300_000_000_000).is_err());
        assert!((clock.now_secs() - start).abs() <= 1);
    }

    #[test]
    fn rfc3339_prints_utc_seconds_and_never_panics() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_999), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00Z");
        assert!(rfc3339(i64::MAX).starts_with("9999-12-30"));
    }
}
