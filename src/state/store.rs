//! [`StateStore`]: one type over both backends, so the import path is
//! written once.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{
    Begin, Budget, Charge, Health, ImportId, InDoubt, LeaseOwner, MemoryStore, RedisStore,
    ResolvedState, StateConfig, StateConfigError, StateError, WaitOutcome,
};

/// The shared state: in this process or in Redis. Cheap to clone.
#[derive(Clone)]
pub enum StateStore {
    /// In-process ([`MemoryStore`]).
    Memory(MemoryStore),
    /// Shared by every replica ([`RedisStore`]).
    Redis(RedisStore),
}

/// Calls the same method on whichever backend.
macro_rules! delegate {
    ($self:ident.$method:ident($($arg:expr),*)) => {
        match $self {
            StateStore::Memory(store) => store.$method($($arg),*).await,
            StateStore::Redis(store) => store.$method($($arg),*).await,
        }
    };
}

impl StateStore {
    /// The store `config` describes; `memory_max_bytes` bounds the memory
    /// backend's records (the `[replay] max_bytes` setting). Reads the
    /// config's files; a Redis store connects lazily, so this succeeds
    /// while Redis is down. Must be called inside a Tokio runtime.
    pub async fn open(
        config: &StateConfig,
        memory_max_bytes: u64,
    ) -> Result<Self, StateConfigError> {
        Self::open_observed(config, memory_max_bytes, None).await
    }

    /// [`StateStore::open`], with `on_eviction` called for every memory
    /// record evicted for size (the replay evictions metric).
    pub async fn open_observed(
        config: &StateConfig,
        memory_max_bytes: u64,
        on_eviction: Option<super::memory::OnEviction>,
    ) -> Result<Self, StateConfigError> {
        match config.resolve()? {
            ResolvedState::Memory => Ok(Self::Memory(MemoryStore::observed(
                memory_max_bytes,
                on_eviction,
            ))),
            ResolvedState::Redis(settings) => RedisStore::connect(&settings)
                .await
                .map(Self::Redis)
                .map_err(|e| StateConfigError {
                    key: "state.redis_url".into(),
                    problem: e.to_string(),
                }),
        }
    }

    /// Memory records held and their bytes; `None` for Redis (ask Redis).
    pub async fn memory_usage(&self) -> Option<(u64, u64)> {
        match self {
            Self::Memory(store) => Some(store.record_usage().await),
            Self::Redis(_) => None,
        }
    }

    /// Which backend this is (`memory` or `redis`), for logs.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Redis(_) => "redis",
        }
    }

    /// The replay record of `id`, if stored and within its TTL.
    pub async fn get_record(&self, id: &ImportId) -> Result<Option<Bytes>, StateError> {
        delegate!(self.get_record(id))
    }

    /// Stores `record` for `ttl` (the replay window), clears the in-doubt
    /// mark and wakes every waiter of `id`, on every replica. The memory
    /// backend keeps `record`'s buffer as it is, without a copy.
    pub async fn put_record(
        &self,
        id: &ImportId,
        record: Bytes,
        ttl: Duration,
    ) -> Result<(), StateError> {
        match self {
            Self::Memory(store) => store.put_record(id, record, ttl).await,
            Self::Redis(store) => store.put_record(id, &record, ttl).await,
        }
    }

    /// Takes the in-flight lease of `id` for `ttl` if nobody holds it.
    pub async fn try_lease(
        &self,
        id: &ImportId,
        owner: &LeaseOwner,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        delegate!(self.try_lease(id, owner, ttl))
    }

    /// Extends `owner`'s lease to `ttl` from now; false if `owner` no
    /// longer holds it.
    pub async fn extend_lease(
        &self,
        id: &ImportId,
        owner: &LeaseOwner,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        delegate!(self.extend_lease(id, owner, ttl))
    }

    /// Releases `owner`'s lease and wakes waiters; false (and nothing
    /// deleted) if someone else holds it.
    pub async fn release_lease(
        &self,
        id: &ImportId,
        owner: &LeaseOwner,
    ) -> Result<bool, StateError> {
        delegate!(self.release_lease(id, owner))
    }

    /// Waits for the leader of `id`: its record, [`WaitOutcome::LeaseGone`]
    /// when the lease is gone without a record (take it yourself), or
    /// [`WaitOutcome::TimedOut`] at `deadline`.
    pub async fn wait_for_record(
        &self,
        id: &ImportId,
        deadline: Instant,
    ) -> Result<WaitOutcome, StateError> {
        delegate!(self.wait_for_record(id, deadline))
    }

    /// Records what is about to be sent to Didit, for `ttl` (the replay
    /// window); cleared by [`Self::put_record`] or [`Self::clear_in_doubt`].
    pub async fn mark_in_doubt(
        &self,
        id: &ImportId,
        mark: &InDoubt,
        ttl: Duration,
    ) -> Result<(), StateError> {
        delegate!(self.mark_in_doubt(id, mark, ttl))
    }

    /// The in-doubt mark of `id`, if any.
    pub async fn in_doubt(&self, id: &ImportId) -> Result<Option<InDoubt>, StateError> {
        delegate!(self.in_doubt(id))
    }

    /// Clears the in-doubt mark (Didit answered and the answer needs no replay).
    pub async fn clear_in_doubt(&self, id: &ImportId) -> Result<(), StateError> {
        delegate!(self.clear_in_doubt(id))
    }

    /// Charges one Didit call to `tenant`'s budget: [`Charge::Now`],
    /// [`Charge::After`] (a slot within `max_wait`, reserved), or
    /// [`Charge::Refused`] (nothing charged).
    pub async fn charge(
        &self,
        tenant: &str,
        budget: Budget,
        max_wait: Duration,
    ) -> Result<Charge, StateError> {
        delegate!(self.charge(tenant, budget, max_wait))
    }

    /// Pauses `tenant`'s budget for `duration` from now (Didit's
    /// `Retry-After`), on every replica.
    pub async fn pause(&self, tenant: &str, duration: Duration) -> Result<(), StateError> {
        delegate!(self.pause(tenant, duration))
    }

    /// Begins an import in one atomic step (one Redis round trip): the
    /// stored record of `id` if any ([`Begin::Record`]); else, if nobody
    /// holds the lease, takes it for `owner` for `lease_ttl` and returns
    /// the in-doubt mark found ([`Begin::Leading`]), storing `mark` for
    /// `mark_ttl` only when none was there (an earlier unanswered import's
    /// mark is kept as it was); else [`Begin::Busy`]. Nothing is taken or
    /// written unless the lease is taken. An unreadable record is
    /// [`StateError::Corrupt`] (nothing taken); call
    /// [`Self::begin_import_ignoring_record`] to go on without it.
    pub async fn begin_import(
        &self,
        id: &ImportId,
        owner: &LeaseOwner,
        lease_ttl: Duration,
        mark: &InDoubt,
        mark_ttl: Duration,
    ) -> Result<Begin, StateError> {
        delegate!(self.begin_import(id, owner, lease_ttl, mark, mark_ttl, true))
    }

    /// [`Self::begin_import`] without looking at the record (after an
    /// unreadable one): never [`Begin::Record`].
    pub async fn begin_import_ignoring_record(
        &self,
        id: &ImportId,
        owner: &LeaseOwner,
        lease_ttl: Duration,
        mark: &InDoubt,
        mark_ttl: Duration,
    ) -> Result<Begin, StateError> {
        delegate!(self.begin_import(id, owner, lease_ttl, mark, mark_ttl, false))
    }

    /// Finishes an import in one atomic step (one Redis round trip):
    /// stores `record` for `ttl`, clears the in-doubt mark, wakes every
    /// waiter of `id` on every replica, and releases `owner`'s lease if it
    /// still holds it (true; false and the lease untouched otherwise).
    pub async fn finish_import(
        &self,
        id: &ImportId,
        record: Bytes,
        ttl: Duration,
        owner: &LeaseOwner,
    ) -> Result<bool, StateError> {
        delegate!(self.finish_import(id, record, ttl, owner))
    }

    /// Availability now and at every transition (memory: always available).
    pub fn health(&self) -> watch::Receiver<Health> {
        match self {
            Self::Memory(store) => store.health(),
            Self::Redis(store) => store.health(),
        }
    }
}
