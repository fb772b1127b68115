//! `didit.share.v1.ShareService`: `ShareSession`'s validation (every
//! violation reported at once, before any upstream call), the mapping of
//! its answer, and the handler over
//! [`Gateway::share`](crate::gateway::Gateway::share).

use std::sync::Arc;
use std::time::SystemTime;

use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::AppState;
use super::call::run_call;
use crate::audit::sha256_prefix;
use crate::error::{FieldViolation, GatewayError};
use crate::policy::Refusal;
use crate::proto::share_service_server::ShareService;
use crate::proto::{self, ShareSessionRequest, ShareSessionResponse};
use crate::session::{
    ShareOutcome, ShareRequest, TTL_DEFAULT_SECONDS, TTL_MAX_SECONDS, TTL_MIN_SECONDS,
};

/// The ShareService implementation.
pub struct ShareApi {
    /// The core and what every call needs.
    state: Arc<AppState>,
}

impl ShareApi {
    /// Serves `state`.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl ShareService for ShareApi {
    async fn share_session(
        &self,
        request: Request<ShareSessionRequest>,
    ) -> Result<Response<ShareSessionResponse>, Status> {
        run_call(
            &self.state,
            "ShareSession",
            request,
            |tenant, ctx, message, audit| async move {
                let input = ShareRequest::try_from(message)?;
                audit.set(|e| {
                    e.session_id = Some(input.session_id.to_string());
                    e.for_application_id = Some(input.for_application_id.to_string());
                });
                let refused = |refusal: Refusal| refusal.record(&self.state.metrics, &tenant.id);
                // Partner and TTL before Didit is called.
                let grant = tenant
                    .policy
                    .check_share(input.for_application_id, input.ttl_seconds)
                    .map_err(refused)?;
                let outcome = self.state.gateway.share(&tenant, input, ctx).await?;
                let token_hash = sha256_prefix(outcome.share_token.expose().as_bytes());
                audit.set(|e| e.token_sha256_prefix = Some(token_hash));
                // The kind only Didit's answer tells: a token of a kind the
                // agreement does not cover is dropped here, never returned
                // (it expires unused; its hash is in the audit event).
                let decision = grant.check_kind(outcome.session_kind).map_err(refused)?;
                audit.set(|e| decision.fill_audit(e));
                Ok(outcome.into())
            },
        )
        .await
    }
}

/// Validates a share request.
impl TryFrom<ShareSessionRequest> for ShareRequest {
    type Error = GatewayError;

    fn try_from(req: ShareSessionRequest) -> Result<Self, GatewayError> {
        let mut violations = Vec::new();
        let session_id = parse_uuid("session_id", &req.session_id, &mut violations);
        let for_application_id = parse_uuid(
            "for_application_id",
            &req.for_application_id,
            &mut violations,
        );
        let ttl_seconds = req.ttl_seconds.unwrap_or(TTL_DEFAULT_SECONDS);
        if !(TTL_MIN_SECONDS..=TTL_MAX_SECONDS).contains(&ttl_seconds) {
            violations.push(FieldViolation::new(
                "ttl_seconds",
                format!("must be between {TTL_MIN_SECONDS} and {TTL_MAX_SECONDS} (unset means {TTL_DEFAULT_SECONDS})"),
            ));
        }
        match (session_id, for_application_id, violations.is_empty()) {
            (Some(session_id), Some(for_application_id), true) => Ok(ShareRequest {
                session_id,
                for_application_id,
                ttl_seconds,
            }),
            _ => Err(GatewayError::InvalidRequest(violations)),
        }
    }
}

/// The share answer.
impl From<ShareOutcome> for ShareSessionResponse {
    fn from(outcome: ShareOutcome) -> Self {
        Self {
            share_token: outcome.share_token.expose().to_owned(),
            for_application_id: outcome.for_application_id,
            session_kind: proto::SessionKind::from(outcome.session_kind) as i32,
            expires_at: Some(timestamp(outcome.expires_at)),
        }
    }
}

fn parse_uuid(field: &'static str, raw: &str, out: &mut Vec<FieldViolation>) -> Option<Uuid> {
    if raw.is_empty() {
        out.push(FieldViolation::new(field, "is required"));
        return None;
    }
    // Only the canonical hyphenated form: it is what Didit's URLs use.
    match Uuid::try_parse(raw) {
        Ok(id) if raw.len() == 36 => Some(id),
        _ => {
            out.push(FieldViolation::new(
                field,
                "must be a uuid like 123e4567-e89b-12d3-a456-426614174000",
            ));
            None
        }
    }
}

fn timestamp(at: SystemTime) -> prost_types::Timestamp {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_validation_reports_every_violation() {
        let err = ShareRequest::try_from(ShareSessionRequest {
            session_id: "not-a-uuid".into(),
            for_application_id: String::new(),
            ttl_seconds: Some(59),
        })
        .unwrap_err();
        let GatewayError::InvalidRequest(v) = err else {
            panic!()
        };
        let fields: Vec<_> = v.iter().map(|v| v.field).collect();
        assert_eq!(fields, ["session_id", "for_application_id", "ttl_seconds"]);
    }

    #[test]
    fn ttl_bounds_and_default() {
        let ttl = |ttl| {
            ShareRequest::try_from(ShareSessionRequest {
                session_id: "11111111-1111-4111-8111-111111111111".into(),
                for_application_id: "22222222-2222-4222-8222-222222222222".into(),
                ttl_seconds: ttl,
            })
            .map(|r| r.ttl_seconds)
        };
        assert_eq!(ttl(None).unwrap(), 3600);
        assert_eq!(ttl(Some(60)).unwrap(), 60);
        assert_eq!(ttl(Some(86_400)).unwrap(), 86_400);
        assert!(ttl(Some(59)).is_err());
        assert!(ttl(Some(86_401)).is_err());
    }
}
