//! The log lines of a gateway under partner policies: one start-up warning
//! naming the tenants without a policy, and audit events that name the
//! partner and the agreement. Its own binary: it installs the process's
//! subscriber, so it sees every line the gateway writes, from every thread.

#[path = "support/captured.rs"]
mod captured;
#[path = "gateway/env.rs"]
mod env;
#[path = "gateway/policy_setup.rs"]
mod policy_setup;

use didit_share_gateway::proto::{ImportSharedSessionRequest, ShareSessionRequest};
use didit_share_gateway::telemetry;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::util::SubscriberInitExt as _;

use captured::Captured;
use env::{TestEnv, demo, with_tenant};
use policy_setup::{X_OPEN, start, token};

#[tokio::test]
async fn policy_warning_and_audit_events_are_written() {
    let captured = capture();
    let env = start().await;
    start_up_warns_once_naming_the_tenants_without_a_policy(&captured);
    audit_events_name_the_partner_and_the_agreement(&captured, &env).await;
    env.stop().await;
}

/// The process's subscriber, writing JSON lines (audit events included)
/// to the returned buffer.
fn capture() -> Captured {
    let captured = Captured::default();
    telemetry::subscriber(true, false, EnvFilter::new("info"), captured.clone())
        .try_init()
        .expect("the only subscriber of this test binary");
    captured
}

/// The start-up warning names exactly the tenants without a policy.
fn start_up_warns_once_naming_the_tenants_without_a_policy(captured: &Captured) {
    let warnings: Vec<serde_json::Value> = captured
        .lines()
        .into_iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .or(l["fields"]["message"].as_str())
                .is_some_and(|m| m.contains("without a partner policy"))
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let warning = &warnings[0];
    assert_eq!(warning["level"], "WARN");
    let tenants = warning["tenants"]
        .as_str()
        .or(warning["fields"]["tenants"].as_str())
        .unwrap();
    for open in ["service-z", X_OPEN, env::READ_ONLY_TENANT] {
        assert!(tenants.contains(&format!("\"{open}\"")), "{tenants}");
    }
    for listed in ["\"service-x\"", "\"service-y\""] {
        assert!(!tenants.contains(listed), "{tenants}");
    }
}

/// `request` with `x-request-id: id`.
fn with_id<T>(id: &str, mut request: tonic::Request<T>) -> tonic::Request<T> {
    request
        .metadata_mut()
        .insert("x-request-id", id.parse().unwrap());
    request
}

/// Share, import and refusal each leave one audit event naming the
/// partner and the agreement (none for the refusal).
async fn audit_events_name_the_partner_and_the_agreement(captured: &Captured, env: &TestEnv) {
    let (x, y) = (demo("service-x"), demo("service-y"));
    let session = env.create_session("service-x", "user", "Approved").await;
    let shared = env
        .share_client
        .clone()
        .share_session(with_id(
            "policy-share",
            with_tenant(
                "service-x",
                ShareSessionRequest {
                    session_id: session,
                    for_application_id: y.application_id.to_string(),
                    ttl_seconds: Some(600),
                },
            ),
        ))
        .await
        .unwrap()
        .into_inner();
    let import = |id: &'static str, token: String| {
        let mut client = env.import_client.clone();
        let request = with_id(
            id,
            with_tenant(
                "service-y",
                ImportSharedSessionRequest {
                    share_token: token,
                    workflow_id: y.workflows.user.clone(),
                    vendor_data: String::new(),
                    trust_review: false,
                },
            ),
        );
        async move { client.import_shared_session(request).await }
    };
    import("policy-import", shared.share_token).await.unwrap();
    let from_z = token(env, "service-z", "service-z", "user", "service-y").await;
    import("policy-refused", from_z).await.unwrap_err();

    let event = |id: &str| {
        let events: Vec<_> = captured
            .lines()
            .into_iter()
            .filter(|l| l["target"] == "audit" && l["request_id"] == id)
            .collect();
        let all: Vec<String> = captured
            .lines()
            .into_iter()
            .map(|l| {
                format!(
                    "{}/{}/{}",
                    l["target"], l["request_id"], l["fields"]["message"]
                )
            })
            .collect();
        assert_eq!(events.len(), 1, "{id}: {events:?}; captured: {all:?}");
        events[0].clone()
    };
    let share = event("policy-share");
    assert_eq!(share["partner"], "service-y");
    assert_eq!(share["agreement"], "DSA-service-y");
    let import = event("policy-import");
    assert_eq!(import["partner"], "service-x");
    assert_eq!(import["agreement"], "DSA-service-x");
    let refused = event("policy-refused");
    assert_eq!(refused["reason"], "PARTNER_NOT_ALLOWED");
    assert!(
        refused
            .get("partner")
            .is_none_or(serde_json::Value::is_null)
    );
    assert_eq!(x.name, "service-x");
}
