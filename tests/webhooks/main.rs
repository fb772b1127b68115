//! The webhook ingress and the session event log, end to end: Didit's
//! signatures (vectors computed outside Rust), the ingress answers, and
//! subscribers reading the memory log while deliveries arrive over HTTP.

#[path = "../support/captured.rs"]
mod captured;
mod delivery;
mod signatures;
mod streams;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

pub use captured::Captured;
use didit_share_gateway::webhooks::ingress::{self, Ingress};
use didit_share_gateway::webhooks::memory::MemoryLimits;
use didit_share_gateway::webhooks::{
    EventLog, ManualClock, MemoryEventLog, WebhookSecret, WebhooksConfig,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::net::TcpListener;

/// Request headers as (name, value) pairs.
pub type Headers = Vec<(&'static str, String)>;

/// The instant every test runs at (unix seconds).
pub const NOW: u64 = 1_700_000_000;
/// The secret the signature vectors were computed with.
pub const SECRET: &str = "whsec_test_secret";

/// An ingress on `127.0.0.1:0` over a memory log, with a manual clock.
pub struct Harness {
    /// `http://127.0.0.1:port`.
    pub base: String,
    /// The log behind the ingress, to subscribe to and inspect.
    pub log: Arc<MemoryEventLog>,
    /// The clock of both.
    pub clock: ManualClock,
    /// A client for the posts.
    pub http: reqwest::Client,
    /// Stops the server when dropped.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Harness {
    /// Tenants `tenant-a`, `tenant-b`, `tenant-c`, all with [`SECRET`].
    pub async fn start() -> Self {
        Self::with(MemoryLimits::from(&WebhooksConfig::default()), false).await
    }

    /// Like [`Harness::start`] with these limits and simple-signature setting.
    pub async fn with(limits: MemoryLimits, accept_simple: bool) -> Self {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(NOW));
        let log = Arc::new(MemoryEventLog::new(limits, Arc::new(clock.clone())));
        let base = Self::serve(log.clone(), clock.clone(), accept_simple).await;
        Self {
            base: base.0,
            log,
            clock,
            http: client(),
            _stop: base.1,
        }
    }

    /// Serves an ingress over `log`; returns its base URL and its stop switch.
    pub async fn serve(
        log: Arc<dyn EventLog>,
        clock: ManualClock,
        accept_simple: bool,
    ) -> (String, tokio::sync::oneshot::Sender<()>) {
        logs();
        let secrets: HashMap<String, Arc<WebhookSecret>> = ["tenant-a", "tenant-b", "tenant-c"]
            .into_iter()
            .map(|t| (t.to_owned(), Arc::new(WebhookSecret::new(SECRET.into()))))
            .collect();
        let ingress = Ingress {
            secrets: Arc::new(secrets),
            log,
            accept_simple_signature: accept_simple,
            clock: Arc::new(clock),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(ingress::serve(listener, ingress, async {
            let _ = stopped.await;
        }));
        (format!("http://{addr}"), stop)
    }

    /// POSTs `body` for `tenant` with `headers`; returns status and body.
    pub async fn post(
        &self,
        tenant: &str,
        body: impl Into<Vec<u8>>,
        headers: &[(&str, String)],
    ) -> (u16, String) {
        post(&self.http, &self.base, tenant, body.into(), headers).await
    }
}

/// An HTTP client (reqwest needs rustls' provider installed even for http).
pub fn client() -> reqwest::Client {
    didit_share_gateway::install_crypto_provider();
    reqwest::Client::new()
}

/// POSTs a delivery to `base`.
pub async fn post(
    http: &reqwest::Client,
    base: &str,
    tenant: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> (u16, String) {
    let mut request = http
        .post(format!("{base}/webhooks/didit/{tenant}"))
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Hex HMAC-SHA256, computed here rather than by the crate under test.
pub fn hmac_hex(secret: &str, message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// `X-Timestamp` and an `X-Signature` over the raw body, as Didit sends.
pub fn raw_signed(body: &[u8], timestamp: u64) -> Headers {
    vec![
        ("x-timestamp", timestamp.to_string()),
        ("x-signature", hmac_hex(SECRET, body)),
    ]
}

/// A compact `status.updated` body for `session_id`.
pub fn status_body(session_id: &str, status: &str, seq: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "webhook_type": "status.updated",
        "session_id": session_id,
        "status": status,
        "vendor_data": format!("user-{seq}"),
        "created_at": NOW,
        "timestamp": NOW,
    }))
    .unwrap()
}

/// The process-wide log capture, installed before any ingress serves (a
/// global subscriber: a thread-scoped one misses lines when tests running
/// in parallel register the same callsites first).
pub fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_env_filter("didit_share_gateway=debug,warn")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        captured
    })
}
