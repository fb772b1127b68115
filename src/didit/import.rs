//! `POST /v3/session/import-shared/`: create a session in the tenant's
//! application from a partner's share token. Never re-sent once it may
//! have reached Didit: a second POST of the same token is refused.

use serde::{Deserialize, Serialize};

use super::answer::{answer_kind, read_answer};
use super::classify::Endpoint;
use super::failure::DiditError;
use super::transport::{CallContext, DiditClient};
use crate::session::{ImportRequest, ImportedSession};
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
        let body = ImportBody {
            share_token: token,
            workflow_id: &request.params.workflow_id,
            vendor_data: &request.params.vendor_data,
            trust_review: request.params.trust_review,
        };
        let path = "/v3/session/import-shared/";
        let (status, raw) = self
            .call(Endpoint::Import, path, key, &body, &[token], ctx)
            .await?;
        let head: ImportReplyHead = read_answer(Endpoint::Import, status, &raw)?;
        let session_kind = answer_kind(Endpoint::Import, status, &head.session_kind)?;
        Ok(ImportedSession {
            raw,
            session_id: head.session_id,
            session_kind,
            status_raw: head.status,
        })
    }
}
