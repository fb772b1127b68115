//! The tenant's Didit write budget: charged per request that goes to Didit
//! (retries included), never for replays, joined calls or callers refused
//! by authorization; waits for a near slot, refuses a far one with a
//! jittered RetryInfo; shared by every replica through Redis, and paused
//! everywhere by Didit's 429.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::env::{TestEnv, create_session, demo, metric_value, reason, with_tenant};
use crate::state::server::RedisServer;
use didit_sandbox::{Sandbox, SandboxConfig};
use didit_share_gateway::app::{self, Running, StartOptions};
use didit_share_gateway::config::{AuthConfig, Config};
use didit_share_gateway::proto::import_service_client::ImportServiceClient;
use didit_share_gateway::proto::share_service_client::ShareServiceClient;
use didit_share_gateway::proto::{ImportSharedSessionRequest, ShareSessionRequest};
use didit_share_gateway::state::{EncryptionKey, RedisStore, StateStore};
use serde_json::json;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

const SIDECAR: &str = "spiffe://cluster.local/ns/istio-system/sa/sidecar";
const PAYMENTS: &str = "spiffe://cluster.local/ns/payments/sa/onboarding";
const INTRUDER: &str = "spiffe://cluster.local/ns/risk/sa/scoring";

/// A share of `session_id` (service-x's) for service-y.
fn share_request(session_id: &str) -> ShareSessionRequest {
    ShareSessionRequest {
        session_id: session_id.into(),
        for_application_id: demo("service-y").application_id.to_string(),
        ttl_seconds: None,
    }
}

#[tokio::test]
async fn an_unlisted_caller_cannot_spend_another_callers_tenant_budget() {
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        config.auth = AuthConfig::Mesh {
            trusted_proxy_identity: Some(SIDECAR.to_owned()),
        };
        for tenant in &mut config.tenants {
            if tenant.id == "service-x" {
                tenant.allowed_callers = vec![PAYMENTS.to_owned()];
                tenant.rate_limit_per_minute = 60;
            }
        }
    })
    .await;
    let session = env.create_session("service-x", "user", "Approved").await;
    let call = |caller: &str| {
        let mut client = env.share_client.clone();
        let mut request = with_tenant("service-x", share_request(&session));
        let xfcc = format!("By={SIDECAR};Hash=aa;URI={caller}");
        request
            .metadata_mut()
            .insert("x-forwarded-client-cert", xfcc.parse().unwrap());
        async move { client.share_session(request).await }
    };
    // Far more calls than the tenant's burst, all from a caller the tenant
    // does not list: every one is refused as such, none spends anything.
    for i in 0..50 {
        let err = call(INTRUDER).await.unwrap_err();
        assert_eq!(reason(&err), "CALLER_NOT_ALLOWED", "call {i}: {err:?}");
    }
    assert_eq!(env.stats().share_calls, 0);
    // The tenant's own caller still gets through.
    call(PAYMENTS).await.unwrap();
    assert_eq!(env.stats().share_calls, 1);
    env.stop().await;
}

/// A share of a session that does not exist: Didit answers 404, which is
/// still a request that went to Didit.
fn unknown_share() -> ShareSessionRequest {
    share_request(&uuid::Uuid::new_v4().to_string())
}

/// RetryInfo's delay of a refusal.
fn retry_delay(status: &Status) -> Duration {
    status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .unwrap_or_else(|| panic!("no RetryInfo: {status:?}"))
}

/// Sets `tenant`'s budget to `per_minute` with `burst`.
fn budget(config: &mut Config, tenant: &str, per_minute: u32, burst: u32) {
    for t in &mut config.tenants {
        if t.id == tenant {
            t.rate_limit_per_minute = per_minute;
            t.rate_limit_burst = Some(burst);
        }
    }
}

#[tokio::test]
async fn a_burst_of_identical_imports_is_one_upstream_call_and_none_is_refused() {
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        budget(config, "service-y", 60, 1);
    })
    .await;
    let y = demo("service-y");
    let session = env.create_session("service-x", "user", "Approved").await;
    let token = env.token_for_y(&session).await;
    env.faults(json!({"latency_ms": 300, "endpoints": ["import"]}))
        .await;
    let mut calls = Vec::new();
    for _ in 0..50 {
        let (client, token, workflow) = (
            env.import_client.clone(),
            token.clone(),
            y.workflows.user.clone(),
        );
        calls.push(tokio::spawn(async move {
            let mut client = client;
            let request = didit_share_gateway::proto::ImportSharedSessionRequest {
                share_token: token,
                workflow_id: workflow,
                vendor_data: String::new(),
                trust_review: false,
            };
            client
                .import_shared_session(with_tenant("service-y", request))
                .await
        }));
    }
    let mut sessions = std::collections::HashSet::new();
    for call in calls {
        let answer = call.await.unwrap().expect("no identical import is refused");
        sessions.insert(answer.into_inner().session_id);
    }
    assert_eq!(sessions.len(), 1);
    assert_eq!(env.stats().import_calls, 1, "one upstream import");
    let metrics = env.state.metrics.encode();
    assert_eq!(
        metric_value(
            &metrics,
            "dsg_tenant_rate_limited_total{tenant=\"service-y\"}"
        ),
        0.0
    );
    env.stop().await;
}

#[tokio::test]
async fn replays_are_never_refused_even_when_the_budget_is_spent() {
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        config.upstream.budget_wait = Duration::ZERO;
        budget(config, "service-y", 1, 1);
    })
    .await;
    let y = demo("service-y");
    let session = env.create_session("service-x", "user", "Approved").await;
    let token = env.token_for_y(&session).await;
    let first = env
        .import("service-y", &token, &y.workflows.user, "", false)
        .await
        .unwrap();
    assert!(!first.replayed);
    // The one slot of the minute is spent: a new import is refused...
    let other = env.create_session("service-x", "user", "Approved").await;
    let other_token = env.token_for_y(&other).await;
    let refused = env
        .import("service-y", &other_token, &y.workflows.user, "", false)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(reason(&refused), "TENANT_RATE_LIMITED");
    assert!(retry_delay(&refused) > Duration::from_secs(50));
    // ...while repeats of the finished one are answered from the store.
    for _ in 0..10 {
        let again = env
            .import("service-y", &token, &y.workflows.user, "", false)
            .await
            .unwrap();
        assert!(again.replayed);
        assert_eq!(again.session_id, first.session_id);
    }
    assert_eq!(env.stats().import_calls, 1);
    env.stop().await;
}

#[tokio::test]
async fn a_tight_loop_sends_the_burst_and_refuses_the_rest_with_retry_info() {
    let burst = 5;
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        config.upstream.budget_wait = Duration::ZERO;
        budget(config, "service-x", 60, burst);
    })
    .await;
    let started = Instant::now();
    let (mut sent, mut refused) = (0u64, 0u64);
    let mut delays = std::collections::HashSet::new();
    for _ in 0..40 {
        let status = env
            .share_client
            .clone()
            .share_session(with_tenant("service-x", unknown_share()))
            .await
            .unwrap_err();
        match reason(&status).as_str() {
            "SESSION_NOT_FOUND" => sent += 1,
            "TENANT_RATE_LIMITED" => {
                assert_eq!(status.code(), Code::ResourceExhausted);
                let delay = retry_delay(&status);
                // The next slot is at most T = 1 s away, plus up to 20%.
                assert!(
                    delay > Duration::ZERO && delay <= Duration::from_millis(1250),
                    "{delay:?}"
                );
                delays.insert(delay);
                refused += 1;
            }
            other => panic!("unexpected {other}: {status:?}"),
        }
    }
    // GCRA: at most burst + one per elapsed second, and at least the burst.
    let allowed = u64::from(burst) + started.elapsed().as_secs();
    assert!((u64::from(burst)..=allowed).contains(&sent), "{sent} sent");
    assert_eq!(
        env.stats().share_calls,
        sent,
        "refused calls never reach Didit"
    );
    assert_eq!(sent + refused, 40);
    assert!(
        delays.len() > 1,
        "refused callers are not all sent back at once"
    );
    let metrics = env.state.metrics.encode();
    assert_eq!(
        metric_value(
            &metrics,
            "dsg_tenant_rate_limited_total{tenant=\"service-x\"}"
        ),
        refused as f64
    );
    // Another tenant has a budget of its own.
    let other = env
        .share_client
        .clone()
        .share_session(with_tenant("service-y", unknown_share()))
        .await
        .unwrap_err();
    assert_eq!(reason(&other), "SESSION_NOT_FOUND");
    env.stop().await;
}

#[tokio::test]
async fn a_near_slot_is_waited_for_and_one_past_the_deadline_is_refused() {
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        budget(config, "service-x", 60, 1);
    })
    .await;
    // Slots one second apart, within budget_wait (2 s): all three go.
    for _ in 0..3 {
        let status = env
            .share_client
            .clone()
            .share_session(with_tenant("service-x", unknown_share()))
            .await
            .unwrap_err();
        assert_eq!(reason(&status), "SESSION_NOT_FOUND");
    }
    assert_eq!(env.stats().share_calls, 3);
    let metrics = env.state.metrics.encode();
    assert!(
        metric_value(&metrics, "dsg_budget_waits_total{tenant=\"service-x\"}") >= 1.0,
        "{metrics}"
    );
    assert!(
        metric_value(
            &metrics,
            "dsg_budget_wait_seconds_total{tenant=\"service-x\"}"
        ) > 0.0
    );
    // The next slot is about a second away: a caller with 300 ms left is
    // refused at once rather than left to time out.
    let mut request = with_tenant("service-x", unknown_share());
    request.set_timeout(Duration::from_millis(300));
    let status = env
        .share_client
        .clone()
        .share_session(request)
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "TENANT_RATE_LIMITED", "{status:?}");
    assert_eq!(env.stats().share_calls, 3);
    env.stop().await;
}

#[tokio::test]
async fn a_refused_retry_answers_with_the_upstream_error() {
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        config.upstream.budget_wait = Duration::ZERO;
        budget(config, "service-x", 1, 1);
    })
    .await;
    // The first attempt spends the minute's slot and fails with a 503;
    // its retry finds no slot, and the caller hears about the 503.
    env.faults(json!({"fail_next": 1, "error_status": 503, "endpoints": ["share"]}))
        .await;
    let status = env
        .share_client
        .clone()
        .share_session(with_tenant("service-x", unknown_share()))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "UPSTREAM_UNAVAILABLE", "{status:?}");
    assert_eq!(env.stats().share_calls, 1);
    env.stop().await;
}

#[tokio::test]
async fn didits_429_pauses_the_tenant() {
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        budget(config, "service-x", 600, 50);
    })
    .await;
    env.faults(json!({"rate_limit_after": 0, "retry_after_seconds": 30, "endpoints": ["share"]}))
        .await;
    let mut request = with_tenant("service-x", unknown_share());
    request.set_timeout(Duration::from_secs(2));
    let status = env
        .share_client
        .clone()
        .share_session(request)
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "UPSTREAM_RATE_LIMITED", "{status:?}");
    env.faults(json!({})).await;
    let status = env
        .share_client
        .clone()
        .share_session(with_tenant("service-x", unknown_share()))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "TENANT_RATE_LIMITED", "{status:?}");
    assert!(retry_delay(&status) > Duration::from_secs(25));
    assert_eq!(env.stats().share_calls, 1, "nothing sent while paused");
    env.stop().await;
}

/// A gateway for the sandbox at `base_url`, its budgets in `store`.
async fn replica(
    base_url: &str,
    store: StateStore,
    tweak: impl FnOnce(&mut Config),
) -> (Running, ShareServiceClient<Channel>) {
    let loopback = "127.0.0.1:0".parse().unwrap();
    let mut config = app::sandbox_config(base_url);
    config.server.listen = loopback;
    config.server.admin_listen = loopback;
    // These tests share to random applications: no partner policy.
    for tenant in &mut config.tenants {
        tenant.partners = None;
    }
    tweak(&mut config);
    let options = StartOptions {
        drain_delay: Some(Duration::from_millis(50)),
        state_store: Some(store),
        ..StartOptions::default()
    };
    let running = app::start(config, options).await.unwrap();
    let channel = Channel::from_shared(format!("http://{}", running.grpc_addr))
        .unwrap()
        .connect_lazy();
    (running, ShareServiceClient::new(channel))
}

/// A sandbox and `n` gateways whose state (budgets, replay records)
/// lives in one `redis-server`.
async fn replicas_on_redis(
    n: usize,
    tweak: impl Fn(&mut Config),
) -> Option<(
    RedisServer,
    Sandbox,
    Vec<(Running, ShareServiceClient<Channel>)>,
)> {
    didit_share_gateway::install_crypto_provider();
    let server = RedisServer::start()?;
    let key = EncryptionKey::random();
    let store = || async {
        StateStore::Redis(
            RedisStore::connect(&crate::state::settings(&server, &key))
                .await
                .unwrap(),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sandbox = Sandbox::start(listener, SandboxConfig::default())
        .await
        .unwrap();
    let mut replicas = Vec::new();
    for _ in 0..n {
        replicas.push(replica(&sandbox.base_url(), store().await, &tweak).await);
    }
    Some((server, sandbox, replicas))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_driven_hard_share_one_budget_and_never_refuse_replays() {
    const SECONDS: u64 = 30;
    let burst = 5u64;
    let Some((_server, sandbox, replicas)) = replicas_on_redis(3, |config| {
        config.upstream.budget_wait = Duration::ZERO;
        budget(config, "service-y", 60, burst as u32);
    })
    .await
    else {
        return;
    };
    let y = demo("service-y");
    let http = reqwest::Client::new();
    let imports: Vec<_> = replicas
        .iter()
        .map(|(running, _)| {
            let channel = Channel::from_shared(format!("http://{}", running.grpc_addr))
                .unwrap()
                .connect_lazy();
            ImportServiceClient::new(channel)
        })
        .collect();
    // One finished import of service-y (its first budget slot), to replay.
    let session = create_session(&http, &sandbox, "service-x", "user", "Approved").await;
    let token = replicas[0]
        .1
        .clone()
        .share_session(with_tenant("service-x", share_request(&session)))
        .await
        .unwrap()
        .into_inner()
        .share_token;
    let import = ImportSharedSessionRequest {
        share_token: token,
        workflow_id: y.workflows.user.clone(),
        vendor_data: String::new(),
        trust_review: false,
    };
    let first = imports[0]
        .clone()
        .import_shared_session(with_tenant("service-y", import.clone()))
        .await
        .unwrap()
        .into_inner();
    let (shares_before, imports_before) =
        (sandbox.stats().share_calls, sandbox.stats().import_calls);

    // Every replica driven hard: service-y's writes (shares of unknown
    // sessions, each one upstream call) and replays of the import.
    let started = Instant::now();
    let stop_at = started + Duration::from_secs(SECONDS);
    let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let replayed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut drivers = Vec::new();
    for ((_, shares), imports) in replicas.iter().zip(&imports) {
        for _ in 0..2 {
            let (mut client, refused) = (shares.clone(), Arc::clone(&refused));
            drivers.push(tokio::spawn(async move {
                while Instant::now() < stop_at {
                    let status = client
                        .share_session(with_tenant("service-y", unknown_share()))
                        .await
                        .unwrap_err();
                    match reason(&status).as_str() {
                        "SESSION_NOT_FOUND" => {}
                        "TENANT_RATE_LIMITED" => {
                            refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        other => panic!("unexpected {other}: {status:?}"),
                    }
                }
            }));
        }
        let (mut client, request, replayed) =
            (imports.clone(), import.clone(), Arc::clone(&replayed));
        let session_id = first.session_id.clone();
        drivers.push(tokio::spawn(async move {
            while Instant::now() < stop_at {
                let again = client
                    .import_shared_session(with_tenant("service-y", request.clone()))
                    .await
                    .expect("a replay is never refused");
                assert!(again.get_ref().replayed);
                assert_eq!(again.get_ref().session_id, session_id);
                replayed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    for driver in drivers {
        driver.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sent = sandbox.stats().share_calls - shares_before;
    // GCRA at 60 per minute: the burst (less the slot the import took),
    // then one per second; one more for a slot falling on the boundary.
    let most = burst + elapsed.ceil() as u64;
    eprintln!(
        "three replicas, {elapsed:.1} s: {sent} upstream writes (at most {most}), {} refused, {} replays",
        refused.load(std::sync::atomic::Ordering::Relaxed),
        replayed.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert!(
        sent <= most && sent + 2 >= most - burst,
        "{sent} upstream writes in {elapsed:.1} s across three replicas (at most {most})"
    );
    assert!(refused.load(std::sync::atomic::Ordering::Relaxed) > 0);
    assert!(replayed.load(std::sync::atomic::Ordering::Relaxed) > 0);
    assert_eq!(
        sandbox.stats().import_calls,
        imports_before,
        "replays stay replays"
    );
    for (running, _) in replicas {
        running.shutdown().await.unwrap();
    }
    sandbox.stop().await;
}

#[tokio::test]
async fn a_429_on_one_replica_pauses_the_tenant_on_the_other() {
    let Some((_server, sandbox, replicas)) =
        replicas_on_redis(2, |config| budget(config, "service-x", 600, 50)).await
    else {
        return;
    };
    let [(a, mut client_a), (b, mut client_b)]: [_; 2] =
        replicas.try_into().ok().expect("two replicas");
    let http = reqwest::Client::new();
    let faults = |body: serde_json::Value| {
        let request = http
            .put(format!("{}/_sandbox/faults", sandbox.base_url()))
            .json(&body);
        async move { assert!(request.send().await.unwrap().status().is_success()) }
    };
    faults(json!({"rate_limit_after": 0, "retry_after_seconds": 30, "endpoints": ["share"]})).await;
    let mut request = with_tenant("service-x", unknown_share());
    request.set_timeout(Duration::from_secs(2));
    let status = client_a.share_session(request).await.unwrap_err();
    assert_eq!(reason(&status), "UPSTREAM_RATE_LIMITED", "{status:?}");
    faults(json!({})).await;
    let status = client_b
        .share_session(with_tenant("service-x", unknown_share()))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "TENANT_RATE_LIMITED", "{status:?}");
    assert!(retry_delay(&status) > Duration::from_secs(25));
    // Another tenant is not paused.
    let status = client_b
        .share_session(with_tenant("service-y", unknown_share()))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "SESSION_NOT_FOUND");
    assert_eq!(sandbox.stats().share_calls, 2);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    sandbox.stop().await;
}

#[tokio::test]
async fn a_reload_applies_new_limits_and_grants_no_fresh_burst() {
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        config.upstream.budget_wait = Duration::ZERO;
        budget(config, "service-x", 6, 2);
    })
    .await;
    let share = || async {
        let status = env
            .share_client
            .clone()
            .share_session(with_tenant("service-x", unknown_share()))
            .await
            .unwrap_err();
        reason(&status)
    };
    assert_eq!(share().await, "SESSION_NOT_FOUND");
    assert_eq!(share().await, "SESSION_NOT_FOUND");
    assert_eq!(share().await, "TENANT_RATE_LIMITED");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("x.key");
    std::fs::write(&key, demo("service-x").api_key).unwrap();
    let path = dir.path().join("gateway.toml");
    let file = |burst: u32| {
        format!(
            "[upstream]\nbase_url = \"{}\"\nbudget_wait = \"0s\"\n[auth]\nmode = \"none\"\n[[tenants]]\nid = \"service-x\"\napplication_id = \"{}\"\napi_key_file = \"{}\"\nallowed_callers = [\"*\"]\nrate_limit_per_minute = 6\nrate_limit_burst = {burst}\n",
            env.sandbox.base_url(),
            demo("service-x").application_id,
            key.display()
        )
    };
    // The same limits again: the spent burst stays spent.
    std::fs::write(&path, file(2)).unwrap();
    env.gateway().reload_from(&path).unwrap();
    assert_eq!(share().await, "TENANT_RATE_LIMITED");
    // A larger burst applies to the next call.
    std::fs::write(&path, file(5)).unwrap();
    env.gateway().reload_from(&path).unwrap();
    assert_eq!(share().await, "SESSION_NOT_FOUND");
    assert_eq!(env.stats().share_calls, 3);
    env.stop().await;
}

#[tokio::test]
async fn every_attempt_is_charged_retries_included() {
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        config.upstream.budget_wait = Duration::ZERO;
        budget(config, "service-x", 2, 2);
    })
    .await;
    let session = env.create_session("service-x", "user", "Approved").await;
    // A 503, then the retry succeeds: two requests, the whole burst.
    env.faults(json!({"fail_next": 1, "error_status": 503, "endpoints": ["share"]}))
        .await;
    env.token_for_y(&session).await;
    assert_eq!(env.stats().share_calls, 2);
    let status = env
        .share_client
        .clone()
        .share_session(with_tenant("service-x", share_request(&session)))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "TENANT_RATE_LIMITED", "{status:?}");
    assert_eq!(env.stats().share_calls, 2);
    env.stop().await;
}
