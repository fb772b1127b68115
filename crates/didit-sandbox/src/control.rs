//! The `/_sandbox/` admin endpoints (no API key): list the demo
//! applications, create, read, change and delete sessions, fire session
//! webhooks, read stats, set faults, move the clock, add and remove API
//! keys, list webhook destinations and deliveries.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::Stats;
use super::api_error::detail;
use super::faults::{ActiveFaults, FaultSpec};
use super::model::{SessionKind, Status};
use super::router::Shared;
use super::session::Session;
use super::store::{Counts, Grant, KeyError};
use super::webhook_delivery::{self, STATUS_UPDATED};

/// Admin bodies are tiny; anything bigger is a mistake.
const MAX_BODY: usize = 64 * 1024;

type AdminResult = Result<Response, Response>;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sandbox/applications", get(applications))
        .route("/_sandbox/sessions", post(create_session))
        .route(
            "/_sandbox/sessions/{id}",
            get(read_session)
                .patch(change_session)
                .delete(delete_session),
        )
        .route("/_sandbox/sessions/{id}/webhooks", post(fire_webhook))
        .route("/_sandbox/stats", get(stats))
        .route(
            "/_sandbox/faults",
            put(set_faults).get(faults).delete(reset_faults),
        )
        .route(
            "/_sandbox/clock",
            post(advance_clock).get(clock).delete(reset_clock),
        )
        .route("/_sandbox/api-keys", post(add_key).delete(remove_key))
        .route("/_sandbox/webhook-destinations", get(webhooks))
        .route("/_sandbox/webhooks", get(deliveries))
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(detail(message))).into_response()
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(detail("Not found."))).into_response()
}

/// Reads a JSON body into `T` (an empty body reads as `{}`).
async fn read<T: DeserializeOwned>(body: Body) -> Result<T, Response> {
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| bad_request("Request body is too large or could not be read."))?;
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    serde_json::from_slice(text).map_err(|e| bad_request(&format!("Invalid body: {e}")))
}

async fn applications(State(s): State<Arc<Shared>>) -> Response {
    Json(&s.demo).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSession {
    application_id: Uuid,
    session_kind: String,
    status: String,
}

async fn create_session(State(s): State<Arc<Shared>>, body: Body) -> AdminResult {
    let new: NewSession = read(body).await?;
    let kind = SessionKind::parse(&new.session_kind)
        .ok_or_else(|| bad_request("session_kind must be \"user\" or \"business\"."))?;
    let status = parse_status(kind, &new.status).map_err(|e| bad_request(&e))?;
    let id = s
        .store
        .create_session(new.application_id, kind, status, s.clock.now_ms())
        .ok_or_else(|| bad_request("Application does not exist."))?;
    Ok((StatusCode::CREATED, Json(json!({ "session_id": id }))).into_response())
}

/// `{"application_id", "session": <the decision body>}`.
fn session_view(session: &Session) -> Response {
    let body = json!({
        "application_id": session.application_id,
        "session": serde_json::value::RawValue::from_string(session.render()).ok(),
    });
    Json(body).into_response()
}

fn find_session(s: &Shared, id: &str) -> Option<Arc<Session>> {
    Uuid::parse_str(id).ok().and_then(|id| s.store.session(id))
}

/// A status spelled for `kind`, or a message listing the allowed spellings.
fn parse_status(kind: SessionKind, status: &str) -> Result<Status, String> {
    Status::parse(kind, status).ok_or_else(|| {
        format!(
            "\"{status}\" is not a valid status for a {} session. Allowed: {}.",
            kind.as_str(),
            Status::allowed(kind)
        )
    })
}

async fn read_session(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> AdminResult {
    let session = find_session(&s, &id).ok_or_else(not_found)?;
    Ok(session_view(&session))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusChange {
    status: String,
}

/// `PATCH /_sandbox/sessions/{id}`: a new status (spelled for the
/// session's kind); a change fires `status.updated`.
async fn change_session(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Body,
) -> AdminResult {
    let session = find_session(&s, &id).ok_or_else(not_found)?;
    let change: StatusChange = read(body).await?;
    let status = parse_status(session.kind, &change.status).map_err(|e| bad_request(&e))?;
    let changed = s
        .store
        .set_status(session.id, status)
        .ok_or_else(not_found)?;
    if status != session.status {
        webhook_delivery::notify(&s, &changed, STATUS_UPDATED);
    }
    Ok(session_view(&changed))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fire {
    webhook_type: String,
}

/// `POST /_sandbox/sessions/{id}/webhooks`: fires one session event of any
/// type now; answers 202 with how many deliveries started.
async fn fire_webhook(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Body,
) -> AdminResult {
    let session = find_session(&s, &id).ok_or_else(not_found)?;
    let fire: Fire = read(body).await?;
    if fire.webhook_type.trim().is_empty() {
        return Err(bad_request("webhook_type may not be blank."));
    }
    let started = webhook_delivery::notify(&s, &session, &fire.webhook_type);
    Ok((StatusCode::ACCEPTED, Json(json!({ "deliveries": started }))).into_response())
}

async fn delete_session(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match Uuid::parse_str(&id) {
        Ok(id) if s.store.delete_session(id) => StatusCode::NO_CONTENT.into_response(),
        _ => not_found(),
    }
}

/// The stats endpoint's body: the counters plus entity counts.
#[derive(Serialize)]
struct StatsView {
    #[serde(flatten)]
    stats: Stats,
    #[serde(flatten)]
    counts: Counts,
}

async fn stats(State(s): State<Arc<Shared>>) -> Response {
    Json(StatsView {
        stats: s.counters.snapshot(),
        counts: s.store.counts(),
    })
    .into_response()
}

async fn faults(State(s): State<Arc<Shared>>) -> Json<ActiveFaults> {
    Json(s.faults.snapshot())
}

async fn set_faults(State(s): State<Arc<Shared>>, body: Body) -> AdminResult {
    let spec: FaultSpec = read(body).await?;
    let active = spec.validate().map_err(|e| bad_request(&e))?;
    s.faults.set(active.clone());
    Ok(Json(active).into_response())
}

async fn reset_faults(State(s): State<Arc<Shared>>) -> Json<ActiveFaults> {
    s.faults.set(ActiveFaults::default());
    Json(ActiveFaults::default())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    advance_seconds: i64,
}

async fn clock(State(s): State<Arc<Shared>>) -> Response {
    Json(json!({ "now": s.clock.now_secs() })).into_response()
}

async fn advance_clock(State(s): State<Arc<Shared>>, body: Body) -> AdminResult {
    let advance: Advance = read(body).await?;
    let now = s
        .clock
        .advance(advance.advance_seconds)
        .map_err(|e| bad_request(&e.to_string()))?;
    Ok(Json(json!({ "now": now })).into_response())
}

async fn reset_clock(State(s): State<Arc<Shared>>) -> Response {
    s.clock.reset();
    clock(State(s)).await
}

fn default_true() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    application_id: Uuid,
    api_key: String,
    #[serde(default = "default_true")]
    write_sessions: bool,
}

async fn add_key(State(s): State<Arc<Shared>>, body: Body) -> AdminResult {
    let new: NewKey = read(body).await?;
    if new.api_key.trim().is_empty() {
        return Err(bad_request("api_key may not be blank."));
    }
    let grant = Grant {
        application_id: new.application_id,
        write_sessions: new.write_sessions,
    };
    match s.store.add_key(new.api_key, grant) {
        Ok(()) => Ok((
            StatusCode::CREATED,
            Json(json!({ "application_id": grant.application_id, "write_sessions": grant.write_sessions })),
        )
            .into_response()),
        Err(e @ KeyError::UnknownApplication) => Err(bad_request(&e.to_string())),
        Err(e @ KeyError::Exists) => Err((StatusCode::CONFLICT, Json(detail(&e.to_string()))).into_response()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OldKey {
    api_key: String,
}

async fn remove_key(State(s): State<Arc<Shared>>, body: Body) -> AdminResult {
    let old: OldKey = read(body).await?;
    if s.store.remove_key(&old.api_key) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found())
    }
}

async fn webhooks(State(s): State<Arc<Shared>>) -> Response {
    Json(s.store.webhooks()).into_response()
}

async fn deliveries(State(s): State<Arc<Shared>>) -> Response {
    Json(s.webhooks.list()).into_response()
}
