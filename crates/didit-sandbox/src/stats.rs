//! Call counters: what reached the v3 endpoints, what succeeded, what the
//! fault injector and the rate limiter did, and calls per API key (named
//! by a hash prefix, never by the key).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::api_error::Endpoint;

/// A snapshot of the counters; `GET /_sandbox/stats` serves the same
/// numbers (plus entity counts).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    /// Requests that reached `POST /v3/session/{id}/share/`, whatever the outcome.
    pub share_calls: u64,
    /// Requests that reached `POST /v3/session/import-shared/`, whatever the outcome.
    pub import_calls: u64,
    /// Requests that reached `POST /v3/webhook/destinations/`.
    pub webhook_calls: u64,
    /// Requests that reached `GET /v3/sessions/`, whatever the outcome.
    #[serde(default)]
    pub list_calls: u64,
    /// Requests that reached `GET /v3/session/{id}/decision/`, whatever the outcome.
    #[serde(default)]
    pub decision_calls: u64,
    /// Shares that minted a token (dropped responses included).
    pub share_ok: u64,
    /// Imports that created a session (dropped responses included).
    pub import_ok: u64,
    /// Injected error answers (`fail_next`, `error_rate`, `rate_limit_after`).
    pub faults_injected: u64,
    /// 429s from the configured write rate limit.
    pub rate_limited: u64,
    /// Responses whose connection was dropped on purpose (`drop_next`, `drop_rate`).
    pub dropped: u64,
    /// v3 calls per API key; the key is the first 12 hex chars of its sha256.
    pub calls_by_key: BTreeMap<String, u64>,
}

/// The first 12 hex chars of sha256(api key): names a key in stats and the
/// rate limiter without revealing it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct KeyId(String);

impl KeyId {
    pub(crate) fn of(api_key: &[u8]) -> KeyId {
        let digest = Sha256::digest(api_key);
        KeyId(hex::encode(&digest[..6]))
    }
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    share_calls: AtomicU64,
    import_calls: AtomicU64,
    webhook_calls: AtomicU64,
    list_calls: AtomicU64,
    decision_calls: AtomicU64,
    share_ok: AtomicU64,
    import_ok: AtomicU64,
    faults_injected: AtomicU64,
    rate_limited: AtomicU64,
    dropped: AtomicU64,
    by_key: Mutex<BTreeMap<KeyId, u64>>,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// A request reached `endpoint`.
    pub(crate) fn call(&self, endpoint: Endpoint, key: Option<&KeyId>) {
        bump(match endpoint {
            Endpoint::Share => &self.share_calls,
            Endpoint::Import => &self.import_calls,
            Endpoint::Webhook => &self.webhook_calls,
            Endpoint::List => &self.list_calls,
            Endpoint::Decision => &self.decision_calls,
        });
        if let Some(key) = key {
            let mut by_key = self.by_key.lock().unwrap_or_else(PoisonError::into_inner);
            match by_key.get_mut(key) {
                Some(n) => *n += 1,
                None => {
                    by_key.insert(key.clone(), 1);
                }
            }
        }
    }

    /// A request to `endpoint` succeeded.
    pub(crate) fn ok(&self, endpoint: Endpoint) {
        match endpoint {
            Endpoint::Share => bump(&self.share_ok),
            Endpoint::Import => bump(&self.import_ok),
            Endpoint::Webhook | Endpoint::List | Endpoint::Decision => {}
        }
    }

    pub(crate) fn fault(&self) {
        bump(&self.faults_injected);
    }

    pub(crate) fn rate_limited(&self) {
        bump(&self.rate_limited);
    }

    pub(crate) fn dropped(&self) {
        bump(&self.dropped);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let by_key = self.by_key.lock().unwrap_or_else(PoisonError::into_inner);
        Stats {
            share_calls: get(&self.share_calls),
            import_calls: get(&self.import_calls),
            webhook_calls: get(&self.webhook_calls),
            list_calls: get(&self.list_calls),
            decision_calls: get(&self.decision_calls),
            share_ok: get(&self.share_ok),
            import_ok: get(&self.import_ok),
            faults_injected: get(&self.faults_injected),
            rate_limited: get(&self.rate_limited),
            dropped: get(&self.dropped),
            calls_by_key: by_key.iter().map(|(k, n)| (k.0.clone(), *n)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_is_a_hash_prefix_not_the_key() {
        let id = KeyId::of(b"sandbox-service-x-key");
        assert_eq!(id.0.len(), 12);
        assert!(id.0.chars().all(|c| c.is_ascii_hexdigit()));
        let full = hex::encode(Sha256::digest(b"sandbox-service-x-key"));
        assert!(full.starts_with(&id.0));
    }

    #[test]
    fn counters_snapshot() {
        let c = Counters::default();
        let key = KeyId::of(b"k");
        c.call(Endpoint::Import, Some(&key));
        c.call(Endpoint::Import, Some(&key));
        c.call(Endpoint::Share, None);
        c.ok(Endpoint::Import);
        let s = c.snapshot();
        assert_eq!(
            (s.import_calls, s.share_calls, s.import_ok, s.share_ok),
            (2, 1, 1, 0)
        );
        assert_eq!(s.calls_by_key.get(&key.0), Some(&2));
        assert_eq!(s.calls_by_key.len(), 1);
    }
}
