//! What only the Redis backend has: values sealed at rest, the key layout
//! with TTLs, pub/sub wake-ups, and behaviour through an outage.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use didit_share_gateway::state::keys::Keys;
use didit_share_gateway::state::{
    Backend, Begin, Budget, EncryptionKey, Health, ImportId, InDoubt, LeaseOwner, Previous,
    RedisStore, StateConfig, StateError, StateStore, WaitOutcome,
};
use tokio::sync::watch;
use tokio::time::Instant;

use super::server::{RedisServer, holds};
use super::{eventually, settings};

const LONG: Duration = Duration::from_secs(60);

async fn until_health(health: &mut watch::Receiver<Health>, want: Health, bound: Duration) {
    tokio::time::timeout(bound, health.wait_for(|h| *h == want))
        .await
        .unwrap_or_else(|_| panic!("health did not become {want:?} within {bound:?}"))
        .unwrap();
}

#[tokio::test]
async fn a_redis_dump_holds_no_readable_personal_data() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let secrets = tempfile::tempdir().unwrap();
    let key_file = secrets.path().join("state-key");
    std::fs::write(
        &key_file,
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>()),
    )
    .unwrap();
    // Built the way the gateway builds it: from the [state] section.
    let config = StateConfig {
        backend: Backend::Redis,
        redis_url: Some(server.url()),
        encryption_key_file: Some(key_file),
        key_prefix: "dump".into(),
        ..StateConfig::default()
    };
    let store = StateStore::open(&config, 0).await.unwrap();
    let (name, vendor) = ("Jane-Quixote-Doe-4711", "vendor-data-9f3b7c");
    let record = format!("{{\"first_name\":\"{name}\",\"vendor_data\":\"{vendor}\"}}");
    let id = ImportId::new("brand-a", [3; 32]);
    store
        .put_record(&id, bytes::Bytes::from(record.clone()), LONG)
        .await
        .unwrap();
    let mark = InDoubt {
        source_session_id: "s".into(),
        workflow_id: "w".into(),
        vendor_data: vendor.into(),
        sent_at: SystemTime::now(),
    };
    store
        .mark_in_doubt(&ImportId::new("brand-a", [4; 32]), &mark, LONG)
        .await
        .unwrap();
    assert_eq!(
        store.get_record(&id).await.unwrap().as_deref(),
        Some(record.as_bytes())
    );

    let mut conn = server.connection().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("dump:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in &keys {
        let value: Vec<u8> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let dump: Vec<u8> = redis::cmd("DUMP")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        for bytes in [&value, &dump] {
            assert!(
                !holds(bytes, name) && !holds(bytes, vendor),
                "{key} is readable"
            );
        }
    }
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("rdbcompression")
        .arg("no")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let rdb = server.dump().await;
    assert!(
        !holds(&rdb, name) && !holds(&rdb, vendor),
        "the RDB file is readable"
    );
    // The check can see plaintext: the same name stored in clear shows up.
    redis::cmd("SET")
        .arg("control")
        .arg(name)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    assert!(
        holds(&server.dump().await, name),
        "control value not found in RDB"
    );
}

#[tokio::test]
async fn a_value_opens_only_with_its_key_under_its_name() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let key = EncryptionKey::random();
    let a = RedisStore::connect(&settings(&server, &key)).await.unwrap();
    let other_key = RedisStore::connect(&settings(&server, &EncryptionKey::random()))
        .await
        .unwrap();
    let (first, second) = (ImportId::new("t", [1; 32]), ImportId::new("t", [2; 32]));
    a.put_record(&first, b"answer", LONG).await.unwrap();
    assert!(matches!(
        other_key.get_record(&first).await,
        Err(StateError::Corrupt(_))
    ));

    // Moved to another key name: the associated data no longer matches.
    let keys = Keys::new("test");
    let mut conn = server.connection().await;
    let sealed: Vec<u8> = redis::cmd("GET")
        .arg(keys.record(&first))
        .query_async(&mut conn)
        .await
        .unwrap();
    redis::cmd("SET")
        .arg(keys.record(&second))
        .arg(sealed)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    assert!(matches!(
        a.get_record(&second).await,
        Err(StateError::Corrupt(_))
    ));
    assert_eq!(
        a.get_record(&first).await.unwrap().as_deref(),
        Some(&b"answer"[..])
    );

    let mark = InDoubt {
        source_session_id: "s".into(),
        workflow_id: "w".into(),
        vendor_data: "v".into(),
        sent_at: SystemTime::now(),
    };
    a.mark_in_doubt(&first, &mark, LONG).await.unwrap();
    assert!(matches!(
        other_key.in_doubt(&first).await,
        Err(StateError::Corrupt(_))
    ));
    assert_eq!(a.in_doubt(&first).await.unwrap(), Some(mark));
}

#[tokio::test]
async fn keys_follow_the_documented_layout_and_expire() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = RedisStore::connect(&settings(&server, &EncryptionKey::random()))
        .await
        .unwrap();
    let id = ImportId::new("brand-a", [0xab; 32]);
    store
        .put_record(&id, b"r", Duration::from_secs(600))
        .await
        .unwrap();
    store
        .mark_in_doubt(
            &id,
            &InDoubt {
                source_session_id: "s".into(),
                workflow_id: "w".into(),
                vendor_data: "v".into(),
                sent_at: SystemTime::now(),
            },
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    assert!(
        store
            .try_lease(&id, &LeaseOwner::random(), Duration::from_secs(30))
            .await
            .unwrap()
    );
    store
        .charge("brand-a", Budget::new(60, 5).unwrap(), Duration::ZERO)
        .await
        .unwrap();
    store
        .pause("brand-a", Duration::from_secs(20))
        .await
        .unwrap();

    let tag = format!("{{brand-a:{}}}", "ab".repeat(32));
    let want = [
        (format!("test:record:{tag}"), 600_000),
        (format!("test:indoubt:{tag}"), 600_000),
        (format!("test:lease:{tag}"), 30_000),
        ("test:budget:{brand-a}".to_owned(), 1_000),
        ("test:pause:{brand-a}".to_owned(), 20_000),
    ];
    let mut conn = server.connection().await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("test:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    let mut names: Vec<String> = want.iter().map(|(k, _)| k.clone()).collect();
    names.sort();
    assert_eq!(keys, names);
    for (key, max_ms) in want {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= max_ms, "{key}: PTTL {ttl}");
    }
}

#[tokio::test]
async fn a_waiter_is_woken_by_the_notification_not_the_poll() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let key = EncryptionKey::random();
    let a = RedisStore::connect(&settings(&server, &key)).await.unwrap();
    let mut slow = settings(&server, &key);
    slow.poll_interval = Duration::from_secs(60);
    let b = RedisStore::connect(&slow).await.unwrap();
    let conn = server.connection().await;
    eventually(Duration::from_secs(10), "both listeners subscribed", || {
        let mut conn = conn.clone();
        async move {
            // NUMPAT counts distinct patterns; count subscribed clients.
            let clients: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query_async(&mut conn)
                .await
                .unwrap();
            clients.lines().filter(|l| l.contains(" psub=1 ")).count() >= 2
        }
    })
    .await;
    let id = ImportId::new("t", [5; 32]);
    let owner = LeaseOwner::random();
    assert!(a.try_lease(&id, &owner, LONG).await.unwrap());
    let waiter = tokio::spawn(async move { b.wait_for_record(&id, Instant::now() + LONG).await });
    // Let the waiter park after its first check.
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.put_record(&ImportId::new("t", [5; 32]), b"done", LONG)
        .await
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("only a notification can wake it this soon")
        .unwrap()
        .unwrap();
    assert_eq!(
        outcome,
        WaitOutcome::Record(bytes::Bytes::from_static(b"done"))
    );
}

#[tokio::test]
async fn an_outage_is_unavailable_within_the_timeout_and_heals_itself() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let settings = settings(&server, &EncryptionKey::random());
    let store = StateStore::Redis(RedisStore::connect(&settings).await.unwrap());
    let mut health = store.health();
    until_health(&mut health, Health::Available, Duration::from_secs(10)).await;
    let id = ImportId::new("t", [6; 32]);
    let owner = LeaseOwner::random();
    let budget = Budget::new(60, 5).unwrap();
    store
        .put_record(&id, bytes::Bytes::from_static(b"before"), LONG)
        .await
        .unwrap();

    server.kill();
    // Each call fails on its own, within the response timeout (plus
    // scheduling slack on a loaded machine).
    let bound = settings.response_timeout + Duration::from_secs(1);
    macro_rules! unavailable_within_bound {
        ($call:expr) => {{
            let started = Instant::now();
            let result = $call.await;
            assert!(
                matches!(result, Err(StateError::Unavailable(_))),
                "{result:?}"
            );
            assert!(started.elapsed() < bound, "took {:?}", started.elapsed());
        }};
    }
    unavailable_within_bound!(store.get_record(&id));
    unavailable_within_bound!(store.try_lease(&id, &owner, LONG));
    unavailable_within_bound!(store.charge("t", budget, Duration::ZERO));
    unavailable_within_bound!(store.pause("t", Duration::from_secs(1)));
    unavailable_within_bound!(store.wait_for_record(&id, Instant::now() + LONG));
    until_health(&mut health, Health::Unavailable, Duration::from_secs(5)).await;

    server.restart();
    until_health(&mut health, Health::Available, Duration::from_secs(10)).await;
    // A fresh server (no persistence): empty, and every operation works again.
    assert_eq!(store.get_record(&id).await.unwrap(), None);
    assert!(store.try_lease(&id, &owner, LONG).await.unwrap());
    assert!(store.charge("t", budget, Duration::ZERO).await.is_ok());
}

#[tokio::test]
async fn a_store_starts_while_redis_is_down_and_connects_when_it_comes_up() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    server.kill();
    let store = RedisStore::connect(&settings(&server, &EncryptionKey::random()))
        .await
        .unwrap();
    let mut health = store.health();
    assert_eq!(*health.borrow(), Health::Unavailable);
    let id = ImportId::new("t", [7; 32]);
    assert!(matches!(
        store.get_record(&id).await,
        Err(StateError::Unavailable(_))
    ));
    server.restart();
    until_health(&mut health, Health::Available, Duration::from_secs(10)).await;
    store.put_record(&id, b"after", LONG).await.unwrap();
    assert_eq!(
        store.get_record(&id).await.unwrap().as_deref(),
        Some(&b"after"[..])
    );
}

/// `begin_import` seals the new mark for its key name and opens the one it
/// finds; `finish_import` seals the record. A value that does not open is
/// reported, never taken for "nothing there".
#[tokio::test]
async fn begin_and_finish_import_seal_and_open_their_values() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let key = EncryptionKey::random();
    let a = RedisStore::connect(&settings(&server, &key)).await.unwrap();
    let other_key = RedisStore::connect(&settings(&server, &EncryptionKey::random()))
        .await
        .unwrap();
    let keys = Keys::new("test");
    let mut conn = server.connection().await;
    let vendor = "vendor-data-5e1f";
    let mark = InDoubt {
        source_session_id: "s".into(),
        workflow_id: "w".into(),
        vendor_data: vendor.into(),
        sent_at: SystemTime::now(),
    };
    let (first, second) = (ImportId::new("t", [1; 32]), ImportId::new("t", [2; 32]));
    let owner = LeaseOwner::random();
    assert_eq!(
        a.begin_import(&first, &owner, LONG, &mark, LONG, true)
            .await
            .unwrap(),
        Begin::Leading(Previous::Absent)
    );
    let sealed: Vec<u8> = redis::cmd("GET")
        .arg(keys.in_doubt(&first))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!holds(&sealed, vendor), "the mark is sealed");
    assert_eq!(a.in_doubt(&first).await.unwrap(), Some(mark.clone()));

    // A mark sealed with another key: the lease is taken, the mark kept
    // and reported unreadable.
    other_key.mark_in_doubt(&second, &mark, LONG).await.unwrap();
    let found = a
        .begin_import(&second, &owner, LONG, &mark, LONG, true)
        .await
        .unwrap();
    assert!(
        matches!(found, Begin::Leading(Previous::Unreadable(_))),
        "{found:?}"
    );
    assert_eq!(
        other_key.in_doubt(&second).await.unwrap(),
        Some(mark.clone())
    );

    // The record finish stores is sealed; another key cannot open it, and
    // begin says so without taking the lease.
    assert!(
        a.finish_import(
            &first,
            bytes::Bytes::copy_from_slice(vendor.as_bytes()),
            LONG,
            &owner
        )
        .await
        .unwrap()
    );
    let sealed: Vec<u8> = redis::cmd("GET")
        .arg(keys.record(&first))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!holds(&sealed, vendor), "the record is sealed");
    let other_owner = LeaseOwner::random();
    assert!(matches!(
        other_key
            .begin_import(&first, &other_owner, LONG, &mark, LONG, true)
            .await,
        Err(StateError::Corrupt(_))
    ));
    assert!(
        a.try_lease(&first, &other_owner, LONG).await.unwrap(),
        "no lease taken"
    );
}
