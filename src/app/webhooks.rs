//! The webhook port beside the gRPC and admin ports, when `[webhooks]` is
//! set: the event log the ingress appends to and `WatchSessionEvents`
//! reads (Redis Streams, sealed, when the state is Redis, else the memory
//! ring), and the ingress server, whose tenant secrets
//! are looked up in the live settings so a reload (SIGHUP) applies at once.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::StartError;
use crate::service::AppState;
use crate::state::StateStore;
use crate::webhooks::ingress::{self, Ingress, SecretLookup};
use crate::webhooks::memory::MemoryLimits;
use crate::webhooks::redis::RedisEventLog;
use crate::webhooks::{
    Clock, EventLog, EventLogError, MemoryEventLog, SystemClock, WebhookSecret, WebhooksConfig,
};

/// The event log for `config` beside `store`: with the Redis state, one
/// stream per tenant on the same server, prefix and sealing key, shared by
/// every replica; with the memory state, the in-process ring per tenant.
pub(super) fn event_log(
    config: &WebhooksConfig,
    store: &StateStore,
) -> Result<Arc<dyn EventLog>, EventLogError> {
    Ok(match store {
        StateStore::Redis(redis) => {
            // `{key_prefix}:events:{tenant}`, beside the state's keys.
            let share = redis.share();
            let prefix = format!("{}:", share.key_prefix);
            Arc::new(
                RedisEventLog::new(share.client, &prefix, config, share.timeout)?
                    .sealed(share.sealer),
            )
        }
        StateStore::Memory(_) => {
            let clock: Arc<dyn Clock> = Arc::new(SystemClock);
            Arc::new(MemoryEventLog::new(MemoryLimits::from(config), clock))
        }
    })
}

/// The tenants' webhook secrets, as the settings in force now hold them.
struct LiveSecrets(Arc<AppState>);

impl SecretLookup for LiveSecrets {
    fn webhook_secret(&self, tenant: &str) -> Option<Arc<WebhookSecret>> {
        self.0
            .settings()
            .tenants
            .resolve(Some(tenant))
            .ok()
            .and_then(|t| t.webhook_secret())
    }
}

/// The running webhook port.
pub(super) struct WebhookServer {
    /// The bound address (port 0 resolved).
    pub(super) addr: SocketAddr,
    /// Stops accepting and finishes the deliveries in progress.
    stop: oneshot::Sender<()>,
    /// The server.
    task: JoinHandle<std::io::Result<()>>,
}

impl WebhookServer {
    /// Binds `config.listen` and serves deliveries into `state`'s event log.
    /// `None` when the state holds no event log (no `[webhooks]`).
    pub(super) async fn start(
        config: &WebhooksConfig,
        state: &Arc<AppState>,
    ) -> Result<Option<Self>, StartError> {
        let Some(log) = state.event_log() else {
            return Ok(None);
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    listener: "webhooks",
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            listener: "webhooks",
            addr: config.listen,
            source,
        })?;
        let ingress = Ingress {
            secrets: Arc::new(LiveSecrets(Arc::clone(state))),
            log: Arc::clone(log),
            accept_simple_signature: config.accept_simple_signature,
            clock: Arc::new(SystemClock),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(ingress::serve(listener, ingress, async {
            let _ = stopped.await;
        }));
        Ok(Some(Self { addr, stop, task }))
    }

    /// Stops the port and waits for it.
    pub(super) async fn stop(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Err(err)) => tracing::warn!(error = %err, "webhook server failed"),
            Err(err) => tracing::warn!(error = %err, "webhook server task failed"),
            Ok(Ok(())) => {}
        }
    }
}
