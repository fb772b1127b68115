//! Graceful shutdown: a drain refuses new calls, lets in-flight calls and
//! detached imports finish within the grace period, and the binary exits 0
//! on SIGTERM and SIGINT.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::env::{TestEnv, demo, eventually, free_port, metric_value, with_tenant};
use didit_sandbox::SandboxConfig;
use didit_share_gateway::proto::ShareSessionRequest;
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;

/// Starts a share of a fresh Approved session on its own task.
async fn spawn_share(
    env: &TestEnv,
) -> tokio::task::JoinHandle<
    Result<tonic::Response<didit_share_gateway::proto::ShareSessionResponse>, tonic::Status>,
> {
    let session = env.create_session("service-x", "user", "Approved").await;
    let request = with_tenant(
        "service-x",
        ShareSessionRequest {
            session_id: session,
            for_application_id: demo("service-y").application_id.to_string(),
            ttl_seconds: None,
        },
    );
    let mut client = env.share_client.clone();
    tokio::spawn(async move { client.share_session(request).await })
}

#[tokio::test]
async fn an_in_flight_call_completes_while_new_calls_are_refused() {
    let mut env = TestEnv::start(Default::default()).await;
    env.faults(json!({"latency_ms": 1500, "endpoints": ["share"]}))
        .await;
    let in_flight = spawn_share(&env).await;
    let sandbox = &env.sandbox;
    eventually(
        Duration::from_secs(5),
        "the share reaches Didit",
        || async move { sandbox.stats().share_calls == 1 },
    )
    .await;

    let server = env.begin_shutdown();

    // After the short drain delay the listener closes: a new connection is
    // refused, so a new call fails fast instead of joining the drain.
    let addr = env.grpc_addr;
    eventually(
        Duration::from_secs(5),
        "the gRPC port closes",
        || async move { tokio::net::TcpStream::connect(addr).await.is_err() },
    )
    .await;
    let fresh = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let refused = didit_share_gateway::proto::share_service_client::ShareServiceClient::new(fresh)
        .share_session(with_tenant(
            "service-x",
            ShareSessionRequest {
                session_id: uuid::Uuid::new_v4().to_string(),
                for_application_id: demo("service-y").application_id.to_string(),
                ttl_seconds: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(!in_flight.is_finished(), "the first call is still running");

    let answer = in_flight
        .await
        .unwrap()
        .expect("the in-flight call completes during the drain");
    assert!(!answer.into_inner().share_token.is_empty());
    server.await.unwrap().unwrap();
    assert_eq!(
        env.stats().share_calls,
        1,
        "the refused call never reached Didit"
    );
    env.sandbox.stop().await;
}

#[tokio::test]
async fn a_detached_import_finishes_before_the_server_returns() {
    let mut env = TestEnv::start(Default::default()).await;
    let y = demo("service-y");
    let session = env.create_session("service-x", "user", "Approved").await;
    let token = env.token_for_y(&session).await;
    env.faults(json!({"latency_ms": 800, "endpoints": ["import"]}))
        .await;

    // The caller gives up; the import it started runs on, detached.
    let mut request = with_tenant(
        "service-y",
        didit_share_gateway::proto::ImportSharedSessionRequest {
            share_token: token,
            workflow_id: y.workflows.user.clone(),
            vendor_data: String::new(),
            trust_review: false,
        },
    );
    request.set_timeout(Duration::from_millis(100));
    let gave_up = env
        .import_client
        .clone()
        .import_shared_session(request)
        .await
        .unwrap_err();
    assert!(
        matches!(gave_up.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{gave_up:?}"
    );
    assert_eq!(env.stats().import_ok, 0, "Didit is still working on it");

    env.begin_shutdown().await.unwrap().unwrap();

    // When run() returns, the import is done and stored for replay.
    assert!(env.state.gateway.tasks().is_empty());
    assert_eq!(env.stats().import_ok, 1);
    let metrics = env.state.metrics.encode();
    assert_eq!(
        metric_value(&metrics, "dsg_import_replay_stored_total"),
        1.0
    );
    env.sandbox.stop().await;
}

#[tokio::test]
async fn the_grace_period_bounds_the_drain() {
    let mut env = TestEnv::start_with(SandboxConfig::default(), |config| {
        config.server.shutdown_grace = Duration::from_millis(500);
    })
    .await;
    env.faults(json!({"latency_ms": 30_000, "endpoints": ["share"]}))
        .await;
    let _stuck = spawn_share(&env).await;
    let sandbox = &env.sandbox;
    eventually(
        Duration::from_secs(5),
        "the share reaches Didit",
        || async move { sandbox.stats().share_calls == 1 },
    )
    .await;

    // run() gives up on the stuck call after the grace period; the
    // process exit that follows closes its connection (see the binary
    // test below).
    let server = env.begin_shutdown();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the drain gives up after the grace period")
        .unwrap()
        .unwrap();
}

/// The real gateway binary, started with `args` and `envs`.
struct Binary {
    child: std::process::Child,
    grpc: u16,
    readyz: String,
    http: reqwest::Client,
}

impl Binary {
    /// Starts the binary; `args` gets `--listen` and `--admin-listen` on
    /// free ports added. Returns once `/readyz` answers 200.
    async fn start(args: &[String], envs: &[(&str, &str)]) -> Self {
        let (grpc, admin) = (free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_didit-share-gateway"))
            .args(args)
            .args([
                "--listen".to_owned(),
                format!("127.0.0.1:{grpc}"),
                "--admin-listen".to_owned(),
                format!("127.0.0.1:{admin}"),
                "--log-format".to_owned(),
                "json".to_owned(),
            ])
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the gateway binary starts");
        let mut binary = Self {
            child,
            grpc,
            readyz: format!("http://127.0.0.1:{admin}/readyz"),
            http: reqwest::Client::new(),
        };
        let ready_by = tokio::time::Instant::now() + Duration::from_secs(30);
        while binary.readyz_status().await != Some(200) {
            if let Some(status) = binary.child.try_wait().unwrap() {
                panic!("the gateway exited before it was ready: {status}");
            }
            assert!(tokio::time::Instant::now() < ready_by, "not ready in 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        binary
    }

    async fn readyz_status(&self) -> Option<u16> {
        let response = self.http.get(&self.readyz).send().await.ok()?;
        Some(response.status().as_u16())
    }

    /// Sends `signal` with kill(1) and waits (at most `bound`) for the
    /// exit, checking that `/readyz` reports the drain meanwhile.
    async fn signal_and_wait(mut self, signal: &str, bound: Duration) -> std::process::ExitStatus {
        let killed = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let mut saw_draining = false;
        let exit_by = tokio::time::Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(saw_draining, "/readyz never answered 503 during the drain");
                return status;
            }
            if tokio::time::Instant::now() > exit_by {
                let _ = self.child.kill();
                panic!("no exit within {bound:?} of SIG{signal}");
            }
            saw_draining |= self.readyz_status().await == Some(503);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        // A failed test must not leave the process behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sandbox_mode_args() -> Vec<String> {
    vec![
        "--sandbox".to_owned(),
        "--sandbox-listen".to_owned(),
        format!("127.0.0.1:{}", free_port()),
    ]
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let binary = Binary::start(&sandbox_mode_args(), &[]).await;
    let status = binary
        .signal_and_wait("TERM", Duration::from_secs(15))
        .await;
    assert_eq!(status.code(), Some(0), "{status}");
}

#[tokio::test]
async fn sigint_drains_and_exits_zero() {
    let binary = Binary::start(&sandbox_mode_args(), &[]).await;
    let status = binary.signal_and_wait("INT", Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0), "{status}");
}

#[tokio::test]
async fn a_call_stuck_past_server_shutdown_grace_still_lets_the_process_exit_zero() {
    // Didit hangs for 30 s; the config allows a 1 s drain.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sandbox = didit_sandbox::Sandbox::start(listener, SandboxConfig::default())
        .await
        .unwrap();
    let x = demo("service-x");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
shutdown_grace = "1s"

[upstream]
base_url = "{base}"

[auth]
mode = "none"

[[tenants]]
id = "service-x"
application_id = "{app}"
api_key_env = "DSG_TEST_SERVICE_X_KEY"
allowed_callers = ["*"]
"#,
            base = sandbox.base_url(),
            app = x.application_id,
        ),
    )
    .unwrap();
    let binary = Binary::start(
        &["--config".to_owned(), config.display().to_string()],
        &[("DSG_TEST_SERVICE_X_KEY", x.api_key.as_str())],
    )
    .await;

    let http = reqwest::Client::new();
    http.put(format!("{}/_sandbox/faults", sandbox.base_url()))
        .json(&json!({"latency_ms": 30_000, "endpoints": ["share"]}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let channel = Channel::from_shared(format!("http://127.0.0.1:{}", binary.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let stuck = tokio::spawn(async move {
        didit_share_gateway::proto::share_service_client::ShareServiceClient::new(channel)
            .share_session(with_tenant(
                "service-x",
                ShareSessionRequest {
                    session_id: uuid::Uuid::new_v4().to_string(),
                    for_application_id: demo("service-y").application_id.to_string(),
                    ttl_seconds: None,
                },
            ))
            .await
    });
    let sandbox_ref = &sandbox;
    eventually(
        Duration::from_secs(5),
        "the share reaches Didit",
        || async move { sandbox_ref.stats().share_calls == 1 },
    )
    .await;

    let status = binary
        .signal_and_wait("TERM", Duration::from_secs(10))
        .await;
    assert_eq!(status.code(), Some(0), "{status}");
    let abandoned = tokio::time::timeout(Duration::from_secs(5), stuck)
        .await
        .expect("the abandoned caller is not left hanging")
        .unwrap()
        .unwrap_err();
    // The connection closes under the call. grpc-go and grpc-java report
    // that as UNAVAILABLE; tonic's client says UNKNOWN ("transport error").
    assert!(
        matches!(abandoned.code(), Code::Unavailable | Code::Unknown),
        "{abandoned:?}"
    );
}
