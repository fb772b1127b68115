//! The gRPC server: both services behind the admission layers, health and
//! reflection beside them, and the shutdown sequence (health NOT_SERVING,
//! a pause so load balancers notice, stop accepting, drain in-flight calls
//! and detached imports under a grace period).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::admin::{self, AdminState};
use crate::limits::{ShedLayer, TenantRateLayer};
use crate::proto::import_service_server::ImportServiceServer;
use crate::proto::share_service_server::ShareServiceServer;
use crate::service::{AppState, ImportApi, ShareApi};

/// Largest request message accepted (requests are a token and a few ids).
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Largest response message sent (a cloned session with every check).
const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// The gRPC names of the two services, as health reports them.
pub const SERVICE_NAMES: [&str; 2] = [
    "didit.share.v1.ShareService",
    "didit.share.v1.ImportService",
];

/// How the server behaves under load and on shutdown.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Calls served at once before new ones are shed.
    pub max_concurrent_requests: usize,
    /// Per-tenant calls per minute.
    pub tenant_limits: Vec<(String, u32)>,
    /// How long in-flight calls and detached imports may take on shutdown.
    pub shutdown_grace: Duration,
    /// Pause between NOT_SERVING and closing the listener, so that load
    /// balancers and meshes stop routing here first.
    pub drain_delay: Duration,
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
}

/// Serves until `shutdown` resolves, then drains. Returns once everything
/// has finished or the grace period is over.
pub async fn run(
    grpc_listener: TcpListener,
    admin_listener: TcpListener,
    state: Arc<AppState>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let ready = Arc::new(AtomicBool::new(false));
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_state = AdminState {
        metrics: state.metrics.clone(),
        ready: Arc::clone(&ready),
    };
    let admin_task = tokio::spawn(admin::serve(admin_listener, admin_state, async {
        let _ = admin_stopped.await;
    }));

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    set_health(&reporter, ServingStatus::Serving).await;
    ready.store(true, Ordering::Release);

    let (drain_started, drain_began) = tokio::sync::oneshot::channel::<tokio::time::Instant>();
    let drain_reporter = reporter.clone();
    let drain_ready = Arc::clone(&ready);
    let drain_delay = options.drain_delay;
    let began_at = Arc::new(std::sync::OnceLock::new());
    let signal_began_at = Arc::clone(&began_at);
    let signal = async move {
        shutdown.await;
        tracing::info!("shutdown requested: health NOT_SERVING, draining");
        let began = tokio::time::Instant::now();
        let _ = signal_began_at.set(began);
        drain_ready.store(false, Ordering::Release);
        set_health(&drain_reporter, ServingStatus::NotServing).await;
        tokio::time::sleep(drain_delay).await;
        let _ = drain_started.send(began);
    };

    let layers = tower::ServiceBuilder::new()
        // Outermost: a tenant over its rate is refused before it takes a
        // concurrency slot from well-behaved tenants.
        .layer(TenantRateLayer::new(
            options.tenant_limits.clone(),
            state.metrics.clone(),
        ))
        // Then the global limit: shed at once rather than queue without bound.
        .layer(ShedLayer::new(
            options.max_concurrent_requests,
            state.metrics.clone(),
        ));

    // The server's own tcp_nodelay applies only to listeners it binds:
    // without this, small unary answers wait out Nagle + delayed ACK (~40 ms).
    let incoming = TcpIncoming::from(grpc_listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)));
    let server = Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .layer(layers)
        .add_service(
            ShareServiceServer::new(ShareApi::new(Arc::clone(&state)))
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_RESPONSE_BYTES),
        )
        .add_service(
            ImportServiceServer::new(ImportApi::new(Arc::clone(&state)))
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_RESPONSE_BYTES),
        )
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, signal);
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
    let _ = admin_stop.send(());
    match admin_task.await {
        Ok(Err(err)) => tracing::warn!(error = %err, "admin server failed"),
        Err(err) => tracing::warn!(error = %err, "admin server task failed"),
        Ok(Ok(())) => {}
    }
    tracing::info!("shutdown complete");
    Ok(())
}

async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for name in SERVICE_NAMES {
        reporter.set_service_status(name, status).await;
    }
}
