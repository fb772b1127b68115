//! What the benchmark runs against, all on `127.0.0.1:0`: the sandbox, the
//! gateway (built like `--sandbox` mode, limits raised), a bare tonic echo
//! server, and the clients and share tokens the sections need.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use didit_sandbox::{Dialect, Sandbox, SandboxConfig};
use didit_share_gateway::app::{self, Running, StartOptions};
use didit_share_gateway::config::Config;
use didit_share_gateway::proto::import_service_client::ImportServiceClient;
use didit_share_gateway::proto::import_service_server::{ImportService, ImportServiceServer};
use didit_share_gateway::proto::{ImportSharedSessionRequest, ImportSharedSessionResponse};
use didit_share_gateway::service::AppState;
use futures::StreamExt as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};

/// The tenant that imports (service-x shares with it).
pub const IMPORTER: &str = "service-y";
/// service-x's key, used to mint share tokens directly at the sandbox.
const SHARER_KEY: &str = "sandbox-service-x-key";
/// service-y's key, for the direct (no gateway) imports.
const IMPORTER_KEY: &str = "sandbox-service-y-key";
/// service-y's KYC workflow.
pub const WORKFLOW: &str = "wf_service_y_kyc";
/// The importer's user id sent with every import.
pub const VENDOR_DATA: &str = "bench-user";
/// Largest message the echo server sends (as the gateway's server).
const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// The gateway's config for a benchmark: `--sandbox` mode's tenants, with
/// the per-tenant rate limit (default 300/min) and the global concurrency
/// limit (default 512) raised so that they never throttle the load, on
/// loopback ports of the system's choosing.
pub fn bench_config(upstream: &str) -> Config {
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("loopback");
    let mut config = app::sandbox_config(upstream);
    config.server.listen = loopback;
    config.server.admin_listen = loopback;
    for tenant in &mut config.tenants {
        tenant.rate_limit_per_minute = u32::MAX;
    }
    config.server.max_concurrent_requests = 1_000_000;
    config
}

/// A gateway serving on loopback until [`GatewayHandle::stop`].
pub struct GatewayHandle {
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub state: Arc<AppState>,
    running: Running,
}

impl GatewayHandle {
    /// Starts the gateway of `config` with `app::start`, as the binary does
    /// (key watcher included); only the drain delay is shortened.
    pub async fn start(config: &Config) -> Self {
        let options = StartOptions {
            drain_delay: Some(Duration::from_millis(10)),
            ..StartOptions::default()
        };
        let running = app::start(config.clone(), options)
            .await
            .expect("gateway config");
        Self {
            grpc_addr: running.grpc_addr,
            admin_addr: running.admin_addr,
            state: Arc::clone(&running.state),
            running,
        }
    }

    /// Drains and waits.
    pub async fn stop(self) {
        if let Err(err) = self.running.shutdown().await {
            eprintln!("gateway stopped with an error: {err}");
        }
    }
}

/// The bare tonic baseline: the gateway's own generated `ImportService`
/// with a handler that clones a pre-built response. Same codec, same
/// message, no upstream, no layers.
struct Echo {
    response: ImportSharedSessionResponse,
}

#[tonic::async_trait]
impl ImportService for Echo {
    async fn import_shared_session(
        &self,
        _request: Request<ImportSharedSessionRequest>,
    ) -> Result<Response<ImportSharedSessionResponse>, Status> {
        Ok(Response::new(self.response.clone()))
    }
}

/// The least a gRPC front to Didit's REST import can do: one reqwest
/// `POST` per call with the caller's token, the body answered as
/// `raw_json` (no tenant, auth, state, budget or mapping). Its CPU per call
/// is the floor of section 5.
struct BareProxy {
    http: reqwest::Client,
    url: String,
}

#[tonic::async_trait]
impl ImportService for BareProxy {
    async fn import_shared_session(
        &self,
        request: Request<ImportSharedSessionRequest>,
    ) -> Result<Response<ImportSharedSessionResponse>, Status> {
        let request = request.into_inner();
        let answer = self
            .http
            .post(&self.url)
            .header("x-api-key", IMPORTER_KEY)
            .json(&serde_json::json!({
                "share_token": request.share_token,
                "workflow_id": request.workflow_id,
                "vendor_data": request.vendor_data,
                "trust_review": request.trust_review,
            }))
            .send()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let status = answer.status();
        let body = answer
            .bytes()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        if !status.is_success() {
            return Err(Status::failed_precondition(format!("upstream {status}")));
        }
        Ok(Response::new(ImportSharedSessionResponse {
            raw_json: body.to_vec(),
            ..Default::default()
        }))
    }
}

/// A running echo server (or bare proxy).
pub struct EchoHandle {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl EchoHandle {
    /// Serves `response` to every call, as `Server::builder().serve(addr)`
    /// would: accepted sockets get TCP_NODELAY. With `nodelay` false the
    /// listener is wrapped with `TcpIncoming::from` alone, which leaves
    /// Nagle's algorithm on (`Server::tcp_nodelay` does not apply to
    /// `serve_with_incoming*`): the cost of forgetting TCP_NODELAY.
    pub async fn start(response: ImportSharedSessionResponse, nodelay: bool) -> Self {
        Self::serve(Echo { response }, nodelay).await
    }

    /// Serves the [`BareProxy`] to the sandbox at `upstream`.
    pub async fn bare_proxy(upstream: &str) -> Self {
        didit_share_gateway::install_crypto_provider();
        let proxy = BareProxy {
            http: reqwest::Client::new(),
            url: direct_import_url(upstream),
        };
        Self::serve(proxy, true).await
    }

    async fn serve(handler: impl ImportService, nodelay: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
        let addr = listener.local_addr().expect("echo address");
        let (stop, stopped) = oneshot::channel::<()>();
        let service =
            ImportServiceServer::new(handler).max_encoding_message_size(MAX_MESSAGE_BYTES);
        let task = tokio::spawn(
            Server::builder()
                .tcp_nodelay(true)
                .add_service(service)
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(listener).with_nodelay(Some(nodelay)),
                    async {
                        let _ = stopped.await;
                    },
                ),
        );
        Self { addr, stop, task }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The sandbox with latency injection explicitly off.
pub async fn start_sandbox(http: &reqwest::Client) -> Sandbox {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind sandbox");
    let sandbox = Sandbox::start(
        listener,
        SandboxConfig {
            dialect: Dialect::Seeds,
            rate_limit: None,
        },
    )
    .await
    .expect("sandbox");
    // No faults, no injected latency (the default; said out loud here).
    let reset = http
        .delete(format!("{}/_sandbox/faults", sandbox.base_url()))
        .send()
        .await
        .expect("reset faults");
    assert!(reset.status().is_success(), "DELETE /_sandbox/faults");
    sandbox
}

/// One HTTP/2 connection to `addr`.
pub async fn connect(addr: SocketAddr) -> ImportServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .tcp_nodelay(true)
        .connect()
        .await
        .expect("connect");
    ImportServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES)
}

/// `n` connections to `addr`.
pub async fn connect_many(addr: SocketAddr, n: usize) -> Vec<ImportServiceClient<Channel>> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        clients.push(connect(addr).await);
    }
    clients
}

/// The import request for `token`, always with the same parameters (so a
/// repeat is a replay).
pub fn import_request(token: &str) -> ImportSharedSessionRequest {
    ImportSharedSessionRequest {
        share_token: token.to_owned(),
        workflow_id: WORKFLOW.into(),
        vendor_data: VENDOR_DATA.into(),
        trust_review: false,
    }
}

/// `request` with `x-tenant-id: service-y`.
pub fn with_tenant(request: ImportSharedSessionRequest) -> Request<ImportSharedSessionRequest> {
    let mut request = Request::new(request);
    request
        .metadata_mut()
        .insert("x-tenant-id", IMPORTER.parse().expect("ascii"));
    request
}

/// service-x's Approved KYC session, the one every token shares.
fn shared_session() -> uuid::Uuid {
    didit_sandbox::demo_applications()
        .into_iter()
        .find(|a| a.name == "service-x")
        .and_then(|x| {
            x.sessions
                .into_iter()
                .find(|s| s.session_kind == "user" && s.status == "Approved")
        })
        .expect("seeded Approved KYC session of service-x")
        .session_id
}

fn importer_application() -> uuid::Uuid {
    didit_sandbox::demo_applications()
        .into_iter()
        .find(|a| a.name == IMPORTER)
        .expect("service-y")
        .application_id
}

/// Mints `n` fresh share tokens for service-y, straight at the sandbox's
/// REST API with service-x's key (32 in flight).
pub async fn mint_tokens(http: &reqwest::Client, base: &str, n: usize) -> Vec<String> {
    let url = format!("{base}/v3/session/{}/share/", shared_session());
    let body = serde_json::json!({
        "for_application_id": importer_application(),
        "ttl_in_seconds": 86_400,
    });
    futures::stream::iter(0..n)
        .map(|_| {
            let request = http.post(&url).header("x-api-key", SHARER_KEY).json(&body);
            async move {
                let response = request.send().await.expect("share");
                assert_eq!(response.status().as_u16(), 201, "share");
                let value: serde_json::Value = response.json().await.expect("share JSON");
                value["share_token"]
                    .as_str()
                    .expect("share_token")
                    .to_owned()
            }
        })
        .buffer_unordered(32)
        .collect()
        .await
}

/// The direct call: `POST /v3/session/import-shared/` with reqwest, body
/// read to the end. Returns the body length.
pub async fn direct_import(http: &reqwest::Client, url: &str, token: &str) -> usize {
    let response = http
        .post(url)
        .header("x-api-key", IMPORTER_KEY)
        .json(&serde_json::json!({
            "share_token": token,
            "workflow_id": WORKFLOW,
            "vendor_data": VENDOR_DATA,
            "trust_review": false,
        }))
        .send()
        .await
        .expect("direct import");
    assert_eq!(response.status().as_u16(), 201, "direct import");
    response.bytes().await.expect("direct import body").len()
}

/// The direct import URL of the sandbox at `base`.
pub fn direct_import_url(base: &str) -> String {
    format!("{base}/v3/session/import-shared/")
}

/// One import through a gateway; panics on a gRPC error.
pub async fn gateway_import(
    client: &ImportServiceClient<Channel>,
    request: &ImportSharedSessionRequest,
) -> ImportSharedSessionResponse {
    client
        .clone()
        .import_shared_session(with_tenant(request.clone()))
        .await
        .expect("import through the gateway")
        .into_inner()
}
