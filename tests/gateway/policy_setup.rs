//! The partner policies the policy tests run under (service-x shares with
//! service-y, imports from service-z; service-y imports from service-x;
//! service-z and an open copy of service-x have none) and token helpers.
//! Shared by `tests/gateway/policy.rs` and `tests/policy_logs.rs`.

use didit_sandbox::SandboxConfig;
use didit_share_gateway::config::{Config, KeySource, TenantConfig};
use didit_share_gateway::policy::Partner;
use didit_share_gateway::session::SessionKind;
use didit_share_gateway::tenant::ApiKey;

use crate::env::{TestEnv, demo};

/// A tenant with service-x's key and no policy: mints tokens of any kind
/// for any partner, to test the importing side.
pub(crate) const X_OPEN: &str = "service-x-open";

pub(crate) const USER: &[SessionKind] = &[SessionKind::User];
pub(crate) const BOTH: &[SessionKind] = &[SessionKind::User, SessionKind::Business];

pub(crate) fn partner(
    app: &str,
    allows: &[&str],
    max_ttl_seconds: u32,
    kinds: &[SessionKind],
) -> Partner {
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
pub(crate) fn policies(config: &mut Config) {
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

pub(crate) async fn start() -> TestEnv {
    TestEnv::start_with(SandboxConfig::default(), policies).await
}

/// A token minted by the tenant `from` of a new `kind` session of `app`, for `to`.
pub(crate) async fn token(env: &TestEnv, from: &str, app: &str, kind: &str, to: &str) -> String {
    let session = env.create_session(app, kind, approved(kind)).await;
    let to = demo(to).application_id.to_string();
    env.share(from, &session, &to, Some(600))
        .await
        .unwrap()
        .share_token
}

pub(crate) fn approved(kind: &str) -> &'static str {
    if kind == "user" {
        "Approved"
    } else {
        "APPROVED"
    }
}
