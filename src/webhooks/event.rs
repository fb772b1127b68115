//! The fields of a Didit webhook body the gateway reads, next to the exact
//! body bytes. Didit's session webhooks look like
//! `{"webhook_type": "status.updated", "session_id": "…", "status": "Approved",
//! "vendor_data": "…", "workflow_id": "…", "created_at": 1700000000,
//! "timestamp": 1700000000, "decision": {…}}`; KYB ones add
//! `"session_kind": "business"`. Only `webhook_type` is required: entity
//! events (`user.status.updated`, …) carry no `session_id`.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::canonical;

/// A verified webhook delivery, ready to be stored.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    /// `webhook_type`: `status.updated`, `data.updated`, ….
    pub webhook_type: String,
    /// `session_id`; empty when the event is not about a session.
    pub session_id: String,
    /// `status` exactly as sent ("In Review", "IN_REVIEW"); may be empty.
    pub status_raw: String,
    /// `vendor_data`: the tenant's own user or business id; may be empty.
    pub vendor_data: String,
    /// `workflow_id`; may be empty.
    pub workflow_id: String,
    /// `session_kind` ("user", "business"); empty when not sent.
    pub session_kind: String,
    /// When the event happened: `created_at`, else `timestamp`.
    pub occurred_at: Option<SystemTime>,
    /// The exact body bytes Didit sent.
    pub raw: Bytes,
    /// SHA-256 of the body's canonical JSON (seeds style): two deliveries
    /// with the same content, however encoded, have the same key and are
    /// stored once. Didit's retries resend the same content.
    pub delivery_key: [u8; 32],
}

/// The body is not a webhook the gateway can store (answered 400).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventParseError {
    /// Not JSON at all.
    #[error("the body is not JSON")]
    NotJson,
    /// JSON, but not an object.
    #[error("the body is not a JSON object")]
    NotObject,
    /// No `webhook_type` string.
    #[error("the body has no webhook_type")]
    MissingWebhookType,
    /// A field that must be a string is something else.
    #[error("{0} is not a string")]
    NotAString(&'static str),
}

impl WebhookEvent {
    /// Parses `raw` (for stores that keep only the bytes, such as Redis).
    pub fn parse(raw: Bytes) -> Result<Self, EventParseError> {
        let body: Value = serde_json::from_slice(&raw).map_err(|_| EventParseError::NotJson)?;
        Self::from_json(raw, &body)
    }

    /// Reads the fields of `body`, the already parsed `raw`.
    pub fn from_json(raw: Bytes, body: &Value) -> Result<Self, EventParseError> {
        let object = body.as_object().ok_or(EventParseError::NotObject)?;
        let text = |name: &'static str| match object.get(name) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(EventParseError::NotAString(name)),
        };
        let webhook_type = text("webhook_type")?;
        if webhook_type.is_empty() {
            return Err(EventParseError::MissingWebhookType);
        }
        let occurred_at = ["created_at", "timestamp"]
            .iter()
            .find_map(|name| object.get(*name).and_then(instant));
        Ok(Self {
            webhook_type,
            session_id: text("session_id")?,
            status_raw: text("status")?,
            vendor_data: text("vendor_data")?,
            workflow_id: text("workflow_id")?,
            session_kind: text("session_kind")?,
            occurred_at,
            delivery_key: Sha256::digest(canonical::canonical_json(body, canonical::Style::SEEDS))
                .into(),
            raw,
        })
    }
}

/// Unix seconds (a number or a string of digits) or an RFC 3339 string.
fn instant(value: &Value) -> Option<SystemTime> {
    let secs = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => match s.parse::<f64>() {
            Ok(secs) => secs,
            Err(_) => return humantime::parse_rfc3339_weak(s).ok(),
        },
        _ => return None,
    };
    if !(0.0..=1e12).contains(&secs) {
        return None;
    }
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs))
}

/// Personal data stays out of Debug: only the routing fields and sizes.
impl std::fmt::Debug for WebhookEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookEvent")
            .field("webhook_type", &self.webhook_type)
            .field("session_id", &self.session_id)
            .field("status_raw", &self.status_raw)
            .field("raw_bytes", &self.raw.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_fields_and_time_are_read() {
        let raw = Bytes::from_static(
            br#"{"webhook_type":"status.updated","session_id":"s","status":"IN_REVIEW","vendor_data":"biz-1","workflow_id":"w","session_kind":"business","created_at":1700000000,"timestamp":1700000100}"#,
        );
        let event = WebhookEvent::parse(raw.clone()).unwrap();
        assert_eq!(event.status_raw, "IN_REVIEW");
        assert_eq!(event.session_kind, "business");
        assert_eq!(
            event.occurred_at,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert_eq!(event.raw, raw);
        let printed = format!("{event:?}");
        assert!(!printed.contains("biz-1"), "{printed}");
    }

    #[test]
    fn the_delivery_key_ignores_encoding_but_not_content() {
        let a = WebhookEvent::parse(Bytes::from_static(
            br#"{"webhook_type":"t","n":1.0,"s":"x"}"#,
        ))
        .unwrap();
        let b = WebhookEvent::parse(Bytes::from_static(
            b"{ \"s\": \"x\",\n \"n\": 1, \"webhook_type\": \"t\" }",
        ))
        .unwrap();
        let c = WebhookEvent::parse(Bytes::from_static(br#"{"webhook_type":"t","n":2,"s":"x"}"#))
            .unwrap();
        assert_eq!(a.delivery_key, b.delivery_key);
        assert_ne!(a.delivery_key, c.delivery_key);
    }

    #[test]
    fn bodies_that_are_not_webhooks_are_refused() {
        let parse = |b: &'static [u8]| WebhookEvent::parse(Bytes::from_static(b)).unwrap_err();
        assert_eq!(parse(b"not json"), EventParseError::NotJson);
        assert_eq!(parse(b"[1]"), EventParseError::NotObject);
        assert_eq!(
            parse(br#"{"session_id":"s"}"#),
            EventParseError::MissingWebhookType
        );
        assert_eq!(
            parse(br#"{"webhook_type":"t","status":3}"#),
            EventParseError::NotAString("status")
        );
    }
}
