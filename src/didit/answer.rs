//! Reading a 2xx answer of Didit: the JSON the endpoint promises and its
//! `session_kind`, or [`DiditError::Protocol`] saying what did not fit
//! (never the body itself: it may hold personal data).

use serde::de::DeserializeOwned;

use super::classify::Endpoint;
use super::failure::DiditError;
use crate::session::SessionKind;

/// A 2xx answer (or a request body) the gateway cannot use.
pub(super) fn protocol(status: u16, cause: String) -> DiditError {
    DiditError::Protocol { cause, status }
}

/// A 2xx answer of `endpoint` (status `status`), read as `T`.
pub(super) fn read_answer<T: DeserializeOwned>(
    endpoint: Endpoint,
    status: u16,
    body: &[u8],
) -> Result<T, DiditError> {
    serde_json::from_slice(body).map_err(|e| {
        let endpoint = endpoint.label();
        protocol(
            status,
            format!("{endpoint} answer is not the expected JSON: {e}"),
        )
    })
}

/// The `session_kind` of a 2xx answer of `endpoint`.
pub(super) fn answer_kind(
    endpoint: Endpoint,
    status: u16,
    raw: &str,
) -> Result<SessionKind, DiditError> {
    SessionKind::parse(raw).ok_or_else(|| {
        let endpoint = endpoint.label();
        protocol(
            status,
            format!("{endpoint} answer has an unknown session_kind"),
        )
    })
}
