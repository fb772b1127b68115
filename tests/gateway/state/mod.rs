//! The shared-state layer against its two backends: the same behaviour
//! tests on memory and on a real `redis-server` (no mocks), plus what only
//! Redis has: sealing at rest, outages and recovery.

mod behaviour;
mod config;
mod redis_only;
pub mod server;
mod tls;

use std::time::Duration;

use didit_share_gateway::state::{
    EncryptionKey, MemoryStore, RedisSettings, RedisStore, StateStore,
};
use server::RedisServer;

/// Polls `condition` every 10 ms for at most `bound`.
pub async fn eventually<F, Fut>(bound: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let give_up = tokio::time::Instant::now() + bound;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < give_up,
            "{what}: not within {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Two handles on one memory store.
fn memory_pair() -> (StateStore, StateStore) {
    let store = StateStore::Memory(MemoryStore::new(1 << 20));
    (store.clone(), store)
}

/// Settings for a store on `server`: short timeouts so outages show fast.
pub fn settings(server: &RedisServer, key: &EncryptionKey) -> RedisSettings {
    let mut settings = RedisSettings::new(server.url(), key.clone());
    settings.key_prefix = "test".into();
    settings.response_timeout = Duration::from_millis(500);
    settings.connect_timeout = Duration::from_millis(500);
    settings.poll_interval = Duration::from_millis(50);
    settings.health_check_interval = Duration::from_millis(100);
    settings
}

/// Two Redis stores ("replicas") on one fresh server, sharing one key.
async fn redis_pair() -> Option<(RedisServer, StateStore, StateStore)> {
    let server = RedisServer::start()?;
    let key = EncryptionKey::random();
    let a = RedisStore::connect(&settings(&server, &key)).await.unwrap();
    let b = RedisStore::connect(&settings(&server, &key)).await.unwrap();
    Some((server, StateStore::Redis(a), StateStore::Redis(b)))
}

/// Runs each behaviour test once per backend: `memory::NAME`, `redis::NAME`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    let (a, b) = super::memory_pair();
                    super::behaviour::$name(a, b).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some((_server, a, b)) = super::redis_pair().await else { return };
                    super::behaviour::$name(a, b).await;
                }
            )*
        }
    };
}

on_both_backends!(
    a_record_is_seen_by_every_replica_until_it_expires,
    a_lease_is_exclusive_across_replicas,
    only_the_owner_extends_or_releases_a_lease,
    an_extended_lease_outlives_its_first_ttl,
    an_expired_lease_lets_the_next_caller_in,
    a_waiter_gets_the_record_the_leader_stores,
    a_waiter_learns_that_the_leader_gave_up,
    a_waiter_learns_that_the_leader_died,
    a_wait_ends_at_its_deadline_while_the_lease_is_held,
    an_in_doubt_mark_is_shared_and_cleared_by_the_answer,
    two_replicas_share_one_budget,
    the_highest_rate_charges_without_refusing,
    a_charge_waits_for_its_slot_within_max_wait,
    a_pause_holds_the_budget_on_every_replica,
    begin_import_returns_a_stored_record_and_takes_nothing,
    begin_import_takes_a_free_lease_and_keeps_an_earlier_mark,
    begin_import_while_the_lease_is_held_is_busy,
    finish_import_stores_wakes_clears_and_releases_only_its_own_lease,
);
