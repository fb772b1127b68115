//! `WatchSessionEvents` without gRPC: checks the request, opens the
//! subscription and maps stored events to the proto `SessionEvent`. The
//! tonic handler is then three lines:
//!
//! ```ignore
//! let tenant = self.tenants.resolve(metadata)?;
//! let request = WatchRequest::try_from(req.into_inner())?;   // WatchError -> Status
//! let events = watch::open(&*self.log, &tenant.id, request).await?;
//! Ok(Response::new(Box::pin(events.map(|e| e.map_err(Status::from)))))
//! ```
//!
//! Liveness of idle streams is left to HTTP/2 keepalive pings on the
//! server (`Server::builder().http2_keepalive_interval(..)`), which need no
//! message in the proto; a stream ends with an error only for
//! `EVENT_CURSOR_EXPIRED`, `SLOW_SUBSCRIBER` or a backend outage.

use futures::StreamExt as _;
use futures::stream::BoxStream;

use super::log::{EventId, EventLog, EventLogError, StoredEvent, TypeFilter};
use crate::proto;
use crate::session::{SessionKind, SessionStatus};

/// Most `webhook_types` one request may list.
pub const MAX_WEBHOOK_TYPES: usize = 32;
/// Longest `webhook_type` accepted in a filter.
pub const MAX_WEBHOOK_TYPE_BYTES: usize = 64;

/// Why a watch cannot start or had to end.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// The request is malformed (`INVALID_REQUEST`, with the field).
    #[error("{field}: {problem}")]
    InvalidRequest {
        /// The request field at fault.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The event log refused or failed (`EVENT_CURSOR_EXPIRED`,
    /// `SLOW_SUBSCRIBER`, `STATE_UNAVAILABLE`).
    #[error(transparent)]
    Log(#[from] EventLogError),
}

/// A checked `WatchSessionEventsRequest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchRequest {
    /// Resume after this event; `None`: from now on.
    pub after: Option<EventId>,
    /// The webhook types wanted.
    pub types: TypeFilter,
}

impl TryFrom<proto::WatchSessionEventsRequest> for WatchRequest {
    type Error = WatchError;

    fn try_from(req: proto::WatchSessionEventsRequest) -> Result<Self, WatchError> {
        let invalid = |field, problem: &str| WatchError::InvalidRequest {
            field,
            problem: problem.to_owned(),
        };
        let after = match req.after_event_id.as_str() {
            "" => None,
            raw => Some(raw.parse::<EventId>().map_err(|e| {
                invalid(
                    "after_event_id",
                    &format!("{e}; pass an event_id received earlier"),
                )
            })?),
        };
        if req.webhook_types.len() > MAX_WEBHOOK_TYPES {
            return Err(invalid("webhook_types", "at most 32 types"));
        }
        for t in &req.webhook_types {
            let tame = t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if t.is_empty() || t.len() > MAX_WEBHOOK_TYPE_BYTES || !tame {
                return Err(invalid(
                    "webhook_types",
                    "each type is 1..=64 characters of [A-Za-z0-9._-], like status.updated",
                ));
            }
        }
        Ok(Self {
            after,
            types: TypeFilter::only(req.webhook_types),
        })
    }
}

/// The tenant's events as proto messages: stored ones after the cursor,
/// then live ones. Ends after the first error.
pub async fn open(
    log: &dyn EventLog,
    tenant: &str,
    request: WatchRequest,
) -> Result<BoxStream<'static, Result<proto::SessionEvent, WatchError>>, WatchError> {
    let events = log.subscribe(tenant, request.after, request.types).await?;
    Ok(events
        .map(|item| item.map(|e| session_event(&e)).map_err(WatchError::from))
        .boxed())
}

/// One stored event as the proto `SessionEvent`; the status is normalised
/// like the import answer's.
pub fn session_event(stored: &StoredEvent) -> proto::SessionEvent {
    let event = &stored.event;
    // The one domain-to-proto mapping of statuses and kinds is in
    // `crate::service::enums`.
    let status = proto::SessionStatus::from(SessionStatus::from_raw(&event.status_raw));
    let session_kind = SessionKind::parse(&event.session_kind)
        .map_or(proto::SessionKind::Unspecified, proto::SessionKind::from);
    proto::SessionEvent {
        event_id: stored.id.to_string(),
        session_id: event.session_id.clone(),
        webhook_type: event.webhook_type.clone(),
        status: status as i32,
        status_raw: event.status_raw.clone(),
        vendor_data: event.vendor_data.clone(),
        workflow_id: event.workflow_id.clone(),
        occurred_at: event.occurred_at.map(prost_types::Timestamp::from),
        raw_json: event.raw.to_vec(),
        session_kind: session_kind as i32,
        received_at: Some(prost_types::Timestamp::from(stored.received_at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::WebhookEvent;
    use bytes::Bytes;
    use std::time::{Duration, SystemTime};

    fn request(after: &str, types: &[&str]) -> Result<WatchRequest, WatchError> {
        WatchRequest::try_from(proto::WatchSessionEventsRequest {
            after_event_id: after.into(),
            webhook_types: types.iter().map(|t| t.to_string()).collect(),
        })
    }

    #[test]
    fn requests_are_checked_field_by_field() {
        let ok = request("1700000000000-3", &["status.updated"]).unwrap();
        assert_eq!(
            ok.after,
            Some(EventId {
                ms: 1_700_000_000_000,
                seq: 3
            })
        );
        assert!(ok.types.matches("status.updated") && !ok.types.matches("data.updated"));
        assert_eq!(request("", &[]).unwrap().after, None);
        for (after, types, field) in [
            ("yesterday", &[][..], "after_event_id"),
            ("", &[""][..], "webhook_types"),
            ("", &["status updated"][..], "webhook_types"),
        ] {
            match request(after, types) {
                Err(WatchError::InvalidRequest { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{after:?} {types:?}: {other:?}"),
            }
        }
        let many: Vec<&str> = std::iter::repeat_n("a", 33).collect();
        assert!(request("", &many).is_err());
    }

    #[test]
    fn events_map_with_both_status_casings() {
        for (raw, kind, status, proto_kind) in [
            (
                "In Review",
                "",
                proto::SessionStatus::InReview,
                proto::SessionKind::Unspecified,
            ),
            (
                "IN_REVIEW",
                "business",
                proto::SessionStatus::InReview,
                proto::SessionKind::Business,
            ),
            (
                "Brand New",
                "user",
                proto::SessionStatus::Unspecified,
                proto::SessionKind::User,
            ),
        ] {
            let body = serde_json::json!({
                "webhook_type": "status.updated", "session_id": "s", "status": raw,
                "session_kind": kind, "vendor_data": "v", "workflow_id": "w", "created_at": 1_700_000_000,
            });
            let raw_json = Bytes::from(body.to_string());
            let stored = StoredEvent {
                id: EventId { ms: 5, seq: 1 },
                received_at: SystemTime::UNIX_EPOCH + Duration::from_secs(9),
                event: WebhookEvent::parse(raw_json.clone()).unwrap(),
            };
            let got = session_event(&stored);
            assert_eq!(got.status(), status);
            assert_eq!(got.session_kind(), proto_kind);
            assert_eq!(got.status_raw, raw);
            assert_eq!(got.event_id, "5-1");
            assert_eq!(got.raw_json, raw_json.to_vec());
            assert_eq!(
                (got.vendor_data.as_str(), got.workflow_id.as_str()),
                ("v", "w")
            );
            assert_eq!(got.occurred_at.map(|t| t.seconds), Some(1_700_000_000));
            assert_eq!(got.received_at.map(|t| t.seconds), Some(9));
        }
    }
}
