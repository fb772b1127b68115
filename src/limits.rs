//! Admission control as tower layers in front of the two services: a
//! global concurrency limit that sheds instead of queueing. Health and
//! reflection are never limited: a busy pod must still answer its probes.
//!
//! Nothing tenant-keyed is decided here: a layer runs before the caller is
//! authorized, and would let any caller spend a tenant's allowance. A
//! tenant's Didit budget is charged per upstream request ([`crate::budget`]).

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tonic::Status;

use crate::error::GatewayError;
use crate::metrics::Metrics;

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
                let status = Status::from(err);
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

/// Sheds calls beyond `max` concurrent ones with RESOURCE_EXHAUSTED /
/// `OVERLOADED` at once, rather than queueing them without bound.
#[derive(Clone)]
pub struct Shed {
    permits: Arc<Semaphore>,
    metrics: Metrics,
}

impl Shed {
    /// At most `max` calls at once.
    pub fn layer(max: usize, metrics: Metrics) -> AdmissionLayer<Self> {
        AdmissionLayer(Self {
            permits: Arc::new(Semaphore::new(max)),
            metrics,
        })
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
}
