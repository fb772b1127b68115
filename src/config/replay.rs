//! `[replay]`: how long, and how many bytes of, successful imports are kept
//! to answer a retried import.

use std::time::Duration;

use serde::Deserialize;

use super::{FieldError, parse_duration, positive};

/// Longest replay window allowed: a share token lives at most a day.
const MAX_WINDOW: Duration = Duration::from_secs(86_400);
/// Smallest store allowed (one large session must fit).
const MIN_BYTES: u64 = 64 * 1024;

/// The `[replay]` section, as [`crate::state::StateStore::open`] takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayConfig {
    /// How long a result stays replayable.
    pub window: Duration,
    /// Upper bound of stored bytes; the least useful entries go first.
    pub max_bytes: u64,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(600),
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

impl ReplayConfig {
    /// A window above zero and at most a day, at least 64 KiB of store.
    pub fn validate(&self) -> Result<(), FieldError> {
        positive("replay.window", self.window)?;
        if self.window > MAX_WINDOW {
            return Err(FieldError::new(
                "replay.window",
                "must be at most 24h (a share token lives at most a day; keeping personal data longer serves no retry)",
            ));
        }
        if self.max_bytes < MIN_BYTES {
            return Err(FieldError::new(
                "replay.max_bytes",
                format!("must be at least {MIN_BYTES}"),
            ));
        }
        Ok(())
    }
}

/// `[replay]` as written; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplaySection {
    window: Option<String>,
    max_bytes: Option<u64>,
}

impl ReplaySection {
    /// Parses the window; unset keys take the defaults.
    pub(super) fn into_config(self) -> Result<ReplayConfig, FieldError> {
        let defaults = ReplayConfig::default();
        Ok(ReplayConfig {
            window: parse_duration(self.window.as_deref(), defaults.window)
                .map_err(|p| FieldError::new("replay.window", p))?,
            max_bytes: self.max_bytes.unwrap_or(defaults.max_bytes),
        })
    }
}
