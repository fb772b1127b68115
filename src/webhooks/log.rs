//! The session event log: per tenant, the webhooks received, in order,
//! each stored once, readable from a cursor and then live.
//!
//! Event ids are Redis Stream ids, `{unix_ms}-{seq}`: opaque to callers,
//! ordered by (`unix_ms`, `seq`), strictly increasing within a tenant. The
//! memory backend ([`super::memory`]) mints them the way `XADD *` does, so a
//! Redis Streams backend (`XADD … MAXLEN ~ n` to append, `XRANGE` to replay,
//! `XREAD BLOCK` to follow) keeps the same cursor format and semantics.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use futures::stream::BoxStream;

use super::event::WebhookEvent;

/// A stored event's id and resume cursor: `{unix_ms}-{seq}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    /// Milliseconds since the Unix epoch when the event was stored (never
    /// smaller than the previous id's, even if the clock steps back).
    pub ms: u64,
    /// Order among events stored in the same millisecond.
    pub seq: u64,
}

impl EventId {
    /// The smallest id: "from the beginning".
    pub const ZERO: Self = Self { ms: 0, seq: 0 };

    /// The id `XADD *` would mint after `self` at time `now`.
    pub fn next(self, now: SystemTime) -> Self {
        let ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        if ms > self.ms {
            Self { ms, seq: 0 }
        } else {
            Self {
                ms: self.ms,
                seq: self.seq.saturating_add(1),
            }
        }
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A cursor that is not an event id of this gateway.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("not an event id (expected digits-digits, like 1700000000000-0)")]
pub struct InvalidEventId;

impl FromStr for EventId {
    type Err = InvalidEventId;

    /// Strictly `digits-digits`, each part fitting a u64.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ms, seq) = s.split_once('-').ok_or(InvalidEventId)?;
        let part = |p: &str| {
            if p.is_empty() || p.len() > 20 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(InvalidEventId);
            }
            p.parse::<u64>().map_err(|_| InvalidEventId)
        };
        Ok(Self {
            ms: part(ms)?,
            seq: part(seq)?,
        })
    }
}

/// An event as the log holds it.
#[derive(Debug)]
pub struct StoredEvent {
    /// Its id (the resume cursor).
    pub id: EventId,
    /// When the gateway stored it.
    pub received_at: SystemTime,
    /// The webhook.
    pub event: WebhookEvent,
}

/// The answer to an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The event's id; for a duplicate, the id of the copy stored first.
    pub event_id: EventId,
    /// True when the same delivery (same [`WebhookEvent::delivery_key`]) is
    /// already held: nothing new was stored or streamed.
    pub duplicate: bool,
}

/// Why the log cannot do what was asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventLogError {
    /// Events after the cursor are no longer held (retention, `max_events`,
    /// or a restart of the memory backend): resuming would skip some.
    #[error("the cursor is older than the retained events")]
    CursorExpired,
    /// The subscriber fell more than its buffer behind the live events and
    /// was cut off; it may resume from the last id it received.
    #[error("the subscriber fell too far behind and was cut off")]
    SlowSubscriber,
    /// The backend (Redis) could not be reached or answered an error. The
    /// text names the operation, never a secret or an event's content.
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
}

/// The events of a subscription: stored ones after the cursor, then live
/// ones. Ends after an error.
pub type EventStream = BoxStream<'static, Result<Arc<StoredEvent>, EventLogError>>;

/// Which `webhook_type`s a subscriber wants; empty means all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TypeFilter(Vec<String>);

impl TypeFilter {
    /// Every type.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only these types (none listed: all).
    pub fn only(types: impl IntoIterator<Item = String>) -> Self {
        Self(types.into_iter().collect())
    }

    /// Whether events of `webhook_type` pass.
    pub fn matches(&self, webhook_type: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|t| t == webhook_type)
    }
}

/// A per-tenant, append-only, bounded log of webhook events.
#[async_trait::async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Stores `event` for `tenant` unless the same delivery is already held.
    /// Returns only once the event is stored (or known to be a duplicate):
    /// the ingress answers Didit 200 after this.
    async fn append(&self, tenant: &str, event: WebhookEvent) -> Result<Appended, EventLogError>;

    /// `tenant`'s events with an id greater than `after`, in order, then
    /// the live ones as they are appended, keeping only `types`. `None`:
    /// only events appended from now on. `CursorExpired` (immediately) when
    /// events after `after` were already dropped.
    async fn subscribe(
        &self,
        tenant: &str,
        after: Option<EventId>,
        types: TypeFilter,
    ) -> Result<EventStream, EventLogError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ids_print_parse_and_order_like_redis_stream_ids() {
        let id: EventId = "1700000000000-7".parse().unwrap();
        assert_eq!(
            id,
            EventId {
                ms: 1_700_000_000_000,
                seq: 7
            }
        );
        assert_eq!(id.to_string(), "1700000000000-7");
        assert!(id < "1700000000000-8".parse().unwrap());
        assert!(id < "1700000000001-0".parse().unwrap());
        for bad in [
            "",
            "1",
            "-1",
            "1-",
            "1-2-3",
            "a-1",
            "1- 2",
            "+1-2",
            "99999999999999999999-0",
        ] {
            assert_eq!(bad.parse::<EventId>(), Err(InvalidEventId), "{bad:?}");
        }
    }

    #[test]
    fn next_ids_increase_even_when_the_clock_steps_back() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(5_000);
        let a = EventId::ZERO.next(t);
        assert_eq!(a, EventId { ms: 5_000, seq: 0 });
        let b = a.next(t);
        let c = b.next(t - Duration::from_secs(1));
        let d = c.next(t + Duration::from_millis(1));
        assert!(a < b && b < c && c < d, "{a} {b} {c} {d}");
        assert_eq!(d, EventId { ms: 5_001, seq: 0 });
    }
}
