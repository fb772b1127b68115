//! Many replicas, one truth: several gateways (`app::start`) in front of
//! ONE sandbox, sharing ONE real `redis-server`. Identical imports spread
//! over the gateways reach Didit once, a retry on another gateway is
//! replayed, a lost answer is recovered by whichever gateway gets the
//! retry, a Redis outage is a clear STATE_UNAVAILABLE (nothing sent to
//! Didit) with share/import health NOT_SERVING, Redis never holds
//! vendor_data in clear, and a webhook received by one gateway reaches a
//! watcher on another (sealed in Redis too).

use std::time::Duration;

use base64::Engine as _;
use didit_sandbox::{Sandbox, SandboxConfig, Stats};
use didit_share_gateway::app::{self, Running, StartOptions};
use didit_share_gateway::proto::import_service_client::ImportServiceClient;
use didit_share_gateway::proto::session_service_client::SessionServiceClient;
use didit_share_gateway::proto::share_service_client::ShareServiceClient;
use didit_share_gateway::proto::{
    ImportSharedSessionRequest, ImportSharedSessionResponse, ShareSessionRequest,
    WatchSessionEventsRequest,
};
use didit_share_gateway::state::{Backend, StateConfig};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt as _;

use crate::env::{create_session, demo, eventually, metric_value, reason, with_tenant};
use crate::state::server::{RedisServer, holds};

/// One gateway of the group.
struct Replica {
    running: Running,
    channel: Channel,
}

/// Gateways, the sandbox and Redis.
struct Group {
    redis: RedisServer,
    sandbox: Sandbox,
    replicas: Vec<Replica>,
    http: reqwest::Client,
    _secrets: tempfile::TempDir,
}

impl Group {
    /// `n` gateways on one sandbox and one fresh Redis; `None` (skipped)
    /// without `redis-server`.
    async fn start(n: usize) -> Option<Self> {
        let redis = RedisServer::start()?;
        didit_share_gateway::install_crypto_provider();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sandbox = Sandbox::start(listener, SandboxConfig::default())
            .await
            .unwrap();
        let secrets = tempfile::tempdir().unwrap();
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        std::fs::write(secrets.path().join("state-key"), key).unwrap();
        let mut group = Self {
            redis,
            sandbox,
            replicas: Vec::new(),
            http: reqwest::Client::new(),
            _secrets: secrets,
        };
        for _ in 0..n {
            let options = StartOptions {
                drain_delay: Some(Duration::from_millis(20)),
                ..StartOptions::default()
            };
            let running = app::start(group.config(), options).await.unwrap();
            let channel = Channel::from_shared(format!("http://{}", running.grpc_addr))
                .unwrap()
                .connect_lazy();
            group.replicas.push(Replica { running, channel });
        }
        Some(group)
    }

    /// The config of one more gateway of the group.
    fn config(&self) -> didit_share_gateway::config::Config {
        let mut config = app::sandbox_config(&self.sandbox.base_url());
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.admin_listen = "127.0.0.1:0".parse().unwrap();
        config.server.shutdown_grace = Duration::from_secs(2);
        for tenant in &mut config.tenants {
            tenant.rate_limit_per_minute = 1_000_000;
        }
        config.state = StateConfig {
            backend: Backend::Redis,
            redis_url: Some(self.redis.url()),
            encryption_key_file: Some(self._secrets.path().join("state-key")),
            key_prefix: "replicas".into(),
            connect_timeout: Duration::from_millis(300),
            response_timeout: Duration::from_millis(300),
            poll_interval: Duration::from_millis(50),
            health_check_interval: Duration::from_millis(100),
            ..StateConfig::default()
        };
        config
    }

    fn stats(&self) -> Stats {
        self.sandbox.stats()
    }

    async fn faults(&self, faults: Value) {
        let response = self
            .http
            .put(format!("{}/_sandbox/faults", self.sandbox.base_url()))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "faults {faults}");
    }

    /// A fresh Approved session of service-x, shared for service-y.
    async fn token_for_y(&self) -> (String, String) {
        let source =
            create_session(&self.http, &self.sandbox, "service-x", "user", "Approved").await;
        let request = ShareSessionRequest {
            session_id: source.clone(),
            for_application_id: demo("service-y").application_id.to_string(),
            ttl_seconds: None,
        };
        let token = ShareServiceClient::new(self.replicas[0].channel.clone())
            .share_session(with_tenant("service-x", request))
            .await
            .unwrap()
            .into_inner()
            .share_token;
        (source, token)
    }

    /// Imports `token` for service-y through replica `i`.
    async fn import(
        &self,
        i: usize,
        token: &str,
        vendor_data: &str,
    ) -> Result<ImportSharedSessionResponse, Status> {
        import_via(self.replicas[i].channel.clone(), token, vendor_data).await
    }

    /// The Redis keys matching `pattern`.
    async fn keys(&self, pattern: &str) -> Vec<String> {
        let mut conn = self.redis.connection().await;
        redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut conn)
            .await
            .unwrap()
    }

    async fn health(&self, i: usize, service: &str) -> i32 {
        HealthClient::new(self.replicas[i].channel.clone())
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status
    }

    async fn stop(self) {
        for replica in self.replicas {
            replica.running.shutdown().await.unwrap();
        }
        self.sandbox.stop().await;
        drop(self.redis);
    }
}

async fn import_via(
    channel: Channel,
    token: &str,
    vendor_data: &str,
) -> Result<ImportSharedSessionResponse, Status> {
    let request = ImportSharedSessionRequest {
        share_token: token.into(),
        workflow_id: demo("service-y").workflows.user.clone(),
        vendor_data: vendor_data.into(),
        trust_review: true,
    };
    ImportServiceClient::new(channel)
        .import_shared_session(with_tenant("service-y", request))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn identical_imports_spread_over_three_gateways_reach_didit_once() {
    let Some(group) = Group::start(3).await else {
        return;
    };
    let (_, token) = group.token_for_y().await;
    group
        .faults(json!({"per_endpoint": {"import": {"latency_ms": 300}}}))
        .await;
    let calls: Vec<_> = (0..30)
        .map(|i| {
            let channel = group.replicas[i % 3].channel.clone();
            let token = token.clone();
            tokio::spawn(async move { import_via(channel, &token, "u-1").await })
        })
        .collect();
    let mut sessions = std::collections::HashSet::new();
    for call in calls {
        sessions.insert(call.await.unwrap().unwrap().session_id);
    }
    assert_eq!(sessions.len(), 1, "every caller got the same session");
    assert_eq!(group.stats().import_calls, 1, "one upstream import");
    group.stop().await;
}

#[tokio::test]
async fn a_retry_on_another_gateway_is_replayed() {
    let Some(group) = Group::start(2).await else {
        return;
    };
    let (_, token) = group.token_for_y().await;
    let first = group.import(0, &token, "u-2").await.unwrap();
    assert!(!first.replayed);
    let retry = group.import(1, &token, "u-2").await.unwrap();
    assert!(retry.replayed && !retry.recovered);
    assert_eq!(retry.session_id, first.session_id);
    assert_eq!(retry.raw_json, first.raw_json);
    let other = group.import(1, &token, "someone-else").await.unwrap_err();
    assert_eq!(reason(&other), "ALREADY_IMPORTED");
    assert_eq!(group.stats().import_calls, 1);
    group.stop().await;
}

#[tokio::test]
async fn a_lost_answer_is_recovered_by_another_gateway() {
    let Some(group) = Group::start(2).await else {
        return;
    };
    let (source, token) = group.token_for_y().await;
    group
        .faults(json!({"per_endpoint": {"import": {"drop_next": 1}}}))
        .await;
    let lost = group.import(0, &token, "u-3").await.unwrap_err();
    assert_eq!(lost.code(), Code::Unavailable);
    assert_eq!(reason(&lost), "UPSTREAM_UNAVAILABLE");
    assert!(lost.get_details_retry_info().is_some());
    let retry = group.import(1, &token, "u-3").await.unwrap();
    assert!(retry.replayed && retry.recovered, "{retry:?}");
    assert_eq!(retry.shared_from_session, source);
    assert_eq!(group.stats().import_ok, 1);
    let again = group.import(0, &token, "u-3").await.unwrap();
    assert_eq!(again.session_id, retry.session_id);
    group.stop().await;
}

#[tokio::test]
async fn a_redis_outage_is_state_unavailable_and_nothing_reaches_didit() {
    let Some(mut group) = Group::start(2).await else {
        return;
    };
    let (_, token) = group.token_for_y().await;
    let import_service = "didit.share.v1.ImportService";
    assert_eq!(
        group.health(0, import_service).await,
        ServingStatus::Serving as i32
    );
    group.redis.kill();
    let before = group.stats().import_calls;
    for i in 0..2 {
        let err = group.import(i, &token, "u-4").await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        assert_eq!(reason(&err), "STATE_UNAVAILABLE");
        assert!(err.get_details_retry_info().is_some());
    }
    assert_eq!(group.stats().import_calls, before, "nothing sent to Didit");
    for i in 0..2 {
        eventually(Duration::from_secs(5), "import NOT_SERVING", || async {
            group.health(i, import_service).await == ServingStatus::NotServing as i32
        })
        .await;
        assert_eq!(
            group.health(i, "").await,
            ServingStatus::Serving as i32,
            "the process stays in rotation"
        );
        let metrics = group.replicas[i].running.state.metrics.encode();
        assert_eq!(metric_value(&metrics, "dsg_state_available"), 0.0);
    }

    group.redis.restart();
    eventually(Duration::from_secs(5), "import SERVING again", || async {
        group.health(1, import_service).await == ServingStatus::Serving as i32
    })
    .await;
    let imported = group.import(1, &token, "u-4").await.unwrap();
    assert!(!imported.replayed);
    let retry = group.import(0, &token, "u-4").await.unwrap();
    assert_eq!(retry.session_id, imported.session_id);
    assert_eq!(group.stats().import_ok, 1, "no double import");
    group.stop().await;
}

#[tokio::test]
async fn a_redis_dump_holds_no_vendor_data_in_clear() {
    let Some(group) = Group::start(1).await else {
        return;
    };
    let (_, token) = group.token_for_y().await;
    let vendor_data = "vendor-secret-4242";
    let imported = group.import(0, &token, vendor_data).await.unwrap();
    assert_eq!(imported.vendor_data, vendor_data);
    let keys = group.keys("replicas:*").await;
    assert!(
        keys.iter().any(|k| k.starts_with("replicas:record:")),
        "{keys:?}"
    );
    let dump = group.redis.dump().await;
    assert!(
        !holds(&dump, vendor_data),
        "vendor_data readable in the dump"
    );
    assert!(
        !holds(&dump, &imported.session_id),
        "the session id readable in the dump"
    );
    group.stop().await;
}

#[tokio::test]
async fn a_webhook_on_one_gateway_reaches_a_watcher_on_another_sealed_in_redis() {
    let Some(mut group) = Group::start(0).await else {
        return;
    };
    // Two gateways with a webhook port; the sandbox delivers to the first.
    for _ in 0..2 {
        let mut config = group.config();
        app::sandbox_webhooks(&mut config, "127.0.0.1:0".parse().unwrap());
        let options = StartOptions {
            drain_delay: Some(Duration::from_millis(20)),
            ..StartOptions::default()
        };
        let running = app::start(config, options).await.unwrap();
        let channel = Channel::from_shared(format!("http://{}", running.grpc_addr))
            .unwrap()
            .connect_lazy();
        group.replicas.push(Replica { running, channel });
    }
    let first = &group.replicas[0].running;
    app::register_sandbox_webhooks(
        &group.sandbox,
        &first.config(),
        first.webhooks_addr.unwrap(),
    )
    .unwrap();

    // service-y watches on the second gateway...
    let mut watch = SessionServiceClient::new(group.replicas[1].channel.clone())
        .watch_session_events(with_tenant(
            "service-y",
            WatchSessionEventsRequest {
                after_event_id: String::new(),
                webhook_types: vec!["status.updated".into()],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    // ...imports through the first; the sandbox's webhook for the new
    // session goes to the first gateway.
    let (_, token) = group.token_for_y().await;
    let vendor_data = "vendor-secret-webhook-77";
    let imported = group.import(0, &token, vendor_data).await.unwrap();
    let event = loop {
        let event = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .expect("the event within 10 s")
            .unwrap()
            .expect("the stream goes on");
        if event.session_id == imported.session_id {
            break event;
        }
    };
    assert_eq!(event.webhook_type, "status.updated");
    assert_eq!(event.vendor_data, vendor_data);

    // The stream entry is sealed: neither the vendor_data nor the session
    // id is readable in a dump.
    assert!(
        !group.keys("replicas:events:*").await.is_empty(),
        "the event is in a Redis stream"
    );
    let dump = group.redis.dump().await;
    for secret in [vendor_data, imported.session_id.as_str()] {
        assert!(!holds(&dump, secret), "{secret} readable in the dump");
    }
    group.stop().await;
}

/// A gateway in a runtime of its own, so that the test can kill it
/// outright (every task, detached imports included) as a crashed pod.
struct Doomed {
    runtime: Option<tokio::runtime::Runtime>,
    channel: Channel,
}

impl Doomed {
    fn start(config: didit_share_gateway::config::Config) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let running =
            runtime.block_on(async { app::start(config, StartOptions::default()).await.unwrap() });
        let addr = running.grpc_addr;
        // Kept alive inside its runtime until the runtime dies.
        runtime.spawn(async move {
            let _running = running;
            std::future::pending::<()>().await;
        });
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        Self {
            runtime: Some(runtime),
            channel,
        }
    }

    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_import_leaves_the_import_to_another() {
    let Some(group) = Group::start(1).await else {
        return;
    };
    let (source, token) = group.token_for_y().await;
    let config = group.config();
    let mut doomed = tokio::task::spawn_blocking(move || Doomed::start(config))
        .await
        .unwrap();
    group
        .faults(json!({"per_endpoint": {"import": {"latency_ms": 800}}}))
        .await;
    let channel = doomed.channel.clone();
    let first = {
        let token = token.clone();
        tokio::spawn(async move { import_via(channel, &token, "u-5").await })
    };
    eventually(
        Duration::from_secs(5),
        "the import reached Didit",
        || async { group.stats().import_calls == 1 },
    )
    .await;
    let doomed = tokio::task::spawn_blocking(move || {
        doomed.kill();
        doomed
    })
    .await
    .unwrap();
    assert!(
        first.await.unwrap().is_err(),
        "the dead gateway's caller failed"
    );
    group.faults(json!({})).await;

    // The dead gateway's lease expires; the retry elsewhere finds the session.
    let retry = group.import(0, &token, "u-5").await.unwrap();
    assert_eq!(retry.shared_from_session, source);
    assert_eq!(group.stats().import_ok, 1, "one import in all");
    drop(doomed);
    group.stop().await;
}

#[tokio::test]
async fn redis_restarted_mid_load_refuses_clearly_and_imports_each_token_once() {
    let Some(mut group) = Group::start(2).await else {
        return;
    };
    let mut tokens = Vec::new();
    for _ in 0..12 {
        tokens.push(group.token_for_y().await.1);
    }
    group
        .faults(json!({"per_endpoint": {"import": {"latency_ms": 100}}}))
        .await;
    let before = group.stats();
    // Four workers, three tokens each, one after the other: the outage
    // falls in the middle of the load.
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = tokens
        .chunks(3)
        .enumerate()
        .map(|(i, chunk)| {
            let channels: Vec<Channel> = group.replicas.iter().map(|r| r.channel.clone()).collect();
            let chunk = chunk.to_vec();
            let refused = std::sync::Arc::clone(&refused);
            tokio::spawn(async move {
                let mut refusals = Vec::new();
                let mut imported = Vec::new();
                for token in chunk {
                    let mut attempt = i;
                    loop {
                        let channel = channels[attempt % channels.len()].clone();
                        match import_via(channel, &token, "load").await {
                            Ok(ok) => {
                                imported.push(ok);
                                break;
                            }
                            Err(status) => {
                                refusals.push(reason(&status));
                                refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                assert!(refusals.len() < 400, "never imported: {refusals:?}");
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                        attempt += 1;
                    }
                }
                (imported, refusals)
            })
        })
        .collect();
    eventually(Duration::from_secs(5), "some imports made", || async {
        group.stats().import_ok > before.import_ok
    })
    .await;
    group.redis.kill();
    eventually(Duration::from_secs(5), "the outage seen", || async {
        metric_value(
            &group.replicas[0].running.state.metrics.encode(),
            "dsg_state_available",
        ) == 0.0
    })
    .await;
    eventually(Duration::from_secs(5), "a call refused", || async {
        refused.load(std::sync::atomic::Ordering::SeqCst) > 0
    })
    .await;
    group.redis.restart();
    for worker in workers {
        let (imported, refusals) = worker.await.unwrap();
        assert_eq!(imported.len(), 3);
        for reason in &refusals {
            assert_eq!(reason, "STATE_UNAVAILABLE", "{refusals:?}");
        }
    }
    let after = group.stats();
    assert_eq!(
        after.import_ok - before.import_ok,
        12,
        "each token imported once"
    );
    assert_eq!(
        after.import_calls - before.import_calls,
        12,
        "no import sent twice"
    );
    group.stop().await;
}

/// The Redis commands the gateway sent between two `ECHO marker`
/// commands, one entry per round trip (`MULTI`…`EXEC` is one; commands
/// inside scripts are not listed), read from `MONITOR`. Health `PING`s and
/// anything not naming the gateway's state keys (the event log) are left
/// out.
fn round_trips(lines: &[String], marker: &str) -> Vec<Vec<String>> {
    let mut parts = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in lines {
        // +1796092208.433332 [0 127.0.0.1:53328] "SET" "a" "1"
        let Some((source, rest)) = line.split_once(" [").and_then(|(_, r)| r.split_once("] "))
        else {
            continue;
        };
        let name = rest
            .split('"')
            .nth(1)
            .unwrap_or_default()
            .to_ascii_uppercase();
        if name == "ECHO" && rest.contains(marker) {
            parts.extend(current.take());
            current = Some(Vec::new());
            continue;
        }
        let Some(part) = current.as_mut() else {
            continue;
        };
        let state_key = rest.contains("\"replicas:") && !rest.contains(":events:");
        if source.ends_with(" lua") || name == "PING" || name == "EXEC" {
            continue;
        }
        if name == "MULTI" || state_key {
            part.push(name);
        }
    }
    parts
}

/// The Redis round trips of an import that misses the replay store and of
/// a replay, counted with `MONITOR`: a lookup `GET`, the begin script, the
/// budget charge and the finish script; a replay is one `GET`.
#[tokio::test]
async fn a_miss_costs_four_redis_round_trips_and_a_replay_one_get() {
    use std::io::{BufRead as _, BufReader, Write as _};

    let Some(group) = Group::start(1).await else {
        return;
    };
    // Scripts loaded, connections up.
    let (_, warm) = group.token_for_y().await;
    group.import(0, &warm, "u-warm").await.unwrap();
    let (_, token) = group.token_for_y().await;

    let port = group
        .redis
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse::<u16>()
        .unwrap();
    let mut monitor = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    monitor.write_all(b"MONITOR\r\n").unwrap();
    let mut reader = BufReader::new(monitor.try_clone().unwrap());
    let mut ok = String::new();
    reader.read_line(&mut ok).unwrap();
    assert_eq!(ok, "+OK\r\n");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut conn = group.redis.connection().await;
    let marker = format!("dsg-test-marker-{}", rand::random::<u32>());
    let mut echo = async || {
        let _: String = redis::cmd("ECHO")
            .arg(&marker)
            .query_async(&mut conn)
            .await
            .unwrap();
    };
    echo().await;
    let first = group.import(0, &token, "u-count").await.unwrap();
    assert!(!first.replayed);
    echo().await;
    let retry = group.import(0, &token, "u-count").await.unwrap();
    assert!(retry.replayed);
    echo().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines: Vec<String> = rx.try_iter().collect();
    let _ = monitor.shutdown(std::net::Shutdown::Both);
    let parts = round_trips(&lines, &marker);
    assert_eq!(parts.len(), 2, "{lines:#?}");
    assert_eq!(parts[0], ["GET", "EVALSHA", "EVALSHA", "EVALSHA"], "miss");
    assert_eq!(parts[1], ["GET"], "replay");
    group.stop().await;
}
