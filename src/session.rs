//! The plain-Rust domain of the gateway: what a caller asks for (share,
//! import) and what Didit gives back, independent of gRPC and of JSON.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

/// Token lifetime bounds Didit enforces (seconds).
pub const TTL_MIN_SECONDS: u32 = 60;
/// Upper bound of `ttl_in_seconds`.
pub const TTL_MAX_SECONDS: u32 = 86_400;
/// What Didit uses when no TTL is sent.
pub const TTL_DEFAULT_SECONDS: u32 = 3_600;

/// A validated request to mint a share token.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ShareRequest {
    /// The finished session to share, owned by the tenant's application.
    pub session_id: Uuid,
    /// The partner application that may import it.
    pub for_application_id: Uuid,
    /// Token lifetime, already checked against the bounds above.
    pub ttl_seconds: u32,
}

/// A freshly minted share token and what Didit says about it.
#[derive(Clone, Debug)]
pub struct ShareOutcome {
    /// The one-time JWT; a secret, redacted in Debug.
    pub share_token: ShareToken,
    /// The application the token is scoped to, as Didit echoed it.
    pub for_application_id: String,
    /// Whether the shared session is KYC or KYB.
    pub session_kind: SessionKind,
    /// When the token stops being importable.
    pub expires_at: SystemTime,
}

/// A validated request to import a shared session.
#[derive(Clone, Debug)]
pub struct ImportRequest {
    /// The token the partner handed over.
    pub share_token: ShareToken,
    /// What must match for a stored result to be replayed.
    pub params: ImportParams,
}

/// The import parameters besides the token; a replay is only given when a
/// retry repeats them exactly.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImportParams {
    /// The importing application's workflow (KYC or KYB).
    pub workflow_id: String,
    /// The importer's own user or business id; empty means not sent.
    pub vendor_data: String,
    /// Keep the partner's decision (true) or land In Review (false).
    pub trust_review: bool,
}

/// A session Didit created by an import, kept as the exact upstream bytes
/// plus the few fields the gateway itself needs. The check arrays are decoded
/// from `raw` only when a response is built, so what is stored is what Didit
/// sent and nothing more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedSession {
    /// The exact upstream body (personal data: documents, selfies, AML hits).
    pub raw: Bytes,
    /// The new session's id in the importing application.
    pub session_id: String,
    /// KYC or KYB, from `session_kind`.
    pub session_kind: SessionKind,
    /// The exact upstream status string.
    pub status_raw: String,
}

impl ImportedSession {
    /// The normalised status.
    pub fn status(&self) -> SessionStatus {
        SessionStatus::from_raw(&self.status_raw)
    }
}

/// A share token. Debug and Display never print it.
#[derive(Clone)]
pub struct ShareToken(SecretString);

impl ShareToken {
    /// Wraps a token received from a caller or from Didit.
    pub fn new(token: String) -> Self {
        Self(SecretString::from(token))
    }

    /// The token itself, for the one place that sends it (upstream body,
    /// the caller's response) and for hashing.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The `exp` claim, read without verifying the signature (only Didit
    /// can). Used to report `expires_at` and to bound replays; never trusted
    /// for an access decision.
    pub fn unverified_expiry(&self) -> Option<SystemTime> {
        use base64::Engine as _;
        let payload = self.expose().split('.').nth(1)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()?;
        #[derive(serde::Deserialize)]
        struct Claims {
            exp: u64,
        }
        let claims: Claims = serde_json::from_slice(&bytes).ok()?;
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(claims.exp))
    }
}

impl std::fmt::Debug for ShareToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShareToken([REDACTED])")
    }
}

/// KYC (`user`) or KYB (`business`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionKind {
    /// A person (KYC).
    User,
    /// A company (KYB).
    Business,
}

impl SessionKind {
    /// Didit's lowercase wire value.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "user" => Some(Self::User),
            "business" => Some(Self::Business),
            _ => None,
        }
    }

    /// Didit's lowercase wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Business => "business",
        }
    }
}

/// Didit's session statuses, normalised across KYC Title Case and KYB
/// UPPER_SNAKE. `Unknown` keeps the gateway working when Didit adds one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionStatus {
    Approved,
    Declined,
    InReview,
    NotFinished,
    InProgress,
    NotStarted,
    Abandoned,
    Expired,
    KycExpired,
    Resubmitted,
    AwaitingUser,
    Unknown,
}

impl SessionStatus {
    /// Normalises "In Review", "IN_REVIEW", "in review" alike.
    pub fn from_raw(raw: &str) -> Self {
        let mut key = String::with_capacity(raw.len());
        for c in raw.trim().chars() {
            key.push(if c == ' ' || c == '-' {
                '_'
            } else {
                c.to_ascii_uppercase()
            });
        }
        match key.as_str() {
            "APPROVED" => Self::Approved,
            "DECLINED" => Self::Declined,
            "IN_REVIEW" => Self::InReview,
            "NOT_FINISHED" => Self::NotFinished,
            "IN_PROGRESS" => Self::InProgress,
            "NOT_STARTED" => Self::NotStarted,
            "ABANDONED" => Self::Abandoned,
            "EXPIRED" => Self::Expired,
            "KYC_EXPIRED" => Self::KycExpired,
            "RESUBMITTED" => Self::Resubmitted,
            "AWAITING_USER" => Self::AwaitingUser,
            _ => Self::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_normalise_both_casings() {
        for (raw, want) in [
            ("Approved", SessionStatus::Approved),
            ("APPROVED", SessionStatus::Approved),
            ("In Review", SessionStatus::InReview),
            ("IN_REVIEW", SessionStatus::InReview),
            ("Kyc Expired", SessionStatus::KycExpired),
            ("KYC_EXPIRED", SessionStatus::KycExpired),
            ("Awaiting User", SessionStatus::AwaitingUser),
            ("Not Finished", SessionStatus::NotFinished),
            ("Brand New Status", SessionStatus::Unknown),
        ] {
            assert_eq!(SessionStatus::from_raw(raw), want, "{raw}");
        }
    }

    #[test]
    fn token_is_redacted_and_expiry_is_read() {
        // {"alg":"HS256"} . {"exp":2000000000} . sig
        let token = ShareToken::new("eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjIwMDAwMDAwMDB9.c2ln".into());
        assert_eq!(format!("{token:?}"), "ShareToken([REDACTED])");
        assert_eq!(
            token.unverified_expiry(),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000))
        );
        assert_eq!(ShareToken::new("garbage".into()).unverified_expiry(), None);
    }
}
