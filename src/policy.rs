//! Data-sharing agreements: which partner applications a tenant may share
//! its sessions with, import sessions from, and keep the decision of
//! (`trust_review`), with a maximum token lifetime and the session kinds
//! each agreement covers (`[[tenants.partners]]`, CONTRACT §9).
//!
//! The decision logic only, no gRPC: [`PartnerPolicy::check_share`] before a
//! share is sent, [`ShareGrant::check_kind`] once Didit says what kind of
//! session it shared, [`PartnerPolicy::check_import`] before an import (and
//! before its replay lookup, so a revoked agreement stops replays too). A
//! refusal is a [`Refusal`]; a decision that lets the call go on names the
//! matched partner ([`PolicyDecision`]) for the audit event.
//!
//! Imports are decided on the token's unverified claims
//! ([`crate::share_token::read_claims`]). That is sound for a deny-list of
//! this kind: the gateway sends Didit the very token it read, and Didit
//! verifies its signature, so a token whose claims were altered to pass the
//! policy fails at Didit.

use std::collections::HashMap;
use std::sync::Arc;

use uuid::Uuid;

use crate::audit::AuditEvent;
use crate::metrics::{Metrics, PolicyRefusalLabels};
use crate::session::SessionKind;
use crate::share_token::{ClaimsError, read_claims};

/// Shortest `max_ttl_seconds` (Didit's shortest token).
pub const MIN_TTL_SECONDS: u32 = 60;
/// Longest `max_ttl_seconds` (Didit's longest token).
pub const MAX_TTL_SECONDS: u32 = 86_400;

/// One `[[tenants.partners]]` entry: an agreement with a partner application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partner {
    /// The partner's Didit application.
    pub application_id: Uuid,
    /// A name people recognise, written to audit events.
    pub name: String,
    /// The agreement's reference (e.g. `DSA-2026-014`), written to audit events.
    pub agreement: String,
    /// The tenant may share its sessions with this partner.
    pub share: bool,
    /// The tenant may import tokens minted by this partner.
    pub import: bool,
    /// Imports from this partner may keep its decision (`trust_review = true`).
    pub trust_review: bool,
    /// The longest share token lifetime for this partner.
    pub max_ttl_seconds: u32,
    /// The session kinds the agreement covers (never empty once validated).
    pub session_kinds: Vec<SessionKind>,
}

impl Partner {
    /// What the audit event names.
    fn reference(&self) -> PartnerRef {
        PartnerRef {
            name: self.name.clone(),
            agreement: self.agreement.clone(),
        }
    }

    fn covers(&self, kind: SessionKind) -> bool {
        self.session_kinds.contains(&kind)
    }
}

/// The partner a call went ahead under, for the audit event's `partner`
/// and `agreement` fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartnerRef {
    /// The partner's `name`.
    pub name: String,
    /// The partner's `agreement`.
    pub agreement: String,
}

/// A call the policy lets through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyDecision {
    /// The matched partner; `None` for a tenant without a policy.
    pub partner: Option<PartnerRef>,
}

impl PolicyDecision {
    /// Writes the matched partner's name and agreement into `event`.
    pub fn fill_audit(&self, event: &mut AuditEvent) {
        if let Some(partner) = &self.partner {
            event.partner = Some(partner.name.clone());
            event.agreement = Some(partner.agreement.clone());
        }
    }
}

/// Why the policy refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The partner application is not in the tenant's agreements.
    #[error("the partner application is not covered by a data-sharing agreement of this tenant")]
    PartnerNotListed,
    /// The partner is listed, without `share = true`.
    #[error("the data-sharing agreement with this partner does not allow sharing")]
    ShareNotAgreed,
    /// The partner is listed, without `import = true`.
    #[error("the data-sharing agreement with this partner does not allow importing")]
    ImportNotAgreed,
    /// The session's kind is not in the partner's `session_kinds`.
    #[error("the data-sharing agreement with this partner does not cover {} sessions", kind_name(*.kind))]
    KindNotCovered {
        /// The kind of the session.
        kind: SessionKind,
    },
    /// `ttl_seconds` above the partner's `max_ttl_seconds`.
    #[error("ttl_seconds is above this partner's maximum of {max} seconds")]
    TtlAboveMaximum {
        /// The partner's `max_ttl_seconds`.
        max: u32,
    },
    /// The token names another application as the only one that may
    /// import it (Didit would refuse it the same way).
    #[error("the share token is for another application")]
    TokenForAnotherApplication,
    /// `trust_review = true` for a partner without `trust_review = true`.
    #[error("the data-sharing agreement with this partner does not allow trust_review = true")]
    TrustReviewNotAgreed,
    /// The token's claims cannot be read, so its partner is unknown.
    #[error("the share token is not readable: {0}")]
    TokenUnreadable(ClaimsError),
}

impl Refusal {
    /// A bounded name for metric labels and `ErrorInfo` metadata.
    pub fn name(&self) -> &'static str {
        match self {
            Self::PartnerNotListed => "partner_not_listed",
            Self::ShareNotAgreed => "share_not_agreed",
            Self::ImportNotAgreed => "import_not_agreed",
            Self::KindNotCovered { .. } => "kind_not_covered",
            Self::TtlAboveMaximum { .. } => "ttl_above_maximum",
            Self::TokenForAnotherApplication => "token_for_another_application",
            Self::TrustReviewNotAgreed => "trust_review_not_agreed",
            Self::TokenUnreadable(_) => "token_unreadable",
        }
    }

    /// Counts this refusal in `dsg_policy_refusals_total{tenant, reason}`.
    pub fn record(self, metrics: &Metrics, tenant: &str) -> Self {
        metrics
            .policy_refusals
            .get_or_create(&PolicyRefusalLabels {
                tenant: tenant.to_owned(),
                reason: self.name(),
            })
            .inc();
        self
    }
}

/// Didit's wire name of a kind.
pub fn kind_name(kind: SessionKind) -> &'static str {
    match kind {
        SessionKind::User => "user",
        SessionKind::Business => "business",
    }
}

/// A tenant's partner policy.
#[derive(Clone, Debug, Default)]
pub enum PartnerPolicy {
    /// No `[[tenants.partners]]`: any partner, as before policies existed.
    #[default]
    Open,
    /// Only the listed partners, each as its agreement says.
    Agreements(HashMap<Uuid, Arc<Partner>>),
}

impl PartnerPolicy {
    /// The policy of `partners` (`None`: the tenant has no policy).
    /// Application ids are unique (checked by the config).
    pub fn new(partners: Option<&[Partner]>) -> Self {
        match partners {
            None => Self::Open,
            Some(list) => Self::Agreements(
                list.iter()
                    .map(|p| (p.application_id, Arc::new(p.clone())))
                    .collect(),
            ),
        }
    }

    /// May the tenant share a session for `for_application_id` with a
    /// token living `ttl_seconds`? The kind is checked by the grant once
    /// Didit has said it.
    pub fn check_share(
        &self,
        for_application_id: Uuid,
        ttl_seconds: u32,
    ) -> Result<ShareGrant, Refusal> {
        let Self::Agreements(partners) = self else {
            return Ok(ShareGrant { partner: None });
        };
        let partner = partners
            .get(&for_application_id)
            .ok_or(Refusal::PartnerNotListed)?;
        if !partner.share {
            return Err(Refusal::ShareNotAgreed);
        }
        if ttl_seconds > partner.max_ttl_seconds {
            return Err(Refusal::TtlAboveMaximum {
                max: partner.max_ttl_seconds,
            });
        }
        Ok(ShareGrant {
            partner: Some(Arc::clone(partner)),
        })
    }

    /// May the tenant of `application_id` import `share_token` with
    /// `trust_review`? Decided on the token's claims; an open policy does
    /// not read them. A token for another application is refused as Didit
    /// would refuse it, before any partner is looked at: the policy fails
    /// closed, whatever the claims say.
    pub fn check_import(
        &self,
        application_id: Uuid,
        share_token: &str,
        trust_review: bool,
    ) -> Result<PolicyDecision, Refusal> {
        let Self::Agreements(partners) = self else {
            return Ok(PolicyDecision::default());
        };
        let claims = read_claims(share_token).map_err(Refusal::TokenUnreadable)?;
        if claims.for_application_id != application_id {
            return Err(Refusal::TokenForAnotherApplication);
        }
        let partner = partners
            .get(&claims.from_application_id)
            .ok_or(Refusal::PartnerNotListed)?;
        if !partner.import {
            return Err(Refusal::ImportNotAgreed);
        }
        if !partner.covers(claims.session_kind) {
            return Err(Refusal::KindNotCovered {
                kind: claims.session_kind,
            });
        }
        if trust_review && !partner.trust_review {
            return Err(Refusal::TrustReviewNotAgreed);
        }
        Ok(PolicyDecision {
            partner: Some(partner.reference()),
        })
    }

    /// The agreements, for reports (`None` when open).
    pub fn partners(&self) -> Option<impl Iterator<Item = &Partner>> {
        match self {
            Self::Open => None,
            Self::Agreements(partners) => Some(partners.values().map(Arc::as_ref)),
        }
    }
}

/// A share the policy allows before Didit is called; what is left to check
/// is the kind of the session, which only Didit's answer tells.
#[derive(Clone, Debug)]
pub struct ShareGrant {
    /// The matched partner; `None` for a tenant without a policy.
    partner: Option<Arc<Partner>>,
}

impl ShareGrant {
    /// Does the agreement cover a session of `kind`? A refused token is
    /// dropped by the caller of this check, never returned.
    pub fn check_kind(&self, kind: SessionKind) -> Result<PolicyDecision, Refusal> {
        match &self.partner {
            None => Ok(PolicyDecision::default()),
            Some(partner) if partner.covers(kind) => Ok(PolicyDecision {
                partner: Some(partner.reference()),
            }),
            Some(_) => Err(Refusal::KindNotCovered { kind }),
        }
    }
}

#[cfg(test)]
mod tests;
