//! Assembles a runnable gateway from a validated [`Config`]: tenants with
//! their keys, the upstream client, the core and the serve options.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::didit::{DiditClient, RetryPolicy, UpstreamConfig};
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use crate::server::ServeOptions;
use crate::service::AppState;
use crate::tenant::Tenants;

/// Why the gateway could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config or a key it references is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The HTTP client could not be built (TLS initialisation).
    #[error("cannot build the upstream HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The shared state and serve options for `config`.
pub fn build(
    config: &Config,
    metrics: Metrics,
) -> Result<(Arc<AppState>, ServeOptions), StartError> {
    let tenants = Tenants::new(config.build_tenants()?);
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
        tenant_limits: config
            .tenants
            .iter()
            .map(|t| (t.id.clone(), t.rate_limit_per_minute))
            .collect(),
        shutdown_grace: config.shutdown_grace,
        drain_delay: Duration::from_secs(1).min(config.shutdown_grace / 4),
    };
    Ok((
        Arc::new(AppState {
            gateway,
            tenants,
            metrics,
        }),
        options,
    ))
}

/// The `--sandbox` configuration: tenants `service-x` and `service-y`
/// wired to the in-process sandbox's two demo applications, callers not
/// authenticated (a local demo), everything else at its defaults.
pub fn sandbox_config(
    base_url: &str,
    listen: std::net::SocketAddr,
    admin_listen: std::net::SocketAddr,
) -> Config {
    use crate::config::{AuthMode, KeySource, TenantConfig, defaults};
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
        auth: AuthMode::None,
        tenants,
    }
}
