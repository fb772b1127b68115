//! One call's record: its metric samples, its log line and its audit
//! event, written exactly once, when the call ends or, through the drop
//! guard, when the caller cancels it (tonic drops the handler future).

use tonic::Code;

use super::call::code_name;
use crate::audit::{AuditEvent, AuditFields, UpstreamStatus};
use crate::error::GatewayError;
use crate::metrics::{Metrics, RpcLatencyLabels};

/// Who made the call and for which tenant, as the record reports it.
pub(super) struct CallLabels {
    /// The RPC's method name.
    pub method: &'static str,
    /// The configured tenant, or `unknown`.
    pub tenant: String,
    /// The caller's identity (`-` in `none` mode, `<why>` without one).
    pub caller: String,
    /// The call's request id.
    pub request_id: String,
}

/// One call's metrics, log line and audit event. Recorded by
/// [`finish`](Self::finish), or on drop as CANCELLED when the caller went
/// away mid-call, so the in-flight gauge never leaks and no call escapes
/// the audit trail.
pub(super) struct CallRecord {
    metrics: Metrics,
    labels: CallLabels,
    /// The audit event being filled; `None` when `[audit] enabled = false`.
    audit: Option<AuditFields>,
    /// Didit's last answer to this call, if it reached Didit.
    upstream_status: UpstreamStatus,
    started: std::time::Instant,
    finished: bool,
}

impl CallRecord {
    /// Starts the record (counts the call in flight).
    pub fn start(
        metrics: &Metrics,
        labels: CallLabels,
        audit: Option<AuditFields>,
        upstream_status: UpstreamStatus,
    ) -> Self {
        metrics.rpcs_in_flight.inc();
        Self {
            metrics: metrics.clone(),
            labels,
            audit,
            upstream_status,
            started: std::time::Instant::now(),
            finished: false,
        }
    }

    /// Records the call's end: success or `error`.
    pub fn finish(mut self, error: Option<&GatewayError>) {
        self.finished = true;
        match error {
            None => self.record(Code::Ok, "", None),
            Some(err) => {
                let (code, reason) = err.code_and_reason();
                self.record(code, reason, Some(err));
            }
        }
    }

    fn record(&self, code: Code, reason: &'static str, error: Option<&GatewayError>) {
        let elapsed = self.started.elapsed();
        let CallLabels {
            method,
            tenant,
            caller,
            request_id,
        } = &self.labels;
        let method = *method;
        self.metrics
            .rpc_latency
            .get_or_create(&RpcLatencyLabels {
                method,
                tenant: tenant.clone(),
            })
            .observe(elapsed.as_secs_f64());
        self.metrics
            .count_call(method, tenant, code_name(code), reason);
        self.audit(code, reason, error);
        // Whole microseconds: enough precision, no float noise in the logs.
        let latency_ms = elapsed.as_micros() as f64 / 1e3;
        match (code, error) {
            (Code::Ok, _) => {
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

    /// Emits the audit event: the RPC's fields as its work filled them,
    /// the common ones from the call.
    fn audit(&self, code: Code, reason: &'static str, error: Option<&GatewayError>) {
        let Some(fields) = &self.audit else { return };
        let labels = &self.labels;
        let event = AuditEvent {
            request_id: labels.request_id.clone(),
            caller: labels.caller.clone(),
            tenant: labels.tenant.clone(),
            rpc: labels.method,
            code: code_name(code),
            reason: reason.to_owned(),
            upstream_status: error
                .and_then(GatewayError::upstream_status)
                .or_else(|| self.upstream_status.get()),
            ..fields.snapshot()
        };
        event.emit();
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        self.metrics.rpcs_in_flight.dec();
        if !self.finished {
            self.record(Code::Cancelled, "", None);
        }
    }
}
