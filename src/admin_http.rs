//! The admin HTTP port (`server.admin_listen`): `/healthz` (the process is
//! up), `/readyz` (serving and not draining; never tied to Didit, so a
//! Didit outage cannot make every pod unready at once) and `/metrics`
//! (OpenMetrics or Prometheus text, as `Accept` asks). [`crate::app::start`] runs it beside the gRPC server
//! and closes it after the drain.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::exposition::Format;
use crate::metrics::Metrics;

/// What the admin endpoints read.
#[derive(Clone)]
pub struct AdminState {
    /// The metrics to expose.
    pub metrics: Metrics,
    /// True between "config loaded, servers up" and "shutdown began".
    pub ready: Arc<AtomicBool>,
    /// The state store, whose memory backend's replay records the
    /// `dsg_import_replay_*` gauges show at each scrape.
    pub store: crate::state::StateStore,
}

/// The admin routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// OpenMetrics when the scraper's `Accept` asks for it, else the
/// Prometheus text format 0.0.4.
async fn metrics(State(state): State<AdminState>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    if let Some((entries, bytes)) = state.store.memory_usage().await {
        let metrics = &state.metrics;
        metrics
            .replay_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
        metrics
            .replay_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
    (
        [(header::CONTENT_TYPE, format.content_type())],
        state.metrics.encode_as(format),
    )
}

/// Serves the admin routes on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
