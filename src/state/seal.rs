//! Sealing what goes to Redis: AES-256-GCM with a random 96-bit nonce per
//! value and the Redis key name as associated data, so a Redis dump holds
//! no readable personal data and a sealed value moved to another key does
//! not open.
//!
//! Layout of a sealed value: one version byte (1), the 12-byte nonce, then
//! the ciphertext with its 16-byte tag.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use bytes::Bytes;
use rand::RngCore as _;
use zeroize::Zeroizing;

use super::StateError;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

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

    /// Encrypts `plain` for storage under the key `name`, in the buffer
    /// that is returned (one copy of `plain`, as [`Self::open`] makes none).
    pub fn seal(&self, name: &str, plain: &[u8]) -> Result<Vec<u8>, StateError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(1 + NONCE_LEN + plain.len() + TAG_LEN);
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self
            .cipher
            .encrypt_inout_detached(
                &Nonce::from(nonce),
                name.as_bytes(),
                (&mut out[1 + NONCE_LEN..]).into(),
            )
            .map_err(|_| StateError::Corrupt("sealing failed".into()))?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Decrypts a value read from the key `name` where it lies (the
    /// plaintext is a slice of `sealed`'s own buffer, not a copy); fails if
    /// it was sealed with another key, for another name, or altered.
    pub fn open(&self, name: &str, mut sealed: Vec<u8>) -> Result<Bytes, StateError> {
        let corrupt = || {
            StateError::Corrupt(
                "a stored value does not open with this encryption key for this key name".into(),
            )
        };
        if sealed.first() != Some(&VERSION) || sealed.len() < 1 + NONCE_LEN + TAG_LEN {
            return Err(corrupt());
        }
        let (head, rest) = sealed.split_at_mut(1 + NONCE_LEN);
        let (ciphertext, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let nonce: [u8; NONCE_LEN] = head[1..].try_into().map_err(|_| corrupt())?;
        let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| corrupt())?;
        self.cipher
            .decrypt_inout_detached(
                &Nonce::from(nonce),
                name.as_bytes(),
                ciphertext.into(),
                &Tag::from(tag),
            )
            .map_err(|_| corrupt())?;
        let end = sealed.len() - TAG_LEN;
        Ok(Bytes::from(sealed).slice(1 + NONCE_LEN..end))
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
            sealer.open("dsg:record:{t:ab}", sealed.clone()).unwrap(),
            &b"Jane Doe"[..]
        );
        assert!(sealer.open("dsg:record:{t:cd}", sealed.clone()).is_err());
        assert!(
            Sealer::new(&EncryptionKey::random())
                .open("dsg:record:{t:ab}", sealed.clone())
                .is_err()
        );
        // A flipped bit anywhere: version, nonce, ciphertext or tag.
        for at in [0, 1, 13, sealed.len() - 17, sealed.len() - 1] {
            let mut altered = sealed.clone();
            altered[at] ^= 1;
            assert!(sealer.open("dsg:record:{t:ab}", altered).is_err(), "{at}");
        }
        for cut in 0..sealed.len() {
            assert!(
                sealer
                    .open("dsg:record:{t:ab}", sealed[..cut].to_vec())
                    .is_err()
            );
        }
        // Empty plaintext: the shortest value that opens.
        let empty = sealer.seal("k", b"").unwrap();
        assert_eq!(sealer.open("k", empty).unwrap(), Bytes::new());
        // A fresh nonce each time.
        assert_ne!(
            sealed,
            sealer.seal("dsg:record:{t:ab}", b"Jane Doe").unwrap()
        );
    }

    #[test]
    fn the_layout_is_aes_gcm_s_own_ciphertext_then_tag() {
        // What `Aead::encrypt` writes (and earlier versions stored) opens,
        // and what `seal` writes is exactly that after version and nonce.
        use aes_gcm::aead::{Aead, Payload};
        let sealer = Sealer::new(&EncryptionKey::random());
        let sealed = sealer.seal("k", b"Jane Doe").unwrap();
        let nonce: [u8; NONCE_LEN] = sealed[1..1 + NONCE_LEN].try_into().unwrap();
        let one_shot = sealer
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: b"Jane Doe",
                    aad: b"k",
                },
            )
            .unwrap();
        assert_eq!(sealed[1 + NONCE_LEN..], one_shot[..]);
        let value = [&[VERSION][..], &nonce, &one_shot].concat();
        assert_eq!(sealer.open("k", value).unwrap(), &b"Jane Doe"[..]);
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = EncryptionKey::from_bytes(&[0x41; 32]).unwrap();
        assert_eq!(format!("{key:?}"), "EncryptionKey(<redacted>)");
    }
}
