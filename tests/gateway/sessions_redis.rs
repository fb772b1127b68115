//! The Redis Streams event log against a real `redis-server`: one copy
//! per delivery, replay after a cursor then live events, type filters,
//! tenants apart, an expired cursor, and a reader cut off by trimming.

use std::time::Duration;

use bytes::Bytes;
use didit_share_gateway::webhooks::redis::RedisEventLog;
use didit_share_gateway::webhooks::{
    EventLog, EventLogError, EventStream, TypeFilter, WebhookEvent, WebhooksConfig,
};
use futures::StreamExt as _;
use serde_json::json;

use crate::state::server::RedisServer;

/// Bound on waiting for one event (it is already stored, or being stored).
const WAIT: Duration = Duration::from_secs(10);

fn event(webhook_type: &str, status: &str) -> WebhookEvent {
    let body = json!({"webhook_type": webhook_type, "session_id": "s", "status": status});
    WebhookEvent::parse(Bytes::from(body.to_string())).unwrap()
}

fn log(server: &RedisServer, max_events: usize) -> RedisEventLog {
    let client = redis::Client::open(server.url()).unwrap();
    let config = WebhooksConfig {
        max_events,
        ..WebhooksConfig::default()
    };
    RedisEventLog::new(client, "test:", &config, Duration::from_secs(2)).unwrap()
}

async fn next_status(stream: &mut EventStream) -> Result<String, EventLogError> {
    let item = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("an event within the bound")
        .expect("the stream goes on");
    item.map(|e| e.event.status_raw.clone())
}

#[tokio::test]
async fn redis_event_log_stores_once_replays_then_follows() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let log = log(&server, 1000);
    let a = log
        .append("t", event("status.updated", "Approved"))
        .await
        .unwrap();
    let again = log
        .append("t", event("status.updated", "Approved"))
        .await
        .unwrap();
    assert!(!a.duplicate);
    assert!(again.duplicate, "a retried delivery is stored once");
    assert_eq!(again.event_id, a.event_id);
    let other = log
        .append("u", event("status.updated", "Approved"))
        .await
        .unwrap();
    assert!(!other.duplicate, "tenants are apart");

    let mut live = log.subscribe("t", None, TypeFilter::all()).await.unwrap();
    let mut from_start = log
        .subscribe(
            "t",
            Some(didit_share_gateway::webhooks::EventId::ZERO),
            TypeFilter::all(),
        )
        .await
        .unwrap();
    let mut only_data = log
        .subscribe(
            "t",
            Some(a.event_id),
            TypeFilter::only(["data.updated".to_owned()]),
        )
        .await
        .unwrap();
    let b = log
        .append("t", event("status.updated", "Declined"))
        .await
        .unwrap();
    let c = log
        .append("t", event("data.updated", "Declined"))
        .await
        .unwrap();
    assert!(a.event_id < b.event_id && b.event_id < c.event_id);

    assert_eq!(next_status(&mut from_start).await.unwrap(), "Approved");
    assert_eq!(next_status(&mut from_start).await.unwrap(), "Declined");
    assert_eq!(next_status(&mut live).await.unwrap(), "Declined");
    let first_live = next_status(&mut live).await.unwrap();
    assert_eq!(first_live, "Declined", "the data.updated one");
    let data = tokio::time::timeout(WAIT, only_data.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (data.id, data.event.webhook_type.as_str()),
        (c.event_id, "data.updated")
    );

    // Resuming after b brings c only: nothing twice.
    let mut resumed = log
        .subscribe("t", Some(b.event_id), TypeFilter::all())
        .await
        .unwrap();
    let got = tokio::time::timeout(WAIT, resumed.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.id, c.event_id);
}

#[tokio::test]
async fn redis_event_log_expires_cursors_below_the_trimmed_events() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // MAXLEN ~ trims whole stream nodes (100 entries by default): append
    // well past one node.
    let log = log(&server, 3);
    let first = log
        .append("t", event("status.updated", "s0"))
        .await
        .unwrap();
    let mut slow = log
        .subscribe("t", Some(first.event_id), TypeFilter::all())
        .await
        .unwrap();
    let mut last = first;
    for i in 1..300 {
        last = log
            .append("t", event("status.updated", &format!("s{i}")))
            .await
            .unwrap();
    }
    let err = log
        .subscribe("t", Some(first.event_id), TypeFilter::all())
        .await
        .err()
        .expect("an expired cursor is refused");
    assert_eq!(err, EventLogError::CursorExpired);
    // The reader that stayed at the first event is cut off at its next read.
    assert_eq!(
        next_status(&mut slow).await,
        Err(EventLogError::CursorExpired)
    );
    // The newest event is still a good cursor.
    let _newest = log
        .subscribe("t", Some(last.event_id), TypeFilter::all())
        .await
        .unwrap();
}

#[tokio::test]
async fn redis_event_log_says_unavailable_when_redis_is_gone() {
    let client =
        redis::Client::open(format!("redis://127.0.0.1:{}/", crate::env::free_port())).unwrap();
    let log = RedisEventLog::new(
        client,
        "test:",
        &WebhooksConfig::default(),
        Duration::from_millis(500),
    )
    .unwrap();
    let err = log
        .append("t", event("status.updated", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, EventLogError::Unavailable(_)), "{err:?}");
    let err = log
        .subscribe("t", None, TypeFilter::all())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, EventLogError::Unavailable(_)), "{err:?}");
}

fn numbered(i: usize) -> WebhookEvent {
    let body = json!({"webhook_type": "status.updated", "session_id": format!("s-{i}"), "status": "Approved"});
    WebhookEvent::parse(Bytes::from(body.to_string())).unwrap()
}

async fn connected_clients(server: &RedisServer) -> usize {
    let mut conn = server.connection().await;
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("INFO clients has connected_clients")
}

#[tokio::test]
async fn subscribers_of_a_tenant_share_one_feed_and_each_gets_every_event_in_order() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let log = log(&server, 1000);
    log.append("t", numbered(0)).await.unwrap();
    let before = connected_clients(&server).await;
    let mut streams = Vec::new();
    for _ in 0..20 {
        streams.push(log.subscribe("t", None, TypeFilter::all()).await.unwrap());
    }
    // One blocked reader for the tenant, not one per subscriber.
    let after = connected_clients(&server).await;
    assert!(after <= before + 1, "{before} -> {after} Redis clients");
    for i in 1..=30 {
        log.append("t", numbered(i)).await.unwrap();
    }
    for stream in &mut streams {
        for i in 1..=30 {
            let event = tokio::time::timeout(WAIT, stream.next())
                .await
                .expect("an event within the bound")
                .expect("the stream goes on")
                .unwrap();
            assert_eq!(event.event.session_id, format!("s-{i}"));
        }
    }
}

#[tokio::test]
async fn a_subscriber_behind_the_feed_catches_up_from_redis_without_a_gap() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let client = redis::Client::open(server.url()).unwrap();
    let config = WebhooksConfig {
        subscriber_buffer: 2,
        ..WebhooksConfig::default()
    };
    let log = RedisEventLog::new(client, "test:", &config, Duration::from_secs(2)).unwrap();
    let mut slow = log.subscribe("t", None, TypeFilter::all()).await.unwrap();
    let mut keeping_up = log.subscribe("t", None, TypeFilter::all()).await.unwrap();
    for i in 0..50 {
        log.append("t", numbered(i)).await.unwrap();
        let event = tokio::time::timeout(WAIT, keeping_up.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(event.event.session_id, format!("s-{i}"));
    }
    // `slow` read nothing while 50 events passed a 2-event buffer.
    for i in 0..50 {
        let event = tokio::time::timeout(WAIT, slow.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(event.event.session_id, format!("s-{i}"));
    }
}
