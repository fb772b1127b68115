//! Reading a share token's claims without verifying it.
//!
//! A share token is an HS256 JWT that Didit signs with its own secret; only
//! Didit can verify it, and Didit does on every import. The gateway reads
//! the claims (who shared which session, of what kind, until when) only to
//! feed its own decisions: the partner policy, and finding an import again
//! when Didit's answer was lost. A token whose claims cannot be read is
//! reported as such; nothing here trusts a claim for authentication.
//!
//! The reader is strict and bounded: at most [`MAX_TOKEN_LEN`] bytes, three
//! base64url segments without padding, a JSON object payload with the
//! claims Didit's tokens carry. Errors never contain the token.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use uuid::Uuid;

use crate::session::SessionKind;

/// Tokens longer than this are not decoded.
pub const MAX_TOKEN_LEN: usize = 4096;

/// What a share token says about itself (unverified).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareTokenClaims {
    /// The shared session, in the sharing application.
    pub session_id: Uuid,
    /// The application that minted the token (the partner, for an import).
    pub from_application_id: Uuid,
    /// The only application that may import it.
    pub for_application_id: Uuid,
    /// KYC (`user`) or KYB (`business`).
    pub session_kind: SessionKind,
    /// Expiry, Unix seconds.
    pub exp: i64,
}

/// Why the claims could not be read (never contains the token).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("share token is too long")]
    TooLong,
    /// Not three dot-separated segments.
    #[error("share token is not a JWT")]
    NotJwt,
    /// The payload is not base64url.
    #[error("share token payload is not base64url")]
    NotBase64,
    /// The payload is not a JSON object with the expected claims.
    #[error("share token claims are unreadable")]
    BadClaims,
}

/// The payload as Didit writes it; extra claims (`jti`, `iat`) are ignored.
#[derive(Deserialize)]
struct RawClaims {
    session_id: Uuid,
    from_application_id: Uuid,
    for_application_id: Uuid,
    session_kind: String,
    exp: i64,
}

/// Reads the claims of `token` without checking its signature.
pub fn read_claims(token: &str) -> Result<ShareTokenClaims, ClaimsError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(ClaimsError::TooLong);
    }
    let mut segments = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(ClaimsError::NotJwt);
    };
    if header.is_empty() || payload.is_empty() || signature.is_empty() {
        return Err(ClaimsError::NotJwt);
    }
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| ClaimsError::NotBase64)?;
    let raw: RawClaims = serde_json::from_slice(&json).map_err(|_| ClaimsError::BadClaims)?;
    Ok(ShareTokenClaims {
        session_id: raw.session_id,
        from_application_id: raw.from_application_id,
        for_application_id: raw.for_application_id,
        session_kind: SessionKind::parse(&raw.session_kind).ok_or(ClaimsError::BadClaims)?,
        exp: raw.exp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: &str = "11111111-1111-4111-8111-111111111111";
    const FROM: &str = "22222222-2222-4222-8222-222222222222";
    const FOR: &str = "33333333-3333-4333-8333-333333333333";

    fn token(payload: &str) -> String {
        format!(
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{}.c2lnbmF0dXJl",
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    fn payload(kind: &str) -> String {
        format!(
            r#"{{"jti":"{SESSION}","session_id":"{SESSION}","from_application_id":"{FROM}","for_application_id":"{FOR}","session_kind":"{kind}","iat":1700000000,"exp":1700003600}}"#
        )
    }

    #[test]
    fn a_didit_token_reads() {
        let claims = read_claims(&token(&payload("business"))).unwrap();
        assert_eq!(claims.session_id.to_string(), SESSION);
        assert_eq!(claims.from_application_id.to_string(), FROM);
        assert_eq!(claims.for_application_id.to_string(), FOR);
        assert_eq!(claims.session_kind, SessionKind::Business);
        assert_eq!(claims.exp, 1_700_003_600);
    }

    #[test]
    fn anything_else_is_refused_without_echoing_the_token() {
        for (bad, why) in [
            (String::new(), ClaimsError::NotJwt),
            ("a.b".to_owned(), ClaimsError::NotJwt),
            ("a.b.c.d".to_owned(), ClaimsError::NotJwt),
            ("a..c".to_owned(), ClaimsError::NotJwt),
            ("a.!!!.c".to_owned(), ClaimsError::NotBase64),
            (token("not json"), ClaimsError::BadClaims),
            (token("[]"), ClaimsError::BadClaims),
            (token(&payload("person")), ClaimsError::BadClaims),
            (
                token(&payload("user").replace(FROM, "x")),
                ClaimsError::BadClaims,
            ),
            ("a".repeat(MAX_TOKEN_LEN + 1), ClaimsError::TooLong),
        ] {
            let err = read_claims(&bad).unwrap_err();
            assert_eq!(err, why, "{bad:?}");
            assert!(!err.to_string().contains(&bad) || bad.is_empty());
        }
    }

    proptest::proptest! {
        /// Any input reads or is refused; nothing panics.
        #[test]
        fn arbitrary_input_never_panics(input in "[ -~]{0,300}") {
            let _ = read_claims(&input);
        }

        /// Any well-formed claims read back as written.
        #[test]
        fn well_formed_claims_round_trip(exp in proptest::num::i64::ANY, business in proptest::bool::ANY) {
            let kind = if business { "business" } else { "user" };
            let text = payload(kind).replace("1700003600", &exp.to_string());
            let claims = read_claims(&token(&text)).unwrap();
            proptest::prop_assert_eq!(claims.exp, exp);
            proptest::prop_assert_eq!(claims.session_kind == SessionKind::Business, business);
        }
    }
}
