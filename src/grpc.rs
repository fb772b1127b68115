//! The gRPC server: both services behind the admission layers, health and
//! reflection beside them, and the drain (health NOT_SERVING, a pause so
//! load balancers notice, stop accepting, finish in-flight calls and
//! detached imports under the grace period).
//!
//! [`serve`] runs on a listener the caller bound; [`crate::app::start`]
//! binds it, starts the admin port beside it and owns the shutdown signal.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_stream::Stream;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::audit_edge::RefusalAuditLayer;
use crate::limits::Shed;
use crate::message_limits::OversizedLayer;
use crate::proto::session_service_server::SessionServiceServer;
use crate::proto::share_service_server::ShareServiceServer;
use crate::service::{AppState, ImportApi, ImportServer, SessionApi, ShareApi};

/// Largest request message accepted (requests are a token and a few ids).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Largest response message sent (a cloned session with every check).
const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// Largest request metadata (the HTTP/2 header list, hyper's default made
/// explicit): past it h2 answers HTTP 431 before any service runs.
pub const MAX_METADATA_BYTES: u32 = 16 * 1024;
/// Streams a client may open and reset before the server has accepted
/// them, per connection, before h2 closes the connection with GOAWAY
/// ENHANCE_YOUR_CALM (h2's default is 20: a burst of client cancellations
/// then fails every other call on the connection). Such streams never
/// reach a handler and cost a few hundred bytes each until accepted, so the
/// bound still stops a rapid-reset flood (CVE-2023-44487) from growing
/// without end.
const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 4096;
/// Streams the server itself may reset for protocol errors on one
/// connection before GOAWAY (hyper's default, set explicitly:
/// RUSTSEC-2024-0003).
const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;

/// The gRPC names of the services, as health reports them.
pub const SERVICE_NAMES: [&str; 3] = [
    "didit.share.v1.ShareService",
    "didit.share.v1.ImportService",
    "didit.share.v1.SessionService",
];

/// How the server behaves under load and on shutdown.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Calls served at once before new ones are shed.
    pub max_concurrent_requests: usize,
    /// How long in-flight calls and detached imports may take on shutdown.
    pub shutdown_grace: Duration,
    /// Pause between NOT_SERVING and closing the listener, so that load
    /// balancers and meshes stop routing here first.
    pub drain_delay: Duration,
    /// TLS with required client certificates (auth mode mtls).
    pub tls: Option<tonic::transport::ServerTlsConfig>,
}

/// Server failures.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// Reflection could not load the descriptors (a build problem).
    #[error("gRPC reflection failed to start: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The task running the server panicked or was cancelled.
    #[error("gRPC server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Serves on `listener` until `shutdown` resolves, then drains. `ready` is
/// set once the services are up and cleared when the drain begins (the
/// admin port's `/readyz`). Returns once everything has finished or the
/// grace period is over.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    options: ServeOptions,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (reporter, health_service) = tonic_health::server::health_reporter();

    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    set_health(&reporter, ServingStatus::Serving).await;
    ready.store(true, Ordering::Release);
    // Share and import follow the shared state's availability until the drain.
    let draining = Arc::new(AtomicBool::new(false));
    let state_watch = crate::state_watch::spawn(
        state.gateway.store(),
        reporter.clone(),
        &SERVICE_NAMES,
        state.metrics.state_available.clone(),
        Arc::clone(&draining),
    );

    // The server's own TCP options apply only to listeners it binds:
    // without nodelay, small unary answers wait out Nagle + delayed ACK.
    let listener = Listener::new(
        TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(Duration::from_secs(60))),
    );
    let accepting = listener.clone();
    let (drain_started, drain_began) = tokio::sync::oneshot::channel::<tokio::time::Instant>();
    let mut drain_reporter = reporter.clone();
    let drain_ready = Arc::clone(&ready);
    let drain_delay = options.drain_delay;
    let drain_state = Arc::clone(&state);
    let began_at = Arc::new(std::sync::OnceLock::new());
    let signal_began_at = Arc::clone(&began_at);
    let signal = async move {
        shutdown.await;
        tracing::info!("shutdown requested: health NOT_SERVING, draining");
        let began = tokio::time::Instant::now();
        let _ = signal_began_at.set(began);
        drain_ready.store(false, Ordering::Release);
        draining.store(true, Ordering::Release);
        state_watch.abort();
        set_health(&drain_reporter, ServingStatus::NotServing).await;
        tokio::time::sleep(drain_delay).await;
        // Health `Watch` streams (client-side health checking keeps one
        // open per connection) would otherwise hold the drain until the
        // grace period ends: they have seen NOT_SERVING; now end them.
        clear_health(&mut drain_reporter).await;
        // Likewise the WatchSessionEvents streams: they end with
        // UNAVAILABLE SHUTTING_DOWN, and their clients resume elsewhere.
        drain_state.end_streams();
        accepting.close();
        let _ = drain_started.send(began);
    };

    let layers = tower::ServiceBuilder::new()
        // Outermost: the audit event of a call answered before a service.
        .layer(RefusalAuditLayer(Arc::clone(&state)))
        // The global limit: shed at once rather than queue without bound.
        // Tenants' Didit budgets are charged per upstream request, after
        // the caller is authorized (crate::budget), never here.
        .layer(Shed::layer(
            options.max_concurrent_requests,
            state.metrics.clone(),
            tenant_labeler(&state),
        ))
        // Innermost: the codec's OUT_OF_RANGE for an oversized message
        // becomes RESOURCE_EXHAUSTED.
        .layer(OversizedLayer {
            max_request_bytes: MAX_REQUEST_BYTES,
            state: Arc::clone(&state),
        });

    let mut builder = Server::builder();
    if let Some(tls) = options.tls.clone() {
        builder = builder.tls_config(tls)?;
    }
    let server = builder
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_ACCEPT_RESET_STREAMS))
        .http2_max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESET_STREAMS))
        .http2_max_header_list_size(Some(MAX_METADATA_BYTES))
        .layer(layers)
        .add_service(
            ShareServiceServer::new(ShareApi::new(Arc::clone(&state)))
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_RESPONSE_BYTES),
        )
        .add_service(
            ImportServer::new(ImportApi::new(Arc::clone(&state)))
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_RESPONSE_BYTES),
        )
        .add_service(
            SessionServiceServer::new(SessionApi::new(Arc::clone(&state)))
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_RESPONSE_BYTES),
        )
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(listener, signal);
    tokio::pin!(server);

    // The grace period counts from the moment shutdown was requested and
    // covers both the in-flight calls and the detached imports.
    let grace = options.shutdown_grace;
    let drain_deadline = async move {
        match drain_began.await {
            Ok(began) => began + grace,
            // The server stopped without a shutdown request (it failed).
            Err(_) => tokio::time::Instant::now(),
        }
    };
    let deadline = tokio::select! {
        result = &mut server => {
            result?;
            None
        }
        deadline = async {
            let deadline = drain_deadline.await;
            tokio::time::sleep_until(deadline).await;
            deadline
        } => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "grace period over: abandoning in-flight calls");
            Some(deadline)
        }
    };
    let deadline = deadline
        .or_else(|| began_at.get().map(|began| *began + grace))
        .unwrap_or_else(tokio::time::Instant::now);

    let tasks = state.gateway.tasks();
    tasks.close();
    if tokio::time::timeout_at(deadline, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            tasks = tasks.len(),
            "grace period over: abandoning detached upstream calls"
        );
    }
    Ok(())
}

/// The gRPC listener, closed the moment the drain stops accepting.
///
/// tonic holds on to the incoming stream until every connection has
/// closed. A listening socket that nobody accepts from lets new
/// connections complete in the kernel backlog and hang there for the whole
/// drain; once this is closed they are refused at once and the caller's
/// client fails over.
#[derive(Clone)]
struct Listener(Arc<Mutex<Option<TcpIncoming>>>);

impl Listener {
    fn new(incoming: TcpIncoming) -> Self {
        Self(Arc::new(Mutex::new(Some(incoming))))
    }

    /// Drops the listening socket.
    fn close(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}

impl Stream for Listener {
    type Item = std::io::Result<TcpStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut incoming = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match incoming.as_mut() {
            Some(incoming) => Pin::new(incoming).poll_next(cx),
            None => Poll::Ready(None),
        }
    }
}

/// Removes every status, which ends the open `Watch` streams once they
/// have delivered the last one.
async fn clear_health(reporter: &mut HealthReporter) {
    reporter.clear_service_status("").await;
    for name in SERVICE_NAMES {
        reporter.clear_service_status(name).await;
    }
}

/// Reflection over our API, health, and google.rpc (ErrorInfo & co., so
/// grpcurl can decode error details).
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
}

async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for name in SERVICE_NAMES {
        reporter.set_service_status(name, status).await;
    }
}

/// Names a refused call's tenant as the per-call record does: a configured
/// tenant id or `unknown`, so the label's cardinality stays bounded.
fn tenant_labeler(state: &Arc<AppState>) -> crate::limits::TenantLabeler {
    let state = Arc::clone(state);
    Arc::new(move |id| match state.settings().tenants.resolve(id) {
        Ok(tenant) => tenant.id.to_string(),
        Err(_) => "unknown".to_owned(),
    })
}
