//! What every RPC shares, around the work of its service: resolve the
//! tenant, authorize the caller, read the deadline and trace context, then
//! record one metric sample and one log line, and echo the request id.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use super::AppState;
use crate::auth::caller_allowed;
use crate::didit::CallContext;
use crate::error::GatewayError;
use crate::metrics::{Metrics, RpcLatencyLabels};
use crate::tenant::{TENANT_HEADER, Tenant};

/// The metadata key of the request id, echoed on every answer.
const REQUEST_ID: &str = "x-request-id";

/// The most time kept back from the caller's deadline so that our
/// DEADLINE_EXCEEDED, with its details, reaches the caller before its own
/// timer fires (under load a few ms are not enough).
const DEADLINE_MARGIN: Duration = Duration::from_millis(50);

/// Runs one call of `method`: tenant lookup, caller authorization, context,
/// the `work` on the request message, metrics and the log line.
pub(super) async fn run_call<M, T, F, Fut>(
    state: &AppState,
    method: &'static str,
    request: Request<M>,
    work: F,
) -> Result<Response<T>, Status>
where
    F: FnOnce(Arc<Tenant>, CallContext, M) -> Fut,
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
        Ok(tenant) => tenant.id.clone(),
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
    let traceparent = traceparent(metadata);
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
    crate::otel::continue_trace(&span, traceparent.as_deref());
    crate::otel::record_ids(&span);
    let record = CallRecord::start(
        &state.metrics,
        method,
        tenant_label,
        caller_label,
        request_id.clone(),
    );
    let result = async {
        let tenant = tenant?;
        authorize(&tenant, caller)?;
        let ctx = CallContext {
            deadline: grpc_timeout(metadata)
                .map(|t| Instant::now() + t.saturating_sub(deadline_margin(t))),
            request_id: request_id.clone(),
            traceparent,
        };
        work(tenant, ctx, message).await
    }
    .instrument(span.clone())
    .await;
    let code = match &result {
        Ok(_) => tonic::Code::Ok,
        Err(err) => err.code_and_reason().0,
    };
    span.record("rpc.grpc.status_code", code as i32);
    span.in_scope(|| record.finish(result.as_ref().err()));
    let id_value = MetadataValue::try_from(request_id.as_str()).ok();
    match result {
        Ok(message) => {
            let mut response = Response::new(message);
            if let Some(v) = id_value {
                response.metadata_mut().insert(REQUEST_ID, v);
            }
            Ok(response)
        }
        Err(err) => {
            let mut status = Status::from(err);
            if let Some(v) = id_value {
                status.metadata_mut().insert(REQUEST_ID, v);
            }
            Err(status)
        }
    }
}

/// One call's metrics and log line. Recorded by [`finish`](Self::finish),
/// or on drop as CANCELLED when the caller went away mid-call (tonic drops
/// the handler future), so the in-flight gauge never leaks.
struct CallRecord<'a> {
    metrics: &'a Metrics,
    method: &'static str,
    tenant: String,
    caller: String,
    request_id: String,
    started: std::time::Instant,
    finished: bool,
}

impl<'a> CallRecord<'a> {
    fn start(
        metrics: &'a Metrics,
        method: &'static str,
        tenant: String,
        caller: String,
        request_id: String,
    ) -> Self {
        metrics.rpcs_in_flight.inc();
        Self {
            metrics,
            method,
            tenant,
            caller,
            request_id,
            started: std::time::Instant::now(),
            finished: false,
        }
    }

    fn finish(mut self, error: Option<&GatewayError>) {
        self.finished = true;
        match error {
            None => self.record(tonic::Code::Ok, "", None),
            Some(err) => {
                let (code, reason) = err.code_and_reason();
                self.record(code, reason, Some(err));
            }
        }
    }

    fn record(&self, code: tonic::Code, reason: &'static str, error: Option<&GatewayError>) {
        let elapsed = self.started.elapsed();
        let (method, tenant) = (self.method, self.tenant.clone());
        self.metrics
            .rpc_latency
            .get_or_create(&RpcLatencyLabels {
                method,
                tenant: tenant.clone(),
            })
            .observe(elapsed.as_secs_f64());
        self.metrics
            .count_call(method, &tenant, code_name(code), reason);
        // Whole microseconds: enough precision, no float noise in the logs.
        let latency_ms = elapsed.as_micros() as f64 / 1e3;
        let (request_id, tenant, caller) = (&self.request_id, &self.tenant, &self.caller);
        match (code, error) {
            (tonic::Code::Ok, _) => {
                tracing::info!(%request_id, %tenant, %caller, method, code = "OK", latency_ms, "call")
            }
            (_, Some(err)) => tracing::warn!(
                %request_id,
                %tenant,
                %caller,
                method,
                code = code_name(code),
                reason,
                latency_ms,
                error = %err,
                "call failed"
            ),
            (_, None) => tracing::info!(
                %request_id,
                %tenant,
                %caller,
                method,
                code = code_name(code),
                latency_ms,
                "call cancelled by the caller"
            ),
        }
    }
}

impl Drop for CallRecord<'_> {
    fn drop(&mut self) {
        self.metrics.rpcs_in_flight.dec();
        if !self.finished {
            self.record(tonic::Code::Cancelled, "", None);
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
            tenant: tenant.id.clone(),
        }),
        Err(err) => Err(GatewayError::CallerNotAllowed {
            caller: format!("<{err}>"),
            tenant: tenant.id.clone(),
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

/// A well-formed W3C `traceparent`, to forward upstream.
fn traceparent(metadata: &MetadataMap) -> Option<String> {
    let value = metadata.get("traceparent")?.to_str().ok()?;
    let parts: Vec<&str> = value.split('-').collect();
    let shape = [2, 32, 16, 2];
    let ok = parts.len() == 4
        && parts
            .iter()
            .zip(shape)
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then(|| value.to_owned())
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

    #[test]
    fn only_well_formed_traceparents_are_forwarded() {
        let mut md = MetadataMap::new();
        md.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        assert!(traceparent(&md).is_some());
        md.insert("traceparent", "00-xyz-00f067aa0ba902b7-01".parse().unwrap());
        assert!(traceparent(&md).is_none());
    }
}
