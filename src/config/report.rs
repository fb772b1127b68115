//! What `--check-config PATH` prints: the gateway's own verdict on a file,
//! as a summary for people or (with `--json`) one JSON object for deploy
//! tooling, so that no tool has to re-implement the rules above.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::{AuthConfig, Config, ConfigError, KeySource};
use crate::policy::{Partner, kind_name};

/// The result of validating one config file, key files included.
#[derive(Debug)]
pub struct CheckReport {
    /// The file checked.
    pub file: PathBuf,
    /// The validated config, or the first problem found.
    pub result: Result<Config, ConfigError>,
}

impl CheckReport {
    /// Loads and validates `path` exactly as start-up does.
    pub fn run(path: &Path) -> Self {
        Self {
            file: path.to_owned(),
            result: Config::load(path),
        }
    }

    /// The result as one JSON object: `{"ok": true, "file", "server",
    /// "upstream", "replay", "auth", "tenants"}` (each tenant's `partners`
    /// is a list, or null for a tenant without a policy) (durations in whole
    /// milliseconds, `*_ms`), or `{"ok": false, "file", "error": {"key",
    /// "problem", "message"}}`. Never contains a key.
    pub fn json(&self) -> Value {
        let file = self.file.display().to_string();
        let config = match &self.result {
            Ok(config) => config,
            Err(err) => {
                return json!({
                    "ok": false,
                    "file": file,
                    "error": {
                        "key": err.key,
                        "problem": err.problem,
                        "message": err.to_string(),
                    },
                });
            }
        };
        let tenants: Vec<Value> = config
            .tenants
            .iter()
            .map(|t| {
                let mut tenant = json!({
                    "id": t.id,
                    "application_id": t.application_id,
                    "allowed_callers": t.allowed_callers,
                    "rate_limit_per_minute": t.rate_limit_per_minute,
                    "partners": t.partners.as_ref().map(|list| {
                        list.iter().map(partner_json).collect::<Vec<_>>()
                    }),
                    "rate_limit_burst": t.rate_limit_burst.unwrap_or_else(|| {
                        crate::tenant::Tenant::default_burst(t.rate_limit_per_minute)
                    }),
                });
                match &t.key_source {
                    KeySource::File(path) => {
                        tenant["api_key_file"] = json!(path.display().to_string());
                    }
                    KeySource::Env(name) => tenant["api_key_env"] = json!(name),
                    KeySource::Inline(_) => tenant["api_key_inline"] = json!(true),
                }
                tenant
            })
            .collect();
        let auth = match &config.auth {
            AuthConfig::None => json!({"mode": "none"}),
            AuthConfig::Mesh {
                trusted_proxy_identity,
            } => json!({"mode": "mesh", "trusted_proxy_identity": trusted_proxy_identity}),
            AuthConfig::Mtls {
                server_cert_file,
                server_key_file,
                client_ca_file,
            } => json!({
                "mode": "mtls",
                "server_cert_file": server_cert_file.display().to_string(),
                "server_key_file": server_key_file.display().to_string(),
                "client_ca_file": client_ca_file.display().to_string(),
            }),
        };
        let (server, upstream, replay) = (&config.server, &config.upstream, &config.replay);
        json!({
            "ok": true,
            "file": file,
            "server": {
                "listen": server.listen.to_string(),
                "admin_listen": server.admin_listen.to_string(),
                "shutdown_grace_ms": millis(server.shutdown_grace),
                "max_concurrent_requests": server.max_concurrent_requests,
                "key_reload_interval_ms": millis(server.key_reload_interval),
            },
            "upstream": {
                "base_url": upstream.base_url,
                "timeout_ms": millis(upstream.timeout),
                "connect_timeout_ms": millis(upstream.connect_timeout),
                "max_attempts": upstream.retry.max_attempts,
                "budget_wait_ms": millis(upstream.budget_wait),
            },
            "replay": {
                "window_ms": millis(replay.window),
                "max_bytes": replay.max_bytes,
            },
            "state": {
                "backend": match config.state.backend {
                    crate::state::Backend::Memory => "memory",
                    crate::state::Backend::Redis => "redis",
                },
                "key_prefix": config.state.key_prefix,
            },
            "auth": auth,
            "tenants": tenants,
        })
    }

    /// What a person reads: the summary of a valid file, line by line, or
    /// the one-line error.
    pub fn text(&self) -> String {
        let config = match &self.result {
            Ok(config) => config,
            Err(err) => return err.to_string(),
        };
        let (server, upstream, replay) = (&config.server, &config.upstream, &config.replay);
        let mut lines = vec![
            format!("config {} is valid", self.file.display()),
            format!("  grpc listen     {}", server.listen),
            format!("  admin listen    {}", server.admin_listen),
            format!(
                "  upstream        {} (timeout {:?}, {} attempts)",
                upstream.base_url, upstream.timeout, upstream.retry.max_attempts
            ),
            format!(
                "  replay          window {:?}, max {} bytes",
                replay.window, replay.max_bytes
            ),
            format!(
                "  limits          {} concurrent calls, shutdown grace {:?}",
                server.max_concurrent_requests, server.shutdown_grace
            ),
            format!("  auth            {}", auth_text(&config.auth)),
        ];
        for t in &config.tenants {
            let key = match &t.key_source {
                KeySource::File(p) => format!("key file {}", p.display()),
                KeySource::Env(name) => format!("key env {name}"),
                KeySource::Inline(_) => "inline key".to_owned(),
            };
            lines.push(format!(
                "  tenant {:<16} application {}  {key}  {}/min  callers {:?}",
                t.id, t.application_id, t.rate_limit_per_minute, t.allowed_callers
            ));
            match &t.partners {
                None => lines.push(
                    "    partners      no policy: any partner application is allowed".to_owned(),
                ),
                Some(list) if list.is_empty() => {
                    lines.push("    partners      none: every partner is refused".to_owned())
                }
                Some(list) => lines.extend(list.iter().map(partner_text)),
            }
        }
        lines.join("\n")
    }
}

/// One partner for people: who, under which agreement, what is allowed.
fn partner_text(p: &Partner) -> String {
    let allowed: Vec<&str> = [
        ("share", p.share),
        ("import", p.import),
        ("trust_review", p.trust_review),
    ]
    .into_iter()
    .filter_map(|(what, yes)| yes.then_some(what))
    .collect();
    let kinds: Vec<&str> = p.session_kinds.iter().copied().map(kind_name).collect();
    format!(
        "    partner {:<14} application {}  agreement {}  allows [{}]  max ttl {}s  kinds [{}]",
        p.name,
        p.application_id,
        p.agreement,
        allowed.join(", "),
        p.max_ttl_seconds,
        kinds.join(", ")
    )
}

/// One partner for tooling.
fn partner_json(p: &Partner) -> Value {
    json!({
        "application_id": p.application_id,
        "name": p.name,
        "agreement": p.agreement,
        "share": p.share,
        "import": p.import,
        "trust_review": p.trust_review,
        "max_ttl_seconds": p.max_ttl_seconds,
        "session_kinds": p.session_kinds.iter().copied().map(kind_name).collect::<Vec<_>>(),
    })
}

fn auth_text(auth: &AuthConfig) -> String {
    match auth {
        AuthConfig::None => "none (any caller may act for any tenant)".to_owned(),
        AuthConfig::Mesh {
            trusted_proxy_identity,
        } => format!(
            "mesh (identity from x-forwarded-client-cert{})",
            trusted_proxy_identity
                .as_ref()
                .map(|by| format!(", By= must be {by}"))
                .unwrap_or_default()
        ),
        AuthConfig::Mtls { client_ca_file, .. } => format!(
            "mtls (client certificates from {})",
            client_ca_file.display()
        ),
    }
}

/// Whole milliseconds (a duration of the file is far below `u64::MAX` ms).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
