//! From a validated [`Config`] to the pieces that serve it: tenants with
//! their keys, the caller policy, the upstream client charging tenants'
//! Didit budgets, the core and the gRPC server's options (TLS in mtls mode).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use super::StartError;
use crate::budget::DiditBudget;
use crate::config::{AuthConfig, Config, ConfigError};
use crate::didit::DiditClient;
use crate::gateway::Gateway;
use crate::grpc::ServeOptions;
use crate::metrics::{Metrics, TenantLabels};
use crate::service::{AppState, Settings};
use crate::state::StateStore;
use crate::tenant::Tenants;

/// The longest pause between NOT_SERVING and closing the listener.
const MAX_DRAIN_DELAY: Duration = Duration::from_secs(1);

/// The state store `config` names (`[state]`), with the replay evictions
/// counted for the memory backend. Redis connects lazily: start-up does
/// not wait for it.
pub(super) async fn store(config: &Config, metrics: &Metrics) -> Result<StateStore, ConfigError> {
    let evictions = metrics.replay_evictions.clone();
    let on_eviction: crate::state::memory::OnEviction = Arc::new(move || {
        evictions.inc();
    });
    StateStore::open_observed(&config.state, config.replay.max_bytes, Some(on_eviction))
        .await
        .map_err(|e| ConfigError {
            file: config.source.clone(),
            key: e.key,
            problem: e.problem,
        })
}

/// The shared state and the gRPC server's options for `config`; tenants'
/// Didit budgets are kept in `store`.
pub(super) fn state(
    config: &Config,
    store: StateStore,
    metrics: Metrics,
    drain_delay: Option<Duration>,
) -> Result<(Arc<AppState>, ServeOptions), StartError> {
    let settings = settings(config)?;
    metrics
        .replay_max_bytes
        .set(i64::try_from(config.replay.max_bytes).unwrap_or(i64::MAX));
    let event_log = match &config.webhooks {
        Some(webhooks) => {
            Some(
                super::webhooks::event_log(webhooks, &store).map_err(|e| ConfigError {
                    file: config.source.clone(),
                    key: "state.redis_url".into(),
                    problem: format!("cannot open the session event log: {e}"),
                })?,
            )
        }
        None => None,
    };
    let budgets = DiditBudget::new(store.clone(), config.upstream.budget_wait, metrics.clone());
    let client = DiditClient::new(config.upstream.clone(), metrics.clone())?.with_budgets(budgets);
    let gateway = Gateway::new(
        client,
        config.replay,
        store,
        config.server.max_concurrent_requests,
        metrics.clone(),
    );
    let grace = config.server.shutdown_grace;
    let options = ServeOptions {
        max_concurrent_requests: config.server.max_concurrent_requests,
        shutdown_grace: grace,
        drain_delay: drain_delay.unwrap_or_else(|| MAX_DRAIN_DELAY.min(grace / 4)),
        tls: server_tls(config)?,
    };
    // Every configured tenant's budget series exist (at 0) from the start.
    for tenant in &config.tenants {
        let labels = TenantLabels {
            tenant: tenant.id.clone(),
        };
        let _ = metrics.tenant_rate_limited.get_or_create(&labels);
        let _ = metrics.budget_waits.get_or_create(&labels);
        let _ = metrics.budget_wait_seconds.get_or_create(&labels);
    }
    let mut state = AppState::new(gateway, metrics, settings);
    if let Some(log) = event_log {
        state = state.with_event_log(log);
    }
    Ok((Arc::new(state), options))
}

/// Tenants (keys read now) and caller policy of `config`: what a reload
/// replaces.
pub(super) fn settings(config: &Config) -> Result<Settings, ConfigError> {
    Ok(Settings {
        tenants: Tenants::new(config.build_tenants()?),
        auth: config.auth.policy(),
        audit: config.audit,
    })
}

/// The server's TLS settings in mtls mode: our certificate, and client
/// certificates required from the configured CA.
fn server_tls(config: &Config) -> Result<Option<ServerTlsConfig>, ConfigError> {
    let AuthConfig::Mtls {
        server_cert_file,
        server_key_file,
        client_ca_file,
    } = &config.auth
    else {
        return Ok(None);
    };
    let read = |key: &str, path: &Path| {
        std::fs::read(path).map_err(|e| ConfigError {
            file: config.source.clone(),
            key: key.to_owned(),
            problem: format!("cannot read {}: {e}", path.display()),
        })
    };
    let identity = Identity::from_pem(
        read("auth.server_cert_file", server_cert_file)?,
        read("auth.server_key_file", server_key_file)?,
    );
    let ca = Certificate::from_pem(read("auth.client_ca_file", client_ca_file)?);
    Ok(Some(
        ServerTlsConfig::new().identity(identity).client_ca_root(ca),
    ))
}

/// The `--sandbox` configuration: one tenant per demo application of the
/// in-process sandbox (`service-x`, `service-y`, `service-z`), named after
/// it, wired to the sandbox at `base_url`; only with the `sandbox` feature,
/// callers not authenticated (a local demo), every section at its defaults.
///
/// The demo shows the partner policy: `service-x` and `service-y` are
/// sister brands (share, import and trust_review both ways, both kinds, up
/// to a day); `service-z` is in neither's agreements, so they refuse to
/// share with it or import from it; `service-z` itself has no policy.
#[cfg(feature = "sandbox")]
pub fn sandbox_config(base_url: &str) -> Config {
    use crate::config::{KeySource, ReplayConfig, ServerConfig, TenantConfig, UpstreamConfig};
    use crate::tenant::ApiKey;
    let apps = didit_sandbox::demo_applications();
    let sister = |name: &str| {
        apps.iter()
            .find(|app| app.name == name)
            .map(|app| crate::policy::Partner {
                application_id: app.application_id,
                name: app.name.clone(),
                agreement: "DEMO-SISTER-BRANDS".into(),
                share: true,
                import: true,
                trust_review: true,
                max_ttl_seconds: crate::policy::MAX_TTL_SECONDS,
                session_kinds: vec![
                    crate::session::SessionKind::User,
                    crate::session::SessionKind::Business,
                ],
            })
    };
    let tenants = apps
        .iter()
        .map(|app| TenantConfig {
            id: app.name.clone(),
            application_id: app.application_id,
            key_source: KeySource::Inline(ApiKey::new(app.api_key.clone())),
            allowed_callers: vec!["*".into()],
            rate_limit_per_minute: TenantConfig::DEFAULT_RATE_LIMIT_PER_MINUTE,
            webhook_secret: None,
            partners: match app.name.as_str() {
                "service-x" => Some(sister("service-y").into_iter().collect()),
                "service-y" => Some(sister("service-x").into_iter().collect()),
                _ => None,
            },
            rate_limit_burst: None,
        })
        .collect();
    Config {
        source: "<sandbox>".into(),
        server: ServerConfig::default(),
        upstream: UpstreamConfig::at(base_url),
        replay: ReplayConfig::default(),
        auth: AuthConfig::None,
        state: crate::state::StateConfig::default(),
        tenants,
        webhooks: None,
        audit: crate::audit::AuditConfig::default(),
    }
}

/// `--sandbox` webhooks: `[webhooks]` on `listen`, and a random webhook
/// secret for every tenant (the demo applications); once started,
/// [`register_sandbox_webhooks`] makes the sandbox deliver to the gateway.
#[cfg(feature = "sandbox")]
pub fn sandbox_webhooks(config: &mut Config, listen: std::net::SocketAddr) {
    use crate::webhooks::{WebhookSecret, WebhookSecretSource, WebhooksConfig};
    config.webhooks = Some(WebhooksConfig {
        listen,
        ..WebhooksConfig::default()
    });
    for tenant in &mut config.tenants {
        let secret: String = rand::random::<[u8; 32]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        tenant.webhook_secret = Some(WebhookSecretSource::Inline(WebhookSecret::new(secret)));
    }
}

/// Registers the gateway's webhook port (`webhooks_addr`) as a destination
/// of each tenant's application in `sandbox`, signed with the tenant's
/// secret (tenants without an in-code secret are skipped). The error names
/// the tenant, never the secret.
#[cfg(feature = "sandbox")]
pub fn register_sandbox_webhooks(
    sandbox: &didit_sandbox::Sandbox,
    config: &Config,
    webhooks_addr: std::net::SocketAddr,
) -> Result<(), String> {
    use crate::webhooks::WebhookSecretSource;
    let host = match webhooks_addr.ip() {
        ip if ip.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
        ip => ip,
    };
    for tenant in &config.tenants {
        let Some(WebhookSecretSource::Inline(secret)) = &tenant.webhook_secret else {
            continue;
        };
        let secret = std::str::from_utf8(secret.hmac_key())
            .map_err(|_| format!("tenant {}: the webhook secret is not UTF-8", tenant.id))?;
        let url = format!(
            "http://{}/webhooks/didit/{}",
            std::net::SocketAddr::new(host, webhooks_addr.port()),
            tenant.id
        );
        sandbox
            .add_webhook_destination(tenant.application_id, &url, secret)
            .map_err(|e| {
                format!(
                    "tenant {}: cannot add the webhook destination: {e:?}",
                    tenant.id
                )
            })?;
    }
    Ok(())
}
