//! Test harness: a Didit sandbox and a gateway wired to it, both in-process
//! on `127.0.0.1:0`, plus tonic clients and sandbox admin helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use didit_sandbox::{DemoApplication, Dialect, Sandbox, SandboxConfig, Stats};
use didit_share_gateway::app::{self, Running, StartOptions};
use didit_share_gateway::config::{Config, KeySource, TenantConfig};
use didit_share_gateway::grpc::ServeError;
use didit_share_gateway::proto::import_service_client::ImportServiceClient;
use didit_share_gateway::proto::share_service_client::ShareServiceClient;
use didit_share_gateway::proto::{
    ImportSharedSessionRequest, ImportSharedSessionResponse, ShareSessionRequest,
    ShareSessionResponse,
};
use didit_share_gateway::service::AppState;
use didit_share_gateway::tenant::ApiKey;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Request, Status};
use tonic_types::StatusExt as _;

/// A tenant whose key lacks `write:sessions` (service-x's read-only key).
pub const READ_ONLY_TENANT: &str = "service-x-readonly";

/// A running sandbox + gateway.
pub struct TestEnv {
    pub sandbox: Sandbox,
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub state: Arc<AppState>,
    pub share_client: ShareServiceClient<Channel>,
    pub import_client: ImportServiceClient<Channel>,
    pub channel: Channel,
    pub http: reqwest::Client,
    /// The gateway, as `app::start` returned it; taken by the shutdown.
    running: Option<Running>,
}

impl TestEnv {
    /// Sandbox in `dialect` and a gateway with the `--sandbox` tenants plus
    /// [`READ_ONLY_TENANT`].
    pub async fn start(dialect: Dialect) -> Self {
        Self::start_with(
            SandboxConfig {
                dialect,
                rate_limit: None,
            },
            |_| {},
        )
        .await
    }

    /// Like [`start`](Self::start), with the sandbox config and a config tweak.
    pub async fn start_with(
        sandbox_config: SandboxConfig,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        didit_share_gateway::install_crypto_provider();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sandbox = Sandbox::start(listener, sandbox_config).await.unwrap();
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut config = app::sandbox_config(&sandbox.base_url());
        config.server.listen = loopback;
        config.server.admin_listen = loopback;
        let x = demo("service-x");
        config.tenants.push(TenantConfig {
            id: READ_ONLY_TENANT.into(),
            application_id: x.application_id,
            key_source: KeySource::Inline(ApiKey::new(x.read_only_api_key.clone())),
            allowed_callers: vec!["*".into()],
            rate_limit_per_minute: 300,
            webhook_secret: None,
            partners: None,
            rate_limit_burst: None,
        });
        for tenant in &mut config.tenants {
            // Tests make many calls quickly; the rate limit has its own test.
            tenant.rate_limit_per_minute = 1_000_000;
            // Tests share with and import from any application (unknown
            // ones too); the partner policy has its own tests, which set
            // the policies they test.
            tenant.partners = None;
        }
        tweak(&mut config);
        let options = StartOptions {
            drain_delay: Some(std::time::Duration::from_millis(50)),
            ..StartOptions::default()
        };
        let running = app::start(config, options).await.unwrap();
        let grpc_addr = running.grpc_addr;
        // Lazy: in mtls mode this plaintext channel is never usable.
        let channel = Channel::from_shared(format!("http://{grpc_addr}"))
            .unwrap()
            .connect_lazy();
        Self {
            sandbox,
            grpc_addr,
            admin_addr: running.admin_addr,
            state: Arc::clone(&running.state),
            share_client: ShareServiceClient::new(channel.clone()),
            import_client: ImportServiceClient::new(channel.clone()),
            channel,
            http: reqwest::Client::new(),
            running: Some(running),
        }
    }

    /// The running gateway (to reload it, or read its config).
    pub fn gateway(&self) -> &Running {
        self.running.as_ref().expect("gateway already stopped")
    }

    /// Starts the drain now; returns the task to await for its end.
    pub fn begin_shutdown(&mut self) -> JoinHandle<Result<(), ServeError>> {
        let running = self.running.take().expect("gateway already stopped");
        tokio::spawn(running.shutdown())
    }

    /// A fresh session in `app` ("service-x"/"service-y") with fixtures.
    pub async fn create_session(&self, app: &str, kind: &str, status: &str) -> String {
        create_session(&self.http, &self.sandbox, app, kind, status).await
    }

    pub async fn delete_session(&self, session_id: &str) {
        let response = self
            .http
            .delete(format!(
                "{}/_sandbox/sessions/{session_id}",
                self.sandbox.base_url()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 204);
    }

    /// `PUT /_sandbox/faults`.
    pub async fn faults(&self, faults: Value) {
        let response = self
            .http
            .put(format!("{}/_sandbox/faults", self.sandbox.base_url()))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "faults {faults}");
    }

    /// `POST /_sandbox/clock`.
    pub async fn advance_clock(&self, seconds: i64) {
        let response = self
            .http
            .post(format!("{}/_sandbox/clock", self.sandbox.base_url()))
            .json(&json!({"advance_seconds": seconds}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }

    pub fn stats(&self) -> Stats {
        self.sandbox.stats()
    }

    pub async fn share(
        &self,
        tenant: &str,
        session_id: &str,
        for_application: &str,
        ttl_seconds: Option<u32>,
    ) -> Result<ShareSessionResponse, Status> {
        let request = ShareSessionRequest {
            session_id: session_id.into(),
            for_application_id: for_application.into(),
            ttl_seconds,
        };
        self.share_client
            .clone()
            .share_session(with_tenant(tenant, request))
            .await
            .map(|r| r.into_inner())
    }

    /// Shares `session_id` of service-x for service-y with a caller deadline.
    pub async fn share_for_y_within(
        &self,
        session_id: &str,
        timeout: std::time::Duration,
    ) -> Result<ShareSessionResponse, Status> {
        let mut request = with_tenant(
            "service-x",
            ShareSessionRequest {
                session_id: session_id.into(),
                for_application_id: demo("service-y").application_id.to_string(),
                ttl_seconds: None,
            },
        );
        request.set_timeout(timeout);
        self.share_client
            .clone()
            .share_session(request)
            .await
            .map(|r| r.into_inner())
    }

    /// Shares `session_id` of service-x for service-y; returns the token.
    pub async fn token_for_y(&self, session_id: &str) -> String {
        let y = demo("service-y").application_id.to_string();
        self.share("service-x", session_id, &y, None)
            .await
            .unwrap()
            .share_token
    }

    pub async fn import(
        &self,
        tenant: &str,
        token: &str,
        workflow_id: &str,
        vendor_data: &str,
        trust_review: bool,
    ) -> Result<ImportSharedSessionResponse, Status> {
        let request = ImportSharedSessionRequest {
            share_token: token.into(),
            workflow_id: workflow_id.into(),
            vendor_data: vendor_data.into(),
            trust_review,
        };
        self.import_client
            .clone()
            .import_shared_session(with_tenant(tenant, request))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn stop(mut self) {
        let server = self.begin_shutdown();
        server.await.unwrap().unwrap();
        self.sandbox.stop().await;
    }
}

/// The sandbox's fixed demo application `name`.
pub fn demo(name: &str) -> DemoApplication {
    didit_sandbox::demo_applications()
        .into_iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("no demo application {name}"))
}

/// Wraps `message` with `x-tenant-id`.
pub fn with_tenant<T>(tenant: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-tenant-id", tenant.parse().unwrap());
    request
}

/// The ErrorInfo reason of `status`, asserting the domain.
pub fn reason(status: &Status) -> String {
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, "didit-share-gateway");
    info.reason
}

/// The ErrorInfo metadata of `status`.
pub fn error_metadata(status: &Status) -> std::collections::HashMap<String, String> {
    status
        .get_details_error_info()
        .map(|i| i.metadata)
        .unwrap_or_default()
}

/// Both dialects, for tests that must hold in each.
pub const DIALECTS: [Dialect; 2] = [Dialect::Seeds, Dialect::OpenApi];

/// Sums a metric's samples in Prometheus text (every label set).
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `condition` every 10 ms for at most `bound`.
pub async fn eventually<F, Fut>(bound: std::time::Duration, what: &str, mut condition: F)
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
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A loopback port free right now (for spawning the binary).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh session of `kind` in the demo application `app` of `sandbox`,
/// with its fixtures, in `status` (`POST /_sandbox/sessions`).
pub async fn create_session(
    http: &reqwest::Client,
    sandbox: &Sandbox,
    app: &str,
    kind: &str,
    status: &str,
) -> String {
    let body =
        json!({"application_id": demo(app).application_id, "session_kind": kind, "status": status});
    let response = http
        .post(format!("{}/_sandbox/sessions", sandbox.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        201,
        "create session {kind} {status}"
    );
    let value: Value = response.json().await.unwrap();
    value["session_id"].as_str().unwrap().to_owned()
}
