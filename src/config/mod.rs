//! The gateway's configuration: the TOML file of the contract, one section
//! type per component, validated completely (addresses, durations, tenants
//! and their key files) before any port is bound, with one precise line per
//! problem.
//!
//! Each section lives in its own file: the type its component takes, its
//! `Default` (or, for `[auth]`, the reason it has none), its `validate`, and
//! the shape it has in the file (`*Section`, only ever converted, never
//! passed on).
//!
//! - `server.rs`: [`ServerConfig`], `[server]`, taken by [`crate::app::start`]
//!   and the gRPC server.
//! - `upstream.rs`: [`UpstreamConfig`], `[upstream]`, taken by
//!   [`crate::didit::DiditClient::new`].
//! - `replay.rs`: [`ReplayConfig`], `[replay]`, taken by
//!   [`crate::state::StateStore::open`].
//! - `auth.rs`: [`AuthConfig`], `[auth]`, turned into the caller policy and
//!   the server's TLS.
//! - `tenants.rs`: [`TenantConfig`], `[[tenants]]`, turned into
//!   [`crate::tenant::Tenants`].
//! - `partners.rs`: `[[tenants.partners]]`, each tenant's data-sharing
//!   agreements, turned into [`crate::policy::Partner`]s.
//! - `report.rs`: [`CheckReport`], what `--check-config` prints, as text or
//!   JSON.

mod auth;
mod partners;
mod replay;
mod report;
mod server;
mod tenants;
mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::tenant::Tenant;
use crate::webhooks::WebhooksConfig;

pub use crate::audit::AuditConfig;
pub use auth::AuthConfig;
pub use replay::ReplayConfig;
pub use report::CheckReport;
pub use server::ServerConfig;
pub use tenants::{KeySource, TenantConfig};
pub use upstream::UpstreamConfig;

/// A configuration problem: which file, which key, what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("invalid config {}: {key}: {problem}", file.display())]
pub struct ConfigError {
    /// The file (or `<command line>`, `<sandbox>`).
    pub file: PathBuf,
    /// The dotted key, e.g. `tenants[1].api_key_file`.
    pub key: String,
    /// What is wrong, never including a secret.
    pub problem: String,
}

/// A problem with one key, before the file it is in is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The dotted key, e.g. `server.listen`.
    pub key: String,
    /// What is wrong, never including a secret.
    pub problem: String,
}

impl FieldError {
    /// `key` has `problem`.
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
        }
    }

    /// The same problem, located in `file`.
    pub fn in_file(self, file: &Path) -> ConfigError {
        ConfigError {
            file: file.to_owned(),
            key: self.key,
            problem: self.problem,
        }
    }
}

/// The validated configuration: one field per section of the file.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from, for messages and reloads (`<sandbox>` when
    /// built in code).
    pub source: PathBuf,
    /// `[server]`: addresses, admission, drain, key reloads.
    pub server: ServerConfig,
    /// `[upstream]`: how Didit is reached.
    pub upstream: UpstreamConfig,
    /// `[replay]`: the replay store's bounds.
    pub replay: ReplayConfig,
    /// `[auth]`: how callers are identified.
    pub auth: AuthConfig,
    /// `[state]`: where replay records, leases and budgets live (memory
    /// by default; Redis shared by every replica).
    pub state: crate::state::StateConfig,
    /// `[[tenants]]`: the tenants, ids unique.
    pub tenants: Vec<TenantConfig>,
    /// `[webhooks]`: the webhook port and the session event log; webhooks
    /// are served only when the section is present.
    pub webhooks: Option<WebhooksConfig>,
    /// `[audit]`: whether the audit trail is written (a reload applies it).
    pub audit: AuditConfig,
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    server: server::ServerSection,
    upstream: upstream::UpstreamSection,
    #[serde(default)]
    replay: replay::ReplaySection,
    auth: Option<auth::AuthSection>,
    #[serde(default)]
    state: crate::state::StateConfig,
    #[serde(default)]
    tenants: Vec<tenants::TenantSection>,
    webhooks: Option<WebhooksConfig>,
    #[serde(default)]
    audit: AuditConfig,
}

/// Addresses given on the command line, which win over the file's and are
/// applied again to every reloaded file.
#[derive(Clone, Copy, Debug, Default)]
pub struct Overrides {
    /// `--listen`: replaces `server.listen`.
    pub listen: Option<SocketAddr>,
    /// `--admin-listen`: replaces `server.admin_listen`.
    pub admin_listen: Option<SocketAddr>,
}

impl Overrides {
    /// Puts the overridden addresses into `config`.
    pub fn apply(&self, config: &mut Config) {
        if let Some(listen) = self.listen {
            config.server.listen = listen;
        }
        if let Some(admin_listen) = self.admin_listen {
            config.server.admin_listen = admin_listen;
        }
    }
}

impl Config {
    /// Reads and validates `path`, including every key it references.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            key: "<file>".into(),
            problem: format!("cannot read: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Validates the text of a config file named `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}")
                })
                .unwrap_or_else(|| "<file>".into());
            FieldError::new(at, e.message()).in_file(path)
        })?;
        let config = Self::from_file(path, file).map_err(|e| e.in_file(path))?;
        config.validate()?;
        Ok(config)
    }

    /// Converts each section (addresses, durations, ids parsed).
    fn from_file(path: &Path, file: FileConfig) -> Result<Self, FieldError> {
        let auth = file.auth.ok_or_else(|| {
            FieldError::new(
                "auth",
                "missing [auth] section: choose mode = \"mtls\", \"mesh\" or \"none\" explicitly",
            )
        })?;
        Ok(Self {
            source: path.to_owned(),
            server: file.server.into_config()?,
            upstream: file.upstream.into_config()?,
            replay: file.replay.into_config()?,
            auth: auth.into_config()?,
            state: file.state,
            tenants: tenants::from_sections(file.tenants)?,
            webhooks: file.webhooks,
            audit: file.audit,
        })
    }

    /// Checks every section, reading the key and certificate files they
    /// name; the error is located in [`source`](Self::source).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server
            .validate()
            .and_then(|()| self.upstream.validate())
            .and_then(|()| self.replay.validate())
            .and_then(|()| self.auth.validate())
            .and_then(|()| {
                self.state
                    .validate()
                    .map_err(|e| FieldError::new(e.key, e.problem))
            })
            .and_then(|()| tenants::validate(&self.tenants))
            .and_then(|()| match &self.webhooks {
                Some(webhooks) => webhooks
                    .validate()
                    .map_err(|e| FieldError::new(format!("webhooks.{}", e.key), e.problem)),
                None => Ok(()),
            })
            .map_err(|e| e.in_file(&self.source))
    }

    /// The ids of the tenants without a partner policy (any partner).
    pub fn tenants_without_policy(&self) -> Vec<&str> {
        self.tenants
            .iter()
            .filter(|t| t.partners.is_none())
            .map(|t| t.id.as_str())
            .collect()
    }

    /// Builds the tenants, reading every key. Fails with the tenant's key name.
    pub fn build_tenants(&self) -> Result<Vec<Tenant>, ConfigError> {
        self.tenants
            .iter()
            .enumerate()
            .map(|(i, t)| {
                t.build().map_err(|problem| ConfigError {
                    file: self.source.clone(),
                    key: format!("tenants[{i}]"),
                    problem,
                })
            })
            .collect()
    }

    /// The sections a reload cannot apply: every one that differs between
    /// `self` (running) and `new`, except `[[tenants]]` and `[auth]`
    /// outside mtls, which a reload replaces.
    pub fn needs_restart(&self, new: &Config) -> Vec<&'static str> {
        let auth_fixed = self.auth.is_mtls() || new.auth.is_mtls();
        [
            ("server", self.server != new.server),
            ("upstream", self.upstream != new.upstream),
            ("replay", self.replay != new.replay),
            ("webhooks", self.webhooks != new.webhooks),
            ("state", self.state != new.state),
            (
                "auth (mtls files or a switch to or from mtls)",
                auth_fixed && self.auth != new.auth,
            ),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
    }
}

/// `raw` as an address, or `default` when the key is not set.
fn parse_addr(raw: Option<&str>, default: SocketAddr) -> Result<SocketAddr, String> {
    let Some(raw) = raw else { return Ok(default) };
    raw.parse()
        .map_err(|_| format!("{raw:?} is not an address like 0.0.0.0:50051"))
}

/// `raw` as a duration ("10s", "5m", "500ms"), or `default` when not set.
fn parse_duration(raw: Option<&str>, default: Duration) -> Result<Duration, String> {
    let Some(raw) = raw else { return Ok(default) };
    humantime::parse_duration(raw)
        .map_err(|e| format!("{raw:?} is not a duration like \"10s\" or \"5m\": {e}"))
}

/// Durations of the file are never zero.
fn positive(key: &str, value: Duration) -> Result<(), FieldError> {
    if value.is_zero() {
        return Err(FieldError::new(key, "must be greater than zero"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
