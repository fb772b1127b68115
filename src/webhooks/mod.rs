//! Webhook ingress and the session event log: Didit POSTs signed
//! `status.updated` (and other) webhooks to `/webhooks/didit/{tenant_id}`;
//! the gateway verifies them, stores each delivery once per tenant, and
//! streams the stored events to `WatchSessionEvents` callers.
//!
//! # Layout
//! - [`config`]: the `[webhooks]` section and the per-tenant webhook secret.
//! - [`canonical`]: the canonical JSON Didit's `X-Signature-V2` covers.
//! - [`signature`]: `X-Timestamp` freshness and the three signature headers.
//! - [`event`]: the fields of a webhook body the gateway reads.
//! - [`log`]: the [`EventLog`] trait, event ids (resume cursors) and errors.
//! - [`memory`]: the in-process [`EventLog`]: a bounded ring per tenant.
//! - [`ingress`]: the axum router and server for the webhook port.
//! - [`watch`]: `WatchSessionEvents` without gRPC: request checks, the
//!   subscription, and the mapping to the proto `SessionEvent`.
//!
//! # Assembly
//!
//! Nothing here is started by [`crate::app`] yet. Serving it takes:
//!
//! ```ignore
//! config.validate()?;                                   // WebhooksConfig from [webhooks]
//! let clock: Arc<dyn Clock> = Arc::new(SystemClock);
//! let log: Arc<dyn EventLog> =
//!     Arc::new(MemoryEventLog::new(MemoryLimits::from(&config), clock.clone()));
//! let ingress = Ingress {
//!     secrets,                                          // impl SecretLookup: tenant id -> secret
//!     log: log.clone(),
//!     accept_simple_signature: config.accept_simple_signature,
//!     clock,
//! };
//! let listener = TcpListener::bind(config.listen).await?;
//! tokio::spawn(ingress::serve(listener, ingress, shutdown));
//! // and in SessionService::watch_session_events, with the same `log`:
//! watch::open(&*log, &tenant.id, WatchRequest::try_from(request)?).await?
//! ```
//!
//! Tenant ids reaching [`EventLog`] are trusted: the ingress only appends
//! for tenants its [`ingress::SecretLookup`] knows, and the gRPC layer
//! resolves `x-tenant-id` before subscribing.

pub mod canonical;
pub mod config;
pub mod event;
pub mod ingress;
pub mod log;
pub mod memory;
pub mod redis;
pub mod signature;
pub mod watch;

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

pub use config::{WebhookSecret, WebhookSecretSource, WebhooksConfig};
pub use event::WebhookEvent;
pub use log::{Appended, EventId, EventLog, EventLogError, EventStream, StoredEvent, TypeFilter};
pub use memory::MemoryEventLog;

/// The time source for freshness checks, event ids and retention, so tests
/// can move time without sleeping.
pub trait Clock: Send + Sync + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to (tests and simulations).
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<SystemTime>>);

impl ManualClock {
    /// A clock showing `at`.
    pub fn new(at: SystemTime) -> Self {
        Self(Arc::new(Mutex::new(at)))
    }

    /// Moves the clock by `by` (every clone sees it).
    pub fn advance(&self, by: std::time::Duration) {
        let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: SystemTime) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
