//! Retries towards Didit: share retries outages (connect errors, 502, 503,
//! 504, dropped answers) and 429s with `Retry-After`; import retries only
//! a request that never reached Didit. Every retry is bounded by the
//! attempt limit, the caller's deadline and the retry budget.

use std::time::{Duration, Instant};

use crate::env::{TestEnv, demo, metric_value, reason};
use didit_sandbox::SandboxConfig;
use serde_json::json;
use tonic::Code;
use tonic_types::StatusExt as _;

fn retries(env: &TestEnv, endpoint: &str) -> f64 {
    metric_value(
        &env.state.metrics.encode(),
        &format!("dsg_upstream_retries_total{{endpoint=\"{endpoint}\"}}"),
    )
}

fn y_app() -> String {
    demo("service-y").application_id.to_string()
}

#[tokio::test]
async fn share_retries_502_503_and_504_and_succeeds() {
    let env = TestEnv::start(Default::default()).await;
    let session = env.create_session("service-x", "user", "Approved").await;
    for (i, status) in [502, 503, 504].into_iter().enumerate() {
        env.faults(json!({"fail_next": 1, "error_status": status, "endpoints": ["share"]}))
            .await;
        let answer = env.share("service-x", &session, &y_app(), None).await;
        assert!(answer.is_ok(), "{status}: {answer:?}");
        let calls = 2 * (i as u64 + 1);
        assert_eq!(
            env.stats().share_calls,
            calls,
            "{status}: one failure, one retry"
        );
        assert_eq!(env.stats().faults_injected, i as u64 + 1);
    }
    assert_eq!(retries(&env, "share"), 3.0);
    env.stop().await;
}

#[tokio::test]
async fn share_retries_an_answer_lost_in_transit() {
    // Minting a second token is harmless, so a dropped answer is retried.
    let env = TestEnv::start(Default::default()).await;
    let session = env.create_session("service-x", "user", "Approved").await;
    env.faults(json!({"drop_next": 1, "endpoints": ["share"]}))
        .await;
    env.share("service-x", &session, &y_app(), None)
        .await
        .unwrap();
    let stats = env.stats();
    assert_eq!(
        (stats.share_calls, stats.share_ok, stats.dropped),
        (2, 2, 1)
    );
    env.stop().await;
}

#[tokio::test]
async fn share_does_not_retry_a_500_or_a_rejection() {
    let env = TestEnv::start(Default::default()).await;
    let session = env.create_session("service-x", "user", "Approved").await;
    env.faults(json!({"fail_next": 1, "error_status": 500, "endpoints": ["share"]}))
        .await;
    let status = env
        .share("service-x", &session, &y_app(), None)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(env.stats().share_calls, 1);

    let status = env
        .share(
            "service-x",
            &uuid::Uuid::new_v4().to_string(),
            &y_app(),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "SESSION_NOT_FOUND");
    assert_eq!(env.stats().share_calls, 2);
    assert_eq!(retries(&env, "share"), 0.0);
    env.stop().await;
}

#[tokio::test]
async fn share_attempts_stop_at_upstream_max_attempts() {
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        config.upstream.retry.max_attempts = 4;
    })
    .await;
    env.faults(json!({"fail_next": 100, "error_status": 503, "endpoints": ["share"]}))
        .await;
    let status = env
        .share(
            "service-x",
            &uuid::Uuid::new_v4().to_string(),
            &y_app(),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "UPSTREAM_UNAVAILABLE");
    assert_eq!(env.stats().share_calls, 4);
    env.stop().await;
}

#[tokio::test]
async fn a_429_retry_after_is_a_minimum_wait() {
    let env = TestEnv::start(Default::default()).await;
    let session = env.create_session("service-x", "user", "Approved").await;
    env.faults(json!({
        "fail_next": 1, "error_status": 429, "retry_after_seconds": 1, "endpoints": ["share"]
    }))
    .await;
    let started = Instant::now();
    env.share("service-x", &session, &y_app(), None)
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retried after {:?}, before Retry-After",
        started.elapsed()
    );
    assert_eq!(env.stats().share_calls, 2);
    env.stop().await;
}

#[tokio::test]
async fn a_429_whose_retry_after_outlasts_the_deadline_is_returned_at_once() {
    let env = TestEnv::start(Default::default()).await;
    let session = env.create_session("service-x", "user", "Approved").await;
    env.faults(json!({
        "fail_next": 1, "error_status": 429, "retry_after_seconds": 5, "endpoints": ["share"]
    }))
    .await;
    let started = Instant::now();
    let status = env
        .share_for_y_within(&session, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(reason(&status), "UPSTREAM_RATE_LIMITED");
    let retry = status
        .get_details_retry_info()
        .unwrap()
        .retry_delay
        .unwrap();
    assert_eq!(
        retry,
        Duration::from_secs(5),
        "the caller learns Didit's wait"
    );
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(env.stats().share_calls, 1);
    env.stop().await;
}

#[tokio::test]
async fn an_import_that_reached_didit_is_never_sent_again() {
    let env = TestEnv::start(Default::default()).await;
    let y = demo("service-y");

    // Didit answers 503 without importing: not retried by the gateway
    // (it cannot know), and the caller's own retry then succeeds.
    let session = env.create_session("service-x", "user", "Approved").await;
    let token = env.token_for_y(&session).await;
    env.faults(json!({"fail_next": 1, "error_status": 503, "endpoints": ["import"]}))
        .await;
    let status = env
        .import("service-y", &token, &y.workflows.user, "", false)
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "UPSTREAM_UNAVAILABLE");
    assert_eq!((env.stats().import_calls, env.stats().import_ok), (1, 0));
    env.import("service-y", &token, &y.workflows.user, "", false)
        .await
        .unwrap();
    assert_eq!((env.stats().import_calls, env.stats().import_ok), (2, 1));

    // Didit imports, then the connection drops before the answer: a resend
    // would be refused as a duplicate, so the gateway does not resend.
    let session = env.create_session("service-x", "user", "Approved").await;
    let token = env.token_for_y(&session).await;
    env.faults(json!({"drop_next": 1, "endpoints": ["import"]}))
        .await;
    let status = env
        .import("service-y", &token, &y.workflows.user, "", false)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(reason(&status), "UPSTREAM_UNAVAILABLE");
    let stats = env.stats();
    assert_eq!(
        (stats.import_calls, stats.import_ok, stats.dropped),
        (3, 2, 1),
        "sent once, imported once, answer lost"
    );
    assert_eq!(retries(&env, "import"), 0.0);
    env.stop().await;
}

#[tokio::test]
async fn an_import_that_never_connected_is_retried() {
    // A port nothing listens on: the request provably never left.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        config.upstream.base_url = format!("http://{closed}");
    })
    .await;
    let status = env
        .import(
            "service-y",
            "a.b.c",
            &demo("service-y").workflows.user,
            "",
            false,
        )
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "UPSTREAM_UNAVAILABLE");
    let metrics = env.state.metrics.encode();
    assert_eq!(
        metric_value(
            &metrics,
            "dsg_upstream_requests_total{endpoint=\"import\",status=\"error\"}"
        ),
        3.0,
        "{metrics}"
    );
    assert_eq!(retries(&env, "import"), 2.0);
    env.stop().await;
}

#[tokio::test]
async fn the_retry_budget_caps_extra_load_during_an_outage() {
    let env = TestEnv::start(Default::default()).await;
    env.faults(json!({"error_rate": 1.0, "error_status": 503, "endpoints": ["share"]}))
        .await;
    let calls = 50u64;
    for _ in 0..calls {
        let status = env
            .share(
                "service-x",
                &uuid::Uuid::new_v4().to_string(),
                &y_app(),
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
    }
    // Without a budget: 3 attempts each, 150 requests. With it: a reserve
    // of 10 retries plus a fifth of the first attempts.
    let sent = env.stats().share_calls;
    let allowed = calls + 10 + calls / 5;
    assert!(
        sent <= allowed,
        "{sent} requests for {calls} calls, at most {allowed}"
    );
    let metrics = env.state.metrics.encode();
    assert!(metric_value(&metrics, "dsg_upstream_retry_budget_exhausted_total") > 0.0);
    env.stop().await;
}
