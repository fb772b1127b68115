//! `POST /v3/session/import-shared/`: create a session in the tenant's
//! application from a partner's share token. Never re-sent once it may
//! have reached Didit: a second POST of the same token is refused.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::classify::Endpoint;
use super::failure::DiditError;
use super::transport::{CallContext, DiditClient, protocol};
use crate::session::{ImportRequest, ImportedSession, SessionKind};
use crate::tenant::ApiKey;

/// The request body, exactly as the seeds spell it. `trust_review` is
/// always sent (the published schema requires it).
#[derive(Serialize)]
struct ImportBody<'a> {
    share_token: &'a str,
    workflow_id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    vendor_data: &'a str,
    trust_review: bool,
}

/// The fields of the answer the gateway itself needs; the rest stays in
/// the raw bytes.
#[derive(Deserialize)]
struct ImportReplyHead {
    session_id: String,
    session_kind: String,
    status: String,
}

impl DiditClient {
    /// `POST /v3/session/import-shared/`.
    pub async fn import(
        &self,
        key: &ApiKey,
        request: &ImportRequest,
        ctx: &CallContext,
    ) -> Result<ImportedSession, DiditError> {
        let token = request.share_token.expose();
        let body = serde_json::to_vec(&ImportBody {
            share_token: token,
            workflow_id: &request.params.workflow_id,
            vendor_data: &request.params.vendor_data,
            trust_review: request.params.trust_review,
        })
        .map_err(|e| protocol(0, format!("cannot encode import body: {e}")))?;
        let (status, raw) = self
            .call(
                Endpoint::Import,
                "/v3/session/import-shared/",
                key,
                Bytes::from(body),
                &[token],
                ctx,
            )
            .await?;
        let head: ImportReplyHead = serde_json::from_slice(&raw).map_err(|e| {
            protocol(
                status,
                format!("import answer is not the expected JSON: {e}"),
            )
        })?;
        let session_kind = SessionKind::parse(&head.session_kind)
            .ok_or_else(|| protocol(status, "import answer has an unknown session_kind".into()))?;
        Ok(ImportedSession {
            raw,
            session_id: head.session_id,
            session_kind,
            status_raw: head.status,
        })
    }
}
