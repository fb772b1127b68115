//! Between the proto messages and the core's types: request validation
//! (every violation reported at once, before any upstream call) and the
//! mapping of Didit's JSON session onto the response message.

use std::time::SystemTime;

use prost_types::value::Kind;
use serde_json::{Map, Value};
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

fn session_kind(kind: SessionKind) -> proto::SessionKind {
    match kind {
        SessionKind::User => proto::SessionKind::User,
        SessionKind::Business => proto::SessionKind::Business,
    }
}

fn session_status(status: SessionStatus) -> proto::SessionStatus {
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
pub fn import_response(
    outcome: &ImportOutcome,
) -> Result<proto::ImportSharedSessionResponse, GatewayError> {
    let session = &outcome.stored.session;
    let mut body: Map<String, Value> = serde_json::from_slice(&session.raw)
        .map_err(|e| GatewayError::Internal(format!("stored import is not a JSON object: {e}")))?;
    let mut take_array = |name: &str| -> Vec<prost_types::Struct> {
        match body.remove(name) {
            Some(Value::Array(items)) => items.into_iter().map(to_struct).collect(),
            _ => Vec::new(),
        }
    };
    let mut response = proto::ImportSharedSessionResponse {
        session_id: session.session_id.clone(),
        session_kind: session_kind(session.session_kind) as i32,
        status: session_status(session.status()) as i32,
        status_raw: session.status_raw.clone(),
        raw_json: session.raw.to_vec(),
        replayed: outcome.replayed,
        ..Default::default()
    };
    let [idv, live, face, aml, db, poa, loc, phone, email] = KYC_ARRAYS.map(&mut take_array);
    response.id_verifications = idv;
    response.liveness_checks = live;
    response.face_matches = face;
    response.aml_screenings = aml;
    response.database_validations = db;
    response.proof_of_address = poa;
    response.location_checks = loc;
    response.phone_verifications = phone;
    response.email_verifications = email;
    response.registry_checks = take_array("registry_checks");
    response.key_people_checks = take_array("key_people_checks");
    response.document_verifications = take_array("document_verifications");
    response.questionnaires = take_array("questionnaires");
    response.session_number = body
        .get("session_number")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    response.shared_from_session = string_field(&body, "shared_from_session");
    response.vendor_data = string_field(&body, "vendor_data");
    Ok(response)
}

fn string_field(body: &Map<String, Value>, name: &str) -> String {
    match body.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// A check object as a `Struct`; a non-object element is kept under `value`.
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
