//! What every RPC shares, around the work of its service: resolve the
//! tenant, authorize the caller, read the deadline and trace context, then
//! record one metric sample, one log line and one audit event (see
//! [`call_record`](super::call_record)), and echo the request id.

use std::future::Future;

use futures::stream::{BoxStream, Stream, StreamExt as _};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use super::AppState;
use super::call_record::{CallLabels, CallRecord};
use crate::audit::{AuditFields, UpstreamStatus};
use crate::audit_edge::AUDITED;
use crate::auth::caller_allowed;
use crate::budget::TenantBudget;
use crate::didit::CallContext;
use crate::error::GatewayError;
use crate::tenant::{TENANT_HEADER, Tenant};
use crate::trace_context::upstream_traceparent;

/// The mark telling the edge layer this answer was audited here (stripped
/// before the caller sees it).
const AUDITED_VALUE: &str = "1";

/// The metadata key of the request id, echoed on every answer.
const REQUEST_ID: &str = "x-request-id";

/// The most time kept back from the caller's deadline so that our
/// DEADLINE_EXCEEDED, with its details, reaches the caller before its own
/// timer fires (under load a few ms are not enough).
const DEADLINE_MARGIN: Duration = Duration::from_millis(50);

/// Runs one call of `method`: tenant lookup, caller authorization, context,
/// the `work` on the request message, metrics, the log line and the audit
/// event. `work` fills its RPC's audit fields through the [`AuditFields`]
/// it is given; the common ones (request id, caller, tenant, RPC, code,
/// reason, upstream status) are filled here, for refused, failed and
/// cancelled calls too.
pub(super) async fn run_call<M, T, F, Fut>(
    state: &AppState,
    method: &'static str,
    request: Request<M>,
    work: F,
) -> Result<Response<T>, Status>
where
    F: FnOnce(Arc<Tenant>, CallContext, M, AuditFields) -> Fut,
    Fut: Future<Output = Result<T, GatewayError>>,
{
    let (result, record, span, request_id) = begin(state, method, request, work).await;
    finish(&span, record, result.as_ref().err());
    answer(result, &request_id)
}

/// Runs one server-streaming call of `method` like [`run_call`], except
/// that the call's record (metrics, log line, audit event) is written when
/// the stream ends: with the status of its last item, OK when it runs out,
/// CANCELLED when the caller goes away first.
pub(super) async fn run_stream<M, S, I, F, Fut>(
    state: &AppState,
    method: &'static str,
    request: Request<M>,
    work: F,
) -> Result<Response<BoxStream<'static, Result<I, Status>>>, Status>
where
    F: FnOnce(Arc<Tenant>, CallContext, M, AuditFields) -> Fut,
    Fut: Future<Output = Result<S, GatewayError>>,
    S: Stream<Item = Result<I, GatewayError>> + Send + 'static,
    I: Send + 'static,
{
    let (result, record, span, request_id) = begin(state, method, request, work).await;
    let items = match result {
        Ok(items) => items,
        Err(err) => {
            finish(&span, record, Some(&err));
            return answer(Err(err), &request_id);
        }
    };
    let ending = Some((Box::pin(items), record, span, request_id.clone()));
    let stream = futures::stream::unfold(ending, |ending| async move {
        let (mut items, record, span, request_id) = ending?;
        match items.next().await {
            Some(Ok(item)) => Some((Ok(item), Some((items, record, span, request_id)))),
            Some(Err(err)) => {
                finish(&span, record, Some(&err));
                let mut status = Status::from(err);
                if let Ok(v) = MetadataValue::try_from(request_id.as_str()) {
                    status.metadata_mut().insert(REQUEST_ID, v);
                }
                Some((Err(status), None))
            }
            None => {
                finish(&span, record, None);
                None
            }
        }
    });
    answer(Ok(stream.boxed()), &request_id)
}

/// Ends the call's record and its span with the call's status code.
fn finish(span: &tracing::Span, record: CallRecord, err: Option<&GatewayError>) {
    let code = err.map_or(tonic::Code::Ok, |err| err.code_and_reason().0);
    span.record("rpc.grpc.status_code", code as i32);
    span.in_scope(|| record.finish(err));
}

/// The part every call shares: tenant, caller, context, then `work`.
async fn begin<M, T, F, Fut>(
    state: &AppState,
    method: &'static str,
    request: Request<M>,
    work: F,
) -> (Result<T, GatewayError>, CallRecord, tracing::Span, String)
where
    F: FnOnce(Arc<Tenant>, CallContext, M, AuditFields) -> Fut,
    Fut: Future<Output = Result<T, GatewayError>>,
{
    // The verified client certificates of the connection (mtls mode).
    let peer_certs = request.peer_certs();
    let (metadata, _, message) = request.into_parts();
    let metadata = &metadata;
    let request_id = request_id(metadata);
    let settings = state.settings();
    let tenant = settings
        .tenants
        .resolve(metadata.get(TENANT_HEADER).and_then(|v| v.to_str().ok()));
    // Only configured ids become labels: cardinality stays bounded.
    let tenant_label = match &tenant {
        Ok(tenant) => tenant.id.to_string(),
        Err(_) => "unknown".to_owned(),
    };
    let caller = settings
        .auth
        .identify(metadata, peer_certs.as_deref().map(Vec::as_slice));
    let caller_label = match &caller {
        Ok(Some(id)) => id.clone(),
        Ok(None) => "-".to_owned(),
        Err(err) => format!("<{err}>"),
    };
    let traceparent =
        upstream_traceparent(metadata.get("traceparent").and_then(|v| v.to_str().ok()));
    let span = tracing::info_span!(
        "rpc",
        %request_id,
        tenant = %tenant_label,
        method,
        "otel.kind" = "server",
        "otel.name" = method,
        "rpc.system" = "grpc",
        "rpc.method" = method,
        "rpc.grpc.status_code" = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    crate::otel::continue_trace(&span, Some(&traceparent));
    crate::otel::record_ids(&span);
    let audit = settings.audit.enabled.then(AuditFields::default);
    let upstream_status = UpstreamStatus::default();
    let record = CallRecord::start(
        &state.metrics,
        CallLabels {
            method,
            tenant: tenant_label,
            caller: caller_label,
            request_id: request_id.clone(),
        },
        audit.clone(),
        upstream_status.clone(),
    );
    let result = async {
        let tenant = tenant?;
        authorize(&tenant, caller)?;
        // Authorized: only now may the call spend anything of the tenant's
        // (its Didit budget is charged per request sent, in the transport).
        let deadline =
            grpc_timeout(metadata).map(|t| Instant::now() + t.saturating_sub(deadline_margin(t)));
        let ctx = CallContext {
            deadline,
            caller_deadline: deadline,
            budget: tenant.budget().map(|budget| TenantBudget {
                tenant: Arc::clone(&tenant.id),
                budget,
            }),
            request_id: request_id.clone(),
            traceparent: Some(traceparent),
            upstream_status,
        };
        work(tenant, ctx, message, audit.unwrap_or_default()).await
    }
    .instrument(span.clone())
    .await;
    (result, record, span, request_id)
}

/// The answer to the caller, with the request id echoed.
fn answer<T>(result: Result<T, GatewayError>, request_id: &str) -> Result<Response<T>, Status> {
    let id_value = MetadataValue::try_from(request_id).ok();
    match result {
        Ok(message) => {
            let mut response = Response::new(message);
            if let Some(v) = id_value {
                response.metadata_mut().insert(REQUEST_ID, v);
            }
            response
                .metadata_mut()
                .insert(AUDITED, MetadataValue::from_static(AUDITED_VALUE));
            Ok(response)
        }
        Err(err) => {
            let mut status = Status::from(err);
            if let Some(v) = id_value {
                status.metadata_mut().insert(REQUEST_ID, v);
            }
            status
                .metadata_mut()
                .insert(AUDITED, MetadataValue::from_static(AUDITED_VALUE));
            Err(status)
        }
    }
}

/// Time kept back from a caller's deadline: a fifth of it, at most 50 ms.
fn deadline_margin(timeout: Duration) -> Duration {
    (timeout / 5).min(DEADLINE_MARGIN)
}

/// May the identified caller act for `tenant`? (`None` = auth mode none.)
fn authorize(
    tenant: &Tenant,
    caller: Result<Option<String>, crate::auth::IdentityError>,
) -> Result<(), GatewayError> {
    match caller {
        Ok(None) => Ok(()),
        Ok(Some(identity)) if caller_allowed(&tenant.allowed_callers, &identity) => Ok(()),
        Ok(Some(identity)) => Err(GatewayError::CallerNotAllowed {
            caller: identity,
            tenant: tenant.id.to_string(),
        }),
        Err(err) => Err(GatewayError::CallerNotAllowed {
            caller: format!("<{err}>"),
            tenant: tenant.id.to_string(),
        }),
    }
}

/// The caller's request id if it is sane, else a new one.
fn request_id(metadata: &MetadataMap) -> String {
    metadata
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            uuid::Builder::from_random_bytes(rand::random())
                .into_uuid()
                .to_string()
        })
}

/// Parses `grpc-timeout` ("200m", "5S", ...).
pub(crate) fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let raw = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = raw.split_at(raw.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The canonical upper-case name of a gRPC code, for labels and logs.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_units() {
        let mut md = MetadataMap::new();
        for (raw, want) in [
            ("200m", Some(Duration::from_millis(200))),
            ("5S", Some(Duration::from_secs(5))),
            ("1H", Some(Duration::from_secs(3600))),
            ("10u", Some(Duration::from_micros(10))),
            ("x", None),
            ("123456789S", None),
        ] {
            md.insert("grpc-timeout", raw.parse().unwrap());
            assert_eq!(grpc_timeout(&md), want, "{raw}");
        }
    }
}
