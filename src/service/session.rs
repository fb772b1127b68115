//! `didit.share.v1.SessionService`: `GetSession` (a session's decision,
//! read from Didit with the tenant's key, in the import answer's shape) and
//! `WatchSessionEvents` (the tenant's webhooks from the event log, resumable
//! by `after_event_id`, ended with a status when the gateway drains).
//!
//! Both go through the call's common pieces (tenant, caller, metrics, log
//! line, audit event): `GetSession` through [`run_call`], the stream
//! through [`run_stream`], which records the call when the stream ends.

use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt as _};
use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::AppState;
use super::answer::{session_answer, string_field};
use super::call::{run_call, run_stream};
use crate::didit::Decision;
use crate::error::{FieldViolation, GatewayError};
use crate::proto::session_service_server::SessionService;
use crate::proto::{
    GetSessionRequest, GetSessionResponse, ImportSharedSessionResponse, SessionEvent,
    WatchSessionEventsRequest,
};
use crate::webhooks::EventLogError;
use crate::webhooks::watch::{self, WatchError, WatchRequest};

/// The SessionService implementation.
pub struct SessionApi {
    /// The core and what every call needs.
    state: Arc<AppState>,
}

impl SessionApi {
    /// Serves `state`.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

/// The stream `WatchSessionEvents` answers with.
pub type EventStream = BoxStream<'static, Result<SessionEvent, Status>>;

#[tonic::async_trait]
impl SessionService for SessionApi {
    async fn get_session(
        &self,
        request: Request<GetSessionRequest>,
    ) -> Result<Response<GetSessionResponse>, Status> {
        run_call(
            &self.state,
            "GetSession",
            request,
            |tenant, ctx, message, audit| async move {
                let session_id = session_id(&message)?;
                audit.set(|e| e.session_id = Some(session_id.to_string()));
                let decision = self
                    .state
                    .gateway
                    .client()
                    .decision(&tenant.api_key(), session_id, &ctx)
                    .await?;
                GetSessionResponse::try_from(&decision)
            },
        )
        .await
    }

    type WatchSessionEventsStream = EventStream;

    async fn watch_session_events(
        &self,
        request: Request<WatchSessionEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let state = &self.state;
        run_stream(
            state,
            "WatchSessionEvents",
            request,
            |tenant, _ctx, message, _audit| async move {
                let request = WatchRequest::try_from(message).map_err(GatewayError::from)?;
                let log = state
                    .event_log()
                    .ok_or(GatewayError::WebhooksNotConfigured)?;
                if state.streams_end.is_cancelled() {
                    return Err(GatewayError::ShuttingDown);
                }
                let events = watch::open(&**log, &tenant.id, request)
                    .await
                    .map_err(GatewayError::from)?;
                Ok(until_drain(events, state.streams_end.clone()))
            },
        )
        .await
    }
}

/// `events` until the drain (`end`), which ends the stream with
/// UNAVAILABLE `SHUTTING_DOWN` rather than a reset, so clients reconnect
/// with their cursor. An error is the stream's last item.
fn until_drain(
    events: futures::stream::BoxStream<'static, Result<SessionEvent, WatchError>>,
    end: CancellationToken,
) -> impl Stream<Item = Result<SessionEvent, GatewayError>> + Send + 'static {
    let ending = Box::pin(end.cancelled_owned());
    futures::stream::unfold(Some((events, ending)), |state| async move {
        let (mut events, mut ending) = state?;
        let error = tokio::select! {
            biased;
            () = &mut ending => GatewayError::ShuttingDown,
            item = events.next() => match item {
                Some(Ok(event)) => return Some((Ok(event), Some((events, ending)))),
                Some(Err(err)) => GatewayError::from(err),
                None => return None,
            },
        };
        Some((Err(error), None))
    })
}

impl From<WatchError> for GatewayError {
    fn from(err: WatchError) -> Self {
        match err {
            WatchError::InvalidRequest { field, problem } => {
                GatewayError::InvalidRequest(vec![FieldViolation::new(field, problem)])
            }
            WatchError::Log(err) => match err {
                EventLogError::CursorExpired => GatewayError::EventCursorExpired,
                EventLogError::SlowSubscriber => GatewayError::SlowSubscriber,
                EventLogError::Unavailable(what) => GatewayError::EventLogUnavailable(what),
            },
        }
    }
}

/// The request's session id: a uuid.
fn session_id(request: &GetSessionRequest) -> Result<Uuid, GatewayError> {
    let invalid = |problem: &str| {
        GatewayError::InvalidRequest(vec![FieldViolation::new("session_id", problem)])
    };
    if request.session_id.is_empty() {
        return Err(invalid("is required"));
    }
    if request.session_id.len() > 64 {
        return Err(invalid("must be a uuid"));
    }
    Uuid::parse_str(&request.session_id).map_err(|_| invalid("must be a uuid"))
}

/// The one field of a decision the import answer has no place for.
#[derive(Deserialize)]
struct WorkflowOf {
    #[serde(default)]
    workflow_id: Value,
}

/// A decision in the normalised shape: the import answer's mapping, moved
/// field by field (a field added to either message fails to compile here),
/// plus `workflow_id`.
impl TryFrom<&Decision> for GetSessionResponse {
    type Error = GatewayError;

    fn try_from(decision: &Decision) -> Result<Self, GatewayError> {
        let not_json = |e: serde_json::Error| {
            GatewayError::Internal(format!("decision is not a JSON object: {e}"))
        };
        let WorkflowOf { workflow_id } =
            serde_json::from_slice(&decision.session.raw).map_err(not_json)?;
        let ImportSharedSessionResponse {
            session_id,
            session_number,
            session_kind,
            status,
            status_raw,
            shared_from_session,
            vendor_data,
            id_verifications,
            liveness_checks,
            face_matches,
            aml_screenings,
            database_validations,
            proof_of_address,
            location_checks,
            phone_verifications,
            email_verifications,
            registry_checks,
            key_people_checks,
            document_verifications,
            questionnaires,
            raw_json,
            replayed: _,
            recovered: _,
        } = session_answer(&decision.session).map_err(not_json)?;
        Ok(GetSessionResponse {
            session_id,
            session_number,
            session_kind,
            status,
            status_raw,
            shared_from_session,
            vendor_data,
            workflow_id: string_field(workflow_id),
            id_verifications,
            liveness_checks,
            face_matches,
            aml_screenings,
            database_validations,
            proof_of_address,
            location_checks,
            phone_verifications,
            email_verifications,
            registry_checks,
            key_people_checks,
            document_verifications,
            questionnaires,
            raw_json,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;
    use crate::session::{ImportedSession, SessionKind};

    fn decision(raw: &str, kind: SessionKind, status: &str) -> Decision {
        Decision {
            session: ImportedSession {
                raw: bytes::Bytes::copy_from_slice(raw.as_bytes()),
                session_id: "s".into(),
                session_kind: kind,
                status_raw: status.into(),
            },
            shared_from_session: None,
            created_at: None,
        }
    }

    #[test]
    fn a_decision_maps_like_an_import_answer_plus_its_workflow() {
        let raw = r#"{"session_id":"s","session_number":4,"session_kind":"business","status":"IN_REVIEW",
            "workflow_id":"wf-1","vendor_data":"v","registry_checks":[{"a":1}],"aml_screenings":[]}"#;
        let got = GetSessionResponse::try_from(&decision(raw, SessionKind::Business, "IN_REVIEW"))
            .unwrap();
        assert_eq!(got.workflow_id, "wf-1");
        assert_eq!(got.session_number, 4);
        assert_eq!(got.status(), proto::SessionStatus::InReview);
        assert_eq!(got.session_kind(), proto::SessionKind::Business);
        assert_eq!(got.registry_checks.len(), 1);
        assert_eq!(got.raw_json, raw.as_bytes());
        let no_workflow =
            GetSessionResponse::try_from(&decision("{}", SessionKind::User, "Approved")).unwrap();
        assert_eq!(no_workflow.workflow_id, "");
        assert!(GetSessionResponse::try_from(&decision("[]", SessionKind::User, "x")).is_err());
    }

    #[test]
    fn session_ids_must_be_uuids() {
        for bad in ["", "nope", &"a".repeat(100)] {
            let request = GetSessionRequest {
                session_id: bad.to_string(),
            };
            assert!(matches!(
                session_id(&request),
                Err(GatewayError::InvalidRequest(_))
            ));
        }
        let ok = GetSessionRequest {
            session_id: Uuid::nil().to_string(),
        };
        assert_eq!(session_id(&ok).unwrap(), Uuid::nil());
    }

    #[test]
    fn log_errors_map_to_their_reasons() {
        for (err, reason) in [
            (EventLogError::CursorExpired, "EVENT_CURSOR_EXPIRED"),
            (EventLogError::SlowSubscriber, "SLOW_SUBSCRIBER"),
            (EventLogError::Unavailable("x".into()), "STATE_UNAVAILABLE"),
        ] {
            let (_, got) = GatewayError::from(WatchError::Log(err)).code_and_reason();
            assert_eq!(got, reason);
        }
    }
}
