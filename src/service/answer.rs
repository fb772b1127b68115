//! The import answer as callers receive it. Didit's session body is mapped
//! onto `ImportSharedSessionResponse` (the check arrays as `Struct`s, the
//! exact bytes in `raw_json`) and encoded once, when the import is stored
//! (in its replay record, [`crate::replay`]). Every answer after that, the first one included, is
//! those bytes ([`EncodedAnswer`]) with `replayed` and `recovered` appended
//! when set: a protobuf decoder keeps the last value of a scalar field, and
//! both come after every other field in field-number order, so the bytes
//! are exactly the ones prost writes for the whole message.
//!
//! The mapping of a session body is shared with `GetSession`
//! ([`session_answer`]).

use std::fmt;

use bytes::{BufMut, Bytes};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use super::checks;
use super::json_struct::StructList;
use crate::proto::{self, ImportSharedSessionResponse};
use crate::session::ImportedSession;

/// `ImportSharedSessionResponse.replayed`'s field number (proto/).
const REPLAYED_FIELD: u32 = 31;
/// `ImportSharedSessionResponse.recovered`'s field number (proto/).
const RECOVERED_FIELD: u32 = 32;

/// An import answer ready for the wire: the encoded response a replay
/// record keeps,
/// and the two flags this call adds. Debug shows sizes only (the bytes are
/// personal data).
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedAnswer {
    /// The encoded response without `replayed` and `recovered`.
    bytes: Bytes,
    /// Appended as `replayed = true` when set.
    replayed: bool,
    /// Appended as `recovered = true` when set.
    recovered: bool,
}

impl EncodedAnswer {
    /// `bytes` (a record's encoded response) answered with these flags.
    pub fn new(bytes: Bytes, replayed: bool, recovered: bool) -> Self {
        Self {
            bytes,
            replayed,
            recovered,
        }
    }

    /// Bytes on the wire.
    pub fn encoded_len(&self) -> usize {
        let flag = |field, set| {
            if set {
                prost::encoding::bool::encoded_len(field, &true)
            } else {
                0
            }
        };
        self.bytes.len()
            + flag(REPLAYED_FIELD, self.replayed)
            + flag(RECOVERED_FIELD, self.recovered)
    }

    /// Writes the message: the stored bytes, then the flags that are set.
    pub fn write(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.bytes);
        if self.replayed {
            prost::encoding::bool::encode(REPLAYED_FIELD, &true, buf);
        }
        if self.recovered {
            prost::encoding::bool::encode(RECOVERED_FIELD, &true, buf);
        }
    }

    /// The whole message as one buffer (tests, tools).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.write(&mut out);
        out
    }
}

impl fmt::Debug for EncodedAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodedAnswer")
            .field("bytes", &self.bytes.len())
            .field("replayed", &self.replayed)
            .field("recovered", &self.recovered)
            .finish()
    }
}

/// A session body from Didit (an import answer or a decision) in the
/// normalised shape: the fields read from the JSON, then the id, kind and
/// status the gateway already parsed, and the exact bytes. The one mapping
/// of a session body; `GetSession` converts its result.
pub(crate) fn session_answer(
    session: &ImportedSession,
) -> Result<ImportSharedSessionResponse, serde_json::Error> {
    let FromBody(mut response) = serde_json::from_slice(&session.raw)?;
    response.session_id = session.session_id.clone();
    response.session_kind = proto::SessionKind::from(session.session_kind) as i32;
    response.status = proto::SessionStatus::from(session.status()) as i32;
    response.status_raw = session.status_raw.clone();
    response.raw_json = session.raw.to_vec();
    Ok(response)
}

/// The response fields read from Didit's JSON answer: the check arrays
/// (by [`checks::find`]), `session_number`, `shared_from_session` and
/// `vendor_data`. When a key repeats, the last one wins (as in a
/// `serde_json::Map`).
struct FromBody(ImportSharedSessionResponse);

impl<'de> de::Deserialize<'de> for FromBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FromBodyVisitor)
    }
}

struct FromBodyVisitor;

impl<'de> Visitor<'de> for FromBodyVisitor {
    type Value = FromBody;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FromBody, A::Error> {
        let mut response = ImportSharedSessionResponse::default();
        while let Some(key) = map.next_key::<String>()? {
            if let Some(check) = checks::find(&key) {
                *(check.field_mut)(&mut response) = map.next_value::<StructList>()?.0;
                continue;
            }
            match key.as_str() {
                "session_number" => {
                    response.session_number = map.next_value::<Value>()?.as_i64().unwrap_or(0)
                }
                "shared_from_session" => {
                    response.shared_from_session = string_field(map.next_value()?)
                }
                "vendor_data" => response.vendor_data = string_field(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(FromBody(response))
    }
}

/// A top-level string field: null is empty, a non-string is kept as its
/// JSON text.
pub(crate) fn string_field(value: Value) -> String {
    match value {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    fn encode_answer(session: &ImportedSession) -> Result<Bytes, serde_json::Error> {
        Ok(Bytes::from(session_answer(session)?.encode_to_vec()))
    }
    use crate::session::SessionKind;

    fn session(raw: &[u8]) -> ImportedSession {
        ImportedSession {
            raw: Bytes::copy_from_slice(raw),
            session_id: "s".into(),
            session_kind: SessionKind::User,
            status_raw: "In Review".into(),
        }
    }

    const BODY: &str = r#"{"session_number":3,"vendor_data":"v","shared_from_session":"o",
        "id_verifications":[{"a":1,"b":[true,null,"x"]}],"aml_screenings":[{"hits":[]}]}"#;

    #[test]
    fn the_flags_are_appended_as_prost_would_write_them() {
        let stored = encode_answer(&session(BODY.as_bytes())).unwrap();
        let plain = session_answer(&session(BODY.as_bytes())).unwrap();
        for (replayed, recovered) in [(false, false), (true, false), (true, true), (false, true)] {
            let answer = EncodedAnswer::new(stored.clone(), replayed, recovered);
            let bytes = answer.to_vec();
            assert_eq!(bytes.len(), answer.encoded_len());
            let decoded = ImportSharedSessionResponse::decode(bytes.as_slice()).unwrap();
            let expected = ImportSharedSessionResponse {
                replayed,
                recovered,
                ..plain.clone()
            };
            assert_eq!(decoded, expected);
            // Byte for byte what prost writes for the whole message.
            assert_eq!(bytes, expected.encode_to_vec(), "{replayed} {recovered}");
        }
    }

    #[test]
    fn the_last_occurrence_of_a_flag_wins() {
        // Stored bytes that already carry `replayed = false` explicitly
        // (another writer) still decode as replayed once it is appended.
        let mut stored = encode_answer(&session(b"{}")).unwrap().to_vec();
        prost::encoding::bool::encode(REPLAYED_FIELD, &false, &mut stored);
        let answer = EncodedAnswer::new(Bytes::from(stored), true, false);
        let decoded = ImportSharedSessionResponse::decode(answer.to_vec().as_slice()).unwrap();
        assert!(decoded.replayed);
    }

    #[test]
    fn debug_shows_no_personal_data() {
        let answer = EncodedAnswer::new(Bytes::from_static(b"Jane Doe"), true, false);
        let shown = format!("{answer:?}");
        assert!(!shown.contains("Jane"), "{shown}");
    }

    /// The same fields read from a `serde_json::Value` tree, each check
    /// array by the field its key names.
    fn reference(raw: &[u8]) -> ImportSharedSessionResponse {
        let body: serde_json::Map<String, Value> = serde_json::from_slice(raw).unwrap();
        let mut r = ImportSharedSessionResponse::default();
        for check in checks::KYC_CHECKS.iter().chain(&checks::KYB_CHECKS) {
            if let Some(list) = body.get(check.key) {
                let StructList(list) = serde_json::from_value(list.clone()).unwrap();
                *(check.field_mut)(&mut r) = list;
            }
        }
        r.session_number = body
            .get("session_number")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let text = |key| body.get(key).cloned().map(string_field).unwrap_or_default();
        r.shared_from_session = text("shared_from_session");
        r.vendor_data = text("vendor_data");
        r
    }

    #[test]
    fn the_answer_takes_each_array_and_field_from_its_key() {
        let bodies = [
            r#"{"session_id":"x","session_number":7,"session_kind":"user","status":"In Review",
               "shared_from_session":"orig","vendor_data":"v",
               "id_verifications":[{"a":1}], "liveness_checks":[1,"two"],
               "face_matches":{"not":"an array"}, "aml_screenings":null,
               "database_validations":"nope", "proof_of_address":[],
               "location_checks":[{"n":1e300}], "registry_checks":[{"dup":1,"dup":2}],
               "questionnaires":[{}], "unknown":{"deep":[{"x":[1,{"y":2}]}]},
               "session_number":8}"#,
            r#"{"session_number":"12","shared_from_session":null,"vendor_data":42,"key_people_checks":true,"document_verifications":3.5}"#,
            r#"{"session_number":1.5,"shared_from_session":{"a":[1]},"phone_verifications":[[],{}],"email_verifications":[{"k":"v"}],"email_verifications":[]}"#,
            r#"{}"#,
        ];
        for raw in bodies {
            let mut r = session_answer(&session(raw.as_bytes())).unwrap();
            assert_eq!(r.raw_json, raw.as_bytes());
            assert_eq!(r.session_id, "s", "the stored id, not the body's");
            assert_eq!(r.session_kind, proto::SessionKind::User as i32);
            assert_eq!(r.status, proto::SessionStatus::InReview as i32);
            assert_eq!(r.status_raw, "In Review");
            assert!(!r.replayed);
            // Only the JSON-derived fields are compared with the reference.
            r.raw_json.clear();
            r.session_id.clear();
            r.session_kind = 0;
            r.status = 0;
            r.status_raw.clear();
            r.replayed = false;
            assert_eq!(r, reference(raw.as_bytes()), "{raw}");
        }
    }

    #[test]
    fn a_body_that_is_not_an_object_does_not_map() {
        for raw in ["[]", "1", "{\"a\":", ""] {
            assert!(session_answer(&session(raw.as_bytes())).is_err());
            assert!(encode_answer(&session(raw.as_bytes())).is_err());
        }
    }
}
