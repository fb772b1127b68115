//! What travels upstream with a call: the caller's W3C `traceparent` and
//! the call's `x-request-id`. The sandbox does not record request headers,
//! so a small recording stand-in plays Didit here.

use crate::env::{TestEnv, demo, reason, with_tenant};
use crate::recorder::Recorder;
use axum::http::HeaderMap;
use didit_sandbox::SandboxConfig;
use didit_share_gateway::proto::ShareSessionRequest;

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|v| v.to_str().unwrap().to_owned())
}

/// A share call carrying `metadata`.
fn share_with(metadata: &[(&'static str, &str)]) -> tonic::Request<ShareSessionRequest> {
    let mut request = with_tenant(
        "service-x",
        ShareSessionRequest {
            session_id: uuid::Uuid::new_v4().to_string(),
            for_application_id: demo("service-y").application_id.to_string(),
            ttl_seconds: None,
        },
    );
    for (name, value) in metadata {
        request.metadata_mut().insert(*name, value.parse().unwrap());
    }
    request
}

#[tokio::test]
async fn traceparent_and_request_id_reach_didit() {
    let recorder = Recorder::default();
    let base = recorder.start().await;
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        config.upstream.base_url = base;
    })
    .await;

    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let status = env
        .share_client
        .clone()
        .share_session(share_with(&[
            ("traceparent", traceparent),
            ("x-request-id", "req-propagation-1"),
        ]))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "SESSION_NOT_FOUND");
    assert_eq!(
        status.metadata().get("x-request-id").unwrap(),
        "req-propagation-1",
        "the request id is echoed to the caller"
    );
    let seen = recorder.take();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        header(&seen[0], "traceparent").as_deref(),
        Some(traceparent)
    );
    assert_eq!(
        header(&seen[0], "x-request-id").as_deref(),
        Some("req-propagation-1")
    );
    env.stop().await;
}

#[tokio::test]
async fn a_generated_request_id_is_sent_and_echoed_and_a_bad_traceparent_is_replaced() {
    let recorder = Recorder::default();
    let base = recorder.start().await;
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        config.upstream.base_url = base;
    })
    .await;

    let status = env
        .share_client
        .clone()
        .share_session(share_with(&[("traceparent", "00-not-a-trace-01")]))
        .await
        .unwrap_err();
    let echoed = status
        .metadata()
        .get("x-request-id")
        .expect("a generated request id")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&echoed).is_ok(), "{echoed}");
    let seen = recorder.take();
    assert_eq!(seen.len(), 1);
    let sent = header(&seen[0], "traceparent").expect("a fresh trace is started");
    assert_valid_fresh(&sent, "00-not-a-trace-01");
    assert_eq!(header(&seen[0], "x-request-id"), Some(echoed));
    env.stop().await;
}

/// `sent` is a valid version-00 traceparent that is not `instead_of`.
fn assert_valid_fresh(sent: &str, instead_of: &str) {
    assert_ne!(sent, instead_of);
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts.len(), 4, "{sent}");
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    assert!(
        parts[0] == "00" && hex(parts[1], 32) && hex(parts[2], 16) && hex(parts[3], 2),
        "{sent}"
    );
    assert!(parts[1].bytes().any(|b| b != b'0') && parts[2].bytes().any(|b| b != b'0'));
}

/// Loose traceparents (upper case, all-zero ids, version ff, trailing
/// data on version 00) are not forwarded: Didit sees a fresh valid trace.
#[tokio::test]
async fn loose_traceparents_are_replaced_by_a_fresh_trace() {
    let recorder = Recorder::default();
    let base = recorder.start().await;
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        config.upstream.base_url = base;
    })
    .await;
    let loose = [
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
    ];
    for value in loose {
        let status = env
            .share_client
            .clone()
            .share_session(share_with(&[("traceparent", value)]))
            .await
            .unwrap_err();
        assert_eq!(reason(&status), "SESSION_NOT_FOUND");
        let seen = recorder.take();
        assert_eq!(seen.len(), 1);
        let sent = header(&seen[0], "traceparent").expect("a traceparent upstream");
        assert_valid_fresh(&sent, value);
    }
    // No traceparent at all: one is started too.
    env.share_client
        .clone()
        .share_session(share_with(&[]))
        .await
        .unwrap_err();
    let seen = recorder.take();
    assert_valid_fresh(&header(&seen[0], "traceparent").expect("a traceparent"), "");
    env.stop().await;
}
