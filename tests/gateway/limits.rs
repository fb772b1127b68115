//! Admission control: a flood beyond the concurrency limit is shed at once
//! (not queued), a tenant over its Didit budget is told to back off before
//! Didit answers 429, and oversized messages are refused before any
//! upstream call. The budget itself is tested in `budget.rs`.

use std::time::{Duration, Instant};

use crate::env::{TestEnv, demo, metric_value, reason, with_tenant};
use didit_sandbox::{RateLimit, SandboxConfig};
use didit_share_gateway::proto::ShareSessionRequest;
use serde_json::json;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt as _;

fn share_request(tenant: &str) -> tonic::Request<ShareSessionRequest> {
    with_tenant(
        tenant,
        ShareSessionRequest {
            session_id: uuid::Uuid::new_v4().to_string(),
            for_application_id: demo("service-y").application_id.to_string(),
            ttl_seconds: None,
        },
    )
}

#[tokio::test]
async fn a_flood_beyond_the_concurrency_limit_is_shed_not_queued() {
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        config.server.max_concurrent_requests = 4;
    })
    .await;
    env.faults(json!({"latency_ms": 1500, "endpoints": ["share"]}))
        .await;

    let flood = 24;
    let mut calls = Vec::new();
    for _ in 0..flood {
        let mut client = env.share_client.clone();
        let request = share_request("service-x");
        calls.push(tokio::spawn(async move {
            let result = client.share_session(request).await;
            (result, Instant::now())
        }));
    }
    let mut shed = Vec::new();
    let mut admitted = Vec::new();
    for call in calls {
        let (result, done) = call.await.unwrap();
        let status = result.unwrap_err();
        if status.code() == Code::ResourceExhausted {
            assert_eq!(reason(&status), "OVERLOADED");
            assert!(status.get_details_retry_info().is_some(), "{status:?}");
            shed.push(done);
        } else {
            // Unknown sessions: Didit answers 404 after its latency.
            assert_eq!(reason(&status), "SESSION_NOT_FOUND");
            admitted.push(done);
        }
    }
    assert!(
        !shed.is_empty() && admitted.len() <= 4,
        "{} admitted",
        admitted.len()
    );
    assert_eq!(shed.len() + admitted.len(), flood);
    // Shed at once: every refusal came back before any admitted call ended.
    let first_admitted_done = admitted.iter().min().unwrap();
    assert!(shed.iter().all(|done| done < first_admitted_done));
    assert_eq!(env.stats().share_calls, admitted.len() as u64);
    let metrics = env.state.metrics.encode();
    assert_eq!(
        metric_value(&metrics, "dsg_shed_requests_total"),
        shed.len() as f64
    );
    env.stop().await;
}

#[tokio::test]
async fn health_is_answered_while_the_limit_is_saturated() {
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        config.server.max_concurrent_requests = 1;
    })
    .await;
    env.faults(json!({"latency_ms": 1500, "endpoints": ["share"]}))
        .await;
    let mut client = env.share_client.clone();
    let busy = tokio::spawn(async move { client.share_session(share_request("service-x")).await });
    let give_up = Instant::now() + Duration::from_secs(5);
    while env.stats().share_calls == 0 {
        assert!(Instant::now() < give_up);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = env
        .share_client
        .clone()
        .share_session(share_request("service-x"))
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "OVERLOADED");
    let health = HealthClient::new(env.channel.clone())
        .check(HealthCheckRequest {
            service: "didit.share.v1.ShareService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);
    assert!(!busy.is_finished());
    let _ = busy.await.unwrap();
    env.stop().await;
}

#[tokio::test]
async fn a_tenant_is_told_to_back_off_before_didit_answers_429() {
    // Didit's limit (300 writes per minute per key) enforced by the
    // sandbox, and the gateway's default tenant limit of the same size.
    let env = TestEnv::start_with(
        SandboxConfig {
            rate_limit: Some(RateLimit::default()),
            ..SandboxConfig::default()
        },
        |config| {
            // Refuse rather than wait, so the loop runs at full speed.
            config.upstream.budget_wait = Duration::ZERO;
            for tenant in &mut config.tenants {
                tenant.rate_limit_per_minute =
                    didit_share_gateway::config::TenantConfig::DEFAULT_RATE_LIMIT_PER_MINUTE;
                tenant.rate_limit_burst = None;
            }
        },
    )
    .await;
    let mut refused = 0u64;
    for _ in 0..320 {
        let status = env
            .share_client
            .clone()
            .share_session(share_request("service-x"))
            .await
            .unwrap_err();
        match reason(&status).as_str() {
            "TENANT_RATE_LIMITED" => {
                assert_eq!(status.code(), Code::ResourceExhausted);
                let wait = status
                    .get_details_retry_info()
                    .unwrap()
                    .retry_delay
                    .unwrap();
                assert!(
                    wait > Duration::ZERO && wait <= Duration::from_secs(1),
                    "{wait:?}"
                );
                refused += 1;
            }
            "SESSION_NOT_FOUND" => {}
            other => panic!("unexpected {other}: {status:?}"),
        }
    }
    assert!(refused > 0, "the gateway refused none of 320 calls");
    let stats = env.stats();
    assert_eq!(stats.rate_limited, 0, "Didit never had to answer 429");
    assert_eq!(
        stats.share_calls,
        320 - refused,
        "refused calls never reach Didit"
    );
    let metrics = env.state.metrics.encode();
    assert_eq!(
        metric_value(
            &metrics,
            "dsg_tenant_rate_limited_total{tenant=\"service-x\"}"
        ),
        refused as f64
    );

    // Another tenant has its own bucket.
    let other = env
        .share_client
        .clone()
        .share_session(share_request("service-y"))
        .await
        .unwrap_err();
    assert_eq!(reason(&other), "SESSION_NOT_FOUND");
    env.stop().await;
}

#[tokio::test]
async fn an_oversized_request_is_refused_before_any_upstream_call() {
    let env = TestEnv::start(Default::default()).await;
    let status = env
        .import(
            "service-y",
            &"x".repeat(100 * 1024),
            &demo("service-y").workflows.user,
            "",
            false,
        )
        .await
        .unwrap_err();
    // A message over the 64 KiB request limit: RESOURCE_EXHAUSTED (tonic's
    // decoder says OUT_OF_RANGE; `message_limits` rewrites it).
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(env.stats().import_calls, 0);
    env.stop().await;
}
