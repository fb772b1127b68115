//! The compliance audit trail: exactly one event per RPC, a JSON line on the
//! tracing target [`TARGET`], so a log pipeline can route it apart from the
//! operational logs (see [`crate::telemetry`], which always writes this
//! target as JSON, whatever the log format).
//!
//! An event says who did what for which tenant and how it ended. It never
//! holds a key, a share token (only a SHA-256 prefix), vendor_data in clear
//! (only a SHA-256 prefix) or any field of the session's personal data.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest as _, Sha256};

/// The tracing target of audit events.
pub const TARGET: &str = "audit";

/// Hex digits kept of a SHA-256: enough to correlate, too few to matter.
const HASH_PREFIX_LEN: usize = 16;

/// The first [`HASH_PREFIX_LEN`] hex digits of the SHA-256 of `value`.
pub fn sha256_prefix(value: &[u8]) -> String {
    let mut hex = hex::encode(Sha256::digest(value));
    hex.truncate(HASH_PREFIX_LEN);
    hex
}

/// Whether audit events are written (`[audit] enabled`, default true).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// False turns the trail off.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// One RPC's audit event. Fields that do not apply to the RPC stay `None`
/// and are left out of the line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditEvent {
    /// The call's `x-request-id` (echoed or generated).
    pub request_id: String,
    /// The caller's identity (`-` in `none` mode, `<why>` when it has none).
    pub caller: String,
    /// The tenant the call named (`unknown` when it named none we know).
    pub tenant: String,
    /// The RPC's method name, e.g. `ImportSharedSession`.
    pub rpc: &'static str,
    /// The source session: shared, or named by the imported token.
    pub session_id: Option<String>,
    /// The session an import created (or replayed, or recovered).
    pub new_session_id: Option<String>,
    /// The partner application a share was minted for.
    pub for_application_id: Option<String>,
    /// The workflow an import asked for.
    pub workflow_id: Option<String>,
    /// SHA-256 prefix of the share token (minted or imported).
    pub token_sha256_prefix: Option<String>,
    /// SHA-256 prefix of the caller's vendor_data.
    pub vendor_data_sha256_prefix: Option<String>,
    /// True when the answer was a stored earlier result.
    pub replayed: bool,
    /// True when the answer was found again through Didit after a lost one.
    pub recovered: bool,
    /// The gRPC code's name, e.g. `OK`, `PERMISSION_DENIED`.
    pub code: &'static str,
    /// The `ErrorInfo` reason, empty on success.
    pub reason: String,
    /// The HTTP status of Didit's last answer, when the call reached Didit.
    pub upstream_status: Option<u16>,
    /// The partner's name under the tenant's data-sharing policy.
    pub partner: Option<String>,
    /// The partner's agreement reference.
    pub agreement: Option<String>,
}

impl AuditEvent {
    /// Writes the event as one line on [`TARGET`] (the subscriber adds the
    /// time).
    pub fn emit(&self) {
        tracing::info!(
            target: TARGET,
            request_id = %self.request_id,
            caller = %self.caller,
            tenant = %self.tenant,
            rpc = self.rpc,
            session_id = self.session_id.as_deref(),
            new_session_id = self.new_session_id.as_deref(),
            for_application_id = self.for_application_id.as_deref(),
            workflow_id = self.workflow_id.as_deref(),
            token_sha256_prefix = self.token_sha256_prefix.as_deref(),
            vendor_data_sha256_prefix = self.vendor_data_sha256_prefix.as_deref(),
            replayed = self.replayed,
            recovered = self.recovered,
            code = self.code,
            reason = %self.reason,
            upstream_status = self.upstream_status,
            partner = self.partner.as_deref(),
            agreement = self.agreement.as_deref(),
            "audit"
        );
    }
}

/// A call's audit event while the call runs, shared by the call's record
/// (which fills the common fields and emits it exactly once, on the call's
/// end or when the caller cancels) and the RPC's work (which fills its own
/// fields through [`set`](Self::set) as it learns them, so that a call
/// failing half-way still reports what was known).
///
/// Adding a field: add it to [`AuditEvent`] and to [`AuditEvent::emit`],
/// then set it where the RPC learns it (`src/service/<rpc>.rs`).
#[derive(Clone, Debug, Default)]
pub struct AuditFields(Arc<Mutex<AuditEvent>>);

impl AuditFields {
    /// Fills some fields of the event.
    pub fn set(&self, fill: impl FnOnce(&mut AuditEvent)) {
        fill(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// The event as filled so far.
    pub fn snapshot(&self) -> AuditEvent {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The HTTP status of the last answer Didit gave a call's upstream
/// requests (`None` until one arrived), recorded by the transport and read
/// by the call's audit event. Clones share the value.
#[derive(Clone, Debug, Default)]
pub struct UpstreamStatus(Arc<AtomicU16>);

impl UpstreamStatus {
    /// Records an answer's status.
    pub fn record(&self, status: u16) {
        self.0.store(status, Ordering::Relaxed);
    }

    /// The last status recorded, if any.
    pub fn get(&self) -> Option<u16> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            status => Some(status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_prefixes_are_short_stable_and_not_the_value() {
        let prefix = sha256_prefix(b"vendor-123");
        assert_eq!(prefix.len(), HASH_PREFIX_LEN);
        assert_eq!(prefix, sha256_prefix(b"vendor-123"));
        assert_ne!(prefix, sha256_prefix(b"vendor-124"));
        // sha256("abc") starts ba7816bf8f01cfea.
        assert_eq!(sha256_prefix(b"abc"), "ba7816bf8f01cfea");
    }

    #[test]
    fn fields_and_statuses_are_shared_by_clones() {
        let fields = AuditFields::default();
        fields.clone().set(|e| e.workflow_id = Some("wf".into()));
        assert_eq!(fields.snapshot().workflow_id.as_deref(), Some("wf"));
        let status = UpstreamStatus::default();
        assert_eq!(status.get(), None);
        status.clone().record(201);
        assert_eq!(status.get(), Some(201));
    }

    #[test]
    fn audit_config_defaults_to_enabled() {
        assert!(AuditConfig::default().enabled);
        let off: AuditConfig = toml::from_str("enabled = false").unwrap();
        assert!(!off.enabled);
        let on: AuditConfig = toml::from_str("").unwrap();
        assert!(on.enabled);
        assert!(toml::from_str::<AuditConfig>("enable = false").is_err());
    }
}
