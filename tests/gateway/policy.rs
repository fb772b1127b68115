//! Partner policies (data-sharing agreements): every refusal, each without
//! an upstream call (the sandbox's stats), the allowed paths unchanged,
//! replays refused once a reload revokes the agreement, calls in flight
//! finishing under the policy they started with, the start-up warning for
//! tenants without a policy, and `dsg_policy_refusals_total`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use didit_sandbox::SandboxConfig;
use didit_share_gateway::config::{Config, KeySource, TenantConfig};
use didit_share_gateway::policy::Partner;
use didit_share_gateway::proto::{ImportSharedSessionRequest, ShareSessionRequest};
use didit_share_gateway::session::SessionKind;
use didit_share_gateway::telemetry;
use didit_share_gateway::tenant::ApiKey;
use serde_json::json;
use tonic::Code;
use tonic_types::StatusExt as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::env::{TestEnv, demo, error_metadata, eventually, metric_value, reason, with_tenant};

/// A tenant with service-x's key and no policy: mints tokens of any kind
/// for any partner, to test the importing side.
const X_OPEN: &str = "service-x-open";

const USER: &[SessionKind] = &[SessionKind::User];
const BOTH: &[SessionKind] = &[SessionKind::User, SessionKind::Business];

fn partner(app: &str, allows: &[&str], max_ttl_seconds: u32, kinds: &[SessionKind]) -> Partner {
    Partner {
        application_id: demo(app).application_id,
        name: app.to_owned(),
        agreement: format!("DSA-{app}"),
        share: allows.contains(&"share"),
        import: allows.contains(&"import"),
        trust_review: allows.contains(&"trust_review"),
        max_ttl_seconds,
        session_kinds: kinds.to_vec(),
    }
}

/// service-x: shares with service-y (KYC only, at most 600 s), imports from
/// service-z; service-y: imports KYC from service-x, without trust_review;
/// service-z and [`X_OPEN`]: no policy.
fn policies(config: &mut Config) {
    for tenant in &mut config.tenants {
        tenant.partners = match tenant.id.as_str() {
            "service-x" => Some(vec![
                partner("service-y", &["share", "import"], 600, USER),
                partner("service-z", &["import"], 3600, BOTH),
            ]),
            "service-y" => Some(vec![partner("service-x", &["import"], 3600, USER)]),
            _ => None,
        };
    }
    let x = demo("service-x");
    config.tenants.push(TenantConfig {
        id: X_OPEN.into(),
        application_id: x.application_id,
        key_source: KeySource::Inline(ApiKey::new(x.api_key)),
        allowed_callers: vec!["*".into()],
        rate_limit_per_minute: 1_000_000,
        partners: None,
        webhook_secret: None,
        rate_limit_burst: None,
    });
}

async fn start() -> TestEnv {
    TestEnv::start_with(SandboxConfig::default(), policies).await
}

/// Asserts `result` is refused with `code`/`reason`.
fn refused<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: Code,
    want: &str,
    what: &str,
) -> tonic::Status {
    let status = result.expect_err(what);
    assert_eq!(status.code(), code, "{what}: {status:?}");
    assert_eq!(reason(&status), want, "{what}");
    status
}

/// A token minted by the tenant `from` of a new `kind` session of `app`, for `to`.
async fn token(env: &TestEnv, from: &str, app: &str, kind: &str, to: &str) -> String {
    let session = env.create_session(app, kind, approved(kind)).await;
    let to = demo(to).application_id.to_string();
    env.share(from, &session, &to, Some(600))
        .await
        .unwrap()
        .share_token
}

fn approved(kind: &str) -> &'static str {
    if kind == "user" {
        "Approved"
    } else {
        "APPROVED"
    }
}

#[tokio::test]
async fn share_refusals_make_no_upstream_call() {
    let env = start().await;
    let (y, z) = (demo("service-y"), demo("service-z"));
    let session = env.create_session("service-x", "user", "Approved").await;
    let before = env.stats().share_calls;

    let status = refused(
        env.share(
            "service-x",
            &session,
            &z.application_id.to_string(),
            Some(600),
        )
        .await,
        Code::PermissionDenied,
        "PARTNER_NOT_ALLOWED",
        "listed for import only",
    );
    assert_eq!(error_metadata(&status)["policy"], "share_not_agreed");
    let status = refused(
        env.share(
            "service-x",
            &session,
            &uuid::Uuid::new_v4().to_string(),
            None,
        )
        .await,
        Code::PermissionDenied,
        "PARTNER_NOT_ALLOWED",
        "not listed",
    );
    assert_eq!(error_metadata(&status)["policy"], "partner_not_listed");
    for ttl in [Some(601), None] {
        let status = refused(
            env.share("service-x", &session, &y.application_id.to_string(), ttl)
                .await,
            Code::InvalidArgument,
            "INVALID_REQUEST",
            "ttl above the partner's maximum (unset is 3600)",
        );
        let violations = status.get_details_bad_request().unwrap().field_violations;
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].field, "ttl_seconds");
        assert!(violations[0].description.contains("600"), "{violations:?}");
    }
    assert_eq!(env.stats().share_calls, before, "no refusal reached Didit");

    // Allowed: the agreement's partner, kind and TTL.
    let shared = env
        .share(
            "service-x",
            &session,
            &y.application_id.to_string(),
            Some(600),
        )
        .await
        .unwrap();
    assert!(!shared.share_token.is_empty());
    // service-z has no policy: it shares with anyone, as before.
    let zs = env
        .create_session("service-z", "business", "APPROVED")
        .await;
    let status = refused(
        env.share("service-z", &zs, &uuid::Uuid::new_v4().to_string(), None)
            .await,
        Code::InvalidArgument,
        "INVALID_REQUEST",
        "Didit's own answer for an unknown application",
    );
    assert_eq!(error_metadata(&status)["upstream_status"], "400");
    env.stop().await;
}

#[tokio::test]
async fn a_share_of_a_kind_outside_the_agreement_never_reaches_the_caller() {
    let env = start().await;
    let y = demo("service-y").application_id.to_string();
    let kyb = env
        .create_session("service-x", "business", "APPROVED")
        .await;
    let before = env.stats();
    let status = refused(
        env.share("service-x", &kyb, &y, Some(600)).await,
        Code::PermissionDenied,
        "PARTNER_NOT_ALLOWED",
        "KYB to a KYC-only partner",
    );
    let metadata = error_metadata(&status);
    assert_eq!(metadata["policy"], "kind_not_covered");
    assert_eq!(metadata["session_kind"], "business");
    // The kind is known only from Didit's answer: one token was minted,
    // and dropped by the gateway.
    let after = env.stats();
    assert_eq!(after.share_calls, before.share_calls + 1);
    assert_eq!(after.share_ok, before.share_ok + 1);
    env.stop().await;
}

#[tokio::test]
async fn import_refusals_make_no_upstream_call() {
    let env = start().await;
    let y = demo("service-y");
    let kyc = token(&env, X_OPEN, "service-x", "user", "service-y").await;
    let kyb = token(&env, X_OPEN, "service-x", "business", "service-y").await;
    let from_z = token(&env, "service-z", "service-z", "user", "service-y").await;
    let before = env.stats().import_calls;
    let import = |token: String, workflow: String, trust_review: bool| {
        let env = &env;
        async move {
            env.import("service-y", &token, &workflow, "v-1", trust_review)
                .await
        }
    };

    let status = refused(
        import(from_z, y.workflows.user.clone(), false).await,
        Code::PermissionDenied,
        "PARTNER_NOT_ALLOWED",
        "a source outside the agreements",
    );
    assert_eq!(error_metadata(&status)["policy"], "partner_not_listed");
    let status = refused(
        import(kyb, y.workflows.business.clone(), false).await,
        Code::PermissionDenied,
        "PARTNER_NOT_ALLOWED",
        "a kind outside the agreement",
    );
    assert_eq!(error_metadata(&status)["session_kind"], "business");
    refused(
        import(kyc.clone(), y.workflows.user.clone(), true).await,
        Code::PermissionDenied,
        "TRUST_REVIEW_NOT_ALLOWED",
        "trust_review from a partner without it",
    );
    refused(
        import(
            "eyJ9.bm90IGNsYWltcw.c2ln".into(),
            y.workflows.user.clone(),
            false,
        )
        .await,
        Code::FailedPrecondition,
        "SHARE_TOKEN_INVALID",
        "unreadable claims",
    );
    // Minted for service-y, imported by service-x: refused as Didit would.
    let status = refused(
        env.import(
            "service-x",
            &kyc,
            &demo("service-x").workflows.user,
            "",
            false,
        )
        .await,
        Code::PermissionDenied,
        "SHARE_TOKEN_WRONG_APPLICATION",
        "a token for another application",
    );
    assert_eq!(
        error_metadata(&status)["policy"],
        "token_for_another_application"
    );
    assert_eq!(env.stats().import_calls, before, "no refusal reached Didit");

    // Allowed: KYC from service-x, In Review.
    let imported = import(kyc, y.workflows.user.clone(), false).await.unwrap();
    assert!(!imported.replayed);
    assert_eq!(env.stats().import_calls, before + 1);
    // A tenant without a policy sends an unreadable token to Didit, as before.
    let z = demo("service-z");
    refused(
        env.import(
            "service-z",
            "eyJ9.bm90IGNsYWltcw.c2ln",
            &z.workflows.user,
            "",
            false,
        )
        .await,
        Code::FailedPrecondition,
        "SHARE_TOKEN_INVALID",
        "Didit's verdict",
    );
    assert_eq!(env.stats().import_calls, before + 2);
    env.stop().await;
}

#[tokio::test]
async fn refusals_are_counted_by_tenant_and_reason() {
    let env = start().await;
    let session = env.create_session("service-x", "user", "Approved").await;
    let stranger = uuid::Uuid::new_v4().to_string();
    for _ in 0..2 {
        let _ = env.share("service-x", &session, &stranger, None).await;
    }
    let y = demo("service-y");
    let _ = env
        .import("service-y", "a.b.c", &y.workflows.user, "", false)
        .await;
    let text = env
        .http
        .get(format!("http://{}/metrics", env.admin_addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = |tenant: &str, reason: &str| {
        metric_value(
            &text,
            &format!("dsg_policy_refusals_total{{tenant=\"{tenant}\",reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(series("service-x", "partner_not_listed"), 2.0, "{text}");
    assert_eq!(series("service-y", "token_unreadable"), 1.0, "{text}");
    assert_eq!(metric_value(&text, "dsg_policy_refusals_total"), 3.0);
    env.stop().await;
}

/// A config file for the sandbox at `base_url` with service-y, whose
/// agreement with service-x allows `allows`, and service-x without policy.
fn reload_file(dir: &std::path::Path, base_url: &str, allows: &[&str]) -> std::path::PathBuf {
    let mut text = format!("[upstream]\nbase_url = \"{base_url}\"\n[auth]\nmode = \"none\"\n");
    for id in ["service-x", "service-y"] {
        let app = demo(id);
        let key = dir.join(format!("{id}.key"));
        std::fs::write(&key, &app.api_key).unwrap();
        text.push_str(&format!(
            "[[tenants]]\nid = \"{id}\"\napplication_id = \"{}\"\napi_key_file = \"{}\"\nrate_limit_per_minute = 100000\n",
            app.application_id,
            key.display()
        ));
    }
    let x = demo("service-x").application_id;
    text.push_str(&format!(
        "[[tenants.partners]]\napplication_id = \"{x}\"\nname = \"service-x\"\nagreement = \"DSA-service-x\"\nimport = {}\nsession_kinds = [\"user\"]\n",
        allows.contains(&"import")
    ));
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn a_reload_that_revokes_the_agreement_stops_replays() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    let y = demo("service-y");
    let token = token(&env, X_OPEN, "service-x", "user", "service-y").await;
    let import = || env.import("service-y", &token, &y.workflows.user, "v-1", false);
    assert!(!import().await.unwrap().replayed);
    assert!(import().await.unwrap().replayed);

    let path = reload_file(dir.path(), &env.sandbox.base_url(), &["import"]);
    env.gateway().reload_from(&path).unwrap();
    assert!(
        import().await.unwrap().replayed,
        "still agreed after a reload"
    );

    let calls = env.stats().import_calls;
    let path = reload_file(dir.path(), &env.sandbox.base_url(), &[]);
    env.gateway().reload_from(&path).unwrap();
    let status = refused(
        import().await,
        Code::PermissionDenied,
        "PARTNER_NOT_ALLOWED",
        "a replay after the agreement was revoked",
    );
    assert_eq!(error_metadata(&status)["policy"], "import_not_agreed");
    assert_eq!(env.stats().import_calls, calls);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_finish_under_the_policy_they_started_with() {
    const IN_FLIGHT: usize = 4;
    let env = Arc::new(start().await);
    let dir = tempfile::tempdir().unwrap();
    let y = demo("service-y");
    let mut tokens = Vec::new();
    for _ in 0..=IN_FLIGHT {
        tokens.push(token(&env, X_OPEN, "service-x", "user", "service-y").await);
    }
    let late = tokens.pop().unwrap();
    // Imports wait in the sandbox long enough for the reload to land.
    env.faults(json!({"latency_ms": 1500, "endpoints": ["import"]}))
        .await;
    let before = env.stats().import_calls;
    let calls: Vec<_> = tokens
        .into_iter()
        .map(|token| {
            let (env, workflow) = (Arc::clone(&env), y.workflows.user.clone());
            tokio::spawn(async move { env.import("service-y", &token, &workflow, "", false).await })
        })
        .collect();
    eventually(
        Duration::from_secs(10),
        "every import reached Didit",
        || {
            let env = Arc::clone(&env);
            async move { env.stats().import_calls == before + IN_FLIGHT as u64 }
        },
    )
    .await;

    let path = reload_file(dir.path(), &env.sandbox.base_url(), &[]);
    env.gateway().reload_from(&path).unwrap();
    refused(
        env.import("service-y", &late, &y.workflows.user, "", false)
            .await,
        Code::PermissionDenied,
        "PARTNER_NOT_ALLOWED",
        "a call that started after the reload",
    );
    for call in calls {
        let imported = call.await.unwrap().expect("started before the reload");
        assert!(!imported.session_id.is_empty());
    }
    assert_eq!(env.stats().import_calls, before + IN_FLIGHT as u64);
    env.faults(json!({})).await;
    match Arc::try_unwrap(env) {
        Ok(env) => env.stop().await,
        Err(_) => panic!("the test env is still shared"),
    }
}

/// Log lines written by the gateway, captured in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// The JSON lines written so far.
    fn lines(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A thread-local subscriber writing JSON lines (audit events included) to
/// the returned buffer; the test's runtime must be single-threaded so that
/// it sees the whole gateway.
fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let subscriber = telemetry::subscriber(true, false, EnvFilter::new("info"), captured.clone());
    let guard = tracing::subscriber::set_default(subscriber);
    // Other tests of this binary run on threads without a subscriber; make
    // sure no callsite keeps an interest computed without this one.
    tracing::callsite::rebuild_interest_cache();
    (captured, guard)
}

#[tokio::test]
async fn start_up_warns_once_naming_the_tenants_without_a_policy() {
    let (captured, _guard) = capture();
    let env = start().await;
    let warnings: Vec<serde_json::Value> = captured
        .lines()
        .into_iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .or(l["fields"]["message"].as_str())
                .is_some_and(|m| m.contains("without a partner policy"))
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let warning = &warnings[0];
    assert_eq!(warning["level"], "WARN");
    let tenants = warning["tenants"]
        .as_str()
        .or(warning["fields"]["tenants"].as_str())
        .unwrap();
    for open in ["service-z", X_OPEN, crate::env::READ_ONLY_TENANT] {
        assert!(tenants.contains(&format!("\"{open}\"")), "{tenants}");
    }
    for listed in ["\"service-x\"", "\"service-y\""] {
        assert!(!tenants.contains(listed), "{tenants}");
    }
    env.stop().await;
}

/// `request` with `x-request-id: id`.
fn with_id<T>(id: &str, mut request: tonic::Request<T>) -> tonic::Request<T> {
    request
        .metadata_mut()
        .insert("x-request-id", id.parse().unwrap());
    request
}

#[tokio::test]
async fn audit_events_name_the_partner_and_the_agreement() {
    let (captured, _guard) = capture();
    let env = start().await;
    let (x, y) = (demo("service-x"), demo("service-y"));
    let session = env.create_session("service-x", "user", "Approved").await;
    let shared = env
        .share_client
        .clone()
        .share_session(with_id(
            "policy-share",
            with_tenant(
                "service-x",
                ShareSessionRequest {
                    session_id: session,
                    for_application_id: y.application_id.to_string(),
                    ttl_seconds: Some(600),
                },
            ),
        ))
        .await
        .unwrap()
        .into_inner();
    let import = |id: &'static str, token: String| {
        let mut client = env.import_client.clone();
        let request = with_id(
            id,
            with_tenant(
                "service-y",
                ImportSharedSessionRequest {
                    share_token: token,
                    workflow_id: y.workflows.user.clone(),
                    vendor_data: String::new(),
                    trust_review: false,
                },
            ),
        );
        async move { client.import_shared_session(request).await }
    };
    import("policy-import", shared.share_token).await.unwrap();
    let from_z = token(&env, "service-z", "service-z", "user", "service-y").await;
    import("policy-refused", from_z).await.unwrap_err();

    let event = |id: &str| {
        let events: Vec<_> = captured
            .lines()
            .into_iter()
            .filter(|l| l["target"] == "audit" && l["request_id"] == id)
            .collect();
        let all: Vec<String> = captured
            .lines()
            .into_iter()
            .map(|l| {
                format!(
                    "{}/{}/{}",
                    l["target"], l["request_id"], l["fields"]["message"]
                )
            })
            .collect();
        assert_eq!(events.len(), 1, "{id}: {events:?}; captured: {all:?}");
        events[0].clone()
    };
    let share = event("policy-share");
    assert_eq!(share["partner"], "service-y");
    assert_eq!(share["agreement"], "DSA-service-y");
    let import = event("policy-import");
    assert_eq!(import["partner"], "service-x");
    assert_eq!(import["agreement"], "DSA-service-x");
    let refused = event("policy-refused");
    assert_eq!(refused["reason"], "PARTNER_NOT_ALLOWED");
    assert!(
        refused
            .get("partner")
            .is_none_or(serde_json::Value::is_null)
    );
    assert_eq!(x.name, "service-x");
    env.stop().await;
}
