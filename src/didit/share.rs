//! `POST /v3/session/{id}/share/`: mint a one-time share token for a
//! finished session. Retried on outages by the transport (minting twice is
//! harmless).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::answer::{answer_kind, protocol, read_answer};
use super::classify::Endpoint;
use super::failure::DiditError;
use super::transport::{CallContext, DiditClient};
use crate::session::{ShareOutcome, ShareRequest, ShareToken};
use crate::tenant::ApiKey;

/// The request body, exactly as the seeds spell it.
#[derive(Serialize)]
struct ShareBody {
    for_application_id: Uuid,
    ttl_in_seconds: u32,
}

/// The answer.
#[derive(Deserialize)]
struct ShareReply {
    share_token: String,
    for_application_id: String,
    session_kind: String,
}

impl DiditClient {
    /// `POST /v3/session/{id}/share/`.
    pub async fn share(
        &self,
        key: &ApiKey,
        request: &ShareRequest,
        ctx: &CallContext,
    ) -> Result<ShareOutcome, DiditError> {
        let path = format!("/v3/session/{}/share/", request.session_id);
        let body = ShareBody {
            for_application_id: request.for_application_id,
            ttl_in_seconds: request.ttl_seconds,
        };
        let (status, bytes) = self
            .call(Endpoint::Share, &path, key, &body, &[], ctx)
            .await?;
        let reply: ShareReply = read_answer(Endpoint::Share, status, &bytes)?;
        let session_kind = answer_kind(Endpoint::Share, status, &reply.session_kind)?;
        if reply.share_token.is_empty() {
            return Err(protocol(
                status,
                "share answer has an empty share_token".into(),
            ));
        }
        let share_token = ShareToken::new(reply.share_token);
        let expires_at = share_token.unverified_expiry().unwrap_or_else(|| {
            SystemTime::now() + Duration::from_secs(u64::from(request.ttl_seconds))
        });
        Ok(ShareOutcome {
            share_token,
            for_application_id: reply.for_application_id,
            session_kind,
            expires_at,
        })
    }
}
