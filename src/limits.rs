//! Admission control as tower layers in front of the two services: a
//! global concurrency limit that sheds instead of queueing, and a token
//! bucket per tenant that tells a tenant to back off before Didit does.
//! Health and reflection are never limited: a busy pod must still answer
//! its probes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tonic::Status;

use crate::error::GatewayError;
use crate::metrics::{Metrics, TenantLabels};
use crate::tenant::TENANT_HEADER;

/// Paths the limits apply to.
const LIMITED_PREFIX: &str = "/didit.share.v1.";

type HttpResponse = http::Response<tonic::body::Body>;

/// A policy that decides, before a call runs, whether it may run.
/// `Permit` is held until the call's answer is ready.
pub trait Admit: Clone + Send + Sync + 'static {
    /// Held while the call runs (a concurrency slot, or nothing).
    type Permit: Send + 'static;
    /// `Err` answers the call at once with that error.
    fn admit(&self, headers: &http::HeaderMap) -> Result<Self::Permit, GatewayError>;
    /// Told of each call `admit` refused (to count it), with the call's path.
    fn refused(&self, _path: &str, _headers: &http::HeaderMap, _error: &GatewayError) {}
}

/// A tower layer applying an [`Admit`] policy to the share and import
/// services (health and reflection pass through).
#[derive(Clone)]
pub struct AdmissionLayer<A>(pub A);

impl<S, A: Clone> tower::Layer<S> for AdmissionLayer<A> {
    type Service = Admission<S, A>;
    fn layer(&self, inner: S) -> Self::Service {
        Admission {
            inner,
            policy: self.0.clone(),
        }
    }
}

/// The service of [`AdmissionLayer`].
#[derive(Clone)]
pub struct Admission<S, A> {
    inner: S,
    policy: A,
}

impl<S, A, B> tower::Service<http::Request<B>> for Admission<S, A>
where
    S: tower::Service<http::Request<B>, Response = HttpResponse> + Send + 'static,
    S::Future: Send + 'static,
    A: Admit,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<HttpResponse, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if !request.uri().path().starts_with(LIMITED_PREFIX) {
            return Box::pin(self.inner.call(request));
        }
        match self.policy.admit(request.headers()) {
            Ok(permit) => {
                let call = self.inner.call(request);
                Box::pin(async move {
                    let response = call.await;
                    drop(permit);
                    response
                })
            }
            Err(err) => {
                self.policy
                    .refused(request.uri().path(), request.headers(), &err);
                let status = Status::from(err);
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

/// Sheds calls beyond `max` concurrent ones with RESOURCE_EXHAUSTED /
/// `OVERLOADED` at once, rather than queueing them without bound.
/// A shed call is counted in `dsg_grpc_requests_total` and
/// `dsg_grpc_errors_total` like a call that ran (it never reaches the
/// per-call record), its tenant label named by a [`TenantLabeler`].
#[derive(Clone)]
pub struct Shed {
    permits: Arc<Semaphore>,
    metrics: Metrics,
    tenant_label: TenantLabeler,
}

/// The metric label of the tenant a call names in `x-tenant-id` (its
/// header value, if any): a configured tenant id, or `unknown`.
pub type TenantLabeler = Arc<dyn Fn(Option<&str>) -> String + Send + Sync>;

impl Shed {
    /// At most `max` calls at once.
    pub fn layer(
        max: usize,
        metrics: Metrics,
        tenant_label: TenantLabeler,
    ) -> AdmissionLayer<Self> {
        AdmissionLayer(Self {
            permits: Arc::new(Semaphore::new(max)),
            metrics,
            tenant_label,
        })
    }
}

/// The method label of a gRPC path (`/pkg.Service/Method`).
fn method_label(path: &str) -> &'static str {
    match path.rsplit('/').next() {
        Some("ShareSession") => "ShareSession",
        Some("ImportSharedSession") => "ImportSharedSession",
        Some("GetSession") => "GetSession",
        Some("WatchSessionEvents") => "WatchSessionEvents",
        _ => "unknown",
    }
}

impl Admit for Shed {
    type Permit = tokio::sync::OwnedSemaphorePermit;

    fn admit(&self, _: &http::HeaderMap) -> Result<Self::Permit, GatewayError> {
        Arc::clone(&self.permits).try_acquire_owned().map_err(|_| {
            self.metrics.shed.inc();
            GatewayError::Overloaded
        })
    }

    fn refused(&self, path: &str, headers: &http::HeaderMap, error: &GatewayError) {
        let tenant = (self.tenant_label)(headers.get(TENANT_HEADER).and_then(|v| v.to_str().ok()));
        let (code, reason) = error.code_and_reason();
        self.metrics.count_call(
            method_label(path),
            &tenant,
            crate::service::code_name(code),
            reason,
        );
    }
}

/// A token bucket: `burst` calls at once, refilled at `per_second`.
#[derive(Debug)]
struct Bucket {
    /// The configured limit it was sized from.
    per_minute: u32,
    tokens: f64,
    burst: f64,
    per_second: f64,
    last: Instant,
}

impl Bucket {
    /// Sized so that no 60 s window sees more than `per_minute` calls:
    /// a burst of a tenth, the rest spread evenly.
    fn per_minute(per_minute: u32) -> Self {
        let limit = f64::from(per_minute);
        let burst = (limit / 10.0).max(1.0);
        Self {
            per_minute,
            tokens: burst,
            burst,
            per_second: (limit - burst).max(1.0) / 60.0,
            last: Instant::now(),
        }
    }

    fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.per_second,
            ))
        }
    }
}

/// Refuses a tenant's calls beyond its `rate_limit_per_minute` with
/// RESOURCE_EXHAUSTED / `TENANT_RATE_LIMITED` and a RetryInfo. The limits
/// are replaced on a config reload; a tenant whose limit did not change
/// keeps its bucket, so a reload never hands out a fresh burst.
#[derive(Clone)]
pub struct TenantRate {
    buckets: Arc<RwLock<HashMap<String, Mutex<Bucket>>>>,
    metrics: Metrics,
}

impl TenantRate {
    /// One bucket per (tenant id, calls per minute).
    pub fn new(limits: impl IntoIterator<Item = (String, u32)>, metrics: Metrics) -> Self {
        let rate = Self {
            buckets: Arc::default(),
            metrics,
        };
        rate.update(limits);
        rate
    }

    /// The tower layer applying these limits.
    pub fn layer(&self) -> AdmissionLayer<Self> {
        AdmissionLayer(self.clone())
    }

    /// Installs new limits: unchanged tenants keep their buckets, new
    /// tenants get a full one, removed tenants are forgotten.
    pub fn update(&self, limits: impl IntoIterator<Item = (String, u32)>) {
        let mut buckets = match self.buckets.write() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut old = std::mem::take(&mut *buckets);
        for (tenant, per_minute) in limits {
            // Every configured tenant's series exists (at 0) from the start.
            let _ = self
                .metrics
                .tenant_rate_limited
                .get_or_create(&TenantLabels {
                    tenant: tenant.clone(),
                });
            let bucket = match old.remove(&tenant) {
                Some(kept) if lock(&kept).per_minute == per_minute => kept,
                _ => Mutex::new(Bucket::per_minute(per_minute)),
            };
            buckets.insert(tenant, bucket);
        }
    }

    fn take(&self, tenant: &str) -> Result<(), Duration> {
        let buckets = match self.buckets.read() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        match buckets.get(tenant) {
            Some(bucket) => lock(bucket).try_take(Instant::now()),
            // Unknown tenants are refused by the service with UNKNOWN_TENANT.
            None => Ok(()),
        }
    }
}

fn lock(bucket: &Mutex<Bucket>) -> std::sync::MutexGuard<'_, Bucket> {
    match bucket.lock() {
        Ok(b) => b,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Admit for TenantRate {
    type Permit = ();

    fn admit(&self, headers: &http::HeaderMap) -> Result<(), GatewayError> {
        let Some(tenant) = headers.get(TENANT_HEADER).and_then(|v| v.to_str().ok()) else {
            return Ok(());
        };
        self.take(tenant).map_err(|retry_after| {
            self.metrics
                .tenant_rate_limited
                .get_or_create(&TenantLabels {
                    tenant: tenant.to_owned(),
                })
                .inc();
            GatewayError::TenantRateLimited { retry_after }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_minute_sees_more_than_the_limit() {
        let mut bucket = Bucket::per_minute(300);
        let start = Instant::now();
        let mut admitted = 0;
        // One attempt every 10 ms for 60 s.
        for i in 0..6000 {
            if bucket
                .try_take(start + Duration::from_millis(i * 10))
                .is_ok()
            {
                admitted += 1;
            }
        }
        assert!((290..=300).contains(&admitted), "{admitted}");
    }

    #[test]
    fn a_reload_keeps_unchanged_buckets_and_sizes_new_ones() {
        let rate = TenantRate::new([("a".to_owned(), 60), ("b".to_owned(), 60)], Metrics::new());
        for _ in 0..6 {
            rate.take("a").unwrap();
        }
        assert!(rate.take("a").is_err(), "a's burst of 6 is spent");
        rate.update([("a".to_owned(), 60), ("c".to_owned(), 10)]);
        assert!(
            rate.take("a").is_err(),
            "an unchanged limit keeps its bucket"
        );
        rate.take("c").unwrap();
        assert!(
            rate.take("c").is_err(),
            "a new tenant gets its own limit (burst 1)"
        );
        for _ in 0..10 {
            rate.take("b").unwrap();
        }
        assert!(
            rate.take("b").is_ok(),
            "a removed tenant is no longer limited here"
        );
    }

    #[test]
    fn a_refusal_says_when_to_come_back() {
        let mut bucket = Bucket::per_minute(60);
        let now = Instant::now();
        for _ in 0..6 {
            bucket.try_take(now).unwrap();
        }
        let wait = bucket.try_take(now).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(2),
            "{wait:?}"
        );
    }
}
