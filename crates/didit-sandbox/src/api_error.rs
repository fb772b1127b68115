//! Every refusal the v3 endpoints can answer, and the one place that turns
//! it into a status code and a Django-REST-Framework-shaped body for each
//! dialect (the seeds' status codes or the published OpenAPI's).

use std::collections::BTreeMap;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Dialect;

pub(crate) const NOT_FINISHED: &str =
    "Only finished sessions (Approved, Declined, In Review) can be shared.";
const BAD_CREDENTIALS: &str = "Authentication credentials were not provided or are invalid.";
const NO_PERMISSION: &str = "You do not have permission to perform this action.";

/// Field name to messages, as DRF's serializers report them.
pub(crate) type FieldErrors = BTreeMap<String, Vec<String>>;

/// Which v3 endpoint a request reached (stats, faults and auth differ).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Endpoint {
    /// `POST /v3/session/{id}/share/`.
    Share,
    /// `POST /v3/session/import-shared/`.
    Import,
    /// `POST /v3/webhook/destinations/`.
    Webhook,
    /// `GET /v3/sessions/`.
    List,
    /// `GET /v3/session/{id}/decision/`.
    Decision,
}

impl Endpoint {
    /// The name faults and stats use (`share`, `import`, `webhook`,
    /// `list`, `decision`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Endpoint::Share => "share",
            Endpoint::Import => "import",
            Endpoint::Webhook => "webhook",
            Endpoint::List => "list",
            Endpoint::Decision => "decision",
        }
    }

    /// A GET: any key of the application may call it, and it counts
    /// against the read limit instead of the write limit.
    pub(crate) fn is_read(self) -> bool {
        match self {
            Endpoint::List | Endpoint::Decision => true,
            Endpoint::Share | Endpoint::Import | Endpoint::Webhook => false,
        }
    }
}

/// A refusal; [`ApiError::into_response`] picks status and body.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// `x-api-key` missing or unknown.
    BadCredentials(Endpoint),
    /// The key lacks `write:sessions`.
    NoPermission,
    /// Content-Type is not `application/json`; carries the one sent.
    UnsupportedMediaType(String),
    /// The body is not JSON; carries a short reason.
    JsonParse(String),
    /// The body could not be read whole (too large, or the client left).
    BodyUnreadable,
    /// Field validation failed (required, types, TTL bounds, target app,
    /// list filters).
    Fields(FieldErrors),
    /// Unknown session, not a uuid, or another application's session.
    NotFound,
    /// Share of a session that is not Approved, Declined or In Review.
    NotFinished,
    /// Share token malformed or badly signed.
    TokenInvalid,
    /// Share token past `exp` on the sandbox clock.
    TokenExpired,
    /// Share token names another application.
    TokenWrongApplication,
    /// This (token, application) pair was imported before.
    AlreadyImported,
    /// The shared session was deleted since the share.
    OriginalGone,
    /// `workflow_id` is not the importer's workflow of the token's kind.
    WorkflowMissing,
}

impl ApiError {
    /// A single-field error.
    pub(crate) fn field(name: &str, message: &str) -> ApiError {
        ApiError::Fields(BTreeMap::from([(
            name.to_owned(),
            vec![message.to_owned()],
        )]))
    }

    /// The status and DRF body for `dialect`. Every variant is mapped here
    /// and nowhere else.
    pub(crate) fn into_response(self, dialect: Dialect) -> Response {
        let openapi = dialect == Dialect::OpenApi;
        let (status, body) = match self {
            ApiError::BadCredentials(Endpoint::Import) if openapi => {
                (StatusCode::FORBIDDEN, detail(NO_PERMISSION))
            }
            ApiError::BadCredentials(
                Endpoint::Share
                | Endpoint::Import
                | Endpoint::Webhook
                | Endpoint::List
                | Endpoint::Decision,
            ) => (StatusCode::UNAUTHORIZED, detail(BAD_CREDENTIALS)),
            ApiError::NoPermission => (StatusCode::FORBIDDEN, detail(NO_PERMISSION)),
            ApiError::UnsupportedMediaType(ct) => (
                StatusCode::BAD_REQUEST,
                detail(&format!("Unsupported media type \"{ct}\" in request.")),
            ),
            ApiError::JsonParse(reason) => (
                StatusCode::BAD_REQUEST,
                detail(&format!("JSON parse error - {reason}")),
            ),
            ApiError::BodyUnreadable => (
                StatusCode::PAYLOAD_TOO_LARGE,
                detail("Request body is too large or could not be read."),
            ),
            ApiError::Fields(errors) => (StatusCode::BAD_REQUEST, json!(errors)),
            ApiError::NotFound => (StatusCode::NOT_FOUND, detail("Not found.")),
            ApiError::NotFinished if openapi => {
                (StatusCode::BAD_REQUEST, json!({"detail": [NOT_FINISHED]}))
            }
            ApiError::NotFinished => (StatusCode::BAD_REQUEST, detail(NOT_FINISHED)),
            ApiError::TokenInvalid => {
                token_error(openapi, StatusCode::UNAUTHORIZED, "Invalid share token.")
            }
            ApiError::TokenExpired => token_error(
                openapi,
                StatusCode::UNAUTHORIZED,
                "Share token has expired.",
            ),
            ApiError::TokenWrongApplication => token_error(
                openapi,
                StatusCode::FORBIDDEN,
                "This token is not valid for this application.",
            ),
            ApiError::AlreadyImported => (
                StatusCode::FORBIDDEN,
                detail("This session has already been shared with your application."),
            ),
            ApiError::OriginalGone => token_error(
                openapi,
                StatusCode::NOT_FOUND,
                "Original session does not exist.",
            ),
            ApiError::WorkflowMissing => (
                StatusCode::NOT_FOUND,
                detail("Workflow does not exist for this application."),
            ),
        };
        (status, Json(body)).into_response()
    }
}

/// `{"detail": message}`.
pub(crate) fn detail(message: &str) -> Value {
    json!({ "detail": message })
}

/// Token problems: the seeds answer `seeds_status` with a detail, the
/// OpenAPI spec answers 400 keyed by `share_token`.
fn token_error(openapi: bool, seeds_status: StatusCode, message: &str) -> (StatusCode, Value) {
    if openapi {
        (StatusCode::BAD_REQUEST, json!({ "share_token": [message] }))
    } else {
        (seeds_status, detail(message))
    }
}
