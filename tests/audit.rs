//! The audit trail: one event per RPC on target `audit`, whatever the
//! outcome (success, replay, refused caller, invalid request, Didit's
//! refusal, cancellation), with every field the schema documents, and no
//! key, token, vendor_data or personal field in clear. `[audit] enabled =
//! false` turns it off. Its own binary: it installs the global subscriber.

#[path = "support/captured.rs"]
mod captured;
#[path = "gateway/env.rs"]
mod common;

use std::time::Duration;

use captured::Captured;
use common::{TestEnv, demo, eventually, reason, with_tenant};
use didit_sandbox::SandboxConfig;
use didit_share_gateway::audit::sha256_prefix;
use didit_share_gateway::proto::session_service_client::SessionServiceClient;
use didit_share_gateway::proto::{
    GetSessionRequest, ImportSharedSessionRequest, ShareSessionRequest, WatchSessionEventsRequest,
};
use didit_share_gateway::telemetry;
use serde_json::{Value, json};
use tonic::Code;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The audit events among the captured lines.
trait AuditEvents {
    /// The audit events of `request_id`.
    fn audit(&self, request_id: &str) -> Vec<Value>;
    /// The one audit event of `request_id`.
    fn one(&self, request_id: &str) -> Value;
}

impl AuditEvents for Captured {
    fn audit(&self, request_id: &str) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["target"] == "audit" && l["request_id"] == request_id)
            .collect()
    }

    fn one(&self, request_id: &str) -> Value {
        let mut events = self.audit(request_id);
        assert_eq!(events.len(), 1, "audit events of {request_id}: {events:?}");
        events.remove(0)
    }
}

/// `message` for `tenant` with our request id.
fn request<T>(tenant: &str, id: &str, message: T) -> tonic::Request<T> {
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

fn import_message(token: &str, workflow_id: &str, vendor_data: &str) -> ImportSharedSessionRequest {
    ImportSharedSessionRequest {
        share_token: token.into(),
        workflow_id: workflow_id.into(),
        vendor_data: vendor_data.into(),
        trust_review: false,
    }
}

/// `field` of `event` is absent (or null).
fn absent(event: &Value, field: &str) -> bool {
    event.get(field).is_none_or(Value::is_null)
}

/// Every field the events of the scenario must have.
const COMMON: [&str; 5] = ["request_id", "caller", "tenant", "rpc", "code"];

#[tokio::test]
async fn every_call_writes_one_complete_audit_event_and_no_secret() {
    let captured = Captured::default();
    telemetry::subscriber(true, false, EnvFilter::new("info"), captured.clone())
        .try_init()
        .expect("the only subscriber of this test binary");

    let env = TestEnv::start(Default::default()).await;
    let (x, y) = (demo("service-x"), demo("service-y"));
    let wf = y.workflows.user.clone();
    let vendor_data = "user-42-jane.doe@example.com";
    let session = env.create_session("service-x", "user", "Approved").await;

    // A share.
    let token = env
        .share_client
        .clone()
        .share_session(request("service-x", "a-share", share_message(&session)))
        .await
        .unwrap()
        .into_inner()
        .share_token;
    let event = captured.one("a-share");
    assert_eq!(event["target"], "audit");
    assert_eq!(event["rpc"], "ShareSession");
    assert_eq!(event["tenant"], "service-x");
    assert_eq!(event["caller"], "-", "auth mode none");
    assert_eq!(event["code"], "OK");
    assert_eq!(event["reason"], "");
    assert_eq!(event["session_id"], json!(session));
    assert_eq!(
        event["for_application_id"],
        json!(y.application_id.to_string())
    );
    assert_eq!(
        event["token_sha256_prefix"],
        json!(sha256_prefix(token.as_bytes()))
    );
    assert!(
        matches!(event["upstream_status"].as_u64(), Some(200 | 201)),
        "{event}"
    );
    assert_eq!(event["replayed"], false);
    assert_eq!(event["recovered"], false);
    for field in ["new_session_id", "workflow_id", "vendor_data_sha256_prefix"] {
        assert!(absent(&event, field), "{field} in {event}");
    }

    // Its import, then the same import again (a replay).
    let imported = env
        .import_client
        .clone()
        .import_shared_session(request(
            "service-y",
            "an-import",
            import_message(&token, &wf, vendor_data),
        ))
        .await
        .unwrap()
        .into_inner();
    let event = captured.one("an-import");
    assert_eq!(event["rpc"], "ImportSharedSession");
    assert_eq!(event["tenant"], "service-y");
    assert_eq!(event["code"], "OK");
    assert_eq!(
        event["session_id"],
        json!(session),
        "from the token's claims"
    );
    assert_eq!(event["new_session_id"], json!(imported.session_id));
    assert_eq!(event["workflow_id"], json!(wf));
    assert_eq!(
        event["token_sha256_prefix"],
        json!(sha256_prefix(token.as_bytes()))
    );
    assert_eq!(
        event["vendor_data_sha256_prefix"],
        json!(sha256_prefix(vendor_data.as_bytes()))
    );
    assert!(
        matches!(event["upstream_status"].as_u64(), Some(200 | 201)),
        "{event}"
    );
    assert_eq!(event["replayed"], false);
    env.import_client
        .clone()
        .import_shared_session(request(
            "service-y",
            "a-replay",
            import_message(&token, &wf, vendor_data),
        ))
        .await
        .unwrap();
    let event = captured.one("a-replay");
    assert_eq!(event["replayed"], true);
    assert_eq!(event["new_session_id"], json!(imported.session_id));
    assert!(
        absent(&event, "upstream_status"),
        "a replay does not reach Didit: {event}"
    );

    // Refused callers: unknown and whitespace tenants.
    for (id, tenant) in [
        ("unknown-tenant", "nobody"),
        ("spaced-tenant", "service-x "),
    ] {
        let status = env
            .share_client
            .clone()
            .share_session(request(tenant, id, share_message(&session)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        let event = captured.one(id);
        assert_eq!(event["tenant"], "unknown");
        assert_eq!(event["code"], "UNAUTHENTICATED");
        assert_eq!(event["reason"], "UNKNOWN_TENANT");
        assert!(absent(&event, "session_id") && absent(&event, "upstream_status"));
    }

    // An invalid request: nothing of it is trusted into the trail.
    let status = env
        .share_client
        .clone()
        .share_session(request(
            "service-x",
            "an-invalid",
            share_message("not-a-uuid"),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let event = captured.one("an-invalid");
    assert_eq!(
        (&event["code"], &event["reason"]),
        (&json!("INVALID_ARGUMENT"), &json!("INVALID_REQUEST"))
    );
    assert!(absent(&event, "session_id"), "{event}");

    // Didit refuses: its status is in the event.
    let missing = uuid::Uuid::new_v4().to_string();
    let status = env
        .share_client
        .clone()
        .share_session(request(
            "service-x",
            "an-upstream-error",
            share_message(&missing),
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "SESSION_NOT_FOUND");
    let event = captured.one("an-upstream-error");
    assert_eq!(event["reason"], "SESSION_NOT_FOUND");
    assert_eq!(event["code"], "NOT_FOUND");
    assert_eq!(event["upstream_status"], 404);
    assert_eq!(event["session_id"], json!(missing));

    // A wrong-application import: the token's hash, Didit's status.
    let fresh = env.token_for_y(&session).await;
    let status = env
        .import_client
        .clone()
        .import_shared_session(request(
            "service-x",
            "a-wrong-app",
            import_message(&fresh, &x.workflows.user, ""),
        ))
        .await
        .unwrap_err();
    let event = captured.one("a-wrong-app");
    assert_eq!(event["reason"], json!(reason(&status)));
    assert_eq!(
        event["token_sha256_prefix"],
        json!(sha256_prefix(fresh.as_bytes()))
    );
    assert!(
        event["upstream_status"].as_u64().is_some_and(|s| s >= 400),
        "{event}"
    );
    assert!(
        absent(&event, "vendor_data_sha256_prefix"),
        "no vendor_data sent"
    );

    // A message over the decoding limit never reaches the service: the
    // edge writes its event.
    let status = env
        .import_client
        .clone()
        .import_shared_session(request(
            "service-y",
            "an-oversized",
            import_message(&"t".repeat(100 * 1024), &wf, ""),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.metadata().get("x-dsg-audited").is_none());
    let event = captured.one("an-oversized");
    assert_eq!(
        (&event["rpc"], &event["tenant"], &event["code"]),
        (
            &json!("ImportSharedSession"),
            &json!("service-y"),
            &json!("RESOURCE_EXHAUSTED")
        )
    );

    // A call the caller gives up on: the drop guard writes its event.
    env.faults(json!({"latency_ms": 1000})).await;
    let mut late = request("service-x", "a-cancelled", share_message(&session));
    late.set_timeout(Duration::from_millis(100));
    let _ = env.share_client.clone().share_session(late).await;
    eventually(
        Duration::from_secs(5),
        "the cancelled call's audit event",
        || {
            let found = !captured.audit("a-cancelled").is_empty();
            async move { found }
        },
    )
    .await;
    let event = captured.one("a-cancelled");
    assert!(
        matches!(
            event["code"].as_str(),
            Some("CANCELLED" | "DEADLINE_EXCEEDED")
        ),
        "{event}"
    );
    env.faults(json!({})).await;
    env.stop().await;

    // Every audit event is complete.
    let events: Vec<Value> = captured
        .lines()
        .into_iter()
        .filter(|l| l["target"] == "audit")
        .collect();
    assert!(events.len() >= 9, "{} audit events", events.len());
    for event in &events {
        for field in COMMON {
            assert!(
                event[field].as_str().is_some_and(|v| !v.is_empty()),
                "no {field} in {event}"
            );
        }
        assert!(
            event["replayed"].is_boolean() && event["recovered"].is_boolean(),
            "{event}"
        );
    }

    // No secret anywhere in the log, the audit events included.
    let text = captured.text();
    let mut secrets = vec![
        token.clone(),
        fresh.clone(),
        vendor_data.to_owned(),
        "jane.doe".to_owned(),
    ];
    for app in didit_sandbox::demo_applications() {
        secrets.push(app.api_key);
        secrets.push(app.read_only_api_key);
    }
    for t in [&token, &fresh] {
        secrets.extend(
            t.split('.')
                .skip(1)
                .filter(|p| p.len() >= 16)
                .map(str::to_owned),
        );
    }
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "a secret is in the log");
    }

    // A call refused by the admission layers (the tenant's limit, a burst
    // of 1): one event, from the edge.
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        for tenant in &mut config.tenants {
            tenant.rate_limit_per_minute = 10;
        }
    })
    .await;
    let mut reasons = Vec::new();
    for id in ["limited-1", "limited-2", "limited-3"] {
        let answer = env
            .share_client
            .clone()
            .share_session(request("service-x", id, share_message(&session)))
            .await;
        let event = captured.one(id);
        assert_eq!(event["tenant"], "service-x");
        if let Err(status) = answer {
            assert!(status.metadata().get("x-dsg-audited").is_none());
            assert_eq!(event["reason"], json!(reason(&status)));
            reasons.push(reason(&status));
        }
    }
    assert!(
        reasons.iter().any(|r| r == "TENANT_RATE_LIMITED"),
        "{reasons:?}"
    );
    env.stop().await;

    // `[audit] enabled = false`: calls are logged, not audited.
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        config.audit.enabled = false;
    })
    .await;
    env.share_client
        .clone()
        .share_session(request("service-x", "audit-off", share_message(&session)))
        .await
        .unwrap_err();
    assert!(captured.audit("audit-off").is_empty());
    assert!(
        captured
            .lines()
            .iter()
            .any(|l| l["request_id"] == "audit-off" && l["target"] != "audit"),
        "the call is still in the operational log"
    );
    env.stop().await;

    // SessionService: GetSession audits the session it read; a watch
    // stream is audited once, when it ends (here: by the drain).
    let mut env = TestEnv::start_with(SandboxConfig::default(), |config| {
        didit_share_gateway::app::sandbox_webhooks(config, "127.0.0.1:0".parse().unwrap());
    })
    .await;
    let mut sessions = SessionServiceClient::new(env.channel.clone());
    let session = env.create_session("service-x", "user", "Approved").await;
    let read = GetSessionRequest {
        session_id: session.clone(),
    };
    sessions
        .get_session(request("service-x", "a-get", read))
        .await
        .unwrap();
    let event = captured.one("a-get");
    assert_eq!(
        (event["rpc"].as_str(), event["code"].as_str()),
        (Some("GetSession"), Some("OK"))
    );
    assert_eq!(event["session_id"], session.as_str());
    let watch = WatchSessionEventsRequest::default();
    let mut stream = sessions
        .watch_session_events(request("service-x", "a-watch", watch))
        .await
        .unwrap()
        .into_inner();
    assert!(captured.audit("a-watch").is_empty(), "not before it ends");
    let drained = env.begin_shutdown();
    let status = stream.message().await.unwrap_err();
    assert_eq!(reason(&status), "SHUTTING_DOWN");
    eventually(Duration::from_secs(10), "the watch's audit event", || {
        let found = !captured.audit("a-watch").is_empty();
        async move { found }
    })
    .await;
    let event = captured.one("a-watch");
    assert_eq!(event["rpc"], "WatchSessionEvents");
    assert_eq!(
        (event["code"].as_str(), event["reason"].as_str()),
        (Some("UNAVAILABLE"), Some("SHUTTING_DOWN"))
    );
    drained.await.unwrap().unwrap();
}
