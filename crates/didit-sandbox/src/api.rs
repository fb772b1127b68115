//! The v3 write endpoints Didit publishes (share, import-shared, webhook
//! destinations) and the pipeline every v3 call (these and the reads of
//! `sessions_api`) runs through: count, inject faults, rate-limit, read
//! the body, authenticate, handle.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::Dialect;
use super::api_error::{ApiError, Endpoint, detail};
use super::faults::{self, Action};
use super::input::{Fields, json_object};
use super::model::fresh_uuid;
use super::ratelimit::{Admission, RateHeaders, too_many_reads, too_many_requests};
use super::router::Shared;
use super::stats::KeyId;
use super::store::{Grant, ImportOrder, ImportRefusal, WebhookDestination};
use super::token::Claims;
use super::webhook_delivery::{self, STATUS_UPDATED};

const API_KEY: HeaderName = HeaderName::from_static("x-api-key");
/// Bodies above this are refused (Didit's bodies are a few hundred bytes).
const MAX_BODY: usize = 1 << 20;
const DEFAULT_TTL: i128 = 3600;
const MIN_TTL: i128 = 60;
const MAX_TTL: i128 = 86_400;
/// Didit's documented write limit, named in 429s when none is configured.
const DIDIT_WRITE_LIMIT: u32 = 300;
/// Didit's documented read (GET) limit.
const DIDIT_READ_LIMIT: u32 = 600;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v3/session/{id}/share/", post(share))
        .route("/v3/session/import-shared/", post(import))
        .route("/v3/webhook/destinations/", post(webhook))
}

async fn share(
    State(s): State<Arc<Shared>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // A path that is not a uuid is simply a session that does not exist.
    let id = path.ok().and_then(|Path(id)| Uuid::parse_str(&id).ok());
    call(
        &s,
        Endpoint::Share,
        &headers,
        Some(body),
        |s, grant, input| share_session(s, grant, id, input),
    )
    .await
}

async fn import(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    call(&s, Endpoint::Import, &headers, Some(body), import_shared).await
}

async fn webhook(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    call(
        &s,
        Endpoint::Webhook,
        &headers,
        Some(body),
        register_webhook,
    )
    .await
}

/// The pipeline shared by the v3 endpoints. `handle` runs synchronously:
/// no lock is ever held across an `.await`. Reads pass no `body` (their
/// input is then an empty object).
pub(crate) async fn call<F>(
    s: &Shared,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: Option<Body>,
    handle: F,
) -> Response
where
    F: FnOnce(&Shared, Grant, &Map<String, Value>) -> Result<Response, ApiError>,
{
    let api_key = headers.get(API_KEY);
    let key_id = api_key.map(|k| KeyId::of(k.as_bytes()));
    s.counters.call(endpoint, key_id.as_ref());

    let plan = s.faults.plan(endpoint);
    if let Some(latency) = plan.latency {
        tokio::time::sleep(latency).await;
    }
    let drop = match plan.action {
        Action::Proceed { drop } => drop,
        Action::Fail {
            status,
            retry_after,
        } => {
            s.counters.fault();
            return injected_error(s, endpoint, status, retry_after);
        }
        Action::RateLimit { retry_after } => {
            s.counters.fault();
            return limited(endpoint, injected_rate_headers(s, endpoint, retry_after));
        }
    };

    let response = process(s, endpoint, headers, api_key, key_id.as_ref(), body, handle).await;
    if drop {
        s.counters.dropped();
        tracing::debug!(?endpoint, "dropping the connection after processing");
        faults::dropped(response)
    } else {
        response
    }
}

async fn process<F>(
    s: &Shared,
    endpoint: Endpoint,
    headers: &HeaderMap,
    api_key: Option<&HeaderValue>,
    key_id: Option<&KeyId>,
    body: Option<Body>,
    handle: F,
) -> Response
where
    F: FnOnce(&Shared, Grant, &Map<String, Value>) -> Result<Response, ApiError>,
{
    let mut rate_headers = None;
    if let (Some(limiter), Some(key_id)) = (s.limiter_for(endpoint), key_id) {
        match limiter.admit(key_id, s.clock.now_ms()) {
            Admission::Allowed(h) => rate_headers = Some(h),
            Admission::Limited(h) => {
                s.counters.rate_limited();
                return limited(endpoint, h);
            }
        }
    }
    let bytes = match body {
        None => Ok(None),
        Some(body) => axum::body::to_bytes(body, MAX_BODY).await.map(Some),
    };
    let outcome = match bytes {
        Err(_) => Err(ApiError::BodyUnreadable),
        Ok(bytes) => authorize(s, endpoint, api_key)
            .and_then(|grant| match bytes {
                Some(bytes) => Ok((grant, json_object(headers, &bytes)?)),
                None => Ok((grant, Map::new())),
            })
            .and_then(|(grant, input)| handle(s, grant, &input)),
    };
    let mut response = match outcome {
        Ok(response) => {
            s.counters.ok(endpoint);
            response
        }
        Err(e) => e.into_response(s.dialect),
    };
    tracing::debug!(?endpoint, status = %response.status(), "v3 call");
    if let Some(h) = rate_headers {
        h.apply(response.headers_mut(), false);
    }
    response
}

fn authorize(
    s: &Shared,
    endpoint: Endpoint,
    api_key: Option<&HeaderValue>,
) -> Result<Grant, ApiError> {
    let grant = api_key
        .and_then(|k| s.store.grant(k.as_bytes()))
        .ok_or(ApiError::BadCredentials(endpoint))?;
    // Reads need any key of the application; writes `write:sessions`.
    if grant.write_sessions || endpoint.is_read() {
        Ok(grant)
    } else {
        Err(ApiError::NoPermission)
    }
}

/// The 429 for `endpoint`: Didit names the write or the read limit.
fn limited(endpoint: Endpoint, headers: RateHeaders) -> Response {
    if endpoint.is_read() {
        too_many_reads(headers)
    } else {
        too_many_requests(headers)
    }
}

fn injected_error(
    s: &Shared,
    endpoint: Endpoint,
    status: StatusCode,
    retry_after: u32,
) -> Response {
    let mut response = (status, axum::Json(detail("Injected fault."))).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        injected_rate_headers(s, endpoint, retry_after).apply(response.headers_mut(), true);
    }
    response
}

fn injected_rate_headers(s: &Shared, endpoint: Endpoint, retry_after: u32) -> RateHeaders {
    let didit = if endpoint.is_read() {
        DIDIT_READ_LIMIT
    } else {
        DIDIT_WRITE_LIMIT
    };
    RateHeaders {
        limit: s.limiter_for(endpoint).map_or(didit, |l| l.max_writes()),
        remaining: 0,
        reset: s.clock.now_secs().saturating_add(i64::from(retry_after)),
        retry_after: u64::from(retry_after),
    }
}

pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `POST /v3/session/{id}/share/`.
fn share_session(
    s: &Shared,
    grant: Grant,
    id: Option<Uuid>,
    input: &Map<String, Value>,
) -> Result<Response, ApiError> {
    let mut fields = Fields::new(input);
    let target = fields.uuid("for_application_id");
    let ttl = fields.optional_int("ttl_in_seconds");
    let target = fields.finish(target)?;
    let ttl = ttl.unwrap_or(DEFAULT_TTL);

    let session = id
        .and_then(|id| s.store.session(id))
        .filter(|session| session.application_id == grant.application_id)
        .ok_or(ApiError::NotFound)?;
    if !session.status.is_finished() {
        return Err(ApiError::NotFinished);
    }
    if ttl < MIN_TTL {
        return Err(ApiError::field(
            "ttl_in_seconds",
            "Ensure this value is greater than or equal to 60.",
        ));
    }
    if ttl > MAX_TTL {
        return Err(ApiError::field(
            "ttl_in_seconds",
            "Ensure this value is less than or equal to 86400.",
        ));
    }
    if s.store.application(target).is_none() {
        return Err(ApiError::field(
            "for_application_id",
            "Target application does not exist.",
        ));
    }
    if target == grant.application_id {
        return Err(ApiError::field(
            "for_application_id",
            "Cannot share a session with the same application.",
        ));
    }

    let iat = s.clock.now_secs();
    let claims = Claims {
        jti: fresh_uuid(),
        session_id: session.id,
        from_application_id: grant.application_id,
        for_application_id: target,
        session_kind: session.kind,
        iat,
        // ttl is within 60..=86400 here.
        exp: iat.saturating_add(i64::try_from(ttl).unwrap_or(0)),
    };
    let body = json!({
        "share_token": s.tokens.sign(&claims),
        "for_application_id": target,
        "session_kind": session.kind,
    });
    let status = match s.dialect {
        Dialect::Seeds => StatusCode::CREATED,
        Dialect::OpenApi => StatusCode::OK,
    };
    Ok(json_response(status, body.to_string()))
}

/// `POST /v3/session/import-shared/`.
fn import_shared(
    s: &Shared,
    grant: Grant,
    input: &Map<String, Value>,
) -> Result<Response, ApiError> {
    let mut fields = Fields::new(input);
    let token = fields.string("share_token");
    let workflow_id = fields.string("workflow_id");
    let vendor_data = fields.optional_string("vendor_data");
    let trust_review = fields.optional_bool("trust_review");
    let (token, workflow_id) = fields.finish(token.zip(workflow_id))?;

    let claims = s.tokens.verify(token).map_err(|_| ApiError::TokenInvalid)?;
    let now_ms = s.clock.now_ms();
    if now_ms.div_euclid(1000) >= claims.exp {
        return Err(ApiError::TokenExpired);
    }
    if claims.for_application_id != grant.application_id {
        return Err(ApiError::TokenWrongApplication);
    }
    let workflow_ok = s
        .store
        .application(grant.application_id)
        .is_some_and(|app| app.workflow(claims.session_kind) == workflow_id);
    let order = ImportOrder {
        jti: claims.jti,
        importer: grant.application_id,
        original: claims.session_id,
        workflow_ok,
        trust_review: trust_review.unwrap_or(false),
        vendor_data,
        workflow_id,
        now_ms,
    };
    let copy = s.store.import(&order).map_err(|refusal| match refusal {
        ImportRefusal::AlreadyImported => ApiError::AlreadyImported,
        ImportRefusal::OriginalGone => ApiError::OriginalGone,
        ImportRefusal::WorkflowMissing => ApiError::WorkflowMissing,
    })?;
    webhook_delivery::notify(s, &copy, STATUS_UPDATED);
    Ok(json_response(StatusCode::CREATED, copy.render()))
}

/// `POST /v3/webhook/destinations/`.
fn register_webhook(
    s: &Shared,
    grant: Grant,
    input: &Map<String, Value>,
) -> Result<Response, ApiError> {
    let mut fields = Fields::new(input);
    let url = fields.string("url");
    if url.is_some_and(|u| !is_web_url(u)) {
        fields.reject("url", "Enter a valid URL.");
    }
    let events = fields.string_list("subscribed_events");
    let (url, subscribed_events) = fields.finish(url.zip(events))?;
    let destination = WebhookDestination {
        uuid: fresh_uuid(),
        application_id: grant.application_id,
        url: url.to_owned(),
        subscribed_events,
        secret_shared_key: hex::encode(rand::random::<[u8; 32]>()),
    };
    let body = json!({
        "uuid": destination.uuid,
        "url": destination.url,
        "subscribed_events": destination.subscribed_events,
        "secret_shared_key": destination.secret_shared_key,
    });
    s.store.add_webhook(destination);
    Ok(json_response(StatusCode::CREATED, body.to_string()))
}

/// An absolute http(s) URL with a host.
pub(crate) fn is_web_url(url: &str) -> bool {
    url.parse::<Uri>().is_ok_and(|uri| {
        matches!(uri.scheme_str(), Some("http" | "https"))
            && uri.host().is_some_and(|h| !h.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_urls() {
        assert!(is_web_url("https://partner.example/hooks/didit"));
        assert!(is_web_url("http://127.0.0.1:9000/x"));
        for bad in ["", "ftp://x.example/", "not a url", "/relative", "https://"] {
            assert!(!is_web_url(bad), "{bad}");
        }
    }
}
