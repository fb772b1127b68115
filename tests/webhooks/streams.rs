//! Subscribers of the memory log while deliveries arrive over HTTP:
//! fan-out in order, resuming with a cursor, expired cursors, slow
//! subscribers, and the watch core's filter and proto mapping.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use didit_share_gateway::proto;
use didit_share_gateway::webhooks::log::{EventId, EventStream};
use didit_share_gateway::webhooks::memory::MemoryLimits;
use didit_share_gateway::webhooks::watch::{self, WatchRequest};
use didit_share_gateway::webhooks::{
    EventLog, EventLogError, TypeFilter, WebhookEvent, WebhooksConfig,
};
use futures::{FutureExt as _, StreamExt as _};

use super::{Harness, NOW, post, raw_signed, status_body};

/// A bound on any one wait, so a bug fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(30);

/// The next `n` events' session ids, in order.
async fn take(events: &mut EventStream, n: usize) -> Vec<(EventId, String)> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let next = tokio::time::timeout(PATIENCE, events.next())
            .await
            .expect("an event within the bound")
            .expect("the stream is still open")
            .expect("no error");
        got.push((next.id, next.event.session_id.clone()));
    }
    got
}

fn limits(max_events: usize, subscriber_buffer: usize) -> MemoryLimits {
    MemoryLimits {
        max_events,
        subscriber_buffer,
        ..MemoryLimits::from(&WebhooksConfig::default())
    }
}

fn event(session_id: &str) -> WebhookEvent {
    WebhookEvent::parse(Bytes::from(status_body(session_id, "Approved", 0))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_webhooks_reach_every_subscriber_of_their_tenant_in_order() {
    const TENANTS: [&str; 3] = ["tenant-a", "tenant-b", "tenant-c"];
    let h = Harness::start().await;
    let mut subscribers = Vec::new();
    for tenant in TENANTS {
        for _ in 0..10 {
            let events = h
                .log
                .subscribe(tenant, None, TypeFilter::all())
                .await
                .unwrap();
            subscribers.push((tenant, events));
        }
    }
    // Webhook i goes to tenant i % 3; each tenant's deliveries are sent in
    // order, the three tenants at once; every 10th is delivered twice.
    let mut senders = Vec::new();
    for (t, tenant) in TENANTS.into_iter().enumerate() {
        let (http, base) = (h.http.clone(), h.base.clone());
        senders.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for i in (t..1000).step_by(3) {
                let session = format!("{tenant}-session-{i:04}");
                let body = status_body(&session, "Approved", i);
                let copies = if i % 10 == 0 { 2 } else { 1 };
                for _ in 0..copies {
                    let (status, answer) =
                        post(&http, &base, tenant, body.clone(), &raw_signed(&body, NOW)).await;
                    assert_eq!(status, 200, "{answer}");
                }
                sent.push(session);
            }
            (tenant, sent)
        }));
    }
    let mut sent = std::collections::HashMap::new();
    for sender in senders {
        let (tenant, sessions) = sender.await.unwrap();
        sent.insert(tenant, sessions);
    }
    assert_eq!(sent.values().map(Vec::len).sum::<usize>(), 1000);
    for (tenant, mut events) in subscribers {
        let want = &sent[tenant];
        let got = take(&mut events, want.len()).await;
        let sessions: Vec<&String> = got.iter().map(|(_, s)| s).collect();
        assert_eq!(sessions, want.iter().collect::<Vec<_>>(), "{tenant}");
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "ids increase");
        assert!(
            events.next().now_or_never().is_none(),
            "{tenant}: nothing extra"
        );
        assert_eq!(h.log.stats(tenant).events, want.len());
    }
}

#[tokio::test]
async fn a_subscriber_resumes_with_its_cursor_and_sees_nothing_twice() {
    let h = Harness::start().await;
    let send = |i: usize| {
        let body = status_body(&format!("s-{i:02}"), "Approved", i);
        let (http, base) = (h.http.clone(), h.base.clone());
        async move {
            post(
                &http,
                &base,
                "tenant-a",
                body.clone(),
                &raw_signed(&body, NOW),
            )
            .await
        }
    };
    let mut events = h
        .log
        .subscribe("tenant-a", None, TypeFilter::all())
        .await
        .unwrap();
    for i in 0..10 {
        assert_eq!(send(i).await.0, 200);
    }
    let first = take(&mut events, 5).await;
    drop(events); // the watcher disconnects after processing five
    for i in 10..15 {
        assert_eq!(send(i).await.0, 200);
    }
    let cursor = first.last().unwrap().0;
    let mut resumed = h
        .log
        .subscribe("tenant-a", Some(cursor), TypeFilter::all())
        .await
        .unwrap();
    let rest = take(&mut resumed, 10).await;
    let names: Vec<String> = first.iter().chain(&rest).map(|(_, s)| s.clone()).collect();
    let want: Vec<String> = (0..15).map(|i| format!("s-{i:02}")).collect();
    assert_eq!(names, want);
    assert!(resumed.next().now_or_never().is_none(), "caught up");
    assert_eq!(send(15).await.0, 200);
    assert_eq!(take(&mut resumed, 1).await[0].1, "s-15", "then live");
}

#[tokio::test]
async fn cursors_before_the_retained_events_are_expired() {
    let h = Harness::with(limits(5, 64), false).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(
            h.log
                .append("tenant-a", event(&format!("s-{i}")))
                .await
                .unwrap()
                .event_id,
        );
    }
    assert_eq!(h.log.stats("tenant-a").events, 5);
    let subscribe = |after| h.log.subscribe("tenant-a", Some(after), TypeFilter::all());
    assert_eq!(
        subscribe(ids[0]).await.err(),
        Some(EventLogError::CursorExpired)
    );
    assert_eq!(
        subscribe(ids[3]).await.err(),
        Some(EventLogError::CursorExpired)
    );
    // The newest dropped event is a fine cursor: nothing after it is lost.
    let mut from_4 = subscribe(ids[4]).await.unwrap();
    let got = take(&mut from_4, 5).await;
    assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids[5..]);

    // Retention: once every event is older, only the newest id still works.
    h.clock.advance(Duration::from_secs(24 * 3600 + 1));
    assert_eq!(
        subscribe(ids[8]).await.err(),
        Some(EventLogError::CursorExpired)
    );
    let mut caught_up = subscribe(ids[9]).await.unwrap();
    assert!(caught_up.next().now_or_never().is_none());
    assert_eq!(h.log.stats("tenant-a").events, 0);
    // An id from before this log existed (an earlier process) is expired.
    let before: EventId = "1-0".parse().unwrap();
    assert_eq!(
        subscribe(before).await.err(),
        Some(EventLogError::CursorExpired)
    );
}

#[tokio::test]
async fn a_slow_subscriber_is_cut_off_and_memory_stays_bounded() {
    let h = Harness::with(limits(50, 8), false).await;
    let mut slow = h
        .log
        .subscribe("tenant-a", None, TypeFilter::all())
        .await
        .unwrap();
    let mut fast = h
        .log
        .subscribe("tenant-a", None, TypeFilter::all())
        .await
        .unwrap();
    for i in 0..500 {
        h.log
            .append("tenant-a", event(&format!("s-{i}")))
            .await
            .unwrap();
        assert_eq!(take(&mut fast, 1).await[0].1, format!("s-{i}"));
        let stats = h.log.stats("tenant-a");
        assert!(stats.events <= 50, "{stats:?}");
    }
    let mut slow_items = Vec::new();
    while let Some(item) = tokio::time::timeout(PATIENCE, slow.next()).await.unwrap() {
        slow_items.push(item.map(|e| e.id));
    }
    assert_eq!(
        slow_items.last(),
        Some(&Err(EventLogError::SlowSubscriber)),
        "cut off, then the stream ends"
    );
    assert!(slow_items.len() <= 9, "at most its buffer before the error");
    assert_eq!(
        h.log.stats("tenant-a").subscribers,
        1,
        "only the fast one is left"
    );
}

#[tokio::test]
async fn the_watch_core_filters_types_and_maps_to_proto_events() {
    let h = Harness::start().await;
    let log: Arc<dyn EventLog> = h.log.clone();
    let request = WatchRequest::try_from(proto::WatchSessionEventsRequest {
        after_event_id: String::new(),
        webhook_types: vec!["data.updated".into()],
    })
    .unwrap();
    let mut watched = watch::open(&*log, "tenant-c", request).await.unwrap();
    for (kind, status) in [
        ("status.updated", "IN_REVIEW"),
        ("data.updated", "In Review"),
    ] {
        let body = serde_json::to_vec(&serde_json::json!({
            "webhook_type": kind, "session_id": "s-kyb", "status": status,
            "session_kind": "business", "workflow_id": "wf", "timestamp": NOW,
        }))
        .unwrap();
        let (code, _) = h
            .post("tenant-c", body.clone(), &raw_signed(&body, NOW))
            .await;
        assert_eq!(code, 200);
    }
    let got = tokio::time::timeout(PATIENCE, watched.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.webhook_type, "data.updated");
    assert_eq!(got.status(), proto::SessionStatus::InReview);
    assert_eq!(got.session_kind(), proto::SessionKind::Business);
    assert_eq!(got.occurred_at.map(|t| t.seconds), Some(NOW as i64));
    assert!(got.event_id.parse::<EventId>().is_ok());
    assert!(
        watched.next().now_or_never().is_none(),
        "status.updated filtered out"
    );

    let expired = WatchRequest::try_from(proto::WatchSessionEventsRequest {
        after_event_id: "1-0".into(),
        webhook_types: vec![],
    })
    .unwrap();
    assert!(matches!(
        watch::open(&*log, "tenant-c", expired).await.err(),
        Some(watch::WatchError::Log(EventLogError::CursorExpired))
    ));
}
