//! The configured write rate limit: per API key sliding window on both v3
//! POST endpoints, Didit's 429 body and headers, freed by the clock.

use std::time::Duration;

use didit_sandbox::{Dialect, RateLimit, SandboxConfig};
use serde_json::json;

use crate::common::{Env, seeded};

async fn limited_env(max_writes: u32) -> Env {
    let rate_limit = Some(RateLimit {
        max_writes,
        window: Duration::from_secs(60),
    });
    Env::start_with(SandboxConfig {
        dialect: Dialect::Seeds,
        rate_limit,
    })
    .await
}

#[tokio::test]
async fn default_is_didits_300_per_minute() {
    let limit = RateLimit::default();
    assert_eq!(
        (limit.max_writes, limit.window),
        (300, Duration::from_secs(60))
    );
}

#[tokio::test]
async fn writes_over_the_limit_get_429_per_key_until_the_window_slides() {
    let env = limited_env(3).await;
    let session = seeded(&env.x, "user", "Approved");
    let body = json!({"for_application_id": env.y.application_id});
    for remaining in ["2", "1"] {
        let reply = env.share(&env.x.api_key, session, &body).await;
        assert_eq!(reply.status, 201);
        assert_eq!(reply.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(reply.header("x-ratelimit-remaining"), Some(remaining));
    }
    // Imports count against the same key's write budget.
    let reply = env
        .import(
            &env.x.api_key,
            &json!({"share_token": "bad", "workflow_id": "w"}),
        )
        .await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header("x-ratelimit-remaining"), Some("0"));

    let now = env.advance_clock(0).await;
    let reply = env.share(&env.x.api_key, session, &body).await;
    assert_eq!(reply.status, 429);
    assert_eq!(
        reply.body,
        json!({"detail": "Write request rate limit exceeded. You can make up to 3 requests per minute."})
    );
    assert_eq!(reply.header("x-ratelimit-limit"), Some("3"));
    assert_eq!(reply.header("x-ratelimit-remaining"), Some("0"));
    let retry = reply.header_num("retry-after");
    assert!((1..=60).contains(&retry), "{retry}");
    let reset = reply.header_num("x-ratelimit-reset");
    assert!(reset > now && reset <= now + 61, "{reset} vs {now}");

    // Another key has its own window.
    let token = env
        .mint(&env.y, seeded(&env.y, "user", "Approved"), &env.x)
        .await;
    assert!(!token.is_empty());

    // Once the window has passed, the key may write again.
    env.advance_clock(61).await;
    assert_eq!(env.share(&env.x.api_key, session, &body).await.status, 201);

    let stats = env.sandbox.stats();
    assert_eq!(stats.rate_limited, 1);
    assert_eq!(stats.share_calls, 5);
    assert_eq!(stats.import_calls, 1);
}

#[tokio::test]
async fn no_limit_configured_means_no_headers_and_no_429() {
    let env = Env::start(Dialect::Seeds).await;
    let session = seeded(&env.x, "user", "Approved");
    for _ in 0..20 {
        let reply = env.share_to_y(session).await;
        assert_eq!(reply.status, 201);
        assert_eq!(reply.header("x-ratelimit-limit"), None);
    }
}
