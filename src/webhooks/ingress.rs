//! The webhook port: `POST /webhooks/didit/{tenant_id}`, where each
//! tenant's Didit webhook destination points.
//!
//! | answer | when |
//! | --- | --- |
//! | 200 `{"event_id", "duplicate"}` | stored (a duplicate delivery: stored once, earlier id) |
//! | 400 | the body is not a JSON object with a `webhook_type` |
//! | 401 | `X-Timestamp` missing or more than 300 s off, or no valid signature |
//! | 404 | no tenant with that id and a webhook secret |
//! | 408 | the request took longer than [`REQUEST_TIMEOUT`] |
//! | 413 | the body is over [`MAX_BODY_BYTES`] |
//! | 503 | the event could not be stored, or too many deliveries at once |
//!
//! Didit retries on 5xx and 404, so nothing is lost when storing fails.
//! Log lines carry the tenant, session id, webhook type and status only:
//! never the secret, a signature or the body.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde_json::Value;
use tokio::net::TcpListener;
use tower::ServiceBuilder;

use super::Clock;
use super::config::WebhookSecret;
use super::event::WebhookEvent;
use super::log::EventLog;
use super::signature::{SignatureHeaders, Verifier};

/// The route Didit posts to.
pub const PATH: &str = "/webhooks/didit/{tenant_id}";
/// The largest body accepted (1 MiB).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// How long one delivery may take, body upload included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Deliveries handled at once; more are answered 503 (Didit retries).
pub const MAX_CONCURRENT: usize = 512;

/// Finds a tenant's webhook secret. A `HashMap` is one; the application
/// implements it over its tenant registry so rotated secrets apply at once.
pub trait SecretLookup: Send + Sync + 'static {
    /// The secret of `tenant`, or `None` when there is no such tenant or it
    /// has no webhook secret (both answered 404).
    fn webhook_secret(&self, tenant: &str) -> Option<Arc<WebhookSecret>>;
}

impl SecretLookup for HashMap<String, Arc<WebhookSecret>> {
    fn webhook_secret(&self, tenant: &str) -> Option<Arc<WebhookSecret>> {
        self.get(tenant).cloned()
    }
}

/// What the webhook port needs.
#[derive(Clone)]
pub struct Ingress {
    /// The tenants' webhook secrets.
    pub secrets: Arc<dyn SecretLookup>,
    /// Where verified events are stored.
    pub log: Arc<dyn EventLog>,
    /// `[webhooks] accept_simple_signature`.
    pub accept_simple_signature: bool,
    /// Time for the `X-Timestamp` window.
    pub clock: Arc<dyn Clock>,
}

/// The webhook routes.
pub fn router(ingress: Ingress) -> Router {
    Router::new()
        .route(PATH, post(receive))
        .with_state(ingress)
        // Around the handler; HandleErrorLayer turns the errors of the
        // layers below it into answers.
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(layer_error))
                // Shed rather than queue: Didit retries a 503 later.
                .load_shed()
                .concurrency_limit(MAX_CONCURRENT)
                // Bounds slow uploads too: the body is read inside.
                .timeout(REQUEST_TIMEOUT),
        )
        // Read by the `Bytes` extractor: over the limit it answers 413
        // without buffering more.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Serves the webhook routes on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    ingress: Ingress,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(ingress))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn layer_error(err: tower::BoxError) -> Response {
    if err.is::<tower::timeout::error::Elapsed>() {
        (StatusCode::REQUEST_TIMEOUT, "request took too long\n").into_response()
    } else if err.is::<tower::load_shed::error::Overloaded>() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many deliveries at once\n",
        )
            .into_response()
    } else {
        tracing::error!(error = %err, "webhook ingress layer failed");
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
    }
}

async fn receive(
    State(ingress): State<Ingress>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(secret) = ingress.secrets.webhook_secret(&tenant) else {
        let shown: String = tenant.chars().take(64).collect();
        tracing::warn!(tenant = ?shown, "webhook for an unknown tenant");
        return (StatusCode::NOT_FOUND, "unknown tenant\n").into_response();
    };
    let verifier = Verifier {
        secret: &secret,
        accept_simple: ingress.accept_simple_signature,
        now: ingress.clock.now(),
    };
    let unauthorized = |problem: &dyn std::fmt::Display| {
        tracing::warn!(tenant = %tenant, %problem, "webhook refused");
        (StatusCode::UNAUTHORIZED, "signature or timestamp refused\n").into_response()
    };
    let signed = match SignatureHeaders::from_headers(&headers) {
        Ok(signed) => signed,
        Err(err) => return unauthorized(&err),
    };
    if let Err(err) = verifier.check_fresh(&signed) {
        return unauthorized(&err);
    }
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        tracing::warn!(tenant = %tenant, "webhook refused: the body is not JSON");
        return (StatusCode::BAD_REQUEST, "the body is not JSON\n").into_response();
    };
    if let Err(err) = verifier.verify(&signed, &body, &json) {
        return unauthorized(&err);
    }
    let event = match WebhookEvent::from_json(body.clone(), &json) {
        Ok(event) => event,
        Err(err) => {
            tracing::warn!(tenant = %tenant, problem = %err, "webhook refused");
            return (StatusCode::BAD_REQUEST, format!("{err}\n")).into_response();
        }
    };
    let (session_id, webhook_type, status) = (
        event.session_id.clone(),
        event.webhook_type.clone(),
        event.status_raw.clone(),
    );
    match ingress.log.append(&tenant, event).await {
        Ok(appended) => {
            tracing::info!(
                tenant = %tenant,
                session_id = %session_id,
                webhook_type = %webhook_type,
                status = %status,
                event_id = %appended.event_id,
                duplicate = appended.duplicate,
                "webhook stored"
            );
            let answer = serde_json::json!({
                "event_id": appended.event_id.to_string(),
                "duplicate": appended.duplicate,
            });
            (StatusCode::OK, axum::Json(answer)).into_response()
        }
        Err(err) => {
            tracing::error!(
                tenant = %tenant,
                session_id = %session_id,
                webhook_type = %webhook_type,
                error = %err,
                "webhook not stored; Didit will retry"
            );
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "could not store the event\n",
            )
                .into_response()
        }
    }
}
