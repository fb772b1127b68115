//! Section 7: session events. A gateway with its webhook port (memory
//! event log), `subscribers` idle `WatchSessionEvents` streams of one
//! tenant (the memory they cost, per stream, from this process's RSS), then
//! signed webhooks posted to the port at a fixed rate: the delay from the
//! POST being sent to each subscriber receiving the event, p50 and p99.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use didit_share_gateway::app::{self, StartOptions};
use didit_share_gateway::proto::WatchSessionEventsRequest;
use didit_share_gateway::proto::session_service_client::SessionServiceClient;
use didit_share_gateway::webhooks::signature::sign;
use didit_share_gateway::webhooks::{WebhookSecret, WebhookSecretSource};
use tonic::transport::Channel;

use crate::measure::{Samples, rss};

/// Subscribers, events per second and how long the sender runs.
pub struct EventsPlan {
    pub subscribers: usize,
    pub per_second: u64,
    pub duration: Duration,
}

/// Runs the section and writes its table to `out`.
pub async fn events(out: &mut String, plan: &EventsPlan) {
    let loopback = "127.0.0.1:0".parse().expect("loopback");
    // The upstream is never called here.
    let mut config = app::sandbox_config("http://127.0.0.1:9");
    config.server.listen = loopback;
    config.server.admin_listen = loopback;
    config.server.max_concurrent_requests = 1_000_000;
    for tenant in &mut config.tenants {
        tenant.rate_limit_per_minute = u32::MAX;
    }
    app::sandbox_webhooks(&mut config, loopback);
    if let Some(webhooks) = &mut config.webhooks {
        webhooks.subscriber_buffer = 65_536;
    }
    let secret = config
        .tenants
        .iter()
        .find(|t| t.id == "service-x")
        .and_then(|t| match &t.webhook_secret {
            Some(WebhookSecretSource::Inline(secret)) => Some(secret.clone()),
            _ => None,
        })
        .expect("service-x has a webhook secret");
    let running = app::start(config, StartOptions::default())
        .await
        .expect("gateway");
    let hooks = running.webhooks_addr.expect("webhook port");
    let channel = Channel::from_shared(format!("http://{}", running.grpc_addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");

    // Idle subscribers, and what they cost.
    let before = rss("self").rss;
    let mut streams = Vec::with_capacity(plan.subscribers);
    for _ in 0..plan.subscribers {
        let mut client = SessionServiceClient::new(channel.clone());
        let mut request = tonic::Request::new(WatchSessionEventsRequest::default());
        request
            .metadata_mut()
            .insert("x-tenant-id", "service-x".parse().expect("ascii"));
        let stream = client
            .watch_session_events(request)
            .await
            .expect("watch")
            .into_inner();
        streams.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let per_subscriber = rss("self").rss.saturating_sub(before) / plan.subscribers.max(1) as u64;

    // The load: `total` events at `per_second`, each sent at a known instant.
    let total = usize::try_from(plan.per_second * plan.duration.as_millis() as u64 / 1000)
        .unwrap_or(0)
        .max(1);
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let receivers: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            let sent = Arc::clone(&sent);
            tokio::spawn(async move {
                let mut delays = Vec::with_capacity(total);
                while delays.len() < total {
                    let Ok(Some(event)) = stream.message().await else {
                        break;
                    };
                    let at = sent
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get(&event.session_id)
                        .copied();
                    if let Some(at) = at {
                        delays.push(at.elapsed());
                    }
                }
                delays
            })
        })
        .collect();
    let http = reqwest::Client::new();
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / plan.per_second));
    let mut posts = Vec::with_capacity(total);
    let started = Instant::now();
    for i in 0..total {
        tick.tick().await;
        posts.push(tokio::spawn(post(
            http.clone(),
            hooks,
            secret.clone(),
            format!("bench-{i}"),
            Arc::clone(&sent),
        )));
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let mut refused = 0;
    for post in posts {
        if !post.await.unwrap_or(false) {
            refused += 1;
        }
    }
    let mut delays = Vec::new();
    let mut short = 0;
    for receiver in receivers {
        let got = tokio::time::timeout(Duration::from_secs(30), receiver)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        if got.len() < total {
            short += 1;
        }
        delays.extend(got);
    }
    let samples = Samples::new(delays);
    let _ = writeln!(
        out,
        "\n## 7. Session events (webhook port to WatchSessionEvents)\n\n\
         {} subscribers of one tenant, {total} signed webhooks posted at {rate:.0}/s \
         (target {}/s) over {:.1} s; memory event log.\n\n\
         | metric | value |\n| --- | ---: |\n\
         | webhook to subscriber p50 | {:.2} ms |\n\
         | webhook to subscriber p99 | {:.2} ms |\n\
         | deliveries measured | {} |\n\
         | posts not answered 200 | {refused} |\n\
         | subscribers that missed events | {short} |\n\
         | memory per idle subscriber, client and server ends (RSS delta / n) | {:.1} KiB |",
        plan.subscribers,
        plan.per_second,
        plan.duration.as_secs_f64(),
        samples.pct(0.50).as_secs_f64() * 1e3,
        samples.pct(0.99).as_secs_f64() * 1e3,
        samples.len(),
        per_subscriber as f64 / 1024.0,
    );
    drop(channel);
    let _ = running.shutdown().await;
}

/// Posts one signed `status.updated` for `session_id`; true on 200.
async fn post(
    http: reqwest::Client,
    hooks: std::net::SocketAddr,
    secret: WebhookSecret,
    session_id: String,
    sent: Arc<Mutex<HashMap<String, Instant>>>,
) -> bool {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let body = serde_json::json!({
        "webhook_type": "status.updated", "session_id": session_id,
        "status": "Approved", "timestamp": now,
    })
    .to_string();
    let signature = sign(&secret, body.as_bytes());
    sent.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(session_id, Instant::now());
    http.post(format!("http://{hooks}/webhooks/didit/service-x"))
        .header("x-timestamp", now.to_string())
        .header("x-signature", signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .is_ok_and(|r| r.status().as_u16() == 200)
}
