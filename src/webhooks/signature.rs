//! Is this delivery from Didit? `X-Timestamp` must be within 300 s of now
//! (either way), and one signature must match the tenant's secret:
//!
//! - `X-Signature`: hex HMAC-SHA256 of the raw body bytes;
//! - `X-Signature-V2`: hex HMAC-SHA256 of the body's canonical JSON
//!   ([`crate::webhooks::canonical`]), which survives proxies that re-encode;
//! - `X-Signature-Simple`: hex HMAC-SHA256 of
//!   `"{timestamp}:{session_id}:{status}:{webhook_type}"`, accepted only when
//!   `accept_simple_signature` is set: it leaves the rest of the body
//!   (vendor_data, decision) unauthenticated. `timestamp` is the payload's
//!   `timestamp` field, or the `X-Timestamp` header (Didit's examples use
//!   both; they are the same value in a genuine delivery).
//!
//! Comparisons are constant-time (`Mac::verify_slice`). Neither the secret
//! nor an expected signature is ever part of an error.

use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use http::HeaderMap;
use serde_json::Value;
use sha2::Sha256;

use super::canonical;
use super::config::WebhookSecret;

/// Unix seconds when Didit sent the delivery.
pub const TIMESTAMP_HEADER: &str = "x-timestamp";
/// HMAC of the raw body.
pub const RAW_SIGNATURE_HEADER: &str = "x-signature";
/// HMAC of the canonical JSON.
pub const V2_SIGNATURE_HEADER: &str = "x-signature-v2";
/// HMAC of `timestamp:session_id:status:webhook_type`.
pub const SIMPLE_SIGNATURE_HEADER: &str = "x-signature-simple";
/// How far `X-Timestamp` may be from now, in either direction.
pub const MAX_SKEW: Duration = Duration::from_secs(300);

/// Why a delivery is not accepted as Didit's (all answered 401).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `X-Timestamp` header.
    #[error("X-Timestamp is missing")]
    MissingTimestamp,
    /// `X-Timestamp` is not whole unix seconds.
    #[error("X-Timestamp is not unix seconds")]
    MalformedTimestamp,
    /// `X-Timestamp` is more than [`MAX_SKEW`] before or after now.
    #[error("X-Timestamp is {skew_secs} s away from now (at most 300 s allowed)")]
    TimestampOutOfWindow {
        /// The distance from now, in seconds.
        skew_secs: u64,
    },
    /// A header that must appear once appears several times or is not text.
    #[error("header {0} is repeated or not visible ASCII")]
    MalformedHeader(&'static str),
    /// No signature header at all.
    #[error("no X-Signature, X-Signature-V2 or X-Signature-Simple header")]
    MissingSignature,
    /// Only `X-Signature-Simple` was sent and it is not accepted.
    #[error("only X-Signature-Simple was sent and accept_simple_signature is off")]
    SimpleNotAccepted,
    /// Signatures were sent and none matches the tenant's secret.
    #[error("no signature matches the tenant's webhook secret")]
    Mismatch,
}

/// Which signature proved the delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `X-Signature`.
    Raw,
    /// `X-Signature-V2`.
    V2,
    /// `X-Signature-Simple`.
    Simple,
}

/// The headers of one delivery that the verification reads.
#[derive(Debug, Default)]
pub struct SignatureHeaders<'a> {
    /// `X-Timestamp`.
    pub timestamp: Option<&'a str>,
    /// `X-Signature`.
    pub raw: Option<&'a str>,
    /// `X-Signature-V2`.
    pub v2: Option<&'a str>,
    /// `X-Signature-Simple`.
    pub simple: Option<&'a str>,
}

impl<'a> SignatureHeaders<'a> {
    /// Picks the four headers; each may appear at most once.
    pub fn from_headers(headers: &'a HeaderMap) -> Result<Self, SignatureError> {
        let one = |name: &'static str| -> Result<Option<&'a str>, SignatureError> {
            let mut values = headers.get_all(name).iter();
            let Some(first) = values.next() else {
                return Ok(None);
            };
            if values.next().is_some() {
                return Err(SignatureError::MalformedHeader(name));
            }
            first
                .to_str()
                .map(|s| Some(s.trim()))
                .map_err(|_| SignatureError::MalformedHeader(name))
        };
        Ok(Self {
            timestamp: one(TIMESTAMP_HEADER)?,
            raw: one(RAW_SIGNATURE_HEADER)?,
            v2: one(V2_SIGNATURE_HEADER)?,
            simple: one(SIMPLE_SIGNATURE_HEADER)?,
        })
    }
}

/// What a delivery is checked against.
#[derive(Clone, Copy, Debug)]
pub struct Verifier<'a> {
    /// The tenant's webhook secret.
    pub secret: &'a WebhookSecret,
    /// Whether `X-Signature-Simple` alone is enough.
    pub accept_simple: bool,
    /// The current time.
    pub now: SystemTime,
}

impl Verifier<'_> {
    /// Checks freshness, then the signatures: `X-Signature` over `raw`,
    /// `X-Signature-V2` over the canonical forms of `body` (the parsed
    /// `raw`), and `X-Signature-Simple` if accepted. Any one match is enough.
    pub fn verify(
        &self,
        headers: &SignatureHeaders<'_>,
        raw: &[u8],
        body: &Value,
    ) -> Result<Method, SignatureError> {
        let timestamp = self.check_fresh(headers)?;
        if headers.raw.is_none() && headers.v2.is_none() {
            return match (headers.simple, self.accept_simple) {
                (None, _) => Err(SignatureError::MissingSignature),
                (Some(_), false) => Err(SignatureError::SimpleNotAccepted),
                (Some(sig), true) => self.check_simple(sig, timestamp, body),
            };
        }
        if let Some(sig) = headers.raw
            && self.matches(sig, [raw])
        {
            return Ok(Method::Raw);
        }
        if let Some(sig) = headers.v2
            && self.matches(
                sig,
                canonical::candidate_forms(body).iter().map(Vec::as_slice),
            )
        {
            return Ok(Method::V2);
        }
        match (headers.simple, self.accept_simple) {
            (Some(sig), true) => self.check_simple(sig, timestamp, body),
            _ => Err(SignatureError::Mismatch),
        }
    }

    /// Checks only `X-Timestamp` (before the body is parsed); returns it.
    pub fn check_fresh<'h>(
        &self,
        headers: &SignatureHeaders<'h>,
    ) -> Result<&'h str, SignatureError> {
        let header = headers.timestamp.ok_or(SignatureError::MissingTimestamp)?;
        if header.is_empty() || header.len() > 19 || !header.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SignatureError::MalformedTimestamp);
        }
        let secs: u64 = header
            .parse()
            .map_err(|_| SignatureError::MalformedTimestamp)?;
        let sent = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let skew = match self.now.duration_since(sent) {
            Ok(behind) => behind,
            Err(ahead) => ahead.duration(),
        };
        if skew > MAX_SKEW {
            return Err(SignatureError::TimestampOutOfWindow {
                skew_secs: skew.as_secs(),
            });
        }
        Ok(header)
    }

    fn check_simple(
        &self,
        sig: &str,
        header_timestamp: &str,
        body: &Value,
    ) -> Result<Method, SignatureError> {
        let field = |name: &str| match body.get(name) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                String::from_utf8_lossy(&canonical::canonical_json(other, canonical::Style::SEEDS))
                    .into_owned()
            }
        };
        let rest = format!(
            "{}:{}:{}",
            field("session_id"),
            field("status"),
            field("webhook_type")
        );
        let body_timestamp = field("timestamp");
        let messages = [
            format!("{body_timestamp}:{rest}"),
            format!("{header_timestamp}:{rest}"),
        ];
        if self.matches(sig, messages.iter().map(String::as_bytes)) {
            Ok(Method::Simple)
        } else {
            Err(SignatureError::Mismatch)
        }
    }

    /// Whether the hex `sig` is the HMAC of any of `messages`.
    fn matches<'m>(&self, sig: &str, messages: impl IntoIterator<Item = &'m [u8]>) -> bool {
        let Ok(expected) = hex::decode(sig) else {
            return false;
        };
        messages.into_iter().any(|message| {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.secret.hmac_key()) else {
                return false;
            };
            mac.update(message);
            mac.verify_slice(&expected).is_ok()
        })
    }
}

/// The hex HMAC-SHA256 of `message` (for senders: the sandbox and tests).
pub fn sign(secret: &WebhookSecret, message: &[u8]) -> String {
    // HMAC takes keys of any length, so this never falls back; an empty
    // signature would match nothing anyway.
    Hmac::<Sha256>::new_from_slice(secret.hmac_key())
        .map(|mut mac| {
            mac.update(message);
            hex::encode(mac.finalize().into_bytes())
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;

    fn verifier(secret: &WebhookSecret, accept_simple: bool) -> Verifier<'_> {
        Verifier {
            secret,
            accept_simple,
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(NOW),
        }
    }

    fn headers<'a>(timestamp: &'a str, v2: Option<&'a str>) -> SignatureHeaders<'a> {
        SignatureHeaders {
            timestamp: Some(timestamp),
            v2,
            ..Default::default()
        }
    }

    #[test]
    fn the_timestamp_window_is_300_seconds_both_ways() {
        let secret = WebhookSecret::new("k".into());
        let body = json!({"webhook_type": "status.updated"});
        let sig = sign(
            &secret,
            &canonical::canonical_json(&body, canonical::Style::SEEDS),
        );
        let v = verifier(&secret, false);
        for (ts, ok) in [
            (NOW - 300, true),
            (NOW + 300, true),
            (NOW - 301, false),
            (NOW + 301, false),
        ] {
            let ts = ts.to_string();
            let got = v.verify(&headers(&ts, Some(&sig)), b"", &body);
            assert_eq!(got.is_ok(), ok, "{ts}: {got:?}");
        }
        for bad in ["", "17e8", "-1", "1700000000.5", "99999999999999999999"] {
            assert_eq!(
                v.verify(&headers(bad, Some(&sig)), b"", &body),
                Err(SignatureError::MalformedTimestamp),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn simple_alone_needs_the_setting_and_covers_its_four_fields() {
        let secret = WebhookSecret::new("k".into());
        let body = json!({"timestamp": NOW, "session_id": "s", "status": "Approved", "webhook_type": "status.updated"});
        let sig = sign(
            &secret,
            format!("{NOW}:s:Approved:status.updated").as_bytes(),
        );
        let ts = NOW.to_string();
        let h = SignatureHeaders {
            timestamp: Some(&ts),
            simple: Some(&sig),
            ..Default::default()
        };
        assert_eq!(
            verifier(&secret, false).verify(&h, b"", &body),
            Err(SignatureError::SimpleNotAccepted)
        );
        assert_eq!(
            verifier(&secret, true).verify(&h, b"", &body),
            Ok(Method::Simple)
        );
        let tampered = json!({"timestamp": NOW, "session_id": "s", "status": "Declined", "webhook_type": "status.updated"});
        assert_eq!(
            verifier(&secret, true).verify(&h, b"", &tampered),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn repeated_headers_are_refused() {
        let mut map = HeaderMap::new();
        map.append(V2_SIGNATURE_HEADER, "aa".parse().unwrap());
        map.append(V2_SIGNATURE_HEADER, "bb".parse().unwrap());
        assert_eq!(
            SignatureHeaders::from_headers(&map).unwrap_err(),
            SignatureError::MalformedHeader(V2_SIGNATURE_HEADER)
        );
    }
}
