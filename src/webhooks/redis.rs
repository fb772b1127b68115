//! The Redis Streams [`EventLog`], shared by every replica: one stream per
//! tenant, whose ids are the event ids (so cursors survive restarts and
//! work on any replica).
//!
//! - append: one Lua script, atomic: if the delivery's de-duplication key
//!   exists, answer its event id; else `XADD key *`, then trim exactly to
//!   `max_events` (`XTRIM MAXLEN`) and to `retention` (`XTRIM MINID`),
//!   remembering the newest id trimmed (Redis 7.0 does not track it for
//!   trimming), `SET seen-key id PX retention`, and `PEXPIRE` the keys so
//!   an idle tenant's stream goes away.
//! - subscribe: a cursor below the newest trimmed id is
//!   [`EventLogError::CursorExpired`]; then the stored events after the
//!   cursor (`XRANGE`, in batches), then the live ones from the tenant's
//!   [`feed`]: ONE `XREAD BLOCK` loop per tenant and replica, on a
//!   connection of its own, that opens and parses each event once and
//!   hands it to every subscriber of the tenant on this replica. A
//!   subscriber that falls behind the feed's buffer (`subscriber_buffer`)
//!   catches up from Redis again, or is cut off with `CursorExpired` when
//!   the trimming passed it.
//!
//! With a [`Sealer`] (the gateway always gives it the state's), each
//! stored body is sealed (AES-256-GCM, the stream's key name as associated
//! data): a Redis dump holds no webhook's personal data. A stored body that
//! does not open is skipped with a warning naming its event id.
//!
//! Keys share the tenant's hash tag so a cluster keeps them in one slot:
//! `{prefix}events:{<tenant>}`, `{prefix}events:{<tenant>}:trimmed` and
//! `{prefix}events:{<tenant>}:seen:<sha256>`.
//! Redis errors are [`EventLogError::Unavailable`] naming the operation,
//! never a URL or an event's content.

mod feed;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt as _;
use redis::AsyncCommands as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::broadcast;

use super::config::WebhooksConfig;
use super::event::WebhookEvent;
use super::log::{
    Appended, EventId, EventLog, EventLogError, EventStream, StoredEvent, TypeFilter,
};
use crate::state::seal::Sealer;
use feed::{Feed, FeedItem};

/// How long one `XREAD BLOCK` waits before it is issued again.
const BLOCK: Duration = Duration::from_secs(5);
/// Entries read per `XREAD`.
const BATCH: usize = 100;

const APPEND: &str = r"
local seen = redis.call('GET', KEYS[2])
if seen then return {seen, 1} end
local id = redis.call('XADD', KEYS[1], '*', 'body', ARGV[2])
local len = redis.call('XLEN', KEYS[1])
local max = tonumber(ARGV[1])
if len > max then
  local gone = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', len - max)
  redis.call('SET', KEYS[3], gone[#gone][1])
  redis.call('XTRIM', KEYS[1], 'MAXLEN', max)
end
local now = redis.call('TIME')
local min_ms = tonumber(now[1]) * 1000 - tonumber(ARGV[3])
if min_ms > 0 then
  local old = redis.call('XREVRANGE', KEYS[1], '(' .. min_ms .. '-0', '-', 'COUNT', 1)
  if #old > 0 then
    redis.call('SET', KEYS[3], old[1][1])
    redis.call('XTRIM', KEYS[1], 'MINID', min_ms)
  end
end
redis.call('SET', KEYS[2], id, 'PX', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return {id, 0}
";

/// The Redis Streams event log.
#[derive(Clone)]
pub struct RedisEventLog {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    max_events: usize,
    retention: Duration,
    timeout: Duration,
    append: Arc<redis::Script>,
    sealer: Option<Sealer>,
    buffer: usize,
    feeds: Arc<Mutex<HashMap<String, Weak<Feed>>>>,
}

impl RedisEventLog {
    /// A log on `client` (connects lazily), bounded like `config` says;
    /// every key starts with `prefix`; each command waits at most
    /// `timeout`.
    pub fn new(
        client: redis::Client,
        prefix: &str,
        config: &WebhooksConfig,
        timeout: Duration,
    ) -> Result<Self, EventLogError> {
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager)
            .map_err(|e| unavailable("connect", &e))?;
        Ok(Self {
            client,
            conn,
            prefix: prefix.to_owned(),
            max_events: config.max_events,
            retention: config.retention,
            timeout,
            append: Arc::new(redis::Script::new(APPEND)),
            sealer: None,
            buffer: config.subscriber_buffer,
            feeds: Arc::default(),
        })
    }

    /// The same log, sealing every body it stores with `sealer` (and
    /// opening what it reads with it).
    #[must_use]
    pub fn sealed(mut self, sealer: Sealer) -> Self {
        self.sealer = Some(sealer);
        self
    }

    fn stream_key(&self, tenant: &str) -> String {
        format!("{}events:{{{tenant}}}", self.prefix)
    }

    fn trimmed_key(&self, tenant: &str) -> String {
        format!("{}:trimmed", self.stream_key(tenant))
    }

    fn seen_key(&self, tenant: &str, delivery: &[u8; 32]) -> String {
        let hex: String = delivery.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}:seen:{hex}", self.stream_key(tenant))
    }

    async fn bounded<T>(
        &self,
        what: &str,
        op: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, EventLogError> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(result) => result.map_err(|e| unavailable(what, &e)),
            Err(_) => Err(EventLogError::Unavailable(format!(
                "{what}: no answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// The newest id ever added to `tenant`'s stream and the newest one
    /// trimmed (`ZERO` when none was); `None` when the stream does not
    /// exist.
    async fn bounds(&self, tenant: &str) -> Result<Option<(EventId, EventId)>, EventLogError> {
        let mut conn = self.conn.clone();
        let key = self.stream_key(tenant);
        let exists: bool = self.bounded("EXISTS", conn.exists(&key)).await?;
        if !exists {
            return Ok(None);
        }
        let info: Vec<redis::Value> = self
            .bounded(
                "XINFO STREAM",
                redis::cmd("XINFO")
                    .arg("STREAM")
                    .arg(&key)
                    .query_async(&mut conn),
            )
            .await?;
        let last = info
            .chunks(2)
            .find(|kv| {
                redis::from_redis_value_ref::<String>(&kv[0])
                    .is_ok_and(|k| k == "last-generated-id")
            })
            .and_then(|kv| kv.get(1))
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| EventLogError::Unavailable("XINFO STREAM has no last id".into()))?;
        let trimmed: Option<String> = self
            .bounded("GET", conn.get(self.trimmed_key(tenant)))
            .await?;
        let trimmed = match trimmed {
            Some(id) => id
                .parse()
                .map_err(|_| EventLogError::Unavailable("the trimmed mark is not an id".into()))?,
            None => EventId::ZERO,
        };
        Ok(Some((last, trimmed)))
    }
}

fn unavailable(what: &str, err: &redis::RedisError) -> EventLogError {
    EventLogError::Unavailable(format!("{what}: {:?}", err.kind()))
}

#[async_trait::async_trait]
impl EventLog for RedisEventLog {
    async fn append(&self, tenant: &str, event: WebhookEvent) -> Result<Appended, EventLogError> {
        let mut conn = self.conn.clone();
        let retention_ms = u64::try_from(self.retention.as_millis()).unwrap_or(u64::MAX);
        let stream = self.stream_key(tenant);
        let body = match &self.sealer {
            Some(sealer) => sealer
                .seal(&stream, &event.raw)
                .map_err(|_| EventLogError::Unavailable("append: sealing failed".into()))?,
            None => event.raw.to_vec(),
        };
        let mut invocation = self.append.prepare_invoke();
        invocation
            .key(stream)
            .key(self.seen_key(tenant, &event.delivery_key))
            .key(self.trimmed_key(tenant))
            .arg(self.max_events)
            .arg(body)
            .arg(retention_ms);
        let (id, duplicate): (String, i64) = self
            .bounded("append", invocation.invoke_async(&mut conn))
            .await?;
        let event_id = id
            .parse()
            .map_err(|_| EventLogError::Unavailable("append: XADD answered a bad id".into()))?;
        Ok(Appended {
            event_id,
            duplicate: duplicate == 1,
        })
    }

    async fn subscribe(
        &self,
        tenant: &str,
        after: Option<EventId>,
        types: TypeFilter,
    ) -> Result<EventStream, EventLogError> {
        let bounds = self.bounds(tenant).await?;
        let start = match (after, bounds) {
            (None, Some((last, _))) => last,
            (None, None) => EventId::ZERO,
            (Some(cursor), Some((_, deleted))) if cursor < deleted => {
                return Err(EventLogError::CursorExpired);
            }
            (Some(cursor), Some(_)) => cursor,
            // The stream expired (idle longer than retention): whatever
            // followed the cursor is gone.
            (Some(cursor), None) if cursor > EventId::ZERO => {
                return Err(EventLogError::CursorExpired);
            }
            (Some(cursor), None) => cursor,
        };
        let feed = self.feed(tenant, start);
        let reader = Reader {
            log: self.clone(),
            live: feed.subscribe(),
            _feed: feed,
            tenant: tenant.to_owned(),
            last: start,
            types,
            catching_up: true,
            ready: VecDeque::new(),
        };
        Ok(futures::stream::unfold(Some(reader), |reader| async move {
            let mut reader = reader?;
            match reader.next().await {
                Ok(event) => Some((Ok(event), Some(reader))),
                Err(err) => Some((Err(err), None)),
            }
        })
        .boxed())
    }
}

impl RedisEventLog {
    /// The live feed of `tenant` on this replica, started (from `from`, an
    /// id no later than anything the new subscriber will read from Redis
    /// itself) when there is none or the last one failed.
    fn feed(&self, tenant: &str, from: EventId) -> Arc<Feed> {
        let mut feeds = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
        feeds.retain(|_, feed| feed.strong_count() > 0);
        if let Some(feed) = feeds.get(tenant).and_then(Weak::upgrade)
            && !feed.failed()
        {
            return feed;
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(BLOCK + self.timeout));
        let feed = Feed::start(
            self.clone(),
            config,
            self.stream_key(tenant),
            from,
            self.buffer,
        );
        feeds.insert(tenant.to_owned(), Arc::downgrade(&feed));
        feed
    }

    /// The stored events of `tenant` after `after`, at most [`BATCH`].
    async fn range_after(
        &self,
        tenant: &str,
        after: EventId,
    ) -> Result<Vec<Arc<StoredEvent>>, EventLogError> {
        let mut conn = self.conn.clone();
        type Entries = Vec<(String, Vec<Vec<u8>>)>;
        let entries: Entries = self
            .bounded(
                "XRANGE",
                redis::cmd("XRANGE")
                    .arg(self.stream_key(tenant))
                    .arg(format!("({after}"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(BATCH)
                    .query_async(&mut conn),
            )
            .await?;
        let key = self.stream_key(tenant);
        let mut out = Vec::with_capacity(entries.len());
        for (id, fields) in entries {
            let id: EventId = id
                .parse()
                .map_err(|_| EventLogError::Unavailable("XRANGE answered a bad id".into()))?;
            out.push(self.decode(&key, id, fields));
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// The event stored under `id` in the stream `key` (its `body` field,
    /// opened when sealed); `None`, with a warning, when it does not open
    /// or parse.
    fn decode(&self, key: &str, id: EventId, mut fields: Vec<Vec<u8>>) -> Option<Arc<StoredEvent>> {
        let at = fields.chunks(2).position(|kv| kv[0] == b"body")?;
        let body = fields.get_mut(2 * at + 1).map(std::mem::take)?;
        let body = match &self.sealer {
            Some(sealer) => match sealer.open(key, body) {
                Ok(plain) => plain,
                Err(_) => {
                    tracing::warn!(event_id = %id, "skipping a stored event that does not open with the state's encryption key");
                    return None;
                }
            },
            None => Bytes::from(body),
        };
        let Ok(event) = WebhookEvent::parse(body) else {
            tracing::warn!(event_id = %id, "skipping a stored event that does not parse");
            return None;
        };
        Some(Arc::new(StoredEvent {
            id,
            received_at: SystemTime::UNIX_EPOCH + Duration::from_millis(id.ms),
            event,
        }))
    }
}

/// One subscription: the stored events after its cursor, then the feed's.
struct Reader {
    log: RedisEventLog,
    live: broadcast::Receiver<FeedItem>,
    /// Keeps the tenant's feed running while this subscription lives.
    _feed: Arc<Feed>,
    tenant: String,
    last: EventId,
    types: TypeFilter,
    /// Reading stored events from Redis (at the start, and after falling
    /// behind the feed); else following the feed.
    catching_up: bool,
    ready: VecDeque<Arc<StoredEvent>>,
}

impl Reader {
    /// The next event that passes the filter.
    async fn next(&mut self) -> Result<Arc<StoredEvent>, EventLogError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(event);
            }
            if self.catching_up {
                self.catch_up().await?;
                continue;
            }
            match self.live.recv().await {
                Ok(FeedItem::Event(event)) => {
                    // Already read from Redis while catching up.
                    if event.id <= self.last {
                        continue;
                    }
                    self.last = event.id;
                    if self.types.matches(&event.event.webhook_type) {
                        return Ok(event);
                    }
                }
                Ok(FeedItem::Failed(why)) => return Err(EventLogError::Unavailable(why)),
                Err(broadcast::error::RecvError::Lagged(_)) => self.catching_up = true,
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(EventLogError::Unavailable("the event feed stopped".into()));
                }
            }
        }
    }

    /// One batch of stored events after `last`; the end of the catch-up
    /// when there are none. Trimmed past `last`: `CursorExpired`.
    async fn catch_up(&mut self) -> Result<(), EventLogError> {
        if let Some((_, deleted)) = self.log.bounds(&self.tenant).await?
            && self.last < deleted
        {
            return Err(EventLogError::CursorExpired);
        }
        let batch = self.log.range_after(&self.tenant, self.last).await?;
        if batch.is_empty() {
            self.catching_up = false;
        }
        for event in batch {
            self.last = event.id;
            if self.types.matches(&event.event.webhook_type) {
                self.ready.push_back(event);
            }
        }
        Ok(())
    }
}
