//! Assembles a runnable gateway from a validated [`Config`]: tenants with
//! their keys, the caller policy, the upstream client, the core, the serve
//! options (TLS in mtls mode), and the SIGHUP reload of tenants and policy.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::auth::AuthPolicy;
use crate::config::{AuthConfig, Config, ConfigError};
use crate::didit::{DiditClient, RetryPolicy, UpstreamConfig};
use crate::gateway::Gateway;
use crate::limits::TenantRate;
use crate::metrics::Metrics;
use crate::server::ServeOptions;
use crate::service::{AppState, Settings};
use crate::tenant::Tenants;

/// Why the gateway could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config or a file it references is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The HTTP client could not be built (TLS initialisation).
    #[error("cannot build the upstream HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The shared state and serve options for `config`.
pub fn build(
    config: &Config,
    metrics: Metrics,
) -> Result<(Arc<AppState>, ServeOptions), StartError> {
    let settings = settings(config)?;
    let client = DiditClient::new(
        UpstreamConfig {
            base_url: config.upstream_base_url.clone(),
            timeout: config.upstream_timeout,
            connect_timeout: config.upstream_connect_timeout,
            retry: RetryPolicy {
                max_attempts: config.upstream_max_attempts,
                ..RetryPolicy::default()
            },
        },
        metrics.clone(),
    )?;
    let gateway = Gateway::new(client, config.replay, metrics.clone());
    let options = ServeOptions {
        max_concurrent_requests: config.max_concurrent_requests,
        shutdown_grace: config.shutdown_grace,
        drain_delay: Duration::from_secs(1).min(config.shutdown_grace / 4),
        tls: server_tls(config)?,
    };
    let tenant_rate = TenantRate::new(tenant_limits(config), metrics.clone());
    Ok((
        Arc::new(AppState::new(gateway, metrics, settings, tenant_rate)),
        options,
    ))
}

/// Each tenant's calls per minute.
fn tenant_limits(config: &Config) -> Vec<(String, u32)> {
    config
        .tenants
        .iter()
        .map(|t| (t.id.clone(), t.rate_limit_per_minute))
        .collect()
}

/// Tenants (keys read now) and caller policy of `config`.
pub fn settings(config: &Config) -> Result<Settings, ConfigError> {
    let auth = match &config.auth {
        AuthConfig::None => AuthPolicy::None,
        AuthConfig::Mesh {
            trusted_proxy_identity,
        } => AuthPolicy::Mesh {
            trusted_proxy_identity: trusted_proxy_identity.clone(),
        },
        AuthConfig::Mtls { .. } => AuthPolicy::Mtls,
    };
    Ok(Settings {
        tenants: Tenants::new(config.build_tenants()?),
        auth,
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

/// Applies a reloaded config: tenants, keys, allowed callers, the mesh
/// policy and tenant rate limits are replaced for every call from now on.
/// Settings that need a restart (addresses, upstream, replay, the global
/// concurrency limit, TLS files) are kept and named in a warning. On any
/// error the running settings stay.
pub fn reload(state: &AppState, running: &Config, path: &Path) -> Result<Config, ConfigError> {
    let new = Config::load(path)?;
    let mut needs_restart = Vec::new();
    for (name, changed) in [
        ("server.listen", new.listen != running.listen),
        (
            "server.admin_listen",
            new.admin_listen != running.admin_listen,
        ),
        (
            "server.max_concurrent_requests",
            new.max_concurrent_requests != running.max_concurrent_requests,
        ),
        (
            "server.shutdown_grace",
            new.shutdown_grace != running.shutdown_grace,
        ),
        (
            "upstream",
            new.upstream_base_url != running.upstream_base_url
                || new.upstream_timeout != running.upstream_timeout
                || new.upstream_connect_timeout != running.upstream_connect_timeout
                || new.upstream_max_attempts != running.upstream_max_attempts,
        ),
        (
            "replay",
            new.replay.window != running.replay.window
                || new.replay.max_bytes != running.replay.max_bytes,
        ),
        (
            "auth (mtls files or a switch to or from mtls)",
            (matches!(new.auth, AuthConfig::Mtls { .. })
                || matches!(running.auth, AuthConfig::Mtls { .. }))
                && new.auth != running.auth,
        ),
    ] {
        if changed {
            needs_restart.push(name);
        }
    }
    if matches!(running.auth, AuthConfig::Mtls { .. })
        != matches!(new.auth, AuthConfig::Mtls { .. })
    {
        return Err(ConfigError {
            file: path.to_owned(),
            key: "auth.mode".into(),
            problem: "switching to or from mtls needs a restart; the running config stays".into(),
        });
    }
    state.replace_settings(settings(&new)?);
    state.tenant_rate.update(tenant_limits(&new));
    if !needs_restart.is_empty() {
        tracing::warn!(settings = ?needs_restart, "config reloaded, but these settings apply only after a restart");
    }
    tracing::info!(
        tenants = new.tenants.len(),
        "config reloaded: tenants, keys and caller policy replaced"
    );
    Ok(new)
}

/// The `--sandbox` configuration: tenants `service-x` and `service-y`
/// wired to the in-process sandbox's two demo applications, callers not
/// authenticated (a local demo), everything else at its defaults.
pub fn sandbox_config(
    base_url: &str,
    listen: std::net::SocketAddr,
    admin_listen: std::net::SocketAddr,
) -> Config {
    use crate::config::{KeySource, TenantConfig, defaults};
    use crate::tenant::ApiKey;
    let tenants = crate::sandbox::demo_applications()
        .into_iter()
        .map(|app| TenantConfig {
            id: app.name,
            application_id: app.application_id,
            key_source: KeySource::Inline(ApiKey::new(app.api_key)),
            allowed_callers: vec!["*".into()],
            rate_limit_per_minute: defaults::TENANT_RATE_LIMIT_PER_MINUTE,
        })
        .collect();
    Config {
        source: "<sandbox>".into(),
        listen,
        admin_listen,
        shutdown_grace: defaults::SHUTDOWN_GRACE,
        max_concurrent_requests: defaults::MAX_CONCURRENT_REQUESTS,
        upstream_base_url: base_url.trim_end_matches('/').to_owned(),
        upstream_timeout: defaults::UPSTREAM_TIMEOUT,
        upstream_connect_timeout: defaults::UPSTREAM_CONNECT_TIMEOUT,
        upstream_max_attempts: defaults::UPSTREAM_MAX_ATTEMPTS,
        replay: crate::replay::ReplayConfig::default(),
        auth: AuthConfig::None,
        key_reload_interval: defaults::KEY_RELOAD_INTERVAL,
        tenants,
    }
}
