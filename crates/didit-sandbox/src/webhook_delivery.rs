//! Signed webhook deliveries, as Didit makes them: a session event of an
//! application is posted to each of its destinations subscribed to the
//! event's type, from a background task, with `X-Signature` (HMAC-SHA256
//! of the raw body), `X-Signature-V2` (of its canonical JSON),
//! `X-Signature-Simple` (of `"{timestamp}:{session_id}:{status}:{webhook_type}"`)
//! and `X-Timestamp`, all hex and keyed with the destination's
//! `secret_shared_key`. A 5xx, a 404, a connection error or a timeout is
//! retried a few times with doubling delays; every delivery is logged for
//! `GET /_sandbox/webhooks`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use tokio::task::AbortHandle;
use uuid::Uuid;

use super::canonical_json::{canonical, python_dumps};
use super::model::{SessionKind, Status};
use super::router::Shared;
use super::session::Session;
use super::store::WebhookDestination;

/// A session's status changed (or a session was created by an import).
pub(crate) const STATUS_UPDATED: &str = "status.updated";
/// A session's data changed.
pub(crate) const DATA_UPDATED: &str = "data.updated";
/// The session event types a destination can subscribe to.
pub(crate) const SESSION_EVENTS: [&str; 2] = [STATUS_UPDATED, DATA_UPDATED];

/// Attempts per delivery (the first one included).
const MAX_ATTEMPTS: u32 = 4;
/// The wait before the first retry; doubled before each next one.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
/// How long one attempt may take, connection included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Deliveries kept for `GET /_sandbox/webhooks` (the oldest go first).
const LOG_CAPACITY: usize = 10_000;

/// One delivery: an event posted (or being posted) to one destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// The destination's URL.
    pub destination: String,
    /// The destination's `uuid`.
    pub destination_uuid: Uuid,
    /// `status.updated`, `data.updated`.
    pub webhook_type: String,
    pub session_id: Uuid,
    /// Attempts made so far.
    pub attempts: u32,
    /// The HTTP status of the last attempt; `None` before the first answer
    /// or when the last attempt got none (connection error, timeout).
    pub last_status: Option<u16>,
    /// Where it stands.
    pub outcome: DeliveryOutcome,
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryOutcome {
    /// Still being attempted.
    Pending,
    /// A 2xx answer (3xx and 4xx other than 404 also end it: not retried).
    Delivered,
    /// Answered with a status that is not 2xx and not retried.
    Rejected,
    /// Every attempt failed with a retried error.
    Failed,
}

/// The delivery machinery of one sandbox.
pub(crate) struct Deliveries {
    client: reqwest::Client,
    log: Mutex<VecDeque<Arc<Mutex<WebhookDelivery>>>>,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Deliveries {
    pub(crate) fn new() -> std::io::Result<Deliveries> {
        // reqwest needs a process-wide rustls provider even for plain http.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Deliveries {
            client,
            log: Mutex::new(VecDeque::new()),
            tasks: Mutex::new(Vec::new()),
        })
    }

    /// Every delivery still in the log, oldest first.
    pub(crate) fn list(&self) -> Vec<WebhookDelivery> {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.iter()
            .map(|d| d.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .collect()
    }

    /// Stops every delivery still running (the sandbox is stopping).
    pub(crate) fn abort_all(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for task in tasks {
            task.abort();
        }
    }

    fn record(&self, delivery: WebhookDelivery) -> Arc<Mutex<WebhookDelivery>> {
        let entry = Arc::new(Mutex::new(delivery));
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        if log.len() >= LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(Arc::clone(&entry));
        entry
    }
}

/// Fires `webhook_type` for `session` to the subscribed destinations of
/// its application; returns how many deliveries were started. Never
/// waits: each delivery runs in its own task.
pub(crate) fn notify(s: &Shared, session: &Session, webhook_type: &str) -> usize {
    let destinations = s.store.subscribers(session.application_id, webhook_type);
    if destinations.is_empty() {
        return 0;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no tokio runtime: webhook deliveries skipped");
        return 0;
    };
    let timestamp = s.clock.now_secs();
    let body = payload(session, webhook_type, timestamp);
    let raw = python_dumps(&body);
    let canonical = canonical(&body);
    let simple = format!(
        "{timestamp}:{}:{}:{webhook_type}",
        session.id,
        session.status_label()
    );
    let mut started = 0;
    for destination in destinations {
        let entry = s.webhooks.record(WebhookDelivery {
            destination: destination.url.clone(),
            destination_uuid: destination.uuid,
            webhook_type: webhook_type.to_owned(),
            session_id: session.id,
            attempts: 0,
            last_status: None,
            outcome: DeliveryOutcome::Pending,
        });
        let request = SignedRequest {
            headers: signatures(&destination, &raw, &canonical, &simple, timestamp),
            url: destination.url,
            body: raw.clone(),
        };
        let task = runtime.spawn(deliver(s.webhooks.client.clone(), request, entry));
        let mut tasks = s
            .webhooks
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task.abort_handle());
        started += 1;
    }
    tracing::debug!(
        webhook_type,
        deliveries = started,
        "webhook deliveries started"
    );
    started
}

/// Statuses whose webhooks carry the full `decision`.
fn has_decision(status: Status) -> bool {
    matches!(
        status,
        Status::Approved | Status::Declined | Status::InReview | Status::Abandoned
    )
}

/// The body Didit posts: `session_id`, `status`, `webhook_type`,
/// `created_at` and `timestamp` (Unix seconds), `workflow_id`,
/// `vendor_data` when set, `session_kind` and `business_session_id` for
/// KYB, `decision` (the decision body) once the status is final or
/// abandoned.
pub(crate) fn payload(session: &Session, webhook_type: &str, timestamp: i64) -> Value {
    let mut body = Map::new();
    body.insert("session_id".into(), json!(session.id));
    body.insert("status".into(), json!(session.status_label()));
    body.insert("webhook_type".into(), json!(webhook_type));
    body.insert("created_at".into(), json!(timestamp));
    body.insert("timestamp".into(), json!(timestamp));
    body.insert("workflow_id".into(), json!(session.workflow_id));
    if let Some(vendor_data) = session.vendor_data() {
        body.insert("vendor_data".into(), json!(vendor_data));
    }
    if session.kind == SessionKind::Business {
        body.insert("session_kind".into(), json!(session.kind));
        body.insert("business_session_id".into(), json!(session.id));
    }
    if has_decision(session.status)
        && let Ok(decision) = serde_json::from_str::<Value>(&session.render())
    {
        body.insert("decision".into(), decision);
    }
    Value::Object(body)
}

type HmacSha256 = Hmac<Sha256>;

/// Hex HMAC-SHA256 of `message` keyed with `secret`'s bytes.
fn sign(secret: &str, message: &str) -> String {
    match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(message.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        // HMAC takes keys of any length.
        Err(_) => String::new(),
    }
}

fn signatures(
    destination: &WebhookDestination,
    raw: &str,
    canonical: &str,
    simple: &str,
    timestamp: i64,
) -> Vec<(&'static str, String)> {
    let secret = destination.secret_shared_key.as_str();
    vec![
        ("x-signature", sign(secret, raw)),
        ("x-signature-v2", sign(secret, canonical)),
        ("x-signature-simple", sign(secret, simple)),
        ("x-timestamp", timestamp.to_string()),
    ]
}

/// One destination's copy of an event, ready to post.
struct SignedRequest {
    url: String,
    body: String,
    headers: Vec<(&'static str, String)>,
}

/// Whether an answer (or its absence) is worth another attempt: Didit
/// retries on 5xx and 404, and on connection errors and timeouts.
fn retried(status: Option<u16>) -> bool {
    status.is_none_or(|s| s >= 500 || s == 404)
}

async fn deliver(
    client: reqwest::Client,
    request: SignedRequest,
    entry: Arc<Mutex<WebhookDelivery>>,
) {
    let mut delay = FIRST_RETRY_DELAY;
    for attempt in 1..=MAX_ATTEMPTS {
        let mut post = client
            .post(&request.url)
            .header("content-type", "application/json")
            .body(request.body.clone());
        for (name, value) in &request.headers {
            post = post.header(*name, value);
        }
        let status = post.send().await.ok().map(|r| r.status().as_u16());
        let again = retried(status) && attempt < MAX_ATTEMPTS;
        {
            let mut d = entry.lock().unwrap_or_else(PoisonError::into_inner);
            d.attempts = attempt;
            d.last_status = status;
            d.outcome = match status {
                _ if again => DeliveryOutcome::Pending,
                Some(s) if (200..300).contains(&s) => DeliveryOutcome::Delivered,
                Some(s) if !retried(Some(s)) => DeliveryOutcome::Rejected,
                _ => DeliveryOutcome::Failed,
            };
        }
        if !again {
            return;
        }
        tokio::time::sleep(delay).await;
        delay = delay.saturating_mul(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_a_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn retries_on_5xx_404_and_no_answer_only() {
        for s in [None, Some(500), Some(503), Some(404)] {
            assert!(retried(s), "{s:?}");
        }
        for s in [
            Some(200),
            Some(204),
            Some(301),
            Some(400),
            Some(401),
            Some(429),
        ] {
            assert!(!retried(s), "{s:?}");
        }
    }

    #[test]
    fn payload_fields_per_kind_and_status() {
        let user = Session::new(
            Uuid::from_u128(5),
            Uuid::from_u128(1),
            SessionKind::User,
            Status::InProgress,
            "wf_u",
            0,
        );
        let body = payload(&user, STATUS_UPDATED, 1_700_000_000);
        assert_eq!(body["status"], "In Progress");
        assert_eq!(body["timestamp"], 1_700_000_000);
        assert_eq!(body["workflow_id"], "wf_u");
        assert!(body.get("decision").is_none());
        assert!(body.get("session_kind").is_none());
        let mut business = user.clone();
        business.kind = SessionKind::Business;
        business.status = Status::Approved;
        let body = payload(&business, DATA_UPDATED, 1);
        assert_eq!(body["status"], "APPROVED");
        assert_eq!(body["session_kind"], "business");
        assert_eq!(body["business_session_id"], body["session_id"]);
        assert_eq!(body["decision"]["session_id"], body["session_id"]);
    }
}
