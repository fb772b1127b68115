//! Deadlines: the caller's `grpc-timeout` bounds the call and the upstream
//! request under it; the configured upstream timeout caps every attempt.
//! The caller gets DEADLINE_EXCEEDED promptly, never a hang.

use std::time::{Duration, Instant};

use crate::env::{TestEnv, demo, metric_value, reason};
use didit_sandbox::SandboxConfig;
use didit_share_gateway::proto::{ImportSharedSessionRequest, ShareSessionRequest};
use prost::Message;
use serde_json::json;
use tonic::Code;

/// One unary call with `grpc-timeout: {timeout}` but no client-side timer.
///
/// A tonic channel enforces the header itself and answers CANCELLED when
/// its own timer fires; this plain HTTP/2 client shows what the gateway
/// answers. Returns the call's status (OK included).
async fn call_with_grpc_timeout(
    env: &TestEnv,
    path: &str,
    tenant: &str,
    timeout: &str,
    message: impl Message,
) -> tonic::Status {
    let http = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let encoded = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(encoded.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&encoded);
    let response = http
        .post(format!("http://{}{path}", env.grpc_addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", timeout)
        .header("x-tenant-id", tenant)
        .body(frame)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // An error is a trailers-only answer: the status is in the headers.
    tonic::Status::from_header_map(response.headers())
        .unwrap_or_else(|| tonic::Status::new(Code::Ok, ""))
}

#[tokio::test]
async fn a_200ms_deadline_on_a_2s_share_is_deadline_exceeded_promptly() {
    let env = TestEnv::start(Default::default()).await;
    let session = env.create_session("service-x", "user", "Approved").await;
    env.faults(json!({"latency_ms": 2000, "endpoints": ["share"]}))
        .await;

    let started = Instant::now();
    let status = call_with_grpc_timeout(
        &env,
        "/didit.share.v1.ShareService/ShareSession",
        "service-x",
        "200m",
        ShareSessionRequest {
            session_id: session,
            for_application_id: demo("service-y").application_id.to_string(),
            ttl_seconds: None,
        },
    )
    .await;
    let took = started.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(reason(&status), "DEADLINE_EXCEEDED");
    assert!(
        took < Duration::from_millis(1500),
        "answered after {took:?}"
    );

    // The upstream request got the remaining time, not the 10 s upstream
    // timeout: it was cut, and nothing is left in flight towards Didit.
    let give_up = Instant::now() + Duration::from_millis(1500);
    loop {
        let metrics = env.state.metrics.encode();
        if metric_value(&metrics, "dsg_upstream_requests_in_flight") == 0.0 {
            assert_eq!(
                metric_value(
                    &metrics,
                    "dsg_upstream_requests_total{endpoint=\"share\",status=\"error\"}"
                ),
                1.0,
                "{metrics}"
            );
            break;
        }
        assert!(
            Instant::now() < give_up,
            "the upstream request outlived the deadline"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        env.stats().share_calls,
        1,
        "a timed-out share is not retried"
    );
    env.stop().await;
}

#[tokio::test]
async fn a_200ms_deadline_on_a_2s_import_is_deadline_exceeded_promptly() {
    let env = TestEnv::start(Default::default()).await;
    let session = env.create_session("service-x", "user", "Approved").await;
    let token = env.token_for_y(&session).await;
    env.faults(json!({"latency_ms": 2000, "endpoints": ["import"]}))
        .await;

    let started = Instant::now();
    let status = call_with_grpc_timeout(
        &env,
        "/didit.share.v1.ImportService/ImportSharedSession",
        "service-y",
        "200m",
        ImportSharedSessionRequest {
            share_token: token,
            workflow_id: demo("service-y").workflows.user,
            vendor_data: String::new(),
            trust_review: false,
        },
    )
    .await;
    let took = started.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(reason(&status), "DEADLINE_EXCEEDED");
    assert!(
        took < Duration::from_millis(1500),
        "answered after {took:?}"
    );
    env.stop().await;
}

#[tokio::test]
async fn a_tonic_caller_with_a_deadline_is_never_left_hanging() {
    let env = TestEnv::start(Default::default()).await;
    let session = env.create_session("service-x", "user", "Approved").await;
    env.faults(json!({"latency_ms": 2000, "endpoints": ["share"]}))
        .await;
    let started = Instant::now();
    let status = env
        .share_for_y_within(&session, Duration::from_millis(200))
        .await
        .unwrap_err();
    // Whichever fires first: the gateway's DEADLINE_EXCEEDED or tonic's
    // own timer (which tonic reports as CANCELLED).
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(1500));
    env.stop().await;
}

#[tokio::test]
async fn the_configured_upstream_timeout_caps_each_attempt() {
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        config.upstream.timeout = Duration::from_millis(300);
    })
    .await;
    let session = env.create_session("service-x", "user", "Approved").await;
    let token = env.token_for_y(&session).await;
    env.faults(json!({"latency_ms": 3000})).await;

    // A generous caller deadline: the 300 ms cap is what ends the attempt.
    let started = Instant::now();
    let status = env
        .share_for_y_within(&session, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(reason(&status), "DEADLINE_EXCEEDED");
    assert!(started.elapsed() < Duration::from_millis(2500));

    // No caller deadline at all: the cap still holds, for imports too.
    let started = Instant::now();
    let status = env
        .import(
            "service-y",
            &token,
            &demo("service-y").workflows.user,
            "",
            false,
        )
        .await
        .unwrap_err();
    // An import that timed out after it was sent may have been made: its
    // answer is lost, and the retry will find it (docs/shared-state.md).
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(reason(&status), "UPSTREAM_UNAVAILABLE");
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert_eq!(
        env.stats().import_calls,
        1,
        "an import that was sent is not retried"
    );
    env.stop().await;
}
