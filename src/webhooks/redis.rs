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
//!   [`EventLogError::CursorExpired`]; then
//!   `XREAD BLOCK` from the cursor on a connection of the subscription's own
//!   (a blocked read holds its connection), replaying what is stored and
//!   following what comes. A reader that falls behind the trimming is cut
//!   off with `CursorExpired` at its next read.
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

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt as _;
use redis::AsyncCommands as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};

use super::config::WebhooksConfig;
use super::event::WebhookEvent;
use super::log::{
    Appended, EventId, EventLog, EventLogError, EventStream, StoredEvent, TypeFilter,
};
use crate::state::seal::Sealer;

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
        let key = self.stream_key(tenant);
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
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(BLOCK + self.timeout));
        let connect = self
            .client
            .get_multiplexed_async_connection_with_config(&config);
        let conn = self.bounded("connect", connect).await?;
        let reader = Reader {
            log: self.clone(),
            conn,
            key,
            tenant: tenant.to_owned(),
            last: start,
            types,
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

/// One subscription's reading position.
struct Reader {
    log: RedisEventLog,
    conn: MultiplexedConnection,
    key: String,
    tenant: String,
    last: EventId,
    types: TypeFilter,
    ready: VecDeque<Arc<StoredEvent>>,
}

impl Reader {
    /// The next event that passes the filter, reading (and blocking) as
    /// needed.
    async fn next(&mut self) -> Result<Arc<StoredEvent>, EventLogError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(event);
            }
            self.read().await?;
        }
    }

    async fn read(&mut self) -> Result<(), EventLogError> {
        // RESP2: nil, or [[key, [[id, [field, value, ...]], ...]]].
        type Reply = Option<Vec<(String, Vec<(String, Vec<Vec<u8>>)>)>>;
        let reply: Reply = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(BATCH)
            .arg("BLOCK")
            .arg(u64::try_from(BLOCK.as_millis()).unwrap_or(5_000))
            .arg("STREAMS")
            .arg(&self.key)
            .arg(self.last.to_string())
            .query_async(&mut self.conn)
            .await
            .map_err(|e| unavailable("XREAD", &e))?;
        let entries: Vec<_> = reply
            .into_iter()
            .flatten()
            .flat_map(|(_, entries)| entries)
            .collect();
        if entries.is_empty() {
            return Ok(());
        }
        // Trimmed past this reader while it was away: it would miss events.
        if let Some((_, deleted)) = self.log.bounds(&self.tenant).await?
            && self.last < deleted
        {
            return Err(EventLogError::CursorExpired);
        }
        for (id, fields) in entries {
            let id: EventId = id
                .parse()
                .map_err(|_| EventLogError::Unavailable("XREAD answered a bad id".into()))?;
            self.last = id;
            let body = fields
                .chunks(2)
                .find(|kv| kv[0] == b"body")
                .and_then(|kv| kv.get(1));
            let Some(body) = body else { continue };
            let body = match &self.log.sealer {
                Some(sealer) => match sealer.open(&self.key, body) {
                    Ok(plain) => Bytes::from(plain),
                    Err(_) => {
                        tracing::warn!(event_id = %id, "skipping a stored event that does not open with the state's encryption key");
                        continue;
                    }
                },
                None => Bytes::copy_from_slice(body),
            };
            let Ok(event) = WebhookEvent::parse(body) else {
                tracing::warn!(event_id = %id, "skipping a stored event that does not parse");
                continue;
            };
            if !self.types.matches(&event.webhook_type) {
                continue;
            }
            self.ready.push_back(Arc::new(StoredEvent {
                id,
                received_at: SystemTime::UNIX_EPOCH + Duration::from_millis(id.ms),
                event,
            }));
        }
        Ok(())
    }
}
