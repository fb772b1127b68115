//! Health as a mesh sees it: `grpc.health.v1.Health` overall and per
//! service on the gRPC port, `/healthz` and `/readyz` on the admin port,
//! from start-up through a drain.

use std::time::Duration;

use crate::env::{TestEnv, eventually};
use didit_sandbox::SandboxConfig;
use serde_json::json;
use tokio_stream::StreamExt as _;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The overall status and the two services, as probes name them.
const SERVICES: [&str; 3] = [
    "",
    "didit.share.v1.ShareService",
    "didit.share.v1.ImportService",
];

async fn check(channel: &Channel, service: &str) -> Result<ServingStatus, tonic::Status> {
    let response = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?;
    Ok(response.into_inner().status())
}

/// The HTTP status of `GET http://{admin}{path}`.
async fn admin_status(env: &TestEnv, path: &str) -> u16 {
    env.http
        .get(format!("http://{}{path}", env.admin_addr))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn every_service_is_serving_once_the_gateway_is_up() {
    let env = TestEnv::start(Default::default()).await;
    for service in SERVICES {
        assert_eq!(
            check(&env.channel, service).await.unwrap(),
            ServingStatus::Serving,
            "service {service:?}"
        );
    }
    let unknown = check(&env.channel, "didit.share.v1.NoSuchService")
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    assert_eq!(admin_status(&env, "/healthz").await, 200);
    assert_eq!(admin_status(&env, "/readyz").await, 200);
    env.stop().await;
}

#[tokio::test]
async fn readiness_does_not_depend_on_didit() {
    // Didit answers nothing but 503: one upstream outage must not make
    // every pod unready at once.
    let env = TestEnv::start(Default::default()).await;
    env.faults(json!({"error_rate": 1.0, "error_status": 503}))
        .await;
    let y = crate::env::demo("service-y").application_id.to_string();
    let session = env.create_session("service-x", "user", "Approved").await;
    let failed = env
        .share("service-x", &session, &y, None)
        .await
        .unwrap_err();
    assert_eq!(failed.code(), Code::Unavailable);

    assert_eq!(admin_status(&env, "/readyz").await, 200);
    for service in SERVICES {
        assert_eq!(
            check(&env.channel, service).await.unwrap(),
            ServingStatus::Serving
        );
    }
    env.stop().await;
}

#[tokio::test]
async fn a_drain_turns_every_status_not_serving_and_readyz_unavailable() {
    let mut env = TestEnv::start(Default::default()).await;
    // Watches opened before the drain see the change as it happens.
    let mut watches = Vec::new();
    for service in SERVICES {
        let mut stream = HealthClient::new(env.channel.clone())
            .watch(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(first.status(), ServingStatus::Serving, "{service:?}");
        watches.push(stream);
    }

    // A slow call keeps the drain going while we look.
    env.faults(json!({"latency_ms": 1500, "endpoints": ["share"]}))
        .await;
    let y = crate::env::demo("service-y").application_id.to_string();
    let session = env.create_session("service-x", "user", "Approved").await;
    let in_flight = {
        let client = env.share_client.clone();
        let request = crate::env::with_tenant(
            "service-x",
            didit_share_gateway::proto::ShareSessionRequest {
                session_id: session,
                for_application_id: y,
                ttl_seconds: None,
            },
        );
        tokio::spawn(async move { client.clone().share_session(request).await })
    };
    let sandbox = &env.sandbox;
    eventually(
        Duration::from_secs(5),
        "the share reaches Didit",
        || async move { sandbox.stats().share_calls == 1 },
    )
    .await;

    let server = env.begin_shutdown();
    for (service, stream) in SERVICES.iter().zip(&mut watches) {
        let next = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("a watch hears about the drain")
            .expect("the watch is still open")
            .unwrap();
        assert_eq!(next.status(), ServingStatus::NotServing, "{service:?}");
    }
    // The call is still running: the pod is draining, alive but not ready.
    assert!(!in_flight.is_finished());
    assert_eq!(admin_status(&env, "/readyz").await, 503);
    assert_eq!(admin_status(&env, "/healthz").await, 200);
    drop(watches);

    let answer = in_flight
        .await
        .unwrap()
        .expect("the in-flight call completes");
    assert!(!answer.into_inner().share_token.is_empty());
    server.await.unwrap().unwrap();
    env.sandbox.stop().await;
}

#[tokio::test]
async fn open_health_watches_do_not_hold_the_drain_until_the_grace_period() {
    // A client-side health checker (grpc-go's, for one) keeps a Watch
    // stream open for as long as it is connected. The drain must end that
    // stream after reporting NOT_SERVING rather than wait out the grace.
    let mut env = TestEnv::start_with(SandboxConfig::default(), |config| {
        config.server.shutdown_grace = Duration::from_secs(60);
    })
    .await;
    let mut stream = HealthClient::new(env.channel.clone())
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stream.next().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );

    let server = env.begin_shutdown();
    let last = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("the watch hears about the drain")
        .expect("a last status")
        .unwrap();
    assert_eq!(last.status(), ServingStatus::NotServing);
    // The stream then ends, and so does the server, long before 60 s.
    let end = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("the watch ends with the drain");
    assert!(
        end.as_ref().is_none_or(|r| r.is_err()),
        "no further status: {end:?}"
    );
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the drain finishes without waiting for the grace period")
        .unwrap()
        .unwrap();
    env.sandbox.stop().await;
}
