//! The sandbox's domain vocabulary: session kinds and statuses, spelled
//! exactly as Didit spells them (KYC Title Case, KYB UPPER_SNAKE).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A fresh random (v4) uuid from the thread-local generator (no syscall).
pub(crate) fn fresh_uuid() -> Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

/// Whether a session verifies a person (KYC) or a company (KYB).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SessionKind {
    /// A KYC session; Didit calls it `user`.
    User,
    /// A KYB session; Didit calls it `business`.
    Business,
}

impl SessionKind {
    /// Both kinds, in a fixed order (seeding and docs iterate over it).
    pub(crate) const ALL: [SessionKind; 2] = [SessionKind::User, SessionKind::Business];

    /// The wire name: `user` or `business`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SessionKind::User => "user",
            SessionKind::Business => "business",
        }
    }

    /// Parses the wire name.
    pub(crate) fn parse(s: &str) -> Option<SessionKind> {
        SessionKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A session status; its spelling depends on the session kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Status {
    NotStarted,
    InProgress,
    Approved,
    Declined,
    InReview,
    Expired,
    Abandoned,
    KycExpired,
    Resubmitted,
    AwaitingUser,
    NotFinished,
}

impl Status {
    /// Every status, in the order the docs list them.
    pub(crate) const ALL: [Status; 11] = [
        Status::NotStarted,
        Status::InProgress,
        Status::Approved,
        Status::Declined,
        Status::InReview,
        Status::Expired,
        Status::Abandoned,
        Status::KycExpired,
        Status::Resubmitted,
        Status::AwaitingUser,
        Status::NotFinished,
    ];

    /// The exact string Didit uses for this status on a session of `kind`.
    pub(crate) fn label(self, kind: SessionKind) -> &'static str {
        let (kyc, kyb) = match self {
            Status::NotStarted => ("Not Started", "NOT_STARTED"),
            Status::InProgress => ("In Progress", "IN_PROGRESS"),
            Status::Approved => ("Approved", "APPROVED"),
            Status::Declined => ("Declined", "DECLINED"),
            Status::InReview => ("In Review", "IN_REVIEW"),
            Status::Expired => ("Expired", "EXPIRED"),
            Status::Abandoned => ("Abandoned", "ABANDONED"),
            Status::KycExpired => ("Kyc Expired", "KYC_EXPIRED"),
            Status::Resubmitted => ("Resubmitted", "RESUBMITTED"),
            Status::AwaitingUser => ("Awaiting User", "AWAITING_USER"),
            Status::NotFinished => ("Not Finished", "NOT_FINISHED"),
        };
        match kind {
            SessionKind::User => kyc,
            SessionKind::Business => kyb,
        }
    }

    /// Parses a status in the spelling of `kind` (exact match: a KYC
    /// spelling is not a KYB status and vice versa).
    pub(crate) fn parse(kind: SessionKind, s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.label(kind) == s)
    }

    /// Only finished sessions (Approved, Declined, In Review) can be shared.
    pub(crate) fn is_finished(self) -> bool {
        matches!(self, Status::Approved | Status::Declined | Status::InReview)
    }

    /// The allowed spellings for `kind`, comma separated, for error messages.
    pub(crate) fn allowed(kind: SessionKind) -> String {
        let labels: Vec<&str> = Status::ALL.iter().map(|s| s.label(kind)).collect();
        labels.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_per_kind_and_do_not_cross() {
        for kind in SessionKind::ALL {
            for status in Status::ALL {
                assert_eq!(Status::parse(kind, status.label(kind)), Some(status));
            }
        }
        assert_eq!(Status::parse(SessionKind::Business, "Approved"), None);
        assert_eq!(Status::parse(SessionKind::User, "APPROVED"), None);
        assert_eq!(Status::InReview.label(SessionKind::Business), "IN_REVIEW");
        assert_eq!(Status::KycExpired.label(SessionKind::User), "Kyc Expired");
    }

    #[test]
    fn exactly_three_statuses_are_finished() {
        let finished: Vec<Status> = Status::ALL
            .into_iter()
            .filter(|s| s.is_finished())
            .collect();
        assert_eq!(
            finished,
            [Status::Approved, Status::Declined, Status::InReview]
        );
    }
}
