//! `didit.share.v1.ImportService`: `ImportSharedSession`'s validation
//! (every string bounded, every violation reported at once, before any
//! upstream call), the tenant's partner policy, and the handler over
//! [`Gateway::import`](crate::gateway::Gateway::import), which answers with
//! the stored record's encoded response ([`EncodedAnswer`]).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::AppState;
use super::EncodedAnswer;
use super::call::run_call;
use crate::audit::{AuditEvent, sha256_prefix};
use crate::error::{FieldViolation, GatewayError};
use crate::gateway::ImportOutcome;
use crate::proto::ImportSharedSessionRequest;
use crate::session::{ImportParams, ImportRequest, ShareToken};
use crate::share_token::read_claims;

/// Longest share token accepted (Didit's are a few hundred bytes).
pub const MAX_SHARE_TOKEN_BYTES: usize = 4096;
/// Longest workflow id accepted.
pub const MAX_WORKFLOW_ID_BYTES: usize = 128;
/// Longest vendor_data accepted.
pub const MAX_VENDOR_DATA_BYTES: usize = 1024;

/// The ImportService implementation.
pub struct ImportApi {
    /// The core and what every call needs.
    state: Arc<AppState>,
}

impl ImportApi {
    /// Serves `state`.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

impl ImportApi {
    /// `ImportSharedSession`: the answer is the stored record's encoded
    /// response, flagged `replayed` (and `recovered`) when it was not this
    /// call's import. Served by [`ImportServer`](super::ImportServer).
    pub async fn import_shared_session(
        &self,
        request: Request<ImportSharedSessionRequest>,
    ) -> Result<Response<EncodedAnswer>, Status> {
        run_call(
            &self.state,
            "ImportSharedSession",
            request,
            |tenant, ctx, message, audit| async move {
                let input = ImportRequest::try_from(message)?;
                audit.set(|e| fill_audit(e, &input));
                // On every call, before the replay lookup: a revoked
                // agreement stops replays too.
                let decision = tenant
                    .policy
                    .check_import(
                        tenant.application_id,
                        input.share_token.expose(),
                        input.params.trust_review,
                    )
                    .map_err(|refusal| refusal.record(&self.state.metrics, &tenant.id))?;
                audit.set(|e| decision.fill_audit(e));
                let outcome = self.state.gateway.import(&tenant, input, ctx).await?;
                audit.set(|e| {
                    e.new_session_id = Some(outcome.stored.session_id.clone());
                    e.replayed = outcome.replayed;
                });
                Ok(answer(&outcome))
            },
        )
        .await
    }
}

/// The answer to send: the stored bytes with this call's flags.
fn answer(outcome: &ImportOutcome) -> EncodedAnswer {
    EncodedAnswer::new(
        outcome.stored.answer.clone(),
        outcome.replayed,
        outcome.replayed && outcome.stored.recovered,
    )
}

/// An import's audit fields known before Didit answers: hashes of the
/// token and vendor_data (never the values), the workflow, and the source
/// session named by the token's (unverified) claims.
fn fill_audit(event: &mut AuditEvent, input: &ImportRequest) {
    let token = input.share_token.expose();
    event.token_sha256_prefix = Some(sha256_prefix(token.as_bytes()));
    event.session_id = read_claims(token)
        .ok()
        .map(|claims| claims.session_id.to_string());
    event.workflow_id = Some(input.params.workflow_id.clone());
    let vendor_data = &input.params.vendor_data;
    event.vendor_data_sha256_prefix =
        (!vendor_data.is_empty()).then(|| sha256_prefix(vendor_data.as_bytes()));
}

/// Validates an import request.
impl TryFrom<ImportSharedSessionRequest> for ImportRequest {
    type Error = GatewayError;

    fn try_from(req: ImportSharedSessionRequest) -> Result<Self, GatewayError> {
        let mut violations = Vec::new();
        check_text(
            "share_token",
            &req.share_token,
            MAX_SHARE_TOKEN_BYTES,
            true,
            &mut violations,
        );
        if req.share_token.chars().any(char::is_whitespace) {
            violations.push(FieldViolation::new(
                "share_token",
                "must not contain whitespace",
            ));
        }
        check_text(
            "workflow_id",
            &req.workflow_id,
            MAX_WORKFLOW_ID_BYTES,
            true,
            &mut violations,
        );
        check_text(
            "vendor_data",
            &req.vendor_data,
            MAX_VENDOR_DATA_BYTES,
            false,
            &mut violations,
        );
        if !violations.is_empty() {
            return Err(GatewayError::InvalidRequest(violations));
        }
        Ok(ImportRequest {
            share_token: ShareToken::new(req.share_token),
            params: ImportParams {
                workflow_id: req.workflow_id,
                vendor_data: req.vendor_data,
                trust_review: req.trust_review,
            },
        })
    }
}

fn check_text(
    field: &'static str,
    value: &str,
    max: usize,
    required: bool,
    out: &mut Vec<FieldViolation>,
) {
    if value.is_empty() {
        if required {
            out.push(FieldViolation::new(field, "is required"));
        }
    } else if value.len() > max {
        out.push(FieldViolation::new(
            field,
            format!("must be at most {max} bytes"),
        ));
    } else if value.chars().any(char::is_control) {
        out.push(FieldViolation::new(
            field,
            "must not contain control characters",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_validation_bounds_every_string() {
        let err = ImportRequest::try_from(ImportSharedSessionRequest {
            share_token: String::new(),
            workflow_id: "w".repeat(MAX_WORKFLOW_ID_BYTES + 1),
            vendor_data: "a\u{0}b".into(),
            trust_review: true,
        })
        .unwrap_err();
        let GatewayError::InvalidRequest(v) = err else {
            panic!()
        };
        let fields: Vec<_> = v.iter().map(|v| v.field).collect();
        assert_eq!(fields, ["share_token", "workflow_id", "vendor_data"]);
    }
}
