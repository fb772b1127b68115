//! The tonic services, one file per gRPC service: `share` (ShareService),
//! `import` (ImportService), `session` (SessionService). Each file owns its RPCs: the validation of the
//! request (`TryFrom` the proto message into the core's type), the mapping
//! of the answer, and a handler of a few lines over the core ([`Gateway`]).
//! What every call shares (tenant, caller, deadline, trace context, metrics,
//! the log line) is `call::serve`; [`AppState`] below is what it serves.
//!
//! Adding a service: a file here with its `XxxApi` built like `share.rs`,
//! a `mod` and `pub use` line below, and its `add_service` in `server.rs`.
//! The import answer's check arrays are listed once, in [`checks`];
//! `struct_wire` writes Didit's JSON as protobuf `Struct`s; `enums` maps
//! the core's session kinds and statuses onto the proto's. `answer` maps a
//! session body onto the import answer and encodes it once; ImportService
//! is served by `import_server`, a hand-written server whose codec sends
//! those bytes as they are (the other services use the generated ones).

mod answer;
mod call;
mod call_record;
pub mod checks;
mod enums;
mod import;
mod import_server;
mod session;
mod share;
mod struct_wire;

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::auth::AuthPolicy;
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use crate::tenant::Tenants;
use crate::webhooks::EventLog;

pub use answer::EncodedAnswer;
pub(crate) use answer::SessionAnswer;
pub use call::code_name;
pub use import::ImportApi;
pub use import_server::ImportServer;
pub use session::SessionApi;
pub use share::ShareApi;

/// What every call needs, shared by both services.
pub struct AppState {
    /// The core.
    pub gateway: Gateway,
    /// The metrics registry.
    pub metrics: Metrics,
    /// Tenants and caller policy; replaced as a whole on a config reload.
    settings: ArcSwap<Settings>,
    /// The tenants' session events (webhooks received), when `[webhooks]`
    /// is configured.
    events: Option<Arc<dyn EventLog>>,
    /// Cancelled when the drain ends the open `WatchSessionEvents` streams.
    streams_end: CancellationToken,
}

/// The part of the configuration a reload (SIGHUP) replaces atomically.
pub struct Settings {
    /// The configured tenants and their keys.
    pub tenants: Tenants,
    /// How callers are identified.
    pub auth: AuthPolicy,
    /// Whether each call writes its audit event.
    pub audit: crate::audit::AuditConfig,
}

impl AppState {
    /// State serving `settings`.
    pub fn new(gateway: Gateway, metrics: Metrics, settings: Settings) -> Self {
        Self {
            gateway,
            metrics,
            settings: ArcSwap::from_pointee(settings),
            events: None,
            streams_end: CancellationToken::new(),
        }
    }

    /// The same state, holding `log` for the webhook port and
    /// `WatchSessionEvents`.
    pub fn with_event_log(mut self, log: Arc<dyn EventLog>) -> Self {
        self.events = Some(log);
        self
    }

    /// The session event log, if webhooks are received.
    pub fn event_log(&self) -> Option<&Arc<dyn EventLog>> {
        self.events.as_ref()
    }

    /// Ends every open `WatchSessionEvents` stream with UNAVAILABLE
    /// `SHUTTING_DOWN` and refuses new ones (the drain).
    pub fn end_streams(&self) {
        self.streams_end.cancel();
    }

    /// The settings in force now; a call keeps the ones it started with.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// Installs new settings for every call from now on.
    pub fn replace_settings(&self, settings: Settings) {
        self.settings.store(Arc::new(settings));
    }
}
