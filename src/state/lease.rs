//! Keeping an in-flight lease alive while the call it guards runs: a task
//! extends it every third of its TTL, so a live leader keeps it and a dead
//! one loses it within one TTL. The keeper ends with a release, or with
//! [`LeaseKeeper::finish`], which stores the import's record and releases
//! the lease in one step.

use std::time::Duration;

use bytes::Bytes;

use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::{ImportId, LeaseOwner, StateError, StateStore};

/// Extends a held lease until dropped, released or finished. Dropping
/// stops the extensions only (the lease then expires within its TTL); call
/// [`LeaseKeeper::release`] (or [`LeaseKeeper::finish`]) to free it at once.
pub struct LeaseKeeper {
    store: StateStore,
    id: ImportId,
    owner: LeaseOwner,
    lost: watch::Receiver<bool>,
    task: AbortHandle,
}

impl LeaseKeeper {
    /// Starts extending `owner`'s lease of `id` to `ttl` every `ttl / 3`.
    /// Call it right after [`StateStore::try_lease`] or
    /// [`StateStore::begin_import`] took the lease.
    pub fn start(store: StateStore, id: ImportId, owner: LeaseOwner, ttl: Duration) -> Self {
        let (lost_tx, lost) = watch::channel(false);
        let task = tokio::spawn({
            let (store, id, owner) = (store.clone(), id.clone(), owner.clone());
            async move {
                let mut ticks = tokio::time::interval(ttl / 3);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticks.tick().await;
                loop {
                    ticks.tick().await;
                    match store.extend_lease(&id, &owner, ttl).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(
                                ?id,
                                "an in-flight lease expired or was taken while its call ran"
                            );
                            let _ = lost_tx.send(true);
                            return;
                        }
                        // Unavailable: the next tick tries again; the lease
                        // may expire meanwhile, and the next extension says so.
                        Err(_) => {}
                    }
                }
            }
        })
        .abort_handle();
        Self {
            store,
            id,
            owner,
            lost,
            task,
        }
    }

    /// True once an extension found the lease no longer ours.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Stops extending and releases the lease (compare-and-delete); false
    /// if it was no longer ours.
    pub async fn release(self) -> Result<bool, StateError> {
        self.task.abort();
        self.store.release_lease(&self.id, &self.owner).await
    }

    /// Stops extending, then stores `record` for `ttl`, clears the
    /// in-doubt mark, wakes waiters and releases the lease if still ours,
    /// in one step ([`StateStore::finish_import`]): no second release.
    /// True if the lease was released. When that step fails, the lease is
    /// still released on its own (best effort) before the error returns.
    pub async fn finish(self, record: Bytes, ttl: Duration) -> Result<bool, StateError> {
        self.task.abort();
        let finished = self
            .store
            .finish_import(&self.id, record, ttl, &self.owner)
            .await;
        if finished.is_err() {
            let _ = self.store.release_lease(&self.id, &self.owner).await;
        }
        finished
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;

    #[tokio::test(start_paused = true)]
    async fn a_kept_lease_outlives_its_ttl_and_a_dropped_keeper_lets_it_expire() {
        let store = StateStore::Memory(MemoryStore::new(1 << 20));
        let id = ImportId::new("t", [1; 32]);
        let (mine, theirs) = (LeaseOwner::random(), LeaseOwner::random());
        let ttl = Duration::from_secs(3);
        assert!(store.try_lease(&id, &mine, ttl).await.unwrap());
        let keeper = LeaseKeeper::start(store.clone(), id.clone(), mine.clone(), ttl);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!store.try_lease(&id, &theirs, ttl).await.unwrap());
        assert!(!keeper.is_lost());
        drop(keeper);
        tokio::time::sleep(ttl + Duration::from_millis(1)).await;
        assert!(
            store
                .try_lease(&id, &theirs, Duration::from_secs(60))
                .await
                .unwrap()
        );
        let again = LeaseKeeper::start(store.clone(), id.clone(), mine, ttl);
        tokio::time::sleep(ttl).await;
        assert!(again.is_lost(), "the lease belongs to another owner");
        assert!(!again.release().await.unwrap());
        assert!(
            !store
                .try_lease(&id, &LeaseOwner::random(), ttl)
                .await
                .unwrap(),
            "their lease is untouched"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn finish_stores_the_record_and_frees_the_lease() {
        let store = StateStore::Memory(MemoryStore::new(1 << 20));
        let id = ImportId::new("t", [2; 32]);
        let (mine, theirs) = (LeaseOwner::random(), LeaseOwner::random());
        let ttl = Duration::from_secs(3);
        assert!(store.try_lease(&id, &mine, ttl).await.unwrap());
        let keeper = LeaseKeeper::start(store.clone(), id.clone(), mine.clone(), ttl);
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(
            keeper
                .finish(Bytes::from_static(b"record"), ttl * 10)
                .await
                .unwrap(),
            "released"
        );
        assert_eq!(
            store.get_record(&id).await.unwrap().as_deref(),
            Some(&b"record"[..])
        );
        assert!(store.try_lease(&id, &theirs, ttl).await.unwrap());
        // No extension of the finished lease comes later to fight theirs.
        tokio::time::sleep(ttl * 2).await;
        assert!(
            !store.extend_lease(&id, &mine, ttl).await.unwrap(),
            "not mine"
        );
        assert!(
            store
                .try_lease(&id, &LeaseOwner::random(), ttl)
                .await
                .unwrap(),
            "their lease expired: nobody extended it"
        );
    }
}
