//! The values the state store speaks in.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::StateError;

/// One import: the tenant and the SHA-256 of the share token (never the
/// token itself).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ImportId {
    tenant: Arc<str>,
    token_sha256: [u8; 32],
}

impl ImportId {
    /// The import of the token hashing to `token_sha256` by `tenant`
    /// (pass the tenant's shared id to keep one copy of it).
    pub fn new(tenant: impl Into<Arc<str>>, token_sha256: [u8; 32]) -> Self {
        Self {
            tenant: tenant.into(),
            token_sha256,
        }
    }

    /// The tenant id.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The SHA-256 of the share token.
    pub fn token_sha256(&self) -> &[u8; 32] {
        &self.token_sha256
    }
}

impl std::fmt::Debug for ImportId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A hash prefix is enough to correlate; the full hash is not needed.
        write!(
            f,
            "ImportId({}, {})",
            self.tenant,
            hex::encode(&self.token_sha256[..4])
        )
    }
}

/// Who holds a lease: a random token per attempt, so a caller can only
/// extend or release its own lease.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeaseOwner(String);

impl LeaseOwner {
    /// A fresh random owner token.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// The token as stored in the lease.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for LeaseOwner {
    fn default() -> Self {
        Self::random()
    }
}

/// What was sent to Didit before its answer was stored: enough to find the
/// session again if the answer is lost. `vendor_data` is personal data:
/// sealed in Redis, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InDoubt {
    /// The partner's session the token shares.
    pub source_session_id: String,
    /// The workflow the import was sent with.
    pub workflow_id: String,
    /// The vendor data the import was sent with.
    pub vendor_data: String,
    /// When the import was sent.
    pub sent_at: SystemTime,
}

impl InDoubt {
    pub(crate) fn encode(&self) -> Result<Vec<u8>, StateError> {
        serde_json::to_vec(self).map_err(|e| StateError::Corrupt(format!("in-doubt mark: {e}")))
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        serde_json::from_slice(bytes)
            .map_err(|e| StateError::Corrupt(format!("in-doubt mark: {e}")))
    }
}

impl std::fmt::Debug for InDoubt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InDoubt")
            .field("source_session_id", &self.source_session_id)
            .field("workflow_id", &self.workflow_id)
            .field("vendor_data", &"<redacted>")
            .field("sent_at", &self.sent_at)
            .finish()
    }
}

/// What [`StateStore::begin_import`](super::StateStore::begin_import) found,
/// in one atomic step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Begin {
    /// The import's record is stored: nothing was taken or written.
    Record(Bytes),
    /// Another caller holds the lease: nothing was taken or written; wait
    /// for it ([`StateStore::wait_for_record`](super::StateStore::wait_for_record)).
    Busy,
    /// The lease is the caller's now (keep it alive with a
    /// [`LeaseKeeper`](super::LeaseKeeper)).
    Leading(Previous),
}

/// The in-doubt mark a new leader found when it took the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Previous {
    /// None: the new mark was stored.
    Absent,
    /// An earlier import was sent and not answered: its mark is kept as it
    /// was (the new mark was not stored).
    Mark(InDoubt),
    /// A mark is stored but does not open or decode (why): kept as it was,
    /// the new mark was not stored.
    Unreadable(String),
}

/// How a wait for another caller's import ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitOutcome {
    /// The leader stored its record.
    Record(Bytes),
    /// No record and no lease: the leader failed or died. The waiter may
    /// take the lease itself.
    LeaseGone,
    /// The deadline passed while the lease was still held.
    TimedOut,
}

/// A tenant's Didit write budget.
///
/// GCRA with emission interval `T = 60 s / per_minute` and tolerance
/// `τ = (burst − 1) · T`: from idle, exactly `burst` charges pass at once;
/// after that one charge per `T`. In any window of length `W` at most
/// `burst + ⌊W / T⌋` charges pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Budget {
    /// Sustained charges per minute.
    pub per_minute: NonZeroU32,
    /// Charges that pass at once from idle (at least 1).
    pub burst: NonZeroU32,
}

impl Budget {
    /// A budget, or `None` when either number is zero.
    pub fn new(per_minute: u32, burst: u32) -> Option<Self> {
        Some(Self {
            per_minute: NonZeroU32::new(per_minute)?,
            burst: NonZeroU32::new(burst)?,
        })
    }

    /// `T`: the time one charge costs.
    pub fn emission_interval(&self) -> Duration {
        Duration::from_secs(60) / self.per_minute.get()
    }

    /// `τ = (burst − 1) · T`: how far ahead of its schedule a charge may come.
    pub fn tolerance(&self) -> Duration {
        self.emission_interval() * (self.burst.get() - 1)
    }
}

/// The answer to a budget charge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charge {
    /// Charged; go now.
    Now,
    /// Charged for a slot this far ahead (at most the `max_wait` asked
    /// for): wait, then go. The slot is reserved: do not charge again.
    After(Duration),
    /// Not charged: the next slot is further than `max_wait`.
    Refused {
        /// Time from now to the next slot (including any pause).
        retry_after: Duration,
    },
}
