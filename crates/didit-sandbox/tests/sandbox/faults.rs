//! `/_sandbox/faults`: latency, fail_next, error_rate, injected 429s,
//! rate_limit_after, dropped connections (after real processing), endpoint
//! scoping, validation and reset.

use std::time::{Duration, Instant};

use didit_sandbox::Dialect;
use reqwest::Method;
use serde_json::json;

use crate::common::{Env, seeded};

#[tokio::test]
async fn latency_is_added_before_handling() {
    let env = Env::start(Dialect::Seeds).await;
    let token = env
        .mint(&env.x, seeded(&env.x, "user", "Approved"), &env.y)
        .await;
    env.set_faults(json!({"latency_ms": 300})).await;
    let started = Instant::now();
    let reply = env.import(&env.y.api_key, &env.y_import(&token)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(reply.status, 201, "latency alone does not fail the call");
}

#[tokio::test]
async fn fail_next_fails_that_many_calls_without_processing() {
    let env = Env::start(Dialect::Seeds).await;
    let token = env
        .mint(&env.x, seeded(&env.x, "user", "Approved"), &env.y)
        .await;
    let active = env.set_faults(json!({"fail_next": 2})).await;
    assert_eq!(active.body["fail_next"], 2);
    assert_eq!(active.body["error_status"], 503);
    for _ in 0..2 {
        let reply = env.import(&env.y.api_key, &env.y_import(&token)).await;
        assert_eq!(
            (reply.status, &reply.body),
            (503, &json!({"detail": "Injected fault."}))
        );
        assert_eq!(reply.header("retry-after"), None);
    }
    // Not processed: the token is still unused.
    assert_eq!(
        env.import(&env.y.api_key, &env.y_import(&token))
            .await
            .status,
        201
    );
    let stats = env.stats().await;
    assert_eq!(
        (
            stats["faults_injected"].as_u64(),
            stats["import_calls"].as_u64(),
            stats["import_ok"].as_u64()
        ),
        (Some(2), Some(3), Some(1))
    );
    let faults = env.admin(Method::GET, "/_sandbox/faults", None).await;
    assert_eq!(faults.body["fail_next"], 0);
}

#[tokio::test]
async fn error_rate_one_fails_every_call_until_reset() {
    let env = Env::start(Dialect::OpenApi).await;
    let session = seeded(&env.x, "user", "Approved");
    env.set_faults(json!({"error_rate": 1.0, "error_status": 500}))
        .await;
    for _ in 0..5 {
        let reply = env.share_to_y(session).await;
        assert_eq!(
            (reply.status, reply.body),
            (500, json!({"detail": "Injected fault."}))
        );
    }
    let reset = env.admin(Method::DELETE, "/_sandbox/faults", None).await;
    assert_eq!(reset.status, 200);
    assert_eq!(reset.body["error_rate"], 0.0);
    env.mint(&env.x, session, &env.y).await;
    assert_eq!(env.sandbox.stats().faults_injected, 5);
    assert_eq!(env.sandbox.stats().share_ok, 1);
}

#[tokio::test]
async fn injected_429_carries_rate_limit_headers() {
    let env = Env::start(Dialect::Seeds).await;
    env.set_faults(json!({"fail_next": 1, "error_status": 429, "retry_after_seconds": 5}))
        .await;
    let now = env.advance_clock(0).await;
    let reply = env.import(&env.y.api_key, &env.y_import("t")).await;
    assert_eq!(
        (reply.status, &reply.body),
        (429, &json!({"detail": "Injected fault."}))
    );
    assert_eq!(reply.header("retry-after"), Some("5"));
    assert_eq!(reply.header("x-ratelimit-limit"), Some("300"));
    assert_eq!(reply.header("x-ratelimit-remaining"), Some("0"));
    let reset = reply.header_num("x-ratelimit-reset");
    assert!((reset - (now + 5)).abs() <= 2, "{reset} vs {now}");
}

#[tokio::test]
async fn rate_limit_after_lets_n_calls_through_then_answers_429() {
    let env = Env::start(Dialect::Seeds).await;
    let session = seeded(&env.x, "user", "Approved");
    env.set_faults(json!({"rate_limit_after": 2, "retry_after_seconds": 7}))
        .await;
    for _ in 0..2 {
        env.mint(&env.x, session, &env.y).await;
    }
    let now = env.advance_clock(0).await;
    for _ in 0..3 {
        let reply = env.share_to_y(session).await;
        assert_eq!(reply.status, 429);
        assert_eq!(
            reply.body,
            json!({"detail": "Write request rate limit exceeded. You can make up to 300 requests per minute."})
        );
        assert_eq!(reply.header("retry-after"), Some("7"));
        assert_eq!(reply.header("x-ratelimit-limit"), Some("300"));
        assert_eq!(reply.header("x-ratelimit-remaining"), Some("0"));
        let reset = reply.header_num("x-ratelimit-reset");
        assert!((reset - (now + 7)).abs() <= 2);
    }
    let stats = env.sandbox.stats();
    assert_eq!(
        (
            stats.share_calls,
            stats.share_ok,
            stats.faults_injected,
            stats.rate_limited
        ),
        (5, 2, 3, 0)
    );
}

#[tokio::test]
async fn drop_next_processes_the_import_then_drops_the_connection() {
    let env = Env::start(Dialect::Seeds).await;
    let token = env
        .mint(&env.x, seeded(&env.x, "user", "Approved"), &env.y)
        .await;
    let sessions_before = env.stats().await["sessions"].as_u64().expect("sessions");
    env.set_faults(json!({"drop_next": 1, "endpoints": ["import"]}))
        .await;

    let result = async {
        let resp = env
            .client
            .post(env.url("/v3/session/import-shared/"))
            .header("x-api-key", &env.y.api_key)
            .json(&env.y_import(&token))
            .send()
            .await?;
        resp.bytes().await
    }
    .await;
    assert!(
        result.is_err(),
        "the client must see a broken response, got {result:?}"
    );

    // The import really happened: the session exists and the token is spent.
    let stats = env.stats().await;
    assert_eq!(stats["import_ok"], 1);
    assert_eq!(stats["dropped"], 1);
    assert_eq!(stats["sessions"].as_u64(), Some(sessions_before + 1));
    let again = env.import(&env.y.api_key, &env.y_import(&token)).await;
    assert_eq!(again.status, 403, "{:?}", again.body);

    // Shares were not targeted.
    env.mint(&env.x, seeded(&env.x, "user", "Approved"), &env.y)
        .await;
}

#[tokio::test]
async fn drop_rate_one_drops_shares_after_minting() {
    let env = Env::start(Dialect::OpenApi).await;
    env.set_faults(json!({"drop_rate": 1.0, "endpoints": ["share"]}))
        .await;
    let session = seeded(&env.x, "business", "APPROVED");
    for _ in 0..3 {
        let sent = env
            .client
            .post(env.url(&format!("/v3/session/{session}/share/")))
            .header("x-api-key", &env.x.api_key)
            .json(&json!({"for_application_id": env.y.application_id}))
            .send()
            .await;
        let outcome = match sent {
            Ok(resp) => resp.bytes().await.map(|_| ()),
            Err(e) => Err(e),
        };
        assert!(outcome.is_err());
    }
    let stats = env.sandbox.stats();
    assert_eq!(
        (stats.share_calls, stats.share_ok, stats.dropped),
        (3, 3, 3)
    );
}

#[tokio::test]
async fn faults_can_target_one_endpoint() {
    let env = Env::start(Dialect::Seeds).await;
    env.set_faults(json!({"error_rate": 1.0, "endpoints": ["share"]}))
        .await;
    let session = seeded(&env.x, "user", "Approved");
    let reply = env.share_to_y(session).await;
    assert_eq!(reply.status, 503);
    env.set_faults(json!({"error_rate": 1.0, "endpoints": ["import"]}))
        .await;
    let token = env.mint(&env.x, session, &env.y).await;
    assert_eq!(
        env.import(&env.y.api_key, &env.y_import(&token))
            .await
            .status,
        503
    );
}

#[tokio::test]
async fn fault_bodies_are_validated() {
    let env = Env::start(Dialect::Seeds).await;
    for bad in [
        json!({"error_rate": 1.5}),
        json!({"error_rate": -0.5}),
        json!({"drop_rate": 2}),
        json!({"error_status": 200}),
        json!({"error_status": 700}),
        json!({"endpoints": []}),
        json!({"endpoints": ["everything"]}),
        json!({"latency_ms": -1}),
        json!({"fail_next": "two"}),
        json!({"typo_field": 1}),
        json!([1]),
    ] {
        let reply = env
            .admin(Method::PUT, "/_sandbox/faults", Some(bad.clone()))
            .await;
        assert_eq!(reply.status, 400, "{bad}");
        assert!(reply.body["detail"].is_string(), "{bad}");
    }
    let defaults = env.admin(Method::GET, "/_sandbox/faults", None).await;
    assert_eq!(
        defaults.body,
        json!({"latency_ms": 0, "error_rate": 0.0, "error_status": 503, "fail_next": 0, "rate_limit_after": null,
               "retry_after_seconds": 1, "drop_rate": 0.0, "drop_next": 0, "endpoints": ["share", "import"], "per_endpoint": {}})
    );
}
