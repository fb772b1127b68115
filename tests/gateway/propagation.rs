//! What travels upstream with a call: the caller's W3C `traceparent` and
//! the call's `x-request-id`. The sandbox does not record request headers,
//! so a small recording stand-in plays Didit here.

use std::sync::{Arc, Mutex, PoisonError};

use crate::env::{TestEnv, demo, reason, with_tenant};
use axum::http::{HeaderMap, StatusCode};
use didit_sandbox::SandboxConfig;
use didit_share_gateway::proto::ShareSessionRequest;

/// A Didit stand-in that records request headers and answers 404.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<HeaderMap>>>);

impl Recorder {
    async fn start(&self) -> String {
        let seen = self.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                seen.0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(headers);
                (
                    StatusCode::NOT_FOUND,
                    [("content-type", "application/json")],
                    r#"{"detail":"Not found."}"#,
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn take(&self) -> Vec<HeaderMap> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

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
async fn a_generated_request_id_is_sent_and_echoed_and_a_bad_traceparent_is_dropped() {
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
    assert_eq!(
        header(&seen[0], "traceparent"),
        None,
        "malformed: not forwarded"
    );
    assert_eq!(header(&seen[0], "x-request-id"), Some(echoed));
    env.stop().await;
}
