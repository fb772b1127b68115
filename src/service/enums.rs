//! The core's session kinds and statuses as the proto's enums, for every
//! service that answers with them.

use crate::proto;
use crate::session::{SessionKind, SessionStatus};

impl From<SessionKind> for proto::SessionKind {
    fn from(kind: SessionKind) -> Self {
        match kind {
            SessionKind::User => Self::User,
            SessionKind::Business => Self::Business,
        }
    }
}

impl From<SessionStatus> for proto::SessionStatus {
    fn from(status: SessionStatus) -> Self {
        match status {
            SessionStatus::Approved => Self::Approved,
            SessionStatus::Declined => Self::Declined,
            SessionStatus::InReview => Self::InReview,
            SessionStatus::NotFinished => Self::NotFinished,
            SessionStatus::InProgress => Self::InProgress,
            SessionStatus::NotStarted => Self::NotStarted,
            SessionStatus::Abandoned => Self::Abandoned,
            SessionStatus::Expired => Self::Expired,
            SessionStatus::KycExpired => Self::KycExpired,
            SessionStatus::Resubmitted => Self::Resubmitted,
            SessionStatus::AwaitingUser => Self::AwaitingUser,
            SessionStatus::Unknown => Self::Unspecified,
        }
    }
}
