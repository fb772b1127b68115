//! The gateway's configuration: the TOML file of the contract, validated
//! completely (addresses, durations, tenants and their key files) before any
//! port is bound, with one precise line per problem.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use uuid::Uuid;

use crate::replay::ReplayConfig;
use crate::tenant::{ApiKey, Tenant};

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

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    server: ServerSection,
    upstream: UpstreamSection,
    #[serde(default)]
    replay: ReplaySection,
    auth: Option<AuthSection>,
    #[serde(default)]
    tenants: Vec<TenantSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    listen: Option<String>,
    admin_listen: Option<String>,
    shutdown_grace: Option<String>,
    max_concurrent_requests: Option<usize>,
    key_reload_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamSection {
    base_url: String,
    timeout: Option<String>,
    connect_timeout: Option<String>,
    max_attempts: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplaySection {
    window: Option<String>,
    max_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthSection {
    mode: String,
    trusted_proxy_identity: Option<String>,
    server_cert_file: Option<PathBuf>,
    server_key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantSection {
    id: String,
    application_id: String,
    api_key_file: Option<PathBuf>,
    api_key_env: Option<String>,
    /// Present only to give a clear error: keys are never inline.
    api_key: Option<toml::Value>,
    #[serde(default)]
    allowed_callers: Vec<String>,
    rate_limit_per_minute: Option<u32>,
}

/// How callers are identified (see [`crate::auth`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthConfig {
    /// No caller identity; any caller may use any tenant. Chosen explicitly.
    None,
    /// A mesh sidecar terminates mTLS and sets `x-forwarded-client-cert`.
    Mesh {
        /// The sidecar's own identity, required in the XFCC `By=` when set.
        trusted_proxy_identity: Option<String>,
    },
    /// The gateway terminates TLS and requires client certificates.
    Mtls {
        /// PEM certificate chain the gateway presents.
        server_cert_file: PathBuf,
        /// PEM private key of that certificate.
        server_key_file: PathBuf,
        /// PEM CA bundle client certificates must chain to.
        client_ca_file: PathBuf,
    },
}

/// Where a tenant's API key comes from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// A file (a mounted Kubernetes Secret); surrounding whitespace is trimmed.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// Given in code (the `--sandbox` demo tenants).
    Inline(ApiKey),
}

impl KeySource {
    /// Reads the key now.
    pub fn load(&self) -> Result<ApiKey, String> {
        let raw = match self {
            Self::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            Self::Env(name) => std::env::var(name)
                .map_err(|_| format!("environment variable {name} is not set or not UTF-8"))?,
            Self::Inline(key) => return Ok(key.clone()),
        };
        let key = raw.trim();
        if key.is_empty() {
            return Err("the API key is empty".into());
        }
        if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the API key contains whitespace or control characters".into());
        }
        Ok(ApiKey::new(key.to_owned()))
    }
}

/// One tenant, validated.
#[derive(Clone, Debug)]
pub struct TenantConfig {
    /// What callers send in `x-tenant-id`.
    pub id: String,
    /// The Didit application.
    pub application_id: Uuid,
    /// Where its key is read from.
    pub key_source: KeySource,
    /// Caller identities allowed to act for it.
    pub allowed_callers: Vec<String>,
    /// Calls per minute through the gateway (Didit allows 300 writes/min/key).
    pub rate_limit_per_minute: u32,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from, for messages.
    pub source: PathBuf,
    /// gRPC address.
    pub listen: SocketAddr,
    /// Admin HTTP address (`/metrics`, `/healthz`, `/readyz`).
    pub admin_listen: SocketAddr,
    /// How long in-flight calls may take to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Calls served at once before new ones are shed.
    pub max_concurrent_requests: usize,
    /// Didit's base URL, without a trailing slash.
    pub upstream_base_url: String,
    /// Longest time one upstream attempt may take.
    pub upstream_timeout: Duration,
    /// Longest time to connect to Didit.
    pub upstream_connect_timeout: Duration,
    /// Upstream attempts in all (1 disables retries).
    pub upstream_max_attempts: u32,
    /// The replay store's bounds.
    pub replay: ReplayConfig,
    /// How callers are identified.
    pub auth: AuthConfig,
    /// How often API key files are checked for a rotated key.
    pub key_reload_interval: Duration,
    /// The tenants, ids unique.
    pub tenants: Vec<TenantConfig>,
}

/// Defaults shared by the file and the sandbox configuration.
pub mod defaults {
    use std::time::Duration;

    /// gRPC address.
    pub const LISTEN: &str = "0.0.0.0:50051";
    /// Admin address.
    pub const ADMIN_LISTEN: &str = "0.0.0.0:9090";
    /// Drain time on shutdown.
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
    /// Global concurrency limit.
    pub const MAX_CONCURRENT_REQUESTS: usize = 512;
    /// Per-attempt upstream timeout.
    pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
    /// Upstream connect timeout.
    pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
    /// Upstream attempts.
    pub const UPSTREAM_MAX_ATTEMPTS: u32 = 3;
    /// Didit's write limit per API key.
    pub const TENANT_RATE_LIMIT_PER_MINUTE: u32 = 300;
    /// How often key files are re-read.
    pub const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(5);
    /// Longest replay window allowed: a share token lives at most a day.
    pub const MAX_REPLAY_WINDOW: Duration = Duration::from_secs(86_400);
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
        let err = |key: &str, problem: String| ConfigError {
            file: path.to_owned(),
            key: key.to_owned(),
            problem,
        };
        let file: FileConfig = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}")
                })
                .unwrap_or_else(|| "<file>".into());
            err(&at, e.message().to_owned())
        })?;

        let listen = parse_addr(file.server.listen.as_deref().unwrap_or(defaults::LISTEN))
            .map_err(|p| err("server.listen", p))?;
        let admin_listen = parse_addr(
            file.server
                .admin_listen
                .as_deref()
                .unwrap_or(defaults::ADMIN_LISTEN),
        )
        .map_err(|p| err("server.admin_listen", p))?;
        let shutdown_grace = parse_duration(
            file.server.shutdown_grace.as_deref(),
            defaults::SHUTDOWN_GRACE,
        )
        .map_err(|p| err("server.shutdown_grace", p))?;
        let max_concurrent_requests = file
            .server
            .max_concurrent_requests
            .unwrap_or(defaults::MAX_CONCURRENT_REQUESTS);
        if max_concurrent_requests == 0 {
            return Err(err(
                "server.max_concurrent_requests",
                "must be at least 1".into(),
            ));
        }

        let base_url = file.upstream.base_url.trim_end_matches('/').to_owned();
        check_base_url(&base_url).map_err(|p| err("upstream.base_url", p))?;
        let upstream_timeout =
            parse_duration(file.upstream.timeout.as_deref(), defaults::UPSTREAM_TIMEOUT)
                .map_err(|p| err("upstream.timeout", p))?;
        if upstream_timeout > Duration::from_secs(120) {
            return Err(err("upstream.timeout", "must be at most 120s".into()));
        }
        let upstream_connect_timeout = parse_duration(
            file.upstream.connect_timeout.as_deref(),
            defaults::UPSTREAM_CONNECT_TIMEOUT,
        )
        .map_err(|p| err("upstream.connect_timeout", p))?;
        let upstream_max_attempts = file
            .upstream
            .max_attempts
            .unwrap_or(defaults::UPSTREAM_MAX_ATTEMPTS);
        if !(1..=10).contains(&upstream_max_attempts) {
            return Err(err(
                "upstream.max_attempts",
                "must be between 1 and 10".into(),
            ));
        }

        let defaults_replay = ReplayConfig::default();
        let window = parse_duration(file.replay.window.as_deref(), defaults_replay.window)
            .map_err(|p| err("replay.window", p))?;
        if window > defaults::MAX_REPLAY_WINDOW {
            return Err(err(
                "replay.window",
                "must be at most 24h (a share token lives at most a day; keeping personal data longer serves no retry)".into(),
            ));
        }
        let max_bytes = file.replay.max_bytes.unwrap_or(defaults_replay.max_bytes);
        if max_bytes < 64 * 1024 {
            return Err(err("replay.max_bytes", "must be at least 65536".into()));
        }

        let auth = match file.auth {
            None => {
                return Err(err(
                    "auth",
                    "missing [auth] section: choose mode = \"mtls\", \"mesh\" or \"none\" explicitly".into(),
                ));
            }
            Some(section) => auth_config(section).map_err(|(key, problem)| err(&key, problem))?,
        };
        let key_reload_interval = parse_duration(
            file.server.key_reload_interval.as_deref(),
            defaults::KEY_RELOAD_INTERVAL,
        )
        .map_err(|p| err("server.key_reload_interval", p))?;

        if file.tenants.is_empty() {
            return Err(err(
                "tenants",
                "at least one [[tenants]] entry is required".into(),
            ));
        }
        let mut seen = HashSet::new();
        let mut tenants = Vec::with_capacity(file.tenants.len());
        for (i, t) in file.tenants.into_iter().enumerate() {
            let key = |field: &str| format!("tenants[{i}].{field}");
            check_tenant_id(&t.id).map_err(|p| err(&key("id"), p))?;
            if !seen.insert(t.id.clone()) {
                return Err(err(&key("id"), format!("duplicate tenant id {:?}", t.id)));
            }
            let application_id = Uuid::parse_str(&t.application_id)
                .map_err(|_| err(&key("application_id"), "must be a uuid".into()))?;
            if t.api_key.is_some() {
                return Err(err(
                    &key("api_key"),
                    "API keys are never written inline; use api_key_file or api_key_env".into(),
                ));
            }
            let key_source = match (t.api_key_file, t.api_key_env) {
                (Some(file), None) => KeySource::File(file),
                (None, Some(env)) => KeySource::Env(env),
                (Some(_), Some(_)) => {
                    return Err(err(
                        &key("api_key_file"),
                        "set api_key_file or api_key_env, not both".into(),
                    ));
                }
                (None, None) => {
                    return Err(err(
                        &key("api_key_file"),
                        "one of api_key_file or api_key_env is required".into(),
                    ));
                }
            };
            let key_field = match key_source {
                KeySource::Env(_) => "api_key_env",
                _ => "api_key_file",
            };
            key_source.load().map_err(|p| err(&key(key_field), p))?;
            for (j, caller) in t.allowed_callers.iter().enumerate() {
                if caller.trim().is_empty()
                    || caller[..caller.len().saturating_sub(1)].contains('*')
                {
                    return Err(err(
                        &key(&format!("allowed_callers[{j}]")),
                        "must be an identity, optionally ending in a single trailing *".into(),
                    ));
                }
            }
            let rate_limit_per_minute = t
                .rate_limit_per_minute
                .unwrap_or(defaults::TENANT_RATE_LIMIT_PER_MINUTE);
            if rate_limit_per_minute == 0 {
                return Err(err(
                    &key("rate_limit_per_minute"),
                    "must be at least 1".into(),
                ));
            }
            tenants.push(TenantConfig {
                id: t.id,
                application_id,
                key_source,
                allowed_callers: t.allowed_callers,
                rate_limit_per_minute,
            });
        }

        Ok(Self {
            source: path.to_owned(),
            listen,
            admin_listen,
            shutdown_grace,
            max_concurrent_requests,
            upstream_base_url: base_url,
            upstream_timeout,
            upstream_connect_timeout,
            upstream_max_attempts,
            replay: ReplayConfig { window, max_bytes },
            auth,
            key_reload_interval,
            tenants,
        })
    }

    /// Builds the tenants, reading every key. Fails with the tenant's key name.
    pub fn build_tenants(&self) -> Result<Vec<Tenant>, ConfigError> {
        self.tenants
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let key = t.key_source.load().map_err(|problem| ConfigError {
                    file: self.source.clone(),
                    key: format!("tenants[{i}]"),
                    problem,
                })?;
                let tenant = Tenant::new(
                    t.id.clone(),
                    t.application_id,
                    key,
                    t.allowed_callers.clone(),
                    t.rate_limit_per_minute,
                );
                Ok(match &t.key_source {
                    KeySource::File(path) => tenant.with_key_file(path.clone()),
                    _ => tenant,
                })
            })
            .collect()
    }
}

/// Validates the `[auth]` section; errors carry the dotted key.
fn auth_config(section: AuthSection) -> Result<AuthConfig, (String, String)> {
    let tls_fields = [
        ("auth.server_cert_file", &section.server_cert_file),
        ("auth.server_key_file", &section.server_key_file),
        ("auth.client_ca_file", &section.client_ca_file),
    ];
    match section.mode.as_str() {
        "none" | "mesh" => {
            if let Some((key, _)) = tls_fields.iter().find(|(_, v)| v.is_some()) {
                return Err((
                    key.to_string(),
                    format!("only used with mode = \"mtls\", not {:?}", section.mode),
                ));
            }
            if section.mode == "none" {
                if section.trusted_proxy_identity.is_some() {
                    return Err((
                        "auth.trusted_proxy_identity".into(),
                        "only used with mode = \"mesh\"".into(),
                    ));
                }
                return Ok(AuthConfig::None);
            }
            Ok(AuthConfig::Mesh {
                trusted_proxy_identity: section.trusted_proxy_identity,
            })
        }
        "mtls" => {
            if section.trusted_proxy_identity.is_some() {
                return Err((
                    "auth.trusted_proxy_identity".into(),
                    "only used with mode = \"mesh\"".into(),
                ));
            }
            let mut files = Vec::new();
            for (key, value) in tls_fields {
                let path = value
                    .clone()
                    .ok_or_else(|| (key.to_owned(), "required with mode = \"mtls\"".to_owned()))?;
                let pem = std::fs::read_to_string(&path).map_err(|e| {
                    (
                        key.to_owned(),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                if !pem.contains("-----BEGIN ") {
                    return Err((key.to_owned(), format!("{} is not PEM", path.display())));
                }
                files.push(path);
            }
            let mut files = files.into_iter();
            match (files.next(), files.next(), files.next()) {
                (Some(server_cert_file), Some(server_key_file), Some(client_ca_file)) => {
                    Ok(AuthConfig::Mtls {
                        server_cert_file,
                        server_key_file,
                        client_ca_file,
                    })
                }
                _ => Err(("auth".into(), "incomplete TLS settings".into())),
            }
        }
        other => Err((
            "auth.mode".into(),
            format!("unknown mode {other:?}: choose \"mtls\", \"mesh\" or \"none\""),
        )),
    }
}

fn parse_addr(raw: &str) -> Result<SocketAddr, String> {
    raw.parse()
        .map_err(|_| format!("{raw:?} is not an address like 0.0.0.0:50051"))
}

fn parse_duration(raw: Option<&str>, default: Duration) -> Result<Duration, String> {
    let Some(raw) = raw else { return Ok(default) };
    let d = humantime::parse_duration(raw)
        .map_err(|e| format!("{raw:?} is not a duration like \"10s\" or \"5m\": {e}"))?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

fn check_base_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err("must be an http:// or https:// URL".into());
    }
    if parsed.query().is_some() || parsed.fragment().is_some() || parsed.host_str().is_none() {
        return Err("must be a base URL like https://verification.didit.me".into());
    }
    Ok(())
}

/// Tenant ids appear in metadata and metric labels: keep them tame.
fn check_tenant_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err("must be 1-64 characters of A-Z a-z 0-9 - _ .".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("gateway.toml"), text)
    }

    #[test]
    fn a_good_file_gets_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("brand-a");
        std::fs::write(&key, "sk_test\n").unwrap();
        let text = format!(
            r#"
            [upstream]
            base_url = "https://verification.didit.me/"
            timeout = "5s"
            [auth]
            mode = "none"
            [[tenants]]
            id = "brand-a"
            application_id = "11111111-1111-4111-8111-111111111111"
            api_key_file = "{}"
            allowed_callers = ["spiffe://cluster.local/ns/payments/*"]
            "#,
            key.display()
        );
        let config = parse(&text).unwrap();
        assert_eq!(config.upstream_base_url, "https://verification.didit.me");
        assert_eq!(config.upstream_timeout, Duration::from_secs(5));
        assert_eq!(config.listen.port(), 50051);
        assert_eq!(config.tenants[0].rate_limit_per_minute, 300);
        assert_eq!(config.replay.max_bytes, 64 * 1024 * 1024);
        let tenants = config.build_tenants().unwrap();
        assert_eq!(tenants[0].api_key().expose(), "sk_test");
    }

    #[test]
    fn problems_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "sk_test\n").unwrap();
        let base = format!(
            "[upstream]\nbase_url = \"https://x.example\"\n[auth]\nmode = \"none\"\n[[tenants]]\nid = \"a\"\napplication_id = \"11111111-1111-4111-8111-111111111111\"\napi_key_file = \"{}\"\n",
            key.display()
        );
        assert!(parse(&base).is_ok());
        let cases = [
            (
                base.replace("mode = \"none\"", "mode = \"open\""),
                "auth.mode",
            ),
            (base.replace("[auth]\nmode = \"none\"\n", ""), "auth"),
            (
                base.replace("11111111-1111-4111-8111-111111111111", "nope"),
                "tenants[0].application_id",
            ),
            (
                base.replace("https://x.example", "ftp://x"),
                "upstream.base_url",
            ),
            (
                base.replace(&key.display().to_string(), "/nonexistent/key"),
                "tenants[0].api_key_file",
            ),
            (
                format!("{base}api_key = \"sk_inline\"\n"),
                "tenants[0].api_key",
            ),
            (
                format!(
                    "{base}[[tenants]]\nid = \"a\"\napplication_id = \"11111111-1111-4111-8111-111111111111\"\napi_key_file = \"{}\"\n",
                    key.display()
                ),
                "tenants[1].id",
            ),
            (
                format!("[replay]\nwindow = \"48h\"\n{base}"),
                "replay.window",
            ),
            (
                format!("[server]\nlisten = \"nowhere\"\n{base}"),
                "server.listen",
            ),
            (format!("{base}colour = \"blue\"\n"), "line"),
        ];
        for (text, want_key) in cases {
            let err = parse(&text).expect_err(want_key);
            assert!(err.key.starts_with(want_key), "{want_key}: {err}");
            assert!(!err.to_string().contains("sk_inline"), "{err}");
        }
    }

    #[test]
    fn empty_key_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "  \n").unwrap();
        let err = KeySource::File(key).load().unwrap_err();
        assert!(err.contains("empty"));
    }
}
