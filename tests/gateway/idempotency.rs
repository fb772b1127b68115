//! The idempotency promise: concurrent identical imports reach Didit once,
//! a retried import gets the same session back, and the replay store never
//! crosses tenants, never stores errors, and forgets on time and on size.

use std::time::Duration;

use crate::env::{TestEnv, demo, error_metadata, metric_value, reason};
use didit_sandbox::SandboxConfig;
use serde_json::json;
use tonic::Code;

async fn env_with(tweak: impl FnOnce(&mut didit_share_gateway::config::Config)) -> TestEnv {
    TestEnv::start_with(SandboxConfig::default(), tweak).await
}

#[tokio::test]
async fn a_thousand_concurrent_identical_imports_reach_didit_once() {
    let env = env_with(|c| c.server.max_concurrent_requests = 5000).await;
    let y = demo("service-y");
    let session = env.create_session("service-x", "user", "Approved").await;
    let token = env.token_for_y(&session).await;
    env.faults(json!({"latency_ms": 300, "endpoints": ["import"]}))
        .await;
    let before = env.stats().import_calls;
    let mut calls = Vec::new();
    for _ in 0..1000 {
        let (client, token, workflow) = (
            env.import_client.clone(),
            token.clone(),
            y.workflows.user.clone(),
        );
        calls.push(tokio::spawn(async move {
            let request = didit_share_gateway::proto::ImportSharedSessionRequest {
                share_token: token,
                workflow_id: workflow,
                vendor_data: "partner-user-42".into(),
                trust_review: true,
            };
            let mut client = client;
            client
                .import_shared_session(crate::env::with_tenant("service-y", request))
                .await
                .map(|r| r.into_inner())
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for call in calls {
        let response = call.await.unwrap().unwrap();
        ids.insert(response.session_id);
    }
    assert_eq!(ids.len(), 1, "every caller got the same session");
    assert_eq!(env.stats().import_calls - before, 1, "one upstream import");
    env.stop().await;
}

#[tokio::test]
async fn a_caller_that_gives_up_mid_import_gets_the_stored_result_on_retry() {
    let env = env_with(|_| {}).await;
    let y = demo("service-y");
    let session = env.create_session("service-x", "user", "Approved").await;
    let token = env.token_for_y(&session).await;
    env.faults(json!({"latency_ms": 600, "endpoints": ["import"]}))
        .await;

    let mut request = crate::env::with_tenant(
        "service-y",
        didit_share_gateway::proto::ImportSharedSessionRequest {
            share_token: token.clone(),
            workflow_id: y.workflows.user.clone(),
            vendor_data: "u-1".into(),
            trust_review: false,
        },
    );
    request.set_timeout(Duration::from_millis(100));
    let first = env
        .import_client
        .clone()
        .import_shared_session(request)
        .await
        .unwrap_err();
    assert_eq!(first.code(), Code::DeadlineExceeded);

    // The detached import completes on its own, and its result is stored.
    for _ in 0..100 {
        let stored = metric_value(
            &env.state.metrics.encode(),
            "dsg_import_replay_stored_total",
        );
        if env.stats().import_ok == 1 && stored == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        env.stats().import_ok,
        1,
        "the import finished without its caller"
    );
    env.faults(json!({})).await;
    let retry = env
        .import("service-y", &token, &y.workflows.user, "u-1", false)
        .await
        .unwrap();
    assert!(retry.replayed, "answered from the store");
    assert_eq!(retry.status_raw, "In Review");
    assert_eq!(
        env.stats().import_calls,
        1,
        "the retry made no upstream call"
    );
    env.stop().await;
}

#[tokio::test]
async fn a_retry_is_replayed_and_other_parameters_are_refused() {
    let env = env_with(|_| {}).await;
    let y = demo("service-y");
    let session = env
        .create_session("service-x", "business", "APPROVED")
        .await;
    let token = env.token_for_y(&session).await;
    let first = env
        .import("service-y", &token, &y.workflows.business, "biz-9", true)
        .await
        .unwrap();
    assert!(!first.replayed);
    let again = env
        .import("service-y", &token, &y.workflows.business, "biz-9", true)
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.session_id, first.session_id);
    assert_eq!(again.raw_json, first.raw_json);
    assert_eq!(env.stats().import_calls, 1);

    for (vendor, trust) in [("biz-10", true), ("biz-9", false)] {
        let err = env
            .import("service-y", &token, &y.workflows.business, vendor, trust)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists);
        assert_eq!(reason(&err), "ALREADY_IMPORTED");
        assert_eq!(
            error_metadata(&err)["session_id"],
            first.session_id,
            "names the existing session"
        );
    }
    assert_eq!(
        env.stats().import_calls,
        1,
        "mismatches are refused without an upstream call"
    );
    env.stop().await;
}

#[tokio::test]
async fn no_tenant_sees_another_tenants_stored_result() {
    let env = env_with(|_| {}).await;
    let (x, y) = (demo("service-x"), demo("service-y"));
    let session = env.create_session("service-x", "user", "Approved").await;
    let token = env.token_for_y(&session).await;
    env.import("service-y", &token, &y.workflows.user, "u", true)
        .await
        .unwrap();
    let before = env.stats().import_calls;
    let err = env
        .import("service-x", &token, &x.workflows.user, "u", true)
        .await
        .unwrap_err();
    assert_eq!(
        reason(&err),
        "SHARE_TOKEN_WRONG_APPLICATION",
        "Didit decided, not the store"
    );
    assert_eq!(env.stats().import_calls - before, 1);
    env.stop().await;
}

#[tokio::test]
async fn errors_are_shared_by_concurrent_waiters_but_never_stored() {
    let env = env_with(|_| {}).await;
    let y = demo("service-y");
    let session = env.create_session("service-x", "user", "Approved").await;
    let token = env.token_for_y(&session).await;
    env.faults(
        json!({"latency_ms": 300, "fail_next": 1, "error_status": 503, "endpoints": ["import"]}),
    )
    .await;
    let calls: Vec<_> = (0..10)
        .map(|_| env.import("service-y", &token, &y.workflows.user, "u", true))
        .collect();
    for result in futures::future::join_all(calls).await {
        let err = result.unwrap_err();
        assert_eq!(reason(&err), "UPSTREAM_UNAVAILABLE");
    }
    assert_eq!(
        env.stats().import_calls,
        1,
        "one upstream call, not retried after it was sent"
    );
    env.faults(json!({})).await;
    let ok = env
        .import("service-y", &token, &y.workflows.user, "u", true)
        .await
        .unwrap();
    assert!(!ok.replayed);
    assert_eq!(env.stats().import_calls, 2, "the 503 was not stored");
    env.stop().await;
}

#[tokio::test]
async fn the_byte_bound_evicts_under_a_flood_of_distinct_imports() {
    let max_bytes = 64 * 1024;
    let env = env_with(|c| c.replay.max_bytes = max_bytes).await;
    let y = demo("service-y");
    let mut raw_total = 0;
    for i in 0..60 {
        let session = env.create_session("service-x", "user", "Approved").await;
        let token = env.token_for_y(&session).await;
        let imported = env
            .import(
                "service-y",
                &token,
                &y.workflows.user,
                &format!("u{i}"),
                true,
            )
            .await
            .unwrap();
        raw_total += imported.raw_json.len() as u64;
    }
    assert!(
        raw_total > 2 * max_bytes,
        "the flood is larger than the bound ({raw_total} bytes)"
    );
    let (entries, held) = env.state.gateway.store().memory_usage().await.unwrap();
    assert!(held <= max_bytes, "{held} bytes held");
    assert!(entries < 60);
    let metrics = env.state.metrics.encode();
    let evictions = metric_value(&metrics, "dsg_import_replay_evictions_total");
    assert!(evictions > 0.0, "evictions counted: {evictions}");
    env.stop().await;
}

#[tokio::test]
async fn the_replay_window_expires() {
    let env = env_with(|c| c.replay.window = Duration::from_millis(300)).await;
    let y = demo("service-y");
    let session = env.create_session("service-x", "user", "Approved").await;
    let token = env.token_for_y(&session).await;
    env.import("service-y", &token, &y.workflows.user, "u", true)
        .await
        .unwrap();
    assert!(
        env.import("service-y", &token, &y.workflows.user, "u", true)
            .await
            .unwrap()
            .replayed
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let err = env
        .import("service-y", &token, &y.workflows.user, "u", true)
        .await
        .unwrap_err();
    assert_eq!(
        reason(&err),
        "ALREADY_IMPORTED",
        "past the window Didit's 403 shows through"
    );
    assert_eq!(env.stats().import_calls, 2);
    env.stop().await;
}

/// A share token is a one-time secret: two callers asking at once must
/// not be handed the same one (they were, when shares were coalesced).
#[tokio::test]
async fn concurrent_identical_shares_each_mint_their_own_token() {
    let env = env_with(|_| {}).await;
    let y = demo("service-y").application_id.to_string();
    let session = env.create_session("service-x", "user", "Approved").await;
    env.faults(json!({"latency_ms": 200, "endpoints": ["share"]}))
        .await;
    let calls: Vec<_> = (0..20)
        .map(|_| env.share("service-x", &session, &y, Some(600)))
        .collect();
    let tokens: std::collections::HashSet<String> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap().share_token)
        .collect();
    assert_eq!(tokens.len(), 20, "every caller got a token of its own");
    assert_eq!(env.stats().share_calls, 20);
    env.stop().await;
}
