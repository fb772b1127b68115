//! `GET /v3/session/{id}/decision/`: a session's full decision body (the
//! same shape an import answers; `shared_from_session` names the original
//! of an imported session). Used by GetSession and by the recovery of an
//! import whose answer was lost.

use serde::Deserialize;
use uuid::Uuid;

use super::answer::{answer_kind, read_answer};
use super::classify::Endpoint;
use super::failure::DiditError;
use super::transport::{CallContext, DiditClient};
use crate::session::ImportedSession;
use crate::tenant::ApiKey;

/// A decision as Didit sent it: the exact bytes and the fields the
/// gateway reads.
#[derive(Clone, Debug)]
pub struct Decision {
    /// The session, with the exact upstream body in `raw`.
    pub session: ImportedSession,
    /// The original session of an imported one (`None` otherwise).
    pub shared_from_session: Option<String>,
    /// `created_at` as Didit spelled it, when present.
    pub created_at: Option<String>,
}

/// The fields of the answer the gateway itself needs.
#[derive(Deserialize)]
struct DecisionHead {
    session_id: String,
    session_kind: String,
    status: String,
    #[serde(default)]
    shared_from_session: Option<serde_json::Value>,
    #[serde(default)]
    created_at: Option<String>,
}

impl DiditClient {
    /// `GET /v3/session/{id}/decision/`. A 404 is
    /// [`Rejection::SessionNotFound`](super::Rejection::SessionNotFound).
    pub async fn decision(
        &self,
        key: &ApiKey,
        session_id: Uuid,
        ctx: &CallContext,
    ) -> Result<Decision, DiditError> {
        let path = format!("/v3/session/{session_id}/decision/");
        let (status, raw) = self.get(Endpoint::Decision, &path, key, ctx).await?;
        let head: DecisionHead = read_answer(Endpoint::Decision, status, &raw)?;
        let session_kind = answer_kind(Endpoint::Decision, status, &head.session_kind)?;
        let shared_from_session = match head.shared_from_session {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s),
            _ => None,
        };
        Ok(Decision {
            session: ImportedSession {
                raw,
                session_id: head.session_id,
                session_kind,
                status_raw: head.status,
            },
            shared_from_session,
            created_at: head.created_at,
        })
    }
}
