//! Shared state for the import path, in this process ([`MemoryStore`]) or
//! in Redis shared by every replica ([`RedisStore`]): "many replicas, one
//! truth". One [`StateStore`] offers what de-duplication, replay and the
//! Didit budget need, with the same observable semantics on both backends:
//!
//! - **Replay records**: opaque bytes per (tenant, token hash), kept for the
//!   replay window. In Redis they are sealed (AES-256-GCM, see [`seal`]).
//! - **In-flight leases**: one caller per import across replicas holds the
//!   lease (`SET NX PX`), extends it while Didit works, releases it by
//!   compare-and-delete; others [`StateStore::wait_for_record`].
//! - **In-doubt marks**: what was sent to Didit before an answer is stored,
//!   so a later call can look for the session if the answer was lost.
//! - **The import's two steps**: [`StateStore::begin_import`] (the record,
//!   or the lease with the in-doubt mark, or "busy") and
//!   [`StateStore::finish_import`] (record stored, mark cleared, waiters
//!   woken, lease released), each one Lua script in Redis.
//! - **Budgets**: the tenant's Didit write budget for the whole deployment
//!   (GCRA), which Didit's own `Retry-After` can pause on every replica.
//!
//! Every Redis operation has a timeout and fails as
//! [`StateError::Unavailable`]; [`StateStore::health`] reports transitions.
//!
//! # Layout
//! - [`config`]: the `[state]` section.
//! - [`keys`]: the Redis key layout.
//! - [`seal`]: AES-256-GCM sealing of values bound to their key names.
//! - [`memory`]: the in-process backend.
//! - [`redis`]: the Redis backend and its Lua scripts.
//! - [`lease`]: a task keeping a lease alive while a call runs.
//! - `wait`: the waiter loop shared by both backends.
//! - [`health`]: the availability signal.

pub mod config;
pub mod health;
pub mod keys;
pub mod lease;
pub mod memory;
pub mod redis;
pub mod seal;
mod store;
mod types;
mod wait;

pub use config::{Backend, RedisSettings, ResolvedState, StateConfig, StateConfigError};
pub use health::Health;
pub use lease::LeaseKeeper;
pub use memory::MemoryStore;
pub use redis::RedisStore;
pub use seal::EncryptionKey;
pub use store::StateStore;
pub use types::{Begin, Budget, Charge, ImportId, InDoubt, LeaseOwner, Previous, WaitOutcome};

/// Why a state operation failed. Neither variant means "allow": the caller
/// must not go on as if the state said yes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The store could not be reached or did not answer in time; nothing
    /// was decided. Maps to UNAVAILABLE / `STATE_UNAVAILABLE`.
    #[error("shared state unavailable: {0}")]
    Unavailable(String),
    /// A stored value does not open (another encryption key, moved to
    /// another key name, altered) or does not decode.
    #[error("shared state holds an unreadable value: {0}")]
    Corrupt(String),
}
