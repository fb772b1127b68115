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
