//! What can go wrong when talking to Didit, classified once, here, from the
//! HTTP status and the body (both dialects: the seeds' and the OpenAPI's).

use std::time::Duration;

/// Why Didit refused a request it understood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Share: the session does not exist in the tenant's application.
    SessionNotFound,
    /// Share: the session is not Approved, Declined or In Review.
    SessionNotFinished,
    /// Either call: the tenant's API key is unknown or lacks `write:sessions`.
    CredentialsRejected,
    /// Import: the token is malformed or its signature is wrong.
    TokenInvalid,
    /// Import: the token is past its `exp`.
    TokenExpired,
    /// Import: the token was minted for another application.
    TokenWrongApplication,
    /// Import: this application already imported this token.
    AlreadyImported,
    /// Import: the original session was deleted.
    SourceSessionNotFound,
    /// Import: the workflow is not one of the importing application's.
    WorkflowNotFound,
    /// A 400 about a field the gateway does not pre-validate
    /// (e.g. an unknown target application).
    InvalidRequest,
    /// A 4xx the gateway does not recognise (e.g. 402 out of credit).
    Other,
}

impl Rejection {
    /// A short human sentence for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::SessionNotFound => "the session does not exist in this tenant's application",
            Self::SessionNotFinished => {
                "only Approved, Declined or In Review sessions can be shared"
            }
            Self::CredentialsRejected => "the tenant's API key is invalid or lacks write:sessions",
            Self::TokenInvalid => "the share token is invalid; ask the partner for a new one",
            Self::TokenExpired => "the share token has expired; ask the partner for a new one",
            Self::TokenWrongApplication => "the share token was minted for another application",
            Self::AlreadyImported => "this share token was already imported into this application",
            Self::SourceSessionNotFound => "the original session no longer exists",
            Self::WorkflowNotFound => {
                "the workflow does not exist in the importing application, or is of the other kind"
            }
            Self::InvalidRequest => "Didit found a field invalid (see upstream_detail)",
            Self::Other => "Didit refused for another reason (see upstream_detail)",
        }
    }
}

/// What Didit said, kept for ErrorInfo metadata and logs. `detail` is
/// Didit's message with any secret of the request scrubbed out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamReply {
    /// HTTP status code.
    pub status: u16,
    /// Didit's human-readable detail, truncated and scrubbed.
    pub detail: String,
    /// The field a field-keyed error named (`share_token`, ...), if any.
    pub field: Option<String>,
    /// Didit's `x-request-id`, to quote to Didit support.
    pub request_id: Option<String>,
}

/// The upstream boundary's error.
#[derive(Clone, Debug, thiserror::Error)]
pub enum DiditError {
    /// Didit answered 4xx for a reason listed in [`Rejection`].
    #[error("Didit refused the request: {} (HTTP {})", rejection.describe(), reply.status)]
    Rejected {
        /// The classified reason.
        rejection: Rejection,
        /// What Didit sent.
        reply: UpstreamReply,
    },
    /// Didit answered 429.
    #[error("Didit rate-limited the tenant's API key")]
    RateLimited {
        /// From `Retry-After`, the minimum wait Didit asks for.
        retry_after: Option<Duration>,
        /// What Didit sent.
        reply: UpstreamReply,
    },
    /// Didit answered 5xx, or the connection failed or was reset.
    #[error("Didit is unavailable: {cause}")]
    Unavailable {
        /// A short description without secrets ("connect error", "HTTP 503").
        cause: String,
        /// What Didit sent, when it sent anything.
        reply: Option<UpstreamReply>,
    },
    /// No answer before the caller's deadline or the upstream timeout.
    #[error("Didit did not answer in time")]
    Timeout,
    /// The tenant's Didit budget has no slot the call could wait for;
    /// this request was not sent (nor was any before it).
    #[error("the tenant is over its Didit write budget")]
    BudgetExhausted {
        /// When a slot is free again (jittered).
        retry_after: Duration,
    },
    /// The shared state holding the budget could not be asked; this
    /// request was not sent (nor was any before it).
    #[error("{cause}")]
    StateUnavailable {
        /// What failed, without secrets.
        cause: String,
    },
    /// A 2xx body the gateway cannot read, or an unexpected status.
    #[error("Didit sent an unexpected answer: {cause}")]
    Protocol {
        /// What was wrong with it (no body content).
        cause: String,
        /// HTTP status code.
        status: u16,
    },
}
