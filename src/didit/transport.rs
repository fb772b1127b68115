//! How the gateway reaches Didit, whatever the endpoint: pooled keep-alive
//! connections over rustls, per-attempt timeouts bounded by the caller's
//! deadline, metrics, the classification of every non-2xx answer, and the
//! retry rules (share retries outages; import retries only what never left
//! the gateway, because a second import POST is answered 403), and the
//! tenant's Didit budget, charged right before every attempt and paused on
//! Didit's 429 ([`crate::budget`]). The endpoints themselves are
//! `share.rs` and `import.rs`; reading their 2xx answers is `answer.rs`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::answer::protocol;
use super::classify::{Endpoint, classify, parse_retry_after, reset_after};
use super::failure::DiditError;
use super::retry::{AttemptError, RetryBudget, retryable};
use crate::budget::{DiditBudget, Refusal, TenantBudget};
use crate::config::UpstreamConfig;
use crate::metrics::{EndpointLabels, Metrics, UpstreamLabels};
use crate::otel::HttpPeer;
use crate::tenant::ApiKey;

/// Largest upstream body the gateway reads (a cloned session with every
/// check array is tens of KB; images are URLs).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Time kept back from the caller's deadline so the answer can still reach it.
const DEADLINE_MARGIN: Duration = Duration::from_millis(20);

/// What a call carries besides its request: deadline, trace ids, and the
/// budget its requests to Didit are charged to.
#[derive(Clone, Debug, Default)]
pub struct CallContext {
    /// When the upstream work must end (from `grpc-timeout`; `None` for
    /// work that outlives its caller, such as a detached import).
    pub deadline: Option<Instant>,
    /// When the caller stops waiting, even if the work goes on: a budget
    /// slot after it is refused rather than waited for.
    pub caller_deadline: Option<Instant>,
    /// The tenant budget every attempt is charged to (`None`: not charged).
    pub budget: Option<TenantBudget>,
    /// Our request id, sent upstream as `x-request-id`.
    pub request_id: String,
    /// W3C trace context to propagate.
    pub traceparent: Option<String>,
    /// The status of Didit's last answer, for the call's audit event.
    pub upstream_status: crate::audit::UpstreamStatus,
}

/// A pooled client for one Didit base URL.
#[derive(Clone)]
pub struct DiditClient {
    /// The connection pool, shared by every tenant (the key is per request).
    http: reqwest::Client,
    /// Base URL (no trailing slash), timeouts and backoff.
    config: Arc<UpstreamConfig>,
    /// Caps retries at a fraction of first attempts, across all calls.
    budget: Arc<RetryBudget>,
    /// Upstream latency, status, retry and in-flight metrics.
    metrics: Metrics,
    /// Where tenants' Didit budgets are charged (`None`: nothing charged).
    tenant_budgets: Option<DiditBudget>,
    /// Didit's host and port, as the client spans name them.
    peer: Arc<HttpPeer>,
}

impl DiditClient {
    /// Builds the pooled client. Fails only if TLS cannot be initialised.
    pub fn new(config: UpstreamConfig, metrics: Metrics) -> Result<Self, reqwest::Error> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .tcp_keepalive(Duration::from_secs(30))
            .user_agent(concat!("didit-share-gateway/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            peer: Arc::new(HttpPeer::of(&config.base_url)),
            config: Arc::new(UpstreamConfig {
                base_url: config.base_url.trim_end_matches('/').to_owned(),
                ..config
            }),
            budget: Arc::new(RetryBudget::default()),
            metrics,
            tenant_budgets: None,
        })
    }

    /// Charges every attempt of a call that names a [`TenantBudget`] to
    /// `budgets`, and pauses them on Didit's 429.
    pub fn with_budgets(mut self, budgets: DiditBudget) -> Self {
        self.tenant_budgets = Some(budgets);
        self
    }

    /// POSTs `body` as JSON to `path` (below the base URL) with retries;
    /// returns the 2xx status and body. `secrets` (besides the key) are
    /// scrubbed from any error detail.
    pub(super) async fn call(
        &self,
        endpoint: Endpoint,
        path: &str,
        key: &ApiKey,
        body: &impl Serialize,
        secrets: &[&str],
        ctx: &CallContext,
    ) -> Result<(u16, Bytes), DiditError> {
        let body = serde_json::to_vec(body)
            .map(Bytes::from)
            .map_err(|e| protocol(0, format!("cannot encode {} body: {e}", endpoint.label())))?;
        let label = EndpointLabels {
            endpoint: endpoint.label(),
        };
        let url = format!("{}{path}", self.config.base_url);
        self.budget.deposit();
        let mut attempt = 1;
        let mut last_error = None;
        loop {
            // Charged right before each attempt. A refusal after an attempt
            // went out answers with that attempt's error: it says more.
            if let Err(refusal) = self.charge(ctx).await {
                return Err(last_error.unwrap_or(match refusal {
                    Refusal::Exhausted { retry_after } => {
                        DiditError::BudgetExhausted { retry_after }
                    }
                    Refusal::Unavailable(cause) => DiditError::StateUnavailable { cause },
                }));
            }
            let result = self
                .attempt(endpoint, &url, key, body.clone(), secrets, ctx)
                .instrument(crate::otel::http_client_span(
                    "POST", &url, &self.peer, attempt,
                ))
                .await;
            let err = match result {
                Ok(ok) => return Ok(ok),
                Err(err) => err,
            };
            let retry_after = match &err.error {
                DiditError::RateLimited { retry_after, .. } => {
                    self.pause(ctx, *retry_after).await;
                    *retry_after
                }
                _ => None,
            };
            let retryable = retryable(endpoint, &err);
            if !retryable || attempt >= self.config.retry.max_attempts {
                return Err(err.error);
            }
            let wait = self.config.retry.backoff(attempt, retry_after);
            if let Some(deadline) = ctx.deadline
                && Instant::now() + wait + DEADLINE_MARGIN >= deadline
            {
                return Err(err.error);
            }
            if !self.budget.try_withdraw() {
                self.metrics
                    .retry_budget_exhausted
                    .get_or_create(&label)
                    .inc();
                return Err(err.error);
            }
            self.metrics.upstream_retries.get_or_create(&label).inc();
            tracing::info!(
                request_id = %ctx.request_id,
                endpoint = endpoint.label(),
                attempt,
                wait_ms = wait.as_millis() as u64,
                error = %err.error,
                "retrying Didit request"
            );
            tokio::time::sleep(wait).await;
            last_error = Some(err.error);
            attempt += 1;
        }
    }

    /// Charges one attempt to the call's tenant budget, waiting for a slot
    /// within `upstream.budget_wait` and the earlier of the deadlines.
    async fn charge(&self, ctx: &CallContext) -> Result<(), Refusal> {
        let (Some(budgets), Some(who)) = (&self.tenant_budgets, &ctx.budget) else {
            return Ok(());
        };
        let deadline = match (ctx.deadline, ctx.caller_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        budgets.take(who, deadline).await
    }

    /// Didit answered 429: holds the tenant back on every replica for
    /// what Didit asked (`Retry-After`, else `X-RateLimit-Reset`), or a
    /// second when it said nothing.
    async fn pause(&self, ctx: &CallContext, retry_after: Option<Duration>) {
        if let (Some(budgets), Some(who)) = (&self.tenant_budgets, &ctx.budget) {
            let pause = retry_after.unwrap_or(Duration::from_secs(1));
            budgets.pause(&who.tenant, pause).await;
        }
    }

    /// One HTTP exchange.
    async fn attempt(
        &self,
        endpoint: Endpoint,
        url: &str,
        key: &ApiKey,
        body: Bytes,
        secrets: &[&str],
        ctx: &CallContext,
    ) -> Result<(u16, Bytes), AttemptError> {
        let timeout = match ctx.deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match left.checked_sub(DEADLINE_MARGIN) {
                    Some(left) if !left.is_zero() => left.min(self.config.timeout),
                    _ => {
                        return Err(AttemptError {
                            error: DiditError::Timeout,
                            maybe_sent: false,
                        });
                    }
                }
            }
            None => self.config.timeout,
        };
        let mut builder = self
            .http
            .post(url)
            .timeout(timeout)
            .header("x-api-key", key.expose())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json");
        if !ctx.request_id.is_empty() {
            builder = builder.header("x-request-id", &ctx.request_id);
        }
        // With tracing on, Didit's parent is this attempt's client span.
        let span = tracing::Span::current();
        if let Some(traceparent) =
            crate::otel::traceparent(&span).or_else(|| ctx.traceparent.clone())
        {
            builder = builder.header("traceparent", traceparent);
        }
        let (outcome, elapsed) = self.measured_exchange(endpoint, builder.body(body)).await;
        crate::otel::record_http_outcome(&span, outcome.as_ref().ok().map(|(status, ..)| *status));
        let (status, headers, bytes) = outcome?;
        ctx.upstream_status.record(status);
        let request_id = upstream_request_id(&headers);
        tracing::debug!(
            request_id = %ctx.request_id,
            endpoint = endpoint.label(),
            status,
            upstream_request_id = request_id.as_deref().unwrap_or(""),
            latency_ms = elapsed.as_secs_f64() * 1e3,
            "Didit answered"
        );
        if status == 200 || status == 201 {
            return Ok((status, bytes));
        }
        let retry_after = parse_retry_after(
            headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
        )
        .or_else(|| (status == 429).then(|| reset_after(&headers)).flatten());
        let mut all_secrets = vec![key.expose()];
        all_secrets.extend_from_slice(secrets);
        let error = if (200..300).contains(&status) {
            protocol(status, format!("unexpected success status {status}"))
        } else {
            classify(
                endpoint,
                status,
                &bytes,
                retry_after,
                request_id,
                &all_secrets,
            )
        };
        Err(AttemptError {
            error,
            maybe_sent: true,
        })
    }

    /// The per-attempt upstream timeout.
    pub fn upstream_timeout(&self) -> Duration {
        self.config.timeout
    }

    /// The pool, settings and metrics, for the read endpoints (`read.rs`).
    pub(super) fn parts(&self) -> (&reqwest::Client, &UpstreamConfig, &Metrics) {
        (&self.http, &self.config, &self.metrics)
    }

    /// [`Self::exchange`] of one attempt to `endpoint`, counted in the
    /// in-flight gauge, with its latency and its status (`error` when no
    /// answer came) recorded; also returns the latency.
    pub(super) async fn measured_exchange(
        &self,
        endpoint: Endpoint,
        request: reqwest::RequestBuilder,
    ) -> (
        Result<(u16, http::HeaderMap, Bytes), AttemptError>,
        Duration,
    ) {
        let started = std::time::Instant::now();
        self.metrics.upstream_in_flight.inc();
        let outcome = self.exchange(request).await;
        self.metrics.upstream_in_flight.dec();
        let elapsed = started.elapsed();
        self.metrics
            .upstream_latency
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.label(),
            })
            .observe(elapsed.as_secs_f64());
        let status = match &outcome {
            Ok((status, ..)) => status.to_string(),
            Err(_) => "error".to_owned(),
        };
        self.metrics
            .upstream_requests
            .get_or_create(&UpstreamLabels {
                endpoint: endpoint.label(),
                status,
            })
            .inc();
        (outcome, elapsed)
    }

    /// Sends and reads the whole body, at most [`MAX_BODY_BYTES`].
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, http::HeaderMap, Bytes), AttemptError> {
        let mut response = request.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let headers = std::mem::take(response.headers_mut());
        let announced = response.content_length();
        if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(AttemptError {
                error: protocol(status, "answer body is too large".into()),
                maybe_sent: true,
            });
        }
        // Sized up front: an import body is kept in the replay store, whose
        // byte bound counts its length, so its capacity must not be larger.
        let mut body = Vec::with_capacity(announced.map_or(0, |n| n as usize));
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(AttemptError {
                    error: protocol(status, "answer body is too large".into()),
                    maybe_sent: true,
                });
            }
            body.extend_from_slice(&chunk);
        }
        // Without a Content-Length the Vec grew by doubling.
        body.shrink_to_fit();
        Ok((status, headers, Bytes::from(body)))
    }
}

/// Classifies a reqwest failure without keeping its text (it may hold the URL).
fn transport_error(err: reqwest::Error) -> AttemptError {
    if err.is_timeout() {
        AttemptError {
            error: DiditError::Timeout,
            maybe_sent: !err.is_connect(),
        }
    } else if err.is_connect() {
        AttemptError {
            error: DiditError::Unavailable {
                cause: "connect error".into(),
                reply: None,
            },
            maybe_sent: false,
        }
    } else {
        AttemptError {
            error: DiditError::Unavailable {
                cause: "connection lost before a complete answer".into(),
                reply: None,
            },
            maybe_sent: true,
        }
    }
}

/// Didit's request id of an answer, at most 128 characters.
pub(super) fn upstream_request_id(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(128).collect())
}
