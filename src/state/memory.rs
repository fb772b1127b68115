//! The in-process backend: one replica's truth, lost on restart. Same
//! observable semantics as Redis: records and in-doubt marks expire after
//! their TTL (and are bounded by bytes, least recently used first), leases
//! are exclusive until released or expired, waiters are woken when a
//! record is stored or a lease released, budgets use `governor`.
//! Values are kept in plaintext: they never leave the process.

mod budget;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use moka::future::Cache;
use moka::policy::{EvictionPolicy, Expiry};
use tokio::sync::watch;
use tokio::time::Instant;

use super::health::HealthSignal;
use super::keys::Keys;
use super::wait::{self, Probe, Waiters};
use super::{
    Begin, Budget, Charge, Health, ImportId, InDoubt, LeaseOwner, Previous, StateError, WaitOutcome,
};

/// How often a memory waiter re-checks for an expired lease (a release or
/// a stored record wakes it at once).
const POLL: Duration = Duration::from_millis(100);

/// What an entry costs beyond its bytes (moka's entry, key, allocator).
const ENTRY_OVERHEAD_BYTES: usize = 1024;

/// A value with its own time to live.
#[derive(Clone)]
struct Timed<V> {
    value: V,
    ttl: Duration,
    weight: u32,
}

impl<V> Timed<V> {
    fn new(value: V, ttl: Duration, bytes: usize) -> Self {
        let weight = u32::try_from(bytes + ENTRY_OVERHEAD_BYTES).unwrap_or(u32::MAX);
        Self { value, ttl, weight }
    }
}

/// Each entry lives for its own TTL from its last write.
struct OwnTtl;

impl<V> Expiry<ImportId, Timed<V>> for OwnTtl {
    fn expire_after_create(
        &self,
        _: &ImportId,
        value: &Timed<V>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _: &ImportId,
        value: &Timed<V>,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Called once per record evicted for size (not for expiry).
pub type OnEviction = Arc<dyn Fn() + Send + Sync>;

fn cache<V: Clone + Send + Sync + 'static>(
    max_bytes: u64,
    on_eviction: Option<OnEviction>,
) -> Cache<ImportId, Timed<V>> {
    let builder = Cache::builder()
        .eviction_policy(EvictionPolicy::lru())
        .max_capacity(max_bytes)
        .weigher(|_, v: &Timed<V>| v.weight)
        .expire_after(OwnTtl);
    match on_eviction {
        Some(on_eviction) => builder
            .eviction_listener(move |_, _, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    on_eviction();
                }
            })
            .build(),
        None => builder.build(),
    }
}

/// A held lease.
struct Held {
    owner: LeaseOwner,
    until: Instant,
}

/// The in-process store; clones share it.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    records: Cache<ImportId, Timed<Bytes>>,
    in_doubt: Cache<ImportId, Timed<InDoubt>>,
    leases: Mutex<HashMap<ImportId, Held>>,
    waiters: Waiters,
    names: Keys,
    budgets: budget::Budgets,
    health: HealthSignal,
}

impl MemoryStore {
    /// An empty store keeping at most about `max_bytes` of records (and as
    /// much of in-doubt marks).
    pub fn new(max_bytes: u64) -> Self {
        Self::observed(max_bytes, None)
    }

    /// [`MemoryStore::new`], calling `on_eviction` for every record
    /// evicted to keep within `max_bytes`.
    pub fn observed(max_bytes: u64, on_eviction: Option<OnEviction>) -> Self {
        Self {
            inner: Arc::new(Inner {
                records: cache(max_bytes, on_eviction),
                in_doubt: cache(max_bytes, None),
                leases: Mutex::default(),
                waiters: Waiters::default(),
                names: Keys::new("memory"),
                budgets: budget::Budgets::default(),
                health: HealthSignal::new(Health::Available),
            }),
        }
    }

    /// Records held now and their weight in bytes (after pending
    /// maintenance).
    pub async fn record_usage(&self) -> (u64, u64) {
        self.inner.records.run_pending_tasks().await;
        (
            self.inner.records.entry_count(),
            self.inner.records.weighted_size(),
        )
    }

    fn leases(&self) -> MutexGuard<'_, HashMap<ImportId, Held>> {
        self.inner.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stored record, if any.
    pub async fn get_record(&self, id: &ImportId) -> Result<Option<Bytes>, StateError> {
        Ok(self.inner.records.get(id).await.map(|t| t.value))
    }

    /// Stores a record for `ttl` (its buffer as it is), clears the
    /// in-doubt mark, wakes waiters.
    pub async fn put_record(
        &self,
        id: &ImportId,
        record: Bytes,
        ttl: Duration,
    ) -> Result<(), StateError> {
        let bytes = record.len();
        self.inner
            .records
            .insert(id.clone(), Timed::new(record, ttl, bytes))
            .await;
        self.inner.in_doubt.invalidate(id).await;
        self.inner.waiters.wake(&self.inner.names.done_channel(id));
        Ok(())
    }

    /// Takes the lease if nobody holds it.
    pub async fn try_lease(
        &self,
        id: &ImportId,
        owner: &LeaseOwner,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        let now = Instant::now();
        let mut leases = self.leases();
        if leases.len() >= 1024 {
            leases.retain(|_, held| held.until > now);
        }
        if leases.get(id).is_some_and(|held| held.until > now) {
            return Ok(false);
        }
        let until = now + ttl;
        leases.insert(
            id.clone(),
            Held {
                owner: owner.clone(),
                until,
            },
        );
        Ok(true)
    }

    /// Extends `owner`'s lease to `ttl` from now; false if it is not held
    /// by `owner` (expired, released, or taken by another).
    pub async fn extend_lease(
        &self,
        id: &ImportId,
        owner: &LeaseOwner,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        let now = Instant::now();
        let mut leases = self.leases();
        match leases.get_mut(id) {
            Some(held) if held.owner == *owner && held.until > now => {
                held.until = now + ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Releases `owner`'s lease and wakes waiters; false if not held by it.
    pub async fn release_lease(
        &self,
        id: &ImportId,
        owner: &LeaseOwner,
    ) -> Result<bool, StateError> {
        let now = Instant::now();
        let released = {
            let mut leases = self.leases();
            let mine = leases
                .get(id)
                .is_some_and(|held| held.owner == *owner && held.until > now);
            if mine {
                leases.remove(id);
            }
            mine
        };
        if released {
            self.inner.waiters.wake(&self.inner.names.done_channel(id));
        }
        Ok(released)
    }

    /// Waits until the record is stored, the lease is gone, or `deadline`.
    pub async fn wait_for_record(
        &self,
        id: &ImportId,
        deadline: Instant,
    ) -> Result<WaitOutcome, StateError> {
        let name = self.inner.names.done_channel(id);
        wait::wait_for(&self.inner.waiters, &name, deadline, POLL, || async {
            // Lease first: a leader stores its record before it releases,
            // so "no lease, then no record" means no record is coming.
            let leased = self
                .leases()
                .get(id)
                .is_some_and(|held| held.until > Instant::now());
            Ok(match self.inner.records.get(id).await {
                Some(record) => Probe::Record(record.value),
                None if leased => Probe::Leased,
                None => Probe::Free,
            })
        })
        .await
    }

    /// Marks an import as sent and not yet answered, for `ttl`.
    pub async fn mark_in_doubt(
        &self,
        id: &ImportId,
        mark: &InDoubt,
        ttl: Duration,
    ) -> Result<(), StateError> {
        let bytes = mark.source_session_id.len() + mark.workflow_id.len() + mark.vendor_data.len();
        let value = Timed::new(mark.clone(), ttl, bytes);
        self.inner.in_doubt.insert(id.clone(), value).await;
        Ok(())
    }

    /// The in-doubt mark, if any.
    pub async fn in_doubt(&self, id: &ImportId) -> Result<Option<InDoubt>, StateError> {
        Ok(self.inner.in_doubt.get(id).await.map(|t| t.value))
    }

    /// Clears the in-doubt mark.
    pub async fn clear_in_doubt(&self, id: &ImportId) -> Result<(), StateError> {
        self.inner.in_doubt.invalidate(id).await;
        Ok(())
    }

    /// Begins an import (see `StateStore::begin_import`): the record if
    /// `check_record` and one is stored; else takes the lease if free,
    /// then returns the in-doubt mark or stores `mark`. Observably atomic:
    /// the lease is taken under the lease lock, and the record is looked at
    /// again once it is taken (a leader stores its record before it lets
    /// go of the lease, so a record stored meanwhile is seen, and the lease
    /// is given back); marks are only written by the lease's holder.
    pub async fn begin_import(
        &self,
        id: &ImportId,
        owner: &LeaseOwner,
        lease_ttl: Duration,
        mark: &InDoubt,
        mark_ttl: Duration,
        check_record: bool,
    ) -> Result<Begin, StateError> {
        if check_record && let Some(record) = self.inner.records.get(id).await {
            return Ok(Begin::Record(record.value));
        }
        if !self.try_lease(id, owner, lease_ttl).await? {
            return Ok(Begin::Busy);
        }
        if check_record && let Some(record) = self.inner.records.get(id).await {
            self.release_lease(id, owner).await?;
            return Ok(Begin::Record(record.value));
        }
        if let Some(previous) = self.inner.in_doubt.get(id).await {
            return Ok(Begin::Leading(Previous::Mark(previous.value)));
        }
        self.mark_in_doubt(id, mark, mark_ttl).await?;
        Ok(Begin::Leading(Previous::Absent))
    }

    /// Finishes an import (see `StateStore::finish_import`): stores the
    /// record, clears the mark, releases `owner`'s lease if it holds it,
    /// wakes waiters.
    pub async fn finish_import(
        &self,
        id: &ImportId,
        record: Bytes,
        ttl: Duration,
        owner: &LeaseOwner,
    ) -> Result<bool, StateError> {
        self.put_record(id, record, ttl).await?;
        self.release_lease(id, owner).await
    }

    /// Charges one call to `tenant`'s budget.
    pub async fn charge(
        &self,
        tenant: &str,
        budget: Budget,
        max_wait: Duration,
    ) -> Result<Charge, StateError> {
        Ok(self.inner.budgets.charge(tenant, budget, max_wait))
    }

    /// Pauses `tenant`'s budget for `duration` from now (a longer pause
    /// already in place stays).
    pub async fn pause(&self, tenant: &str, duration: Duration) -> Result<(), StateError> {
        self.inner.budgets.pause(tenant, duration);
        Ok(())
    }

    /// Always available.
    pub fn health(&self) -> watch::Receiver<Health> {
        self.inner.health.subscribe()
    }
}
