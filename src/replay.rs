//! The replay store: successful imports, kept for a short window so that a
//! retried import gets the same session back instead of Didit's 403.
//!
//! It holds personal data, so it is bounded by bytes and by time, lives
//! only in memory, is keyed by a hash of the token (never the token), and
//! every key includes the tenant: no tenant can read another's result.

use std::sync::Arc;

use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use sha2::{Digest, Sha256};

use crate::config::ReplayConfig;
use crate::metrics::Metrics;
use crate::session::{ImportParams, ImportedSession, ShareToken};

/// Identifies one import: the tenant and the SHA-256 of the share token.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImportKey {
    tenant: Arc<str>,
    token_sha256: [u8; 32],
}

impl ImportKey {
    /// The key of `token` imported by `tenant`.
    pub fn new(tenant: &str, token: &ShareToken) -> Self {
        Self {
            tenant: Arc::from(tenant),
            token_sha256: Sha256::digest(token.expose().as_bytes()).into(),
        }
    }
}

/// A stored import: what was asked and what Didit created.
#[derive(Debug)]
pub struct StoredImport {
    /// The parameters of the import that created it; a replay needs equal ones.
    pub params: ImportParams,
    /// The session Didit created.
    pub session: ImportedSession,
}

/// What an entry costs beyond its strings: the cache's own entry, the
/// key, the `Arc`s and the allocator's headers. Measured by the benchmark
/// (README, Performance, section 4): the gateway's resident memory grew
/// by about 950 bytes per entry more than the strings' lengths.
const ENTRY_OVERHEAD_BYTES: usize = 1024;

impl StoredImport {
    /// Approximate heap bytes, for the store's byte bound.
    fn weight(&self) -> u32 {
        let bytes = self.session.raw.len()
            + self.session.session_id.len()
            + self.session.status_raw.len()
            + self.params.workflow_id.len()
            + self.params.vendor_data.len()
            + ENTRY_OVERHEAD_BYTES;
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

/// The store itself.
#[derive(Clone)]
pub struct ReplayStore {
    cache: moka::future::Cache<ImportKey, Arc<StoredImport>>,
    /// `dsg_import_replay_bytes`: added on insert, taken off by the listener.
    bytes: prometheus_client::metrics::gauge::Gauge,
    /// `dsg_import_replay_entries`, likewise.
    entries: prometheus_client::metrics::gauge::Gauge,
}

impl ReplayStore {
    /// An empty store.
    pub fn new(config: ReplayConfig, metrics: &Metrics) -> Self {
        let evictions = metrics.replay_evictions.clone();
        metrics
            .replay_max_bytes
            .set(i64::try_from(config.max_bytes).unwrap_or(i64::MAX));
        // Every value that leaves the store (evicted, expired, replaced)
        // passes the listener once: the gauges follow inserts exactly.
        let (bytes, entries) = (metrics.replay_bytes.clone(), metrics.replay_entries.clone());
        let cache = moka::future::Cache::builder()
            // Least recently used goes first, and every new result is
            // admitted. moka's default (TinyLFU) admits a newcomer only if
            // it looks more popular than the entry it would evict; a replay
            // entry is read at most a few times, so once the store was full
            // it refused about a third of fresh imports (benchmark, section
            // 4), and their retries got ALREADY_IMPORTED instead of a replay.
            .eviction_policy(EvictionPolicy::lru())
            .max_capacity(config.max_bytes)
            .weigher(|_key, value: &Arc<StoredImport>| value.weight())
            .time_to_live(config.window)
            .eviction_listener(move |_key, value: Arc<StoredImport>, cause| {
                bytes.dec_by(i64::from(value.weight()));
                entries.dec();
                if cause == RemovalCause::Size {
                    evictions.inc();
                }
            })
            .build();
        Self {
            cache,
            bytes: metrics.replay_bytes.clone(),
            entries: metrics.replay_entries.clone(),
        }
    }

    /// The stored import for `key`, if it is still within the window.
    pub async fn get(&self, key: &ImportKey) -> Option<Arc<StoredImport>> {
        self.cache.get(key).await
    }

    /// Stores a successful import.
    pub async fn insert(&self, key: ImportKey, value: Arc<StoredImport>) {
        self.bytes.inc_by(i64::from(value.weight()));
        self.entries.inc();
        self.cache.insert(key, value).await;
    }

    /// Bytes held now (after pending maintenance).
    pub async fn weighted_size(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.weighted_size()
    }

    /// Entries held now (after pending maintenance).
    pub async fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::session::{ImportParams, ImportedSession, SessionKind, ShareToken};

    fn stored(raw_len: usize) -> Arc<StoredImport> {
        Arc::new(StoredImport {
            params: ImportParams {
                workflow_id: "wf".into(),
                vendor_data: String::new(),
                trust_review: false,
            },
            session: ImportedSession {
                raw: vec![b' '; raw_len].into(),
                session_id: "s".into(),
                session_kind: SessionKind::User,
                status_raw: "In Review".into(),
            },
        })
    }

    #[tokio::test]
    async fn a_full_store_keeps_the_latest_imports() {
        let entry = stored(4096);
        let weight = u64::from(entry.weight());
        let store = ReplayStore::new(
            ReplayConfig {
                window: Duration::from_secs(600),
                max_bytes: 100 * weight,
            },
            &Metrics::new(),
        );
        let key = |i: usize| ImportKey::new("t", &ShareToken::new(format!("token-{i}")));
        for i in 0..1_000 {
            store.insert(key(i), Arc::clone(&entry)).await;
        }
        assert!(store.weighted_size().await <= 100 * weight);
        for i in 950..1_000 {
            assert!(store.get(&key(i)).await.is_some(), "import {i} was dropped");
        }
    }
}
