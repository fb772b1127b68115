//! The audit events of calls answered before they reach a service: shed
//! or rate-limited by the admission layers, or refused by tonic's decoder
//! (an oversized message). Every other call is audited by the service's
//! `run_call`, which marks its answers with [`AUDITED`]; this outermost
//! layer strips the mark and writes the event for an unmarked gateway
//! answer, so that every RPC has exactly one event.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::audit::AuditEvent;
use crate::service::{AppState, code_name};
use crate::tenant::tenant_header;

/// The response header `run_call` sets on every answer it audited; never
/// sent to the caller.
pub const AUDITED: &str = "x-dsg-audited";

/// Paths of the gateway's own RPCs (health and reflection are not audited).
const GATEWAY_PREFIX: &str = "/didit.share.v1.";

/// The RPCs the event can name (the `rpc` field is a static name).
const RPCS: [&str; 4] = [
    "ShareSession",
    "ImportSharedSession",
    "GetSession",
    "WatchSessionEvents",
];

/// What the audit event of a call refused at the edge knows: the request's
/// headers, read before the call went in.
#[derive(Clone, Debug)]
pub struct EdgeCall {
    request_id: String,
    tenant: String,
    rpc: &'static str,
}

impl EdgeCall {
    /// The call of `request` if it is a gateway RPC and the trail is on.
    pub fn of<B>(request: &http::Request<B>, state: &AppState) -> Option<Self> {
        let path = request.uri().path();
        let method = path.strip_prefix(GATEWAY_PREFIX)?.rsplit('/').next()?;
        let settings = state.settings();
        if !settings.audit.enabled {
            return None;
        }
        let headers = request.headers();
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
            .map_or_else(|| "-".to_owned(), str::to_owned);
        let tenant = settings
            .tenants
            .resolve(tenant_header(headers))
            .map_or_else(|_| "unknown".to_owned(), |t| t.id.to_string());
        Some(Self {
            request_id,
            tenant,
            rpc: RPCS.into_iter().find(|r| *r == method).unwrap_or("<other>"),
        })
    }

    /// Writes the event of this call, answered `code` / `reason`.
    pub fn emit(&self, code: Code, reason: String) {
        AuditEvent {
            request_id: self.request_id.clone(),
            caller: "<not identified: refused before the service>".to_owned(),
            tenant: self.tenant.clone(),
            rpc: self.rpc,
            code: code_name(code),
            reason,
            ..AuditEvent::default()
        }
        .emit();
    }
}

/// The layer of [`RefusalAudit`].
#[derive(Clone)]
pub struct RefusalAuditLayer(pub Arc<AppState>);

impl<S> tower::Layer<S> for RefusalAuditLayer {
    type Service = RefusalAudit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RefusalAudit {
            inner,
            state: Arc::clone(&self.0),
        }
    }
}

/// Audits the answers that did not go through `run_call`.
#[derive(Clone)]
pub struct RefusalAudit<S> {
    inner: S,
    state: Arc<AppState>,
}

type HttpResponse = http::Response<tonic::body::Body>;

impl<S, B> tower::Service<http::Request<B>> for RefusalAudit<S>
where
    S: tower::Service<http::Request<B>, Response = HttpResponse> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<HttpResponse, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let call = EdgeCall::of(&request, &self.state);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            let audited = response.headers_mut().remove(AUDITED).is_some();
            // An answer without grpc-status in its headers carries it in
            // its trailers: only tonic's decoder answers so without
            // `run_call` (audited by `message_limits`).
            if let (false, Some(call)) = (audited, call)
                && let Some(status) = tonic::Status::from_header_map(response.headers())
            {
                let reason = status
                    .get_details_error_info()
                    .map(|info| info.reason)
                    .unwrap_or_default();
                call.emit(status.code(), reason);
            }
            Ok(response)
        })
    }
}
