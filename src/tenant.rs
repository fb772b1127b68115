//! Tenants: the Didit applications the gateway acts for, the API key each
//! one holds, and the lookup from a caller's `x-tenant-id`.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::error::GatewayError;
use crate::policy::PartnerPolicy;
use crate::webhooks::WebhookSecret;

/// The metadata key callers name their tenant in.
pub const TENANT_HEADER: &str = "x-tenant-id";

/// The grammar of a tenant id, in `x-tenant-id` and in the config alike:
/// 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
pub fn is_valid_tenant_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The `x-tenant-id` of a request, if present and a valid id: the one
/// parse of that header for every consumer (the service's lookup and any
/// admission layer), so none of them can see a different tenant.
pub fn tenant_header(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(TENANT_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_valid_tenant_id(id))
}

/// A Didit API key. Debug prints a redaction; the memory is zeroed on drop.
#[derive(Clone)]
pub struct ApiKey(SecretString);

impl ApiKey {
    /// Wraps a key read from a file or the environment.
    pub fn new(key: String) -> Self {
        Self(SecretString::from(key))
    }

    /// The key, for the one header that carries it upstream.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey([REDACTED])")
    }
}

/// One tenant: a Didit application and the key the gateway uses for it.
#[derive(Debug)]
pub struct Tenant {
    /// What callers send in `x-tenant-id`; also the metrics label. Shared
    /// by the replay store's keys (one allocation per tenant, not per
    /// stored import).
    pub id: Arc<str>,
    /// The Didit application the key belongs to.
    pub application_id: Uuid,
    /// The current key; replaced in place when the key file changes.
    key: ArcSwap<ApiKey>,
    /// Caller identities allowed to act for this tenant (`*` suffix = prefix).
    pub allowed_callers: Vec<String>,
    /// Requests to Didit per minute (the tenant's Didit write budget).
    pub rate_limit_per_minute: u32,
    /// Its data-sharing agreements; swapped with the tenant on a reload, so
    /// a call keeps the policy it started under.
    pub policy: PartnerPolicy,
    /// Requests to Didit that may go at once from idle.
    pub rate_limit_burst: u32,
    /// The file the key is re-read from when it changes, if any.
    key_file: Option<std::path::PathBuf>,
    /// Whether the last reload of the key file failed (to log changes once).
    pub(crate) key_reload_failing: std::sync::atomic::AtomicBool,
    /// The secret its Didit webhooks are signed with, if it receives any.
    webhook_secret: Option<Arc<WebhookSecret>>,
}

impl Tenant {
    /// A tenant with its first key.
    pub fn new(
        id: String,
        application_id: Uuid,
        key: ApiKey,
        allowed_callers: Vec<String>,
        rate_limit_per_minute: u32,
    ) -> Self {
        Self {
            id: id.into(),
            application_id,
            key: ArcSwap::from_pointee(key),
            allowed_callers,
            rate_limit_per_minute,
            policy: PartnerPolicy::Open,
            rate_limit_burst: Self::default_burst(rate_limit_per_minute),
            key_file: None,
            key_reload_failing: std::sync::atomic::AtomicBool::new(false),
            webhook_secret: None,
        }
    }

    /// Gives the tenant the secret its webhooks are verified with.
    pub fn with_webhook_secret(mut self, secret: WebhookSecret) -> Self {
        self.webhook_secret = Some(Arc::new(secret));
        self
    }

    /// The secret its webhooks are verified with, if any.
    pub fn webhook_secret(&self) -> Option<Arc<WebhookSecret>> {
        self.webhook_secret.clone()
    }

    /// Puts the tenant under `policy` (the default is [`PartnerPolicy::Open`]).
    pub fn with_policy(mut self, policy: PartnerPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The burst when none is configured: a tenth of the per-minute
    /// budget, at least 1.
    pub fn default_burst(per_minute: u32) -> u32 {
        (per_minute / 10).max(1)
    }

    /// Sets the burst (validated by the config: 1 to `rate_limit_per_minute`).
    pub fn with_burst(mut self, burst: u32) -> Self {
        self.rate_limit_burst = burst;
        self
    }

    /// The tenant's Didit write budget; `None` only for a zero rate or
    /// burst, which the config refuses.
    pub fn budget(&self) -> Option<crate::state::Budget> {
        crate::state::Budget::new(self.rate_limit_per_minute, self.rate_limit_burst)
    }

    /// Marks the key as coming from `path`, to be re-read on change.
    pub fn with_key_file(mut self, path: std::path::PathBuf) -> Self {
        self.key_file = Some(path);
        self
    }

    /// The key file watched for rotation, if any.
    pub fn key_file(&self) -> Option<&std::path::Path> {
        self.key_file.as_deref()
    }

    /// The key to use for the next upstream call.
    pub fn api_key(&self) -> Arc<ApiKey> {
        self.key.load_full()
    }

    /// Installs a new key; calls already in flight finish with the old one.
    pub fn replace_api_key(&self, key: ApiKey) {
        self.key.store(Arc::new(key));
    }
}

/// All configured tenants, by id.
#[derive(Debug, Default)]
pub struct Tenants {
    by_id: HashMap<String, Arc<Tenant>>,
}

impl Tenants {
    /// Builds the registry; ids are unique (checked by the config).
    pub fn new(tenants: impl IntoIterator<Item = Tenant>) -> Self {
        Self {
            by_id: tenants
                .into_iter()
                .map(|t| (t.id.to_string(), Arc::new(t)))
                .collect(),
        }
    }

    /// The tenant a caller named, or `UNKNOWN_TENANT`. The id is taken
    /// exactly as sent: one that is not [`is_valid_tenant_id`] (e.g. with
    /// a trailing space) is refused, never trimmed, so that every consumer
    /// of the header (lookup, limits, labels) sees the same tenant.
    pub fn resolve(&self, tenant_id: Option<&str>) -> Result<Arc<Tenant>, GatewayError> {
        tenant_id
            .filter(|id| is_valid_tenant_id(id))
            .and_then(|id| self.by_id.get(id))
            .cloned()
            .ok_or(GatewayError::UnknownTenant)
    }

    /// Every tenant, for start-up logs and key watchers.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.by_id.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_never_show_in_debug_output() {
        let tenant = Tenant::new(
            "brand-a".into(),
            Uuid::nil(),
            ApiKey::new("sk_live_very_secret".into()),
            vec!["*".into()],
            300,
        );
        let printed = format!("{tenant:?} {:?}", tenant.api_key());
        assert!(!printed.contains("sk_live_very_secret"), "{printed}");
        assert!(printed.contains("REDACTED"));
    }

    #[test]
    fn unknown_or_missing_tenants_are_refused() {
        let tenants = Tenants::new([Tenant::new(
            "brand-a".into(),
            Uuid::nil(),
            ApiKey::new("k".into()),
            vec![],
            300,
        )]);
        assert!(tenants.resolve(Some("brand-a")).is_ok());
        assert!(matches!(
            tenants.resolve(Some("brand-b")),
            Err(GatewayError::UnknownTenant)
        ));
        assert!(matches!(
            tenants.resolve(None),
            Err(GatewayError::UnknownTenant)
        ));
    }

    #[test]
    fn tenant_ids_are_taken_exactly_never_trimmed() {
        let tenants = Tenants::new([Tenant::new(
            "service-x".into(),
            Uuid::nil(),
            ApiKey::new("k".into()),
            vec![],
            300,
        )]);
        for bad in [
            "service-x ",
            " service-x",
            "service-x\t",
            "service-x\n",
            "SERVICE-X",
            "service-x/",
            "",
        ] {
            assert!(
                matches!(tenants.resolve(Some(bad)), Err(GatewayError::UnknownTenant)),
                "{bad:?}"
            );
        }
        assert!(tenants.resolve(Some("service-x")).is_ok());
        assert!(is_valid_tenant_id(&"a".repeat(64)));
        assert!(!is_valid_tenant_id(&"a".repeat(65)));
        assert!(is_valid_tenant_id("A.b_c-9"));
        assert!(!is_valid_tenant_id("é"));
    }

    #[test]
    fn a_replaced_key_is_used_from_the_next_call_on() {
        let tenant = Tenant::new(
            "t".into(),
            Uuid::nil(),
            ApiKey::new("old".into()),
            vec![],
            300,
        );
        let before = tenant.api_key();
        tenant.replace_api_key(ApiKey::new("new".into()));
        assert_eq!(before.expose(), "old");
        assert_eq!(tenant.api_key().expose(), "new");
    }
}
