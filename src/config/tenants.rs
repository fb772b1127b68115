//! `[[tenants]]`: the Didit applications the gateway acts for, where each
//! one's API key is read from, who may call for it and how often.

use std::collections::HashSet;
use std::path::PathBuf;

use serde::Deserialize;
use uuid::Uuid;

use super::FieldError;
use super::partners::{self, PartnerSection};
use crate::policy::{Partner, PartnerPolicy};
use crate::tenant::{ApiKey, Tenant};
use crate::webhooks::WebhookSecretSource;

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

    /// The key in the file that names this source.
    fn key_name(&self) -> &'static str {
        match self {
            Self::Env(_) => "api_key_env",
            Self::File(_) | Self::Inline(_) => "api_key_file",
        }
    }
}

/// One `[[tenants]]` entry, as [`Tenant::new`] takes it.
#[derive(Clone, Debug)]
pub struct TenantConfig {
    /// What callers send in `x-tenant-id`.
    pub id: String,
    /// The Didit application.
    pub application_id: Uuid,
    /// Where its key is read from.
    pub key_source: KeySource,
    /// Caller identities allowed to act for it (`*` suffix = prefix).
    pub allowed_callers: Vec<String>,
    /// The tenant's Didit write budget: requests to Didit per minute,
    /// every attempt counted (Didit allows 300 writes/min per key).
    pub rate_limit_per_minute: u32,
    /// Where the secret that signs its Didit webhooks is read from
    /// (`webhook_secret_file` / `webhook_secret_env`); without one, the
    /// webhook port answers 404 for this tenant.
    pub webhook_secret: Option<WebhookSecretSource>,
    /// `[[tenants.partners]]`: its data-sharing agreements; `None` (no
    /// entry) means no policy: any partner, as before policies existed.
    pub partners: Option<Vec<Partner>>,
    /// Requests to Didit that may go at once from idle; `None`: a tenth of
    /// `rate_limit_per_minute`, at least 1 ([`Tenant::default_burst`]).
    pub rate_limit_burst: Option<u32>,
}

impl TenantConfig {
    /// Didit's write limit per API key, the default rate.
    pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 300;

    /// A tame id, a readable key, caller patterns with at most a trailing
    /// `*`, a rate above zero. `i` is the entry's index, for the key name.
    pub fn validate(&self, i: usize) -> Result<(), FieldError> {
        let key = |field: &str| format!("tenants[{i}].{field}");
        check_tenant_id(&self.id).map_err(|p| FieldError::new(key("id"), p))?;
        self.key_source
            .load()
            .map_err(|p| FieldError::new(key(self.key_source.key_name()), p))?;
        for (j, caller) in self.allowed_callers.iter().enumerate() {
            if caller.trim().is_empty() || caller[..caller.len().saturating_sub(1)].contains('*') {
                return Err(FieldError::new(
                    key(&format!("allowed_callers[{j}]")),
                    "must be an identity, optionally ending in a single trailing *",
                ));
            }
        }
        if self.rate_limit_per_minute == 0 {
            return Err(FieldError::new(
                key("rate_limit_per_minute"),
                "must be at least 1",
            ));
        }
        if let Some(source) = &self.webhook_secret {
            source
                .load()
                .map_err(|p| FieldError::new(key(webhook_secret_key_name(source)), p))?;
        }
        if let Some(list) = &self.partners {
            partners::validate(i, list)?;
        }
        if let Some(burst) = self.rate_limit_burst
            && !(1..=self.rate_limit_per_minute).contains(&burst)
        {
            return Err(FieldError::new(
                key("rate_limit_burst"),
                "must be between 1 and rate_limit_per_minute",
            ));
        }
        Ok(())
    }

    /// The tenant, its key read now; a key file is watched for rotation.
    pub fn build(&self) -> Result<Tenant, String> {
        let tenant = Tenant::new(
            self.id.clone(),
            self.application_id,
            self.key_source.load()?,
            self.allowed_callers.clone(),
            self.rate_limit_per_minute,
        )
        .with_policy(PartnerPolicy::new(self.partners.as_deref()));
        let tenant = match self.rate_limit_burst {
            Some(burst) => tenant.with_burst(burst),
            None => tenant,
        };
        let tenant = match &self.key_source {
            KeySource::File(path) => tenant.with_key_file(path.clone()),
            KeySource::Env(_) | KeySource::Inline(_) => tenant,
        };
        Ok(match &self.webhook_secret {
            Some(source) => tenant.with_webhook_secret(source.load()?),
            None => tenant,
        })
    }
}

/// At least one tenant, ids unique, each one valid.
pub(super) fn validate(tenants: &[TenantConfig]) -> Result<(), FieldError> {
    if tenants.is_empty() {
        return Err(FieldError::new(
            "tenants",
            "at least one [[tenants]] entry is required",
        ));
    }
    let mut seen = HashSet::new();
    for (i, tenant) in tenants.iter().enumerate() {
        if !seen.insert(tenant.id.as_str()) {
            return Err(FieldError::new(
                format!("tenants[{i}].id"),
                format!("duplicate tenant id {:?}", tenant.id),
            ));
        }
        tenant.validate(i)?;
    }
    Ok(())
}

/// One `[[tenants]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TenantSection {
    id: String,
    application_id: String,
    api_key_file: Option<PathBuf>,
    api_key_env: Option<String>,
    /// Present only to give a clear error: keys are never inline.
    api_key: Option<toml::Value>,
    #[serde(default)]
    allowed_callers: Vec<String>,
    rate_limit_per_minute: Option<u32>,
    webhook_secret_file: Option<PathBuf>,
    webhook_secret_env: Option<String>,
    partners: Option<Vec<PartnerSection>>,
    rate_limit_burst: Option<u32>,
}

/// Parses each entry's application id and picks its key source.
pub(super) fn from_sections(sections: Vec<TenantSection>) -> Result<Vec<TenantConfig>, FieldError> {
    sections
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let key = |field: &str| format!("tenants[{i}].{field}");
            let application_id = Uuid::parse_str(&t.application_id)
                .map_err(|_| FieldError::new(key("application_id"), "must be a uuid"))?;
            if t.api_key.is_some() {
                return Err(FieldError::new(
                    key("api_key"),
                    "API keys are never written inline; use api_key_file or api_key_env",
                ));
            }
            let key_source = match (t.api_key_file, t.api_key_env) {
                (Some(file), None) => KeySource::File(file),
                (None, Some(env)) => KeySource::Env(env),
                (Some(_), Some(_)) => {
                    return Err(FieldError::new(
                        key("api_key_file"),
                        "set api_key_file or api_key_env, not both",
                    ));
                }
                (None, None) => {
                    return Err(FieldError::new(
                        key("api_key_file"),
                        "one of api_key_file or api_key_env is required",
                    ));
                }
            };
            let webhook_secret = match (t.webhook_secret_file, t.webhook_secret_env) {
                (Some(file), None) => Some(WebhookSecretSource::File(file)),
                (None, Some(env)) => Some(WebhookSecretSource::Env(env)),
                (None, None) => None,
                (Some(_), Some(_)) => {
                    return Err(FieldError::new(
                        key("webhook_secret_file"),
                        "set webhook_secret_file or webhook_secret_env, not both",
                    ));
                }
            };
            let partners = t
                .partners
                .map(|list| partners::from_sections(i, list))
                .transpose()?;
            Ok(TenantConfig {
                id: t.id,
                application_id,
                key_source,
                allowed_callers: t.allowed_callers,
                rate_limit_per_minute: t
                    .rate_limit_per_minute
                    .unwrap_or(TenantConfig::DEFAULT_RATE_LIMIT_PER_MINUTE),
                webhook_secret,
                partners,
                rate_limit_burst: t.rate_limit_burst,
            })
        })
        .collect()
}

/// The key of the file that names a webhook secret source.
fn webhook_secret_key_name(source: &WebhookSecretSource) -> &'static str {
    match source {
        WebhookSecretSource::File(_) | WebhookSecretSource::Inline(_) => "webhook_secret_file",
        WebhookSecretSource::Env(_) => "webhook_secret_env",
    }
}

/// Tenant ids appear in metadata and metric labels: keep them tame.
fn check_tenant_id(id: &str) -> Result<(), String> {
    // The same grammar `x-tenant-id` is checked against on every call.
    if crate::tenant::is_valid_tenant_id(id) {
        Ok(())
    } else {
        Err("must be 1-64 characters of A-Z a-z 0-9 - _ .".into())
    }
}
