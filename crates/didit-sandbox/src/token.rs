//! Share tokens: real HS256 JWTs (header `{"alg":"HS256","typ":"JWT"}`),
//! signed with a random secret each sandbox draws at start, built from
//! hmac + sha2 + base64 alone.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use super::model::SessionKind;

/// `{"alg":"HS256","typ":"JWT"}`, base64url encoded once.
const HEADER_B64: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// Tokens longer than this are refused before any decoding.
const MAX_TOKEN_LEN: usize = 4096;

/// What a share token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claims {
    /// Fresh for every share; with the importer it keys the one-time import.
    pub(crate) jti: Uuid,
    /// The shared session, in the sharing application.
    pub(crate) session_id: Uuid,
    /// The application that shared it.
    pub(crate) from_application_id: Uuid,
    /// The only application that may import it.
    pub(crate) for_application_id: Uuid,
    /// KYC (`user`) or KYB (`business`); picks the workflow kind on import.
    pub(crate) session_kind: SessionKind,
    /// Issued at, sandbox clock, Unix seconds.
    pub(crate) iat: i64,
    /// Expiry, sandbox clock, Unix seconds.
    pub(crate) exp: i64,
}

/// The token is malformed, badly signed or carries unreadable claims.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid share token")]
pub(crate) struct InvalidToken;

/// The signing key. Debug never shows it.
#[derive(Clone)]
pub(crate) struct TokenKey {
    /// HMAC-SHA256 keyed with the secret; cloned per use.
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    /// A key from `secret` (any length works for HMAC).
    pub(crate) fn new(secret: &[u8]) -> Result<TokenKey, hmac::digest::InvalidLength> {
        Ok(TokenKey {
            mac: Hmac::<Sha256>::new_from_slice(secret)?,
        })
    }

    /// A key from 32 fresh random bytes.
    pub(crate) fn random() -> Result<TokenKey, hmac::digest::InvalidLength> {
        TokenKey::new(&rand::random::<[u8; 32]>())
    }

    /// Encodes and signs `claims`.
    pub(crate) fn sign(&self, claims: &Claims) -> String {
        // Serializing a struct of uuids, an enum and integers cannot fail;
        // an empty payload would only yield a token the sandbox refuses.
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let mut token = String::with_capacity(64 + payload.len() * 2);
        token.push_str(HEADER_B64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let mut mac = self.mac.clone();
        mac.update(token.as_bytes());
        let signature = mac.finalize().into_bytes();
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        token
    }

    /// Checks the signature and header, then reads the claims.
    pub(crate) fn verify(&self, token: &str) -> Result<Claims, InvalidToken> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(InvalidToken);
        }
        let (signed, signature) = token.rsplit_once('.').ok_or(InvalidToken)?;
        let (header, payload) = signed.split_once('.').ok_or(InvalidToken)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| InvalidToken)?;
        let mut mac = self.mac.clone();
        mac.update(signed.as_bytes());
        mac.verify_slice(&signature).map_err(|_| InvalidToken)?;

        let header: Header = decode_json(header)?;
        if header.alg != "HS256" {
            return Err(InvalidToken);
        }
        decode_json(payload)
    }
}

/// The JOSE header fields the sandbox checks.
#[derive(Deserialize)]
struct Header {
    alg: String,
}

fn decode_json<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, InvalidToken> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| InvalidToken)?;
    serde_json::from_slice(&bytes).map_err(|_| InvalidToken)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            jti: Uuid::from_u128(1),
            session_id: Uuid::from_u128(2),
            from_application_id: Uuid::from_u128(3),
            for_application_id: Uuid::from_u128(4),
            session_kind: SessionKind::Business,
            iat: 1_700_000_000,
            exp: 1_700_003_600,
        }
    }

    fn key(secret: &[u8]) -> TokenKey {
        match TokenKey::new(secret) {
            Ok(key) => key,
            Err(e) => panic!("hmac key: {e}"),
        }
    }

    #[test]
    fn header_constant_is_the_hs256_header() {
        let decoded = URL_SAFE_NO_PAD.decode(HEADER_B64).unwrap_or_default();
        assert_eq!(decoded, br#"{"alg":"HS256","typ":"JWT"}"#);
    }

    #[test]
    fn signed_token_verifies_and_matches_a_known_vector() {
        let k = key(b"sandbox-test-secret");
        let token = k.sign(&claims());
        assert_eq!(k.verify(&token), Ok(claims()));
        // Independent check of the signature with a fresh HMAC.
        let (signed, sig) = token.rsplit_once('.').unwrap_or_default();
        let mut mac = Hmac::<Sha256>::new_from_slice(b"sandbox-test-secret")
            .unwrap_or_else(|e| panic!("{e}"));
        mac.update(signed.as_bytes());
        assert_eq!(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()), sig);
    }

    #[test]
    fn tampering_or_another_key_is_refused() {
        let k = key(b"one");
        let token = k.sign(&claims());
        assert_eq!(key(b"two").verify(&token), Err(InvalidToken));

        let mut forged = claims();
        forged.for_application_id = Uuid::from_u128(99);
        let other = k.sign(&forged);
        let (_, forged_payload, _) = split3(&other);
        let (h, _, s) = split3(&token);
        assert_eq!(
            k.verify(&format!("{h}.{forged_payload}.{s}")),
            Err(InvalidToken)
        );

        for junk in [
            "",
            ".",
            "..",
            "a.b.c",
            "a.b",
            &token[..token.len() - 2],
            &format!("{token}="),
        ] {
            assert_eq!(k.verify(junk), Err(InvalidToken), "{junk:?}");
        }
        assert_eq!(k.verify(&"a".repeat(MAX_TOKEN_LEN + 1)), Err(InvalidToken));
    }

    #[test]
    fn well_signed_but_wrong_alg_or_claims_is_refused() {
        let k = key(b"k");
        let sign_raw = |header: &str, payload: &str| {
            let signed = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(payload)
            );
            let mut mac = k.mac.clone();
            mac.update(signed.as_bytes());
            format!(
                "{signed}.{}",
                URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
            )
        };
        let good_payload = serde_json::to_string(&claims()).unwrap_or_default();
        assert!(
            k.verify(&sign_raw(r#"{"alg":"HS256"}"#, &good_payload))
                .is_ok()
        );
        assert_eq!(
            k.verify(&sign_raw(r#"{"alg":"none"}"#, &good_payload)),
            Err(InvalidToken)
        );
        assert_eq!(
            k.verify(&sign_raw(r#"{"alg":"HS256"}"#, r#"{"jti":"x"}"#)),
            Err(InvalidToken)
        );
        assert_eq!(
            k.verify(&sign_raw(r#"{"alg":"HS256"}"#, "not json")),
            Err(InvalidToken)
        );
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", key(b"secret")), "TokenKey(<redacted>)");
    }

    fn split3(token: &str) -> (&str, &str, &str) {
        let mut parts = token.splitn(3, '.');
        (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        )
    }
}
