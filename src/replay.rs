//! Replay records: what a retried import needs to get the same session
//! back instead of Didit's 403, encoded for the [`StateStore`] (which
//! bounds them by time and, in memory, by bytes; seals them in Redis).
//!
//! A record holds personal data (the session body, `vendor_data`), is
//! keyed by the tenant and a hash of the token (never the token), and
//! is only ever given to a caller of the same tenant with equal
//! parameters.
//!
//! Encoding: a 4-byte big-endian length, a small JSON head (the format
//! version, the import parameters, the session id, `recovered`), then the
//! body. Version 2 (written since answers are sent as bytes) keeps the
//! encoded `ImportSharedSessionResponse` as the body, so a replay sends it
//! as it is; version 1 kept Didit's exact JSON answer (and the session's
//! kind and status in the head), and still decodes: its answer is mapped
//! and encoded once, when it is read. Decoding slices the body out
//! without copying it.
//!
//! [`StateStore`]: crate::state::StateStore

use std::borrow::Cow;
use std::sync::Arc;

use bytes::{BufMut as _, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::service::SessionAnswer;
use crate::session::{ImportParams, ImportedSession, SessionKind, ShareToken};
use crate::state::ImportId;

/// The format version written.
const VERSION: u8 = 2;

/// The store's id of `token` imported by `tenant`.
pub fn import_id(tenant: impl Into<Arc<str>>, token: &ShareToken) -> ImportId {
    ImportId::new(tenant, Sha256::digest(token.expose().as_bytes()).into())
}

/// A stored import: what was asked and the answer Didit's session makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredImport {
    /// The parameters of the import that created it; a replay needs equal ones.
    pub params: ImportParams,
    /// The id of the session Didit created.
    pub session_id: String,
    /// The encoded `ImportSharedSessionResponse`, `replayed` and
    /// `recovered` unset (personal data): a slice of `record`.
    pub answer: Bytes,
    /// True when the session was found again through Didit after the
    /// answer to the import was lost.
    pub recovered: bool,
    /// The whole record (current version), sharing its buffer with
    /// `answer`: what the store keeps.
    record: Bytes,
}

/// The JSON head of a record (borrowed where no escape was needed).
#[derive(Serialize, Deserialize)]
struct Head<'a> {
    /// Format version.
    v: u8,
    #[serde(borrow)]
    workflow_id: Cow<'a, str>,
    #[serde(borrow)]
    vendor_data: Cow<'a, str>,
    trust_review: bool,
    #[serde(borrow)]
    session_id: Cow<'a, str>,
    /// Version 1 only: the session's kind.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    session_kind: Option<Cow<'a, str>>,
    /// Version 1 only: Didit's status string.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    status: Option<Cow<'a, str>>,
    #[serde(default)]
    recovered: bool,
}

/// Why a record cannot be made or read.
#[derive(Debug, thiserror::Error)]
#[error("replay record: {0}")]
pub struct RecordError(String);

impl StoredImport {
    /// The record of `session`, created by an import with `params`: its
    /// answer is mapped and encoded here, once, into the record's one
    /// buffer. Fails when Didit's body is not a JSON object.
    pub fn new(
        params: ImportParams,
        session: &ImportedSession,
        recovered: bool,
    ) -> Result<Self, RecordError> {
        let head = Head {
            v: VERSION,
            workflow_id: Cow::Borrowed(&params.workflow_id),
            vendor_data: Cow::Borrowed(&params.vendor_data),
            trust_review: params.trust_review,
            session_id: Cow::Borrowed(&session.session_id),
            session_kind: None,
            status: None,
            recovered,
        };
        let (out, body_at) = SessionAnswer::with(session, |answer| {
            let (mut out, body_at) = framed(&head, answer.encoded_len());
            // A BytesMut grows as needed, so writing cannot fail.
            answer.write(&mut out).map(|()| (out, body_at))
        })
        .map_err(|e| RecordError(format!("the session body is not a JSON object: {e}")))?
        .map_err(|e| RecordError(format!("encoding the answer: {e}")))?;
        let record = out.freeze();
        Ok(Self {
            params,
            session_id: session.session_id.clone(),
            answer: record.slice(body_at..),
            recovered,
            record,
        })
    }

    /// The record's bytes (the current version), without a copy.
    pub fn encode(&self) -> Bytes {
        self.record.clone()
    }

    /// Reads a record of either version.
    pub fn decode(record: &Bytes) -> Result<Self, RecordError> {
        let len = record
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| RecordError("too short".into()))?;
        let head_bytes = record
            .get(4..4 + len)
            .ok_or_else(|| RecordError("head cut short".into()))?;
        let head: Head<'_> =
            serde_json::from_slice(head_bytes).map_err(|e| RecordError(e.to_string()))?;
        let body = record.slice(4 + len..);
        let params = ImportParams {
            workflow_id: head.workflow_id.into_owned(),
            vendor_data: head.vendor_data.into_owned(),
            trust_review: head.trust_review,
        };
        match head.v {
            VERSION => Ok(Self {
                params,
                session_id: head.session_id.into_owned(),
                answer: body,
                recovered: head.recovered,
                record: record.clone(),
            }),
            1 => {
                let session_kind = head
                    .session_kind
                    .as_deref()
                    .and_then(SessionKind::parse)
                    .ok_or_else(|| RecordError("unknown session kind".into()))?;
                let session = ImportedSession {
                    raw: body,
                    session_id: head.session_id.into_owned(),
                    session_kind,
                    status_raw: head.status.map(Cow::into_owned).unwrap_or_default(),
                };
                Self::new(params, &session, head.recovered)
            }
            other => Err(RecordError(format!("unknown version {other}"))),
        }
    }
}

/// A buffer holding the length-prefixed JSON head, with room for
/// `body_len` more bytes, and where the body starts.
fn framed(head: &Head<'_>, body_len: usize) -> (BytesMut, usize) {
    // Serialising plain strings and bools cannot fail.
    let head = serde_json::to_vec(head).unwrap_or_default();
    let mut out = BytesMut::with_capacity(4 + head.len() + body_len);
    out.put_u32(u32::try_from(head.len()).unwrap_or(u32::MAX));
    out.put_slice(&head);
    let body_at = out.len();
    (out, body_at)
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::proto::{self, ImportSharedSessionResponse};

    fn session(raw: &str) -> ImportedSession {
        ImportedSession {
            raw: Bytes::copy_from_slice(raw.as_bytes()),
            session_id: "s-1".into(),
            session_kind: SessionKind::Business,
            status_raw: "In Review".into(),
        }
    }

    fn params(vendor_data: &str) -> ImportParams {
        ImportParams {
            workflow_id: "wf".into(),
            vendor_data: vendor_data.into(),
            trust_review: true,
        }
    }

    fn stored(raw: &str, vendor_data: &str) -> StoredImport {
        StoredImport::new(params(vendor_data), &session(raw), false).unwrap()
    }

    /// A record as version 1 wrote it: the head with kind and status, then
    /// Didit's JSON.
    fn version_1(raw: &str, vendor_data: &str, recovered: bool) -> Bytes {
        let head = Head {
            v: 1,
            workflow_id: Cow::Borrowed("wf"),
            vendor_data: Cow::Borrowed(vendor_data),
            trust_review: true,
            session_id: Cow::Borrowed("s-1"),
            session_kind: Some(Cow::Borrowed("business")),
            status: Some(Cow::Borrowed("In Review")),
            recovered,
        };
        frame(&head, raw.as_bytes())
    }

    /// The head, then `body`.
    fn frame(head: &Head<'_>, body: &[u8]) -> Bytes {
        let (mut out, _) = framed(head, body.len());
        out.put_slice(body);
        out.freeze()
    }

    #[test]
    fn a_record_decodes_to_what_was_encoded() {
        for (raw, vendor) in [
            ("{\"a\":1}", "u\"1"),
            ("{}", ""),
            (r#"{"\u00ff":"\u0000"}"#, "ü"),
        ] {
            let record = stored(raw, vendor);
            assert_eq!(StoredImport::decode(&record.encode()).unwrap(), record);
        }
        let recovered = StoredImport::new(params("v"), &session("{}"), true).unwrap();
        assert!(StoredImport::decode(&recovered.encode()).unwrap().recovered);
    }

    #[test]
    fn the_answer_is_the_encoded_response_without_flags() {
        let record = stored(r#"{"session_number":4,"vendor_data":"v"}"#, "v");
        let response = ImportSharedSessionResponse::decode(record.answer.as_ref()).unwrap();
        assert_eq!(response.session_id, "s-1");
        assert_eq!(response.session_number, 4);
        assert_eq!(response.session_kind, proto::SessionKind::Business as i32);
        assert_eq!(response.status_raw, "In Review");
        assert_eq!(
            response.raw_json,
            br#"{"session_number":4,"vendor_data":"v"}"#
        );
        assert!(!response.replayed && !response.recovered);
    }

    #[test]
    fn a_version_1_record_still_decodes_to_the_same_answer() {
        let raw = r#"{"session_number":9,"id_verifications":[{"x":1}],"vendor_data":"v"}"#;
        for recovered in [false, true] {
            let old = StoredImport::decode(&version_1(raw, "v", recovered)).unwrap();
            let fresh = StoredImport::new(params("v"), &session(raw), recovered).unwrap();
            assert_eq!(old, fresh);
            // Stored again, it is a version 2 record.
            assert_eq!(StoredImport::decode(&old.encode()).unwrap(), fresh);
        }
    }

    #[test]
    fn a_version_1_record_whose_body_is_not_json_is_an_error() {
        assert!(StoredImport::decode(&version_1("not json", "v", false)).is_err());
    }

    #[test]
    fn a_damaged_record_is_an_error_not_a_panic() {
        let good = stored("{\"x\":[1,2]}", "v").encode();
        for cut in 0..good.len().min(80) {
            let _ = StoredImport::decode(&good.slice(..cut));
        }
        assert!(StoredImport::decode(&Bytes::from_static(b"\xff\xff\xff\xff{}")).is_err());
        assert!(StoredImport::decode(&Bytes::from_static(b"")).is_err());
        let unknown = frame(
            &Head {
                v: 9,
                workflow_id: Cow::Borrowed("wf"),
                vendor_data: Cow::Borrowed(""),
                trust_review: false,
                session_id: Cow::Borrowed("s"),
                session_kind: None,
                status: None,
                recovered: false,
            },
            b"",
        );
        assert!(StoredImport::decode(&unknown).is_err());
    }
}
