//! The ingress answers: 413, 400, 404, duplicates stored once, 503 when
//! the log fails, and log lines free of secrets and personal data.

use std::sync::Arc;

use didit_share_gateway::webhooks::log::{Appended, EventId, EventStream};
use didit_share_gateway::webhooks::{
    EventLog, EventLogError, ManualClock, TypeFilter, WebhookEvent,
};
use futures::{FutureExt as _, StreamExt as _};

use super::{Harness, NOW, SECRET, hmac_hex, post, raw_signed, status_body};

#[tokio::test]
async fn oversized_non_json_and_unknown_tenant_deliveries_are_refused() {
    let h = Harness::start().await;
    for (len, want) in [(1024 * 1024, 200), (1024 * 1024 + 1, 413)] {
        let big = padded(len);
        let (status, _) = h
            .post("tenant-a", big.clone(), &raw_signed(&big, NOW))
            .await;
        assert_eq!(status, want, "{len} bytes");
    }

    for body in [&b"not json"[..], b"[1,2]", b"{\"session_id\":\"s\"}", b""] {
        let (status, answer) = h.post("tenant-a", body, &raw_signed(body, NOW)).await;
        assert_eq!(status, 400, "{:?}: {answer}", String::from_utf8_lossy(body));
    }

    let body = status_body("s-1", "Approved", 1);
    let (status, _) = h
        .post("tenant-z", body.clone(), &raw_signed(&body, NOW))
        .await;
    assert_eq!(status, 404);
    let (status, _) = h
        .post("tenant-a", body.clone(), &raw_signed(&body, NOW))
        .await;
    assert_eq!(status, 200);
    assert_eq!(h.log.stats("tenant-a").events, 2, "the 1 MiB one and this");
}

/// A signed-able webhook body of exactly `len` bytes.
fn padded(len: usize) -> Vec<u8> {
    let mut body = status_body("s-big", "Approved", 0);
    body.pop(); // the closing brace
    body.extend_from_slice(b",\"pad\":\"");
    body.resize(len - 2, b'x');
    body.extend_from_slice(b"\"}");
    assert_eq!(body.len(), len);
    body
}

#[tokio::test]
async fn duplicate_deliveries_answer_200_and_are_stored_and_streamed_once() {
    let h = Harness::start().await;
    let mut events = h
        .log
        .subscribe("tenant-b", None, TypeFilter::all())
        .await
        .unwrap();
    let body = status_body("s-1", "In Review", 1);
    let mut answers = Vec::new();
    for retry in 0..3 {
        // Didit re-sends with a fresh X-Timestamp.
        let (status, answer) = h
            .post("tenant-b", body.clone(), &raw_signed(&body, NOW + retry))
            .await;
        assert_eq!(status, 200);
        answers.push(serde_json::from_str::<serde_json::Value>(&answer).unwrap());
    }
    assert_eq!(answers[0]["duplicate"], false);
    for later in &answers[1..] {
        assert_eq!(later["duplicate"], true);
        assert_eq!(later["event_id"], answers[0]["event_id"]);
    }
    // The same status again in a new delivery is a new event.
    let again = status_body("s-1", "Approved", 1);
    let (status, _) = h
        .post("tenant-b", again.clone(), &raw_signed(&again, NOW))
        .await;
    assert_eq!(status, 200);

    let first = events.next().await.unwrap().unwrap();
    assert_eq!(
        first.id.to_string(),
        answers[0]["event_id"].as_str().unwrap()
    );
    assert_eq!(first.event.status_raw, "In Review");
    assert_eq!(first.event.raw, body);
    let second = events.next().await.unwrap().unwrap();
    assert_eq!(second.event.status_raw, "Approved");
    assert!(events.next().now_or_never().is_none(), "nothing else");
    assert_eq!(h.log.stats("tenant-b").events, 2);
}

/// A log whose store is down.
struct DownLog;

#[async_trait::async_trait]
impl EventLog for DownLog {
    async fn append(&self, _: &str, _: WebhookEvent) -> Result<Appended, EventLogError> {
        Err(EventLogError::Unavailable(
            "XADD: connection refused".into(),
        ))
    }
    async fn subscribe(
        &self,
        _: &str,
        _: Option<EventId>,
        _: TypeFilter,
    ) -> Result<EventStream, EventLogError> {
        Err(EventLogError::Unavailable(
            "XREAD: connection refused".into(),
        ))
    }
}

#[tokio::test]
async fn a_delivery_that_cannot_be_stored_is_503_so_didit_retries() {
    let clock = ManualClock::new(std::time::UNIX_EPOCH + std::time::Duration::from_secs(NOW));
    let (base, _stop) = Harness::serve(Arc::new(DownLog), clock, false).await;
    let body = status_body("s-1", "Approved", 1);
    let http = super::client();
    let (status, _) = post(
        &http,
        &base,
        "tenant-a",
        body.clone(),
        &raw_signed(&body, NOW),
    )
    .await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn log_lines_name_tenant_session_type_and_status_only() {
    let h = Harness::start().await;
    let body = serde_json::to_vec(&serde_json::json!({
        "webhook_type": "status.updated", "session_id": "sess-visible", "status": "Declined",
        "vendor_data": "vendor-private", "decision": {"name": "Zoë Private"}, "timestamp": NOW,
    }))
    .unwrap();
    let good = raw_signed(&body, NOW);
    let (status, _) = h.post("tenant-c", body.clone(), &good).await;
    assert_eq!(status, 200);
    let wrong = hmac_hex("whsec_other", &body);
    let bad = vec![
        ("x-timestamp", NOW.to_string()),
        ("x-signature", wrong.clone()),
    ];
    let (status, _) = h.post("tenant-c", body.clone(), &bad).await;
    assert_eq!(status, 401);

    // Every test's ingress logs here: none of them may leak either.
    let text = super::logs().text();
    for wanted in ["tenant-c", "sess-visible", "status.updated", "Declined"] {
        assert!(text.contains(wanted), "{wanted} missing from:\n{text}");
    }
    for secret in [
        SECRET,
        "vendor-private",
        "Zoë",
        good[1].1.as_str(),
        wrong.as_str(),
    ] {
        assert!(!text.contains(secret), "{secret} leaked into:\n{text}");
    }
}
