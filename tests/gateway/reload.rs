//! Config reloads: the real binary under signals (SIGHUP with a broken
//! config keeps the running one, SIGHUP with a good one adds a tenant,
//! SIGTERM exits 0), and `Running::reload` naming what needs a restart.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::env::{TestEnv, demo, free_port, reason, with_tenant};
use didit_sandbox::{Sandbox, SandboxConfig};
use didit_share_gateway::proto::ShareSessionRequest;
use didit_share_gateway::proto::share_service_client::ShareServiceClient;

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name}");
}

fn config(base_url: &str, dir: &std::path::Path, tenants: &[(&str, &str)]) -> String {
    let mut text = format!("[upstream]\nbase_url = \"{base_url}\"\n[auth]\nmode = \"none\"\n");
    for (id, app) in tenants {
        let app = demo(app);
        let key = dir.join(format!("{id}.key"));
        std::fs::write(&key, &app.api_key).unwrap();
        text.push_str(&format!(
            "[[tenants]]\nid = \"{id}\"\napplication_id = \"{}\"\napi_key_file = \"{}\"\n",
            app.application_id,
            key.display()
        ));
    }
    text
}

#[tokio::test]
async fn sighup_reloads_and_sigterm_drains() {
    didit_share_gateway::install_crypto_provider();
    let sandbox = Sandbox::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SandboxConfig::default(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        config(&sandbox.base_url(), dir.path(), &[("brand-x", "service-x")]),
    )
    .unwrap();
    let (grpc, admin) = (free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_didit-share-gateway"))
        .args(["--config", path.to_str().unwrap(), "--log-format", "json"])
        .args([
            "--listen",
            &format!("127.0.0.1:{grpc}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{admin}/readyz"))
            .send()
            .await
            && r.status().is_success()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the gateway became ready");

    let mut client = ShareServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .unwrap();
    let body = sandbox_session(&http, &sandbox).await;
    let request = |tenant: &str| {
        with_tenant(
            tenant,
            ShareSessionRequest {
                session_id: body.clone(),
                for_application_id: demo("service-y").application_id.to_string(),
                ttl_seconds: None,
            },
        )
    };
    client.share_session(request("brand-x")).await.unwrap();
    assert_eq!(
        reason(&client.share_session(request("brand-y")).await.unwrap_err()),
        "UNKNOWN_TENANT"
    );

    // A broken config: rejected, the running one keeps serving.
    std::fs::write(&path, "[upstream]\nbase_url = 42\n").unwrap();
    signal(&child, "HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    client
        .share_session(request("brand-x"))
        .await
        .expect("still serving after a bad reload");

    // A good config adds a tenant.
    std::fs::write(
        &path,
        config(
            &sandbox.base_url(),
            dir.path(),
            &[("brand-x", "service-x"), ("brand-x2", "service-x")],
        ),
    )
    .unwrap();
    signal(&child, "HUP");
    let mut reloaded = false;
    for _ in 0..100 {
        if client.share_session(request("brand-x2")).await.is_ok() {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reloaded, "the new tenant serves after SIGHUP");

    signal(&child, "TERM");
    let mut exit = None;
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            exit = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exit = exit.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the gateway did not exit after SIGTERM");
    });
    assert!(exit.success(), "exit code 0 after SIGTERM: {exit:?}");
    let output = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(logs.contains("config reload rejected"), "{logs}");
    assert!(logs.contains("config reloaded"), "{logs}");
    assert!(
        !logs.contains(&demo("service-x").api_key),
        "no key in the logs"
    );
    sandbox.stop().await;
}

async fn sandbox_session(http: &reqwest::Client, sandbox: &Sandbox) -> String {
    crate::env::create_session(http, sandbox, "service-x", "user", "Approved").await
}

#[tokio::test]
async fn a_reload_names_every_changed_section_that_needs_a_restart() {
    let env = TestEnv::start(Default::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    // The running config's [server], [upstream] and [replay], written out.
    let same = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{}",
        config(
            &env.sandbox.base_url(),
            dir.path(),
            &[("brand-x", "service-x")]
        )
    );
    std::fs::write(&path, &same).unwrap();
    let reloaded = env.gateway().reload_from(&path).unwrap();
    assert_eq!(reloaded.tenants, 1);
    assert!(reloaded.needs_restart.is_empty(), "{reloaded:?}");

    // The key reload interval is read once, at start.
    std::fs::write(
        &path,
        same.replace("[server]\n", "[server]\nkey_reload_interval = \"1m\"\n"),
    )
    .unwrap();
    let reloaded = env.gateway().reload().unwrap();
    assert_eq!(reloaded.needs_restart, ["server"]);
    assert_eq!(
        env.gateway().config().server.key_reload_interval,
        Duration::from_secs(60),
        "the file's config is the running one now"
    );

    std::fs::write(
        &path,
        same.replace("[upstream]\n", "[upstream]\nmax_attempts = 1\n")
            .replace("[server]\n", "[replay]\nwindow = \"1m\"\n[server]\n"),
    )
    .unwrap();
    let reloaded = env.gateway().reload().unwrap();
    assert_eq!(reloaded.needs_restart, ["server", "upstream", "replay"]);
    env.stop().await;
}
