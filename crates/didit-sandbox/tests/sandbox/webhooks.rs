//! Signed webhook deliveries: imports and `PATCH /_sandbox/sessions/{id}`
//! post `status.updated` to the application's subscribed destinations,
//! signed three ways (checked here with an independent HMAC and canonical
//! JSON), retried on 503 and connection errors, listed by
//! `GET /_sandbox/webhooks`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use didit_sandbox::{DeliveryOutcome, DestinationError, Dialect};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;

use crate::common::{Env, seeded};

/// A webhook receiver on 127.0.0.1:0 that answers scripted statuses (then
/// 200) and records every delivery.
struct Receiver {
    url: String,
    state: Arc<ReceiverState>,
}

#[derive(Default)]
struct ReceiverState {
    script: Mutex<VecDeque<u16>>,
    received: Mutex<Vec<(HeaderMap, Bytes)>>,
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    state.received.lock().expect("lock").push((headers, body));
    let next = state
        .script
        .lock()
        .expect("lock")
        .pop_front()
        .unwrap_or(200);
    StatusCode::from_u16(next).expect("status")
}

impl Receiver {
    async fn start(script: &[u16]) -> Receiver {
        let state = Arc::new(ReceiverState::default());
        state.script.lock().expect("lock").extend(script);
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/webhooks/didit",
            listener.local_addr().expect("addr")
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, state }
    }

    fn received(&self) -> Vec<(HeaderMap, Bytes)> {
        self.state.received.lock().expect("lock").clone()
    }
}

/// Polls `check` every 20 ms for up to 10 s.
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..500 {
        if let Some(value) = check() {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn hmac_hex(secret: &str, message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// The seeds' canonical form, written independently of the sandbox: keys
/// sorted, whole floats as integers, compact, non-ASCII as is.
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&map[k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        Value::Number(n) if n.is_f64() && n.as_f64().is_some_and(|f| f.fract() == 0.0) => {
            format!("{}", n.as_f64().unwrap_or_default() as i64)
        }
        other => other.to_string(),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{name} missing"))
}

/// Checks the three signatures and the timestamp; returns the body.
fn verify(secret: &str, headers: &HeaderMap, raw: &[u8]) -> Value {
    let body: Value = serde_json::from_slice(raw).expect("json body");
    assert_eq!(header(headers, "content-type"), "application/json");
    assert_eq!(header(headers, "x-signature"), hmac_hex(secret, raw));
    assert_eq!(
        header(headers, "x-signature-v2"),
        hmac_hex(secret, canonical(&body).as_bytes())
    );
    let timestamp = header(headers, "x-timestamp");
    assert_eq!(timestamp, body["timestamp"].to_string());
    let simple = format!(
        "{timestamp}:{}:{}:{}",
        body["session_id"].as_str().expect("session_id"),
        body["status"].as_str().expect("status"),
        body["webhook_type"].as_str().expect("webhook_type"),
    );
    assert_eq!(
        header(headers, "x-signature-simple"),
        hmac_hex(secret, simple.as_bytes())
    );
    assert!(raw.is_ascii(), "Didit's raw body escapes non-ASCII");
    assert_ne!(
        raw,
        canonical(&body).as_bytes(),
        "the raw body is not the canonical form"
    );
    body
}

async fn register(env: &Env, key: &str, url: &str, events: &[&str]) -> String {
    let body = json!({"url": url, "subscribed_events": events});
    let reply = env
        .post("/v3/webhook/destinations/", Some(key), &body)
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    reply.body["secret_shared_key"]
        .as_str()
        .expect("secret")
        .to_owned()
}

async fn deliveries(env: &Env) -> Vec<Value> {
    let reply = env.admin(Method::GET, "/_sandbox/webhooks", None).await;
    assert_eq!(reply.status, 200);
    reply.body.as_array().expect("array").clone()
}

async fn patch(env: &Env, id: impl std::fmt::Display, status: &str) -> crate::common::Reply {
    env.admin(
        Method::PATCH,
        &format!("/_sandbox/sessions/{id}"),
        Some(json!({"status": status})),
    )
    .await
}

#[tokio::test]
async fn imports_and_status_changes_deliver_signed_status_updates() {
    let env = Env::start(Dialect::Seeds).await;
    let receiver = Receiver::start(&[]).await;
    let secret = register(&env, &env.y.api_key, &receiver.url, &["status.updated"]).await;
    let other = Receiver::start(&[]).await;
    register(&env, &env.x.api_key, &other.url, &["status.updated"]).await;

    let original = seeded(&env.x, "user", "Approved");
    let token = env.mint(&env.x, original, &env.y).await;
    let imported = env.import(&env.y.api_key, &env.y_import(&token)).await;
    assert_eq!(imported.status, 201);
    let id = imported.body["session_id"].as_str().expect("id").to_owned();
    let now = env.admin(Method::GET, "/_sandbox/clock", None).await.body["now"]
        .as_i64()
        .expect("now");

    let (headers, raw) = eventually("the import's webhook", || receiver.received().pop()).await;
    let body = verify(&secret, &headers, &raw);
    assert_eq!(body["webhook_type"], "status.updated");
    assert_eq!(body["session_id"], id.as_str());
    assert_eq!(body["status"], "In Review");
    assert_eq!(body["vendor_data"], "partner-user-42");
    assert_eq!(body["workflow_id"], env.y.workflows.user.as_str());
    assert_eq!(body["created_at"], body["timestamp"]);
    assert!((body["timestamp"].as_i64().expect("timestamp") - now).abs() <= 5);
    assert_eq!(
        body["decision"], imported.body,
        "the decision is the import answer"
    );
    assert!(
        body.get("session_kind").is_none(),
        "KYC webhooks carry no session_kind"
    );

    let changed = patch(&env, &id, "Approved").await;
    assert_eq!(changed.status, 200, "{:?}", changed.body);
    assert_eq!(
        changed.body["application_id"],
        env.y.application_id.to_string()
    );
    assert_eq!(changed.body["session"]["status"], "Approved");
    assert_eq!(
        changed.body["session"]["shared_from_session"],
        original.to_string()
    );
    let (headers, raw) = eventually("the status change's webhook", || {
        let all = receiver.received();
        (all.len() == 2).then(|| all[1].clone())
    })
    .await;
    assert_eq!(verify(&secret, &headers, &raw)["status"], "Approved");

    // Same status again: nothing to tell (deliveries are logged before the answer).
    assert_eq!(patch(&env, &id, "Approved").await.status, 200);
    let settled = eventually("both deliveries settled", || {
        let all = env.sandbox.webhook_deliveries();
        all.iter()
            .all(|d| d.outcome == DeliveryOutcome::Delivered)
            .then_some(all)
    })
    .await;
    assert_eq!(settled.len(), 2, "{settled:?}");
    let listed = deliveries(&env).await;
    assert_eq!(listed.len(), 2);
    for entry in &listed {
        assert_eq!(entry["destination"], receiver.url.as_str());
        assert_eq!(entry["webhook_type"], "status.updated");
        assert_eq!(entry["session_id"], id.as_str());
        assert_eq!(
            (entry["attempts"].as_u64(), entry["last_status"].as_u64()),
            (Some(1), Some(200))
        );
        assert_eq!(entry["outcome"], "delivered");
    }
    assert!(
        other.received().is_empty(),
        "service-x's destination hears nothing of service-y"
    );
}

#[tokio::test]
async fn failed_attempts_are_retried_with_the_same_signed_body() {
    let env = Env::start(Dialect::OpenApi).await;
    let receiver = Receiver::start(&[503, 404]).await;
    let secret = register(&env, &env.x.api_key, &receiver.url, &["status.updated"]).await;
    let id = seeded(&env.x, "business", "IN_PROGRESS");
    assert_eq!(patch(&env, id, "APPROVED").await.status, 200);

    let delivery = eventually("a delivered webhook", || {
        env.sandbox
            .webhook_deliveries()
            .into_iter()
            .find(|d| d.outcome == DeliveryOutcome::Delivered)
    })
    .await;
    assert_eq!((delivery.attempts, delivery.last_status), (3, Some(200)));
    let received = receiver.received();
    assert_eq!(received.len(), 3);
    for (headers, raw) in &received {
        let body = verify(&secret, headers, raw);
        assert_eq!(body["status"], "APPROVED");
        assert_eq!(body["session_kind"], "business");
        assert_eq!(body["business_session_id"], id.to_string());
        assert_eq!(body["decision"]["session_kind"], "business");
        assert!(body["decision"]["registry_checks"].is_array());
        assert_eq!(raw, &received[0].1, "retries resend the same body");
        assert_eq!(
            header(headers, "x-signature-v2"),
            header(&received[0].0, "x-signature-v2")
        );
    }
}

#[tokio::test]
async fn unreachable_destinations_fail_after_a_bounded_number_of_attempts() {
    let env = Env::start(Dialect::Seeds).await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/gone", closed.local_addr().expect("addr"));
    drop(closed);
    register(&env, &env.x.api_key, &url, &["status.updated"]).await;
    // A 400 is an answer: not retried.
    let rejecting = Receiver::start(&[400]).await;
    register(&env, &env.x.api_key, &rejecting.url, &["status.updated"]).await;
    assert_eq!(
        patch(&env, seeded(&env.x, "user", "In Progress"), "Declined")
            .await
            .status,
        200
    );

    let settled = eventually("both deliveries settled", || {
        let all = env.sandbox.webhook_deliveries();
        all.iter()
            .all(|d| d.outcome != DeliveryOutcome::Pending)
            .then_some(all)
    })
    .await;
    let failed = settled
        .iter()
        .find(|d| d.destination == url)
        .expect("failed delivery");
    assert_eq!(
        (failed.outcome, failed.attempts, failed.last_status),
        (DeliveryOutcome::Failed, 4, None)
    );
    let rejected = settled
        .iter()
        .find(|d| d.destination == rejecting.url)
        .expect("rejected delivery");
    assert_eq!(
        (rejected.outcome, rejected.attempts, rejected.last_status),
        (DeliveryOutcome::Rejected, 1, Some(400))
    );
    let listed = deliveries(&env).await;
    assert!(listed.iter().any(|d| d["destination"] == url.as_str()
        && d["last_status"].is_null()
        && d["outcome"] == "failed"));
}

#[tokio::test]
async fn destinations_from_the_handle_subscribe_to_session_events() {
    let env = Env::start(Dialect::Seeds).await;
    let receiver = Receiver::start(&[]).await;
    let x = env.x.application_id;
    assert_eq!(
        env.sandbox
            .add_webhook_destination(Uuid::nil(), &receiver.url, "s"),
        Err(DestinationError::UnknownApplication)
    );
    assert_eq!(
        env.sandbox.add_webhook_destination(x, "ftp://nope", "s"),
        Err(DestinationError::InvalidUrl)
    );
    assert_eq!(
        env.sandbox.add_webhook_destination(x, &receiver.url, ""),
        Err(DestinationError::EmptySecret)
    );
    let uuid = env
        .sandbox
        .add_webhook_destination(x, &receiver.url, "demo-secret")
        .expect("destination");
    let listed = env
        .admin(Method::GET, "/_sandbox/webhook-destinations", None)
        .await;
    assert!(
        listed
            .body
            .as_array()
            .expect("array")
            .iter()
            .any(|d| d["uuid"] == uuid.to_string()
                && d["subscribed_events"] == json!(["status.updated", "data.updated"]))
    );
    // A data-only destination is not told of status changes.
    let data_only = Receiver::start(&[]).await;
    let data_secret = register(&env, &env.x.api_key, &data_only.url, &["data.updated"]).await;

    let id = seeded(&env.x, "user", "Approved");
    assert_eq!(patch(&env, id, "Kyc Expired").await.status, 200);
    let fired = env
        .admin(
            Method::POST,
            &format!("/_sandbox/sessions/{id}/webhooks"),
            Some(json!({"webhook_type": "data.updated"})),
        )
        .await;
    assert_eq!(
        (fired.status, &fired.body),
        (202, &json!({"deliveries": 2}))
    );

    let received = eventually("three deliveries", || {
        let all = receiver.received();
        (all.len() == 2 && data_only.received().len() == 1).then_some(all)
    })
    .await;
    let mut types: Vec<String> = received
        .iter()
        .map(|(h, raw)| {
            verify("demo-secret", h, raw)["webhook_type"]
                .as_str()
                .expect("type")
                .to_owned()
        })
        .collect();
    types.sort();
    assert_eq!(types, ["data.updated", "status.updated"]);
    let (h, raw) = &data_only.received()[0];
    let body = verify(&data_secret, h, raw);
    assert_eq!(
        (body["webhook_type"].as_str(), body["status"].as_str()),
        (Some("data.updated"), Some("Kyc Expired"))
    );
    assert!(
        body.get("decision").is_none(),
        "no decision for an unfinished status"
    );
}

#[tokio::test]
async fn status_changes_are_validated_for_the_sessions_kind() {
    let env = Env::start(Dialect::Seeds).await;
    let kyb = seeded(&env.x, "business", "APPROVED");
    let wrong = patch(&env, kyb, "Approved").await;
    assert_eq!(wrong.status, 400);
    let detail = wrong.body["detail"].as_str().expect("detail");
    assert!(detail.contains("NOT_STARTED, IN_PROGRESS"), "{detail}");
    assert_eq!(
        patch(&env, Uuid::from_u128(1), "Approved").await.status,
        404
    );
    assert_eq!(patch(&env, "not-a-uuid", "Approved").await.status, 404);
    let extra = env
        .admin(
            Method::PATCH,
            &format!("/_sandbox/sessions/{kyb}"),
            Some(json!({"status": "DECLINED", "x": 1})),
        )
        .await;
    assert_eq!(extra.status, 400);
    // A change is visible to the v3 reads, and unfinished sessions can no longer be shared.
    assert_eq!(
        patch(&env, kyb, "IN_PROGRESS").await.body["session"]["status"],
        "IN_PROGRESS"
    );
    let read = env
        .get(
            &format!("/v3/session/{kyb}/decision/"),
            Some(&env.x.api_key),
        )
        .await;
    assert_eq!(read.body["status"], "IN_PROGRESS");
    assert_eq!(
        env.list(&env.x.api_key, "status=IN_PROGRESS&session_kind=business")
            .await["count"],
        2
    );
    assert_eq!(env.share_to_y(kyb).await.status, 400);
    assert!(
        deliveries(&env).await.is_empty(),
        "no destinations, no deliveries"
    );
}
