//! The in-process [`EventLog`]: per tenant, a ring of the newest events
//! bounded by count, bytes and age, a de-duplication index over the ring,
//! and a `tokio::sync::broadcast` channel for live subscribers.
//!
//! Memory stays bounded: the ring drops its oldest events past
//! `max_events`, `max_bytes` or `retention`, and a subscriber that falls
//! more than `subscriber_buffer` live events behind is cut off with
//! [`EventLogError::SlowSubscriber`] (the broadcast channel holds a fixed
//! number of slots, shared by every subscriber of the tenant). A duplicate
//! is recognised while its first copy is in the ring.
//!
//! Appends and subscriptions of one tenant take the same lock, so a
//! subscription's backlog and its live part neither overlap nor leave a gap.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use futures::StreamExt as _;
use tokio::sync::broadcast;

use super::Clock;
use super::config::WebhooksConfig;
use super::event::WebhookEvent;
use super::log::{
    Appended, EventId, EventLog, EventLogError, EventStream, StoredEvent, TypeFilter,
};

/// The bounds of a [`MemoryEventLog`], per tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryLimits {
    /// Events kept.
    pub max_events: usize,
    /// Body bytes kept (the newest event is kept even if larger).
    pub max_bytes: usize,
    /// How long an event is kept.
    pub retention: Duration,
    /// Live events a subscriber may fall behind before it is cut off.
    pub subscriber_buffer: usize,
}

impl From<&WebhooksConfig> for MemoryLimits {
    fn from(config: &WebhooksConfig) -> Self {
        Self {
            max_events: config.max_events,
            max_bytes: config.max_bytes,
            retention: config.retention,
            subscriber_buffer: config.subscriber_buffer,
        }
    }
}

/// What one tenant's log holds now (for tests and metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TenantStats {
    /// Events in the ring.
    pub events: usize,
    /// Their body bytes.
    pub bytes: usize,
    /// Live subscribers.
    pub subscribers: usize,
}

/// The memory backend of [`EventLog`]; events are lost on restart (a
/// cursor from before the restart is [`EventLogError::CursorExpired`]).
pub struct MemoryEventLog {
    /// The per-tenant bounds.
    limits: MemoryLimits,
    /// Time for ids, `received_at` and retention.
    clock: Arc<dyn Clock>,
    /// An id minted when this log started: every id at or below it may
    /// have existed in an earlier process, so cursors below it are expired.
    floor: EventId,
    /// The tenants' logs, created on first use.
    tenants: Mutex<HashMap<String, Arc<Mutex<TenantLog>>>>,
}

/// One tenant's events.
struct TenantLog {
    /// The retained events, oldest first; ids increase.
    ring: VecDeque<Arc<StoredEvent>>,
    /// Body bytes in `ring`.
    bytes: usize,
    /// The delivery key of every event in `ring`, to store duplicates once.
    by_key: HashMap<[u8; 32], EventId>,
    /// The newest id minted.
    last: EventId,
    /// The newest id dropped from `ring` (or the log's floor): a cursor
    /// below it would miss events.
    dropped_up_to: EventId,
    /// Live events to subscribers; its capacity is the subscriber buffer.
    live: broadcast::Sender<Arc<StoredEvent>>,
}

impl MemoryEventLog {
    /// An empty log.
    pub fn new(limits: MemoryLimits, clock: Arc<dyn Clock>) -> Self {
        let floor = EventId::ZERO.next(clock.now());
        Self {
            limits,
            clock,
            floor,
            tenants: Mutex::new(HashMap::new()),
        }
    }

    /// What `tenant`'s log holds now.
    pub fn stats(&self, tenant: &str) -> TenantStats {
        let Some(log) = lock(&self.tenants).get(tenant).cloned() else {
            return TenantStats::default();
        };
        let log = lock(&log);
        TenantStats {
            events: log.ring.len(),
            bytes: log.bytes,
            subscribers: log.live.receiver_count(),
        }
    }

    fn tenant(&self, tenant: &str) -> Arc<Mutex<TenantLog>> {
        let mut tenants = lock(&self.tenants);
        if let Some(log) = tenants.get(tenant) {
            return Arc::clone(log);
        }
        let log = Arc::new(Mutex::new(TenantLog {
            ring: VecDeque::new(),
            bytes: 0,
            by_key: HashMap::new(),
            last: self.floor,
            dropped_up_to: self.floor,
            live: broadcast::channel(self.limits.subscriber_buffer.max(1)).0,
        }));
        tenants.insert(tenant.to_owned(), Arc::clone(&log));
        log
    }
}

impl TenantLog {
    /// Drops events past the limits; `now` for retention.
    fn evict(&mut self, limits: &MemoryLimits, now: SystemTime) {
        while let Some(front) = self.ring.front() {
            let expired = now
                .duration_since(front.received_at)
                .is_ok_and(|age| age > limits.retention);
            let over = self.ring.len() > limits.max_events
                || (self.bytes > limits.max_bytes && self.ring.len() > 1);
            if !(expired || over) {
                break;
            }
            if let Some(old) = self.ring.pop_front() {
                self.bytes -= old.event.raw.len();
                if self.by_key.get(&old.event.delivery_key) == Some(&old.id) {
                    self.by_key.remove(&old.event.delivery_key);
                }
                self.dropped_up_to = old.id;
            }
        }
    }
}

#[async_trait::async_trait]
impl EventLog for MemoryEventLog {
    async fn append(&self, tenant: &str, event: WebhookEvent) -> Result<Appended, EventLogError> {
        let now = self.clock.now();
        let log = self.tenant(tenant);
        let mut log = lock(&log);
        log.evict(&self.limits, now);
        if let Some(&event_id) = log.by_key.get(&event.delivery_key) {
            return Ok(Appended {
                event_id,
                duplicate: true,
            });
        }
        let id = log.last.next(now);
        log.last = id;
        log.bytes += event.raw.len();
        log.by_key.insert(event.delivery_key, id);
        let stored = Arc::new(StoredEvent {
            id,
            received_at: now,
            event,
        });
        log.ring.push_back(Arc::clone(&stored));
        log.evict(&self.limits, now);
        // No subscriber is not an error: the event waits in the ring.
        let _ = log.live.send(stored);
        Ok(Appended {
            event_id: id,
            duplicate: false,
        })
    }

    async fn subscribe(
        &self,
        tenant: &str,
        after: Option<EventId>,
        types: TypeFilter,
    ) -> Result<EventStream, EventLogError> {
        let now = self.clock.now();
        let log = self.tenant(tenant);
        let (backlog, live) = {
            let mut log = lock(&log);
            log.evict(&self.limits, now);
            let backlog: Vec<Arc<StoredEvent>> = match after {
                None => Vec::new(),
                Some(after) if after < log.dropped_up_to => {
                    return Err(EventLogError::CursorExpired);
                }
                Some(after) => {
                    let start = log.ring.partition_point(|e| e.id <= after);
                    log.ring.range(start..).cloned().collect()
                }
            };
            (backlog, log.live.subscribe())
        };
        let after = after.unwrap_or(EventId::ZERO);
        let backlog_types = types.clone();
        let backlog = futures::stream::iter(backlog)
            .filter(move |e| std::future::ready(backlog_types.matches(&e.event.webhook_type)))
            .map(Ok);
        let live = futures::stream::unfold(Some(live), |live| async move {
            let mut live = live?;
            match live.recv().await {
                Ok(event) => Some((Ok(event), Some(live))),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    Some((Err(EventLogError::SlowSubscriber), None))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
        .filter(move |item| {
            std::future::ready(match item {
                Ok(e) => e.id > after && types.matches(&e.event.webhook_type),
                Err(_) => true,
            })
        });
        Ok(backlog.chain(live).boxed())
    }
}

/// Locks, ignoring poisoning: every critical section leaves the log
/// consistent before anything that could panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
