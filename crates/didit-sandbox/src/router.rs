//! The state every handler shares and the router that joins the v3 and
//! admin endpoints, with DRF-shaped 404 and 405 answers for everything else.

use std::io;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};

use super::api_error::{Endpoint, detail};
use super::clock::Clock;
use super::demo::{DemoApplication, demo_applications};
use super::faults::Faults;
use super::ratelimit::WriteLimiter;
use super::stats::Counters;
use super::store::Store;
use super::token::TokenKey;
use super::webhook_delivery::Deliveries;
use super::{Dialect, RateLimit, SandboxConfig};

/// Everything a sandbox knows, shared by its handlers.
pub(crate) struct Shared {
    /// Which status codes and bodies to answer with.
    pub(crate) dialect: Dialect,
    pub(crate) store: Store,
    /// Signs and checks share tokens; random per sandbox.
    pub(crate) tokens: TokenKey,
    /// Token times and expiry, rate-limit windows, `created_at`.
    pub(crate) clock: Clock,
    pub(crate) faults: Faults,
    /// The write rate limit, when configured.
    pub(crate) limiter: Option<WriteLimiter>,
    /// The read (GET) limit: twice the write limit when one is configured
    /// (Didit: 600 reads and 300 writes per minute).
    pub(crate) read_limiter: Option<WriteLimiter>,
    /// Signed webhook deliveries, made in the background.
    pub(crate) webhooks: Deliveries,
    pub(crate) counters: Counters,
    /// What `GET /_sandbox/applications` answers.
    pub(crate) demo: Vec<DemoApplication>,
}

impl Shared {
    pub(crate) fn new(config: &SandboxConfig) -> io::Result<Shared> {
        let demo = demo_applications();
        let clock = Clock::new();
        Ok(Shared {
            dialect: config.dialect,
            store: Store::new(&demo, clock.now_ms()),
            tokens: TokenKey::random().map_err(io::Error::other)?,
            clock,
            faults: Faults::default(),
            limiter: config.rate_limit.map(WriteLimiter::new),
            read_limiter: config.rate_limit.map(|limit| {
                WriteLimiter::new(RateLimit {
                    max_writes: limit.max_writes.saturating_mul(2),
                    window: limit.window,
                })
            }),
            webhooks: Deliveries::new()?,
            counters: Counters::default(),
            demo,
        })
    }
}

impl Shared {
    /// The limiter `endpoint` counts against, if any.
    pub(crate) fn limiter_for(&self, endpoint: Endpoint) -> Option<&WriteLimiter> {
        if endpoint.is_read() {
            self.read_limiter.as_ref()
        } else {
            self.limiter.as_ref()
        }
    }
}

/// The sandbox's HTTP surface.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .merge(super::api::routes())
        .merge(super::sessions_api::routes())
        .merge(super::control::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(shared)
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(detail("Not found."))).into_response()
}

async fn method_not_allowed(method: Method) -> Response {
    let message = format!("Method \"{method}\" not allowed.");
    (StatusCode::METHOD_NOT_ALLOWED, Json(detail(&message))).into_response()
}
