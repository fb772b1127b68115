//! `POST /v3/session/{id}/share/`: mint a one-time share token for a
//! finished session. Retried on outages by the transport (minting twice is
//! harmless).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::classify::Endpoint;
use super::failure::DiditError;
use super::transport::{CallContext, DiditClient, protocol};
use crate::session::{SessionKind, ShareOutcome, ShareRequest, ShareToken};
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
        let body = serde_json::to_vec(&ShareBody {
            for_application_id: request.for_application_id,
            ttl_in_seconds: request.ttl_seconds,
        })
        .map_err(|e| protocol(0, format!("cannot encode share body: {e}")))?;
        let (status, bytes) = self
            .call(Endpoint::Share, &path, key, Bytes::from(body), &[], ctx)
            .await?;
        let reply: ShareReply = serde_json::from_slice(&bytes).map_err(|e| {
            protocol(
                status,
                format!("share answer is not the expected JSON: {e}"),
            )
        })?;
        let session_kind = SessionKind::parse(&reply.session_kind)
            .ok_or_else(|| protocol(status, "share answer has an unknown session_kind".into()))?;
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
