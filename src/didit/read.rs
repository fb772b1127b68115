//! How the gateway reads from Didit (`GET`): the same pool, timeouts,
//! metrics and error classification as the writes in `transport.rs`, but
//! reads change nothing, so outages and timeouts are retried (attempt limit
//! and caller deadline permitting). Reads are not charged to the tenant's
//! write budget.

use bytes::Bytes;
use tokio::time::Instant;

use super::answer::protocol;
use super::classify::{Endpoint, classify, parse_retry_after};
use super::failure::DiditError;
use super::retry::{AttemptError, retryable};
use super::transport::{CallContext, DiditClient, upstream_request_id};
use crate::metrics::EndpointLabels;
use crate::tenant::ApiKey;

/// Time kept back from the caller's deadline so the answer can still reach it.
const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_millis(20);

impl DiditClient {
    /// GETs `path_and_query` (below the base URL) with retries; returns the
    /// 2xx status and body.
    pub(super) async fn get(
        &self,
        endpoint: Endpoint,
        path_and_query: &str,
        key: &ApiKey,
        ctx: &CallContext,
    ) -> Result<(u16, Bytes), DiditError> {
        let (_, config, metrics) = self.parts();
        let url = format!("{}{path_and_query}", config.base_url);
        let label = EndpointLabels {
            endpoint: endpoint.label(),
        };
        let mut attempt = 1;
        loop {
            let err = match self.get_once(endpoint, &url, key, ctx).await {
                Ok(ok) => return Ok(ok),
                Err(err) => err,
            };
            if !retryable(endpoint, &err) || attempt >= config.retry.max_attempts {
                return Err(err.error);
            }
            let retry_after = match &err.error {
                DiditError::RateLimited { retry_after, .. } => *retry_after,
                _ => None,
            };
            let wait = config.retry.backoff(attempt, retry_after);
            if let Some(deadline) = ctx.deadline
                && Instant::now() + wait + DEADLINE_MARGIN >= deadline
            {
                return Err(err.error);
            }
            metrics.upstream_retries.get_or_create(&label).inc();
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// One GET exchange.
    async fn get_once(
        &self,
        endpoint: Endpoint,
        url: &str,
        key: &ApiKey,
        ctx: &CallContext,
    ) -> Result<(u16, Bytes), AttemptError> {
        let (http, config, _) = self.parts();
        let timeout = match ctx.deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match left.checked_sub(DEADLINE_MARGIN) {
                    Some(left) if !left.is_zero() => left.min(config.timeout),
                    _ => {
                        return Err(AttemptError {
                            error: DiditError::Timeout,
                            maybe_sent: false,
                        });
                    }
                }
            }
            None => config.timeout,
        };
        let mut builder = http
            .get(url)
            .timeout(timeout)
            .header("x-api-key", key.expose())
            .header(http::header::ACCEPT, "application/json");
        if !ctx.request_id.is_empty() {
            builder = builder.header("x-request-id", &ctx.request_id);
        }
        if let Some(traceparent) = &ctx.traceparent {
            builder = builder.header("traceparent", traceparent);
        }
        let (outcome, _) = self.measured_exchange(endpoint, builder).await;
        let (status, headers, bytes) = outcome?;
        if status == 200 {
            return Ok((status, bytes));
        }
        let request_id = upstream_request_id(&headers);
        let retry_after = parse_retry_after(
            headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
        );
        let error = if (200..300).contains(&status) {
            protocol(status, format!("unexpected success status {status}"))
        } else {
            classify(
                endpoint,
                status,
                &bytes,
                retry_after,
                request_id,
                &[key.expose()],
            )
        };
        Err(AttemptError {
            error,
            maybe_sent: true,
        })
    }
}
