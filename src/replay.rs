//! Replay records: what a retried import needs to get the same session
//! back instead of Didit's 403, encoded for the [`StateStore`] (which
//! bounds them by time and, in memory, by bytes; seals them in Redis).
//!
//! A record holds personal data (the session body, `vendor_data`), is
//! keyed by the tenant and a hash of the token (never the token), and
//! is only ever given to a caller of the same tenant with equal
//! parameters.
//!
//! Encoding: a 4-byte big-endian length, a small JSON head (the import
//! parameters and the session's id, kind and status), then Didit's exact
//! answer bytes. Decoding slices the answer out without copying it.
//!
//! [`StateStore`]: crate::state::StateStore

use std::borrow::Cow;

use bytes::{BufMut as _, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::session::{ImportParams, ImportedSession, SessionKind, ShareToken};
use crate::state::ImportId;

/// The store's id of `token` imported by `tenant`.
pub fn import_id(tenant: &str, token: &ShareToken) -> ImportId {
    ImportId::new(tenant, Sha256::digest(token.expose().as_bytes()).into())
}

/// A stored import: what was asked and what Didit created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredImport {
    /// The parameters of the import that created it; a replay needs equal ones.
    pub params: ImportParams,
    /// The session Didit created.
    pub session: ImportedSession,
    /// True when the session was found again through Didit after the
    /// answer to the import was lost.
    pub recovered: bool,
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
    #[serde(borrow)]
    session_kind: Cow<'a, str>,
    #[serde(borrow)]
    status: Cow<'a, str>,
    #[serde(default)]
    recovered: bool,
}

/// Why a record does not decode.
#[derive(Debug, thiserror::Error)]
#[error("replay record does not decode: {0}")]
pub struct RecordError(String);

impl StoredImport {
    /// The record's bytes.
    pub fn encode(&self) -> Bytes {
        let head = Head {
            v: 1,
            workflow_id: Cow::Borrowed(&self.params.workflow_id),
            vendor_data: Cow::Borrowed(&self.params.vendor_data),
            trust_review: self.params.trust_review,
            session_id: Cow::Borrowed(&self.session.session_id),
            session_kind: Cow::Borrowed(self.session.session_kind.as_str()),
            status: Cow::Borrowed(&self.session.status_raw),
            recovered: self.recovered,
        };
        // Serialising plain strings and bools cannot fail.
        let head = serde_json::to_vec(&head).unwrap_or_default();
        let mut out = BytesMut::with_capacity(4 + head.len() + self.session.raw.len());
        out.put_u32(u32::try_from(head.len()).unwrap_or(u32::MAX));
        out.put_slice(&head);
        out.put_slice(&self.session.raw);
        out.freeze()
    }

    /// Reads a record written by [`encode`](Self::encode).
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
        if head.v != 1 {
            return Err(RecordError(format!("unknown version {}", head.v)));
        }
        let session_kind = SessionKind::parse(&head.session_kind)
            .ok_or_else(|| RecordError("unknown session kind".into()))?;
        Ok(Self {
            params: ImportParams {
                workflow_id: head.workflow_id.into_owned(),
                vendor_data: head.vendor_data.into_owned(),
                trust_review: head.trust_review,
            },
            session: ImportedSession {
                raw: record.slice(4 + len..),
                session_id: head.session_id.into_owned(),
                session_kind,
                status_raw: head.status.into_owned(),
            },
            recovered: head.recovered,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(raw: &str, vendor_data: &str) -> StoredImport {
        StoredImport {
            params: ImportParams {
                workflow_id: "wf".into(),
                vendor_data: vendor_data.into(),
                trust_review: true,
            },
            session: ImportedSession {
                raw: Bytes::copy_from_slice(raw.as_bytes()),
                session_id: "s-1".into(),
                session_kind: SessionKind::Business,
                status_raw: "In Review".into(),
            },
            recovered: false,
        }
    }

    #[test]
    fn a_record_decodes_to_what_was_encoded() {
        for (raw, vendor) in [("{\"a\":1}", "u\"1"), ("", ""), ("\u{0}\u{ff}", "ü")] {
            let record = stored(raw, vendor);
            assert_eq!(StoredImport::decode(&record.encode()).unwrap(), record);
        }
        let mut recovered = stored("{}", "v");
        recovered.recovered = true;
        assert!(StoredImport::decode(&recovered.encode()).unwrap().recovered);
    }

    #[test]
    fn a_damaged_record_is_an_error_not_a_panic() {
        let good = stored("{\"x\":[1,2]}", "v").encode();
        for cut in 0..good.len().min(40) {
            let _ = StoredImport::decode(&good.slice(..cut));
        }
        assert!(StoredImport::decode(&Bytes::from_static(b"\xff\xff\xff\xff{}")).is_err());
        assert!(StoredImport::decode(&Bytes::from_static(b"")).is_err());
    }
}
