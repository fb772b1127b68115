//! Didit's JSON bodies for the two endpoints, exactly as the seeds spell
//! them (`ttl_in_seconds`, `share_token`, `trust_review`, ...).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Body of `POST /v3/session/{id}/share/`.
#[derive(Serialize)]
pub(crate) struct ShareBody {
    pub for_application_id: Uuid,
    pub ttl_in_seconds: u32,
}

/// Body of `POST /v3/session/import-shared/`. `trust_review` is always sent
/// (the published schema requires it).
#[derive(Serialize)]
pub(crate) struct ImportBody<'a> {
    pub share_token: &'a str,
    pub workflow_id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub vendor_data: &'a str,
    pub trust_review: bool,
}

/// The share answer.
#[derive(Deserialize)]
pub(crate) struct ShareReply {
    pub share_token: String,
    pub for_application_id: String,
    pub session_kind: String,
}

/// The fields of an import answer the gateway itself needs; the rest stays
/// in the raw bytes.
#[derive(Deserialize)]
pub(crate) struct ImportReplyHead {
    pub session_id: String,
    pub session_kind: String,
    pub status: String,
}
