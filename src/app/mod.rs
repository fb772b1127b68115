//! The one assembly of a running gateway, used by the binary, the tests and
//! the benchmark alike: [`start`] validates a [`Config`], builds the state,
//! binds the gRPC and admin listeners, starts both servers, the API key
//! watcher and (if asked) the SIGHUP reload, and returns a [`Running`]
//! handle whose [`shutdown`](Running::shutdown) drains it.

mod build;
mod reload;
mod webhooks;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::admin_http::{self, AdminState};
use crate::config::{AuthConfig, Config, ConfigError, Overrides};
use crate::grpc::{self, ServeError};
use crate::metrics::Metrics;
use crate::service::AppState;
use crate::state::StateStore;

#[cfg(feature = "sandbox")]
pub use build::{register_sandbox_webhooks, sandbox_config, sandbox_webhooks};
pub use reload::Reloaded;
use reload::Reloader;
use webhooks::WebhookServer;

/// Why the gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config or a file it references is invalid (the binary exits 64).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The HTTP client could not be built (TLS initialisation; exits 64).
    #[error("cannot build the upstream HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// A listener could not be bound (the binary exits 69).
    #[error("cannot bind {listener} on {addr}: {source}")]
    Bind {
        /// `gRPC`, `admin` or `webhooks`.
        listener: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// How [`start`] runs a config, beyond what the config says.
#[derive(Clone, Default)]
pub struct StartOptions {
    /// Command-line addresses, put into the config now and into every
    /// reloaded file.
    pub overrides: Overrides,
    /// Re-read the config file on SIGHUP (the binary with `--config`).
    /// [`Running::reload`] works either way.
    pub reload_on_sighup: bool,
    /// Pause between NOT_SERVING and closing the gRPC listener, so that
    /// load balancers stop routing here first. Default: a quarter of
    /// `server.shutdown_grace`, at most 1 s. Tests shorten it.
    pub drain_delay: Option<Duration>,
    /// The shared state to use (tenants' Didit budgets); `None`: an
    /// in-process store. Tests pass a Redis store shared by several
    /// gateways.
    pub state_store: Option<StateStore>,
}

impl std::fmt::Debug for StartOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let store = match &self.state_store {
            None => "default",
            Some(StateStore::Memory(_)) => "memory",
            Some(StateStore::Redis(_)) => "redis",
        };
        f.debug_struct("StartOptions")
            .field("overrides", &self.overrides)
            .field("reload_on_sighup", &self.reload_on_sighup)
            .field("drain_delay", &self.drain_delay)
            .field("state_store", &store)
            .finish()
    }
}

/// A started gateway. Drop it and it drains in the background; call
/// [`shutdown`](Self::shutdown) to wait for the drain.
pub struct Running {
    /// The bound gRPC address (port 0 resolved).
    pub grpc_addr: SocketAddr,
    /// The bound admin address (port 0 resolved).
    pub admin_addr: SocketAddr,
    /// The bound webhook address, when `[webhooks]` is set.
    pub webhooks_addr: Option<SocketAddr>,
    /// The state every call shares (tenants, metrics, the core).
    pub state: Arc<AppState>,
    /// The config in force, and how to replace it.
    reloader: Arc<Reloader>,
    /// Resolves the gRPC server's shutdown future: the drain begins.
    stop: oneshot::Sender<()>,
    /// The gRPC server, done when the drain is.
    grpc: JoinHandle<Result<(), ServeError>>,
    /// Stops the admin port, which stays up for the whole drain.
    stop_admin: oneshot::Sender<()>,
    /// The admin server.
    admin: JoinHandle<std::io::Result<()>>,
    /// The webhook port, stopped with the admin port after the drain.
    webhooks: Option<WebhookServer>,
    /// The key watcher and the SIGHUP reload, aborted when this goes.
    background: Background,
}

/// Starts `config`: validation, state, listeners on `server.listen` and
/// `server.admin_listen` (port 0 picks a free one), both servers, the key
/// watcher. Logs the one "listening" line.
pub async fn start(mut config: Config, options: StartOptions) -> Result<Running, StartError> {
    options.overrides.apply(&mut config);
    config.validate()?;
    let metrics = Metrics::new();
    // A store handed in by the caller (tests sharing one between replicas),
    // else the one `[state]` names.
    let store = match options.state_store.clone() {
        Some(store) => store,
        None => build::store(&config, &metrics).await?,
    };
    let (state, serve_options) = build::state(&config, store, metrics, options.drain_delay)?;
    let grpc_listener = bind("gRPC", config.server.listen).await?;
    let admin_listener = bind("admin", config.server.admin_listen).await?;
    let grpc_addr = local_addr("gRPC", &grpc_listener, config.server.listen)?;
    let admin_addr = local_addr("admin", &admin_listener, config.server.admin_listen)?;
    let webhooks = match &config.webhooks {
        Some(webhooks) => WebhookServer::start(webhooks, &state).await?,
        None => None,
    };
    let webhooks_addr = webhooks.as_ref().map(|w| w.addr);
    tracing::info!(
        grpc = %grpc_addr,
        admin = %admin_addr,
        webhooks = %webhooks_addr.map_or_else(|| "off".to_owned(), |a| a.to_string()),
        upstream = %config.upstream.base_url,
        tenants = config.tenants.len(),
        "didit-share-gateway listening"
    );
    warn_tenants_without_policy(&config);
    if config.auth == AuthConfig::None {
        tracing::warn!(
            "auth mode none: any caller that can reach this port may act for any tenant"
        );
    }

    // Ready only once the gRPC server is up; the admin port reports it.
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_admin, admin_stopped) = oneshot::channel::<()>();
    let admin_state = AdminState {
        metrics: state.metrics.clone(),
        ready: Arc::clone(&ready),
        store: state.gateway.store().clone(),
    };
    let admin = tokio::spawn(admin_http::serve(admin_listener, admin_state, async {
        let _ = admin_stopped.await;
    }));
    let (stop, stopped) = oneshot::channel::<()>();
    let grpc = tokio::spawn(grpc::serve(
        grpc_listener,
        Arc::clone(&state),
        serve_options,
        ready,
        async {
            let _ = stopped.await;
        },
    ));

    let mut background = vec![crate::secrets::spawn_key_watcher(
        &state,
        config.server.key_reload_interval,
    )];
    let reloader = Arc::new(Reloader::new(Arc::clone(&state), config, options.overrides));
    if options.reload_on_sighup {
        background.push(tokio::spawn(reload::on_sighup(Arc::clone(&reloader))));
    }
    Ok(Running {
        grpc_addr,
        admin_addr,
        webhooks_addr,
        state,
        reloader,
        stop,
        grpc,
        stop_admin,
        admin,
        webhooks,
        background: Background(background),
    })
}

impl Running {
    /// A copy of the config in force (the last one reloaded).
    pub fn config(&self) -> Config {
        self.reloader.running()
    }

    /// Re-reads the config file the gateway runs with, as SIGHUP does.
    pub fn reload(&self) -> Result<Reloaded, ConfigError> {
        self.reloader.reload()
    }

    /// Reads `path` and applies it as a reload; later reloads re-read `path`.
    pub fn reload_from(&self, path: &Path) -> Result<Reloaded, ConfigError> {
        self.reloader.reload_from(path)
    }

    /// Begins the drain now (health NOT_SERVING, a pause, stop accepting,
    /// finish in-flight calls and detached imports within
    /// `server.shutdown_grace`); the future resolves when the drain is over
    /// and the admin port is closed.
    pub fn shutdown(self) -> impl Future<Output = Result<(), ServeError>> + Send + 'static {
        let Self {
            stop,
            grpc,
            stop_admin,
            admin,
            webhooks,
            background,
            ..
        } = self;
        let _ = stop.send(());
        async move {
            let result = joined(grpc.await);
            finish(stop_admin, admin, webhooks, background, result).await
        }
    }

    /// Serves until `signal` resolves, then drains as
    /// [`shutdown`](Self::shutdown) does. Returns early with the error if
    /// the gRPC server fails on its own.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Result<(), ServeError> {
        let failed = tokio::select! {
            () = signal => None,
            result = &mut self.grpc => Some(joined(result)),
        };
        match failed {
            None => self.shutdown().await,
            Some(result) => {
                finish(
                    self.stop_admin,
                    self.admin,
                    self.webhooks,
                    self.background,
                    result,
                )
                .await
            }
        }
    }
}

/// Stops the webhook and admin ports once the gRPC server is done.
async fn finish(
    stop_admin: oneshot::Sender<()>,
    admin: JoinHandle<std::io::Result<()>>,
    webhooks: Option<WebhookServer>,
    background: Background,
    result: Result<(), ServeError>,
) -> Result<(), ServeError> {
    drop(background);
    if let Some(webhooks) = webhooks {
        webhooks.stop().await;
    }
    let _ = stop_admin.send(());
    match admin.await {
        Ok(Err(err)) => tracing::warn!(error = %err, "admin server failed"),
        Err(err) => tracing::warn!(error = %err, "admin server task failed"),
        Ok(Ok(())) => {}
    }
    if result.is_ok() {
        tracing::info!("shutdown complete");
    }
    result
}

fn joined(
    result: Result<Result<(), ServeError>, tokio::task::JoinError>,
) -> Result<(), ServeError> {
    result.map_err(ServeError::Task).and_then(|served| served)
}

async fn bind(listener: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            listener,
            addr,
            source,
        })
}

fn local_addr(
    listener: &'static str,
    bound: &TcpListener,
    addr: SocketAddr,
) -> Result<SocketAddr, StartError> {
    bound.local_addr().map_err(|source| StartError::Bind {
        listener,
        addr,
        source,
    })
}

/// Tasks that live as long as the gateway: aborted on drop.
struct Background(Vec<JoinHandle<()>>);

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// One warning naming the tenants without a partner policy (any partner
/// may receive their shares and have its tokens imported), if any.
pub(crate) fn warn_tenants_without_policy(config: &Config) {
    let open = config.tenants_without_policy();
    if !open.is_empty() {
        tracing::warn!(
            tenants = ?open,
            "tenants without a partner policy ([[tenants.partners]]): any partner application is allowed"
        );
    }
}
