//! The `[state]` section: where replay records, in-flight leases, in-doubt
//! marks and Didit budgets live (this process, or Redis shared by every
//! replica), checked completely before anything connects.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use secrecy::SecretString;
use serde::Deserialize;

use super::seal::EncryptionKey;

/// A problem in `[state]`: the dotted key and what is wrong (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct StateConfigError {
    /// The dotted key, e.g. `state.encryption_key_file`.
    pub key: String,
    /// What is wrong with it.
    pub problem: String,
}

/// Which store backs the shared state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// In this process only: one replica, lost on restart.
    #[default]
    Memory,
    /// Redis, shared by every replica.
    Redis,
}

/// The `[state]` TOML table as written.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// `memory` (default) or `redis`.
    pub backend: Backend,
    /// A file holding the Redis URL (may carry a password).
    pub redis_url_file: Option<PathBuf>,
    /// An environment variable holding the Redis URL (may carry a password).
    pub redis_url_env: Option<String>,
    /// The Redis URL inline; refused when it carries a password.
    pub redis_url: Option<String>,
    /// Prepended to every Redis key, so deployments can share one Redis.
    pub key_prefix: String,
    /// A file holding 32 random bytes, base64: the AES-256-GCM key sealing
    /// records in Redis. Required with `redis`.
    pub encryption_key_file: Option<PathBuf>,
    /// A PEM CA bundle that `rediss://` trusts instead of the system's
    /// roots (a Redis behind a private CA).
    pub tls_ca_file: Option<PathBuf>,
    /// Bound on establishing a Redis connection.
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Bound on every Redis operation; past it the operation fails with
    /// `StateError::Unavailable`.
    #[serde(deserialize_with = "duration")]
    pub response_timeout: Duration,
    /// How often a waiter re-checks Redis when no notification arrives.
    #[serde(deserialize_with = "duration")]
    pub poll_interval: Duration,
    /// How often Redis is pinged to report its health.
    #[serde(deserialize_with = "duration")]
    pub health_check_interval: Duration,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Memory,
            redis_url_file: None,
            redis_url_env: None,
            redis_url: None,
            key_prefix: "dsg".into(),
            encryption_key_file: None,
            tls_ca_file: None,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(1),
            poll_interval: Duration::from_millis(250),
            health_check_interval: Duration::from_secs(1),
        }
    }
}

/// What a Redis store needs, read and checked.
#[derive(Clone, Debug)]
pub struct RedisSettings {
    /// The URL, `redis://` or `rediss://` (TLS); may carry a password.
    pub url: SecretString,
    /// Prepended to every key.
    pub key_prefix: String,
    /// Seals records and in-doubt marks.
    pub encryption_key: EncryptionKey,
    /// PEM CA bundle for TLS; `None`: the system's roots.
    pub tls_ca_pem: Option<Vec<u8>>,
    /// Bound on establishing a connection.
    pub connect_timeout: Duration,
    /// Bound on every operation.
    pub response_timeout: Duration,
    /// Waiters' fallback polling period.
    pub poll_interval: Duration,
    /// Health ping period.
    pub health_check_interval: Duration,
}

impl RedisSettings {
    /// Settings with the defaults of [`StateConfig`] for `url` and `key`.
    pub fn new(url: impl Into<String>, encryption_key: EncryptionKey) -> Self {
        let d = StateConfig::default();
        Self {
            url: SecretString::from(url.into()),
            key_prefix: d.key_prefix,
            encryption_key,
            tls_ca_pem: None,
            connect_timeout: d.connect_timeout,
            response_timeout: d.response_timeout,
            poll_interval: d.poll_interval,
            health_check_interval: d.health_check_interval,
        }
    }
}

/// The section after validation and reading its files.
#[derive(Clone, Debug)]
pub enum ResolvedState {
    /// In-process state.
    Memory,
    /// Redis state.
    Redis(RedisSettings),
}

impl StateConfig {
    /// Checks every key, reading the URL and the encryption key now.
    pub fn validate(&self) -> Result<(), StateConfigError> {
        self.resolve().map(drop)
    }

    /// Checks every key and reads the secrets it points at.
    pub fn resolve(&self) -> Result<ResolvedState, StateConfigError> {
        check_prefix(&self.key_prefix).map_err(|p| err("key_prefix", p))?;
        for (key, value) in [
            ("connect_timeout", self.connect_timeout),
            ("response_timeout", self.response_timeout),
            ("poll_interval", self.poll_interval),
            ("health_check_interval", self.health_check_interval),
        ] {
            if value.is_zero() || value > Duration::from_secs(60) {
                return Err(err(key, "must be greater than zero and at most 60s".into()));
            }
        }
        if self.backend == Backend::Memory {
            let redis_only = [
                ("redis_url_file", self.redis_url_file.is_some()),
                ("redis_url_env", self.redis_url_env.is_some()),
                ("redis_url", self.redis_url.is_some()),
                ("encryption_key_file", self.encryption_key_file.is_some()),
                ("tls_ca_file", self.tls_ca_file.is_some()),
            ];
            if let Some((key, _)) = redis_only.iter().find(|(_, set)| *set) {
                return Err(err(key, "only used with backend = \"redis\"".into()));
            }
            return Ok(ResolvedState::Memory);
        }
        let (key, url) = self.url()?;
        check_url(&url, key == "redis_url").map_err(|p| err(key, p))?;
        let Some(path) = &self.encryption_key_file else {
            return Err(err(
                "encryption_key_file",
                "required with backend = \"redis\" (32 random bytes, base64)".into(),
            ));
        };
        let encryption_key = read_key(path).map_err(|p| err("encryption_key_file", p))?;
        let tls_ca_pem = match &self.tls_ca_file {
            None => None,
            Some(path) => {
                if !url.starts_with("rediss://") {
                    return Err(err("tls_ca_file", "only used with a rediss:// URL".into()));
                }
                Some(read_pem(path).map_err(|p| err("tls_ca_file", p))?)
            }
        };
        Ok(ResolvedState::Redis(RedisSettings {
            url: SecretString::from(url),
            key_prefix: self.key_prefix.clone(),
            encryption_key,
            tls_ca_pem,
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            poll_interval: self.poll_interval,
            health_check_interval: self.health_check_interval,
        }))
    }

    /// The URL and the key it came from: exactly one source.
    fn url(&self) -> Result<(&'static str, String), StateConfigError> {
        let set = [
            self.redis_url_file.is_some(),
            self.redis_url_env.is_some(),
            self.redis_url.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            return Err(err(
                "redis_url_file",
                "set exactly one of redis_url_file, redis_url_env, redis_url".into(),
            ));
        }
        if let Some(path) = &self.redis_url_file {
            let raw = std::fs::read_to_string(path).map_err(|e| {
                err(
                    "redis_url_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            return Ok(("redis_url_file", raw.trim().to_owned()));
        }
        if let Some(name) = &self.redis_url_env {
            let raw = std::env::var(name).map_err(|_| {
                err(
                    "redis_url_env",
                    format!("environment variable {name} is not set or not UTF-8"),
                )
            })?;
            return Ok(("redis_url_env", raw.trim().to_owned()));
        }
        Ok(("redis_url", self.redis_url.clone().unwrap_or_default()))
    }
}

fn err(key: &str, problem: String) -> StateConfigError {
    StateConfigError {
        key: format!("state.{key}"),
        problem,
    }
}

/// Parses a duration written like `"2s"` or `"500ms"`.
fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let raw = String::deserialize(d)?;
    humantime::parse_duration(&raw).map_err(|e| {
        serde::de::Error::custom(format!(
            "{raw:?} is not a duration like \"2s\" or \"500ms\": {e}"
        ))
    })
}

/// Key prefixes end up in Redis keys and a PSUBSCRIBE pattern: no glob or
/// hash-tag characters.
fn check_prefix(prefix: &str) -> Result<(), String> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 32
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err("must be 1-32 characters of A-Z a-z 0-9 - _ . :".into())
    }
}

/// Checks the URL's shape without ever echoing it (it may hold a password).
fn check_url(url: &str, inline: bool) -> Result<(), String> {
    if url.is_empty() {
        return Err("the Redis URL is empty".into());
    }
    let parsed = redis::parse_redis_url(url)
        .ok_or_else(|| "is not a redis:// or rediss:// URL".to_owned())?;
    if !matches!(parsed.scheme(), "redis" | "rediss") {
        return Err("must be a redis:// or rediss:// URL".into());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("the Redis URL has no host".into());
    }
    if inline && parsed.password().is_some() {
        return Err(
            "a URL with a password must come from redis_url_file or redis_url_env, not inline"
                .into(),
        );
    }
    Ok(())
}

/// Reads a base64 file holding exactly 32 bytes.
fn read_key(path: &std::path::Path) -> Result<EncryptionKey, String> {
    let raw = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .map_err(|_| format!("{} is not base64", path.display()))?;
    EncryptionKey::from_bytes(&bytes).ok_or_else(|| {
        format!(
            "{} must hold 32 random bytes, base64 (e.g. `head -c 32 /dev/urandom | base64`), not {}",
            path.display(),
            bytes.len()
        )
    })
}

/// Reads a PEM certificate bundle.
fn read_pem(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(pem)
}
