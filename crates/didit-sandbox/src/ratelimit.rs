//! Didit's write rate limit (per API key, sliding window) when the sandbox
//! is configured with one, and the 429 answer both it and the fault
//! injector's `rate_limit_after` give, with Didit's headers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use axum::Json;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::RateLimit;
use super::api_error::detail;
use super::stats::KeyId;

const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// What the limiter says about one write.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Let through; the headers Didit adds to every answer.
    Allowed(RateHeaders),
    /// Over the limit: answer 429.
    Limited(RateHeaders),
}

/// The `X-RateLimit-*` and `Retry-After` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RateHeaders {
    pub(crate) limit: u32,
    pub(crate) remaining: u32,
    /// Unix seconds when a slot frees up.
    pub(crate) reset: i64,
    /// Seconds to wait (only sent with a 429).
    pub(crate) retry_after: u64,
}

impl RateHeaders {
    /// Adds the headers; `Retry-After` only when `with_retry_after`.
    pub(crate) fn apply(&self, headers: &mut HeaderMap, with_retry_after: bool) {
        headers.insert(LIMIT, HeaderValue::from(self.limit));
        headers.insert(REMAINING, HeaderValue::from(self.remaining));
        headers.insert(RESET, HeaderValue::from(self.reset));
        if with_retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(self.retry_after));
        }
    }
}

/// The 429 Didit answers for writes: Didit's body naming `limit`, and the headers.
pub(crate) fn too_many_requests(headers: RateHeaders) -> Response {
    too_many("Write", headers)
}

/// The 429 for reads (GET), worded like the write one.
pub(crate) fn too_many_reads(headers: RateHeaders) -> Response {
    too_many("Read", headers)
}

fn too_many(what: &str, headers: RateHeaders) -> Response {
    let message = format!(
        "{what} request rate limit exceeded. You can make up to {} requests per minute.",
        headers.limit
    );
    let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(detail(&message))).into_response();
    headers.apply(response.headers_mut(), true);
    response
}

/// Sliding-window log per API key.
pub(crate) struct WriteLimiter {
    max_writes: u32,
    window_ms: i64,
    /// Sandbox-clock ms of each admitted write still inside the window.
    windows: Mutex<HashMap<KeyId, VecDeque<i64>>>,
}

impl WriteLimiter {
    pub(crate) fn new(limit: RateLimit) -> WriteLimiter {
        let window_ms = i64::try_from(limit.window.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        WriteLimiter {
            max_writes: limit.max_writes,
            window_ms,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// The configured writes per window (named in 429 bodies and headers).
    pub(crate) fn max_writes(&self) -> u32 {
        self.max_writes
    }

    /// Admits or refuses one write by `key` at `now_ms`; only admitted
    /// writes take a slot.
    pub(crate) fn admit(&self, key: &KeyId, now_ms: i64) -> Admission {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let log = windows.entry(key.clone()).or_default();
        let horizon = now_ms.saturating_sub(self.window_ms);
        while log.front().is_some_and(|&t| t <= horizon) {
            log.pop_front();
        }
        let used = u32::try_from(log.len()).unwrap_or(u32::MAX);
        let admitted = used < self.max_writes;
        if admitted {
            log.push_back(now_ms);
        }
        // The oldest write in the window frees the next slot.
        let frees_at = log
            .front()
            .copied()
            .unwrap_or(now_ms)
            .saturating_add(self.window_ms);
        let headers = RateHeaders {
            limit: self.max_writes,
            remaining: self
                .max_writes
                .saturating_sub(used.saturating_add(u32::from(admitted))),
            reset: ceil_div(frees_at, 1000),
            retry_after: u64::try_from(ceil_div(frees_at.saturating_sub(now_ms), 1000))
                .unwrap_or(1)
                .max(1),
        };
        if admitted {
            Admission::Allowed(headers)
        } else {
            Admission::Limited(headers)
        }
    }
}

fn ceil_div(a: i64, b: i64) -> i64 {
    let q = a.div_euclid(b);
    if a.rem_euclid(b) == 0 {
        q
    } else {
        q.saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limiter(max_writes: u32, secs: u64) -> WriteLimiter {
        WriteLimiter::new(RateLimit {
            max_writes,
            window: Duration::from_secs(secs),
        })
    }

    #[test]
    fn window_slides_per_key() {
        let l = limiter(2, 60);
        let a = KeyId::of(b"a");
        let b = KeyId::of(b"b");
        let t0 = 1_000_000_000;
        assert!(matches!(l.admit(&a, t0), Admission::Allowed(h) if h.remaining == 1));
        assert!(matches!(l.admit(&a, t0 + 10_000), Admission::Allowed(h) if h.remaining == 0));
        match l.admit(&a, t0 + 20_000) {
            Admission::Limited(h) => {
                assert_eq!(h.retry_after, 40);
                assert_eq!(h.reset, (t0 + 60_000) / 1000);
                assert_eq!((h.limit, h.remaining), (2, 0));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(l.admit(&b, t0 + 20_000), Admission::Allowed(_)));
        // The first write leaves the window at t0 + 60 s.
        assert!(matches!(l.admit(&a, t0 + 60_000), Admission::Allowed(h) if h.remaining == 0));
        assert!(matches!(l.admit(&a, t0 + 60_001), Admission::Limited(_)));
    }

    #[test]
    fn zero_limit_refuses_everything_with_a_sane_retry_after() {
        let l = limiter(0, 1);
        match l.admit(&KeyId::of(b"a"), 5_500) {
            Admission::Limited(h) => assert_eq!((h.retry_after, h.reset), (1, 7)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ceil_div_rounds_up() {
        assert_eq!(ceil_div(1000, 1000), 1);
        assert_eq!(ceil_div(1001, 1000), 2);
        assert_eq!(ceil_div(0, 1000), 0);
        assert_eq!(ceil_div(-1, 1000), 0);
    }
}
