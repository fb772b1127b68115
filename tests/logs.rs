//! Logs: the gateway's real subscriber (`telemetry::subscriber`) at DEBUG
//! captures every line while the tests drive every error path; no API
//! key, share token or personal field may appear anywhere, and every
//! per-call line names its request id, tenant, method, code and latency.

#[path = "support/captured.rs"]
mod captured;
#[path = "gateway/env.rs"]
mod common;

use std::time::Duration;

use captured::Captured;
use common::{READ_ONLY_TENANT, TestEnv, demo, reason, with_tenant};
use didit_sandbox::SandboxConfig;
use didit_share_gateway::proto::{ImportSharedSessionRequest, ShareSessionRequest};
use didit_share_gateway::telemetry;
use serde_json::{Value, json};
use tonic::Code;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::util::SubscriberInitExt as _;

/// What the log must never contain.
#[derive(Default)]
struct Secrets(Vec<(String, &'static str)>);

impl Secrets {
    fn add(&mut self, value: &str, what: &'static str) {
        self.0.push((value.to_owned(), what));
    }

    /// A share token, and its payload and signature on their own.
    fn add_token(&mut self, token: &str) {
        self.add(token, "a share token");
        for part in token.split('.').skip(1) {
            if part.len() >= 16 {
                self.add(part, "part of a share token");
            }
        }
    }
}

/// Call with an `x-request-id` of our choosing.
fn with_request_id<T>(tenant: &str, id: &str, message: T) -> tonic::Request<T> {
    let mut request = with_tenant(tenant, message);
    request
        .metadata_mut()
        .insert("x-request-id", id.parse().unwrap());
    request
}

fn share_message(session_id: &str) -> ShareSessionRequest {
    ShareSessionRequest {
        session_id: session_id.into(),
        for_application_id: demo("service-y").application_id.to_string(),
        ttl_seconds: None,
    }
}

/// Drives every path a call can take through a default gateway.
async fn every_path_of_one_gateway(secrets: &mut Secrets) {
    let env = TestEnv::start(Default::default()).await;
    let y = demo("service-y");
    let wf = y.workflows.user.clone();

    // Success, with our request id; then import, replay and mismatch
    // carrying a personal field (vendor_data).
    let session = env.create_session("service-x", "user", "Approved").await;
    let shared = env
        .share_client
        .clone()
        .share_session(with_request_id(
            "service-x",
            "log-test-share-ok",
            share_message(&session),
        ))
        .await
        .unwrap()
        .into_inner();
    secrets.add_token(&shared.share_token);
    let token = shared.share_token;
    env.import(
        "service-y",
        &token,
        &wf,
        "user-42-jane.doe@example.com",
        false,
    )
    .await
    .unwrap();
    secrets.add("jane.doe@example.com", "vendor_data");
    env.import(
        "service-y",
        &token,
        &wf,
        "user-42-jane.doe@example.com",
        false,
    )
    .await
    .unwrap();
    let mismatch = env
        .import(
            "service-y",
            &token,
            &wf,
            "user-43-john.roe@example.com",
            false,
        )
        .await
        .unwrap_err();
    assert_eq!(reason(&mismatch), "ALREADY_IMPORTED");
    secrets.add("john.roe@example.com", "vendor_data");

    // Refused before any upstream call.
    let invalid = env
        .share(
            "service-x",
            "not-a-uuid",
            &y.application_id.to_string(),
            None,
        )
        .await;
    assert_eq!(invalid.unwrap_err().code(), Code::InvalidArgument);
    let unknown = env
        .share("nobody", &session, &y.application_id.to_string(), None)
        .await;
    assert_eq!(unknown.unwrap_err().code(), Code::Unauthenticated);
    let oversized = env
        .import("service-y", &"t".repeat(100 * 1024), &wf, "", false)
        .await;
    assert_eq!(oversized.unwrap_err().code(), Code::ResourceExhausted);

    // Share rejections.
    let missing = env
        .share(
            "service-x",
            &uuid::Uuid::new_v4().to_string(),
            &y.application_id.to_string(),
            None,
        )
        .await;
    assert_eq!(reason(&missing.unwrap_err()), "SESSION_NOT_FOUND");
    let running = env.create_session("service-x", "user", "In Progress").await;
    let unfinished = env
        .share("service-x", &running, &y.application_id.to_string(), None)
        .await;
    assert_eq!(reason(&unfinished.unwrap_err()), "SESSION_NOT_FINISHED");
    let read_only = env
        .share(
            READ_ONLY_TENANT,
            &session,
            &y.application_id.to_string(),
            None,
        )
        .await;
    assert_eq!(
        reason(&read_only.unwrap_err()),
        "TENANT_CREDENTIALS_REJECTED"
    );

    // Import rejections.
    let fresh = env.token_for_y(&session).await;
    secrets.add_token(&fresh);
    let mut tampered = fresh.clone();
    tampered.pop();
    tampered.push(if fresh.ends_with('A') { 'B' } else { 'A' });
    secrets.add(&tampered, "a tampered share token");
    let invalid_token = env.import("service-y", &tampered, &wf, "", false).await;
    assert_eq!(reason(&invalid_token.unwrap_err()), "SHARE_TOKEN_INVALID");
    let wrong_app = env
        .import(
            "service-x",
            &fresh,
            &demo("service-x").workflows.user,
            "",
            false,
        )
        .await;
    assert_eq!(
        reason(&wrong_app.unwrap_err()),
        "SHARE_TOKEN_WRONG_APPLICATION"
    );
    let no_workflow = env.import("service-y", &fresh, "wf_nope", "", false).await;
    assert_eq!(reason(&no_workflow.unwrap_err()), "WORKFLOW_NOT_FOUND");
    let doomed = env.create_session("service-x", "user", "Approved").await;
    let orphan = env.token_for_y(&doomed).await;
    secrets.add_token(&orphan);
    env.delete_session(&doomed).await;
    let gone = env.import("service-y", &orphan, &wf, "", false).await;
    assert_eq!(reason(&gone.unwrap_err()), "SOURCE_SESSION_NOT_FOUND");

    // Outages: a 503 share is retried, a 503 import is not, an import
    // whose answer is lost is found again on the retry.
    env.faults(json!({"fail_next": 1, "error_status": 503, "endpoints": ["share"]}))
        .await;
    let retried = env
        .share_client
        .clone()
        .share_session(with_request_id(
            "service-x",
            "log-test-retried",
            share_message(&session),
        ))
        .await
        .unwrap()
        .into_inner();
    secrets.add_token(&retried.share_token);
    env.faults(json!({"fail_next": 1, "error_status": 503, "endpoints": ["import"]}))
        .await;
    let outage = env.import("service-y", &fresh, &wf, "", false).await;
    assert_eq!(reason(&outage.unwrap_err()), "UPSTREAM_UNAVAILABLE");
    env.faults(json!({"drop_next": 1, "endpoints": ["import"]}))
        .await;
    let lost = env.import("service-y", &fresh, &wf, "", false).await;
    assert_eq!(reason(&lost.unwrap_err()), "UPSTREAM_UNAVAILABLE");
    // The retry finds the lost import through Didit; other parameters are refused.
    let recovered = env.import("service-y", &fresh, &wf, "", false).await;
    assert!(recovered.unwrap().recovered);
    let duplicate = env.import("service-y", &fresh, &wf, "other", false).await;
    assert_eq!(reason(&duplicate.unwrap_err()), "ALREADY_IMPORTED");

    let late_token = env.token_for_y(&session).await;
    secrets.add_token(&late_token);

    // The caller's deadline.
    env.faults(json!({"latency_ms": 1000})).await;
    let mut late = with_tenant("service-x", share_message(&session));
    late.set_timeout(Duration::from_millis(150));
    let late = env
        .share_client
        .clone()
        .share_session(late)
        .await
        .unwrap_err();
    assert!(matches!(
        late.code(),
        Code::DeadlineExceeded | Code::Cancelled
    ));
    let mut late_import = with_tenant(
        "service-y",
        ImportSharedSessionRequest {
            share_token: late_token.clone(),
            workflow_id: wf.clone(),
            vendor_data: String::new(),
            trust_review: false,
        },
    );
    late_import.set_timeout(Duration::from_millis(150));
    let _ = env
        .import_client
        .clone()
        .import_shared_session(late_import)
        .await;
    env.faults(json!({})).await;

    // An expired token (the sandbox clock moves on).
    let short = env
        .share(
            "service-x",
            &session,
            &y.application_id.to_string(),
            Some(60),
        )
        .await
        .unwrap()
        .share_token;
    secrets.add_token(&short);
    env.advance_clock(120).await;
    let expired = env.import("service-y", &short, &wf, "", false).await;
    assert_eq!(reason(&expired.unwrap_err()), "SHARE_TOKEN_EXPIRED");

    // Didit's rate limit (last: its Retry-After pauses service-y's budget).
    let limited_token = env.token_for_y(&session).await;
    secrets.add_token(&limited_token);
    env.faults(json!({"rate_limit_after": 0, "retry_after_seconds": 30, "endpoints": ["import"]}))
        .await;
    let limited = env
        .import("service-y", &limited_token, &wf, "", false)
        .await;
    assert_eq!(reason(&limited.unwrap_err()), "UPSTREAM_RATE_LIMITED");

    env.stop().await;
}

/// Shedding, a tenant's rate limit and an unreachable Didit.
async fn every_path_of_a_constrained_gateway() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        config.server.max_concurrent_requests = 1;
        config.upstream.base_url = format!("http://{closed}");
        for tenant in &mut config.tenants {
            if tenant.id == "service-y" {
                tenant.rate_limit_per_minute = 10; // a burst of 1
            }
        }
    })
    .await;
    let y = demo("service-y");
    // Connect errors: share and import both retry, then give up.
    let down = env
        .share(
            "service-x",
            &uuid::Uuid::new_v4().to_string(),
            &y.application_id.to_string(),
            None,
        )
        .await;
    assert_eq!(reason(&down.unwrap_err()), "UPSTREAM_UNAVAILABLE");
    let down = env
        .import("service-y", "a.b.c", &y.workflows.user, "", false)
        .await;
    assert_eq!(reason(&down.unwrap_err()), "UPSTREAM_UNAVAILABLE");
    let over = env
        .import("service-y", "a.b.c", &y.workflows.user, "", false)
        .await;
    assert_eq!(reason(&over.unwrap_err()), "TENANT_RATE_LIMITED");
    // Two calls at once with room for one.
    let (one, two, app) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
        y.application_id.to_string(),
    );
    let (a, b) = tokio::join!(
        env.share("service-x", &one, &app, None),
        env.share("service-x", &two, &app, None),
    );
    let _ = (a, b);
    env.stop().await;
}

#[tokio::test]
async fn no_secret_in_any_log_line_and_every_call_line_is_complete() {
    let captured = Captured::default();
    telemetry::subscriber(true, false, EnvFilter::new("debug"), captured.clone())
        .try_init()
        .expect("the only subscriber of this test binary");
    tracing::info!("log capture on");

    let mut secrets = Secrets::default();
    for app in didit_sandbox::demo_applications() {
        secrets.add(&app.api_key, "an API key");
        secrets.add(&app.read_only_api_key, "an API key");
    }
    every_path_of_one_gateway(&mut secrets).await;
    every_path_of_a_constrained_gateway().await;

    let text = captured.text();
    for (secret, what) in &secrets.0 {
        if let Some(at) = text.find(secret.as_str()) {
            let line = text[..at].rsplit('\n').next().unwrap_or("");
            panic!("{what} appears in the log, in the line starting: {line}");
        }
    }

    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    for line in &lines {
        for field in ["timestamp", "level", "message"] {
            assert!(line.get(field).is_some(), "no {field} in {line}");
        }
    }

    // One line per call with the five fields.
    let calls: Vec<&Value> = lines
        .iter()
        .filter(|l| matches!(l["message"].as_str(), Some("call" | "call failed")))
        .collect();
    // 25 calls reach the services of the first gateway, 2 or 3 of the
    // second (one of the concurrent pair may be shed); calls refused by the
    // admission layers or by tonic's decoder are counted in metrics only.
    assert!(calls.len() >= 27, "only {} call lines", calls.len());
    for call in &calls {
        for field in ["request_id", "tenant", "method", "code"] {
            let value = call[field].as_str().unwrap_or_default();
            assert!(!value.is_empty(), "no {field} in {call}");
        }
        assert!(call["latency_ms"].is_number(), "no latency_ms in {call}");
    }
    let ok = calls
        .iter()
        .find(|c| c["request_id"] == "log-test-share-ok")
        .expect("the call line of our request id");
    assert_eq!(
        (&ok["tenant"], &ok["method"], &ok["code"], &ok["level"]),
        (
            &json!("service-x"),
            &json!("ShareSession"),
            &json!("OK"),
            &json!("INFO")
        )
    );
    let codes: std::collections::BTreeSet<&str> =
        calls.iter().filter_map(|c| c["code"].as_str()).collect();
    for code in [
        "OK",
        "INVALID_ARGUMENT",
        "UNAUTHENTICATED",
        "NOT_FOUND",
        "FAILED_PRECONDITION",
        "PERMISSION_DENIED",
        "ALREADY_EXISTS",
        "RESOURCE_EXHAUSTED",
        "UNAVAILABLE",
        "DEADLINE_EXCEEDED",
    ] {
        assert!(
            codes.contains(code),
            "no call line with code {code}: {codes:?}"
        );
    }
    let unknown = calls
        .iter()
        .find(|c| c["code"] == "UNAUTHENTICATED")
        .unwrap();
    assert_eq!(
        unknown["tenant"], "unknown",
        "an unknown tenant id is not echoed"
    );

    // The upstream lines carry the call's request id, so they join up.
    let answered: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "Didit answered" && l["request_id"] == "log-test-share-ok")
        .collect();
    assert_eq!(answered.len(), 1, "the DEBUG upstream line of our call");
    assert_eq!(answered[0]["level"], "DEBUG");
    assert!(answered[0].get("upstream_request_id").is_some());
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "retrying Didit request"
                && l["request_id"] == "log-test-retried"),
        "the retry is logged with the call's request id"
    );
    assert!(lines.iter().any(|l| l["message"] == "shutdown complete"));
}

#[tokio::test]
async fn a_terminal_gets_human_readable_lines_with_the_same_fields() {
    // This test's runtime is single-threaded: a thread-local subscriber
    // sees the whole gateway.
    let captured = Captured::default();
    let _local = tracing::subscriber::set_default(telemetry::subscriber(
        false,
        false,
        EnvFilter::new("info"),
        captured.clone(),
    ));
    let env = TestEnv::start(Default::default()).await;
    let session = env.create_session("service-x", "user", "Approved").await;
    env.share_client
        .clone()
        .share_session(with_request_id(
            "service-x",
            "log-text-1",
            share_message(&session),
        ))
        .await
        .unwrap();
    env.stop().await;

    let text = captured.text();
    let line = text
        .lines()
        .find(|l| l.contains("request_id=log-text-1"))
        .unwrap_or_else(|| panic!("no call line in\n{text}"));
    assert!(!line.starts_with('{'), "{line}");
    for part in [
        " INFO ",
        "call",
        "tenant=service-x",
        "ShareSession",
        "OK",
        "latency_ms=",
    ] {
        assert!(line.contains(part), "{part:?} in {line}");
    }
    assert!(!text.contains('\u{1b}'), "no colour codes off a terminal");
}
