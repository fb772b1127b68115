//! A faithful local stand-in for Didit's v3 share/import REST API, for
//! development, demos and tests: the same paths, headers, bodies, statuses
//! and enums as Didit, in two dialects (the seeds' status codes or the
//! published OpenAPI spec's), plus `/_sandbox/` admin endpoints to seed
//! sessions, inject faults, move the clock and read stats.
//!
//! # Layout
//! - this file: [`Sandbox`] (start/stop handle) and its configuration.
//! - `router`: shared state and the router; `api`: the v3 write endpoints
//!   and the pipeline of every v3 call; `sessions_api`: the v3 reads (list,
//!   decision); `control`: the `/_sandbox/` admin endpoints.
//! - `store`: applications, keys, sessions, the one-time import ledger;
//!   `session`: a session and its decision-body and list-row shapes.
//! - `webhook_delivery`: signed, retried webhook deliveries;
//!   `canonical_json`: the JSON texts they are signed over.
//! - `demo`: the fixed demo applications and seeded sessions;
//!   `fixtures`: their check arrays; `model`: kinds and statuses.
//! - `token`: HS256 share tokens; `clock`: the movable sandbox clock.
//! - `input`: DRF-style body parsing; `api_error`: every refusal, mapped per dialect.
//! - `faults`: fault injection; `ratelimit`: the write rate limit;
//!   `stats`: call counters.
//!
//! The `didit-sandbox` binary (`src/main.rs`) serves it alone; the gateway's
//! `--sandbox` mode runs it in-process.
#![forbid(unsafe_code)]

mod api;
mod api_error;
mod canonical_json;
mod clock;
mod control;
mod demo;
mod faults;
mod fixtures;
mod input;
mod model;
mod ratelimit;
mod router;
mod session;
mod sessions_api;
mod stats;
mod store;
mod token;
mod webhook_delivery;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

use router::Shared;

pub use demo::{DemoApplication, SeededSession, Workflows, demo_applications};
pub use stats::Stats;
pub use webhook_delivery::{DeliveryOutcome, WebhookDelivery};

/// Which description of Didit's API the sandbox follows where the two
/// disagree (see this crate's `README.md`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Dialect {
    /// The status codes of the seeds' integration prompt (share 201,
    /// import token errors 401/403/404).
    #[default]
    #[value(name = "seeds")]
    Seeds,
    /// Didit's published OpenAPI v3 (share 200, import token errors 400
    /// keyed by `share_token`).
    #[value(name = "openapi")]
    OpenApi,
}

/// How to run a sandbox.
#[derive(Clone, Debug, Default)]
pub struct SandboxConfig {
    pub dialect: Dialect,
    /// Per-API-key write rate limit on the v3 POST endpoints; `None` = none.
    pub rate_limit: Option<RateLimit>,
}

/// A sliding-window write limit per API key.
#[derive(Clone, Copy, Debug)]
pub struct RateLimit {
    /// Writes allowed per window.
    pub max_writes: u32,
    /// The window length.
    pub window: Duration,
}

impl Default for RateLimit {
    /// Didit's: 300 writes per 60 s.
    fn default() -> RateLimit {
        RateLimit {
            max_writes: 300,
            window: Duration::from_secs(60),
        }
    }
}

/// Why [`Sandbox::add_webhook_destination`] refused a destination.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    /// No such application in this sandbox.
    #[error("application does not exist")]
    UnknownApplication,
    /// Not an absolute http(s) URL with a host.
    #[error("not an absolute http(s) URL")]
    InvalidUrl,
    /// The signing secret is empty.
    #[error("the webhook secret is empty")]
    EmptySecret,
}

/// A running sandbox. Dropping it also shuts the server down (without
/// waiting); [`Sandbox::stop`] waits.
pub struct Sandbox {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Fires graceful shutdown; `None` once used.
    shutdown: Option<oneshot::Sender<()>>,
    /// The server task; `None` once awaited.
    task: Option<JoinHandle<()>>,
}

impl Sandbox {
    /// Serves on an already-bound listener (tests bind 127.0.0.1:0).
    pub async fn start(listener: TcpListener, config: SandboxConfig) -> std::io::Result<Sandbox> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(&config)?);
        let app = router::router(Arc::clone(&shared));
        let (shutdown, stopped) = oneshot::channel::<()>();
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            // Small request/response pairs: do not wait for Nagle.
            let _ = tcp.set_nodelay(true);
        });
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            // A send or a dropped handle both mean stop.
            let _ = stopped.await;
        });
        let task = tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "sandbox server stopped with an error");
            }
        });
        tracing::info!(%addr, dialect = ?config.dialect, rate_limit = config.rate_limit.is_some(), "didit sandbox listening");
        Ok(Sandbox {
            addr,
            shared,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// `http://IP:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The same numbers as `GET /_sandbox/stats`.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Registers a webhook destination for `application_id`, as
    /// `POST /v3/webhook/destinations/` does, but with a secret of the
    /// caller's choosing (the gateway's `--sandbox` mode points the demo
    /// applications at its own webhook listener this way). It subscribes
    /// to `status.updated` and `data.updated`. Returns its `uuid`.
    pub fn add_webhook_destination(
        &self,
        application_id: Uuid,
        url: &str,
        secret: &str,
    ) -> Result<Uuid, DestinationError> {
        if self.shared.store.application(application_id).is_none() {
            return Err(DestinationError::UnknownApplication);
        }
        if !api::is_web_url(url) {
            return Err(DestinationError::InvalidUrl);
        }
        if secret.is_empty() {
            return Err(DestinationError::EmptySecret);
        }
        let uuid = model::fresh_uuid();
        self.shared.store.add_webhook(store::WebhookDestination {
            uuid,
            application_id,
            url: url.to_owned(),
            subscribed_events: webhook_delivery::SESSION_EVENTS
                .iter()
                .map(|e| (*e).to_owned())
                .collect(),
            secret_shared_key: secret.to_owned(),
        });
        Ok(uuid)
    }

    /// The same list as `GET /_sandbox/webhooks`: every delivery so far
    /// (the newest 10,000), oldest first.
    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        self.shared.webhooks.list()
    }

    /// Graceful shutdown: stops accepting, lets in-flight requests finish,
    /// waits for the server task.
    pub async fn stop(mut self) {
        self.shared.webhooks.abort_all();
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "sandbox server task failed");
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.shared.webhooks.abort_all();
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}
