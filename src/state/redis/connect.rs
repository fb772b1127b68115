//! Building the Redis client from settings: the URL (`redis://` or
//! `rediss://`), an optional private CA for TLS, and a connection manager
//! that reconnects on its own with bounded attempts.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::ExposeSecret as _;

use crate::state::{RedisSettings, StateError};

/// A Redis error as a log-safe line (never the URL).
pub(super) fn describe(err: &redis::RedisError) -> String {
    format!("{:?}: {err}", err.kind())
}

/// The client for `settings`; with `tls_ca_pem`, TLS trusts that CA
/// instead of the system's roots.
pub(super) fn client(settings: &RedisSettings) -> Result<redis::Client, StateError> {
    // rustls needs a process-wide provider; the project's is ring.
    crate::install_crypto_provider();
    let url = settings.url.expose_secret();
    let client = match &settings.tls_ca_pem {
        None => redis::Client::open(url),
        Some(pem) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            },
        ),
    };
    // The error could quote the URL, which may hold a password.
    client.map_err(|_| {
        StateError::Unavailable("the Redis URL or its TLS settings are not usable".into())
    })
}

/// A lazily connecting manager: every request waits at most for one
/// reconnect attempt (and a retry), bounded again by the caller's timeout.
pub(super) fn manager(
    client: &redis::Client,
    settings: &RedisSettings,
) -> Result<ConnectionManager, StateError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(settings.connect_timeout))
        .set_response_timeout(Some(settings.response_timeout))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(1));
    ConnectionManager::new_lazy_with_config(client.clone(), config)
        .map_err(|e| StateError::Unavailable(describe(&e)))
}
