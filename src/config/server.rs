//! `[server]`: where the gateway listens, how many calls it admits, how
//! long it drains, how often it re-reads key files.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

use super::{FieldError, parse_addr, parse_duration, positive};

/// The `[server]` section, as [`crate::app::start`] and the gRPC server take it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// gRPC address (`--listen` wins over it).
    pub listen: SocketAddr,
    /// Admin HTTP address for `/metrics`, `/healthz`, `/readyz`
    /// (`--admin-listen` wins over it).
    pub admin_listen: SocketAddr,
    /// How long in-flight calls and detached imports may take on shutdown.
    pub shutdown_grace: Duration,
    /// Calls served at once before new ones are shed with `OVERLOADED`.
    pub max_concurrent_requests: usize,
    /// How often API key files are checked for a rotated key.
    pub key_reload_interval: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 50051)),
            admin_listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 9090)),
            shutdown_grace: Duration::from_secs(20),
            max_concurrent_requests: 512,
            key_reload_interval: Duration::from_secs(5),
        }
    }
}

impl ServerConfig {
    /// Durations above zero, at least one call admitted.
    pub fn validate(&self) -> Result<(), FieldError> {
        positive("server.shutdown_grace", self.shutdown_grace)?;
        if self.max_concurrent_requests == 0 {
            return Err(FieldError::new(
                "server.max_concurrent_requests",
                "must be at least 1",
            ));
        }
        positive("server.key_reload_interval", self.key_reload_interval)
    }
}

/// `[server]` as written; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServerSection {
    listen: Option<String>,
    admin_listen: Option<String>,
    shutdown_grace: Option<String>,
    max_concurrent_requests: Option<usize>,
    key_reload_interval: Option<String>,
}

impl ServerSection {
    /// Parses the addresses and durations; unset keys take the defaults.
    pub(super) fn into_config(self) -> Result<ServerConfig, FieldError> {
        let defaults = ServerConfig::default();
        let at = |key: &'static str| move |problem| FieldError::new(key, problem);
        Ok(ServerConfig {
            listen: parse_addr(self.listen.as_deref(), defaults.listen)
                .map_err(at("server.listen"))?,
            admin_listen: parse_addr(self.admin_listen.as_deref(), defaults.admin_listen)
                .map_err(at("server.admin_listen"))?,
            shutdown_grace: parse_duration(self.shutdown_grace.as_deref(), defaults.shutdown_grace)
                .map_err(at("server.shutdown_grace"))?,
            max_concurrent_requests: self
                .max_concurrent_requests
                .unwrap_or(defaults.max_concurrent_requests),
            key_reload_interval: parse_duration(
                self.key_reload_interval.as_deref(),
                defaults.key_reload_interval,
            )
            .map_err(at("server.key_reload_interval"))?,
        })
    }
}
