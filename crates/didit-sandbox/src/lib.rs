//! A faithful local stand-in for Didit's v3 share/import REST API, for
//! development, demos and tests: the same paths, headers, bodies, statuses
//! and enums as Didit, in two dialects (the seeds' status codes or the
//! published OpenAPI spec's), plus `/_sandbox/` admin endpoints to seed
//! sessions, inject faults, move the clock and read stats.
//!
//! # Layout
//! - this file: [`Sandbox`] (start/stop handle) and its configuration.
//! - `router`: shared state and the router; `api`: the v3 endpoints and
//!   their pipeline; `control`: the `/_sandbox/` admin endpoints.
//! - `store`: applications, keys, sessions, the one-time import ledger.
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
mod clock;
mod control;
mod demo;
mod faults;
mod fixtures;
mod input;
mod model;
mod ratelimit;
mod router;
mod stats;
mod store;
mod token;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use router::Shared;

pub use demo::{DemoApplication, SeededSession, Workflows, demo_applications};
pub use stats::Stats;

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

    /// Graceful shutdown: stops accepting, lets in-flight requests finish,
    /// waits for the server task.
    pub async fn stop(mut self) {
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
