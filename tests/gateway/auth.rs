//! Caller authentication and tenant authorization: mtls with generated
//! certificates, mesh mode's x-forwarded-client-cert, key rotation under
//! continuous calls, and config reloads that must not break a running gateway.

use std::time::Duration;

use crate::env::{TestEnv, demo, reason, with_tenant};
use didit_sandbox::SandboxConfig;
use didit_share_gateway::config::{AuthConfig, Config, KeySource};
use didit_share_gateway::proto::ShareSessionRequest;
use didit_share_gateway::proto::share_service_client::ShareServiceClient;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
use sha2::Digest as _;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const PAYMENTS: &str = "spiffe://cluster.local/ns/payments/sa/onboarding";
const RISK: &str = "spiffe://cluster.local/ns/risk/sa/scorer";
const SIDECAR: &str = "spiffe://cluster.local/ns/didit/sa/didit-share-gateway";

struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        Self(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    /// A leaf certificate with `dns` names and an optional URI SAN: (cert, key) PEM.
    fn leaf(&self, dns: &[&str], uri: Option<&str>, ip: bool) -> (String, String) {
        let mut params =
            CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>()).unwrap();
        if let Some(uri) = uri {
            params
                .subject_alt_names
                .push(SanType::URI(uri.try_into().unwrap()));
        }
        if ip {
            params
                .subject_alt_names
                .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.0).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn pem(&self) -> String {
        self.0.pem()
    }
}

fn restrict_callers(config: &mut Config) {
    for tenant in &mut config.tenants {
        tenant.allowed_callers = match tenant.id.as_str() {
            "service-x" => vec![PAYMENTS.to_owned()],
            "service-y" => vec!["spiffe://cluster.local/ns/risk/*".to_owned()],
            _ => vec![],
        };
    }
}

async fn tls_client(
    env: &TestEnv,
    ca: &Ca,
    client: Option<(String, String)>,
) -> Result<ShareServiceClient<Channel>, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .domain_name("localhost");
    if let Some((cert, key)) = client {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Channel::from_shared(format!("https://127.0.0.1:{}", env.grpc_addr.port()))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(ShareServiceClient::new(channel))
}

fn share_request(session: &str) -> ShareSessionRequest {
    ShareSessionRequest {
        session_id: session.to_owned(),
        for_application_id: demo("service-y").application_id.to_string(),
        ttl_seconds: None,
    }
}

#[tokio::test]
async fn mtls_identifies_callers_by_their_certificate() {
    let ca = Ca::new("gateway test CA");
    let dir = tempfile::tempdir().unwrap();
    let (server_cert, server_key) = ca.leaf(&["localhost"], None, true);
    let files = [
        ("server.crt", server_cert),
        ("server.key", server_key),
        ("ca.crt", ca.pem()),
    ];
    for (name, pem) in &files {
        std::fs::write(dir.path().join(name), pem).unwrap();
    }
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        config.auth = AuthConfig::Mtls {
            server_cert_file: dir.path().join("server.crt"),
            server_key_file: dir.path().join("server.key"),
            client_ca_file: dir.path().join("ca.crt"),
        };
        restrict_callers(config);
    })
    .await;
    let session = env.create_session("service-x", "user", "Approved").await;

    // An allowed client succeeds.
    let mut payments = tls_client(&env, &ca, Some(ca.leaf(&[], Some(PAYMENTS), false)))
        .await
        .unwrap();
    payments
        .share_session(with_tenant("service-x", share_request(&session)))
        .await
        .unwrap();

    // A valid client not in the tenant's allowed_callers is refused.
    let mut risk = tls_client(&env, &ca, Some(ca.leaf(&[], Some(RISK), false)))
        .await
        .unwrap();
    let err = risk
        .share_session(with_tenant("service-x", share_request(&session)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(reason(&err), "CALLER_NOT_ALLOWED");

    // A client-sent XFCC header is ignored in mtls mode.
    let mut forged = with_tenant("service-x", share_request(&session));
    forged.metadata_mut().insert(
        "x-forwarded-client-cert",
        format!("By={SIDECAR};URI={PAYMENTS}").parse().unwrap(),
    );
    let err = risk.share_session(forged).await.unwrap_err();
    assert_eq!(reason(&err), "CALLER_NOT_ALLOWED");

    // No certificate, or one from another CA: the handshake or the call fails.
    let before = env.stats().share_calls;
    let no_cert = match tls_client(&env, &ca, None).await {
        Ok(mut client) => client
            .share_session(with_tenant("service-x", share_request(&session)))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(err) => Err(err.to_string()),
    };
    assert!(
        no_cert.is_err(),
        "a client without a certificate is refused"
    );
    let other_ca = Ca::new("another CA");
    let stranger =
        match tls_client(&env, &ca, Some(other_ca.leaf(&[], Some(PAYMENTS), false))).await {
            Ok(mut client) => client
                .share_session(with_tenant("service-x", share_request(&session)))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(err) => Err(err.to_string()),
        };
    assert!(
        stranger.is_err(),
        "a certificate from another CA is refused"
    );
    // Plaintext is refused too.
    let plain = env
        .share(
            "service-x",
            &session,
            &demo("service-y").application_id.to_string(),
            None,
        )
        .await;
    assert!(plain.is_err());
    assert_eq!(
        env.stats().share_calls,
        before,
        "no refused caller reached Didit"
    );
    env.stop().await;
}

#[tokio::test]
async fn mesh_mode_trusts_only_the_sidecars_xfcc() {
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        config.auth = AuthConfig::Mesh {
            trusted_proxy_identity: Some(SIDECAR.to_owned()),
        };
        restrict_callers(config);
    })
    .await;
    let session = env.create_session("service-x", "user", "Approved").await;
    let call = |xfcc: Option<String>| {
        let mut client = env.share_client.clone();
        let mut request = with_tenant("service-x", share_request(&session));
        if let Some(xfcc) = xfcc {
            request
                .metadata_mut()
                .insert("x-forwarded-client-cert", xfcc.parse().unwrap());
        }
        async move { client.share_session(request).await }
    };
    // Real Envoy shapes: one element; several elements with quoted values.
    call(Some(format!("By={SIDECAR};Hash=7d1e9f;URI={PAYMENTS}")))
        .await
        .unwrap();
    call(Some(format!(
        r#"By=spiffe://cluster.local/ns/edge/sa/ingress;Hash=aa;Subject="CN=edge, O=\"Acme; Inc\"";URI=spiffe://cluster.local/ns/edge/sa/x,By={SIDECAR};Hash=bb;Subject="CN=onboarding,O=payments";URI={PAYMENTS};DNS=onboarding.payments.svc"#
    )))
    .await
    .unwrap();
    let before = env.stats().share_calls;
    for (what, xfcc) in [
        ("missing", None),
        (
            "forged: not from our sidecar",
            Some(format!(
                "By=spiffe://cluster.local/ns/evil/sa/x;URI={PAYMENTS}"
            )),
        ),
        (
            "smuggled: an open quote that would swallow the sidecar's element",
            Some(format!(
                r#"By={SIDECAR};URI={PAYMENTS};Subject=",By={SIDECAR};Hash=bb;Subject="";URI={RISK}"#
            )),
        ),
        (
            "malformed: unterminated quote",
            Some(format!(r#"By={SIDECAR};Subject="CN=x;URI={PAYMENTS}"#)),
        ),
        (
            "malformed: field without value",
            Some(format!("By={SIDECAR};URI")),
        ),
        (
            "no URI",
            Some(format!("By={SIDECAR};DNS=onboarding.payments.svc")),
        ),
        (
            "not allowed for service-x",
            Some(format!("By={SIDECAR};URI={RISK}")),
        ),
    ] {
        let err = call(xfcc).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{what}");
        assert_eq!(reason(&err), "CALLER_NOT_ALLOWED", "{what}");
    }
    assert_eq!(
        env.stats().share_calls,
        before,
        "refused callers never reach Didit"
    );
    env.stop().await;
}

fn fingerprint(key: &str) -> String {
    hex::encode(sha2::Sha256::digest(key.as_bytes()))[..12].to_owned()
}

#[tokio::test]
async fn a_rotated_key_file_is_used_without_losing_a_call() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("service-x");
    let x = demo("service-x");
    std::fs::write(&key_file, format!("{}\n", x.api_key)).unwrap();
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        config.server.key_reload_interval = Duration::from_millis(50);
        for tenant in &mut config.tenants {
            if tenant.id == "service-x" {
                tenant.key_source = KeySource::File(key_file.clone());
            }
        }
    })
    .await;
    let new_key = "rotated-service-x-key-2";
    let added = env
        .http
        .post(format!("{}/_sandbox/api-keys", env.sandbox.base_url()))
        .json(&serde_json::json!({"application_id": x.application_id, "api_key": new_key, "write_sessions": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status().as_u16(), 201);

    let session = env.create_session("service-x", "user", "Approved").await;
    let y = demo("service-y").application_id.to_string();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let caller = {
        let mut client = env.share_client.clone();
        let (session, y) = (session.clone(), y.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0, 0);
            while !*stopped.borrow_and_update() {
                let request = ShareSessionRequest {
                    session_id: session.clone(),
                    for_application_id: y.clone(),
                    ttl_seconds: Some(60),
                };
                match client
                    .share_session(with_tenant("service-x", request))
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(err) => {
                        eprintln!("call failed during rotation: {err:?}");
                        failed += 1;
                    }
                }
            }
            (ok, failed)
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Kubernetes swaps a symlink; an atomic rename is the same for readers.
    let staged = dir.path().join("..data-new");
    std::fs::write(&staged, new_key).unwrap();
    std::fs::rename(&staged, &key_file).unwrap();
    let new_print = fingerprint(new_key);
    for _ in 0..200 {
        if env
            .stats()
            .calls_by_key
            .get(&new_print)
            .copied()
            .unwrap_or(0)
            > 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        env.stats()
            .calls_by_key
            .get(&new_print)
            .copied()
            .unwrap_or(0)
            > 0,
        "the sandbox saw the new key"
    );
    // Revoke the old key: calls keep working on the new one.
    let revoked = env
        .http
        .delete(format!("{}/_sandbox/api-keys", env.sandbox.base_url()))
        .json(&serde_json::json!({"api_key": x.api_key}))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 204);
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(true).unwrap();
    let (ok, failed) = caller.await.unwrap();
    assert!(ok > 10, "continuous calls ran ({ok})");
    assert_eq!(failed, 0, "no call failed during the rotation");

    // A broken file keeps the last good key.
    std::fs::write(&key_file, "").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    env.share("service-x", &session, &y, None).await.unwrap();
    assert!(
        env.state
            .metrics
            .encode()
            .contains("dsg_api_key_reload_failures_total{tenant=\"service-x\"}")
    );
    env.stop().await;
}

#[tokio::test]
async fn a_bad_reload_keeps_the_running_config_and_a_good_one_replaces_it() {
    let env = TestEnv::start(Default::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let x = demo("service-x");
    std::fs::write(dir.path().join("x.key"), &x.api_key).unwrap();
    let session = env.create_session("service-x", "user", "Approved").await;
    let y = demo("service-y").application_id.to_string();

    std::fs::write(
        &path,
        "[upstream]\nbase_url = \"http://x\"\n[auth]\nmode = \"sideways\"\n",
    )
    .unwrap();
    let err = env.gateway().reload_from(&path).unwrap_err();
    assert_eq!(err.key, "auth.mode");
    env.share("service-x", &session, &y, None)
        .await
        .expect("the old config still serves");

    // A valid config with service-x only, under a new tenant name.
    let good = format!(
        "[upstream]\nbase_url = \"{}\"\n[auth]\nmode = \"none\"\n[[tenants]]\nid = \"brand-x\"\napplication_id = \"{}\"\napi_key_file = \"{}\"\nrate_limit_per_minute = 10\n",
        env.sandbox.base_url(),
        x.application_id,
        dir.path().join("x.key").display()
    );
    std::fs::write(&path, good).unwrap();
    env.gateway().reload_from(&path).unwrap();
    env.share("brand-x", &session, &y, None)
        .await
        .expect("the new tenant serves");
    // ... with the rate limit the new file gives it (10/min: a burst of 1).
    let limited = env.share("brand-x", &session, &y, None).await.unwrap_err();
    assert_eq!(reason(&limited), "TENANT_RATE_LIMITED");
    let gone = env
        .share("service-x", &session, &y, None)
        .await
        .unwrap_err();
    assert_eq!(reason(&gone), "UNKNOWN_TENANT");
    env.stop().await;
}
