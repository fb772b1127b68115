//! The gateway's one error type at the gRPC boundary, and the one place
//! that turns it into a `tonic::Status` with `google.rpc` details.
//!
//! Messages and details never carry an API key or a share token: variants
//! hold only classified reasons and Didit's scrubbed detail.

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::didit::{DiditError, Rejection, UpstreamReply};
use crate::policy::Refusal;
use crate::state::StateError;

/// `ErrorInfo.domain` of every error.
pub const ERROR_DOMAIN: &str = "didit-share-gateway";

/// One invalid field of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    /// The proto field name.
    pub field: &'static str,
    /// What is wrong with it (never the value itself).
    pub description: String,
}

impl FieldViolation {
    /// Shorthand used by the validators.
    pub fn new(field: &'static str, description: impl Into<String>) -> Self {
        Self {
            field,
            description: description.into(),
        }
    }
}

/// Everything a call can fail with.
#[derive(Clone, Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request failed validation; nothing was sent upstream.
    #[error("the request is invalid")]
    InvalidRequest(Vec<FieldViolation>),
    /// `x-tenant-id` is missing or names no configured tenant.
    #[error("x-tenant-id is missing or names no configured tenant")]
    UnknownTenant,
    /// The caller's identity may not act for the tenant.
    #[error("caller {caller} may not act for tenant {tenant}")]
    CallerNotAllowed {
        /// The authenticated caller identity.
        caller: String,
        /// The tenant it asked for.
        tenant: String,
    },
    /// The tenant already imported this token with other parameters (or
    /// Didit says it was imported and no stored result exists).
    #[error("this share token was already imported by this tenant")]
    AlreadyImported {
        /// The session the earlier import created, when the gateway knows it.
        session_id: Option<String>,
    },
    /// Didit answered with an error, or could not be reached.
    #[error(transparent)]
    Upstream(#[from] DiditError),
    /// The gateway is at its concurrency limit and sheds the call.
    #[error("the gateway is overloaded")]
    Overloaded,
    /// The tenant is over its Didit budget. The transport reports its own
    /// refusals as [`DiditError::BudgetExhausted`] (same code and reason);
    /// this is for refusals decided before the transport.
    #[error("the tenant is over its Didit write budget")]
    TenantRateLimited {
        /// When a token will be available again.
        retry_after: Duration,
    },
    /// The tenant's partner policy refused the call.
    #[error(transparent)]
    PolicyRefused(#[from] Refusal),
    /// The shared state (Redis) could not be reached; nothing was sent
    /// to Didit. The detail names no secret.
    #[error("the shared state is unavailable; nothing was sent to Didit")]
    StateUnavailable(String),
    /// The caller's deadline passed.
    #[error("the deadline passed before Didit answered")]
    DeadlineExceeded,
    /// A bug or a lost task; logged where it happens.
    #[error("internal error: {0}")]
    Internal(String),
    /// `WatchSessionEvents`: events after the cursor are no longer held.
    #[error(
        "events after after_event_id are no longer retained; call GetSession, then watch with an empty cursor"
    )]
    EventCursorExpired,
    /// `WatchSessionEvents`: the stream fell too far behind and was cut off.
    #[error("the stream fell too far behind; watch again with the last event_id received")]
    SlowSubscriber,
    /// The session event log (Redis) could not be reached; says which
    /// operation failed, never an event's content.
    #[error("the session event store is unavailable: {0}")]
    EventLogUnavailable(String),
    /// `WatchSessionEvents` on a gateway without a `[webhooks]` section.
    #[error("this gateway receives no webhooks (no [webhooks] section)")]
    WebhooksNotConfigured,
    /// The gateway is draining: a watch stream ends, a new one is refused.
    #[error("server is shutting down, reconnect with after_event_id")]
    ShuttingDown,
}

impl GatewayError {
    /// The gRPC code and the `ErrorInfo.reason` of this error: the error
    /// table of the contract, in one exhaustive match.
    pub fn code_and_reason(&self) -> (Code, &'static str) {
        match self {
            Self::InvalidRequest(_) => (Code::InvalidArgument, "INVALID_REQUEST"),
            Self::UnknownTenant => (Code::Unauthenticated, "UNKNOWN_TENANT"),
            Self::CallerNotAllowed { .. } => (Code::PermissionDenied, "CALLER_NOT_ALLOWED"),
            Self::AlreadyImported { .. } => (Code::AlreadyExists, "ALREADY_IMPORTED"),
            Self::Overloaded => (Code::ResourceExhausted, "OVERLOADED"),
            Self::TenantRateLimited { .. } => (Code::ResourceExhausted, "TENANT_RATE_LIMITED"),
            Self::StateUnavailable(_) => (Code::Unavailable, "STATE_UNAVAILABLE"),
            Self::DeadlineExceeded => (Code::DeadlineExceeded, "DEADLINE_EXCEEDED"),
            Self::Internal(_) => (Code::Internal, "INTERNAL"),
            Self::EventCursorExpired => (Code::OutOfRange, "EVENT_CURSOR_EXPIRED"),
            Self::SlowSubscriber => (Code::ResourceExhausted, "SLOW_SUBSCRIBER"),
            Self::EventLogUnavailable(_) => (Code::Unavailable, "STATE_UNAVAILABLE"),
            Self::WebhooksNotConfigured => (Code::FailedPrecondition, "WEBHOOKS_NOT_CONFIGURED"),
            Self::ShuttingDown => (Code::Unavailable, "SHUTTING_DOWN"),
            Self::PolicyRefused(refusal) => match refusal {
                Refusal::PartnerNotListed
                | Refusal::ShareNotAgreed
                | Refusal::ImportNotAgreed
                | Refusal::KindNotCovered { .. } => (Code::PermissionDenied, "PARTNER_NOT_ALLOWED"),
                Refusal::TrustReviewNotAgreed => {
                    (Code::PermissionDenied, "TRUST_REVIEW_NOT_ALLOWED")
                }
                Refusal::TtlAboveMaximum { .. } => (Code::InvalidArgument, "INVALID_REQUEST"),
                Refusal::TokenForAnotherApplication => {
                    (Code::PermissionDenied, "SHARE_TOKEN_WRONG_APPLICATION")
                }
                Refusal::TokenUnreadable(_) => (Code::FailedPrecondition, "SHARE_TOKEN_INVALID"),
            },
            Self::Upstream(err) => match err {
                DiditError::Rejected { rejection, .. } => match rejection {
                    Rejection::SessionNotFound => (Code::NotFound, "SESSION_NOT_FOUND"),
                    Rejection::SessionNotFinished => {
                        (Code::FailedPrecondition, "SESSION_NOT_FINISHED")
                    }
                    Rejection::CredentialsRejected => {
                        (Code::FailedPrecondition, "TENANT_CREDENTIALS_REJECTED")
                    }
                    Rejection::TokenInvalid => (Code::FailedPrecondition, "SHARE_TOKEN_INVALID"),
                    Rejection::TokenExpired => (Code::FailedPrecondition, "SHARE_TOKEN_EXPIRED"),
                    Rejection::TokenWrongApplication => {
                        (Code::PermissionDenied, "SHARE_TOKEN_WRONG_APPLICATION")
                    }
                    Rejection::AlreadyImported => (Code::AlreadyExists, "ALREADY_IMPORTED"),
                    Rejection::SourceSessionNotFound => {
                        (Code::NotFound, "SOURCE_SESSION_NOT_FOUND")
                    }
                    Rejection::WorkflowNotFound => (Code::NotFound, "WORKFLOW_NOT_FOUND"),
                    Rejection::InvalidRequest => (Code::InvalidArgument, "INVALID_REQUEST"),
                    Rejection::Other => (Code::FailedPrecondition, "UPSTREAM_REJECTED"),
                },
                DiditError::RateLimited { .. } => {
                    (Code::ResourceExhausted, "UPSTREAM_RATE_LIMITED")
                }
                DiditError::Unavailable { .. } => (Code::Unavailable, "UPSTREAM_UNAVAILABLE"),
                DiditError::Timeout => (Code::DeadlineExceeded, "DEADLINE_EXCEEDED"),
                DiditError::Protocol { .. } => (Code::Internal, "UPSTREAM_PROTOCOL_ERROR"),
                DiditError::BudgetExhausted { .. } => {
                    (Code::ResourceExhausted, "TENANT_RATE_LIMITED")
                }
                DiditError::StateUnavailable { .. } => (Code::Unavailable, "STATE_UNAVAILABLE"),
            },
        }
    }

    /// How long a caller should wait before retrying, where retrying helps.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Overloaded => Some(Duration::from_millis(100)),
            Self::TenantRateLimited { retry_after } => Some(*retry_after),
            Self::Upstream(DiditError::RateLimited { retry_after, .. }) => {
                Some(retry_after.unwrap_or(Duration::from_secs(1)))
            }
            Self::Upstream(DiditError::Unavailable { .. }) => Some(Duration::from_millis(500)),
            Self::EventLogUnavailable(_) => Some(Duration::from_secs(1)),
            Self::Upstream(DiditError::BudgetExhausted { retry_after }) => Some(*retry_after),
            Self::Upstream(DiditError::StateUnavailable { .. }) => Some(Duration::from_secs(1)),
            Self::StateUnavailable(_) => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    /// The HTTP status of Didit's answer that caused this error, if Didit
    /// answered (for the audit trail).
    pub fn upstream_status(&self) -> Option<u16> {
        match self {
            Self::Upstream(DiditError::Protocol { status, .. }) => Some(*status),
            _ => self.upstream_reply().map(|reply| reply.status),
        }
    }

    fn upstream_reply(&self) -> Option<&UpstreamReply> {
        match self {
            Self::Upstream(DiditError::Rejected { reply, .. })
            | Self::Upstream(DiditError::RateLimited { reply, .. }) => Some(reply),
            Self::Upstream(DiditError::Unavailable { reply, .. }) => reply.as_ref(),
            _ => None,
        }
    }
}

/// A state failure on the import path: `Unavailable` is the caller's
/// STATE_UNAVAILABLE; a `Corrupt` value that cannot be treated as a miss
/// is an internal error.
impl From<StateError> for GatewayError {
    fn from(err: StateError) -> Self {
        match err {
            StateError::Unavailable(cause) => Self::StateUnavailable(cause),
            StateError::Corrupt(cause) => Self::Internal(format!("shared state: {cause}")),
        }
    }
}

impl From<GatewayError> for Status {
    fn from(err: GatewayError) -> Self {
        let (code, reason) = err.code_and_reason();
        let mut metadata = std::collections::HashMap::new();
        if let Some(reply) = err.upstream_reply() {
            metadata.insert("upstream_status".to_owned(), reply.status.to_string());
            if !reply.detail.is_empty() {
                metadata.insert("upstream_detail".to_owned(), reply.detail.clone());
            }
            if let Some(field) = &reply.field {
                metadata.insert("upstream_field".to_owned(), field.clone());
            }
            if let Some(id) = &reply.request_id {
                metadata.insert("upstream_request_id".to_owned(), id.clone());
            }
        }
        if let GatewayError::Upstream(DiditError::Protocol { status, .. }) = &err {
            metadata.insert("upstream_status".to_owned(), status.to_string());
        }
        if let GatewayError::AlreadyImported {
            session_id: Some(id),
        } = &err
        {
            metadata.insert("session_id".to_owned(), id.clone());
        }
        if let GatewayError::PolicyRefused(refusal) = &err {
            metadata.insert("policy".to_owned(), refusal.name().to_owned());
            if let Refusal::KindNotCovered { kind } = refusal {
                let kind = crate::policy::kind_name(*kind);
                metadata.insert("session_kind".to_owned(), kind.to_owned());
            }
        }
        let mut details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata);
        if let GatewayError::InvalidRequest(violations) = &err {
            for v in violations {
                details.add_bad_request_violation(v.field, v.description.clone());
            }
        }
        if let GatewayError::PolicyRefused(refusal @ Refusal::TtlAboveMaximum { .. }) = &err {
            details.add_bad_request_violation("ttl_seconds", refusal.to_string());
        }
        if let Some(wait) = err.retry_after() {
            details.set_retry_info(Some(wait));
        }
        Status::with_error_details(code, err.to_string(), details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply() -> UpstreamReply {
        UpstreamReply {
            status: 400,
            detail: String::new(),
            field: None,
            request_id: None,
        }
    }

    /// Every reason the mapping can produce is a value of the proto's
    /// `ErrorReason` enum, so clients can switch on it.
    #[test]
    fn every_reason_is_documented_in_the_proto() {
        use Rejection::*;
        let mut errors = vec![
            GatewayError::InvalidRequest(vec![]),
            GatewayError::UnknownTenant,
            GatewayError::CallerNotAllowed {
                caller: "c".into(),
                tenant: "t".into(),
            },
            GatewayError::AlreadyImported { session_id: None },
            GatewayError::Overloaded,
            GatewayError::TenantRateLimited {
                retry_after: Duration::from_secs(1),
            },
            GatewayError::DeadlineExceeded,
            GatewayError::StateUnavailable("x".into()),
            GatewayError::Internal("x".into()),
            GatewayError::EventCursorExpired,
            GatewayError::SlowSubscriber,
            GatewayError::EventLogUnavailable("x".into()),
            GatewayError::WebhooksNotConfigured,
            GatewayError::ShuttingDown,
            Refusal::PartnerNotListed.into(),
            Refusal::ShareNotAgreed.into(),
            Refusal::ImportNotAgreed.into(),
            Refusal::KindNotCovered {
                kind: crate::session::SessionKind::User,
            }
            .into(),
            Refusal::TtlAboveMaximum { max: 60 }.into(),
            Refusal::TrustReviewNotAgreed.into(),
            Refusal::TokenForAnotherApplication.into(),
            Refusal::TokenUnreadable(crate::share_token::ClaimsError::NotJwt).into(),
            DiditError::RateLimited {
                retry_after: None,
                reply: reply(),
            }
            .into(),
            DiditError::Unavailable {
                cause: "x".into(),
                reply: None,
            }
            .into(),
            DiditError::Timeout.into(),
            DiditError::BudgetExhausted {
                retry_after: Duration::from_secs(1),
            }
            .into(),
            DiditError::StateUnavailable { cause: "x".into() }.into(),
            DiditError::Protocol {
                cause: "x".into(),
                status: 200,
            }
            .into(),
        ];
        for rejection in [
            SessionNotFound,
            SessionNotFinished,
            CredentialsRejected,
            TokenInvalid,
            TokenExpired,
            TokenWrongApplication,
            AlreadyImported,
            SourceSessionNotFound,
            WorkflowNotFound,
            InvalidRequest,
            Other,
        ] {
            errors.push(
                DiditError::Rejected {
                    rejection,
                    reply: reply(),
                }
                .into(),
            );
        }
        for err in errors {
            let (_, reason) = err.code_and_reason();
            assert!(
                crate::proto::ErrorReason::from_str_name(reason).is_some(),
                "{reason} is not in proto ErrorReason"
            );
        }
    }
}
