//! No lost imports, and the import path's fairness rules, on the memory
//! backend: an import whose answer Didit lost is found again through
//! Didit on the retry (`recovered`), a caller with other parameters never
//! sees the leader's parameter-specific error, and imports detached from
//! their callers are bounded.

use std::time::Duration;

use crate::env::{TestEnv, demo, eventually, reason};
use didit_sandbox::SandboxConfig;
use serde_json::json;
use tonic::Code;
use tonic_types::StatusExt as _;

async fn env_with(tweak: impl FnOnce(&mut didit_share_gateway::config::Config)) -> TestEnv {
    TestEnv::start_with(SandboxConfig::default(), tweak).await
}

/// The session the sandbox holds under `id`, as its admin endpoint shows it.
pub async fn sandbox_session(env_base: &str, id: &str) -> serde_json::Value {
    reqwest::get(format!("{env_base}/_sandbox/sessions/{id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_lost_import_answer_is_recovered_on_the_retry() {
    let env = env_with(|_| {}).await;
    let y = demo("service-y");
    let source = env.create_session("service-x", "user", "Approved").await;
    let token = env.token_for_y(&source).await;
    env.faults(json!({"per_endpoint": {"import": {"drop_next": 1}}}))
        .await;
    let lost = env
        .import("service-y", &token, &y.workflows.user, "user-7", true)
        .await
        .unwrap_err();
    assert_eq!(lost.code(), Code::Unavailable, "{lost:?}");
    assert_eq!(reason(&lost), "UPSTREAM_UNAVAILABLE");
    assert!(lost.get_details_retry_info().is_some(), "RetryInfo");
    assert_eq!(env.stats().import_ok, 1, "Didit made the import");

    let retry = env
        .import("service-y", &token, &y.workflows.user, "user-7", true)
        .await
        .unwrap();
    assert!(retry.replayed && retry.recovered, "{retry:?}");
    assert_eq!(retry.shared_from_session, source);
    assert_eq!(retry.vendor_data, "user-7");
    let held = sandbox_session(&env.sandbox.base_url(), &retry.session_id).await;
    assert_eq!(
        held["session"]["shared_from_session"], source,
        "the session Didit created: {held}"
    );
    assert_eq!(env.stats().import_ok, 1, "still one import");

    // The recovered session is now stored: a third call is a plain replay.
    let third = env
        .import("service-y", &token, &y.workflows.user, "user-7", true)
        .await
        .unwrap();
    assert!(third.replayed);
    assert_eq!(third.session_id, retry.session_id);
    env.stop().await;
}

#[tokio::test]
async fn an_already_imported_token_with_nothing_in_doubt_stays_already_imported() {
    let env = env_with(|c| c.replay.window = Duration::from_millis(200)).await;
    let y = demo("service-y");
    let source = env.create_session("service-x", "user", "Approved").await;
    let token = env.token_for_y(&source).await;
    env.import("service-y", &token, &y.workflows.user, "u", true)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let err = env
        .import("service-y", &token, &y.workflows.user, "u", true)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "ALREADY_IMPORTED");
    assert_eq!(
        env.stats().list_calls,
        0,
        "no search without an in-doubt mark"
    );
    env.stop().await;
}

/// A caller whose parameters differ from the leader's must not get the
/// leader's parameter-specific error: it runs after the leader fails.
#[tokio::test]
async fn a_waiter_with_other_parameters_does_not_get_the_leaders_error() {
    let env = env_with(|_| {}).await;
    let y = demo("service-y");
    let source = env.create_session("service-x", "user", "Approved").await;
    let token = env.token_for_y(&source).await;
    env.faults(json!({"per_endpoint": {"import": {"latency_ms": 400}}}))
        .await;
    let wrong = {
        let (client, token) = (env.import_client.clone(), token.clone());
        tokio::spawn(async move {
            let request = didit_share_gateway::proto::ImportSharedSessionRequest {
                share_token: token,
                workflow_id: "wf_does_not_exist".into(),
                vendor_data: String::new(),
                trust_review: true,
            };
            client
                .clone()
                .import_shared_session(crate::env::with_tenant("service-y", request))
                .await
        })
    };
    eventually(
        Duration::from_secs(5),
        "the leader reached Didit",
        || async { env.stats().import_calls == 1 },
    )
    .await;
    let right = env
        .import("service-y", &token, &y.workflows.user, "", true)
        .await;
    let wrong = wrong.await.unwrap().unwrap_err();
    assert_eq!(reason(&wrong), "WORKFLOW_NOT_FOUND");
    let right = right.expect("the valid import ran after the leader failed");
    assert!(!right.replayed);
    assert_eq!(env.stats().import_ok, 1);
    env.stop().await;
}

/// Callers that leave early release their concurrency permits, but their
/// imports keep running: those are bounded too.
#[tokio::test]
async fn imports_detached_from_their_callers_are_bounded() {
    let env = env_with(|c| c.server.max_concurrent_requests = 4).await;
    let y = demo("service-y");
    let mut tokens = Vec::new();
    for _ in 0..12 {
        let source = env.create_session("service-x", "user", "Approved").await;
        tokens.push(env.token_for_y(&source).await);
    }
    env.faults(json!({"per_endpoint": {"import": {"latency_ms": 1500}}}))
        .await;
    for token in &tokens {
        let mut request = crate::env::with_tenant(
            "service-y",
            didit_share_gateway::proto::ImportSharedSessionRequest {
                share_token: token.clone(),
                workflow_id: y.workflows.user.clone(),
                vendor_data: String::new(),
                trust_review: true,
            },
        );
        request.set_timeout(Duration::from_millis(60));
        let err = env
            .import_client
            .clone()
            .import_shared_session(request)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.code(),
                Code::DeadlineExceeded | Code::Cancelled | Code::ResourceExhausted
            ),
            "{err:?}"
        );
    }
    // 4 in total, 2 of them for one tenant: the other ten never left.
    assert!(
        env.stats().import_calls <= 2,
        "{} imports reached Didit",
        env.stats().import_calls
    );
    let gauge = crate::env::metric_value(
        &env.state.metrics.encode(),
        "dsg_upstream_detached_in_flight",
    );
    assert!(gauge <= 2.0, "gauge {gauge}");
    env.stop().await;
}
