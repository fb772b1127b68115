//! The import answer as callers receive it. Didit's session body is mapped
//! onto `ImportSharedSessionResponse` (the check arrays as `Struct`s, the
//! exact bytes in `raw_json`) and written once, straight from the JSON
//! ([`SessionAnswer`]), when the import is stored (in its replay record,
//! [`crate::replay`]). Every answer after that, the first one included, is
//! those bytes ([`EncodedAnswer`]) with `replayed` and `recovered` appended
//! when set: a protobuf decoder keeps the last value of a scalar field, and
//! both come after every other field in field-number order. When each JSON
//! object's keys are sorted and distinct, the bytes are exactly the ones
//! prost writes for the whole message; otherwise they decode to the same
//! message ([`struct_wire`](super::struct_wire)).
//!
//! The mapping of a session body is shared with `GetSession`
//! ([`session_answer`]).

use std::fmt;

use bytes::{BufMut, Bytes};
use prost::Message as _;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use serde::de::{self, Deserializer as _, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use super::checks;
use super::struct_wire::{KeySeed, Span, Tape};
use crate::proto::{self, ImportSharedSessionResponse};
use crate::session::ImportedSession;

/// `ImportSharedSessionResponse.raw_json`'s field number (proto/).
const RAW_JSON_FIELD: u32 = 30;
/// `replayed = true` (`ImportSharedSessionResponse.replayed`, proto/): field 31 as a varint key (0xf8 0x01), then 1.
const REPLAYED: [u8; 3] = [0xf8, 0x01, 0x01];
/// `recovered = true` (`ImportSharedSessionResponse.recovered`): field 32 as a varint key (0x80 0x02), then 1.
const RECOVERED: [u8; 3] = [0x80, 0x02, 0x01];
/// Both, in field-number order.
const REPLAYED_AND_RECOVERED: [u8; 6] = [0xf8, 0x01, 0x01, 0x80, 0x02, 0x01];

/// An import answer ready for the wire: the encoded response a replay
/// record keeps, and the two flags this call adds. Debug shows sizes only
/// (the bytes are personal data).
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
        self.bytes.len() + self.flags().len()
    }

    /// The stored bytes (shared, not copied).
    pub fn stored(&self) -> Bytes {
        self.bytes.clone()
    }

    /// The encoded `replayed = true` and `recovered = true` fields that
    /// are set, in that order (what follows the stored bytes).
    pub fn flags(&self) -> &'static [u8] {
        match (self.replayed, self.recovered) {
            (false, false) => &[],
            (true, false) => &REPLAYED[..],
            (false, true) => &RECOVERED[..],
            (true, true) => &REPLAYED_AND_RECOVERED,
        }
    }

    /// The whole message as one buffer, as [`Self::stored`] then
    /// [`Self::flags`] go on the wire (tests, tools).
    pub fn to_vec(&self) -> Vec<u8> {
        [&self.bytes[..], self.flags()].concat()
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

/// A session body from Didit (an import answer or a decision) mapped onto
/// `ImportSharedSessionResponse` and ready to be written: the fields read
/// from the JSON (the check arrays by [`checks::find`] as `Struct`s,
/// `session_number`, `shared_from_session`, `vendor_data`), then the id,
/// kind and status the gateway already parsed, and the exact bytes in
/// `raw_json`. The one mapping of a session body; its length is known
/// before a byte is written, and the check arrays go from JSON to the wire
/// without a `Struct` tree ([`struct_wire`]).
///
/// The fields are written in field-number order, as prost writes them.
/// When a key repeats, the last one wins (as in a `serde_json::Map`).
pub(crate) struct SessionAnswer<'t, 'a> {
    /// Fields 1-7.
    head: ImportSharedSessionResponse,
    tape: &'t Tape<'a>,
    /// The check arrays present, by field number (the last of a repeated
    /// key).
    checks: Checks,
    raw_json: &'a [u8],
}

/// A check array's span on the tape by its field number.
type Checks = [Option<Span>; CHECK_FIELDS];

/// Above every check array's field number.
const CHECK_FIELDS: usize = 24;

impl SessionAnswer<'_, '_> {
    /// Reads `session`'s body and gives `f` the answer, to size and write
    /// it; fails when the body is not a JSON object.
    pub fn with<R>(
        session: &ImportedSession,
        f: impl FnOnce(&SessionAnswer<'_, '_>) -> R,
    ) -> Result<R, serde_json::Error> {
        Tape::with(&session.raw, |tape| {
            let mut deserializer = serde_json::Deserializer::from_slice(&session.raw);
            let (head, checks) = deserializer.deserialize_map(FromBody { tape, session })?;
            deserializer.end()?;
            Ok(f(&SessionAnswer {
                head,
                tape,
                checks,
                raw_json: &session.raw,
            }))
        })
    }

    /// Bytes [`Self::write`] writes.
    pub fn encoded_len(&self) -> usize {
        let raw = match self.raw_json.len() {
            0 => 0,
            len => key_len(RAW_JSON_FIELD) + encoded_len_varint(len as u64) + len,
        };
        let checks: usize = self.checks.iter().flatten().map(|span| span.len).sum();
        self.head.encoded_len() + checks + raw
    }

    /// Writes the encoded message (without `replayed` and `recovered`);
    /// fails only when `buf` has no room for [`Self::encoded_len`] bytes.
    pub fn write(&self, buf: &mut impl BufMut) -> Result<(), prost::EncodeError> {
        self.head.encode(buf)?;
        for span in self.checks.iter().flatten() {
            self.tape.write(span, buf);
        }
        if !self.raw_json.is_empty() {
            encode_key(RAW_JSON_FIELD, WireType::LengthDelimited, buf);
            encode_varint(self.raw_json.len() as u64, buf);
            buf.put_slice(self.raw_json);
        }
        Ok(())
    }
}

/// `session`'s body mapped onto the response, decoded (`GetSession`, tests):
/// the bytes [`SessionAnswer`] writes, read back.
pub(crate) fn session_answer(
    session: &ImportedSession,
) -> Result<ImportSharedSessionResponse, serde_json::Error> {
    let bytes = SessionAnswer::with(session, |answer| {
        let mut bytes = Vec::with_capacity(answer.encoded_len());
        answer.write(&mut bytes).map(|()| bytes)
    })?
    .map_err(de::Error::custom)?;
    ImportSharedSessionResponse::decode(bytes.as_slice()).map_err(de::Error::custom)
}

/// Reads Didit's JSON object: fields 1-7 and the check arrays.
struct FromBody<'t, 'a> {
    tape: &'t mut Tape<'a>,
    session: &'a ImportedSession,
}

impl<'de> Visitor<'de> for FromBody<'_, '_> {
    type Value = (ImportSharedSessionResponse, Checks);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let session = self.session;
        let mut head = ImportSharedSessionResponse {
            session_id: session.session_id.clone(),
            session_kind: proto::SessionKind::from(session.session_kind) as i32,
            status: proto::SessionStatus::from(session.status()) as i32,
            status_raw: session.status_raw.clone(),
            ..Default::default()
        };
        let mut checks = Checks::default();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if let Some(check) = checks::find(&key) {
                let span = self.tape.read_list(check.number, &mut map)?;
                let slot = checks
                    .get_mut(check.number as usize)
                    .ok_or_else(|| de::Error::custom("a check array's field number is too high"))?;
                *slot = Some(span);
                continue;
            }
            match key.as_ref() {
                "session_number" => {
                    head.session_number = map.next_value::<Value>()?.as_i64().unwrap_or(0)
                }
                "shared_from_session" => head.shared_from_session = string_field(map.next_value()?),
                "vendor_data" => head.vendor_data = string_field(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((head, checks))
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
    use proptest::prelude::*;
    use prost::Message as _;
    use prost_types::value::Kind;

    use super::*;
    use crate::session::SessionKind;

    /// `ImportSharedSessionResponse.replayed`'s field number (proto/).
    const REPLAYED_FIELD: u32 = 31;
    /// `ImportSharedSessionResponse.recovered`'s field number (proto/).
    const RECOVERED_FIELD: u32 = 32;

    fn session(raw: &[u8]) -> ImportedSession {
        ImportedSession {
            raw: Bytes::copy_from_slice(raw),
            session_id: "s".into(),
            session_kind: SessionKind::User,
            status_raw: "In Review".into(),
        }
    }

    /// What [`SessionAnswer`] writes for `raw`, checked against its length.
    fn written(raw: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
        SessionAnswer::with(&session(raw), |answer| {
            let mut bytes = Vec::new();
            answer.write(&mut bytes).unwrap();
            let shown = String::from_utf8_lossy(raw);
            assert_eq!(bytes.len(), answer.encoded_len(), "{shown}");
            bytes
        })
    }

    /// The mapping written out plainly: a `serde_json::Value` tree, then
    /// `prost_types` values, each check array by the field its key names
    /// (the last of a repeated key, as a `serde_json::Map` keeps it).
    fn reference(raw: &[u8]) -> ImportSharedSessionResponse {
        fn to_struct(value: Value) -> prost_types::Struct {
            match value {
                Value::Object(map) => prost_types::Struct {
                    fields: map.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
                },
                other => prost_types::Struct {
                    fields: [("value".to_owned(), to_value(other))].into(),
                },
            }
        }
        fn to_value(value: Value) -> prost_types::Value {
            let kind = match value {
                Value::Null => Kind::NullValue(0),
                Value::Bool(b) => Kind::BoolValue(b),
                Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
                Value::String(s) => Kind::StringValue(s),
                Value::Array(items) => Kind::ListValue(prost_types::ListValue {
                    values: items.into_iter().map(to_value).collect(),
                }),
                Value::Object(_) => Kind::StructValue(to_struct(value)),
            };
            prost_types::Value { kind: Some(kind) }
        }
        let body: serde_json::Map<String, Value> = serde_json::from_slice(raw).unwrap();
        let mut r = ImportSharedSessionResponse {
            session_id: "s".into(),
            session_kind: proto::SessionKind::User as i32,
            status: proto::SessionStatus::InReview as i32,
            status_raw: "In Review".into(),
            raw_json: raw.to_vec(),
            ..Default::default()
        };
        for check in checks::KYC_CHECKS.iter().chain(&checks::KYB_CHECKS) {
            if let Some(Value::Array(items)) = body.get(check.key) {
                *(check.field_mut)(&mut r) = items.iter().cloned().map(to_struct).collect();
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

    const BODY: &str = r#"{"session_number":3,"vendor_data":"v","shared_from_session":"o",
        "id_verifications":[{"a":1,"b":[true,null,"x"]}],"aml_screenings":[{"hits":[]}]}"#;

    #[test]
    fn the_flags_are_appended_as_prost_would_write_them() {
        let stored = Bytes::from(written(BODY.as_bytes()).unwrap());
        let plain = reference(BODY.as_bytes());
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
            // Byte for byte what prost writes for the whole message (each
            // object's keys are in order and distinct in BODY; see the
            // module doc of `struct_wire` for the other case).
            assert_eq!(bytes, expected.encode_to_vec(), "{replayed} {recovered}");
        }
    }

    #[test]
    fn the_flag_bytes_are_prosts() {
        let mut replayed = Vec::new();
        prost::encoding::bool::encode(REPLAYED_FIELD, &true, &mut replayed);
        let mut recovered = Vec::new();
        prost::encoding::bool::encode(RECOVERED_FIELD, &true, &mut recovered);
        assert_eq!(REPLAYED[..], replayed[..]);
        assert_eq!(RECOVERED[..], recovered[..]);
        assert_eq!(
            REPLAYED_AND_RECOVERED[..],
            [replayed, recovered].concat()[..]
        );
    }

    #[test]
    fn the_last_occurrence_of_a_flag_wins() {
        // Stored bytes that already carry `replayed = false` explicitly
        // (another writer) still decode as replayed once it is appended.
        let mut stored = written(b"{}").unwrap();
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

    /// Decodes what is written for `raw` and compares it with the plain
    /// mapping.
    fn assert_maps_as_reference(raw: &str) {
        let bytes = written(raw.as_bytes()).unwrap();
        let decoded = ImportSharedSessionResponse::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded, reference(raw.as_bytes()), "{raw}");
        assert_eq!(session_answer(&session(raw.as_bytes())).unwrap(), decoded);
    }

    #[test]
    fn the_answer_takes_each_array_and_field_from_its_key() {
        for raw in [
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
            r#"{"email_verifications":[{"k":"v"}],"id_verifications":[2],"email_verifications":[{"k":"w"}]}"#,
            r#"{}"#,
        ] {
            assert_maps_as_reference(raw);
        }
    }

    #[test]
    fn every_json_value_maps_onto_struct_as_the_tree_does() {
        for list in [
            r#"[{"a":1,"b":[1,2.5,-3,"x",null,true,{"c":{}}],"\u00e9\n":"Jos\u00e9"}]"#,
            r#"[1,"two",null,[3],true,false,"esc\"aped"]"#,
            r#"[{"n":18446744073709551615,"m":-9223372036854775808,"f":1e300,"big":123456789012345678901234567890}]"#,
            r#"[{"dup":1,"dup":2},{"b":1,"a":2,"":3,"":{"x":null}}]"#,
            r#"[{"deep":[{"x":[1,{"y":2}]}]}]"#,
            r#"[{},[],{}]"#,
            r#"[{"long":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}]"#,
            "[]",
            r#"{"not":"an array"}"#,
            "null",
            r#""nope""#,
            "3.5",
            "-1",
            "true",
        ] {
            for field in ["id_verifications", "questionnaires"] {
                assert_maps_as_reference(&format!(r#"{{"{field}":{list}}}"#));
            }
        }
    }

    #[test]
    fn every_check_array_has_a_slot() {
        for check in checks::KYC_CHECKS.iter().chain(&checks::KYB_CHECKS) {
            assert!((check.number as usize) < CHECK_FIELDS, "{}", check.key);
        }
    }

    #[test]
    fn a_body_that_is_not_an_object_does_not_map() {
        for raw in [
            "[]",
            "1",
            "{\"a\":",
            "",
            "{} x",
            "{\"id_verifications\":[1,]}",
        ] {
            assert!(written(raw.as_bytes()).is_err(), "{raw}");
            assert!(session_answer(&session(raw.as_bytes())).is_err(), "{raw}");
        }
    }

    /// Any JSON value, a few levels deep, with short keys that repeat.
    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e300f64..1e300).prop_map(Value::from),
            "[a-c\u{e9}\"\\\\\n]{0,3}|.{0,200}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(("[a-c]{0,2}", inner), 0..6)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    /// A JSON object text with the given entries, keys possibly repeated
    /// (which a `serde_json::Map` cannot hold).
    fn object(entries: &[(&str, Value)]) -> String {
        let body: Vec<String> = entries
            .iter()
            .map(|(k, v)| format!("{}:{v}", Value::from(*k)))
            .collect();
        format!("{{{}}}", body.join(","))
    }

    proptest! {
        #[test]
        fn any_body_decodes_to_the_plain_mapping(
            a in json(), b in json(), c in json(), d in json(),
            keys in prop::sample::subsequence(
                vec!["id_verifications", "aml_screenings", "registry_checks", "vendor_data",
                     "session_number", "questionnaires", "other", "id_verifications"], 0..8),
        ) {
            let values = [a, b, c, d];
            let entries: Vec<(&str, Value)> = keys
                .iter()
                .zip(values.iter().cycle())
                .map(|(k, v)| (*k, v.clone()))
                .collect();
            assert_maps_as_reference(&object(&entries));
        }
    }
}
