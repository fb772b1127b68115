//! Between the proto messages and the core's types: request validation
//! (every violation reported at once, before any upstream call) and the
//! mapping of Didit's JSON session onto the response message.

use std::time::SystemTime;

use serde_json::Value;
use uuid::Uuid;

use crate::error::{FieldViolation, GatewayError};
use crate::gateway::ImportOutcome;
use crate::proto;
use crate::session::{
    ImportParams, ImportRequest, SessionKind, SessionStatus, ShareOutcome, ShareRequest,
    ShareToken, TTL_DEFAULT_SECONDS, TTL_MAX_SECONDS, TTL_MIN_SECONDS,
};

/// Longest share token accepted (Didit's are a few hundred bytes).
pub const MAX_SHARE_TOKEN_BYTES: usize = 4096;
/// Longest workflow id accepted.
pub const MAX_WORKFLOW_ID_BYTES: usize = 128;
/// Longest vendor_data accepted.
pub const MAX_VENDOR_DATA_BYTES: usize = 1024;

/// The KYC check arrays of the seeds, in response field order.
const KYC_ARRAYS: [&str; 9] = [
    "id_verifications",
    "liveness_checks",
    "face_matches",
    "aml_screenings",
    "database_validations",
    "proof_of_address",
    "location_checks",
    "phone_verifications",
    "email_verifications",
];

fn parse_uuid(field: &'static str, raw: &str, out: &mut Vec<FieldViolation>) -> Option<Uuid> {
    if raw.is_empty() {
        out.push(FieldViolation::new(field, "is required"));
        return None;
    }
    // Only the canonical hyphenated form: it is what Didit's URLs use.
    match Uuid::try_parse(raw) {
        Ok(id) if raw.len() == 36 => Some(id),
        _ => {
            out.push(FieldViolation::new(
                field,
                "must be a uuid like 123e4567-e89b-12d3-a456-426614174000",
            ));
            None
        }
    }
}

fn check_text(
    field: &'static str,
    value: &str,
    max: usize,
    required: bool,
    out: &mut Vec<FieldViolation>,
) {
    if value.is_empty() {
        if required {
            out.push(FieldViolation::new(field, "is required"));
        }
    } else if value.len() > max {
        out.push(FieldViolation::new(
            field,
            format!("must be at most {max} bytes"),
        ));
    } else if value.chars().any(char::is_control) {
        out.push(FieldViolation::new(
            field,
            "must not contain control characters",
        ));
    }
}

/// Validates a share request.
pub fn share_request(req: proto::ShareSessionRequest) -> Result<ShareRequest, GatewayError> {
    let mut violations = Vec::new();
    let session_id = parse_uuid("session_id", &req.session_id, &mut violations);
    let for_application_id = parse_uuid(
        "for_application_id",
        &req.for_application_id,
        &mut violations,
    );
    let ttl_seconds = req.ttl_seconds.unwrap_or(TTL_DEFAULT_SECONDS);
    if !(TTL_MIN_SECONDS..=TTL_MAX_SECONDS).contains(&ttl_seconds) {
        violations.push(FieldViolation::new(
            "ttl_seconds",
            format!("must be between {TTL_MIN_SECONDS} and {TTL_MAX_SECONDS} (unset means {TTL_DEFAULT_SECONDS})"),
        ));
    }
    match (session_id, for_application_id, violations.is_empty()) {
        (Some(session_id), Some(for_application_id), true) => Ok(ShareRequest {
            session_id,
            for_application_id,
            ttl_seconds,
        }),
        _ => Err(GatewayError::InvalidRequest(violations)),
    }
}

/// Validates an import request.
pub fn import_request(
    req: proto::ImportSharedSessionRequest,
) -> Result<ImportRequest, GatewayError> {
    let mut violations = Vec::new();
    check_text(
        "share_token",
        &req.share_token,
        MAX_SHARE_TOKEN_BYTES,
        true,
        &mut violations,
    );
    if req.share_token.chars().any(char::is_whitespace) {
        violations.push(FieldViolation::new(
            "share_token",
            "must not contain whitespace",
        ));
    }
    check_text(
        "workflow_id",
        &req.workflow_id,
        MAX_WORKFLOW_ID_BYTES,
        true,
        &mut violations,
    );
    check_text(
        "vendor_data",
        &req.vendor_data,
        MAX_VENDOR_DATA_BYTES,
        false,
        &mut violations,
    );
    if !violations.is_empty() {
        return Err(GatewayError::InvalidRequest(violations));
    }
    Ok(ImportRequest {
        share_token: ShareToken::new(req.share_token),
        params: ImportParams {
            workflow_id: req.workflow_id,
            vendor_data: req.vendor_data,
            trust_review: req.trust_review,
        },
    })
}

pub(crate) fn session_kind(kind: SessionKind) -> proto::SessionKind {
    match kind {
        SessionKind::User => proto::SessionKind::User,
        SessionKind::Business => proto::SessionKind::Business,
    }
}

pub(crate) fn session_status(status: SessionStatus) -> proto::SessionStatus {
    use proto::SessionStatus as P;
    match status {
        SessionStatus::Approved => P::Approved,
        SessionStatus::Declined => P::Declined,
        SessionStatus::InReview => P::InReview,
        SessionStatus::NotFinished => P::NotFinished,
        SessionStatus::InProgress => P::InProgress,
        SessionStatus::NotStarted => P::NotStarted,
        SessionStatus::Abandoned => P::Abandoned,
        SessionStatus::Expired => P::Expired,
        SessionStatus::KycExpired => P::KycExpired,
        SessionStatus::Resubmitted => P::Resubmitted,
        SessionStatus::AwaitingUser => P::AwaitingUser,
        SessionStatus::Unknown => P::Unspecified,
    }
}

fn timestamp(at: SystemTime) -> prost_types::Timestamp {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}

/// The share answer.
pub fn share_response(outcome: ShareOutcome) -> proto::ShareSessionResponse {
    proto::ShareSessionResponse {
        share_token: outcome.share_token.expose().to_owned(),
        for_application_id: outcome.for_application_id,
        session_kind: session_kind(outcome.session_kind) as i32,
        expires_at: Some(timestamp(outcome.expires_at)),
    }
}

/// The import answer, decoded from the exact upstream bytes.
///
/// The check arrays are decoded straight from the JSON into
/// `prost_types::Struct`s, with no `serde_json::Value` tree in between:
/// this runs on every import and every replay, and the intermediate tree
/// was half of its cost (see the README, Performance).
pub fn import_response(
    outcome: &ImportOutcome,
) -> Result<proto::ImportSharedSessionResponse, GatewayError> {
    let session = &outcome.stored.session;
    let body: wire::ImportBody = serde_json::from_slice(&session.raw)
        .map_err(|e| GatewayError::Internal(format!("stored import is not a JSON object: {e}")))?;
    let [idv, live, face, aml, db, poa, loc, phone, email] = body.kyc;
    let [registry, people, documents, questionnaires] = body.kyb;
    Ok(proto::ImportSharedSessionResponse {
        session_id: session.session_id.clone(),
        session_number: body
            .session_number
            .as_ref()
            .and_then(Value::as_i64)
            .unwrap_or(0),
        session_kind: session_kind(session.session_kind) as i32,
        status: session_status(session.status()) as i32,
        status_raw: session.status_raw.clone(),
        shared_from_session: string_field(body.shared_from_session),
        vendor_data: string_field(body.vendor_data),
        id_verifications: idv,
        liveness_checks: live,
        face_matches: face,
        aml_screenings: aml,
        database_validations: db,
        proof_of_address: poa,
        location_checks: loc,
        phone_verifications: phone,
        email_verifications: email,
        registry_checks: registry,
        key_people_checks: people,
        document_verifications: documents,
        questionnaires,
        raw_json: session.raw.to_vec(),
        replayed: outcome.replayed,
    })
}

/// A top-level string field: absent or null is empty, a non-string is
/// kept as its JSON text.
fn string_field(value: Option<Value>) -> String {
    match value {
        Some(Value::String(s)) => s,
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Serde visitors from Didit's import JSON to the response's proto types.
mod wire {
    use std::collections::BTreeMap;
    use std::fmt;

    use prost_types::value::Kind;
    use serde::de::{
        self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
    };
    use serde_json::Value;

    use super::KYC_ARRAYS;

    /// The KYB check arrays, in response field order.
    const KYB_ARRAYS: [&str; 4] = [
        "registry_checks",
        "key_people_checks",
        "document_verifications",
        "questionnaires",
    ];

    /// What the response needs from the import answer. When a key repeats,
    /// the last one wins (as in a `serde_json::Map`).
    #[derive(Default)]
    pub(super) struct ImportBody {
        pub kyc: [Vec<prost_types::Struct>; 9],
        pub kyb: [Vec<prost_types::Struct>; 4],
        pub session_number: Option<Value>,
        pub shared_from_session: Option<Value>,
        pub vendor_data: Option<Value>,
    }

    impl<'de> de::Deserialize<'de> for ImportBody {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_map(BodyVisitor)
        }
    }

    struct BodyVisitor;

    impl<'de> Visitor<'de> for BodyVisitor {
        type Value = ImportBody;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ImportBody, A::Error> {
            let mut body = ImportBody::default();
            while let Some(key) = map.next_key::<String>()? {
                let key = key.as_str();
                if let Some(i) = KYC_ARRAYS.iter().position(|name| *name == key) {
                    body.kyc[i] = map.next_value::<Checks>()?.0;
                } else if let Some(i) = KYB_ARRAYS.iter().position(|name| *name == key) {
                    body.kyb[i] = map.next_value::<Checks>()?.0;
                } else {
                    match key {
                        "session_number" => body.session_number = Some(map.next_value()?),
                        "shared_from_session" => body.shared_from_session = Some(map.next_value()?),
                        "vendor_data" => body.vendor_data = Some(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
            }
            Ok(body)
        }
    }

    /// A check array: each object becomes a `Struct`, any other element is
    /// kept under `value`; a field that is not an array gives no checks.
    struct Checks(Vec<prost_types::Struct>);

    impl<'de> de::Deserialize<'de> for Checks {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(ChecksVisitor)
        }
    }

    struct ChecksVisitor;

    impl<'de> Visitor<'de> for ChecksVisitor {
        type Value = Checks;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checks, A::Error> {
            let mut checks = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(item) = seq.next_element_seed(ValueSeed)? {
                checks.push(match item.kind {
                    Some(Kind::StructValue(object)) => object,
                    kind => prost_types::Struct {
                        fields: BTreeMap::from([("value".to_owned(), prost_types::Value { kind })]),
                    },
                });
            }
            Ok(Checks(checks))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checks, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Checks(Vec::new()))
        }

        fn visit_bool<E>(self, _: bool) -> Result<Checks, E> {
            Ok(Checks(Vec::new()))
        }

        fn visit_i64<E>(self, _: i64) -> Result<Checks, E> {
            Ok(Checks(Vec::new()))
        }

        fn visit_u64<E>(self, _: u64) -> Result<Checks, E> {
            Ok(Checks(Vec::new()))
        }

        fn visit_f64<E>(self, _: f64) -> Result<Checks, E> {
            Ok(Checks(Vec::new()))
        }

        fn visit_str<E>(self, _: &str) -> Result<Checks, E> {
            Ok(Checks(Vec::new()))
        }

        fn visit_unit<E>(self) -> Result<Checks, E> {
            Ok(Checks(Vec::new()))
        }

        fn visit_none<E>(self) -> Result<Checks, E> {
            Ok(Checks(Vec::new()))
        }
    }

    /// Any JSON value as a `google.protobuf.Value` (numbers as f64, null as
    /// `NullValue`), the same mapping as `google.protobuf.Struct`'s JSON form.
    #[derive(Clone, Copy)]
    struct ValueSeed;

    impl<'de> DeserializeSeed<'de> for ValueSeed {
        type Value = prost_types::Value;

        fn deserialize<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    fn value(kind: Kind) -> prost_types::Value {
        prost_types::Value { kind: Some(kind) }
    }

    impl<'de> Visitor<'de> for ValueSeed {
        type Value = prost_types::Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }

        fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
            Ok(value(Kind::BoolValue(b)))
        }

        fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
            Ok(value(Kind::NumberValue(n as f64)))
        }

        fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
            Ok(value(Kind::NumberValue(n as f64)))
        }

        fn visit_f64<E>(self, n: f64) -> Result<Self::Value, E> {
            Ok(value(Kind::NumberValue(n)))
        }

        fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
            Ok(value(Kind::StringValue(s.to_owned())))
        }

        fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
            Ok(value(Kind::StringValue(s)))
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(value(Kind::NullValue(0)))
        }

        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(value(Kind::NullValue(0)))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(item) = seq.next_element_seed(ValueSeed)? {
                values.push(item);
            }
            Ok(value(Kind::ListValue(prost_types::ListValue { values })))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut fields = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                let item = map.next_value_seed(ValueSeed)?;
                fields.insert(key, item);
            }
            Ok(value(Kind::StructValue(prost_types::Struct { fields })))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_validation_reports_every_violation() {
        let err = share_request(proto::ShareSessionRequest {
            session_id: "not-a-uuid".into(),
            for_application_id: String::new(),
            ttl_seconds: Some(59),
        })
        .unwrap_err();
        let GatewayError::InvalidRequest(v) = err else {
            panic!()
        };
        let fields: Vec<_> = v.iter().map(|v| v.field).collect();
        assert_eq!(fields, ["session_id", "for_application_id", "ttl_seconds"]);
    }

    #[test]
    fn ttl_bounds_and_default() {
        let req = |ttl| proto::ShareSessionRequest {
            session_id: "11111111-1111-4111-8111-111111111111".into(),
            for_application_id: "22222222-2222-4222-8222-222222222222".into(),
            ttl_seconds: ttl,
        };
        assert_eq!(share_request(req(None)).unwrap().ttl_seconds, 3600);
        assert_eq!(share_request(req(Some(60))).unwrap().ttl_seconds, 60);
        assert_eq!(
            share_request(req(Some(86_400))).unwrap().ttl_seconds,
            86_400
        );
        assert!(share_request(req(Some(59))).is_err());
        assert!(share_request(req(Some(86_401))).is_err());
    }

    #[test]
    fn import_validation_bounds_every_string() {
        let err = import_request(proto::ImportSharedSessionRequest {
            share_token: String::new(),
            workflow_id: "w".repeat(MAX_WORKFLOW_ID_BYTES + 1),
            vendor_data: "a\u{0}b".into(),
            trust_review: true,
        })
        .unwrap_err();
        let GatewayError::InvalidRequest(v) = err else {
            panic!()
        };
        let fields: Vec<_> = v.iter().map(|v| v.field).collect();
        assert_eq!(fields, ["share_token", "workflow_id", "vendor_data"]);
    }

    use prost_types::value::Kind;
    use serde_json::Map;

    /// The straightforward mapping (via a `serde_json::Value` tree) that
    /// the direct decoder must match exactly.
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

    fn reference(raw: &[u8]) -> proto::ImportSharedSessionResponse {
        let mut body: Map<String, Value> = serde_json::from_slice(raw).unwrap();
        let mut take = |name: &str| match body.remove(name) {
            Some(Value::Array(items)) => items.into_iter().map(to_struct).collect(),
            _ => Vec::new(),
        };
        let mut r = proto::ImportSharedSessionResponse {
            id_verifications: take("id_verifications"),
            liveness_checks: take("liveness_checks"),
            face_matches: take("face_matches"),
            aml_screenings: take("aml_screenings"),
            database_validations: take("database_validations"),
            proof_of_address: take("proof_of_address"),
            location_checks: take("location_checks"),
            phone_verifications: take("phone_verifications"),
            email_verifications: take("email_verifications"),
            registry_checks: take("registry_checks"),
            key_people_checks: take("key_people_checks"),
            document_verifications: take("document_verifications"),
            questionnaires: take("questionnaires"),
            ..Default::default()
        };
        r.session_number = body
            .get("session_number")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        r.shared_from_session = string_field(body.get("shared_from_session").cloned());
        r.vendor_data = string_field(body.get("vendor_data").cloned());
        r
    }

    fn decoded(raw: &[u8]) -> proto::ImportSharedSessionResponse {
        let outcome = ImportOutcome {
            stored: std::sync::Arc::new(crate::replay::StoredImport {
                params: ImportParams {
                    workflow_id: "wf".into(),
                    vendor_data: String::new(),
                    trust_review: false,
                },
                session: crate::session::ImportedSession {
                    raw: bytes::Bytes::copy_from_slice(raw),
                    session_id: "s".into(),
                    session_kind: SessionKind::User,
                    status_raw: "In Review".into(),
                },
            }),
            replayed: false,
        };
        let mut r = import_response(&outcome).unwrap();
        assert_eq!(r.raw_json, raw);
        assert_eq!(r.session_id, "s");
        // Only the JSON-derived fields are compared with the reference.
        r.raw_json.clear();
        r.session_id.clear();
        r.session_kind = 0;
        r.status = 0;
        r.status_raw.clear();
        r
    }

    #[test]
    fn the_direct_decoder_matches_the_value_tree_mapping() {
        let bodies = [
            r#"{"session_id":"s","session_number":7,"session_kind":"user","status":"In Review",
               "shared_from_session":"orig","vendor_data":"v",
               "id_verifications":[{"a":1,"b":[1,2.5,-3,"x",null,true,{"c":{}}],"\u00e9\n":"Jos\u00e9"}],
               "liveness_checks":[1,"two",null,[3]],
               "face_matches":{"not":"an array"},
               "aml_screenings":null,
               "database_validations":"nope",
               "proof_of_address":[],
               "location_checks":[{"n":18446744073709551615,"m":-9223372036854775808,"f":1e300,"big":123456789012345678901234567890}],
               "registry_checks":[{"dup":1,"dup":2}],
               "questionnaires":[{}],
               "unknown":{"deep":[{"x":[1,{"y":2}]}]},
               "session_number":8}"#,
            r#"{"session_number":"12","shared_from_session":null,"vendor_data":42,"key_people_checks":true,"document_verifications":3.5}"#,
            r#"{"session_number":1.5,"shared_from_session":{"a":[1]},"phone_verifications":[[],{}],"email_verifications":[{"k":"v"}],"email_verifications":[]}"#,
            r#"{}"#,
        ];
        for raw in bodies {
            assert_eq!(decoded(raw.as_bytes()), reference(raw.as_bytes()), "{raw}");
        }
    }

    #[test]
    fn a_stored_body_that_is_not_an_object_is_an_internal_error() {
        let outcome = |raw: &'static str| ImportOutcome {
            stored: std::sync::Arc::new(crate::replay::StoredImport {
                params: ImportParams {
                    workflow_id: "wf".into(),
                    vendor_data: String::new(),
                    trust_review: false,
                },
                session: crate::session::ImportedSession {
                    raw: bytes::Bytes::from_static(raw.as_bytes()),
                    session_id: "s".into(),
                    session_kind: SessionKind::User,
                    status_raw: "Approved".into(),
                },
            }),
            replayed: true,
        };
        for raw in ["[]", "1", "{\"a\":", ""] {
            assert!(matches!(
                import_response(&outcome(raw)),
                Err(GatewayError::Internal(_))
            ));
        }
    }

    #[test]
    fn json_values_map_onto_struct_losslessly() {
        let value: Value = serde_json::json!({"a": [1, "x", null, true, {"b": 2.5}]});
        let s = to_struct(value);
        let Some(Kind::ListValue(list)) = &s.fields["a"].kind else {
            panic!()
        };
        assert_eq!(list.values.len(), 5);
        assert!(matches!(list.values[2].kind, Some(Kind::NullValue(_))));
    }
}
