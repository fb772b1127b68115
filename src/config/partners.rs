//! `[[tenants.partners]]`: a tenant's data-sharing agreements, turned into
//! [`crate::policy::Partner`]s. Booleans default to `false` (nothing is
//! allowed unless written down), `max_ttl_seconds` to Didit's default of
//! 3600; `session_kinds` must be written.

use std::collections::HashSet;

use serde::Deserialize;
use uuid::Uuid;

use super::FieldError;
use crate::policy::{MAX_TTL_SECONDS, MIN_TTL_SECONDS, Partner};
use crate::session::SessionKind;

/// `max_ttl_seconds` when not written: Didit's default token lifetime.
pub const DEFAULT_MAX_TTL_SECONDS: u32 = 3600;

/// Longest `name` or `agreement` (they go to audit events and logs).
const MAX_LABEL_LEN: usize = 128;

/// One `[[tenants.partners]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PartnerSection {
    application_id: String,
    name: String,
    agreement: String,
    #[serde(default)]
    share: bool,
    #[serde(default)]
    import: bool,
    #[serde(default)]
    trust_review: bool,
    max_ttl_seconds: Option<u32>,
    session_kinds: Vec<String>,
}

/// Converts tenant `i`'s entries (ids and kinds parsed).
pub(super) fn from_sections(
    i: usize,
    sections: Vec<PartnerSection>,
) -> Result<Vec<Partner>, FieldError> {
    sections
        .into_iter()
        .enumerate()
        .map(|(j, p)| {
            let key = |field: &str| format!("tenants[{i}].partners[{j}].{field}");
            let application_id = Uuid::parse_str(&p.application_id)
                .map_err(|_| FieldError::new(key("application_id"), "must be a uuid"))?;
            let session_kinds = p
                .session_kinds
                .iter()
                .enumerate()
                .map(|(k, raw)| {
                    SessionKind::parse(raw).ok_or_else(|| {
                        FieldError::new(
                            key(&format!("session_kinds[{k}]")),
                            format!("unknown session kind {raw:?}: use \"user\" or \"business\""),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Partner {
                application_id,
                name: p.name,
                agreement: p.agreement,
                share: p.share,
                import: p.import,
                trust_review: p.trust_review,
                max_ttl_seconds: p.max_ttl_seconds.unwrap_or(DEFAULT_MAX_TTL_SECONDS),
                session_kinds,
            })
        })
        .collect()
}

/// Tenant `i`'s agreements: application ids unique, names and agreement
/// references tame, lifetimes within Didit's bounds, at least one kind
/// each, no kind twice.
pub(super) fn validate(i: usize, partners: &[Partner]) -> Result<(), FieldError> {
    let mut seen = HashSet::new();
    for (j, p) in partners.iter().enumerate() {
        let key = |field: &str| format!("tenants[{i}].partners[{j}].{field}");
        if !seen.insert(p.application_id) {
            return Err(FieldError::new(
                key("application_id"),
                format!(
                    "duplicate partner application id {}: one entry per partner",
                    p.application_id
                ),
            ));
        }
        check_label(&p.name).map_err(|problem| FieldError::new(key("name"), problem))?;
        check_label(&p.agreement).map_err(|problem| FieldError::new(key("agreement"), problem))?;
        if !(MIN_TTL_SECONDS..=MAX_TTL_SECONDS).contains(&p.max_ttl_seconds) {
            return Err(FieldError::new(
                key("max_ttl_seconds"),
                format!("must be between {MIN_TTL_SECONDS} and {MAX_TTL_SECONDS}"),
            ));
        }
        if p.session_kinds.is_empty() {
            return Err(FieldError::new(
                key("session_kinds"),
                "must name at least one of \"user\", \"business\"",
            ));
        }
        let mut kinds = HashSet::new();
        if let Some(k) = p.session_kinds.iter().position(|kind| !kinds.insert(*kind)) {
            return Err(FieldError::new(
                key(&format!("session_kinds[{k}]")),
                "is listed twice",
            ));
        }
    }
    Ok(())
}

/// Names and agreement references: not blank, at most
/// [`MAX_LABEL_LEN`] bytes, no control characters.
fn check_label(value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > MAX_LABEL_LEN {
        return Err(format!("must be at most {MAX_LABEL_LEN} bytes"));
    }
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
