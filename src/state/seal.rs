//! Sealing what goes to Redis: AES-256-GCM with a random 96-bit nonce per
//! value and the Redis key name as associated data, so a Redis dump holds
//! no readable personal data and a sealed value moved to another key does
//! not open.
//!
//! Layout of a sealed value: one version byte (1), the 12-byte nonce, then
//! the ciphertext with its 16-byte tag.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore as _;
use zeroize::Zeroizing;

use super::StateError;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// A 256-bit key; never shown by `Debug`.
#[derive(Clone)]
pub struct EncryptionKey(Zeroizing<[u8; 32]>);

impl EncryptionKey {
    /// The key made of exactly 32 bytes, or `None`.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let array: [u8; 32] = bytes.try_into().ok()?;
        Some(Self(Zeroizing::new(array)))
    }

    /// A fresh random key (tests, and a starting point for operators).
    pub fn random() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(key.as_mut());
        Self(key)
    }
}

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptionKey(<redacted>)")
    }
}

/// Seals and opens values bound to their key names.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl Sealer {
    /// A sealer with `key`.
    pub fn new(key: &EncryptionKey) -> Self {
        let key: &[u8; 32] = &key.0;
        Self {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    /// Encrypts `plain` for storage under the key `name`.
    pub fn seal(&self, name: &str, plain: &[u8]) -> Result<Vec<u8>, StateError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| StateError::Corrupt("sealing failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts a value read from the key `name`; fails if it was sealed
    /// with another key, for another name, or altered.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, StateError> {
        let corrupt = || {
            StateError::Corrupt(
                "a stored value does not open with this encryption key for this key name".into(),
            )
        };
        let (&version, rest) = sealed.split_first().ok_or_else(corrupt)?;
        if version != VERSION || rest.len() < NONCE_LEN {
            return Err(corrupt());
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| corrupt())?;
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| corrupt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_name() {
        let key = EncryptionKey::random();
        let sealer = Sealer::new(&key);
        let sealed = sealer.seal("dsg:record:{t:ab}", b"Jane Doe").unwrap();
        assert!(!sealed.windows(8).any(|w| w == b"Jane Doe"));
        assert_eq!(
            sealer.open("dsg:record:{t:ab}", &sealed).unwrap(),
            b"Jane Doe"
        );
        assert!(sealer.open("dsg:record:{t:cd}", &sealed).is_err());
        assert!(
            Sealer::new(&EncryptionKey::random())
                .open("dsg:record:{t:ab}", &sealed)
                .is_err()
        );
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert!(sealer.open("dsg:record:{t:ab}", &altered).is_err());
        assert!(sealer.open("dsg:record:{t:ab}", &sealed[..5]).is_err());
        // A fresh nonce each time.
        assert_ne!(
            sealed,
            sealer.seal("dsg:record:{t:ab}", b"Jane Doe").unwrap()
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = EncryptionKey::from_bytes(&[0x41; 32]).unwrap();
        assert_eq!(format!("{key:?}"), "EncryptionKey(<redacted>)");
    }
}
