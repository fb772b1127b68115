//! The HTTP client for Didit's two endpoints: pooled keep-alive connections
//! over rustls, per-attempt timeouts bounded by the caller's deadline, and
//! the retry rules (share retries outages; import retries only what never
//! left the gateway, because a second import POST is answered 403).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::time::Instant;

use super::classify::{Endpoint, classify, parse_retry_after};
use super::error::DiditError;
use super::retry::RetryBudget;
use super::wire::{ImportBody, ImportReplyHead, ShareBody, ShareReply};
use crate::config::UpstreamConfig;
use crate::metrics::{EndpointLabels, Metrics, UpstreamLabels};
use crate::session::{
    ImportRequest, ImportedSession, SessionKind, ShareOutcome, ShareRequest, ShareToken,
};
use crate::tenant::ApiKey;

/// Largest upstream body the gateway reads (a cloned session with every
/// check array is tens of KB; images are URLs).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Time kept back from the caller's deadline so the answer can still reach it.
const DEADLINE_MARGIN: Duration = Duration::from_millis(20);

/// What a call carries besides its request: deadline and trace ids.
#[derive(Clone, Debug, Default)]
pub struct CallContext {
    /// When the caller stops waiting (from `grpc-timeout`).
    pub deadline: Option<Instant>,
    /// Our request id, sent upstream as `x-request-id`.
    pub request_id: String,
    /// W3C trace context to propagate.
    pub traceparent: Option<String>,
}

/// A pooled client for one Didit base URL.
#[derive(Clone)]
pub struct DiditClient {
    http: reqwest::Client,
    config: Arc<UpstreamConfig>,
    budget: Arc<RetryBudget>,
    metrics: Metrics,
}

/// One attempt's failure, with whether the request may have reached Didit.
struct AttemptError {
    error: DiditError,
    /// False only when the connection was never established.
    maybe_sent: bool,
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
            config: Arc::new(UpstreamConfig {
                base_url: config.base_url.trim_end_matches('/').to_owned(),
                ..config
            }),
            budget: Arc::new(RetryBudget::default()),
            metrics,
        })
    }

    /// `POST /v3/session/{id}/share/`.
    pub async fn share(
        &self,
        key: &ApiKey,
        request: &ShareRequest,
        ctx: &CallContext,
    ) -> Result<ShareOutcome, DiditError> {
        let url = format!(
            "{}/v3/session/{}/share/",
            self.config.base_url, request.session_id
        );
        let body = serde_json::to_vec(&ShareBody {
            for_application_id: request.for_application_id,
            ttl_in_seconds: request.ttl_seconds,
        })
        .map_err(|e| protocol(0, format!("cannot encode share body: {e}")))?;
        let (status, bytes) = self
            .call(Endpoint::Share, &url, key, Bytes::from(body), &[], ctx)
            .await?;
        let reply: ShareReply = serde_json::from_slice(&bytes).map_err(|e| {
            protocol(
                status,
                format!("share answer is not the expected JSON: {e}"),
            )
        })?;
        let session_kind = SessionKind::parse(&reply.session_kind)
            .ok_or_else(|| protocol(status, "share answer has an unknown session_kind".into()))?;
        if reply.share_token.is_empty() {
            return Err(protocol(
                status,
                "share answer has an empty share_token".into(),
            ));
        }
        let share_token = ShareToken::new(reply.share_token);
        let expires_at = share_token.unverified_expiry().unwrap_or_else(|| {
            SystemTime::now() + Duration::from_secs(u64::from(request.ttl_seconds))
        });
        Ok(ShareOutcome {
            share_token,
            for_application_id: reply.for_application_id,
            session_kind,
            expires_at,
        })
    }

    /// `POST /v3/session/import-shared/`.
    pub async fn import(
        &self,
        key: &ApiKey,
        request: &ImportRequest,
        ctx: &CallContext,
    ) -> Result<ImportedSession, DiditError> {
        let url = format!("{}/v3/session/import-shared/", self.config.base_url);
        let token = request.share_token.expose();
        let body = serde_json::to_vec(&ImportBody {
            share_token: token,
            workflow_id: &request.params.workflow_id,
            vendor_data: &request.params.vendor_data,
            trust_review: request.params.trust_review,
        })
        .map_err(|e| protocol(0, format!("cannot encode import body: {e}")))?;
        let (status, raw) = self
            .call(
                Endpoint::Import,
                &url,
                key,
                Bytes::from(body),
                &[token],
                ctx,
            )
            .await?;
        let head: ImportReplyHead = serde_json::from_slice(&raw).map_err(|e| {
            protocol(
                status,
                format!("import answer is not the expected JSON: {e}"),
            )
        })?;
        let session_kind = SessionKind::parse(&head.session_kind)
            .ok_or_else(|| protocol(status, "import answer has an unknown session_kind".into()))?;
        Ok(ImportedSession {
            raw,
            session_id: head.session_id,
            session_kind,
            status_raw: head.status,
        })
    }

    /// Sends with retries; returns the 2xx status and body.
    async fn call(
        &self,
        endpoint: Endpoint,
        url: &str,
        key: &ApiKey,
        body: Bytes,
        secrets: &[&str],
        ctx: &CallContext,
    ) -> Result<(u16, Bytes), DiditError> {
        let label = EndpointLabels {
            endpoint: endpoint.label(),
        };
        self.budget.deposit();
        let mut attempt = 1;
        loop {
            let result = self
                .attempt(endpoint, url, key, body.clone(), secrets, ctx)
                .await;
            let err = match result {
                Ok(ok) => return Ok(ok),
                Err(err) => err,
            };
            let retry_after = match &err.error {
                DiditError::RateLimited { retry_after, .. } => *retry_after,
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
            attempt += 1;
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
        if let Some(traceparent) = &ctx.traceparent {
            builder = builder.header("traceparent", traceparent);
        }
        let started = std::time::Instant::now();
        self.metrics.upstream_in_flight.inc();
        let outcome = self.exchange(builder.body(body)).await;
        self.metrics.upstream_in_flight.dec();
        let elapsed = started.elapsed();
        self.metrics
            .upstream_latency
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.label(),
            })
            .observe(elapsed.as_secs_f64());
        let status_label = match &outcome {
            Ok((status, ..)) => status.to_string(),
            Err(_) => "error".to_owned(),
        };
        self.metrics
            .upstream_requests
            .get_or_create(&UpstreamLabels {
                endpoint: endpoint.label(),
                status: status_label,
            })
            .inc();
        let (status, headers, bytes) = outcome?;
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(128).collect::<String>());
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
        );
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

/// Whether a failed attempt may be sent again (attempt limit, deadline
/// and budget permitting).
fn retryable(endpoint: Endpoint, err: &AttemptError) -> bool {
    // A request that never left (connect refused or timed out) can always
    // be sent again.
    if !err.maybe_sent {
        return true;
    }
    match endpoint {
        // Minting a token twice is harmless: retry outages and 429s that
        // say when to come back.
        Endpoint::Share => match &err.error {
            DiditError::Unavailable { reply, .. } => {
                reply.as_ref().is_none_or(|r| matches!(r.status, 502..=504))
            }
            DiditError::RateLimited { retry_after, .. } => retry_after.is_some(),
            _ => false,
        },
        // A second import POST would be refused as a duplicate.
        Endpoint::Import => false,
    }
}

fn protocol(status: u16, cause: String) -> DiditError {
    DiditError::Protocol { cause, status }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::didit::UpstreamReply;

    fn sent(error: DiditError) -> AttemptError {
        AttemptError {
            error,
            maybe_sent: true,
        }
    }

    fn status(status: u16) -> DiditError {
        DiditError::Unavailable {
            cause: format!("HTTP {status}"),
            reply: Some(UpstreamReply {
                status,
                detail: String::new(),
                field: None,
                request_id: None,
            }),
        }
    }

    #[test]
    fn a_request_that_never_left_is_retried_for_both_endpoints() {
        // A connect timeout is classified as a timeout, not an outage.
        let connect_timeout = AttemptError {
            error: DiditError::Timeout,
            maybe_sent: false,
        };
        assert!(retryable(Endpoint::Share, &connect_timeout));
        assert!(retryable(Endpoint::Import, &connect_timeout));
    }

    #[test]
    fn share_retries_outages_and_timed_429s_import_nothing_sent() {
        for code in [502, 503, 504] {
            assert!(retryable(Endpoint::Share, &sent(status(code))), "{code}");
            assert!(!retryable(Endpoint::Import, &sent(status(code))), "{code}");
        }
        assert!(!retryable(Endpoint::Share, &sent(status(500))));
        let lost = DiditError::Unavailable {
            cause: "connection lost before a complete answer".into(),
            reply: None,
        };
        assert!(retryable(Endpoint::Share, &sent(lost.clone())));
        assert!(!retryable(Endpoint::Import, &sent(lost)));
        let rate_limited = |retry_after| DiditError::RateLimited {
            retry_after,
            reply: UpstreamReply {
                status: 429,
                detail: String::new(),
                field: None,
                request_id: None,
            },
        };
        let with_wait = rate_limited(Some(Duration::from_secs(1)));
        assert!(retryable(Endpoint::Share, &sent(with_wait.clone())));
        assert!(!retryable(Endpoint::Import, &sent(with_wait)));
        assert!(!retryable(Endpoint::Share, &sent(rate_limited(None))));
        assert!(!retryable(Endpoint::Share, &sent(DiditError::Timeout)));
        assert!(!retryable(Endpoint::Import, &sent(DiditError::Timeout)));
    }
}
