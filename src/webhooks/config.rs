//! The `[webhooks]` config section and the per-tenant webhook secret
//! (Didit's `secret_shared_key` of the tenant's webhook destination).
//!
//! ```toml
//! [webhooks]
//! listen = "0.0.0.0:8080"          # Didit posts to /webhooks/didit/{tenant_id}
//! retention = "24h"
//! max_events = 100000              # memory backend: per tenant
//! accept_simple_signature = false
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

/// The `[webhooks]` section. Every key is optional; [`Default`] is the
/// contract's defaults.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Where the webhook ingress listens (plain HTTP; put TLS in front).
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// How long events are kept for resuming watchers (`"24h"`).
    #[serde(deserialize_with = "duration")]
    pub retention: Duration,
    /// Events kept per tenant (memory backend; Redis: the stream's MAXLEN).
    pub max_events: usize,
    /// Bytes of webhook bodies kept per tenant (memory backend), so a burst
    /// of large decisions cannot exhaust memory before `max_events` does.
    pub max_bytes: usize,
    /// Live events a watcher may fall behind before it is cut off with
    /// `SLOW_SUBSCRIBER` (it then resumes from its last event id).
    pub subscriber_buffer: usize,
    /// Also accept deliveries signed only with `X-Signature-Simple`, which
    /// covers `timestamp:session_id:status:webhook_type` and not the rest of
    /// the body (vendor_data, decision). Off unless a proxy in front of the
    /// gateway is known to re-encode bodies.
    pub accept_simple_signature: bool,
}

/// The contract's defaults.
pub mod defaults {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Duration;

    /// `0.0.0.0:8080`.
    pub const LISTEN: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080);
    /// 24 hours.
    pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
    /// 100,000 events per tenant.
    pub const MAX_EVENTS: usize = 100_000;
    /// 256 MiB of bodies per tenant.
    pub const MAX_BYTES: usize = 256 << 20;
    /// 1,024 live events of slack per watcher.
    pub const SUBSCRIBER_BUFFER: usize = 1024;
    /// The longest retention accepted (7 days).
    pub const MAX_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            listen: defaults::LISTEN,
            retention: defaults::RETENTION,
            max_events: defaults::MAX_EVENTS,
            max_bytes: defaults::MAX_BYTES,
            subscriber_buffer: defaults::SUBSCRIBER_BUFFER,
            accept_simple_signature: false,
        }
    }
}

/// A problem with one key of the section, e.g.
/// `webhooks.retention: must be greater than zero`.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("webhooks.{key}: {problem}")]
pub struct WebhooksConfigError {
    /// The key inside `[webhooks]`.
    pub key: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl WebhooksConfig {
    /// Checks the values serde cannot: ranges and their relations.
    pub fn validate(&self) -> Result<(), WebhooksConfigError> {
        let fail = |key, problem: &str| {
            Err(WebhooksConfigError {
                key,
                problem: problem.to_owned(),
            })
        };
        if self.retention.is_zero() {
            return fail("retention", "must be greater than zero");
        }
        if self.retention > defaults::MAX_RETENTION {
            return fail("retention", "must be at most 7 days");
        }
        if !(1..=10_000_000).contains(&self.max_events) {
            return fail("max_events", "must be between 1 and 10000000");
        }
        if self.max_bytes < crate::webhooks::ingress::MAX_BODY_BYTES {
            return fail(
                "max_bytes",
                "must be at least 1048576 (one maximal webhook body)",
            );
        }
        if !(1..=65_536).contains(&self.subscriber_buffer) {
            return fail("subscriber_buffer", "must be between 1 and 65536");
        }
        Ok(())
    }
}

fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let raw = String::deserialize(d)?;
    raw.parse().map_err(|_| {
        serde::de::Error::custom(format!("{raw:?} is not an address like 0.0.0.0:8080"))
    })
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let raw = String::deserialize(d)?;
    humantime::parse_duration(&raw).map_err(|e| {
        serde::de::Error::custom(format!("{raw:?} is not a duration like \"24h\": {e}"))
    })
}

/// A tenant's webhook signing secret. Debug prints a redaction; the memory
/// is zeroed on drop.
#[derive(Clone)]
pub struct WebhookSecret(SecretString);

impl WebhookSecret {
    /// Wraps a secret read from a file or the environment.
    pub fn new(secret: String) -> Self {
        Self(SecretString::from(secret))
    }

    /// The HMAC key: the secret's UTF-8 bytes, as Didit uses it.
    pub fn hmac_key(&self) -> &[u8] {
        self.0.expose_secret().as_bytes()
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret([REDACTED])")
    }
}

/// Where a tenant's webhook secret comes from (`webhook_secret_file` or
/// `webhook_secret_env` of its `[[tenants]]` entry).
#[derive(Clone, Debug)]
pub enum WebhookSecretSource {
    /// A file (a mounted Kubernetes Secret); surrounding whitespace is trimmed.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// Given in code (`--sandbox` mints a random one per demo tenant).
    Inline(WebhookSecret),
}

impl WebhookSecretSource {
    /// Reads the secret now. The error names the source and the problem,
    /// never the content.
    pub fn load(&self) -> Result<WebhookSecret, String> {
        let raw = match self {
            Self::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            Self::Env(name) => std::env::var(name)
                .map_err(|_| format!("environment variable {name} is not set or not UTF-8"))?,
            Self::Inline(secret) => return Ok(secret.clone()),
        };
        let secret = raw.trim();
        if secret.is_empty() {
            return Err("the webhook secret is empty".into());
        }
        if secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the webhook secret contains whitespace or control characters".into());
        }
        let secret = WebhookSecret::new(secret.to_owned());
        drop(zeroize::Zeroizing::new(raw));
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<WebhooksConfig, String> {
        #[derive(Deserialize)]
        struct File {
            webhooks: WebhooksConfig,
        }
        toml::from_str::<File>(text)
            .map(|f| f.webhooks)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_contract_example_parses_and_defaults_fill_the_rest() {
        let config = parse(
            "[webhooks]\nlisten = \"0.0.0.0:8080\"\nretention = \"24h\"\nmax_events = 100000\naccept_simple_signature = false\n",
        )
        .unwrap();
        assert_eq!(config, WebhooksConfig::default());
        config.validate().unwrap();
        let empty = parse("[webhooks]\n").unwrap();
        assert_eq!(empty, WebhooksConfig::default());
    }

    #[test]
    fn bad_values_name_the_key_and_the_problem() {
        let err = parse("[webhooks]\nretention = \"soon\"\n").unwrap_err();
        assert!(
            err.contains("retention") && err.contains("\"soon\""),
            "{err}"
        );
        let err = parse("[webhooks]\nlisten = \"8080\"\n").unwrap_err();
        assert!(
            err.contains("listen") && err.contains("0.0.0.0:8080"),
            "{err}"
        );
        let err = parse("[webhooks]\nmax_event = 1\n").unwrap_err();
        assert!(err.contains("max_event"), "{err}");

        let zero = parse("[webhooks]\nretention = \"0s\"\n").unwrap();
        assert_eq!(
            zero.validate().unwrap_err().to_string(),
            "webhooks.retention: must be greater than zero"
        );
        let none = parse("[webhooks]\nmax_events = 0\n").unwrap();
        assert_eq!(none.validate().unwrap_err().key, "max_events");
        let tiny = parse("[webhooks]\nmax_bytes = 1000\n").unwrap();
        assert_eq!(tiny.validate().unwrap_err().key, "max_bytes");
    }

    #[test]
    fn secrets_load_trimmed_and_never_show_in_debug_or_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "whsec_very_secret\n").unwrap();
        let secret = WebhookSecretSource::File(path.clone()).load().unwrap();
        assert_eq!(secret.hmac_key(), b"whsec_very_secret");
        let printed = format!("{secret:?}");
        assert!(!printed.contains("whsec_very_secret") && printed.contains("REDACTED"));

        std::fs::write(&path, "two words").unwrap();
        let err = WebhookSecretSource::File(path.clone()).load().unwrap_err();
        assert!(!err.contains("two words"), "{err}");
        std::fs::write(&path, " \n").unwrap();
        assert!(WebhookSecretSource::File(path).load().is_err());
        let err = WebhookSecretSource::Env("DSG_TEST_SURELY_UNSET_WEBHOOK_SECRET".into())
            .load()
            .unwrap_err();
        assert!(
            err.contains("DSG_TEST_SURELY_UNSET_WEBHOOK_SECRET"),
            "{err}"
        );
    }
}
