//! `didit.share.v1.ImportService`: `ImportSharedSession`'s validation
//! (every string bounded, every violation reported at once, before any
//! upstream call), the tenant's partner policy, the mapping of Didit's
//! exact answer onto the response, and the handler over [`Gateway::import`](crate::gateway::Gateway::import).

use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use tonic::{Request, Response, Status};

use super::AppState;
use super::call::run_call;
use super::checks;
use super::json_struct::StructList;
use crate::audit::{AuditEvent, sha256_prefix};
use crate::error::{FieldViolation, GatewayError};
use crate::gateway::ImportOutcome;
use crate::proto::import_service_server::ImportService;
use crate::proto::{self, ImportSharedSessionRequest, ImportSharedSessionResponse};
use crate::session::{ImportParams, ImportRequest, ImportedSession, ShareToken};
use crate::share_token::read_claims;

/// Longest share token accepted (Didit's are a few hundred bytes).
pub const MAX_SHARE_TOKEN_BYTES: usize = 4096;
/// Longest workflow id accepted.
pub const MAX_WORKFLOW_ID_BYTES: usize = 128;
/// Longest vendor_data accepted.
pub const MAX_VENDOR_DATA_BYTES: usize = 1024;

/// The ImportService implementation.
pub struct ImportApi {
    /// The core and what every call needs.
    state: Arc<AppState>,
}

impl ImportApi {
    /// Serves `state`.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl ImportService for ImportApi {
    async fn import_shared_session(
        &self,
        request: Request<ImportSharedSessionRequest>,
    ) -> Result<Response<ImportSharedSessionResponse>, Status> {
        run_call(
            &self.state,
            "ImportSharedSession",
            request,
            |tenant, ctx, message, audit| async move {
                let input = ImportRequest::try_from(message)?;
                audit.set(|e| fill_audit(e, &input));
                // On every call, before the replay lookup: a revoked
                // agreement stops replays too.
                let decision = tenant
                    .policy
                    .check_import(
                        tenant.application_id,
                        input.share_token.expose(),
                        input.params.trust_review,
                    )
                    .map_err(|refusal| refusal.record(&self.state.metrics, &tenant.id))?;
                audit.set(|e| decision.fill_audit(e));
                let outcome = self.state.gateway.import(&tenant, input, ctx).await?;
                audit.set(|e| {
                    e.new_session_id = Some(outcome.stored.session.session_id.clone());
                    e.replayed = outcome.replayed;
                });
                ImportSharedSessionResponse::try_from(&outcome)
            },
        )
        .await
    }
}

/// An import's audit fields known before Didit answers: hashes of the
/// token and vendor_data (never the values), the workflow, and the source
/// session named by the token's (unverified) claims.
fn fill_audit(event: &mut AuditEvent, input: &ImportRequest) {
    let token = input.share_token.expose();
    event.token_sha256_prefix = Some(sha256_prefix(token.as_bytes()));
    event.session_id = read_claims(token)
        .ok()
        .map(|claims| claims.session_id.to_string());
    event.workflow_id = Some(input.params.workflow_id.clone());
    let vendor_data = &input.params.vendor_data;
    event.vendor_data_sha256_prefix =
        (!vendor_data.is_empty()).then(|| sha256_prefix(vendor_data.as_bytes()));
}

/// Validates an import request.
impl TryFrom<ImportSharedSessionRequest> for ImportRequest {
    type Error = GatewayError;

    fn try_from(req: ImportSharedSessionRequest) -> Result<Self, GatewayError> {
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

/// The import answer, decoded from the exact upstream bytes (on every
/// import and every replay).
impl TryFrom<&ImportOutcome> for ImportSharedSessionResponse {
    type Error = GatewayError;

    fn try_from(outcome: &ImportOutcome) -> Result<Self, GatewayError> {
        let mut response = session_answer(&outcome.stored.session).map_err(|e| {
            GatewayError::Internal(format!("stored import is not a JSON object: {e}"))
        })?;
        response.replayed = outcome.replayed;
        response.recovered = outcome.replayed && outcome.stored.recovered;
        Ok(response)
    }
}

/// A session body from Didit (an import answer or a decision) in the
/// normalised shape: the fields read from the JSON, then the id, kind and
/// status the gateway already parsed, and the exact bytes. The one mapping
/// of a session body; `GetSession` converts its result.
pub(super) fn session_answer(
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
pub(super) fn string_field(value: Value) -> String {
    match value {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SessionKind;

    #[test]
    fn import_validation_bounds_every_string() {
        let err = ImportRequest::try_from(ImportSharedSessionRequest {
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

    fn outcome(raw: &[u8], replayed: bool) -> ImportOutcome {
        ImportOutcome {
            stored: Arc::new(crate::replay::StoredImport {
                params: ImportParams {
                    workflow_id: "wf".into(),
                    vendor_data: String::new(),
                    trust_review: false,
                },
                session: ImportedSession {
                    raw: bytes::Bytes::copy_from_slice(raw),
                    session_id: "s".into(),
                    session_kind: SessionKind::User,
                    status_raw: "In Review".into(),
                },
                recovered: false,
            }),
            replayed,
        }
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
            let mut r =
                ImportSharedSessionResponse::try_from(&outcome(raw.as_bytes(), true)).unwrap();
            assert_eq!(r.raw_json, raw.as_bytes());
            assert_eq!(r.session_id, "s", "the stored id, not the body's");
            assert_eq!(r.session_kind, proto::SessionKind::User as i32);
            assert_eq!(r.status, proto::SessionStatus::InReview as i32);
            assert_eq!(r.status_raw, "In Review");
            assert!(r.replayed);
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
    fn a_stored_body_that_is_not_an_object_is_an_internal_error() {
        for raw in ["[]", "1", "{\"a\":", ""] {
            assert!(matches!(
                ImportSharedSessionResponse::try_from(&outcome(raw.as_bytes(), true)),
                Err(GatewayError::Internal(_))
            ));
        }
    }
}
