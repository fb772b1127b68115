//! The live feed of one tenant's stream on one replica: a single task
//! reading with `XREAD BLOCK` on a connection of its own, which opens and
//! parses each new event once and broadcasts it to every subscriber of the
//! tenant on this replica. It stops when its last subscriber goes away (the
//! [`Feed`] is dropped) and after a Redis error, which it hands on to the
//! subscribers; the next subscription then starts a new feed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redis::AsyncConnectionConfig;
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use super::{BATCH, BLOCK, RedisEventLog, unavailable};
use crate::webhooks::log::{EventId, EventLogError, StoredEvent};

/// What the feed hands its subscribers.
#[derive(Clone)]
pub(super) enum FeedItem {
    /// A new event of the tenant.
    Event(Arc<StoredEvent>),
    /// The feed stopped on a Redis error (the operation, never content).
    Failed(String),
}

/// A running feed; dropping the last handle stops its task.
pub(super) struct Feed {
    sender: broadcast::Sender<FeedItem>,
    failed: Arc<AtomicBool>,
    task: AbortHandle,
}

impl Feed {
    /// Starts following the stream `key` after the id `from`, keeping up to
    /// `buffer` events for a subscriber that is behind.
    pub(super) fn start(
        log: RedisEventLog,
        config: AsyncConnectionConfig,
        key: String,
        from: EventId,
        buffer: usize,
    ) -> Arc<Self> {
        let (sender, _) = broadcast::channel(buffer.max(1));
        let failed = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(follow(
            log,
            config,
            key,
            from,
            sender.clone(),
            Arc::clone(&failed),
        ))
        .abort_handle();
        Arc::new(Self {
            sender,
            failed,
            task,
        })
    }

    /// A receiver of the events read from now on.
    pub(super) fn subscribe(&self) -> broadcast::Receiver<FeedItem> {
        self.sender.subscribe()
    }

    /// True once the feed stopped on an error.
    pub(super) fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The feed's loop: read after `last`, hand each event on, repeat.
async fn follow(
    log: RedisEventLog,
    config: AsyncConnectionConfig,
    key: String,
    mut last: EventId,
    sender: broadcast::Sender<FeedItem>,
    failed: Arc<AtomicBool>,
) {
    let fail = |err: EventLogError| {
        failed.store(true, Ordering::Release);
        let why = match err {
            EventLogError::Unavailable(why) => why,
            other => other.to_string(),
        };
        let _ = sender.send(FeedItem::Failed(why));
    };
    let connect = log
        .client
        .get_multiplexed_async_connection_with_config(&config);
    let mut conn = match log.bounded("connect", connect).await {
        Ok(conn) => conn,
        Err(err) => return fail(err),
    };
    loop {
        // RESP2: nil, or [[key, [[id, [field, value, ...]], ...]]].
        type Reply = Option<Vec<(String, Vec<(String, Vec<Vec<u8>>)>)>>;
        let reply: Reply = match redis::cmd("XREAD")
            .arg("COUNT")
            .arg(BATCH)
            .arg("BLOCK")
            .arg(u64::try_from(BLOCK.as_millis()).unwrap_or(5_000))
            .arg("STREAMS")
            .arg(&key)
            .arg(last.to_string())
            .query_async(&mut conn)
            .await
        {
            Ok(reply) => reply,
            Err(err) => return fail(unavailable("XREAD", &err)),
        };
        for (id, fields) in reply.into_iter().flatten().flat_map(|(_, entries)| entries) {
            let Ok(id) = id.parse::<EventId>() else {
                return fail(EventLogError::Unavailable("XREAD answered a bad id".into()));
            };
            last = id;
            if let Some(event) = log.decode(&key, id, fields) {
                // No subscriber right now is not an error: the last one
                // may be leaving, and the Drop stops this task.
                let _ = sender.send(FeedItem::Event(event));
            }
        }
    }
}
