//! SessionService: GetSession over the decision read, and
//! WatchSessionEvents fed by the sandbox's signed webhooks through the
//! gateway's webhook port (resume by cursor, expired cursor, the drain).

use std::time::Duration;

use didit_sandbox::{Dialect, SandboxConfig};
use didit_share_gateway::app;
use didit_share_gateway::config::{AuthConfig, Config};
use didit_share_gateway::proto::session_service_client::SessionServiceClient;
use didit_share_gateway::proto::{
    GetSessionRequest, SessionEvent, SessionKind, SessionStatus, WatchSessionEventsRequest,
};
use serde_json::{Value, json};
use tonic::transport::Channel;
use tonic::{Code, Request, Status, Streaming};

use crate::env::{TestEnv, reason, with_tenant};

const SIDECAR: &str = "spiffe://cluster.local/ns/didit/sa/didit-share-gateway";
const PAYMENTS: &str = "spiffe://cluster.local/ns/payments/sa/onboarding";
const RISK: &str = "spiffe://cluster.local/ns/risk/sa/scorer";
/// Bound on waiting for one event (deliveries are immediate; this only
/// keeps a broken build from hanging).
const WAIT: Duration = Duration::from_secs(10);

/// A gateway whose webhook port the sandbox delivers to, with `tweak`.
async fn with_webhooks(tweak: impl FnOnce(&mut Config)) -> TestEnv {
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        app::sandbox_webhooks(config, "127.0.0.1:0".parse().unwrap());
        tweak(config);
    })
    .await;
    let gateway = env.gateway();
    let addr = gateway.webhooks_addr.expect("the webhook port is served");
    app::register_sandbox_webhooks(&env.sandbox, &gateway.config(), addr).unwrap();
    env
}

fn client(env: &TestEnv) -> SessionServiceClient<Channel> {
    SessionServiceClient::new(env.channel.clone())
}

fn watch_request(tenant: &str, after: &str, types: &[&str]) -> Request<WatchSessionEventsRequest> {
    with_tenant(
        tenant,
        WatchSessionEventsRequest {
            after_event_id: after.into(),
            webhook_types: types.iter().map(|t| t.to_string()).collect(),
        },
    )
}

async fn watch(env: &TestEnv, after: &str, types: &[&str]) -> Streaming<SessionEvent> {
    client(env)
        .watch_session_events(watch_request("service-x", after, types))
        .await
        .unwrap()
        .into_inner()
}

async fn next(stream: &mut Streaming<SessionEvent>) -> Result<Option<SessionEvent>, Status> {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("an event or a status within the bound")
}

/// `PATCH /_sandbox/sessions/{id}`: a status change, which fires
/// `status.updated`.
async fn set_status(env: &TestEnv, session_id: &str, status: &str) {
    let response = env
        .http
        .patch(format!(
            "{}/_sandbox/sessions/{session_id}",
            env.sandbox.base_url()
        ))
        .json(&json!({ "status": status }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "PATCH {status}");
}

async fn get(env: &TestEnv, tenant: &str, session_id: &str) -> Result<Value, Status> {
    client(env)
        .get_session(with_tenant(
            tenant,
            GetSessionRequest {
                session_id: session_id.into(),
            },
        ))
        .await
        .map(|r| {
            let r = r.into_inner();
            json!({
                "session_id": r.session_id,
                "kind": r.session_kind,
                "status": r.status,
                "status_raw": r.status_raw,
                "raw": serde_json::from_slice::<Value>(&r.raw_json).unwrap(),
                "kyc_checks": r.id_verifications.len(),
                "kyb_checks": r.registry_checks.len(),
                "workflow_id": r.workflow_id,
            })
        })
}

#[tokio::test]
async fn get_session_reads_kyc_and_kyb_decisions() {
    let env = TestEnv::start(Dialect::Seeds).await;
    let user = env.create_session("service-x", "user", "In Review").await;
    let got = get(&env, "service-x", &user).await.unwrap();
    assert_eq!(got["session_id"], user.as_str());
    assert_eq!(got["kind"], SessionKind::User as i32);
    assert_eq!(got["status"], SessionStatus::InReview as i32);
    assert_eq!(got["status_raw"], "In Review");
    assert_eq!(got["raw"]["session_id"], user.as_str());
    assert!(got["kyc_checks"].as_u64().unwrap() > 0, "{got}");
    assert_eq!(got["workflow_id"], got["raw"]["workflow_id"]);

    let business = env
        .create_session("service-x", "business", "APPROVED")
        .await;
    let got = get(&env, "service-x", &business).await.unwrap();
    assert_eq!(got["kind"], SessionKind::Business as i32);
    assert_eq!(got["status"], SessionStatus::Approved as i32);
    assert_eq!(got["status_raw"], "APPROVED");
    assert!(got["kyb_checks"].as_u64().unwrap() > 0, "{got}");

    // A status change shows on the next read.
    set_status(&env, &user, "Approved").await;
    let got = get(&env, "service-x", &user).await.unwrap();
    assert_eq!(got["status"], SessionStatus::Approved as i32);
    env.stop().await;
}

#[tokio::test]
async fn get_session_refusals() {
    let env = TestEnv::start(Dialect::Seeds).await;
    // Unknown, and another application's session: both not found.
    let other = env.create_session("service-y", "user", "Approved").await;
    for id in [uuid::Uuid::new_v4().to_string(), other] {
        let err = get(&env, "service-x", &id).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        assert_eq!(reason(&err), "SESSION_NOT_FOUND");
    }
    let err = get(&env, "service-x", "not-a-uuid").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(reason(&err), "INVALID_REQUEST");
    let err = get(&env, "nobody", &uuid::Uuid::new_v4().to_string())
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "UNKNOWN_TENANT");
    // Without [webhooks] there is nothing to watch: said at once.
    let err = client(&env)
        .watch_session_events(watch_request("service-x", "", &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason(&err), "WEBHOOKS_NOT_CONFIGURED");
    env.stop().await;
}

/// `request` as the mesh sidecar forwards it for `caller`.
fn as_caller<T>(caller: &str, mut request: Request<T>) -> Request<T> {
    let xfcc = format!("By={SIDECAR};URI={caller}");
    request
        .metadata_mut()
        .insert("x-forwarded-client-cert", xfcc.parse().unwrap());
    request
}

#[tokio::test]
async fn callers_not_allowed_can_neither_read_nor_watch() {
    let env = with_webhooks(|config| {
        config.auth = AuthConfig::Mesh {
            trusted_proxy_identity: Some(SIDECAR.to_owned()),
        };
        for tenant in &mut config.tenants {
            tenant.allowed_callers = vec![PAYMENTS.to_owned()];
        }
    })
    .await;
    let session = env.create_session("service-x", "user", "Approved").await;
    let read = |caller: &str| {
        as_caller(
            caller,
            with_tenant(
                "service-x",
                GetSessionRequest {
                    session_id: session.clone(),
                },
            ),
        )
    };
    client(&env).get_session(read(PAYMENTS)).await.unwrap();
    let err = client(&env).get_session(read(RISK)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(reason(&err), "CALLER_NOT_ALLOWED");
    let err = client(&env)
        .watch_session_events(as_caller(RISK, watch_request("service-x", "", &[])))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "CALLER_NOT_ALLOWED");
    client(&env)
        .watch_session_events(as_caller(PAYMENTS, watch_request("service-x", "", &[])))
        .await
        .unwrap();
    env.stop().await;
}

#[tokio::test]
async fn sandbox_webhooks_reach_watchers_and_resume_by_cursor() {
    let env = with_webhooks(|_| {}).await;
    let session = env.create_session("service-x", "user", "In Review").await;
    let other_tenant = env.create_session("service-y", "user", "In Review").await;
    let mut stream = watch(&env, "", &["status.updated"]).await;

    set_status(&env, &other_tenant, "Approved").await;
    set_status(&env, &session, "Approved").await;
    let first = next(&mut stream).await.unwrap().unwrap();
    assert_eq!(first.session_id, session, "only the tenant's own events");
    assert_eq!(first.webhook_type, "status.updated");
    assert_eq!(first.status(), SessionStatus::Approved);
    assert_eq!(first.status_raw, "Approved");
    let body: Value = serde_json::from_slice(&first.raw_json).unwrap();
    assert_eq!(body["session_id"], session.as_str());
    assert!(first.received_at.is_some());

    // The caller goes away; two changes happen meanwhile.
    drop(stream);
    set_status(&env, &session, "Declined").await;
    set_status(&env, &session, "In Review").await;
    let mut resumed = watch(&env, &first.event_id, &[]).await;
    let a = next(&mut resumed).await.unwrap().unwrap();
    let b = next(&mut resumed).await.unwrap().unwrap();
    assert_eq!(
        [a.status_raw.as_str(), b.status_raw.as_str()],
        ["Declined", "In Review"]
    );
    // Live again after the replay. (Each change goes to a status not seen
    // before: the same body within the same second is a duplicate
    // delivery, stored once.)
    set_status(&env, &session, "Abandoned").await;
    let c = next(&mut resumed).await.unwrap().unwrap();
    assert_eq!(c.status_raw, "Abandoned");
    let ids = [&first.event_id, &a.event_id, &b.event_id, &c.event_id];
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 4, "{ids:?}");

    // A type filter that matches nothing sees nothing of these.
    let mut other_types = watch(&env, &first.event_id, &["data.updated"]).await;
    set_status(&env, &session, "Expired").await;
    let mut all = watch(&env, &c.event_id, &[]).await;
    let d = next(&mut all).await.unwrap().unwrap();
    assert_eq!(d.status_raw, "Expired");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), other_types.message())
            .await
            .is_err(),
        "no data.updated event was sent"
    );
    env.stop().await;
}

#[tokio::test]
async fn an_expired_cursor_is_out_of_range() {
    let env = with_webhooks(|config| {
        if let Some(webhooks) = &mut config.webhooks {
            webhooks.max_events = 1;
        }
    })
    .await;
    let session = env.create_session("service-x", "user", "In Review").await;
    let mut stream = watch(&env, "", &[]).await;
    let mut ids = Vec::new();
    for status in ["Approved", "Declined", "In Review"] {
        set_status(&env, &session, status).await;
        ids.push(next(&mut stream).await.unwrap().unwrap().event_id);
    }
    let err = client(&env)
        .watch_session_events(watch_request("service-x", &ids[0], &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange);
    assert_eq!(reason(&err), "EVENT_CURSOR_EXPIRED");
    // The newest retained one is still a good cursor.
    watch(&env, &ids[2], &[]).await;
    env.stop().await;
}

#[tokio::test]
async fn the_drain_ends_open_streams_with_a_status() {
    let mut env = with_webhooks(|_| {}).await;
    let mut stream = watch(&env, "", &[]).await;
    let drained = env.begin_shutdown();
    let err = next(&mut stream).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(reason(&err), "SHUTTING_DOWN");
    drained.await.unwrap().unwrap();
    env.sandbox.stop().await;
}

#[tokio::test]
async fn the_webhook_port_knows_only_tenants_with_a_secret() {
    let env = with_webhooks(|config| {
        // The read-only tenant has no webhook secret.
        for tenant in &mut config.tenants {
            if tenant.id == crate::env::READ_ONLY_TENANT {
                tenant.webhook_secret = None;
            }
        }
    })
    .await;
    let addr = env.gateway().webhooks_addr.unwrap();
    let post = |tenant: &str| {
        env.http
            .post(format!("http://{addr}/webhooks/didit/{tenant}"))
            .header("x-timestamp", "1")
            .json(&json!({"webhook_type": "status.updated"}))
            .send()
    };
    assert_eq!(post("nobody").await.unwrap().status().as_u16(), 404);
    assert_eq!(
        post(crate::env::READ_ONLY_TENANT)
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    assert_eq!(post("service-x").await.unwrap().status().as_u16(), 401);
    env.stop().await;
}

#[tokio::test]
async fn a_reload_rotates_the_webhook_secret_at_once() {
    use didit_share_gateway::webhooks::WebhookSecret;
    use didit_share_gateway::webhooks::signature::sign;

    let env = with_webhooks(|_| {}).await;
    let gateway = env.gateway();
    let addr = gateway.webhooks_addr.unwrap();
    let x = crate::env::demo("service-x");
    let deliver = |secret: WebhookSecret| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let body = json!({"webhook_type": "status.updated", "session_id": uuid::Uuid::new_v4().to_string(),
                          "status": "Approved", "timestamp": now})
        .to_string();
        env.http
            .post(format!("http://{addr}/webhooks/didit/service-x"))
            .header("x-timestamp", now.to_string())
            .header("x-signature", sign(&secret, body.as_bytes()))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let dir = tempfile::tempdir().unwrap();
    let (key, hook) = (dir.path().join("key"), dir.path().join("hook"));
    std::fs::write(&key, &x.api_key).unwrap();
    std::fs::write(&hook, "rotated-secret").unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        format!(
            "[upstream]\nbase_url = \"{}\"\n[auth]\nmode = \"none\"\n[[tenants]]\nid = \"service-x\"\napplication_id = \"{}\"\napi_key_file = \"{}\"\nallowed_callers = [\"*\"]\nwebhook_secret_file = \"{}\"\n[webhooks]\nlisten = \"127.0.0.1:0\"\n",
            env.sandbox.base_url(),
            x.application_id,
            key.display(),
            hook.display()
        ),
    )
    .unwrap();
    let rotated = WebhookSecret::new("rotated-secret".into());
    assert_eq!(
        deliver(rotated.clone()).await.unwrap().status().as_u16(),
        401
    );
    gateway.reload_from(&file).unwrap();
    assert_eq!(deliver(rotated).await.unwrap().status().as_u16(), 200);
    assert_eq!(
        deliver(WebhookSecret::new("some-other".into()))
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    env.stop().await;
}
