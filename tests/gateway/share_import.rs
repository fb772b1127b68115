//! The README's story: service-x shares a finished session with service-y,
//! service-y imports it, in both sandbox dialects, for KYC and KYB, for each
//! finished status, with trust_review both ways.

use std::collections::BTreeSet;

use crate::env::{DIALECTS, TestEnv, demo};
use didit_sandbox::{Sandbox, SandboxConfig, demo_applications};
use didit_share_gateway::proto::{SessionKind, SessionStatus};
use didit_share_gateway::service::checks::{KYB_CHECKS, KYC_CHECKS};
use serde_json::Value;

const KYC_FINISHED: [(&str, SessionStatus); 3] = [
    ("Approved", SessionStatus::Approved),
    ("Declined", SessionStatus::Declined),
    ("In Review", SessionStatus::InReview),
];
const KYB_FINISHED: [(&str, SessionStatus); 3] = [
    ("APPROVED", SessionStatus::Approved),
    ("DECLINED", SessionStatus::Declined),
    ("IN_REVIEW", SessionStatus::InReview),
];

#[tokio::test]
async fn kyc_and_kyb_share_then_import_in_both_dialects() {
    for dialect in DIALECTS {
        let env = TestEnv::start(dialect).await;
        let y = demo("service-y");
        for (kind, statuses, workflow, proto_kind) in [
            ("user", KYC_FINISHED, &y.workflows.user, SessionKind::User),
            (
                "business",
                KYB_FINISHED,
                &y.workflows.business,
                SessionKind::Business,
            ),
        ] {
            for (raw_status, status) in statuses {
                for trust_review in [true, false] {
                    let original = env.create_session("service-x", kind, raw_status).await;
                    let shared = env
                        .share(
                            "service-x",
                            &original,
                            &y.application_id.to_string(),
                            Some(600),
                        )
                        .await
                        .unwrap();
                    assert_eq!(shared.session_kind, proto_kind as i32);
                    assert_eq!(shared.for_application_id, y.application_id.to_string());
                    let expires = shared.expires_at.unwrap().seconds;
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs() as i64;
                    assert!(
                        (expires - now - 600).abs() < 30,
                        "{dialect:?}: expires_at {expires} vs now {now}"
                    );

                    let vendor = format!("partner-{kind}-{raw_status}-{trust_review}");
                    let imported = env
                        .import(
                            "service-y",
                            &shared.share_token,
                            workflow,
                            &vendor,
                            trust_review,
                        )
                        .await
                        .unwrap_or_else(|s| {
                            panic!("{dialect:?} {kind} {raw_status} {trust_review}: {s:?}")
                        });
                    let context =
                        format!("{dialect:?} {kind} {raw_status} trust_review={trust_review}");
                    assert_eq!(imported.session_kind, proto_kind as i32, "{context}");
                    assert_eq!(imported.shared_from_session, original, "{context}");
                    assert_eq!(imported.vendor_data, vendor, "{context}");
                    assert_ne!(imported.session_id, original, "{context}");
                    assert!(imported.session_number > 0, "{context}");
                    assert!(!imported.replayed, "{context}");
                    let (want_status, want_raw) = if trust_review {
                        (status, raw_status)
                    } else if kind == "user" {
                        (SessionStatus::InReview, "In Review")
                    } else {
                        (SessionStatus::InReview, "IN_REVIEW")
                    };
                    assert_eq!(imported.status, want_status as i32, "{context}");
                    assert_eq!(imported.status_raw, want_raw, "{context}");

                    // raw_json is the exact upstream body, and the check
                    // arrays carry every element of it.
                    let raw: Value = serde_json::from_slice(&imported.raw_json).unwrap();
                    assert_eq!(raw["session_id"], imported.session_id.as_str(), "{context}");
                    let table = if kind == "user" {
                        &KYC_CHECKS[..]
                    } else {
                        &KYB_CHECKS[..]
                    };
                    for check in table {
                        let want = raw[check.key].as_array().map_or(0, Vec::len);
                        let len = (check.field)(&imported).len();
                        assert_eq!(len, want, "{context}: {}", check.key);
                    }
                    if kind == "user" {
                        assert!(!imported.id_verifications.is_empty(), "{context}");
                        assert!(imported.registry_checks.is_empty(), "{context}");
                    } else {
                        assert!(!imported.registry_checks.is_empty(), "{context}");
                        assert!(imported.id_verifications.is_empty(), "{context}");
                    }
                }
            }
        }
        env.stop().await;
    }
}

/// The sandbox's fixtures are its own data (it cannot depend on the
/// gateway): a seeded session of each kind carries exactly the check arrays
/// of the gateway's table for that kind.
#[tokio::test]
async fn the_sandbox_sends_exactly_the_gateways_check_arrays() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sandbox = Sandbox::start(listener, SandboxConfig::default())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    for app in demo_applications() {
        for (kind, table) in [("user", &KYC_CHECKS[..]), ("business", &KYB_CHECKS[..])] {
            let want: BTreeSet<&str> = table.iter().map(|check| check.key).collect();
            for seeded in app.sessions.iter().filter(|s| s.session_kind == kind) {
                let url = format!(
                    "{}/_sandbox/sessions/{}",
                    sandbox.base_url(),
                    seeded.session_id
                );
                let reply: Value = http.get(url).send().await.unwrap().json().await.unwrap();
                let arrays: BTreeSet<&str> = reply["session"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(_, value)| value.is_array())
                    .map(|(key, _)| key.as_str())
                    .collect();
                let context = format!("{} {kind} {}", app.name, seeded.status);
                assert_eq!(arrays, want, "{context}");
            }
        }
    }
    sandbox.stop().await;
}

#[tokio::test]
async fn nested_check_objects_survive_the_struct_mapping() {
    let env = TestEnv::start(Default::default()).await;
    let y = demo("service-y");
    let original = env
        .create_session("service-x", "business", "APPROVED")
        .await;
    let token = env.token_for_y(&original).await;
    let imported = env
        .import("service-y", &token, &y.workflows.business, "biz-1", true)
        .await
        .unwrap();
    let raw: Value = serde_json::from_slice(&imported.raw_json).unwrap();
    // Re-encode each Struct to JSON and compare with the raw element.
    for (i, person) in imported.key_people_checks.iter().enumerate() {
        let back = struct_to_json(person);
        assert_eq!(
            back,
            normalise_numbers(&raw["key_people_checks"][i]),
            "key person {i}"
        );
    }
    env.stop().await;
}

fn struct_to_json(s: &prost_types::Struct) -> Value {
    Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), value_to_json(v)))
            .collect(),
    )
}

fn value_to_json(v: &prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::NumberValue(n)) => serde_json::json!(*n),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(value_to_json).collect()),
        Some(Kind::StructValue(s)) => struct_to_json(s),
    }
}

/// Struct numbers are doubles: compare integers as doubles too.
fn normalise_numbers(v: &Value) -> Value {
    match v {
        Value::Number(n) => serde_json::json!(n.as_f64().unwrap()),
        Value::Array(items) => Value::Array(items.iter().map(normalise_numbers).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), normalise_numbers(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}
